"""CPU cost of recording a stream against forwarding it to one subscriber, in one run.

    .venv/bin/python bench/recording_cost.py [--publishers 4] [--seconds 15] [--rounds 2]
        [--audio]

One server process (bench/sfu_server.py, our engine) receives P publishers, each sending a
pre-encoded 640x480 30 fps ~1 Mbps VP8 clip in a loop (and Opus with --audio). Three kinds of
window, each --seconds long, alternate --rounds times over the same incoming streams:

* receive: the streams arrive and go nowhere (the baseline: SRTP, RTCP, the Producers);
* forward: each stream goes to one subscriber (one subscribe transport per publisher);
* record:  each stream goes to a recording Consumer (recording/: WebM segments, manifest).

The cost of forwarding (or recording) a stream is the server's CPU time in that window minus
the receive window's, per stream-second; the target is record <= forward. The server's CPU is
utime+stime of all its threads (the recorders' writer threads included), from /proc.
Not a test: figures for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoded_media import encode_opus, encode_vp8  # noqa: E402
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
from proc_stats import cpu_seconds  # noqa: E402
from sfu_forwarding import start_server, stop_server  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402


async def _window(pid: int, seconds: float) -> float:
    """The server's CPU seconds over the next ``seconds``."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)  # a measurement window of fixed length
    return cpu_seconds(pid) - before


def _recorded(directory: Path) -> dict[str, int]:
    frames = packets = segments = 0
    for manifest in directory.glob("tracks/*/manifest.jsonl"):
        for line in manifest.read_text().splitlines():
            record = json.loads(line)
            if record.get("type") == "segment":
                segments += 1
                frames += record["frames"]
                packets += record["packets"]
    return {"segments": segments, "frames": frames, "packets": packets}


async def run(args: argparse.Namespace) -> None:
    seam.restrict_host_addresses(["127.0.0.1"])
    clips = [encode_vp8()]
    if args.audio:
        clips.append(encode_opus())
    proc, port = await start_server("ours", latency=False)
    scratch = Path(tempfile.mkdtemp(prefix="tc-bench-rec-"))
    publishers: list[Publisher] = []
    subscribers: list[Subscriber] = []
    try:
        async with aiohttp.ClientSession() as session:
            control = Control(session, f"http://127.0.0.1:{port}")
            publishers = [await start_publisher(control, clips) for _ in range(args.publishers)]
            producers = [pid for p in publishers for pid in p.producer_ids]
            streams = len(producers)
            # let the clips' keyframes come round once, so every window sees steady media
            probe = [await start_subscriber(control, p.producer_ids) for p in publishers]
            await wait_until_flowing(probe, limit_s=15)
            for s in probe:
                await stop_subscriber(control, s)
            cost: dict[str, list[float]] = {"receive": [], "forward": [], "record": []}
            recorded: dict[str, int] = {}
            for round_ in range(args.rounds):
                cost["receive"].append(await _window(proc.pid, args.seconds))
                subscribers = [await start_subscriber(control, p.producer_ids) for p in publishers]
                await wait_until_flowing(subscribers, limit_s=15)
                cost["forward"].append(await _window(proc.pid, args.seconds))
                for s in subscribers:
                    await stop_subscriber(control, s)
                subscribers = []
                directory = scratch / f"round-{round_}"
                await control.call("/record", {"producers": producers, "dir": str(directory)})
                await asyncio.sleep(1.0)  # the recorders wait for the next keyframe first
                cost["record"].append(await _window(proc.pid, args.seconds))
                stopped = await control.call("/record_stop", {})
                for key, value in _recorded(directory).items():
                    recorded[key] = recorded.get(key, 0) + value
                recorded["dropped"] = recorded.get("dropped", 0) + stopped["dropped"]
    finally:
        await close_all(publishers, subscribers)
        await stop_server(proc, None)
        shutil.rmtree(scratch, ignore_errors=True)

    def per_stream_ms(values: list[float]) -> float:
        return sum(values) * 1000 / (len(values) * args.seconds * streams)

    receive = per_stream_ms(cost["receive"])
    forward = per_stream_ms(cost["forward"]) - receive
    record = per_stream_ms(cost["record"]) - receive
    print(
        f"streams: {streams} ({args.publishers} publishers, {'VP8+Opus' if args.audio else 'VP8'})"
    )
    print(f"windows: {args.rounds} x {args.seconds:.0f} s of each kind, interleaved")
    print(f"server CPU per stream-second, receiving only:        {receive:7.2f} ms")
    print(f"  added by forwarding to one subscriber:              {forward:7.2f} ms")
    print(f"  added by recording (WebM segments + manifest):      {record:7.2f} ms")
    ratio = record / forward if forward > 0 else float("inf")
    print(f"recording / forwarding: {ratio:.2f}  (target <= 1.00)")
    print(f"recorded: {recorded}")
    print(f"at {time.strftime('%Y-%m-%d %H:%M:%S')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--audio", action="store_true", help="also an Opus stream per publisher")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
