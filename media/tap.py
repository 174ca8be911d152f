"""Taps: what else a Producer's packets go to besides its Consumers (a recorder, say).

``media`` knows only this protocol; whoever composes the process (``web``) hands a
:data:`TapFactory` to the media pool, and every Router of that pool asks it for a tap per new
Producer. A tap sees exactly what the Consumers see: nothing while the Producer is paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiortc.rtp import RtpPacket

if TYPE_CHECKING:
    from .producer import Producer


class ProducerTap(Protocol):
    def on_rtp(self, packet: RtpPacket) -> None:
        """One packet as the Producer forwards it (RTX unwrapped). Runs on the hot path: cheap."""

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """The publisher's RTCP sender report: its wall clock (NTP) at ``rtp_timestamp``."""

    def on_resume(self) -> None:
        """The Producer was paused and forwards again."""

    async def close(self) -> None:
        """The Producer closed (or the room did). Idempotent."""


#: ``factory(producer, options)``: a tap for ``producer``, or None. ``options`` are the plain-data
#: tap options the room was opened with (e.g. where a room's recording goes).
TapFactory = Callable[["Producer", dict[str, Any]], ProducerTap | None]
