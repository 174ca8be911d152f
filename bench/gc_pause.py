"""How long a full garbage collection stops a started server, with and without its startup heap
frozen (``media.loop_lag.freeze_startup_heap``, which ``teleconsult serve`` and every media
worker call once started).

    .venv/bin/python bench/gc_pause.py [--rounds 5]

Builds the application as ``serve`` does (the embedded default, in a temporary directory),
starts it without listening, and times ``gc.collect()`` ``--rounds`` times before freezing and
after. Every thread of the process, the event loop's included, waits out a full collection.
Not a test: figures for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time

from aiohttp import web

from media.loop_lag import freeze_startup_heap
from web.app import create_app
from web.config import load_config


def _collections(rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        config = load_config(None, data_dir=data_dir, environ={})
        runner = web.AppRunner(create_app(config))
        await runner.setup()  # the startup steps, as serve runs them
        try:
            walked = len(gc.get_objects())
            before = _collections(args.rounds)
            frozen = freeze_startup_heap()
            after = _collections(args.rounds)
            print(f"objects a full collection walks once started: {walked:,}")
            print(
                f"full collection, startup heap not frozen: median {statistics.median(before):.1f}"
                f" ms (max {max(before):.1f})"
            )
            print(
                f"full collection, {frozen:,} objects frozen: median {statistics.median(after):.2f}"
                f" ms (max {max(after):.2f}); it walks {len(gc.get_objects()):,}"
            )
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
