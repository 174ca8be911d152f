"""A consultation (MDT) room of the real server: loss, per-stream counts, server CPU and lag.

    .venv/bin/python bench/mdt_room.py [--video 8] [--audio 8] [--seconds 60] [--no-recording]
        [--client-processes 4] [--verbose]

The whole server (``web.app``, as ``teleconsult serve`` builds it, recording each room unless
--no-recording) runs in its own process on a fresh SQLite data directory, ICE on 127.0.0.1. It
opens one room of kind ``consultation`` with one participation per participant (an inviter and
invitees, admitted), as ``POST /consultations/{id}/join-token`` would lead to, through the
domain's own ``consult.rooms`` (the consultation's request, invitation and accept steps are left
out: they do not touch the media), and prints the join tokens.

The participants live in --client-processes processes of their own (participant n in process
n mod K), driven by this one over their stdin/stdout: --video participants publish VP8 + Opus,
--audio participants Opus only, each from pre-encoded clips (bench/encoded_media.py), and
everyone subscribes to everyone. Subscribers count RTP at the transport and never decode
(bench/stream_counter.py). Sixteen participants in one process starve its event loop (one
core's worth of SRTP for ~20,000 packets/s at best): measured, its loop lagged up to 3 s, and
the bench then measured its own clients rather than the server. The clients check ICE consent
as browsers do (RFC 7675: retransmitted checks, expiry after 30 s unanswered; aioice's own
gives up after six checks each unanswered for 0.5 s, so a server whose sockets queue a second
of media lost every connection of the run to the clients' own consent expiry: measured).

After every stream has delivered a packet, a window of --seconds, opened and closed by every
client process at one agreed moment (CLOCK_MONOTONIC is the machine's): per stream, the
packets expected (RTP sequence numbers) and lost, and the publisher's frames (audio: packets)
sent in the window against the subscriber's received; the server process's CPU (user + system,
% of one core), RSS, event-loop lag (sampled every 50 ms: p50, p99, max) and the datagrams the
kernel dropped at its sockets (it did not read them in time); each client process's CPU, loop
lag and kernel drops; the machine's CPU and load. Exits 1 if any packet was lost, any stream
came short end to end by more than its tolerance, any subscriber did not receive every other
participant's every stream, or the server declared a connection lost (``media_lost``) in the
window.

Counts survive a reconnection (a client told ``media_lost`` makes new connections, as the
room page does): sent and received totals add up over the connections, and a stream whose
connection changed within the window is reported as reconnected (its sequence numbers start
again, so its loss is counted end to end only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # before tests/, whose media/ folder would shadow the package

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from client import Participant  # noqa: E402
from encoded_media import EncodedClip, EncodedTrack, encode_opus, encode_vp8  # noqa: E402
from latency import LatencyRecorder  # noqa: E402
from load_clients import (  # noqa: E402
    accept_transport_cc,
    client_pc,
    enlarge_receive_buffers,
    send_transport_feedback,
)
from proc_stats import (  # noqa: E402
    cpu_seconds,
    machine_busy_seconds,
    rss_mb,
    udp_drops_by_socket,
    usable_cores,
)
from sfu_server import stop_when_parent_goes  # noqa: E402
from stream_counter import StreamCounter  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402
from media import _ice_seam as ice_seam  # noqa: E402

LAG_INTERVAL_S = 0.05
#: How long a participant waits for the server's ack of a socket.io event.
CALL_TIMEOUT_S = 30
#: Frames a stream may be short of its publisher's count at the window's ends (in flight).
IN_FLIGHT = 2

# --- The server process --------------------------------------------------------------------------


async def consultation_room(app: web.Application, count: int) -> tuple[str, list[str]]:
    """A room of kind consultation with ``count`` admitted participations (the first the
    inviter, the others invitees) of new doctor accounts; its id and a join token each."""
    from consult import rooms
    from consult.models import (
        Institution,
        InstitutionLevel,
        ParticipationState,
        RoomKind,
        RoomRole,
        User,
    )
    from consult.permissions import Role
    from consult.sqltypes import new_id
    from consult.tokens import issue_join_token
    from web.keys import CONFIG, DATABASE

    institution = Institution(
        id=new_id(), name="Bench Hospital", level=InstitutionLevel.TERTIARY.value
    )
    users = [
        User(
            id=new_id(),
            institution_id=institution.id,
            username=f"bench-expert-{n}",
            display_name=f"expert {n}",
            password_hash=None,  # joins by token only
            role=Role.DOCTOR.value,
        )
        for n in range(count)
    ]
    roles = [RoomRole.INVITER] + [RoomRole.INVITEE] * (count - 1)
    async with app[DATABASE].session() as session, session.begin():
        session.add(institution)
        await session.flush()
        session.add_all(users)
        await session.flush()
        room = await rooms.open_room(
            session,
            kind=RoomKind.CONSULTATION,
            subject_type="consultation",
            subject_id=new_id(),
            institution_id=institution.id,
        )
        for user, role in zip(users, roles, strict=True):
            await rooms.add_participant(
                session,
                room,
                user.id,
                role,
                ParticipationState.ADMITTED,
                institution_id=institution.id,
                invited_by=None if role is RoomRole.INVITER else users[0].id,
            )
    secret = app[CONFIG].secret()
    tokens = [
        issue_join_token(secret, room_id=room.id, user_id=user.id, role=role.value)
        for user, role in zip(users, roles, strict=True)
    ]
    return room.id, tokens


async def sample_lag(recorder: LatencyRecorder) -> None:
    """How late the loop wakes a task that asks to every 50 ms (as media/loop_lag.py does)."""
    while True:
        before = time.perf_counter_ns()
        await asyncio.sleep(LAG_INTERVAL_S)
        recorder.add(max(0, time.perf_counter_ns() - before - int(LAG_INTERVAL_S * 1e9)))


async def serve(args: argparse.Namespace) -> None:
    from web.app import create_app
    from web.config import Config
    from web.transport import runner_options

    tmp = Path(tempfile.mkdtemp(prefix="mdt-room-"))
    config = Config(
        data_dir=tmp / "data",
        ice_addresses=("127.0.0.1",),
        recording=not args.no_recording,
        recording_composite=False,  # built after a session, not while it runs
        media_busy_lag_ms=args.busy_lag_ms,
    )
    app = create_app(config)
    runner = web.AppRunner(app, **runner_options(config))
    lag = LatencyRecorder()
    stop = asyncio.Event()

    async def mark(request: web.Request) -> web.Response:
        lag.reset()
        return web.json_response({})

    async def figures(request: web.Request) -> web.Response:
        return web.json_response({"lag": lag.summary()})

    control = web.Application()
    control.router.add_post("/mark", mark)
    control.router.add_get("/figures", figures)
    control_runner = web.AppRunner(control, access_log=None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(stop_when_parent_goes(stop)), asyncio.create_task(sample_lag(lag))]
    try:
        await runner.setup()
        await control_runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        control_site = web.TCPSite(control_runner, "127.0.0.1", 0)
        await control_site.start()
        room_id, tokens = await consultation_room(app, args.video + args.audio)
        ready = {
            "url": f"http://127.0.0.1:{runner.addresses[0][1]}",
            "control": f"http://127.0.0.1:{control_runner.addresses[0][1]}",
            "room": room_id,
            "tokens": tokens,
        }
        print("READY " + json.dumps(ready), flush=True)
        sys.stdout = sys.stderr  # nobody reads on: a full pipe must never block this process
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await control_runner.cleanup()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# --- The participants (in the client processes) --------------------------------------------------


def browser_like_pc() -> RTCPeerConnection:
    """A bundling client peer (load_clients.client_pc) whose ICE consent is a browser's."""
    pc = client_pc()
    ice_seam.patient_consent(pc)
    return pc


class CountingParticipant(Participant):
    """A participant of tests/client.py that publishes pre-encoded clips and counts what it
    receives at the transport (nothing decoded): one :class:`StreamCounter` per mid.

    Sent and received totals are kept across the new connections made after ``media_lost``
    (``generation`` counts them)."""

    def __init__(self, url: str, token: str, room_id: str, clips: list[EncodedClip]) -> None:
        super().__init__(url, token, "", room_id=room_id)
        self.clips = clips
        self.make_pc = lambda _servers=None: browser_like_pc()
        self.counters: dict[str, StreamCounter] = {}  # by mid
        self.sending: dict[str, EncodedTrack] = {}  # by kind
        self.sent_before: dict[str, int] = {}  # by kind: sent on connections closed since
        # (sender id, kind) -> [packets, frames] received on connections closed since
        self.received_before: dict[tuple[str, str], list[int]] = {}
        self.generation = 0  # connections made again after media_lost
        self.pauses: list[tuple[float, str, bool]] = []  # (monotonic, sender, paused)
        self.sio.on("video_paused", self._on_video_paused)
        self.media_lost: list[tuple[float, str, str]] = []  # (monotonic, transport, reason)
        self._recovery: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()  # publish, subscribe and reconnect one at a time
        self.sio.on("media_lost", self._on_media_lost)

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        """As tests/client.py's, with a longer wait: a sixteen-way renegotiation on the shared
        machine took the server's ack past 10 s (measured)."""
        ack: dict[str, Any] = await self.sio.call(event, data, timeout=CALL_TIMEOUT_S)
        return ack

    def _on_media_lost(self, data: dict[str, Any]) -> None:
        """New connections, as the room page makes them (docs/signaling.md, media_lost)."""
        self.media_lost.append(
            (time.monotonic(), str(data.get("transport")), str(data.get("reason")))
        )
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        async with self._lock:
            if self._answerer is not None:
                self._answerer.cancel()
                await asyncio.gather(self._answerer, return_exceptions=True)
            for pc in (self.sub.pc if self.sub else None, self.publish_pc):
                if pc is not None:
                    await pc.close()
            while not self._offers.empty():
                self._offers.get_nowait()  # for the closed connection
            for key, counter in self.streams().items():
                before = self.received_before.setdefault(key, [0, 0])
                before[0] += counter.packets
                before[1] += counter.frames
            for kind, track in self.sending.items():
                self.sent_before[kind] = self.sent_before.get(kind, 0) + track.sent
            self.generation += 1
            self.counters.clear()
            self.tracks.clear()
            try:
                await self._publish()
                if self.sub is not None:
                    await self._subscribe()
            except Exception as exc:  # a bench: say it; the tally shows what it cost
                print(f"reconnecting after media_lost failed: {exc!r}", file=sys.stderr)

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        await super().close()

    def _on_video_paused(self, data: dict[str, Any]) -> None:
        self.video_paused.append(data)
        self.pauses.append((time.monotonic(), data["participant"], data["paused"]))

    async def join(self, *, resume: str | None = None) -> dict[str, Any]:
        """Join, again while the server says it is busy (its loop lags), as the page does."""
        deadline = time.monotonic() + 60
        while True:
            ack = await self.call("join", {"room": self.room_id})
            busy = not ack["ok"] and ack["error"]["code"] == "server_busy"
            if not busy or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert ack["ok"], ack
        self.id = ack["participant"]["id"]
        return ack

    async def publish(self, video: bool = True, audio: bool = True) -> None:
        async with self._lock:
            await self._publish()

    async def subscribe(self) -> None:
        async with self._lock:
            await self._subscribe()

    async def _publish(self) -> None:
        pc = self.publish_pc = browser_like_pc()
        for clip in self.clips:
            track = self.sending[clip.kind] = EncodedTrack(clip)
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ack = await self.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))

    async def _subscribe(self) -> None:
        """tests/client.py's subscribe, on a connection whose receivers only count."""
        self.sub = _Receiving(self.make_pc())  # type: ignore[assignment]
        ack = await self.call("subscribe", {})
        assert ack["ok"], ack
        if ack["offer"] is not None:
            await self._answer(ack["offer"])
        self._answerer = asyncio.ensure_future(self._answer_offers())

    async def _answer(self, offer: dict[str, Any]) -> None:
        assert self.sub is not None
        pc = self.sub.pc
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.mid is not None and transceiver.mid not in self.counters:
                counter = self.counters[transceiver.mid] = StreamCounter(transceiver.kind)
                seam.intercept_receiver(transceiver.receiver, counter.on_rtp)
        # transport-cc feedback as a browser sends it: the intercepted receivers send no RTCP
        # receiver reports (aiortc reports only streams its own receive path has seen), so
        # without feedback the server finds the path silent and closes it (measured)
        cc_ids = accept_transport_cc(pc, offer["sdp"])
        await pc.setLocalDescription(await pc.createAnswer())
        send_transport_feedback(pc, cc_ids)
        enlarge_receive_buffers(pc)
        for t in offer["tracks"]:
            self.tracks[t["mid"]] = t
        ack = await self.call(
            "subscribe_answer",
            {"revision": offer["revision"], "type": "answer", "sdp": pc.localDescription.sdp},
        )
        if not ack["ok"] and self.media_lost:
            # the server closed this connection meanwhile: the reconnection offers again
            print(f"answer refused after media_lost: {ack['error']['code']}", file=sys.stderr)
            return
        assert ack["ok"], ack
        self.offers_answered += 1

    def kinds(self) -> list[str]:
        """What this participant publishes."""
        return [clip.kind for clip in self.clips]

    def streams(self) -> dict[tuple[str, str], StreamCounter]:
        """(sender's participant id, kind) -> the counter of each active track received."""
        return {
            (t["participant_id"], t["kind"]): self.counters[mid]
            for mid, t in self.tracks.items()
            if t["active"] and mid in self.counters
        }

    def sent(self) -> dict[str, int]:
        """Frames (video) and packets (audio) sent so far, over every connection."""
        return {k: self.sent_before.get(k, 0) + t.sent for k, t in self.sending.items()}

    def snapshot(self) -> dict[str, Any]:
        streams = self.streams()
        keys = set(streams) | set(self.received_before)
        rows = []
        for key in sorted(keys):
            before = self.received_before.get(key, [0, 0])
            counter = streams.get(key)
            packets = counter.packets if counter else 0
            frames = counter.frames if counter else 0
            highest = counter.highest_seq if counter else -1
            # sender, kind, packets and frames over all connections, this connection's packets
            # and highest sequence number (-1: none yet)
            rows.append([*key, before[0] + packets, before[1] + frames, packets, highest])
        return {
            "id": self.id,
            "kinds": self.kinds(),
            "sent": self.sent(),
            "generation": self.generation,
            "streams": rows,
            "media_lost": self.media_lost,
            "pauses": self.pauses,
        }


@dataclass
class _Receiving:
    pc: Any

    async def close(self) -> None:
        await self.pc.close()


class ClientWorker:
    """One client process: its participants, driven by commands on stdin (a JSON object a
    line), each answered on stdout."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.people: dict[int, CountingParticipant] = {}
        self.lag = LatencyRecorder()
        self.clips: dict[str, EncodedClip] = {}
        self.backlog_max = 0  # bytes, the largest send backlog of one socket since reset

    def send_backlog(self) -> int:
        """The largest number of bytes one of our ICE sockets holds in asyncio because the
        kernel would not take them: on loopback a datagram stays charged to the sender until
        the receiver reads it, so a server that does not read its socket in time shows here
        (and its consent answers queue behind)."""
        largest = 0
        for p in self.people.values():
            for pc in (p.publish_pc, p.sub.pc if p.sub else None):
                if pc is None:
                    continue
                for dtls in seam.dtls_transports(pc):
                    for protocol in ice_seam.ice_connection(dtls)._protocols:
                        transport = protocol.transport
                        if transport is not None:
                            largest = max(largest, transport.get_write_buffer_size())
        return largest

    async def watch_backlog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):  # a connection closing meanwhile
                self.backlog_max = max(self.backlog_max, self.send_backlog())

    def clip(self, kind: str) -> EncodedClip:
        if kind not in self.clips:
            self.clips[kind] = (
                encode_vp8(seconds=self.args.clip_s, bitrate=self.args.video_kbps * 1000)
                if kind == "video"
                else encode_opus(seconds=self.args.clip_s)
            )
        return self.clips[kind]

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command["cmd"]
        if name == "join":  # one participant: connect, join, publish, until its ICE is up
            kinds = ["video", "audio"] if command["video"] else ["audio"]
            p = CountingParticipant(
                command["url"], command["token"], command["room"], [self.clip(k) for k in kinds]
            )
            self.people[command["n"]] = p
            await p.connect()
            await p.join()
            await p.publish()
            deadline = time.monotonic() + 10
            while p.publish_pc is not None and p.publish_pc.connectionState != "connected":
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return {"id": p.id}
        if name == "subscribe":  # one participant, until its streams flow (or 10 s)
            p = self.people[command["n"]]
            await p.subscribe()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                counters = list(p.streams().values())
                if counters and all(c.packets for c in counters):
                    break
                await asyncio.sleep(0.05)
            return {}
        if name == "ready":  # how many expected streams are not offered, and not flowing yet
            missing, silent = 0, 0
            for n, p in self.people.items():
                streams = p.streams()
                for sender, kind in command["expected"][str(n)]:
                    counter = streams.get((sender, kind))
                    missing += counter is None
                    silent += counter is not None and counter.packets == 0
            return {"missing": missing, "silent": silent}
        if name == "snapshot":  # at an agreed moment, on the machine's monotonic clock
            await asyncio.sleep(max(0.0, command["at"] - time.monotonic()))
            at = time.monotonic()
            people = {str(n): p.snapshot() for n, p in self.people.items()}
            lag, backlog = self.lag.summary(), self.backlog_max
            if command.get("reset_lag"):
                self.lag.reset()
                self.backlog_max = 0
            return {
                "at": at,
                "people": people,
                "lag": lag,
                "send_backlog": backlog,
                "cpu_s": cpu_seconds(os.getpid()),
                "udp_drops": udp_drops_by_socket(os.getpid()),
            }
        if name == "close":
            for p in self.people.values():
                with contextlib.suppress(Exception):
                    await p.close()
            return {}
        raise ValueError(f"unknown command {name!r}")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = sys.stdout
        sys.stdout = sys.stderr  # stray prints must not corrupt the answers
        samplers = [
            asyncio.create_task(sample_lag(self.lag)),
            asyncio.create_task(self.watch_backlog()),
        ]
        try:
            while line := await reader.readline():
                command = json.loads(line)
                try:
                    answer = {"ok": True, **await self.handle(command)}
                except Exception as exc:  # told to the driver, which stops the bench
                    answer = {"ok": False, "error": repr(exc)}
                out.write(json.dumps(answer) + "\n")
                out.flush()
                if command["cmd"] == "close":
                    break
        finally:
            for task in samplers:
                task.cancel()
            await asyncio.gather(*samplers, return_exceptions=True)
            for p in self.people.values():
                with contextlib.suppress(Exception):
                    await p.close()


# --- The bench (the driver process) --------------------------------------------------------------


class ClientProcess:
    """The driver's end of one client process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, args: argparse.Namespace) -> ClientProcess:
        command = [sys.executable, __file__, "--clients", "--video-kbps", str(args.video_kbps)]
        command += ["--clip-s", str(args.clip_s)]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        return cls(process)

    async def call(
        self, command: dict[str, Any], limit_s: float = 120, *, fatal: bool = True
    ) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self._lock:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), limit_s)
        if not line:
            raise SystemExit(f"a client process ended (exit {await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if not answer["ok"] and fatal:
            raise SystemExit(f"a client process failed {command['cmd']}: {answer['error']}")
        return answer

    async def stop(self) -> None:
        with contextlib.suppress(Exception, SystemExit):
            await self.call({"cmd": "close"}, limit_s=30)
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Stream:
    receiver: int
    sender: int
    kind: str
    packets: int  # received in the window
    frames: int  # marker packets received in the window (video: frames)
    expected: int  # by sequence numbers (0 if the stream reconnected)
    lost: int
    sent: int  # the publisher's frames (video) or packets (audio) in the window
    tolerance: int  # frames or packets the window's two ends may cut in flight
    reconnected: bool

    @property
    def arrived(self) -> int:
        return self.frames if self.kind == "video" else self.packets

    @property
    def short(self) -> int:
        return max(0, self.sent - self.arrived - self.tolerance)


@dataclass
class Result:
    streams: list[Stream]
    receivers: list[tuple[int, list[str]]]  # (participant, kinds published)
    missing: list[str]  # "receiver <- sender kind" not received in the window
    paused: int  # video pauses the participants were told of in the window
    media_lost: list[str]  # in the window: "p3 publish silence"
    media_lost_before: int  # while the room filled
    reconnections: int  # connections made again, in the window
    server: dict[str, Any]
    clients: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.streams)

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.streams)

    @property
    def short(self) -> int:
        return sum(s.short for s in self.streams)

    @property
    def ok(self) -> bool:
        """No packet lost, nothing short end to end, every stream received by everyone, no
        connection declared lost."""
        return not (
            self.lost or self.short or self.missing or self.media_lost or self.reconnections
        )


async def start_server(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict]:
    command = [sys.executable, __file__, "--serve", "--video", str(args.video)]
    command += ["--audio", str(args.audio), "--busy-lag-ms", str(args.busy_lag_ms)]
    command += ["--no-recording"] if args.no_recording else []
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
    if not line.startswith(b"READY "):
        raise SystemExit(f"the server did not start: {line!r}")
    return process, json.loads(line[6:])


async def stop_server(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.close()  # end of file: the server stops (sfu_server.stop_when_parent_goes)
    try:
        await asyncio.wait_for(process.wait(), timeout=30)
    except TimeoutError:
        process.kill()
        await process.wait()


def drops_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Kernel drops between two readings, per socket (a socket opened since counts from 0;
    one closed since is not seen: a lower bound then)."""
    return sum(n - before.get(inode, 0) for inode, n in after.items())


async def snapshot_all(
    clients: list[ClientProcess], server_pid: int, *, reset_lag: bool = False
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every client process's counts and the server's CPU time and drops, taken at one
    moment (a second from now: every process has the command by then)."""
    at = time.monotonic() + 1.0
    command = {"cmd": "snapshot", "at": at, "reset_lag": reset_lag}
    answers = asyncio.gather(*(c.call(command) for c in clients))
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    server = {
        "at": time.monotonic(),
        "cpu_s": cpu_seconds(server_pid),
        "udp_drops": udp_drops_by_socket(server_pid),
        "busy_s": machine_busy_seconds(),
    }
    return list(await answers), server


async def run(args: argparse.Namespace, log: Any = print) -> Result:
    """Start the server and the clients, fill the room, measure one window; all closed after."""
    began = time.monotonic()
    process, ready = await start_server(args)
    log(f"server up in {time.monotonic() - began:.1f} s (pid {process.pid})")
    count = args.video + args.audio
    workers = max(1, min(args.client_processes, count))
    clients = list(await asyncio.gather(*(ClientProcess.start(args) for _ in range(workers))))
    home = [clients[n % workers] for n in range(count)]  # participant n's process
    try:
        import aiohttp

        started = time.monotonic()
        ids: list[str] = []
        kinds: list[list[str]] = []
        for n in range(count):
            # each publisher's ICE and DTLS up before the next: sixteen handshakes at once
            # starve the loops on a loaded machine
            video = n < args.video
            answer = await home[n].call(
                {
                    "cmd": "join",
                    "n": n,
                    "url": ready["url"],
                    "room": ready["room"],
                    "token": ready["tokens"][n],
                    "video": video,
                }
            )
            ids.append(answer["id"])
            kinds.append(["video", "audio"] if video else ["audio"])
        log(f"{count} participants joined and published in {time.monotonic() - started:.1f} s")
        # one subscriber at a time, each until its streams flow: sixteen renegotiations at once
        # on a loaded 2-core machine lag the server's loop past a second (measured)
        for n in range(count):
            answer = await home[n].call({"cmd": "subscribe", "n": n}, fatal=False)
            if not answer["ok"]:  # measured on anyway: the window says what it cost
                log(f"p{n} did not subscribe: {answer['error']}")
        expected = {
            str(n): [[ids[m], kind] for m in range(count) if m != n for kind in kinds[m]]
            for n in range(count)
        }
        deadline = time.monotonic() + 60
        while True:
            answers = await asyncio.gather(
                *(c.call({"cmd": "ready", "expected": expected}) for c in clients)
            )
            missing = sum(a["missing"] for a in answers)
            silent = sum(a["silent"] for a in answers)
            if (missing == 0 and silent == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if missing:  # measured on anyway: the tally names them
            log(f"{missing} streams not offered to their subscribers in 60 s")
        log(
            f"{count} participants subscribed in {time.monotonic() - started:.1f} s "
            f"({silent} streams still silent) in {workers} client processes"
        )
        async with aiohttp.ClientSession() as http:
            load0 = os.getloadavg()
            await (await http.post(ready["control"] + "/mark")).release()
            first, s0 = await snapshot_all(clients, process.pid, reset_lag=True)
            t0 = s0["at"]
            rss_max = 0.0
            while time.monotonic() - t0 < args.seconds - 1.0:
                await asyncio.sleep(min(1.0, args.seconds - 1.0 - (time.monotonic() - t0)))
                rss_max = max(rss_max, rss_mb(process.pid))
            last, s1 = await snapshot_all(clients, process.pid)
            t1 = s1["at"]
            load1 = os.getloadavg()
            async with http.get(ready["control"] + "/figures") as response:
                figures = await response.json()
        seconds = t1 - t0
        server = {
            "cpu_percent": 100 * (s1["cpu_s"] - s0["cpu_s"]) / seconds,
            "rss_mb": rss_mb(process.pid),
            "rss_max_mb": rss_max,
            "lag": figures["lag"],
            "udp_drops": drops_between(s0["udp_drops"], s1["udp_drops"]),
            "seconds": seconds,
            "machine_cpu_percent": 100 * (s1["busy_s"] - s0["busy_s"]) / seconds,
            "cores": usable_cores()[0],
            "load_before": load0,
            "load_after": load1,
        }
        clients_figures = [
            {
                "cpu_percent": 100 * (b["cpu_s"] - a["cpu_s"]) / seconds,
                "lag": b["lag"],
                "udp_drops": drops_between(a["udp_drops"], b["udp_drops"]),
                "send_backlog": b["send_backlog"],
                "participants": sorted(int(n) for n in b["people"]),
                "skew_s": (a["at"] - t0, t1 - b["at"]),
            }
            for a, b in zip(first, last, strict=True)
        ]
        return tally(args, ids, kinds, first, last, t0, t1, server, clients_figures)
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
        await stop_server(process)


#: The highest rate of each kind of stream (frames or packets per second): the clip's 30 fps,
#: Opus's 20 ms packets.
RATE = {"video": 30, "audio": 50}


def tally(
    args: argparse.Namespace,
    ids: list[str],
    kinds: list[list[str]],
    first: list[dict[str, Any]],
    last: list[dict[str, Any]],
    t0: float,
    t1: float,
    server: dict[str, Any],
    clients: list[dict[str, Any]],
) -> Result:
    """Per stream, what arrived in the window against what its publisher sent.

    Tolerance of a stream: the frames (audio: packets) that may be on their way at one end of
    the window and not at the other. The window's ends are snapshots of counters: the
    publisher's count of frames handed to its sender, the subscriber's of frames it read. A
    frame counted sent is in flight until the subscriber reads it: the publisher's loop sends
    it, the server's loop forwards it, the subscriber's loop reads it, each up to its own loop
    lag late. So: IN_FLIGHT (packetisation and the wire), plus the stream's rate times (the
    two processes' snapshots apart + the worst loop lag in the window of the publisher's
    process, the server and the subscriber's process). The sequence-number loss, the other
    check, has no tolerance."""
    index = {pid: n for n, pid in enumerate(ids)}
    at0 = {n: s["at"] for s in first for n in map(int, s["people"])}
    at1 = {n: s["at"] for s in last for n in map(int, s["people"])}
    people0 = {int(n): p for s in first for n, p in s["people"].items()}
    people1 = {int(n): p for s in last for n, p in s["people"].items()}
    lag_s = {n: s["lag"]["max_ms"] / 1000 for s in last for n in map(int, s["people"])}
    streams, missing = [], []
    for n in sorted(people1):
        a = {(r[0], r[1]): r for r in people0[n]["streams"]}
        b = {(r[0], r[1]): r for r in people1[n]["streams"]}
        reconnected = people1[n]["generation"] != people0[n]["generation"]
        for m in range(len(ids)):
            if m == n:
                continue
            for kind in kinds[m]:
                ra, rb = a.get((ids[m], kind)), b.get((ids[m], kind))
                sent_a, sent_b = people0[m]["sent"].get(kind, 0), people1[m]["sent"].get(kind, 0)
                if ra is None or rb is None or rb[2] - ra[2] == 0:
                    missing.append(f"p{n} <- p{m} {kind}")
                    continue
                skew = abs(at0[n] - at0[m]) + abs(at1[n] - at1[m])
                skew += lag_s[n] + lag_s[m] + server["lag"]["max_ms"] / 1000
                moved = reconnected or people1[m]["generation"] != people0[m]["generation"]
                expected, lost = 0, 0
                if not moved and ra[5] >= 0:
                    expected = rb[5] - ra[5]
                    lost = max(0, expected - (rb[4] - ra[4]))
                streams.append(
                    Stream(
                        receiver=n,
                        sender=m,
                        kind=kind,
                        packets=rb[2] - ra[2],
                        frames=rb[3] - ra[3],
                        expected=expected,
                        lost=lost,
                        sent=sent_b - sent_a,
                        tolerance=IN_FLIGHT + math.ceil(RATE[kind] * skew),
                        reconnected=moved,
                    )
                )
    media_lost = [
        f"p{n} {transport} {reason} at {at - t0:+.1f} s"
        for n, p in people1.items()
        for at, transport, reason in p["media_lost"]
        if t0 <= at <= t1
    ]
    before = sum(1 for p in people1.values() for at, _, _ in p["media_lost"] if at < t0)
    reconnections = sum(people1[n]["generation"] - people0[n]["generation"] for n in people1)
    paused = sum(
        1 for p in people1.values() for at, _, down in p["pauses"] if down and t0 <= at <= t1
    )
    if args.verbose:
        for n, p in sorted(people1.items()):
            for at, sender, down in p["pauses"]:
                if at >= t0:
                    print(
                        f"p{n}: video of p{index.get(sender, -1)} "
                        f"{'paused' if down else 'resumed'} at {at - t0:+.1f} s of the window"
                    )
    receivers = [(n, kinds[n]) for n in sorted(people1)]
    return Result(
        streams, receivers, missing, paused, media_lost, before, reconnections, server, clients
    )


def _lag(lag: dict[str, Any]) -> str:
    return (
        f"p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, max {lag['max_ms']:.1f} ms "
        f"(n={lag['n']})"
    )


def report(result: Result, args: argparse.Namespace, log: Any = print) -> None:
    seconds = result.server["seconds"]
    log(
        "\nreceiver  sends       streams  video pkts/s  video frames/s  audio pkts/s  "
        "expected    lost  frames+packets sent/received  short"
    )
    for n, kinds in result.receivers:
        mine = [s for s in result.streams if s.receiver == n]
        v = [s for s in mine if s.kind == "video"]
        a = [s for s in mine if s.kind == "audio"]

        def span(items: list[Stream], key: str) -> str:
            if not items:
                return "-"
            values = [getattr(s, key) / seconds for s in items]
            return f"{min(values):.1f}-{max(values):.1f}"

        log(
            f"p{n:<8d}{'+'.join(kinds):12s}{len(mine):>7d}  {span(v, 'packets'):>12s}  "
            f"{span(v, 'frames'):>14s}  {span(a, 'packets'):>12s}  "
            f"{sum(s.expected for s in mine):>8d}  {sum(s.lost for s in mine):>6d}  "
            f"{sum(s.sent for s in mine):>13d}/{sum(s.arrived for s in mine):<14d}  "
            f"{sum(s.short for s in mine):>5d}"
        )
        if args.verbose:
            for s in mine:
                log(
                    f"    <- p{s.sender:<3d} {s.kind}: {s.packets} packets, {s.frames} marker "
                    f"packets, lost {s.lost} of {s.expected}; sent {s.sent} "
                    f"{'frames' if s.kind == 'video' else 'packets'}, received {s.arrived} "
                    f"(tolerance {s.tolerance}), short {s.short}"
                    + (", RECONNECTED" if s.reconnected else "")
                )
    packets = sum(s.packets for s in result.streams)
    tolerances = [s.tolerance for s in result.streams] or [0]
    worst = max(result.streams, key=lambda s: (s.sent - s.arrived) / max(1, s.sent), default=None)
    log(
        f"\n{len(result.receivers)} receivers, {len(result.streams)} streams received in "
        f"{seconds:.1f} s ({packets / seconds:.0f} packets/s forwarded); lost {result.lost} of "
        f"{result.expected} by sequence numbers "
        f"({100 * result.lost / max(1, result.expected):.3f}%)"
        + (f"; NOT RECEIVED: {', '.join(result.missing)}" if result.missing else "")
    )
    log(
        f"end to end (the publisher's frames/packets sent in the window against the "
        f"subscriber's received; tolerance {min(tolerances)}-{max(tolerances)} per stream: "
        f"{IN_FLIGHT} plus the stream's rate times the snapshots' skew and the worst loop lags "
        f"on its way, i.e. what may be in flight at one end and not the other): "
        f"{result.short} short"
        + (
            f"; the largest gap p{worst.receiver} <- p{worst.sender} {worst.kind}: sent "
            f"{worst.sent}, received {worst.arrived}"
            if worst is not None
            else ""
        )
    )
    log(
        f"video pauses announced (video_paused) in the window: {result.paused}; connections "
        f"the server declared lost (media_lost): {len(result.media_lost)} in the window"
        + (f" ({'; '.join(result.media_lost)})" if result.media_lost else "")
        + f", {result.media_lost_before} while the room filled; reconnections in the window: "
        f"{result.reconnections}"
    )
    server = result.server
    log(
        f"server process: CPU {server['cpu_percent']:.0f}% of one core (user+sys), RSS "
        f"{server['rss_mb']:.0f} MiB (max {server['rss_max_mb']:.0f}); loop lag "
        f"{_lag(server['lag'])}; datagrams the kernel dropped at its sockets (not read in "
        f"time): {server['udp_drops']}"
    )
    for k, c in enumerate(result.clients):
        log(
            f"client process {k} (p{','.join(map(str, c['participants']))}): CPU "
            f"{c['cpu_percent']:.0f}%, loop lag {_lag(c['lag'])}, kernel drops "
            f"{c['udp_drops']}, largest send backlog of a socket {c['send_backlog'] / 1024:.0f} "
            f"KiB, snapshot late by {c['skew_s'][0] * 1000:.0f}/"
            f"{c['skew_s'][1] * 1000:.0f} ms"
        )
    log(
        f"the machine, all processes: {server['machine_cpu_percent']:.0f}% of "
        f"{100 * server['cores']}%; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.1f}' for x in server['load_before'])} before the window, "
        f"{'/'.join(f'{x:.1f}' for x in server['load_after'])} after"
    )
    log("PASS" if result.ok else "FAIL")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=int, default=8, help="participants with video + audio")
    parser.add_argument("--audio", type=int, default=8, help="participants with audio only")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--video-kbps", type=int, default=600)
    parser.add_argument("--clip-s", type=float, default=2.0, help="a keyframe every clip")
    parser.add_argument("--no-recording", action="store_true", help="the server records none")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=4,
        help="processes the participants are spread over (1: all in one, which starves)",
    )
    parser.add_argument(
        "--busy-lag-ms",
        type=int,
        default=200,
        help="the server refuses joins while its loop lags this much (0: never; default as "
        "in production)",
    )
    parser.add_argument("--verbose", action="store_true", help="every stream of every receiver")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)  # a client
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    if args.serve:
        asyncio.run(serve(args))
        return
    if args.clients:
        asyncio.run(ClientWorker(args).run())
        return
    result = asyncio.run(run(args))
    report(result, args)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
