"""Forwarding cost of our SFU against aiortc's MediaRelay, side by side in one run.

    .venv/bin/python bench/sfu_forwarding.py [--publishers 2] [--subscribers 4] [--seconds 20]
        [--engines ours,relay] [--warmup 3] [--audio] [--no-latency]

Each engine runs in its own server process (bench/sfu_server.py), so its CPU time (utime+stime
of all its threads, from /proc) and RSS are its alone. This process is the load generator:
P publishers send a pre-encoded 640x480 30 fps ~1 Mbps VP8 clip in a loop (never encoding), and
S subscribers each subscribe to every publisher and count RTP packets without decoding. Every
peer, the server's included, gathers ICE on 127.0.0.1 only and uses no STUN/TURN server.

Figures are taken over a window of --seconds after --warmup seconds of flowing media. Not a test:
figures and ratios for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiortc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoded_media import EncodedClip, encode_opus, encode_vp8  # noqa: E402
from load_clients import (  # noqa: E402
    Control,
    Publisher,
    Subscriber,
    close_all,
    start_publisher,
    start_subscriber,
    wait_until_flowing,
)
from proc_stats import cpu_seconds, rss_mb, usable_cores  # noqa: E402
from stream_counter import CounterSnapshot, window_loss  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402

SERVER = Path(__file__).resolve().parent / "sfu_server.py"


@dataclass
class EngineResult:
    engine: str
    streams: int  # subscribed streams that delivered packets in the window
    video_streams: int
    silent_streams: int  # subscribed streams that delivered nothing
    window_s: float
    server_cpu_s: float
    client_cpu_s: float
    forwarded_packets: int
    latency: dict | None
    unmatched_frames: int | None
    expected: int
    lost: int
    video_frames: int
    video_bytes: int
    jitter_ms: float
    rss_mb: dict[str, float]

    @property
    def cpu_ms_per_stream_second(self) -> float:
        return self.server_cpu_s * 1000 / (max(1, self.streams) * self.window_s)

    @property
    def packets_per_cpu_second(self) -> float:
        return self.forwarded_packets / self.server_cpu_s if self.server_cpu_s else float("inf")


async def start_server(engine: str, latency: bool) -> tuple[asyncio.subprocess.Process, int]:
    args = [sys.executable, str(SERVER), "--engine", engine]
    if not latency:
        args.append("--no-latency")
    # the server stops at end of file on its stdin: it never outlives this process
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    except TimeoutError:
        line = b""
    if not line.startswith(b"PORT "):
        await stop_server(proc, None)
        raise RuntimeError(f"the {engine} server did not start (it said {line!r})")
    return proc, int(line.split()[1])


async def stop_server(proc: asyncio.subprocess.Process, control: Control | None) -> None:
    """Ask the server to close its peers and exit; kill it if it does not within 10 s."""
    if control is not None and proc.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(control.call("/shutdown", {}), timeout=5)
    if proc.stdin is not None:
        proc.stdin.close()  # end of file: the server stops even if /shutdown did not get through
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def snapshots(subscribers: list[Subscriber]) -> list[CounterSnapshot]:
    return [c.snapshot() for s in subscribers for c in s.counters]


async def run_engine(
    engine: str, args: argparse.Namespace, clips: list[EncodedClip]
) -> EngineResult:
    proc, port = await start_server(engine, not args.no_latency)
    control: Control | None = None
    publishers: list[Publisher] = []
    subscribers: list[Subscriber] = []
    rss = {"idle": rss_mb(proc.pid)}
    try:
        async with aiohttp.ClientSession() as session:
            control = Control(session, f"http://127.0.0.1:{port}")
            try:
                for _ in range(args.publishers):
                    publishers.append(await start_publisher(control, clips))
                producer_ids = [i for p in publishers for i in p.producer_ids]
                for _ in range(args.subscribers):
                    subscribers.append(await start_subscriber(control, producer_ids))
                await wait_until_flowing(subscribers, limit_s=15)
                await asyncio.sleep(args.warmup)  # pacing the warm-up, not polling

                await control.call("/mark", {})
                stats0 = await control.call("/stats")
                cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
                counters0, t0 = snapshots(subscribers), time.perf_counter()
                rss["start"] = rss_mb(proc.pid)
                await asyncio.sleep(args.seconds / 2)
                rss["mid"] = rss_mb(proc.pid)
                await asyncio.sleep(args.seconds / 2)
                counters1, t1 = snapshots(subscribers), time.perf_counter()
                cpu1, client1 = cpu_seconds(proc.pid), time.process_time()
                stats1 = await control.call("/stats")
                rss["end"] = rss_mb(proc.pid)
            finally:
                await close_all(publishers, subscribers)
                await stop_server(proc, control)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    counters = [c for s in subscribers for c in s.counters]
    expected = lost = frames = video_bytes = 0
    delivering = []  # streams that delivered in the window; the others count as silent
    for counter, a, b in zip(counters, counters0, counters1, strict=True):
        if b.packets == a.packets:
            continue
        delivering.append(counter)
        e, lo = window_loss(a, b)
        expected, lost = expected + e, lost + lo
        if counter.kind == "video":
            frames += b.frames - a.frames
            video_bytes += b.bytes - a.bytes
    video = [c for c in delivering if c.kind == "video"]
    return EngineResult(
        engine=engine,
        streams=len(delivering),
        video_streams=len(video),
        silent_streams=len(counters) - len(delivering),
        window_s=t1 - t0,
        server_cpu_s=cpu1 - cpu0,
        client_cpu_s=client1 - client0,
        forwarded_packets=stats1["forwarded_packets"] - stats0["forwarded_packets"],
        latency=stats1.get("latency"),
        unmatched_frames=stats1.get("unmatched_frames"),
        expected=expected,
        lost=lost,
        video_frames=frames,
        video_bytes=video_bytes,
        jitter_ms=sum(c.jitter for c in video) / len(video) / 90 if video else 0.0,
        rss_mb=rss,
    )


def latency_text(result: EngineResult) -> str:
    lat = result.latency
    if lat is None:
        return "n/a (--no-latency)"
    if not lat["n"]:
        return "n/a (no samples)"
    return f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}"


def report(results: list[EngineResult]) -> None:
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, f) -> None:  # type: ignore[no-untyped-def]
        rows.append((label, [f(r) for r in results]))

    row("forwarded streams", lambda r: f"{r.streams} ({r.video_streams} video)")
    row("subscribed streams delivering nothing", lambda r: str(r.silent_streams))
    row("window (s)", lambda r: f"{r.window_s:.1f}")
    row("server CPU (% of one core)", lambda r: f"{100 * r.server_cpu_s / r.window_s:.1f}")
    row("server CPU per stream-second (ms)", lambda r: f"{r.cpu_ms_per_stream_second:.2f}")
    row("forwarded packets per CPU-second", lambda r: f"{r.packets_per_cpu_second:,.0f}")
    row("forwarded packets per second", lambda r: f"{r.forwarded_packets / r.window_s:,.0f}")
    row("latency p50 / p99 (ms)", latency_text)
    row(
        "latency max (ms), samples",
        lambda r: (
            f"{r.latency['max_ms']:.1f}, {r.latency['n']}"
            if r.latency and r.latency["n"]
            else "n/a"
        ),
    )
    row("subscriber packet loss", lambda r: f"{100 * r.lost / max(1, r.expected):.3f}%")
    row(
        "video fps per stream (source 30)",
        lambda r: f"{r.video_frames / max(1, r.video_streams) / r.window_s:.1f}",
    )
    row(
        "video kbit/s per stream (payload)",
        lambda r: f"{r.video_bytes * 8 / max(1, r.video_streams) / r.window_s / 1000:.0f}",
    )
    row("video interarrival jitter (ms)", lambda r: f"{r.jitter_ms:.2f}")
    row(
        "server RSS idle/start/mid/end (MB)",
        lambda r: "/".join(f"{r.rss_mb[k]:.0f}" for k in ("idle", "start", "mid", "end")),
    )
    row("load generator CPU (% of one core)", lambda r: f"{100 * r.client_cpu_s / r.window_s:.1f}")

    width = max(len(label) for label, _ in rows) + 2
    col = max(14, *(len(v) + 2 for _, values in rows for v in values))
    print(" " * width + "".join(r.engine.rjust(col) for r in results))
    for label, values in rows:
        print(label.ljust(width) + "".join(v.rjust(col) for v in values))
    print()
    print("latency: ours = one video packet, in (after SRTP unprotect and parse) to out (after")
    print("SRTP protect and send); relay = one video frame, its last packet in to the re-encoded")
    print("frame handed to the sender (jitter buffer, decode, queue and encode in between).")
    for r in results:
        if r.unmatched_frames:
            print(f"{r.engine}: {r.unmatched_frames} relayed frames had no arrival stamp")
    by_name = {r.engine: r for r in results}
    if "ours" in by_name and "relay" in by_name:
        ours, relay = by_name["ours"], by_name["relay"]
        ratio = relay.cpu_ms_per_stream_second / ours.cpu_ms_per_stream_second
        print(f"\nrelay/ours, server CPU per forwarded stream-second: {ratio:.1f}x")


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def main(args: argparse.Namespace) -> None:
    seam.restrict_host_addresses(["127.0.0.1"])
    # SIGTERM unwinds like Ctrl-C, through the finally blocks that stop the server
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    cores, usable = usable_cores()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(
        f"machine: {cores} cores ({usable} usable), {cpu_model()}; Python "
        f"{platform.python_version()}, aiortc {aiortc.__version__}"
    )
    clips = [encode_vp8()]
    if args.audio:
        clips.append(encode_opus())
    for clip in clips:
        print(
            f"source {clip.kind}: {len(clip.packets)} packets looping every {clip.seconds:.0f} s, "
            f"{clip.bitrate / 1000:.0f} kbit/s"
        )
    print(
        f"load: {args.publishers} publishers x {args.subscribers} subscribers, "
        f"warm-up {args.warmup:g} s, window {args.seconds:g} s\n",
        flush=True,
    )
    results = []
    for engine in args.engines:
        print(f"running {engine} ...", flush=True)
        results.append(await run_engine(engine, args, clips))
    print()
    report(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds skipped first")
    parser.add_argument("--engines", default="ours,relay", help="comma-separated: ours, relay")
    parser.add_argument("--audio", action="store_true", help="each publisher adds Opus audio")
    parser.add_argument("--no-latency", action="store_true", help="no latency instrumentation")
    args = parser.parse_args()
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - {"ours", "relay"}
    if unknown or not args.engines:
        parser.error(f"unknown engines: {', '.join(sorted(unknown)) or '(none)'}")
    if args.publishers < 1 or args.subscribers < 1 or args.seconds <= 0:
        parser.error("publishers, subscribers and seconds must be positive")
    return args


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted; the server was stopped")
