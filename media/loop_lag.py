"""LoopLagMonitor: is this process's event loop keeping up?

Every packet, every ICE consent check and every DTLS timer of a media worker runs on one event
loop. When the loop lags (too much work, a blocking call), STUN answers come late and ICE
consent expires on connections that were fine: under overload it expired on 188 of 256
connections. A worker whose loop lags therefore stops taking new rooms and participants
(``server_busy``) so that the calls it has keep going, and says so in a warning with figures.

The measure: a task asks to wake every ``interval_s``; how late it wakes is the lag. Each
``window_s`` the largest lag of the window is compared with the threshold. Busy after
``enter_windows`` windows over it in a row (one stall, however long, is not overload: a
sustained lag is); not busy again after ``leave_windows`` windows under half of it, so the
state does not flap. A threshold of 0 measures but never refuses.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Lag past which the loop counts as lagging (a STUN transaction waits 500 ms for its answer).
THRESHOLD_S = 0.2
INTERVAL_S = 0.05
WINDOW_S = 1.0
ENTER_WINDOWS = 2
LEAVE_WINDOWS = 3


def freeze_startup_heap() -> int:
    """Keep what startup built out of every later garbage collection; the number kept out.

    A started server holds ~240,000 long-lived objects (modules, SQLAlchemy's mappings,
    pydicom's dictionaries, aiortc). Each full collection walked them all with the loop
    stopped: ~140 ms on a 2-core test machine, seven 20 ms audio frames, and pynetdicom forces
    one every 60 turns of its acceptor. Frozen after startup, a full collection walks only
    what was made since (``gc.freeze``; objects frozen are still freed by reference counting).
    Called once a process has started, never in a test process that builds many servers."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("startup heap kept out of garbage collections: %d objects", frozen)
    return frozen


class LoopLagMonitor:
    """Measures the running loop's lag; ``busy`` says whether new work should be refused.

    ``describe()`` is called for the warning (e.g. how many rooms and transports there are).
    """

    def __init__(
        self,
        *,
        threshold_s: float = THRESHOLD_S,
        interval_s: float = INTERVAL_S,
        window_s: float = WINDOW_S,
        enter_windows: int = ENTER_WINDOWS,
        leave_windows: int = LEAVE_WINDOWS,
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.threshold_s = threshold_s
        self._interval_s = interval_s
        self._window_s = window_s
        self._enter = enter_windows
        self._leave = leave_windows
        self._describe = describe
        self.busy = False
        self.last_window_max_s = 0.0
        self.busy_since: float | None = None
        self.refusals = 0  # counted by whoever refuses
        self._over = 0
        self._under = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start measuring (idempotent; needs a running loop)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        window_start = time.monotonic()
        window_max = 0.0
        window_sum = 0.0
        samples = 0
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._interval_s)
            now = time.monotonic()
            lag = max(0.0, now - before - self._interval_s)
            window_max = max(window_max, lag)
            window_sum += lag
            samples += 1
            if now - window_start >= self._window_s:
                self.end_window(window_max, window_sum / samples, now - window_start)
                window_start, window_max, window_sum, samples = now, 0.0, 0.0, 0

    def end_window(self, max_lag_s: float, mean_lag_s: float, length_s: float) -> None:
        """Fold one window's figures into the busy state (the task calls it; tests may too)."""
        self.last_window_max_s = max_lag_s
        if self.threshold_s <= 0:
            return
        if max_lag_s >= self.threshold_s:
            self._over += 1
            self._under = 0
        elif max_lag_s < self.threshold_s / 2:
            self._under += 1
            self._over = 0
        else:
            self._over = self._under = 0
        if not self.busy and self._over >= self._enter:
            self.busy = True
            self.busy_since = time.monotonic()
            extra = self._describe() if self._describe is not None else {}
            logger.warning(
                "event loop lagging: max %.0f ms, mean %.0f ms over the last %.1f s "
                "(threshold %.0f ms); refusing new rooms and participants (server_busy) %s",
                max_lag_s * 1000,
                mean_lag_s * 1000,
                length_s,
                self.threshold_s * 1000,
                " ".join(f"{k}={v}" for k, v in extra.items()),
            )
        elif self.busy and self._under >= self._leave:
            busy_for = time.monotonic() - (self.busy_since or time.monotonic())
            logger.warning(
                "event loop keeps up again (max lag %.0f ms): taking new rooms and participants "
                "after %.1f s busy, %d refused",
                max_lag_s * 1000,
                busy_for,
                self.refusals,
            )
            self.busy = False
            self.busy_since = None
            self.refusals = 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
