"""A consultation (MDT) room of the real server: loss, per-stream counts, server CPU and lag.

    .venv/bin/python bench/mdt_room.py [--video 8] [--audio 8] [--seconds 60] [--no-recording]

The whole server (``web.app``, as ``teleconsult serve`` builds it, recording each room unless
--no-recording) runs in its own process on a fresh SQLite data directory, ICE on 127.0.0.1. It
opens one room of kind ``consultation`` with one participation per participant (an inviter and
invitees, admitted), as ``POST /consultations/{id}/join-token`` would lead to, through the
domain's own ``consult.rooms`` (the consultation's request, invitation and accept steps are left
out: they do not touch the media), and prints the join tokens. This process then joins
everyone over socket.io (docs/signaling.md): --video participants publish VP8 + Opus, --audio
participants Opus only, each from pre-encoded clips (bench/encoded_media.py), and everyone
subscribes to everyone. Subscribers count RTP at the transport and never decode
(bench/stream_counter.py), so the clients stay cheap.

After every stream has delivered a packet, a window of --seconds: per receiver, the packets
expected (RTP sequence numbers) and lost, and per stream the packets and video frames
received; the server process's CPU (user + system, % of one core) and RSS; its event loop's
lag (sampled every 50 ms: p50, p99, max). The server renumbers what it forwards, so a frame it
drops (congestion control) leaves no gap in a subscriber's sequence numbers: each stream is
also checked end to end, the publisher's count of frames (audio: packets) sent in the window
against the subscriber's. Exits 1 if any packet was lost, any stream came short end to end,
or any subscriber did not receive every other participant's every stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # before tests/, whose media/ folder would shadow the package

from aiortc import RTCSessionDescription  # noqa: E402
from client import Participant  # noqa: E402
from encoded_media import EncodedClip, EncodedTrack, encode_opus, encode_vp8  # noqa: E402
from latency import LatencyRecorder  # noqa: E402
from load_clients import (  # noqa: E402
    Subscriber,
    accept_transport_cc,
    client_pc,
    enlarge_receive_buffers,
    send_transport_feedback,
    wait_until_flowing,
)
from proc_stats import cpu_seconds, machine_busy_seconds, rss_mb, usable_cores  # noqa: E402
from sfu_server import stop_when_parent_goes  # noqa: E402
from stream_counter import CounterSnapshot, StreamCounter, window_loss  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402

LAG_INTERVAL_S = 0.05
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


# --- The participants ----------------------------------------------------------------------------


class CountingParticipant(Participant):
    """A participant of tests/client.py that publishes pre-encoded clips and counts what it
    receives at the transport (nothing decoded): one :class:`StreamCounter` per mid."""

    def __init__(self, url: str, token: str, room_id: str, clips: list[EncodedClip]) -> None:
        super().__init__(url, token, "", room_id=room_id)
        self.clips = clips
        self.make_pc = lambda _servers=None: client_pc()
        self.counters: dict[str, StreamCounter] = {}  # by mid
        self.sending: dict[str, EncodedTrack] = {}  # by kind
        self.pauses: list[tuple[float, str, bool]] = []  # (monotonic, sender, paused)
        self.sio.on("video_paused", self._on_video_paused)
        self.media_lost: list[float] = []  # monotonic times the server closed our connections
        self._recovery: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()  # publish, subscribe and reconnect one at a time
        self.sio.on("media_lost", self._on_media_lost)

    def _on_media_lost(self, data: dict[str, Any]) -> None:
        """New connections, as the room page makes them (docs/signaling.md, media_lost)."""
        self.media_lost.append(time.monotonic())
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

    async def join(self) -> dict[str, Any]:
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
        pc = self.publish_pc = client_pc()
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
        # transport-cc feedback as a browser sends it: without any feedback from a subscriber
        # the server finds its path silent and closes it (measured)
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
            # the server closed this connection meanwhile (it was slow to come up on a loaded
            # machine): the reconnection after media_lost offers again
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

    def as_subscriber(self) -> Subscriber:
        """For load_clients.wait_until_flowing."""
        assert self.sub is not None
        return Subscriber(self.sub.pc, list(self.streams().values()))


@dataclass
class _Receiving:
    pc: Any

    async def close(self) -> None:
        await self.pc.close()


# --- The bench -----------------------------------------------------------------------------------


@dataclass
class Result:
    receivers: list[dict[str, Any]]
    missing: list[str]  # "receiver <- sender kind" not received in the window
    lost: int
    expected: int
    short: int  # frames (video) and packets (audio) sent but not received, all streams
    paused: int  # video pauses the participants were told of in the window
    server: dict[str, Any]

    @property
    def ok(self) -> bool:
        """No packet lost, nothing short end to end, every stream received by everyone."""
        return not (self.lost or self.short or self.missing or self.server["media_lost"])


async def start_server(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict]:
    command = [sys.executable, __file__, "--serve", "--video", str(args.video)]
    command += ["--audio", str(args.audio), "--busy-lag-ms", str(args.busy_lag_ms)]
    command += ["--no-recording"] if args.no_recording else []
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
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


async def run(args: argparse.Namespace, log: Any = print) -> Result:
    """Start the server, fill the room, measure one window; everything closed afterwards."""
    began = time.monotonic()
    video = encode_vp8(seconds=args.clip_s, bitrate=args.video_kbps * 1000)
    audio = encode_opus(seconds=args.clip_s)
    log(f"clips encoded in {time.monotonic() - began:.1f} s: VP8 {video.bitrate / 1000:.0f} kbps")
    began = time.monotonic()
    process, ready = await start_server(args)
    log(f"server up in {time.monotonic() - began:.1f} s (pid {process.pid})")
    people: list[CountingParticipant] = []
    try:
        import aiohttp

        for n in range(args.video + args.audio):
            clips = [video, audio] if n < args.video else [audio]
            token = ready["tokens"][n]
            people.append(CountingParticipant(ready["url"], token, ready["room"], clips))
        started = time.monotonic()
        for p in people:
            await p.connect()
            await p.join()
            await p.publish()
            # each publisher's ICE and DTLS up before the next: sixteen handshakes at once
            # starve both loops on a loaded machine
            deadline = time.monotonic() + 10
            while p.publish_pc is not None and p.publish_pc.connectionState != "connected":
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        # one subscriber at a time, each until its streams flow: sixteen renegotiations at once
        # on a loaded 2-core machine lag the server's loop past a second (measured)
        for p in people:
            await p.subscribe()
            with contextlib.suppress(TimeoutError):
                await wait_until_flowing([p.as_subscriber()], 10)
        expected_streams = {
            p.id: [(q.id, kind) for q in people if q is not p for kind in q.kinds()] for p in people
        }

        def all_offered() -> bool:
            return all(set(expected_streams[p.id]) <= set(p.streams()) for p in people)

        deadline = time.monotonic() + 60
        while not all_offered():
            if time.monotonic() > deadline:
                for n, p in enumerate(people):
                    task = p._answerer
                    failed = task.exception() if task is not None and task.done() else None
                    log(
                        f"p{n}: {len(p.streams())} of {len(expected_streams[p.id])} streams "
                        f"offered, {p.offers_answered} offers answered"
                        + (f", answering failed: {failed!r}" if failed else "")
                    )
                raise SystemExit("not every subscriber was offered every stream in 60 s")
            await asyncio.sleep(0.05)
        silent = await wait_until_flowing([p.as_subscriber() for p in people], 30)
        log(
            f"{len(people)} participants joined, published and subscribed in "
            f"{time.monotonic() - started:.1f} s ({silent} streams still silent)"
        )
        async with aiohttp.ClientSession() as http:
            await (await http.post(ready["control"] + "/mark")).release()
            me0 = cpu_seconds(os.getpid())
            cpu0, busy0, t0 = cpu_seconds(process.pid), machine_busy_seconds(), time.monotonic()
            start = {p.id: {k: c.snapshot() for k, c in p.streams().items()} for p in people}
            sent0 = {(p.id, k): t.sent for p in people for k, t in p.sending.items()}
            rss_max = 0.0
            while time.monotonic() - t0 < args.seconds:
                await asyncio.sleep(min(1.0, args.seconds - (time.monotonic() - t0)))
                rss_max = max(rss_max, rss_mb(process.pid))
            end = {p.id: {k: c.snapshot() for k, c in p.streams().items()} for p in people}
            sent = {
                (p.id, k): t.sent - sent0[(p.id, k)] for p in people for k, t in p.sending.items()
            }
            cpu1, busy1, t1 = cpu_seconds(process.pid), machine_busy_seconds(), time.monotonic()
            me = cpu_seconds(os.getpid())
            async with http.get(ready["control"] + "/figures") as response:
                figures = await response.json()
        server = {
            "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
            "rss_mb": rss_mb(process.pid),
            "rss_max_mb": rss_max,
            "lag": figures["lag"],
            "seconds": t1 - t0,
            "clients_cpu_percent": 100 * (me - me0) / (t1 - t0),
            "machine_cpu_percent": 100 * (busy1 - busy0) / (t1 - t0),
            "cores": usable_cores()[0],
            "load": os.getloadavg()[0],
        }
        paused = sum(1 for p in people for at, _, down in p.pauses if down and t0 <= at <= t1)
        paths_lost = sum(1 for p in people for at in p.media_lost if t0 <= at <= t1)
        before = sum(1 for p in people for at in p.media_lost if at < t0)
        log(f"connections the server closed as lost (media_lost): {before} before the window")
        if args.verbose:
            index = {p.id: n for n, p in enumerate(people)}
            for p in people:
                for at, sender, down in p.pauses:
                    log(
                        f"p{index[p.id]}: video of p{index.get(sender, -1)} "
                        f"{'paused' if down else 'resumed'} at {at - t0:+.1f} s of the window"
                    )
        server["media_lost"] = paths_lost
        return tally(people, expected_streams, start, end, sent, server, paused)
    finally:
        for p in people:
            await p.close()
        await stop_server(process)


def tally(
    people: list[CountingParticipant],
    expected_streams: dict[str, list[tuple[str, str]]],
    start: dict[str, dict[tuple[str, str], CounterSnapshot]],
    end: dict[str, dict[tuple[str, str], CounterSnapshot]],
    sent: dict[tuple[str, str], int],
    server: dict[str, Any],
    paused: int,
) -> Result:
    index = {p.id: n for n, p in enumerate(people)}
    receivers, missing, lost_all, expected_all, short_all = [], [], 0, 0, 0
    for p in people:
        streams = []
        for sender, kind in expected_streams[p.id]:
            a, b = start[p.id].get((sender, kind)), end[p.id].get((sender, kind))
            if a is None or b is None or b.packets - a.packets == 0:
                missing.append(f"p{index[p.id]} <- p{index[sender]} {kind}")
                continue
            expected, lost = window_loss(a, b)
            if a.highest_seq < 0:  # silent when the window opened: count from its first packet
                expected, lost = b.packets, 0
            streams.append(
                {
                    "from": index[sender],
                    "kind": kind,
                    "packets": b.packets - a.packets,
                    "frames": b.frames - a.frames,
                    "expected": expected,
                    "lost": lost,
                }
            )
            # what the publisher sent in the window against what arrived (the server's own drops,
            # congestion control's included, leave no gap in the numbers a subscriber sees)
            arrived = b.frames - a.frames if kind == "video" else b.packets - a.packets
            short = max(0, sent[(sender, kind)] - arrived - IN_FLIGHT)
            streams[-1]["sent"] = sent[(sender, kind)]
            streams[-1]["short"] = short
            lost_all += lost
            expected_all += expected
            short_all += short
        receivers.append({"receiver": index[p.id], "kinds": p.kinds(), "streams": streams})
    return Result(receivers, missing, lost_all, expected_all, short_all, paused, server)


def report(result: Result, args: argparse.Namespace, log: Any = print) -> None:
    seconds = result.server["seconds"]
    log(
        "\nreceiver  sends       streams  video pkts/s per stream  video frames/s  "
        "audio pkts/s per stream  expected    lost   short"
    )
    for r in result.receivers:
        v = [s for s in r["streams"] if s["kind"] == "video"]
        a = [s for s in r["streams"] if s["kind"] == "audio"]

        def span(items: list[dict[str, Any]], key: str) -> str:
            if not items:
                return "-"
            values = [s[key] / seconds for s in items]
            return f"{min(values):.1f}-{max(values):.1f}"

        log(
            f"p{r['receiver']:<8d}{'+'.join(r['kinds']):12s}{len(r['streams']):>7d}  "
            f"{span(v, 'packets'):>23s}  {span(v, 'frames'):>14s}  {span(a, 'packets'):>23s}  "
            f"{sum(s['expected'] for s in r['streams']):>8d}  "
            f"{sum(s['lost'] for s in r['streams']):>6d}  "
            f"{sum(s['short'] for s in r['streams']):>6d}"
        )
        if args.verbose:
            for s in r["streams"]:
                log(
                    f"    <- p{s['from']:<3d} {s['kind']}: {s['packets']} packets, "
                    f"{s['frames']} marker packets (video: frames), lost {s['lost']}; "
                    f"publisher sent {s['sent']} {'frames' if s['kind'] == 'video' else 'packets'}"
                    f", short {s['short']}"
                )
    streams = sum(len(r["streams"]) for r in result.receivers)
    packets = sum(s["packets"] for r in result.receivers for s in r["streams"])
    lag = result.server["lag"]
    log(
        f"\n{len(result.receivers)} receivers, {streams} streams received in {seconds:.1f} s "
        f"({packets / seconds:.0f} packets/s forwarded); lost {result.lost} of "
        f"{result.expected} ({100 * result.lost / max(1, result.expected):.3f}%)"
        + (f"; NOT RECEIVED: {', '.join(result.missing)}" if result.missing else "")
    )
    log(
        f"end to end (publisher's count against the subscriber's, {IN_FLIGHT} in flight "
        f"allowed): {result.short} video frames and audio packets short; "
        f"{result.paused} video pauses (video_paused) in the window; "
        f"{result.server['media_lost']} connections closed as lost (media_lost) in the window"
    )
    log(
        f"server process: CPU {result.server['cpu_percent']:.0f}% of one core (user+sys), "
        f"RSS {result.server['rss_mb']:.0f} MiB (max {result.server['rss_max_mb']:.0f}); "
        f"loop lag p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, "
        f"max {lag['max_ms']:.1f} ms (n={lag['n']})"
    )
    log(
        f"the {len(result.receivers)} clients (this process): CPU "
        f"{result.server['clients_cpu_percent']:.0f}%; the machine, all processes: "
        f"{result.server['machine_cpu_percent']:.0f}% of {100 * result.server['cores']}%, "
        f"load average {result.server['load']:.1f}"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=int, default=8, help="participants with video + audio")
    parser.add_argument("--audio", type=int, default=8, help="participants with audio only")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--video-kbps", type=int, default=600)
    parser.add_argument("--clip-s", type=float, default=2.0, help="a keyframe every clip")
    parser.add_argument("--no-recording", action="store_true", help="the server records none")
    parser.add_argument(
        "--busy-lag-ms",
        type=int,
        default=200,
        help="the server refuses joins while its loop lags this much (0: never; default as "
        "in production)",
    )
    parser.add_argument("--verbose", action="store_true", help="every stream of every receiver")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    if args.serve:
        asyncio.run(serve(args))
        return
    result = asyncio.run(run(args))
    report(result, args)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
