"""Rate limits of socket events, per socket and event class (issue 13, R33).

A socket gets a token bucket per class of event; an event over its class's rate is answered
``rate_limited`` without running, so a flood can neither fill the recording timeline (a ``mute``
flood wrote 49.8 MB in 20 s) nor the chat (130 stored messages a second). The refusals are
summarised in the audit chain once a minute per socket and class, not one row each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from consult.ratelimit import RefusalSummary, TokenBuckets


@dataclass(frozen=True)
class EventClass:
    name: str
    rate: float
    """Events a second, sustained."""
    burst: float


SIGNAL: Final = EventClass("signal", 20.0, 200.0)
"""Offers, answers, trickled ICE candidates, media restarts: many at a call's start."""
CONTROL: Final = EventClass("control", 2.0, 20.0)
"""Join, leave, mute, room control: a person clicks, a script floods."""
CHAT: Final = EventClass("chat", 2.0, 30.0)
"""A person types a few lines in a row; a script sending 130 a second is cut to two."""
VIEWER: Final = EventClass("viewer", 15.0, 120.0)
"""Viewer sync follows a dragged window/level: smooth, but bounded (a burst of four seconds
of a 30 fps drag, then 15 a second)."""
READ: Final = EventClass("read", 10.0, 60.0)
"""Reads that write nothing (the chat history after a reconnect)."""

CLASS_OF_EVENT: Final[Mapping[str, EventClass]] = {"chat_history": READ}
"""Events whose class is not their action's (``chat_history`` is ``room.chat`` but writes
nothing)."""

CLASS_OF_ACTION: Final[Mapping[str, EventClass]] = {
    "room.join": CONTROL,
    "room.publish": SIGNAL,
    "room.subscribe": SIGNAL,
    "room.signal": SIGNAL,
    "room.mute": CONTROL,
    "room.leave": CONTROL,
    "room.chat": CHAT,
    "room.viewer_sync": VIEWER,
    "room.control": CONTROL,
}


class EventLimits:
    """The buckets of every socket, by (socket id, class); forget a socket when it goes."""

    def __init__(self) -> None:
        self._buckets = {
            c.name: TokenBuckets(c.rate, c.burst) for c in (SIGNAL, CONTROL, CHAT, VIEWER, READ)
        }
        self.summary = RefusalSummary(60.0)

    def take(self, sid: str, event: str, action: str) -> tuple[EventClass, float]:
        """The event's class and 0.0 if it may run, else the seconds until it could."""
        kind = CLASS_OF_EVENT.get(event) or CLASS_OF_ACTION.get(action, CONTROL)
        return kind, self._buckets[kind.name].take(sid)
