"""The socket.io server: authenticates sockets, queues each participant's events, answers acks.

Protocol: docs/signaling.md. Every handler returns an ack; nothing raised in a handler reaches
the client as a traceback, and one participant's bad input never touches another's media.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import socketio

from consult import access, events, rooms
from consult.audit import append
from consult.db import Database
from consult.errors import ConsultError, RateLimited
from consult.imaging.store import ImagingStore
from consult.models import AuditResult
from consult.permissions import SOCKET_EVENT_ACTIONS
from consult.tokens import check_no_query_token
from media.errors import MediaError
from media.pool import MediaPool
from recording import Recorder
from turn import IceServerSource, ProviderHealth

from . import messages as m
from .chat import ChatComponent, RecordHook
from .errors import SignalingError, bad_request, error_payload
from .limits import EventLimits
from .origins import FAILOVER_PING_INTERVAL_S, origin_policy
from .packets import MALFORMED, BoundedPacket
from .review import REVIEW_EVENTS, ReviewComponent
from .room import VIDEO_PRIORITY, Room, Rooms
from .session import Session
from .updates import Updates

logger = logging.getLogger(__name__)

Handler = Callable[[Session, Any], Awaitable[dict[str, Any] | None]]

#: A resuming page's previous socket: how long the events it had sent may still run before the
#: new one takes over.
RESUME_DRAIN_S = 5.0
#: A socket that closed without a ``leave`` (a proxy restart, a page moving to another
#: provider's URL that closed the old socket first): how long its participant's media waits
#: for a new socket of the page to resume it. A socket that went silent keeps its media as
#: long, until engine.io's ping timeout (20 s) drops it.
RESUME_HOLD_S = 20.0
#: How often a held participant's media is checked: gone (the page closed with it), the hold
#: ends at once.
HOLD_CHECK_S = 1.0


def _refusal(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A refused connection; the browser sees ``err.message`` and ``err.data = {code, message}``."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


class SignalingServer:
    """python-socketio ``AsyncServer`` bound to the media worker and the database."""

    def __init__(
        self,
        *,
        db: Database,
        pool: MediaPool,
        token_secret: str,
        on_chat_record: RecordHook | None = None,
        client_ice_servers: IceServerSource | None = None,
        client_manager: socketio.AsyncManager | None = None,
        recorder: Recorder | None = None,
        providers: ProviderHealth | None = None,
        imaging: ImagingStore | None = None,
    ) -> None:
        self._db = db
        self.providers = providers or ProviderHealth()
        self._ice_servers = client_ice_servers or IceServerSource()
        self._secret = token_secret
        urls = [u["url"] for u in self.providers.signaling_urls()]
        # a page reconnects through another provider's URL when its socket goes silent: with
        # two or more, every socket is pinged each second so that a page notices in ~2.5 s
        # (docs/providers.md); otherwise engine.io's 25 s
        self.ping_interval_s = FAILOVER_PING_INTERVAL_S if len(urls) > 1 else 25
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=client_manager,
            # Larger payloads are refused by our own check with an error code; beyond this the
            # transport drops the connection.
            max_http_buffer_size=1024 * 1024,
            # same origin (scheme://host of the request, or the proxy's forwarded one) or a
            # page of another of our providers' URLs (signaling/origins.py): another site's
            # page cannot open a socket with a token it got hold of
            cors_allowed_origins=origin_policy(urls),
            ping_interval=self.ping_interval_s,
            # JSON nesting bounded before parsing: a 10,000-deep packet is one error, no trace
            serializer=BoundedPacket,
            logger=False,
            engineio_logger=False,
        )
        # engine.io starts tasks (e.g. one ping timer per socket) that it never cancels; we own
        # them so that shutdown leaves no task behind.
        self._io_tasks: set[asyncio.Future[Any]] = set()
        start_background_task = self.sio.eio.start_background_task

        def tracked_background_task(target: Any, *args: Any, **kwargs: Any) -> Any:
            task = start_background_task(target, *args, **kwargs)
            self._io_tasks.add(task)
            task.add_done_callback(self._io_tasks.discard)
            return task

        self.sio.eio.start_background_task = tracked_background_task  # type: ignore[method-assign]
        self.rooms = Rooms(
            pool, self._emit, recorder, self.recording_sealed, providers=self.providers
        )
        self.sessions: dict[str, Session] = {}
        # sessions whose socket closed without a leave, kept (in ``sessions`` too) so that a
        # new socket of the page can resume their media; a task each ends the hold
        self._holds: dict[str, asyncio.Task[None]] = {}
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "publish": self._publish,
            "subscribe": self._subscribe,
            "subscribe_answer": self._subscribe_answer,
            "ice_candidate": self._ice_candidate,
            "mute": self._mute,
            "restart_media": self._restart_media,
            "leave": self._leave,
        }
        # chat goes onto the room's recording timeline (R22, R23) unless a hook is given
        self.chat = ChatComponent(db, self._emit, on_record=on_chat_record or self._timeline)
        self._handlers.update(self.chat.handlers())
        # review together: the shared viewer's sync (signaling/review.py, docs/review.md)
        self.review = ReviewComponent(db, self.sio, on_record=self._timeline, imaging=imaging)
        self._handlers.update(self.review.handlers())
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)
        self._limits = EventLimits()
        self._closed = False
        self._sockets_closed = False
        # domain events, after commit: a visit leaving the room, an account's access revoked
        self._relay_tasks: set[asyncio.Task[None]] = set()
        self.updates = Updates(self.sio, db)
        self._unsubscribe = events.subscribe(db, self._on_domain_event)

    def attach(self, app: Any) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    async def _emit(self, event: str, data: dict[str, Any], to: str) -> None:
        await self.sio.emit(event, data, to=to)

    async def _timeline(self, room_id: str, event: str, data: dict[str, Any]) -> None:
        """Put a room event (a chat message, a block) on its recording's timeline."""
        room = self.rooms.find(room_id)
        if room is not None:
            # the message's own server time stays, as ``sent_at``; ``at`` is the timeline's
            room.record(event, {("sent_at" if k == "at" else k): v for k, v in data.items()})

    async def datagram_drops(self) -> list[dict[str, Any]]:
        """Datagrams dropped at the connections of every room of this process, by reason
        (:meth:`Room.datagram_drops`); a room closing meanwhile, or whose worker died, is left
        out."""
        rows: list[dict[str, Any]] = []
        for room in self.rooms.live():
            try:
                rows += await room.datagram_drops()
            except (MediaError, SignalingError):
                continue
        return rows

    async def recording_sealed(self, room_id: str, manifest: dict[str, Any]) -> None:
        """A room's recording was sealed: its manifest head enters the audit chain (R22)."""
        await append(
            self._db,
            "recording.sealed",
            actor_role="system",
            object_type="room",
            object_id=room_id,
            details=sealed_details(manifest),
        )

    # --- connect / disconnect ----------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if self._closed:
            raise _refusal("shutting_down", "the server is shutting down")
        token = auth.get("token") if isinstance(auth, dict) else None
        source_ip = str(environ.get("REMOTE_ADDR") or "") or None
        try:
            # issue 13: a token in the handshake URL is refused even when valid (old links)
            check_no_query_token(str(environ.get("QUERY_STRING") or ""))
            actor = await rooms.authenticate_join(
                self._db, self._secret, token, source_ip=source_ip
            )
            # a patient enters only once admitted (R6); every answer is audited by consult
            await rooms.enter(self._db, actor, actor.room_id or "")
            subject = await rooms.subject_of(self._db, actor.room_id or "")
        except ConsultError as exc:
            logger.info("connection refused: %s", exc.code)
            raise _refusal(exc.code, str(exc)) from None
        except Exception:
            logger.exception("connection refused: internal error")
            raise _refusal("internal_error", "internal error") from None
        self.sessions[sid] = Session(sid, actor)
        self.sessions[sid].subject = subject
        logger.info(
            "connected",
            extra={"sid": sid, "room_id": actor.room_id, "participant_id": actor.user_id},
        )

    async def _on_disconnect(self, sid: str, *args: Any) -> None:
        session = self.sessions.get(sid)
        if session is None or sid in self._holds:
            return
        await self.review.leave(session)
        if await self._holdable(session) and self.sessions.get(sid) is session:
            # gone without a leave: the page may be on its way to another socket (a clean
            # close reaches us at once, where a cut one waits for engine.io's ping timeout)
            task = asyncio.get_running_loop().create_task(self._hold(session))
            self._holds[sid] = task
            task.add_done_callback(lambda _t: self._holds.pop(sid, None))
            logger.info("disconnected; media held for a resume", extra={"sid": sid})
            return
        if self.sessions.get(sid) is not session:
            return  # taken out while we asked (another join of the participant, an eviction)
        del self.sessions[sid]
        await self._drop(session)

    async def _drop(self, session: Session) -> None:
        """A socket gone for good: its queued events are refused, its media goes (the others
        keep their streams of it a while, for a re-join)."""
        await session.close()
        try:
            await self._leave_room(session, returning=True)
        except MediaError as exc:  # its media is gone already (a lost worker, shutdown)
            logger.info("media left with the socket: %s", exc.code, extra={"sid": session.sid})
        logger.info("disconnected", extra={"sid": session.sid})

    async def _holdable(self, session: Session) -> bool:
        """The participant is in its room (no ``leave``) with its media all up."""
        room = self.rooms.find(session.room_id) if session.joined else None
        if room is None or room.closed or room.sessions.get(session.participant_id) is not session:
            return False
        try:
            return await room.live_media().media_intact(session.participant_id)
        except (MediaError, SignalingError):
            return False

    async def _hold(self, session: Session) -> None:
        """Keep a closed socket's session and media for :data:`RESUME_HOLD_S`, while its media
        stays up, for a new socket of the page to resume (:meth:`_resume`); then drop it as any
        closed socket. A resume, another join of the participant or an eviction takes the
        session out of ``sessions`` and ends the hold without dropping anything."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESUME_HOLD_S
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(HOLD_CHECK_S, remaining))
            if self.sessions.get(session.sid) is not session:
                return
            if not await self._holdable(session):
                break
        if self.sessions.get(session.sid) is not session:
            return
        logger.info("no resume: media of the closed socket goes", extra={"sid": session.sid})
        del self.sessions[session.sid]
        self._holds.pop(session.sid, None)  # nothing cancels the drop halfway from here
        await self._drop(session)

    def _end_hold(self, sid: str) -> None:
        """The held session was taken over or replaced: its hold ends, nothing is dropped."""
        task = self._holds.pop(sid, None)
        if task is not None:
            task.cancel()

    # --- events ------------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, data: Any = None, *extra: Any) -> Any:
        session = self.sessions.get(sid)
        if session is None:
            return error_payload(SignalingError("invalid_state", "not connected"))
        if event == MALFORMED:
            return error_payload(bad_request("the packet is not JSON or nested too deep"))
        handler = self._handlers.get(event)
        if handler is None:
            return error_payload(SignalingError("unknown_event", "unknown event"))
        if extra:
            return error_payload(bad_request("one payload per event"))
        try:
            m.check_size(data)
        except SignalingError as exc:
            return error_payload(exc)

        action = SOCKET_EVENT_ACTIONS[event]
        kind, wait = self._limits.take(sid, event, action)
        if wait > 0:  # issue 13: a flood is refused before it reaches the room or the disk

            async def write(count: int) -> None:
                await append(
                    self._db,
                    "room.rate_limited",
                    actor=session.actor,
                    object_type="room",
                    object_id=session.room_id,
                    result=AuditResult.DENIED,
                    details={"class": kind.name, "event": event, "refused": count},
                )

            await self._limits.summary.refused((sid, kind.name), write)
            return error_payload(RateLimited(wait))

        async def job() -> dict[str, Any] | None:
            # every socket event is an action of the permission table (R34); a refusal is
            # recorded in the audit chain
            await access.authorize_event(self._db, session.actor, action, session.room_id)
            # the viewer follows a room's review without entering its media
            if event != "join" and not session.joined and event not in REVIEW_EVENTS:
                raise SignalingError("not_joined", f"'{event}' before 'join'")
            return await handler(session, data)

        return await session.submit(job)

    async def _room(self, session: Session) -> Room:
        return await self.rooms.get(session.room_id)

    async def _join(self, session: Session, data: Any) -> dict[str, Any]:
        request = m.Join.parse(data)
        if session.joined:
            raise SignalingError("already_joined", "already joined")
        if request.room is not None and request.room != session.room_id:
            raise SignalingError("visit_mismatch", "the join token is for another room")
        if request.visit is not None and request.visit != self._subject_visit(session):
            raise SignalingError("visit_mismatch", "the join token is for another visit")
        # asked again: the room may have closed, or the participant been sent back, since this
        # socket connected (not audited again)
        await rooms.enter(self._db, session.actor, session.room_id, audit=False)
        room = await self._room(session)
        # an overloaded media worker takes nobody new (server_busy); the page retries
        try:
            await room.live_media().admit(session.participant_id)
            await room.live_media().set_priority(
                session.participant_id, VIDEO_PRIORITY.get(session.room_role, 1)
            )
        except MediaError:
            await self.rooms.discard_if_empty(room)  # a room opened for this join alone
            raise
        resumed = await self._resume(room, session, request.resume)
        replaced = room.add(session)
        if replaced is not None:
            # The same participant came back on a new socket: the old one goes (its media too,
            # unless the new socket took it over).
            await replaced.close()
            await room.remove(replaced, replaced=True, keep_media=resumed)
            self.sessions.pop(replaced.sid, None)
            self._end_hold(replaced.sid)
            await self.sio.emit("room_closed", {"reason": "replaced"}, to=replaced.sid)
            await self.sio.disconnect(replaced.sid)
        await self.sio.enter_room(session.sid, session.room_id)
        room.record("resumed" if resumed else "joined", _who(session))
        if resumed:
            room.resend_offer(session)
        room.patient_side = await self._patient_side(session.room_id)
        await room.broadcast_participants()
        subject = session.subject
        return {
            "room": session.room_id,
            # what the room belongs to: a consultation's host page calls its API with the id
            "subject": None if subject is None else {"type": subject[0], "id": subject[1]},
            "participant": session.describe(),
            **room.roster(),
            "ice_servers": self._ice_servers.for_participant(session.participant_id),
            "recording": room.recording is not None,
            # each network provider's signaling URL: the page reconnects through another one
            # when its socket heard no ping for ``signaling_ping_ms`` + its grace
            "signaling_urls": self.providers.signaling_urls(),
            "signaling_ping_ms": int(self.ping_interval_s * 1000),
            # 2: the page publishes on a connection per provider (hot standby)
            "media_paths": await self._media_paths(room),
            # a new socket of this page presents it to carry on with this join's media
            "resume_key": session.resume_key,
            "resumed": resumed,
        }

    async def _resume(self, room: Room, session: Session, key: str | None) -> bool:
        """A page whose socket dropped while its media went on joins again on a new socket
        with the previous join's ``resume_key``: when that socket's session is still the
        participant's and its connections are all up, the new session takes them over (no new
        peer connections; docs/providers.md, "Signaling survives too"). Else (a wrong or old
        key, media already closed) it joins as any other, and the page rebuilds its media."""
        previous = room.sessions.get(session.participant_id)
        if key is None or previous is None or previous is session:
            return False
        if not hmac.compare_digest(previous.resume_key.encode(), key.encode()):
            logger.info("resume refused: not that page's key", extra={"sid": session.sid})
            return False
        # what the old socket had sent before it went silent still counts: let it run first
        await previous.close(drain_s=RESUME_DRAIN_S)
        if room.sessions.get(session.participant_id) is not previous or room.closed:
            return False
        if not await room.live_media().media_intact(session.participant_id):
            logger.info("resume without media: its connections closed", extra={"sid": session.sid})
            return False
        room.take_over(session, previous)
        logger.info(
            "participant resumed on a new socket",
            extra={"sid": session.sid, "previous_sid": previous.sid, "room_id": room.room_id},
        )
        return True

    async def _media_paths(self, room: Room) -> int:
        """2 when the media's first two addresses are two configured providers' (a page then
        publishes on a connection to each, docs/providers.md), else 1 (one connection; a
        development server's loopback and LAN addresses are no providers)."""
        addresses = (await room.live_media().media_addresses())[:2]
        providers = {p.address for p in self.providers.providers}
        return 2 if len(addresses) == 2 and set(addresses) <= providers else 1

    async def _patient_side(self, room_id: str) -> list[dict[str, Any]]:
        """A consultation room's patient's side, as the ``participants`` event carries it."""
        return [
            {"id": p.user_id, "room_role": p.room_role, "stepped_out": p.stepped_out}
            for p in await rooms.patient_side(self._db, room_id)
        ]

    async def _patient_side_changed(self, room_id: str) -> None:
        """Someone of a live room's patient's side was asked out or back: everyone still in the
        room is told (the doctors-only banner of the clinicians' pages)."""
        room = self.rooms.find(room_id)
        if room is None or room.closed:
            return
        try:
            room.patient_side = await self._patient_side(room_id)
            if not room.closed:
                await room.broadcast_participants()
        except Exception:  # the pages read it again on their next join
            logger.exception("patient's side not told", extra={"room_id": room_id})

    @staticmethod
    def _subject_visit(session: Session) -> str | None:
        """The visit a socket's room belongs to (``None`` for a room of another subject)."""
        subject = session.subject
        return subject[1] if subject is not None and subject[0] == "visit" else None

    async def _publish(self, session: Session, data: Any) -> dict[str, Any]:
        request = m.Publish.parse(data)
        media = (await self._room(session)).live_media()
        if request.path is None:
            answer = await media.publish(session.participant_id, request.sdp)
        else:
            answer = await media.publish(session.participant_id, request.sdp, path=request.path)
        return {"type": "answer", "sdp": answer}

    async def _subscribe(self, session: Session, data: Any) -> dict[str, Any]:
        m.Empty.parse(data)
        offer = await (await self._room(session)).subscribe(session)
        return {"offer": offer}

    async def _subscribe_answer(self, session: Session, data: Any) -> None:
        request = m.SubscribeAnswer.parse(data)
        room = await self._room(session)
        await room.apply_answer(session, request.revision, request.sdp)

    async def _ice_candidate(self, session: Session, data: Any) -> None:
        request = m.IceCandidate.parse(data)
        media = (await self._room(session)).live_media()
        await media.add_ice_candidate(session.participant_id, request.target, request.candidate)

    async def _mute(self, session: Session, data: Any) -> None:
        request = m.Mute.parse(data)
        if request.kind == "audio":
            session.audio_muted = request.muted
        else:
            session.video_muted = request.muted
        room = await self._room(session)
        await room.live_media().set_muted(session.participant_id, request.kind, request.muted)
        room.record("muted", {**_who(session), "kind": request.kind, "muted": request.muted})
        await room.broadcast_participants()

    async def _restart_media(self, session: Session, data: Any) -> None:
        m.Empty.parse(data)
        await (await self._room(session)).restart_media(session)

    async def _leave(self, session: Session, data: Any) -> None:
        m.Empty.parse(data)
        await self._leave_room(session)

    async def _leave_room(self, session: Session, *, returning: bool = False) -> None:
        if not session.joined:
            return
        room = self.rooms.find(session.room_id)
        if room is None:
            session.joined = False
            return
        room.record("left", {**_who(session), "dropped": returning})
        await room.remove(session, returning=returning)
        await self.sio.leave_room(session.sid, session.room_id)
        await room.broadcast_participants()
        await self.rooms.discard_if_empty(room)

    # --- domain events: the live room follows the visit and the account -----------------------

    async def _on_domain_event(self, event: events.DomainEvent) -> None:
        """Relay a committed domain event to the sockets it concerns (in a task of our own: the
        committing request does not wait for the media to close)."""
        if self._closed:
            return
        try:
            await self.updates.relay(event)
        except Exception:  # a page that misses a push reads again on its next (re)connect
            logger.exception("update push failed")
        evictions: list[tuple[Session, dict[str, Any]]] = []
        if isinstance(event, events.StateChanged) and event.machine == "visit":
            reason = LEAVE_REASONS.get(event.event)
            if reason is not None and (event.old == "in_room" or event.new in CLOSED_VISIT):
                payload = {"reason": reason, "visit": event.object_id, "state": event.new}
                evictions = [
                    (s, {**payload, "room": s.room_id})
                    for s in self.sessions.values()
                    if s.subject == ("visit", event.object_id)
                ]
        elif (
            isinstance(event, events.StateChanged)
            and event.machine == "interpretation"
            and event.new in CLOSED_INTERPRETATION
        ):
            # a report interpretation's call (R18): answered or withdrawn, its room ends
            payload = {"reason": "ended", "interpretation": event.object_id, "state": event.new}
            evictions = [
                (s, {**payload, "room": s.room_id})
                for s in self.sessions.values()
                if s.subject == ("interpretation", event.object_id)
            ]
        elif isinstance(event, events.ParticipationChanged) and event.state == "waiting":
            # asked out of a consultation for a part among clinicians: off the room at once
            payload = {"reason": event.reason, "room": event.room_id, "state": event.state}
            evictions = [
                (s, payload)
                for s in self.sessions.values()
                if s.room_id == event.room_id and s.actor.user_id == event.user_id
            ]
        elif isinstance(event, events.AccessRevoked):
            payload = {"reason": "revoked", "detail": event.reason}
            evictions = [
                (s, {**payload, "room": s.room_id})
                for s in self.sessions.values()
                if s.actor.user_id == event.user_id
                and (event.whole_account or s.actor.session_id in event.session_ids)
            ]
        jobs = [self._evict(session, payload) for session, payload in evictions]
        if isinstance(event, events.ParticipationChanged):
            jobs.append(self._patient_side_changed(event.room_id))
        for job in jobs:
            task = asyncio.get_running_loop().create_task(job)
            self._relay_tasks.add(task)
            task.add_done_callback(self._relay_tasks.discard)

    async def _evict(self, session: Session, payload: dict[str, Any]) -> None:
        """Take a socket out of its room for ``payload["reason"]``, tell it (``room_left``) and
        disconnect it: its media and chat stop at once; the page moves on (docs/signaling.md)."""
        if self.sessions.get(session.sid) is not session:
            return
        # ours from now on: a disconnect the page makes on being told finds nothing to do
        del self.sessions[session.sid]
        self._end_hold(session.sid)
        logger.info(
            "room left: %s",
            payload["reason"],
            extra={"sid": session.sid, "room_id": session.room_id},
        )
        room = self.rooms.find(session.room_id)
        if room is not None and session.joined:
            room.record("room_left", {**_who(session), "reason": payload["reason"]})
        try:
            await self.sio.emit("room_left", payload, to=session.sid)
        except Exception:  # the socket is already gone: it is taken out all the same
            logger.debug("room_left not delivered", extra={"sid": session.sid})
        # as on a disconnect: its queued events are refused, then its media goes (outside the
        # queue, so that nothing cancels a room's close and seal halfway)
        await session.close()
        await self.review.leave(session)
        await self._leave_room(session)
        try:
            await self.sio.disconnect(session.sid)
        except Exception:
            logger.debug("disconnect after room_left failed", extra={"sid": session.sid})

    # --- shutdown ----------------------------------------------------------------------------

    async def close_rooms(self) -> None:
        """Close every room's media (peers first, per the shutdown order)."""
        self._closed = True
        self._unsubscribe()
        for task in tuple(self._relay_tasks):
            task.cancel()
        await asyncio.gather(*self._relay_tasks, return_exceptions=True)
        holds = tuple(self._holds.values())
        for task in holds:
            task.cancel()
        await asyncio.gather(*holds, return_exceptions=True)
        for session in tuple(self.sessions.values()):
            await session.close()
        await self.rooms.close()

    async def seal_recordings(self) -> None:
        """Seal the recordings of the rooms shutdown closed (once the media pool is closed)."""
        await self.rooms.seal_all()

    async def close_sockets(self) -> None:
        """Tell every socket the room closed and disconnect it. Idempotent."""
        if self._sockets_closed:
            return
        self._sockets_closed = True
        for sid in tuple(self.sessions):
            try:
                await self.sio.emit("room_closed", {"reason": "server_shutdown"}, to=sid)
                await self.sio.disconnect(sid)
            except Exception:  # a socket already gone
                logger.debug("disconnect at shutdown failed", extra={"sid": sid})
        self.sessions.clear()
        await self.sio.shutdown()
        for task in tuple(self._io_tasks):
            task.cancel()
        await asyncio.gather(*self._io_tasks, return_exceptions=True)


LEAVE_REASONS: Final = {
    "send_back": "sent_back",
    "end": "ended",
    "refer": "referred",
    "cancel": "cancelled",
}
"""Visit event -> the ``room_left`` reason its room's sockets are told."""
CLOSED_VISIT: Final = frozenset({"ended", "referred", "cancelled"})
CLOSED_INTERPRETATION: Final = frozenset({"answered", "cancelled"})
"""An interpretation request's states in which its call's room has ended (R18)."""


def _who(session: Session) -> dict[str, Any]:
    return {"participant_id": session.participant_id, "role": session.room_role}


def sealed_details(manifest: dict[str, Any]) -> dict[str, Any]:
    """What of a sealed recording the audit chain keeps: enough to check it against later."""
    return {
        "session": manifest.get("session"),
        "head": manifest.get("head"),
        "keep_until": manifest.get("keep_until"),
        "interrupted": bool(manifest.get("interrupted")),
        "tracks": len(manifest.get("tracks", [])),
        "segments": sum(int(t.get("segments", 0)) for t in manifest.get("tracks", [])),
    }
