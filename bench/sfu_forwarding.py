"""Forwarding cost of our SFU against aiortc's MediaRelay, side by side in one run.

    .venv/bin/python bench/sfu_forwarding.py [--publishers 2] [--subscribers 4] [--seconds 20]
        [--engines ours,relay] [--warmup 3] [--audio] [--no-latency]
        [--cpu-target 0.5] [--rss-every 10] [--baseline-tree /work/main]

--engines baseline (with --baseline-tree DIR) runs our SFU as another checkout has it (e.g. main):
DIR/bench/sfu_server.py, which imports DIR's media/. Alternate the two to measure a change side by
side in one run:

    .venv/bin/python bench/sfu_forwarding.py --engines baseline,ours,baseline,ours \
        --baseline-tree /work/main

--together runs the engines at the same time, each its own server with its own publishers and
subscribers, so that this kind of machine's drift in speed (15-30 % between runs minutes apart)
touches them alike; the load generator then drives them all:

    .venv/bin/python bench/sfu_forwarding.py --engines baseline,ours --together \
        --baseline-tree /work/main

--pin runs the load generator on one core and every server on the other. With --together, use
it: unpinned, the server that shares a core with the load generator at the moment does the same
work slower (two identical servers read 4.44 against 4.24 and 4.40 against 4.74 ms a
stream-second; pinned, 4.06 against 4.00):

    .venv/bin/python bench/sfu_forwarding.py --engines baseline,ours --together --pin \
        --baseline-tree /work/main

--engines ours-remb runs ours with subscribers that decline transport-cc, as a browser without it
would (the server then steers each by its REMB): beside ours, what transport-cc costs.

Each engine runs in its own server process (bench/sfu_server.py), so its CPU time (utime+stime
of all its threads, from /proc) and RSS are its alone. This process is the load generator:
P publishers send a pre-encoded 640x480 30 fps ~1 Mbps VP8 clip in a loop (never encoding), and
S subscribers each subscribe to every publisher and count RTP packets without decoding. Every
peer, the server's included, gathers ICE on 127.0.0.1 only and uses no STUN/TURN server.

Figures are taken over a window of --seconds after --warmup seconds of flowing media. Not a test:
figures and ratios for the notes.

--cpu-target F (ours only): before the window, add subscribers (each takes every publisher) or
take them away until the server uses F of one core (within --cpu-tolerance, measured over
--ramp-window seconds); then measure as usual, and check latency and loss against the targets
(p50 <= 2 ms, p99 <= 10 ms, no loss). E.g. latency at half a core:

    .venv/bin/python bench/sfu_forwarding.py --engines ours --cpu-target 0.5

--rss-every N: sample the server's RSS every N seconds through the window; print the series,
and its spread (max - min over mean, target within 5%) and trend from --rss-warmup seconds
into the window on (default 60, at most half the window). E.g. memory over 10 minutes:

    .venv/bin/python bench/sfu_forwarding.py --engines ours --seconds 600 --rss-every 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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
    stop_subscriber,
    wait_until_flowing,
)
from proc_stats import (  # noqa: E402
    cpu_seconds,
    machine_busy_seconds,
    rss_mb,
    speed_reference,
    udp_drops,
    usable_cores,
)
from stream_counter import CounterSnapshot, window_loss  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402

SERVER = Path(__file__).resolve().parent / "sfu_server.py"
BASELINE_SERVER = SERVER  # --baseline-tree DIR: DIR/bench/sfu_server.py
#: --pin: where the load generator and the servers run
LOADGEN_CPU, SERVER_CPU = 0, 1
#: Our SFU with subscribers that decline transport-cc (REMB only): what transport-cc costs.
REMB_ONLY = "ours-remb"

#: What --cpu-target checks (the latency is the server's, packet in to packet out).
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
#: What --rss-every checks: (max - min) / mean of the RSS samples.
TARGET_RSS_SPREAD = 0.05


@dataclass
class RampStep:
    subscribers: int
    streams: int
    cpu: float  # share of one core


@dataclass
class RssSample:
    t: float  # seconds since the window opened
    mb: float
    heap_in_use_mb: float | None = None  # glibc: live allocations
    heap_free_mb: float | None = None  # glibc: freed, kept by malloc


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
    machine_cpu_s: float = 0.0  # every process of the machine, this bench's included
    udp_drops_server: int = 0  # datagrams the kernel dropped at the server's sockets
    udp_drops_client: int = 0  # ... at the load generator's (publishers' and subscribers')
    ramp: list[RampStep] | None = None
    rss_series: list[RssSample] | None = None
    # ours: padding packets the Consumers sent to probe the subscribers' links (not forwarded
    # media, but server work all the same); None where the engine has no such counter
    probe_packets: int | None = None
    # ours: packets the Producers took from the publishers (x subscribers = what forwarding
    # everything would send: the gap is what the Consumers held back, e.g. paused video)
    received_packets: int | None = None

    @property
    def cpu_ms_per_stream_second(self) -> float:
        return self.server_cpu_s * 1000 / (max(1, self.streams) * self.window_s)

    @property
    def packets_per_cpu_second(self) -> float:
        return self.forwarded_packets / self.server_cpu_s if self.server_cpu_s else float("inf")


async def start_server(
    engine: str,
    latency: bool,
    address: str = "127.0.0.1",
    prefix: tuple[str, ...] = (),
) -> tuple[asyncio.subprocess.Process, int]:
    """Start bench/sfu_server.py (under ``prefix``, e.g. ``ip netns exec NS``); (process, port).

    With ``prefix`` the command must exec the server (as ``ip netns exec`` does), so that the
    process's pid is the server's.
    """
    server = SERVER
    if engine == "baseline":
        server, engine = BASELINE_SERVER, "ours"
    elif engine == REMB_ONLY:
        engine = "ours"
    args = [*prefix, sys.executable, str(server), "--engine", engine, "--address", address]
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


async def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over the next ``seconds``."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)  # a measurement interval, not polling
    return (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)


def check_publishers(publishers: list[Publisher]) -> None:
    """Raise if a publisher's connection is gone: every figure after that would be wrong."""
    states = [p.pc.connectionState for p in publishers]
    if any(state != "connected" for state in states):
        raise RuntimeError(
            f"a publisher's connection was lost (states {states}); usually ICE consent expired "
            "because the load generator or the server was starved of CPU (a busy machine?)"
        )


async def ramp_to_cpu(
    pid: int,
    control: Control,
    publishers: list[Publisher],
    subscribers: list[Subscriber],
    args: argparse.Namespace,
) -> list[RampStep]:
    """Add or remove subscribers (in place) until the server uses about ``args.cpu_target``."""
    target, tolerance = args.cpu_target, args.cpu_tolerance
    producer_ids = [i for p in publishers for i in p.producer_ids]
    steps: list[RampStep] = []
    for _ in range(args.ramp_steps):
        await asyncio.sleep(args.ramp_settle)  # let the joins' handshakes finish first
        client0, t0 = time.process_time(), time.perf_counter()
        cpu = await cpu_share(pid, args.ramp_window)
        client = (time.process_time() - client0) / (time.perf_counter() - t0)
        n = len(subscribers)
        steps.append(RampStep(n, sum(len(s.counters) for s in subscribers), cpu))
        print(
            f"  ramp: {n} subscribers, {steps[-1].streams} streams: server CPU "
            f"{100 * cpu:.1f}%, load generator {100 * client:.1f}% of one core",
            flush=True,
        )
        check_publishers(publishers)
        if abs(cpu - target) <= tolerance:
            break
        if cpu < target and client > args.max_loadgen_cpu:
            print(
                f"  ramp: the load generator is near saturation (over "
                f"{100 * args.max_loadgen_cpu:.0f}% of its one core); measuring here",
                flush=True,
            )
            break
        # CPU = fixed + per-subscriber cost * n: fit the last two different points, or, at
        # first, assume it is all per-subscriber (which undershoots: the publishers cost too)
        previous = next((x for x in reversed(steps[:-1]) if x.subscribers != n), None)
        slope = cpu / n
        if previous is not None and (cpu - previous.cpu) / (n - previous.subscribers) > 0:
            slope = (cpu - previous.cpu) / (n - previous.subscribers)
        want = round(n + (target - cpu) / slope) if slope > 0 else n * 2
        if want == n:
            want = n + (1 if cpu < target else -1)
        want = max(1, min(want, args.max_subscribers))
        if want == n:
            print(f"  ramp: stuck at {n} subscribers (--max-subscribers {args.max_subscribers})")
            break
        if want > n:
            added = [await start_subscriber(control, producer_ids) for _ in range(want - n)]
            subscribers.extend(added)
            silent = await wait_until_flowing(added, limit_s=15)
            if silent:
                print(f"  ramp: {silent} new streams deliver nothing yet", flush=True)
        else:
            for subscriber in subscribers[want:]:
                await stop_subscriber(control, subscriber)
            del subscribers[want:]
    else:
        print(
            f"  ramp: not within {100 * tolerance:.0f} points of the target after "
            f"{args.ramp_steps} steps; measuring here",
            flush=True,
        )
    return steps


async def sample_rss(pid: int, control: Control, seconds: float, every: float) -> list[RssSample]:
    """RSS (and the server's malloc heap) at 0, every, 2*every, ... seconds, and at ``seconds``."""
    start = time.perf_counter()
    samples: list[RssSample] = []
    next_at = 0.0
    while True:
        await asyncio.sleep(max(0.0, start + next_at - time.perf_counter()))  # sampling clock
        t, mb = time.perf_counter() - start, rss_mb(pid)
        heap = await control.call("/memory")
        samples.append(RssSample(t, mb, heap.get("in_use_mb"), heap.get("free_mb")))
        if next_at >= seconds:
            return samples
        next_at += every
        if next_at > seconds - every / 10:
            next_at = seconds


def _counter_delta(stats0: dict, stats1: dict, group: str, name: str) -> int | None:
    """A summed counter's growth over the window, from two /stats replies."""
    before, after = stats0.get(group) or {}, stats1.get(group) or {}
    if name not in after:
        return None
    return int(after[name]) - int(before.get(name, 0))


def _received_delta(stats0: dict, stats1: dict) -> int | None:
    """The Producers' received packets over the window (ours), from two /stats replies."""
    after = stats1.get("producers")
    if not after:
        return None
    before = stats0.get("producers") or {}
    return sum(
        int(p.get("packets_received", 0)) - int(before.get(pid, {}).get("packets_received", 0))
        for pid, p in after.items()
    )


async def run_engine(
    engine: str, args: argparse.Namespace, clips: list[EncodedClip]
) -> EngineResult:
    pin = ("taskset", "-c", str(SERVER_CPU)) if args.pin else ()
    proc, port = await start_server(engine, not args.no_latency, prefix=pin)
    control: Control | None = None
    publishers: list[Publisher] = []
    subscribers: list[Subscriber] = []
    rss = {"idle": rss_mb(proc.pid)}
    ramp: list[RampStep] | None = None
    series: list[RssSample] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            control = Control(session, f"http://127.0.0.1:{port}")
            try:
                for _ in range(args.publishers):
                    publishers.append(await start_publisher(control, clips))
                producer_ids = [i for p in publishers for i in p.producer_ids]
                for _ in range(args.subscribers):
                    subscribers.append(
                        await start_subscriber(
                            control, producer_ids, transport_cc=engine != REMB_ONLY
                        )
                    )
                await wait_until_flowing(subscribers, limit_s=15)
                if args.cpu_target:
                    ramp = await ramp_to_cpu(proc.pid, control, publishers, subscribers, args)
                await asyncio.sleep(args.warmup)  # pacing the warm-up, not polling

                await control.call("/mark", {})
                stats0 = await control.call("/stats")
                cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
                machine0 = machine_busy_seconds()
                drops0 = udp_drops(proc.pid), udp_drops(os.getpid())
                counters0, t0 = snapshots(subscribers), time.perf_counter()
                if args.rss_every:
                    series = await sample_rss(proc.pid, control, args.seconds, args.rss_every)
                    rss["start"] = series[0].mb
                    rss["mid"] = min(series, key=lambda x: abs(x.t - args.seconds / 2)).mb
                else:
                    rss["start"] = rss_mb(proc.pid)
                    await asyncio.sleep(args.seconds / 2)
                    rss["mid"] = rss_mb(proc.pid)
                    await asyncio.sleep(args.seconds / 2)
                counters1, t1 = snapshots(subscribers), time.perf_counter()
                drops1 = udp_drops(proc.pid), udp_drops(os.getpid())
                cpu1, client1 = cpu_seconds(proc.pid), time.process_time()
                machine1 = machine_busy_seconds()
                stats1 = await control.call("/stats")
                rss["end"] = rss_mb(proc.pid)
                check_publishers(publishers)
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
        probe_packets=_counter_delta(stats0, stats1, "consumers", "probe_packets_sent"),
        received_packets=_received_delta(stats0, stats1),
        latency=stats1.get("latency"),
        unmatched_frames=stats1.get("unmatched_frames"),
        expected=expected,
        lost=lost,
        video_frames=frames,
        video_bytes=video_bytes,
        jitter_ms=sum(c.jitter for c in video) / len(video) / 90 if video else 0.0,
        rss_mb=rss,
        machine_cpu_s=machine1 - machine0,
        udp_drops_server=drops1[0] - drops0[0],
        udp_drops_client=drops1[1] - drops0[1],
        ramp=ramp,
        rss_series=series,
    )


def latency_text(result: EngineResult) -> str:
    lat = result.latency
    if lat is None:
        return "n/a (--no-latency)"
    if not lat["n"]:
        return "n/a (no samples)"
    return f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}"


def per_second(result: EngineResult, count: int | None) -> str:
    return "n/a" if count is None else f"{count / result.window_s:,.0f}"


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
    row("packets from publishers per second", lambda r: per_second(r, r.received_packets))
    row("padding probe packets per second", lambda r: per_second(r, r.probe_packets))
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
        "UDP drops, full socket buffer: server/loadgen",
        lambda r: f"{r.udp_drops_server}/{r.udp_drops_client}",
    )
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
    row(
        "whole machine CPU, every process (%)",
        lambda r: f"{100 * r.machine_cpu_s / r.window_s:.0f} of {100 * usable_cores()[0]}",
    )

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


def report_cpu_target(results: list[EngineResult], target: float) -> None:
    for r in results:
        if r.ramp is None:
            continue
        cpu = r.server_cpu_s / r.window_s
        print(
            f"\n{r.engine} at {100 * target:.0f}% server CPU: {r.streams} forwarded streams "
            f"({r.ramp[-1].subscribers} subscribers); in the window the server used "
            f"{100 * cpu:.1f}% and the load generator {100 * r.client_cpu_s / r.window_s:.1f}% "
            "of one core"
        )
        lat = r.latency
        if lat is None or not lat["n"]:
            print("  latency: not measured (--no-latency)")
            checks = []
        else:
            checks = [
                (
                    f"latency p50 {lat['p50_ms']:.2f} ms <= {TARGET_P50_MS:g} ms",
                    lat["p50_ms"] <= TARGET_P50_MS,
                ),
                (
                    f"latency p99 {lat['p99_ms']:.2f} ms <= {TARGET_P99_MS:g} ms",
                    lat["p99_ms"] <= TARGET_P99_MS,
                ),
            ]
        checks.append((f"subscriber loss {r.lost} of {r.expected} packets = 0", r.lost == 0))
        checks.append((f"no silent streams ({r.silent_streams})", r.silent_streams == 0))
        for text, ok in checks:
            print(f"  {'ok  ' if ok else 'FAIL'} {text}")
        others = r.machine_cpu_s - r.server_cpu_s - r.client_cpu_s
        print(
            f"  kernel drops at full UDP socket buffers: {r.udp_drops_server} at the server, "
            f"{r.udp_drops_client} at the load generator; other processes used "
            f"{100 * max(0.0, others) / r.window_s:.0f}% of one core meanwhile"
        )
        if r.lost and r.udp_drops_client:
            print(
                "  (datagrams dropped at the load generator's own sockets count as subscriber "
                "loss: a starved load generator, not the SFU)"
            )


def trend(points: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """min, max, mean, spread ((max - min) / mean) and least-squares slope per minute."""
    values = [v for _, v in points]
    mean = sum(values) / len(values)
    mt = sum(t for t, _ in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    slope = sum((t - mt) * (v - mean) for t, v in points) / var * 60 if var else 0.0
    return min(values), max(values), mean, (max(values) - min(values)) / mean, slope


def report_rss(results: list[EngineResult], every: float, warmup: float) -> None:
    for r in results:
        series = r.rss_series
        if not series:
            continue
        heap = all(x.heap_in_use_mb is not None for x in series)
        print(
            f"\n{r.engine}: server RSS (MB) every {every:g} s through the window, at seconds "
            f"since it opened (idle before any peer: {r.rss_mb['idle']:.1f} MB)"
            + ("; in brackets glibc's heap in use / freed but kept" if heap else "")
        )
        if heap:
            cells = [
                f"{x.t:5.0f}: {x.mb:5.1f} ({x.heap_in_use_mb:4.1f}/{x.heap_free_mb:4.1f})"
                for x in series
            ]
            per_line = 4
        else:
            cells = [f"{x.t:6.0f}: {x.mb:6.1f}" for x in series]
            per_line = 6
        for i in range(0, len(cells), per_line):
            print("  " + "   ".join(cells[i : i + per_line]))
        lo, hi, mean, spread, slope = trend([(x.t, x.mb) for x in series])
        print(
            f"  whole window: RSS min {lo:.1f}, max {hi:.1f}, mean {mean:.1f}; spread "
            f"{100 * spread:.2f}%, trend {slope:+.3f} MB/min"
        )
        settled = [x for x in series if x.t >= warmup - 1e-6]
        if len(settled) < 2:
            print(f"  after the {warmup:g} s RSS warm-up: too few samples (--rss-warmup)")
            continue
        lo, hi, mean, spread, slope = trend([(x.t, x.mb) for x in settled])
        verdict = "ok" if spread <= TARGET_RSS_SPREAD else "FAIL"
        print(
            f"  from {settled[0].t:.0f} s on (--rss-warmup {warmup:g}): RSS min {lo:.1f}, max "
            f"{hi:.1f}, mean {mean:.1f}; spread (max-min)/mean {100 * spread:.2f}% "
            f"({verdict}, target <= {100 * TARGET_RSS_SPREAD:.0f}%), trend {slope:+.3f} MB/min"
        )
        if heap:
            in_use = trend([(x.t, x.heap_in_use_mb or 0.0) for x in settled])
            kept = trend([(x.t, x.heap_free_mb or 0.0) for x in settled])
            print(
                f"  same samples, glibc heap: in use {in_use[0]:.1f}..{in_use[1]:.1f} MB "
                f"(trend {in_use[4]:+.3f} MB/min), freed but kept {kept[0]:.1f}..{kept[1]:.1f} "
                f"MB (trend {kept[4]:+.3f} MB/min)"
            )


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def main(args: argparse.Namespace) -> None:
    seam.restrict_host_addresses(["127.0.0.1"])
    if args.pin:  # before any thread starts: they inherit it
        os.sched_setaffinity(0, {LOADGEN_CPU})
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
    print(f"machine speed: a fixed Python loop takes {speed_reference():.0f} ms now")
    busy0, own0, t0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    clips = [encode_vp8()]
    if args.audio:
        clips.append(encode_opus())
    await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - t0)))  # a quiet-machine check
    own = time.process_time() - own0
    others = (machine_busy_seconds() - busy0 - own) / (time.perf_counter() - t0)
    print(
        f"other processes used {100 * max(0.0, others):.0f}% of one core just before the run"
        + (" (not a quiet machine: expect noisier figures)" if others > 0.2 else "")
    )
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
    if args.together:
        print(f"running {', '.join(args.engines)} at once ...", flush=True)
        results = list(await asyncio.gather(*(run_engine(e, args, clips) for e in args.engines)))
    else:
        for engine in args.engines:
            print(f"running {engine} ...", flush=True)
            results.append(await run_engine(engine, args, clips))
    print()
    report(results)
    if args.cpu_target:
        report_cpu_target(results, args.cpu_target)
    if args.rss_every:
        report_rss(results, args.rss_every, args.rss_warmup)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds skipped first")
    parser.add_argument(
        "--engines",
        default="ours,relay",
        help=f"comma-separated: ours, relay, baseline, {REMB_ONLY}",
    )
    parser.add_argument(
        "--baseline-tree", default=None, help="a checkout whose SFU the baseline engine runs"
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run the engines at once, each with its own publishers and subscribers (the "
        "machine's drift then touches them alike)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"run the load generator on CPU {LOADGEN_CPU} and every server on CPU {SERVER_CPU}",
    )
    parser.add_argument("--audio", action="store_true", help="each publisher adds Opus audio")
    parser.add_argument("--no-latency", action="store_true", help="no latency instrumentation")
    ramp = parser.add_argument_group("latency at a server CPU load (ours only)")
    ramp.add_argument(
        "--cpu-target",
        type=float,
        default=None,
        metavar="SHARE",
        help="ramp subscribers until the server uses this share of one core, e.g. 0.5",
    )
    ramp.add_argument("--cpu-tolerance", type=float, default=0.05, help="absolute, default 0.05")
    ramp.add_argument(
        "--ramp-window",
        type=float,
        default=5.0,
        help="seconds per CPU reading (default 5: one loop of the clip, one keyframe)",
    )
    ramp.add_argument("--ramp-settle", type=float, default=3.0, help="seconds after joins")
    ramp.add_argument("--ramp-steps", type=int, default=10, help="at most this many readings")
    ramp.add_argument("--max-subscribers", type=int, default=200)
    ramp.add_argument(
        "--max-loadgen-cpu",
        type=float,
        default=0.85,
        help="stop ramping when the load generator uses this share of its core (default 0.85)",
    )
    memory = parser.add_argument_group("memory over time")
    memory.add_argument(
        "--rss-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sample the server's RSS this often through the window (e.g. 10 with --seconds 600)",
    )
    memory.add_argument(
        "--rss-warmup",
        type=float,
        default=None,
        metavar="SECONDS",
        help="samples this far into the window are shown but left out of the spread "
        "(default: 60 s, at most half the window)",
    )
    args = parser.parse_args()
    engines_given = any(a == "--engines" or a.startswith("--engines=") for a in sys.argv[1:])
    if args.cpu_target and not engines_given:
        args.engines = "ours"
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - {"ours", "relay", "baseline", REMB_ONLY}
    if "baseline" in args.engines:
        if not args.baseline_tree:
            parser.error("--engines baseline needs --baseline-tree DIR")
        global BASELINE_SERVER
        BASELINE_SERVER = Path(args.baseline_tree).resolve() / "bench" / "sfu_server.py"
        if not BASELINE_SERVER.exists():
            parser.error(f"{BASELINE_SERVER} does not exist")
    if unknown or not args.engines:
        parser.error(f"unknown engines: {', '.join(sorted(unknown)) or '(none)'}")
    if args.publishers < 1 or args.subscribers < 1 or args.seconds <= 0:
        parser.error("publishers, subscribers and seconds must be positive")
    if args.cpu_target is not None:
        if args.engines != ["ours"]:
            parser.error("--cpu-target runs the ours engine only (--engines ours)")
        if not 0 < args.cpu_target < 2:
            parser.error("--cpu-target is a share of one core, e.g. 0.5")
    if args.rss_every is not None and not 0 < args.rss_every <= args.seconds:
        parser.error("--rss-every must be positive and at most --seconds")
    if args.rss_warmup is None:
        args.rss_warmup = min(60.0, args.seconds / 2)
    return args


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("interrupted; the server was stopped")
    except RuntimeError as exc:
        sys.exit(f"stopped: {exc}")
