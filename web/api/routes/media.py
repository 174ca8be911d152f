"""The media server's figures for its operators: datagrams dropped at its ICE ports."""

from __future__ import annotations

from typing import Literal

from media.datagram_guard import REASONS

from ...keys import SIGNALING
from ..call import Call
from ..fields import Output
from ..registry import api


class TransportDrops(Output):
    room: str
    """The room (visit id)."""
    participant_id: str
    role: str | None
    """The participant's role in the room; None once it left (its connection is still open)."""
    transport: Literal["publish", "subscribe"]
    total: int
    dropped: dict[str, int]
    """Non-zero counts by reason."""


class DatagramDrops(Output):
    reasons: list[str]
    """Every reason a datagram is dropped for (docs/hostile-input.md)."""
    totals: dict[str, int]
    """Over every open connection, by reason (zero included)."""
    transports: list[TransportDrops]


@api.operation("GET", "/media/dropped-datagrams", action="media.view_stats", tag="media")
async def dropped_datagrams(call: Call) -> DatagramDrops:
    """Datagrams the media server dropped (empty, truncated, unverified source, ...) at each
    open connection of this process's rooms, by reason."""
    rows = await call.request.app[SIGNALING].datagram_drops()
    totals = dict.fromkeys(REASONS, 0)
    for row in rows:
        for reason, count in row["dropped"].items():
            totals[reason] = totals.get(reason, 0) + count
    return DatagramDrops(
        reasons=list(REASONS),
        totals=totals,
        transports=[TransportDrops(**row) for row in rows],
    )
