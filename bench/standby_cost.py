"""The hot standby's cost (issue 16): server CPU and standby-path bytes per participant, with the
standby on and off, side by side in one run.

    .venv/bin/python bench/standby_cost.py [--participants 4] [--seconds 20] [--rounds 2]

Each round starts the whole server (``web.app``, no recording) in a process of its own twice,
one after the other, in alternating order: **off**, ICE on 127.0.0.1 alone (one provider: one
publish connection per participant, one path per connection, no path monitor); **on**, two
providers on 127.0.0.1 and 127.0.0.2 (docs/providers.md: the join ack says ``media_paths: 2``,
each participant publishes on a connection per provider as the page does, camera and
microphone on path 0, the microphone alone on path 1; the subscribe connection has a path per
provider, probed every 200 ms, with every audio packet copied onto the standby path). The
participants are aiortc clients in this process, on 127.0.0.1, each publishing a pre-encoded
VP8 clip and Opus (bench/encoded_media.py) and subscribing to everyone else; they count RTP at
the transport and never decode (bench/stream_counter.py).

Once every stream delivered, a window of --seconds: the server process's CPU (user + system,
from /proc, % of one core) and, at each client's ICE sockets, the bytes sent to and received
from each server address. The standby path is, on the subscribe connection, the server address
that is not carrying the video (the server sends media on one path); the whole path-1 publish
connection. Media flows on the active paths throughout: the packets each subscriber received
in the window are printed beside the figures, and a round whose streams did not all deliver
is said so.

Prints, per mode, the medians over the rounds, then the standby's cost per participant (CPU,
kbit/s up and down on the standby path) and the ratios on/off. The machine's load is printed
beside the figures: other work on the cores moves the CPU figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # before tests/, whose media/ folder would shadow the package

from aiortc import RTCSessionDescription  # noqa: E402
from encoded_media import EncodedClip, EncodedTrack, encode_opus, encode_vp8  # noqa: E402
from load_clients import client_pc, wait_until_flowing  # noqa: E402
from mdt_room import CountingParticipant, consultation_room, stop_server  # noqa: E402
from proc_stats import cpu_seconds, machine_busy_seconds  # noqa: E402
from sfu_server import stop_when_parent_goes  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402
from media import _ice_seam as ice  # noqa: E402
from media.paths import use_addresses  # noqa: E402

CLIENT_ADDRESS = "127.0.0.1"
PROVIDER_ADDRESSES = ("127.0.0.1", "127.0.0.2")

# --- The server process --------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    from turn.providers import NetworkProvider
    from web.app import create_app
    from web.config import Config
    from web.transport import runner_options

    tmp = Path(tempfile.mkdtemp(prefix="standby-cost-"))
    if args.standby == "on":
        providers = tuple(
            NetworkProvider(name=f"p{n}", address=address)
            for n, address in enumerate(PROVIDER_ADDRESSES)
        )
        config = Config(data_dir=tmp / "data", providers=providers, recording=False)
    else:
        config = Config(data_dir=tmp / "data", ice_addresses=("127.0.0.1",), recording=False)
    app = create_app(config)
    runner = web.AppRunner(app, **runner_options(config))
    stop = asyncio.Event()
    watcher = asyncio.create_task(stop_when_parent_goes(stop))
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        room_id, tokens = await consultation_room(app, args.participants)
        ready = {
            "url": f"http://127.0.0.1:{runner.addresses[0][1]}",
            "room": room_id,
            "tokens": tokens,
            "pid": os.getpid(),
        }
        print("READY " + json.dumps(ready), flush=True)
        sys.stdout = sys.stderr  # nobody reads on: a full pipe must never block this process
        await stop.wait()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# --- Byte counts at the clients' ICE sockets ------------------------------------------------------


@dataclass
class Bytes:
    """Bytes this client sent to and received from each remote IP address on one connection."""

    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        return dict(self.sent), dict(self.received)


def count_bytes(pc: Any) -> Bytes:
    """Count every datagram on the (bundled) ICE sockets of the aiortc peer ``pc``; call once
    it is connected (its sockets exist)."""
    counts = Bytes()
    (dtls,) = seam.dtls_transports(pc)
    for socket in ice.local_sockets(ice.ice_connection(dtls)):
        protocol = socket.protocol
        deliver = protocol.datagram_received
        transport = protocol.transport
        send = transport.sendto

        def received(data: bytes, addr: tuple[Any, ...], deliver: Any = deliver) -> None:
            counts.received[addr[0]] += len(data)
            deliver(data, addr)

        def sendto(data: bytes, addr: Any = None, send: Any = send) -> None:
            if addr is not None:
                counts.sent[addr[0]] += len(data)
            send(data, addr)

        protocol.datagram_received = received
        transport.sendto = sendto
    return counts


# --- The participants ----------------------------------------------------------------------------


class StandbyParticipant(CountingParticipant):
    """Publishes as the room page does: on one connection, or, when the join ack says
    ``media_paths: 2``, on a connection per provider (camera and microphone on path 0, the
    microphone alone on path 1). Counts the bytes of each of its connections."""

    def __init__(self, url: str, token: str, room_id: str, clips: list[EncodedClip]) -> None:
        super().__init__(url, token, room_id, clips)
        self.make_pc = lambda _servers=None: _pc()  # the subscribe connection's too
        self.paths = 1
        self.lanes: list[Any] = []  # the publish connections, by path
        self.bytes: dict[str, Bytes] = {}  # "publish0", "publish1", "subscribe"

    async def join(self) -> dict[str, Any]:
        ack = await super().join()
        self.paths = int(ack.get("media_paths", 1))
        return ack

    async def _publish(self) -> None:
        self.lanes = []
        for path in range(self.paths):
            pc = _pc()
            if path == 0:
                for clip in self.clips:
                    pc.addTransceiver(EncodedTrack(clip), direction="sendonly")
            else:  # the page's standby: the microphone, a video sender with no track
                pc.addTransceiver("video", direction="sendonly")
                audio = next(c for c in self.clips if c.kind == "audio")
                pc.addTransceiver(EncodedTrack(audio), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer: dict[str, Any] = {"type": "offer", "sdp": pc.localDescription.sdp}
            if self.paths == 2:
                offer["path"] = path
            ack = await self.call("publish", offer)
            assert ack["ok"], ack
            await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
            self.lanes.append(pc)
        self.publish_pc = self.lanes[0]

    def connections(self) -> dict[str, Any]:
        pcs = {"subscribe": self.sub.pc if self.sub else None}
        pcs.update({f"publish{n}": pc for n, pc in enumerate(self.lanes)})
        return {name: pc for name, pc in pcs.items() if pc is not None}

    def start_counting(self) -> None:
        for name, pc in self.connections().items():
            self.bytes[name] = count_bytes(pc)


def _pc() -> Any:
    pc = client_pc()
    use_addresses(pc, [CLIENT_ADDRESS])
    return pc


# --- A round -------------------------------------------------------------------------------------


async def start_server(participants: int, mode: str) -> tuple[asyncio.subprocess.Process, dict]:
    command = [sys.executable, __file__, "--serve", "--standby", mode]
    command += ["--participants", str(participants)]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    if not line.startswith(b"READY "):
        raise SystemExit(f"the server did not start: {line!r}")
    return process, json.loads(line[6:])


@dataclass
class Figures:
    mode: str
    cpu_pct: float  # the server process, % of one core
    machine_pct: float  # every process of the machine, % of one core
    standby_up_kbps: float  # per participant, client -> server on the standby path
    standby_down_kbps: float  # per participant, server -> client on the standby path
    total_up_kbps: float  # per participant, every path
    total_down_kbps: float
    received: dict[str, int]  # RTP packets the subscribers counted in the window, by kind
    paused: int  # video pauses (congestion) the participants were told of in the window
    silent_streams: int
    load: str


def _standby_bytes(
    name: str, sent: dict[str, int], received: dict[str, int]
) -> tuple[int, int, int, int]:
    """(standby up, standby down, total up, total down) bytes of one connection's window."""
    total_up, total_down = sum(sent.values()), sum(received.values())
    if name == "publish1":
        return total_up, total_down, total_up, total_down
    if name == "publish0" or len(received) < 2:
        return 0, 0, total_up, total_down
    active = max(received, key=lambda address: received[address])  # the video comes that way
    up = sum(n for address, n in sent.items() if address != active)
    down = sum(n for address, n in received.items() if address != active)
    return up, down, total_up, total_down


async def one_round(args: argparse.Namespace, mode: str, clips: list[EncodedClip]) -> Figures:
    process, ready = await start_server(args.participants, mode)
    people = [
        StandbyParticipant(ready["url"], token, ready["room"], clips) for token in ready["tokens"]
    ]
    try:
        for p in people:
            await p.connect()
            await p.join()
            await p.publish()
            deadline = time.monotonic() + 15
            while any(pc.connectionState != "connected" for pc in p.connections().values()):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode}: a publish connection did not connect")
                await asyncio.sleep(0.05)
        for p in people:
            await p.subscribe()
        expected = len(people) * (len(people) - 1) * 2
        deadline = time.monotonic() + 30
        while sum(len(p.streams()) for p in people) < expected:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        silent = await wait_until_flowing([p.as_subscriber() for p in people], 20)
        silent += await video_steady(people, 40)
        for p in people:
            p.start_counting()

        before_bytes = {id(p): {n: b.snapshot() for n, b in p.bytes.items()} for p in people}
        before_rtp = _packets(people)
        before_pauses = sum(len(p.pauses) for p in people)
        cpu0, busy0, t0 = cpu_seconds(ready["pid"]), machine_busy_seconds(), time.monotonic()
        await asyncio.sleep(args.seconds)  # the measured window
        cpu1, busy1, t1 = cpu_seconds(ready["pid"]), machine_busy_seconds(), time.monotonic()
        after_rtp = _packets(people)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        seconds = t1 - t0
        sums = [0, 0, 0, 0]
        for p in people:
            for name, counts in p.bytes.items():
                sent0, received0 = before_bytes[id(p)][name]
                sent1, received1 = counts.snapshot()
                sent = {a: n - sent0.get(a, 0) for a, n in sent1.items()}
                received = {a: n - received0.get(a, 0) for a, n in received1.items()}
                for i, n in enumerate(_standby_bytes(name, sent, received)):
                    sums[i] += n
        per = [n * 8 / 1000 / seconds / len(people) for n in sums]
        return Figures(
            mode=mode,
            cpu_pct=100 * (cpu1 - cpu0) / seconds,
            machine_pct=100 * (busy1 - busy0) / seconds,
            standby_up_kbps=per[0],
            standby_down_kbps=per[1],
            total_up_kbps=per[2],
            total_down_kbps=per[3],
            received={kind: n - before_rtp.get(kind, 0) for kind, n in after_rtp.items()},
            paused=sum(len(p.pauses) for p in people) - before_pauses,
            silent_streams=silent,
            load=load,
        )
    finally:
        for p in people:
            for pc in p.lanes[1:]:
                await pc.close()
            await p.close()
        await stop_server(process)


async def video_steady(people: list[StandbyParticipant], limit_s: float) -> int:
    """Wait until every received video stream delivered packets in each of the last two
    seconds: the start's congestion pause is over, and a stream resumed after it has had its
    keyframe (a pre-encoded clip has one per loop, it ignores keyframe requests). Returns how
    many were still stalled at ``limit_s``."""
    deadline = time.monotonic() + limit_s
    steady = 0
    while True:
        videos = [c for p in people for c in p.counters.values() if c.kind == "video"]
        before = [c.packets for c in videos]
        await asyncio.sleep(1.0)  # one second's packets are the measure
        stalled = sum(1 for c, n in zip(videos, before, strict=True) if c.packets - n < 10)
        steady = steady + 1 if stalled == 0 else 0
        if steady >= 2 or time.monotonic() > deadline:
            return stalled


def _packets(people: list[StandbyParticipant]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for p in people:
        for counter in p.counters.values():
            counts[counter.kind] += counter.packets
    return dict(counts)


def _median(figures: list[Figures], name: str) -> float:
    return statistics.median(getattr(f, name) for f in figures)


async def bench(args: argparse.Namespace) -> int:
    video = encode_vp8(seconds=args.clip_s, bitrate=args.video_kbps * 1000)
    audio = encode_opus(seconds=args.clip_s)
    print(f"uptime load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores {os.cpu_count()}")
    print(
        f"{args.participants} participants, each VP8 {video.bitrate / 1000:.0f} kbps + Opus, "
        f"window {args.seconds:.0f} s, {args.rounds} rounds"
    )
    results: dict[str, list[Figures]] = {"off": [], "on": []}
    for n in range(args.rounds):
        order = ("off", "on") if n % 2 == 0 else ("on", "off")
        for mode in order:
            f = await one_round(args, mode, [video, audio])
            results[mode].append(f)
            print(
                f"round {n + 1} {mode:>3}: server CPU {f.cpu_pct:5.1f}% of a core (machine "
                f"{f.machine_pct:5.1f}%), per participant standby up {f.standby_up_kbps:5.1f} "
                f"down {f.standby_down_kbps:5.1f} kbit/s, all paths up {f.total_up_kbps:6.1f} "
                f"down {f.total_down_kbps:6.1f} kbit/s; RTP packets received in the window "
                f"{f.received}, video pauses {f.paused}, {f.silent_streams} silent streams; "
                f"load {f.load}",
                flush=True,
            )
    off, on = results["off"], results["on"]
    cpu_off, cpu_on = _median(off, "cpu_pct"), _median(on, "cpu_pct")
    n = args.participants
    print()
    print(f"medians of {args.rounds} rounds ({n} participants):")
    for name, figures in (("off", off), ("on", on)):
        print(
            f"  {name:>3}: server CPU {_median(figures, 'cpu_pct'):5.1f}%, standby up "
            f"{_median(figures, 'standby_up_kbps'):5.1f} / down "
            f"{_median(figures, 'standby_down_kbps'):5.1f} kbit/s per participant, all paths "
            f"up {_median(figures, 'total_up_kbps'):6.1f} / down "
            f"{_median(figures, 'total_down_kbps'):6.1f} kbit/s per participant"
        )
    print(
        f"standby cost per participant: server CPU {(cpu_on - cpu_off) / n:+.2f}% of a core "
        f"({(cpu_on - cpu_off) * 10 / n:+.1f} ms per second); standby path "
        f"{_median(on, 'standby_up_kbps'):.1f} kbit/s up, {_median(on, 'standby_down_kbps'):.1f} "
        f"kbit/s down"
    )
    print(
        f"ratio on/off: server CPU {cpu_on / cpu_off:.2f}; bytes per participant up "
        f"{_median(on, 'total_up_kbps') / _median(off, 'total_up_kbps'):.2f}, down "
        f"{_median(on, 'total_down_kbps') / _median(off, 'total_down_kbps'):.2f}"
    )
    print(f"uptime load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    silent = sum(f.silent_streams for f in (*off, *on))
    if silent:
        print(f"{silent} streams silent at the start of a window: the figures are short of them")
    return 1 if silent else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--video-kbps", type=int, default=500)
    parser.add_argument("--clip-s", type=float, default=5.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--standby", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args))
        return
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
