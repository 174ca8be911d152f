"""Session: one connected socket, its identity, and the one ordered queue of its events.

python-socketio runs each event in its own task, so two events of one client could interleave
(an answer overtaking its offer, a candidate before its description). Every event, and every
server-side job for this participant (a renegotiation), goes through this queue instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consult.actor import Actor

from .errors import SignalingError, error_payload

logger = logging.getLogger(__name__)

#: Events waiting for one participant beyond this are refused with ``busy``.
QUEUE_SIZE = 32

Job = Callable[[], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of a socket, from the verified join token."""

    visit_id: str
    user_id: str
    role: str
    name: str


class Session:
    """A connected participant: identity, transports, negotiation state and its event queue."""

    def __init__(self, sid: str, identity: Identity, actor: Actor) -> None:
        self.sid = sid
        self.identity = identity
        self.actor = actor  # for the permission table and the audit chain
        self.joined = False
        self.subscribed = False
        self.offer_revision = 0
        self.awaiting_answer = False
        self.renegotiation_queued = False
        self.audio_muted = False
        self.video_muted = False
        # "connected", or "reconnecting" from a lost media path until a new connection is up
        self.media_state = "connected"
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[dict[str, Any]] | None]] = (
            asyncio.Queue(QUEUE_SIZE)
        )
        self._closed = False
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def participant_id(self) -> str:
        return self.identity.user_id

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self) -> dict[str, Any]:
        """The participant as the room's other members see it."""
        return {
            "id": self.participant_id,
            "name": self.identity.name,
            "role": self.identity.role,
            "audio_muted": self.audio_muted,
            "video_muted": self.video_muted,
            "state": self.media_state,
        }

    async def submit(self, job: Job) -> dict[str, Any]:
        """Run ``job`` after every job queued before it; return its ack."""
        if self._closed:
            return error_payload(SignalingError("invalid_state", "the session is closed"))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((job, future))
        except asyncio.QueueFull:
            return error_payload(SignalingError("busy", "too many events queued"))
        return await future

    def post(self, job: Job) -> None:
        """Queue a server-side job that nobody awaits (e.g. a renegotiation)."""
        if self._closed:
            return
        try:
            self._queue.put_nowait((job, None))
        except asyncio.QueueFull:
            logger.warning("session queue full; job dropped", extra={"sid": self.sid})

    async def _run(self) -> None:
        while True:
            job, future = await self._queue.get()
            try:
                result = await job()
                ack: dict[str, Any] = {"ok": True, **(result or {})}
            except asyncio.CancelledError:
                if future is not None and not future.done():
                    future.set_result(
                        error_payload(SignalingError("invalid_state", "the session closed"))
                    )
                raise
            except Exception as exc:
                ack = error_payload(exc)
            if future is not None and not future.done():
                future.set_result(ack)

    async def close(self) -> None:
        """Stop the queue (pending events get an error ack). Transports are closed by the Room."""
        if self._closed:
            return
        self._closed = True
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        while not self._queue.empty():
            _job, future = self._queue.get_nowait()
            if future is not None and not future.done():
                future.set_result(
                    error_payload(SignalingError("invalid_state", "the session closed"))
                )
