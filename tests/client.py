"""An aiortc test participant that speaks docs/signaling.md over a real socket.io connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from peers import CounterTrack, Received, Subscriber, ToneTrack, client_pc, wait_for


class Participant:
    """Joins a visit, publishes a counter video and a tone, and subscribes to the others."""

    def __init__(
        self,
        url: str,
        token: str,
        visit_id: str,
        *,
        use_ice_servers: bool = False,
        room_id: str | None = None,
    ) -> None:
        self.url = url
        #: Use the ICE servers the join ack names (TURN tests); by default expect none.
        self.use_ice_servers = use_ice_servers
        self.ice_servers: list[dict[str, Any]] = []
        self.token = token
        self.visit_id = visit_id
        #: A room that is not a visit's (a consultation's) is joined by its room id.
        self.room_id = room_id
        #: Handlers a test added with :meth:`on` (kept for a socket opened by :meth:`resume`).
        self._handlers: list[tuple[str, Any]] = []
        #: When the current socket last heard from the server (any engine.io packet, pings too).
        self.heard_at = time.monotonic()
        self.sio = self._new_socket()
        #: Makes this participant's peer connections (a test may gather elsewhere, or watch).
        self.make_pc = client_pc
        self.publish_pc: RTCPeerConnection | None = None
        self.sub: Subscriber | None = None
        self.video: CounterTrack | None = None
        self.audio: ToneTrack | None = None
        self.tracks: dict[str, dict[str, Any]] = {}  # mid -> track description
        self.participants: list[dict[str, Any]] = []
        self.offers_answered = 0
        self.id = ""
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answerer: asyncio.Task[None] | None = None
        self.speakers: list[str | None] = []
        self.video_paused: list[dict[str, Any]] = []
        self._abandoned: list[asyncio.Task[None]] = []
        self.answer_errors: list[str] = []
        self.resume_key: str | None = None  # the last join ack's
        self._silent: list[socketio.AsyncClient] = []  # old sockets left open by a resume

    def _new_socket(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("subscribe_offer", lambda offer: self._offers.put_nowait(offer))
        sio.on("participants", self._on_participants)
        sio.on("active_speaker", lambda d: self.speakers.append(d["participant_id"]))
        sio.on("video_paused", lambda d: self.video_paused.append(d))
        for event, handler in self._handlers:
            sio.on(event, handler)
        # a blackholed provider is silence, not a close: note every packet (the server's pings
        # included) so that a test sees the silence as a page does (web/static/signaling.js)
        receive = sio.eio._receive_packet

        async def heard(packet: Any) -> None:
            self.heard_at = time.monotonic()
            await receive(packet)

        sio.eio._receive_packet = heard  # type: ignore[method-assign]
        return sio

    def on(self, event: str, handler: Any) -> None:
        """Listen for a server event on this socket and on any a resume opens."""
        self._handlers.append((event, handler))
        self.sio.on(event, handler)

    def silent_for(self) -> float:
        """Seconds since the current socket last heard from the server."""
        return time.monotonic() - self.heard_at

    async def resume(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        keep_media: bool = False,
        abort_old: bool = True,
    ) -> dict[str, Any]:
        """Signaling failover as the room page makes it: leave the silent socket behind,
        connect to ``url`` (another provider's signaling URL) with the same join token and
        join again: the server's takeover replaces the old socket's session. ``keep_media``:
        join with the previous ack's ``resume_key``, to carry on with the peer connections
        (the subscribe offers keep being answered on the new socket). ``abort_old``: close
        the old socket now (else it stays open, unheard, until :meth:`close`: a path that
        went silent without closing, as a blackholed provider's)."""
        old = self.sio
        if abort_old:
            # the old socket's provider is cut: its close cannot reach the server; abort it
            self._abandoned.append(asyncio.ensure_future(old.eio.disconnect(abort=True)))
        else:
            self._silent.append(old)
        if self._answerer is not None and not keep_media:
            self._answerer.cancel()
            await asyncio.gather(self._answerer, return_exceptions=True)
            self._answerer = None
        self.url = url
        self.sio = self._new_socket()
        self.heard_at = time.monotonic()
        await self.sio.connect(
            url,
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=5,
            headers=headers or {},
        )
        return await self.join(resume=self.resume_key if keep_media else None)

    def _on_participants(self, data: dict[str, Any]) -> None:
        self.participants = data["participants"]

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5
        )

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, data, timeout=10)
        return ack

    async def join(self, *, resume: str | None = None) -> dict[str, Any]:
        where: dict[str, Any] = {"room": self.room_id} if self.room_id else {"visit": self.visit_id}
        if resume is not None:
            where["resume"] = resume
        ack = await self.call("join", where)
        assert ack["ok"], ack
        self.id = ack["participant"]["id"]
        self.resume_key = ack["resume_key"]
        if self.use_ice_servers:
            self.ice_servers = ack["ice_servers"]
        else:
            assert ack["ice_servers"] == []  # the embedded default: no STUN, no TURN
        return ack

    async def publish(self, video: bool = True, audio: bool = True) -> None:
        pc = self.publish_pc = self.make_pc(self.ice_servers)
        if video:
            self.video = CounterTrack()
            pc.addTransceiver(self.video, direction="sendonly")
        if audio:
            self.audio = ToneTrack()
            pc.addTransceiver(self.audio, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ack = await self.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))

    async def subscribe(self) -> None:
        self.sub = Subscriber(self.make_pc(self.ice_servers))
        ack = await self.call("subscribe", {})
        assert ack["ok"], ack
        if ack["offer"] is not None:
            await self._answer(ack["offer"])
        self._answerer = asyncio.ensure_future(self._answer_offers())

    async def _answer(self, offer: dict[str, Any]) -> None:
        assert self.sub is not None
        pc = self.sub.pc
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        for t in offer["tracks"]:
            self.tracks[t["mid"]] = t
        ack = await self.call(
            "subscribe_answer",
            {"revision": offer["revision"], "type": "answer", "sdp": pc.localDescription.sdp},
        )
        assert ack["ok"], ack
        self.offers_answered += 1

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._offers.get()
            try:
                await self._answer(offer)
            except Exception as exc:  # kept for the failure message; the next offer still counts
                self.answer_errors.append(f"offer {offer.get('revision')}: {exc!r}")

    def state(self) -> dict[str, Any]:
        """What this participant's side looks like (for a test's failure message)."""
        pcs = {"publish": self.publish_pc, "subscribe": self.sub.pc if self.sub else None}
        return {
            "id": self.id,
            "connected": self.sio.connected,
            "offers_answered": self.offers_answered,
            "offers_queued": self._offers.qsize(),
            "answer_errors": self.answer_errors,
            "tracks": {
                m: (t["participant_id"], t["kind"], t["active"]) for m, t in self.tracks.items()
            },
            "pcs": {
                name: (pc.signalingState, pc.iceConnectionState, pc.connectionState)
                for name, pc in pcs.items()
                if pc is not None
            },
            "received": {
                m: (r.kind, r.frames) for m, r in (self.sub.by_mid.items() if self.sub else ())
            },
        }

    def received_from(self, participant_id: str, kind: str) -> Received | None:
        """What arrived of ``participant_id``'s ``kind`` track."""
        if self.sub is None:
            return None
        for mid, t in self.tracks.items():
            if t["participant_id"] == participant_id and t["kind"] == kind and t["active"]:
                return self.sub.by_mid.get(mid)
        return None

    async def leave(self) -> None:
        """Say ``leave``, as a page does when it ends the call: the server ends the media at
        once (a socket closed without it is held, with its media, for a resume)."""
        if self.sio.connected and self.id:
            with contextlib.suppress(Exception):  # a server already gone has nothing to end
                await self.sio.call("leave", {}, timeout=5)

    async def close(self) -> None:
        """Close everything. Each step is bounded (CLOSE_STEP_S): a close that hangs would
        otherwise hold the test, and its worker, until the suite's timeout."""
        if self._answerer is not None:
            self._answerer.cancel()
            await asyncio.wait({self._answerer}, timeout=CLOSE_STEP_S)
        for sio in (self.sio, *self._silent):
            if sio.connected:
                await _bounded(sio.disconnect())
        if self._abandoned:  # an abandoned socket's close waits for the cut link (aiohttp: 10 s)
            await asyncio.wait(self._abandoned, timeout=15)
            for task in self._abandoned:
                task.cancel()
            await asyncio.wait(self._abandoned, timeout=CLOSE_STEP_S)
        if self.sub is not None:
            await _bounded(self.sub.close())
        if self.publish_pc is not None:
            await _bounded(self.publish_pc.close())


#: How long one step of a participant's close may take.
CLOSE_STEP_S = 10.0


async def _bounded(step: Any) -> None:
    """Run ``step`` for at most :data:`CLOSE_STEP_S`; one that takes longer is left behind
    (cancelled, not awaited: a step wedged in its cancellation must not hold the caller)."""
    task = asyncio.ensure_future(step)
    await asyncio.wait({task}, timeout=CLOSE_STEP_S)
    if not task.done():
        task.cancel()


def pair(url: str, visit: Any) -> tuple[Participant, Participant]:
    """The doctor and the patient of a demo visit, not yet connected."""
    return (
        Participant(url, visit.tokens["doctor"], visit.visit_id),
        Participant(url, visit.tokens["patient"], visit.visit_id),
    )


def sees(receiver: Participant, sender: Participant, frames: int) -> bool:
    """``receiver`` has decoded more than ``frames`` of ``sender``'s video."""
    video = receiver.received_from(sender.id, "video")
    return video is not None and len(video.counters) > frames


async def start_call(url: str, visit: Any, frames: int = 5) -> tuple[Participant, Participant]:
    """Doctor and patient joined, publishing and subscribed, each seeing the other."""
    doctor, patient = pair(url, visit)
    for p in (doctor, patient):
        await p.connect()
        await p.join()
        await p.publish()
        await p.subscribe()
    await wait_for(
        lambda: sees(doctor, patient, frames) and sees(patient, doctor, frames),
        timeout=15,
        message="the call did not start",
    )
    return doctor, patient


def server_sessions(signaling: Any) -> list[dict[str, Any]]:
    """The signaling server's view of each socket (for a test's failure message)."""
    return [
        {
            "participant": s.participant_id,
            "joined": s.joined,
            "subscribed": s.subscribed,
            "offer_revision": s.offer_revision,
            "awaiting_answer": s.awaiting_answer,
            "renegotiation_queued": s.renegotiation_queued,
            "media_state": s.media_state,
        }
        for s in signaling.sessions.values()
    ]
