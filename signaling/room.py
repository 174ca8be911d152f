"""Room: the participants of one visit and its media Router; what joining, publishing and
subscribing do to the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from media import Consumer, MediaWorker, Producer, Router, Transport

from .errors import SignalingError
from .session import Session

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]


class Room:
    """One visit's live room. Every method runs inside the calling participant's queue."""

    def __init__(self, visit_id: str, router: Router, emit: Emit) -> None:
        self.visit_id = visit_id
        self.router = router
        self._emit = emit
        self.sessions: dict[str, Session] = {}  # participant id -> session

    @property
    def empty(self) -> bool:
        return not self.sessions

    # --- membership --------------------------------------------------------------------------

    def add(self, session: Session) -> Session | None:
        """Add ``session``; returns the session it replaces (same participant, older socket)."""
        previous = self.sessions.get(session.participant_id)
        self.sessions[session.participant_id] = session
        session.joined = True
        return previous if previous is not session else None

    async def remove(self, session: Session) -> None:
        """Take ``session`` out: its media closes, the others renegotiate without it."""
        if self.sessions.get(session.participant_id) is session:
            del self.sessions[session.participant_id]
        session.joined = False
        for transport in (session.publish, session.subscribe):
            if transport is not None:
                await transport.close()
        session.publish = None
        session.subscribe = None
        session.subscribed = False
        session.awaiting_answer = False

    def participants(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.sessions.values()]

    async def broadcast_participants(self) -> None:
        await self._emit("participants", {"participants": self.participants()}, self.visit_id)

    # --- publish -----------------------------------------------------------------------------

    async def publish(self, session: Session, offer_sdp: str) -> str:
        if session.publish is None or session.publish.closed:
            session.publish = self.router.create_transport(
                "publish", app_data={"participant_id": session.participant_id}
            )
        result = await self.router.publish(session.publish, offer_sdp)
        for producer in result.added:
            producer.app_data["participant_id"] = session.participant_id
            for other in self.sessions.values():
                if other is not session and other.subscribed:
                    self._consume(other, producer)
        return result.answer_sdp

    # --- subscribe ---------------------------------------------------------------------------

    def start_subscription(self, session: Session) -> None:
        if session.subscribed:
            raise SignalingError("invalid_state", "already subscribed")
        transport = self.router.create_transport(
            "subscribe", app_data={"participant_id": session.participant_id}
        )
        session.subscribe = transport
        session.subscribed = True
        transport.on_negotiation_needed(lambda _t: self._queue_renegotiation(session))
        for producer in self.router.producers:
            if producer.app_data.get("participant_id") != session.participant_id:
                self._consume(session, producer)

    def _consume(self, session: Session, producer: Producer) -> Consumer | None:
        transport = session.subscribe
        if transport is None or transport.closed or producer.closed:
            return None
        return self.router.consume(
            transport,
            producer,
            app_data={"participant_id": producer.app_data.get("participant_id")},
        )

    def _queue_renegotiation(self, session: Session) -> None:
        if session.renegotiation_queued or session.closed:
            return
        session.renegotiation_queued = True

        async def job() -> None:
            session.renegotiation_queued = False
            await self.renegotiate(session)

        session.post(job)

    async def make_offer(self, session: Session) -> dict[str, Any] | None:
        """A new subscribe offer for ``session``, or None if it has nothing to receive yet."""
        transport = session.subscribe
        if transport is None or transport.closed:
            return None
        if not transport.consumers and not transport.inactive_mids():
            return None
        sdp = await transport.create_offer()
        session.offer_revision += 1
        session.awaiting_answer = True
        return {
            "revision": session.offer_revision,
            "type": "offer",
            "sdp": sdp,
            "tracks": describe_tracks(transport),
        }

    async def renegotiate(self, session: Session) -> None:
        """Send the next subscribe offer, unless one is still waiting for its answer."""
        if session.awaiting_answer or not session.joined:
            return
        transport = session.subscribe
        if transport is None or transport.closed or not transport.needs_negotiation:
            return
        offer = await self.make_offer(session)
        if offer is not None:
            await self._emit("subscribe_offer", offer, session.sid)

    async def apply_answer(self, session: Session, revision: int, sdp: str) -> None:
        transport = session.subscribe
        if transport is None or not session.awaiting_answer:
            raise SignalingError("invalid_state", "there is no subscribe offer to answer")
        if revision != session.offer_revision:
            raise SignalingError(
                "stale_answer", f"answer for offer {revision}, the last is {session.offer_revision}"
            )
        await transport.apply_answer(sdp)
        session.awaiting_answer = False
        if transport.needs_negotiation:
            self._queue_renegotiation(session)

    async def close(self) -> None:
        for session in tuple(self.sessions.values()):
            await self.remove(session)
        await self.router.close()


def describe_tracks(transport: Transport) -> list[dict[str, Any]]:
    """Which subscribe mid carries whose track, for the client to build its tiles."""
    tracks = [
        {
            "mid": c.mid,
            "participant_id": c.app_data.get("participant_id"),
            "kind": c.kind,
            "active": True,
        }
        for c in transport.consumers
    ]
    tracks += [
        {"mid": mid, "participant_id": None, "kind": None, "active": False}
        for mid in transport.inactive_mids()
    ]
    return tracks


class Rooms:
    """The live rooms of this process, by visit id."""

    def __init__(self, worker: MediaWorker, emit: Emit) -> None:
        self._worker = worker
        self._emit = emit
        self._rooms: dict[str, Room] = {}

    def get(self, visit_id: str) -> Room:
        room = self._rooms.get(visit_id)
        if room is None or room.router.closed:
            room = Room(visit_id, self._worker.get_router(visit_id), self._emit)
            self._rooms[visit_id] = room
        return room

    async def discard_if_empty(self, room: Room) -> None:
        if room.empty and self._rooms.get(room.visit_id) is room:
            del self._rooms[room.visit_id]
            await room.close()
            await self._worker.close_router(room.visit_id)

    def __len__(self) -> int:
        return len(self._rooms)

    async def close(self) -> None:
        for room in tuple(self._rooms.values()):
            await room.close()
        self._rooms.clear()
