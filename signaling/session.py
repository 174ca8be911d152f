"""Session: one connected socket, its identity, and the one ordered queue of its events.

python-socketio runs each event in its own task, so two events of one client could interleave
(an answer overtaking its offer, a candidate before its description). Every event, and every
server-side job for this participant (a renegotiation), goes through this queue instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from consult.actor import Actor

from .errors import SignalingError, error_payload

logger = logging.getLogger(__name__)

#: Events waiting for one participant beyond this are refused with ``busy``.
QUEUE_SIZE = 32

Job = Callable[[], Awaitable[dict[str, Any] | None]]


class Session:
    """A connected participant: identity, transports, negotiation state and its event queue."""

    def __init__(self, sid: str, actor: Actor) -> None:
        if actor.room_id is None or actor.user_id is None or actor.room_role is None:
            raise ValueError("a socket's actor is a join token's: bound to a room, in a role")
        self.sid = sid
        self.actor = actor  # who, in which room, as what: for the policy and the audit chain
        self.room_id: str = actor.room_id
        self.room_role: str = actor.room_role
        self.name: str = actor.display_name or ""
        #: What the room belongs to, ``(subject_type, subject_id)`` (set on connect): a visit's
        #: state change reaches the sockets of its room without asking the database.
        self.subject: tuple[str, str] | None = None
        self.joined = False
        self.subscribed = False
        self.offer_revision = 0
        self.awaiting_answer = False
        self.renegotiation_queued = False
        self.audio_muted = False
        self.video_muted = False
        # "connected", or "reconnecting" from a lost media path until a new connection is up
        self.media_state = "connected"
        #: Given to the page in the join ack: a new socket of the same page that presents it
        #: takes over this one's media (``join`` with ``resume``) instead of rebuilding it.
        self.resume_key = secrets.token_urlsafe(18)
        #: The last subscribe offer sent (sent again to a resuming socket that may have missed it).
        self.last_offer: dict[str, Any] | None = None
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[dict[str, Any]] | None]] = (
            asyncio.Queue(QUEUE_SIZE)
        )
        self._closed = False
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def participant_id(self) -> str:
        assert self.actor.user_id is not None
        return self.actor.user_id

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self) -> dict[str, Any]:
        """The participant as the room's other members see it."""
        return {
            "id": self.participant_id,
            "name": self.name,
            "role": self.room_role,
            "room_role": self.room_role,
            "label": self.name,
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
            self._queue.task_done()

    async def close(self, *, drain_s: float = 0.0) -> None:
        """Stop the queue (pending events get an error ack). Transports are closed by the Room.

        ``drain_s``: first let the jobs already queued run, for at most this long (a socket
        whose participant resumes on another one: what it had sent still counts, and no job is
        cut off halfway through a negotiation).
        """
        if self._closed:
            return
        self._closed = True
        if drain_s > 0:
            try:
                await asyncio.wait_for(self._queue.join(), drain_s)
            except TimeoutError:
                logger.warning("session queue not drained in time", extra={"sid": self.sid})
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
