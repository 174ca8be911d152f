"""Room: the participants of one room (a visit's, a consultation's), their subscribe-offer
bookkeeping, and the room's media; keyed by the domain's room id.

The media (wherever it lives) is reached through the room API (media/room_api.py) of the media
pool's room: callers use it as is (:meth:`Room.live_media`); this module keeps what only
signaling knows: sockets, offer revisions, who is told what.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from consult.models import RoomRole
from media.errors import MediaError
from media.pool import MediaPool
from media.room_api import RoomApi
from recording import Recorder, SessionRecording
from turn import ProviderHealth

from .errors import SignalingError
from .session import Session

#: Whose video a subscriber keeps when its link cannot carry every stream (the room API's
#: ``set_priority``): the clinicians' first, then the patient side's speakers'; a companion's
#: or an observer's last. A patient on a poor link keeps seeing the doctor.
VIDEO_PRIORITY: dict[str, int] = {
    RoomRole.DOCTOR: 3,
    RoomRole.INVITER: 3,
    RoomRole.INVITEE: 3,
    RoomRole.PATIENT: 2,
    RoomRole.GUARDIAN: 2,
    RoomRole.INTERPRETER: 2,
}

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], str], Coroutine[Any, Any, None]]


class Room:
    """One room's live state. Every method runs inside the calling participant's queue."""

    def __init__(
        self,
        room_id: str,
        emit: Emit,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        providers: ProviderHealth | None = None,
    ) -> None:
        self.room_id = room_id
        self.providers = providers or ProviderHealth()
        self._emit = emit
        self._spawn = spawn
        self.media: RoomApi | None = None
        self.ready = asyncio.Event()  # set once the media is open (or failed to open)
        self.on_lost: Callable[[Room, str], None] | None = None
        self.sessions: dict[str, Session] = {}  # participant id -> session
        self.recording: SessionRecording | None = None
        self.closed = False
        #: A consultation room's patient's side, ``{id, room_role, stepped_out}`` each: who its
        #: host may ask out for a part among clinicians, and who is out now (read from the
        #: room's participations on each join and each change; empty for other rooms).
        self.patient_side: list[dict[str, Any]] = []

    def record(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Put a room event on the recording's timeline (ids only, never a patient's name)."""
        if self.recording is not None:
            try:
                self.recording.event(event, data)
            except OSError:
                logger.exception("timeline write failed", extra={"room_id": self.room_id})

    @property
    def empty(self) -> bool:
        return not self.sessions

    def live_media(self) -> RoomApi:
        """The room's media, addressed by participant id; ``invalid_state`` once closed."""
        if self.media is None or self.closed:
            raise SignalingError("invalid_state", "the room is closed")
        return self.media

    # --- media events ------------------------------------------------------------------------

    def on_media_event(self, name: str, data: dict[str, Any]) -> None:
        """Events from the room's media; runs outside any participant's queue."""
        if name == "room_lost":
            if self.on_lost is not None:
                self.on_lost(self, str(data.get("reason", "media_lost")))
        elif name == "active_speaker":
            self._spawn(self._emit("active_speaker", dict(data), self.room_id))
        elif name == "video_paused":
            # only that subscriber: its own network cannot carry this participant's video
            session = self.sessions.get(str(data.get("participant_id")))
            if session is not None:
                payload = {
                    "participant": data.get("publisher_id"),
                    "paused": bool(data.get("paused")),
                }
                self._spawn(self._emit("video_paused", payload, session.sid))
        elif name == "media_lost":
            session = self.sessions.get(str(data.get("participant_id")))
            if session is not None:
                lost = dict(data)
                session.post(functools.partial(self._media_lost, session, lost))
        elif name == "media_connected":
            session = self.sessions.get(str(data.get("participant_id")))
            if session is not None:
                session.post(functools.partial(self._media_back, session))
        elif name == "negotiation_needed":
            session = self.sessions.get(str(data.get("participant_id")))
            if session is not None:
                self._queue_renegotiation(session)
        elif name == "path_switched":
            self._path_switched(data)
        elif name == "path_state":
            self.providers.path_state(
                str(data.get("address")), bool(data.get("alive")), str(data.get("transport_id"))
            )

    def _path_switched(self, data: dict[str, Any]) -> None:
        """A participant's Transport moved onto another provider: provider health, and the
        gap on the recording's timeline (how long the dead path was silent, and where from)."""
        participant_id = str(data.get("participant_id"))
        gap_ms = int(data.get("silent_ms") or 0)
        failover = self.providers.path_switched(
            str(data.get("from_address")),
            str(data.get("to_address")),
            gap_ms,
            participant_id=participant_id,
            transport=str(data.get("role")),
            transport_id=str(data.get("transport_id")),
        )
        self.record(
            "path_failover",
            {
                "participant_id": participant_id,
                "transport": data.get("role"),
                "from_provider": failover.from_provider,
                "to_provider": failover.to_provider,
                "gap_ms": gap_ms,
            },
        )

    async def _media_lost(self, session: Session, data: dict[str, Any]) -> None:
        """The participant's media path died and the media closed its connections: tell it
        (its page makes new ones) and the others (its tile says it is reconnecting)."""
        if not session.joined or self.sessions.get(session.participant_id) is not session:
            return
        self._media_reset(session)
        self.record(
            "media_lost",
            {
                "participant_id": session.participant_id,
                "role": session.room_role,
                "transport": data.get("role"),
                "reason": data.get("reason"),
            },
        )
        await self._emit(
            "media_lost",
            {
                "reason": data.get("reason"),
                "transport": data.get("role"),
                "silent_ms": data.get("silent_ms"),
            },
            session.sid,
        )
        await self.broadcast_participants()

    def _media_reset(self, session: Session) -> None:
        session.subscribed = False
        session.awaiting_answer = False
        session.media_state = "reconnecting"

    async def _media_back(self, session: Session) -> None:
        if not session.joined or session.media_state == "connected":
            return
        session.media_state = "connected"
        self.record("media_back", {"participant_id": session.participant_id})
        await self.broadcast_participants()

    async def restart_media(self, session: Session) -> None:
        """The page found its connections dead by itself: close them on the server too, so
        that its next publish and subscribe make new ones."""
        await self.live_media().restart(session.participant_id)
        self._media_reset(session)
        self.record("media_restart", {"participant_id": session.participant_id})
        await self.broadcast_participants()

    # --- membership --------------------------------------------------------------------------

    def add(self, session: Session) -> Session | None:
        """Add ``session``; returns the session it replaces (same participant, older socket)."""
        previous = self.sessions.get(session.participant_id)
        self.sessions[session.participant_id] = session
        session.joined = True
        return previous if previous is not session else None

    def take_over(self, session: Session, previous: Session) -> None:
        """``session``, a new socket of ``previous``'s page, carries on with its media: the
        subscribe negotiation where it stood, the mutes, the media state (a resume, docs/
        providers.md "Signaling survives too"). Then :meth:`add` it and :meth:`remove` the
        previous one with ``keep_media``."""
        for name in (
            "subscribed",
            "offer_revision",
            "awaiting_answer",
            "audio_muted",
            "video_muted",
            "media_state",
            "last_offer",
        ):
            setattr(session, name, getattr(previous, name))
        previous.subscribed = False
        previous.awaiting_answer = False

    def resend_offer(self, session: Session) -> None:
        """After a resume: the subscribe offer the previous socket may have missed goes again
        (the page answers an offer it already applied the same way), and changes made
        meanwhile are offered once it is answered."""
        offer = session.last_offer
        if session.awaiting_answer and offer is not None:
            self._spawn(self._emit("subscribe_offer", offer, session.sid))
        else:
            self._queue_renegotiation(session)

    async def remove(
        self,
        session: Session,
        *,
        replaced: bool = False,
        returning: bool = False,
        keep_media: bool = False,
    ) -> None:
        """Take ``session`` out: its media closes, the others renegotiate without it.

        ``replaced``: its participant already joined again on another socket, which has not
        published yet (this runs inside that socket's join); the old media goes all the same,
        and the others keep their streams of it for the new socket's tracks.
        ``returning``: the socket dropped without a leave; the participant may come back.
        ``keep_media``: the new socket took the media over (:meth:`take_over`): it stays.
        """
        current = self.sessions.get(session.participant_id)
        if current is session:
            del self.sessions[session.participant_id]
        session.joined = False
        if keep_media:
            return
        if (current is session or replaced) and self.media is not None and not self.closed:
            await self._log_drops(session)
            await self.media.leave(session.participant_id, returning=replaced or returning)
        session.subscribed = False
        session.awaiting_answer = False

    def participants(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.sessions.values()]

    # --- hostile datagrams -------------------------------------------------------------------

    async def datagram_drops(self, participant_id: str | None = None) -> list[dict[str, Any]]:
        """Datagrams dropped at the room's connections, by reason (media/datagram_guard.py):
        a row per participant (or only ``participant_id``) and transport, ``{room,
        participant_id, role, transport, total, dropped: {reason: n}}`` (non-zero reasons)."""
        stats = await self.live_media().datagram_stats()
        rows = []
        for pid, transports in sorted(stats.items()):
            if participant_id is not None and pid != participant_id:
                continue
            session = self.sessions.get(pid)
            for transport, counts in sorted(transports.items()):
                dropped = {reason: n for reason, n in counts.items() if n}
                rows.append(
                    {
                        "room": self.room_id,
                        "participant_id": pid,
                        "role": session.room_role if session is not None else None,
                        "transport": transport,
                        "total": sum(dropped.values()),
                        "dropped": dropped,
                    }
                )
        return rows

    async def _log_drops(self, session: Session) -> None:
        """What the participant's connections dropped, into the server log as they close."""
        try:
            rows = await self.datagram_drops(session.participant_id)
        except MediaError:  # its worker is gone: nothing to read
            return
        for row in rows:
            if row["total"]:
                logger.warning(
                    "%d datagram(s) dropped at %s's %s transport in room %s: %s",
                    row["total"],
                    row["participant_id"],
                    row["transport"],
                    self.room_id,
                    row["dropped"],
                    extra={
                        "room_id": self.room_id,
                        "participant_id": row["participant_id"],
                        "dropped": row["dropped"],
                    },
                )

    def roster(self) -> dict[str, Any]:
        """The ``participants`` event's payload: who is here, and the patient's side."""
        return {"participants": self.participants(), "patient_side": list(self.patient_side)}

    async def broadcast_participants(self) -> None:
        await self._emit("participants", self.roster(), self.room_id)

    # --- publish / subscribe -----------------------------------------------------------------

    async def subscribe(self, session: Session) -> dict[str, Any] | None:
        if session.subscribed:
            raise SignalingError("invalid_state", "already subscribed")
        await self.live_media().subscribe(session.participant_id)
        session.subscribed = True
        return await self.make_offer(session)

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
        offer = await self.live_media().create_offer(session.participant_id)
        if offer is None:
            return None
        session.offer_revision += 1
        session.awaiting_answer = True
        session.last_offer = {"revision": session.offer_revision, "type": "offer", **offer}
        return session.last_offer

    async def renegotiate(self, session: Session) -> None:
        """Send the next subscribe offer, unless one is still waiting for its answer."""
        if session.awaiting_answer or not session.joined or not session.subscribed:
            return
        if self.closed or not await self.live_media().needs_offer(session.participant_id):
            return
        offer = await self.make_offer(session)
        if offer is not None:
            await self._emit("subscribe_offer", offer, session.sid)

    async def apply_answer(self, session: Session, revision: int, sdp: str) -> None:
        if not session.awaiting_answer:
            raise SignalingError("invalid_state", "there is no subscribe offer to answer")
        if revision != session.offer_revision:
            raise SignalingError(
                "stale_answer", f"answer for offer {revision}, the last is {session.offer_revision}"
            )
        media = self.live_media()
        await media.apply_answer(session.participant_id, sdp)
        session.awaiting_answer = False
        if await media.needs_offer(session.participant_id):
            self._queue_renegotiation(session)


#: ``on_sealed(room_id, manifest)``: a room's recording was sealed (for the audit chain).
OnSealed = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]


class Rooms:
    """The live rooms of this process, by room id. Each opening of a room is recorded."""

    def __init__(
        self,
        pool: MediaPool,
        emit: Emit,
        recorder: Recorder | None = None,
        on_sealed: OnSealed | None = None,
        *,
        providers: ProviderHealth | None = None,
    ) -> None:
        self._providers = providers
        self._pool = pool
        self._emit = emit
        self._recorder = recorder
        self._on_sealed = on_sealed
        self._rooms: dict[str, Room] = {}
        self._unsealed: dict[int, Room] = {}  # rooms whose recording is still open
        self._seals: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: dict[str, asyncio.Event] = {}  # room id -> set once its media closed

    async def get(self, room_id: str) -> Room:
        closing = self._closing.get(room_id)
        if closing is not None:
            # the room's previous media is still closing (everyone was just taken out): a new
            # room must not open on the router that is about to close
            await closing.wait()
        room = self._rooms.get(room_id)
        if room is None or room.closed:
            room = Room(room_id, self._emit, self._spawn, self._providers)
            room.on_lost = self._room_lost
            self._rooms[room_id] = room
            try:
                # a busy media server refuses before a recording is opened for nothing
                await self._pool.check_capacity()
                options = None
                if self._recorder is not None:
                    room.recording = await self._open_recording(room_id)
                if room.recording is not None:
                    self._unsealed[id(room)] = room
                    options = room.recording.tap_options()
                room.media = await self._pool.open_room(room_id, room.on_media_event, options)
            except BaseException:
                room.closed = True
                self._rooms.pop(room_id, None)
                if room.recording is not None:
                    self._spawn_seal(room)
                raise
            finally:
                room.ready.set()
        await room.ready.wait()
        if room.closed:
            raise SignalingError("invalid_state", "the room closed")
        return room

    def find(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def live(self) -> list[Room]:
        """The rooms open now, with their media."""
        return [r for r in self._rooms.values() if not r.closed and r.media is not None]

    async def discard_if_empty(self, room: Room) -> None:
        if room.empty and self._rooms.get(room.room_id) is room:
            await self.discard(room)

    async def discard(self, room: Room) -> None:
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
        room.closed = True
        if not self._pool.closed:
            closing = self._closing[room.room_id] = asyncio.Event()
            try:
                await self._pool.close_room(room.room_id)
            finally:
                closing.set()
                if self._closing.get(room.room_id) is closing:
                    del self._closing[room.room_id]
            await self._seal(room)  # its recorders closed with its media

    async def _open_recording(self, room_id: str) -> SessionRecording | None:
        """The room's recording, or None when it cannot be written (a full or read-only disk):
        care goes on, the error is logged, and the join ack tells the pages (no badge)."""
        assert self._recorder is not None
        try:
            return await self._recorder.open(room_id)
        except OSError:
            logger.exception("the room cannot be recorded", extra={"room_id": room_id})
            return None

    async def _seal(self, room: Room, *, interrupted: bool = False) -> None:
        if self._unsealed.pop(id(room), None) is None or room.recording is None:
            return
        if self._recorder is None:
            return
        try:
            manifest = await self._recorder.seal(room.recording, interrupted=interrupted)
        except Exception:
            logger.exception("recording could not be sealed", extra={"room_id": room.room_id})
            return
        if self._on_sealed is not None:
            try:
                await self._on_sealed(room.room_id, manifest)
            except Exception:  # the manifest is on disk; verify will say the audit lacks it
                logger.exception("sealed head not audited", extra={"room_id": room.room_id})

    def _spawn_seal(self, room: Room, *, interrupted: bool = False) -> None:
        """Seal in the background; shutdown waits for it (never cancels it: a seal cut short
        would leave a manifest whose head never reached the audit chain)."""
        task = asyncio.get_running_loop().create_task(self._seal(room, interrupted=interrupted))
        self._seals.add(task)
        task.add_done_callback(self._seals.discard)

    async def seal_all(self) -> None:
        """Seal the recordings of rooms closed by shutdown (after the media pool closed), and
        wait for the seals already under way."""
        for room in tuple(self._unsealed.values()):
            await self._seal(room)
        await asyncio.gather(*self._seals, return_exceptions=True)

    def _room_lost(self, room: Room, reason: str) -> None:
        """The room's media is gone (its worker died): end the room, tell its participants.

        They stay connected and may join again, which opens the room on a live worker.
        """
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
        room.closed = True
        for session in room.sessions.values():
            session.joined = False
            session.subscribed = False
            session.awaiting_answer = False
        room.sessions.clear()
        room.record("room_lost", {"reason": reason})
        self._spawn_seal(room, interrupted=True)
        logger.error("room media lost", extra={"room_id": room.room_id, "reason": reason})
        self._spawn(self._emit("room_closed", {"reason": reason}, room.room_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task these Rooms own (cancelled at close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._rooms)

    async def close(self) -> None:
        for room in tuple(self._rooms.values()):
            room.closed = True
        self._rooms.clear()
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
