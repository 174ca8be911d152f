"""The loop-lag monitor (issue 10, part 4): a loop held busy is noticed, with figures, and the
state comes back once the loop keeps up again; a short blip does not flip it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time

from peers import wait_for

from media.loop_lag import LoopLagMonitor


async def _hog(stop: asyncio.Event, block_s: float, every_s: float) -> None:
    """A CPU hog on this loop: blocks it for ``block_s`` out of every ``every_s``."""
    while not stop.is_set():
        time.sleep(block_s)  # noqa: ASYNC251 - the point: a blocking call on the loop
        await asyncio.sleep(every_s - block_s)


async def test_a_lagging_loop_is_busy_and_recovers(caplog):
    caplog.set_level(logging.WARNING, logger="media.loop_lag")
    monitor = LoopLagMonitor(
        threshold_s=0.1, window_s=0.3, leave_windows=2, describe=lambda: {"rooms": 3}
    )
    monitor.start()
    stop = asyncio.Event()
    try:
        await asyncio.sleep(0.7)  # an idle loop, measured over two windows
        assert not monitor.busy and monitor.last_window_max_s < 0.1
        hog = asyncio.ensure_future(_hog(stop, 0.15, 0.25))
        started = time.monotonic()
        await wait_for(lambda: monitor.busy, timeout=3, message="the lag was not noticed")
        print(f"\nbusy {time.monotonic() - started:.2f} s after the hog started")
        warning = next(r for r in caplog.records if "lagging" in r.getMessage())
        assert "threshold 100 ms" in warning.getMessage() and "rooms=3" in warning.getMessage()
        assert monitor.last_window_max_s >= 0.1
        stop.set()
        await hog
        await wait_for(lambda: not monitor.busy, timeout=3, message="busy for good")
        assert any("keeps up again" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        await monitor.close()
    assert monitor.closed


def test_one_blip_is_not_overload_and_states_do_not_flap():
    monitor = LoopLagMonitor(threshold_s=0.2)
    monitor.end_window(0.25, 0.01, 1.0)  # one window over: a blip
    assert not monitor.busy
    monitor.end_window(0.05, 0.01, 1.0)
    monitor.end_window(0.25, 0.01, 1.0)
    assert not monitor.busy
    monitor.end_window(0.3, 0.1, 1.0)  # two in a row
    assert monitor.busy
    monitor.end_window(0.15, 0.05, 1.0)  # between half and the threshold: stays busy
    monitor.end_window(0.05, 0.01, 1.0)
    monitor.end_window(0.05, 0.01, 1.0)
    assert monitor.busy
    monitor.end_window(0.05, 0.01, 1.0)  # three quiet windows in a row
    assert not monitor.busy
    monitor.end_window(2.0, 0.5, 2.1)  # one stall, however long, is not overload
    assert not monitor.busy
    never = LoopLagMonitor(threshold_s=0)
    for _ in range(5):
        never.end_window(3.0, 3.0, 3.0)
    assert not never.busy


def test_the_startup_heap_is_kept_out_of_full_collections():
    """A media worker's (and the server's) startup heap is frozen once started: a full garbage
    collection, which stops the loop, walks only what was made since (in a process of its own:
    freezing this test process would keep every later test's garbage)."""
    script = (
        "import gc, json\n"
        "import media.pool\n"
        "from media.loop_lag import freeze_startup_heap\n"
        "walked_before = len(gc.get_objects())\n"
        "frozen = freeze_startup_heap()\n"
        "print(json.dumps([walked_before, frozen, len(gc.get_objects())]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    walked_before, frozen, walked_after = json.loads(out.stdout.splitlines()[-1])
    assert frozen >= 0.9 * walked_before and frozen > 20_000, out.stdout
    assert walked_after < 0.01 * walked_before, out.stdout
