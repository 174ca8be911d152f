"""Give freed heap memory back to the system now and then (glibc only).

Forwarding allocates and frees a buffer per packet per subscriber and keeps the last 512 of each
video stream for NACKs. glibc keeps the freed chunks, fragmented, in its free lists, so the
process's resident size creeps up for minutes while the memory actually in use stays flat
(bench/sfu_forwarding.py --rss-every shows both). ``malloc_trim(0)`` returns those pages.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRIM_INTERVAL_S = 30.0


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class HeapTrimmer:
    """A task that calls ``malloc_trim(0)`` every :data:`TRIM_INTERVAL_S` (no-op elsewhere)."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self._trim = _find_malloc_trim()
        self._interval = interval_s
        self._task = (
            asyncio.get_running_loop().create_task(self._run()) if self._trim is not None else None
        )

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        assert self._trim is not None
        while True:
            await asyncio.sleep(self._interval)  # a period, not a wait for a condition
            self._trim(0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
