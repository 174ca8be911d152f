"""The media graph's two ends: what a Producer feeds (a Sink) and what a Sink sees of it (a Source).

The Router holds the graph, as mediasoup's does: ``producer -> sinks`` and ``sink -> producer``
(media/router.py). A subscriber's Consumer is a sink, and so is a recorder (recording/). The
Producer only reads the sinks its Router attached to it; neither end imports the other, so
these two protocols are all they know of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket


class SourceLayer(Protocol):
    """One encoding of a Source (the only one, or a simulcast layer)."""

    @property
    def bitrate(self) -> int:
        """Bits per second received over the last second (kept while the layer is off)."""
        ...


class Source(Protocol):
    """What a Sink may read of, and ask from, the Producer it is attached to."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def codec(self) -> RTCRtpCodecParameters: ...

    @property
    def app_data(self) -> dict[str, Any]: ...

    @property
    def closed(self) -> bool: ...

    @property
    def paused(self) -> bool: ...

    @property
    def simulcast(self) -> bool: ...

    @property
    def layers(self) -> Sequence[SourceLayer]:
        """The encodings, lowest first."""
        ...

    def layer_needs(self, now: float) -> list[int | None]:
        """Each layer's bitrate, None for a layer not being received (lowest first); ``now``
        on the monotonic clock (``time.monotonic()``)."""
        ...

    def request_keyframe(self, layer: int = 0, *, now: bool = False) -> None:
        """Ask the publisher for a keyframe of ``layer`` (coalesced; ``now``: at once)."""
        ...

    def update_remb(self, now_ms: int | None = None, *, estimate_dropped: bool = False) -> None:
        """Tell the publisher what to send now (a sink's estimate changed)."""
        ...

    def wanted_layers_changed(self) -> None:
        """A sink's :attr:`Sink.layers` changed: the Source forwards only layers some sink takes."""
        ...


class Sink(Protocol):
    """Where a Producer's packets go: a subscriber's Consumer, a recorder."""

    @property
    def id(self) -> str: ...

    @property
    def layers(self) -> tuple[int, ...]:
        """The simulcast layers this sink forwards or waits for; a layer that no sink wants
        stops at the Producer."""
        ...

    @property
    def estimate(self) -> int | None:
        """What the receiving end can take (bits per second), None if it says nothing: a
        single-stream Producer asks its publisher for no more than the lowest of these."""
        ...

    async def on_rtp(self, packet: RtpPacket, layer: int, ntp: int, send_time: bytes) -> None:
        """One packet of simulcast ``layer``, as it arrives (RTX unwrapped); ``ntp`` and
        ``send_time`` (abs-send-time) are now, computed once per packet. On the hot path:
        cheap. Not called while the Producer is paused."""
        ...

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """The publisher's RTCP sender report: its wall clock (NTP) at ``rtp_timestamp``; the
        last one is also given when the sink is attached."""
        ...

    def on_resume(self) -> None:
        """The Producer was paused and forwards again."""
        ...

    async def close(self) -> None:
        """The Producer closed (or the room did). Idempotent."""
        ...


#: ``factory(source, options)``: a sink to attach to each new Producer (a recorder), or None.
#: ``options`` are the plain-data tap options the room was opened with (where a room's
#: recording goes, say). Whoever composes the process (``web``) hands it to the media pool.
TapFactory = Callable[[Source, dict[str, Any]], Sink | None]
