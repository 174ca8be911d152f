"""The room API: what signaling may do with one room's media, declared once, here.

:class:`media.room.RoomMedia` implements it next to the room's Router. The rest is derived from
this declaration: the method table of the channel to a media worker process
(media/worker_process.py) and :class:`media.remote.RemoteRoom`, the proxy that reaches a room on
such a worker (media/remote.py). So a method declared here is callable on a room wherever it
lives, with nothing else to write. Every argument and result is plain data (JSON): a call means
the same in this process and across the channel.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Protocol, runtime_checkable

#: The channel's own name for the room a request is for: no declared parameter may take it.
RESERVED_PARAMETERS = frozenset({"room"})


@runtime_checkable
class RoomApi(Protocol):
    """One room's media, addressed by participant id."""

    @property
    def id(self) -> str:
        """The room id."""
        ...

    async def admit(self, participant_id: str) -> None:
        """Raise ``ServerBusy`` if a participant new to the room cannot be taken now (its worker
        is overloaded); those already in the room, or coming back to it, are never refused."""
        ...

    async def media_addresses(self) -> list[str]:
        """The addresses the room's Transports gather on (one per provider in production):
        ``publish(path=p)`` makes a connection on the ``p``-th alone (0 or 1)."""
        ...

    async def publish(self, participant_id: str, offer_sdp: str, path: int | None = None) -> str:
        """Apply a participant's (re-)offer; its new tracks go to every other subscriber.
        ``path`` (0 or 1): a new connection on that provider alone, one of the participant's
        two; its streams are carried by one of them at a time (the other is the hot standby).
        Returns the answer."""
        ...

    async def subscribe(self, participant_id: str) -> None:
        """Start receiving every other participant's tracks, now and as they come."""
        ...

    async def needs_offer(self, participant_id: str) -> bool:
        """The participant's subscribe connection has changes to offer."""
        ...

    async def create_offer(self, participant_id: str) -> dict[str, Any] | None:
        """The next subscribe offer ``{sdp, tracks}``, or None while there is nothing to send."""
        ...

    async def apply_answer(self, participant_id: str, answer_sdp: str) -> None:
        """The participant's answer to its last subscribe offer."""
        ...

    async def add_ice_candidate(
        self,
        participant_id: str,
        target: Literal["publish", "subscribe", "standby"],
        candidate: dict[str, Any] | None,
    ) -> None:
        """A trickled candidate of the participant's publish (path 0), standby (path 1) or
        subscribe connection (None: the end of them)."""
        ...

    async def set_muted(self, participant_id: str, kind: str, muted: bool) -> None:
        """Stop (or restart) forwarding the participant's tracks of ``kind``, whatever it sends."""
        ...

    async def set_priority(self, participant_id: str, priority: int) -> None:
        """Whose video a subscriber keeps when its link cannot carry every stream: in each
        subscriber's share of its estimate, the participant's video is served before video of
        a lower ``priority`` (default 1; the same priority: in the order the streams came)."""
        ...

    async def restart(self, participant_id: str) -> None:
        """The participant's page found its connections dead: close them (the others keep its
        streams) so that it can make new ones."""
        ...

    async def media_intact(self, participant_id: str) -> bool:
        """The participant has connections here and none of them was closed (by a lost path, a
        restart or a leave): a new signaling socket of its page may carry on with them."""
        ...

    async def leave(self, participant_id: str, *, returning: bool = False) -> None:
        """Close the participant's connections; ``returning``: it is expected back, and the
        others' streams of it wait for it a while."""
        ...

    async def datagram_stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Datagrams dropped at each participant's connections, by reason:
        ``{participant_id: {"publish": {reason: n}, "subscribe": {...}}}``
        (docs/hostile-input.md)."""
        ...

    async def dump(self) -> dict[str, Any]:
        """What the room's media holds, for diagnostics and leak checks."""
        ...


def room_methods(api: type[RoomApi] = RoomApi) -> dict[str, inspect.Signature]:
    """The methods ``api`` declares (its own and its bases'), by name, with their signatures.

    ``api`` is :class:`RoomApi` or a protocol extending it. Every method is a coroutine
    function; its parameters are plain data.
    """
    methods: dict[str, inspect.Signature] = {}
    for cls in reversed(api.__mro__):
        if RoomApi not in cls.__mro__:
            continue
        for name, member in vars(cls).items():
            if name.startswith("_") or isinstance(member, property):
                continue
            if not inspect.iscoroutinefunction(member):
                raise TypeError(f"{cls.__name__}.{name}: the room API has only async methods")
            signature = inspect.signature(member)
            reserved = RESERVED_PARAMETERS & set(signature.parameters)
            if reserved:
                raise TypeError(f"{cls.__name__}.{name}: {sorted(reserved)} is reserved")
            methods[name] = signature
    return methods
