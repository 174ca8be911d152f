"""Worker processes for the imaging store's renderings (``imaging_render_workers``, off by
default).

Decoding, windowing and PNG-encoding a 512x512 CT takes ~2-4 ms of CPU. In threads it holds
the one GIL that the event loop needs too: 8 viewers asking at once queue behind each other and
behind the loop. In worker processes it runs beside the loop, on every core that is free. On
the shared 2-core machine under load (no core free), the processes measured slower than the
threads (docs/imaging.md, Figures), so they are opt-in. The ingest parser could run here too
(:func:`.parse.parse_file_summary`); measured, a C-STORE's parse costs less in its
association's thread.

The pool (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn``: a fork of this
multi-threaded process could copy a lock held by another thread) is sized to the cores and
started on first use, so a server that renders nothing starts no process; the store shuts it
down when it closes. Work functions are module-level functions of :mod:`.render` and
:mod:`.parse` and take a path, never a file's bytes: the worker reads the file itself (from the
page cache), so only a path and the answer cross the pipe.

An error the work raises (:class:`~.errors.FrameNotRenderable`, a parser's refusal) comes back
as itself, with its stable code. A worker that dies (killed, out of memory) breaks the pool:
the calls waiting on it fail with :class:`~.errors.ImagingUnavailable` (``busy``, 503), and the
next call starts a new pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .errors import ImagingUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


def default_size() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """A lazily started process pool; safe to use from the event loop and from threads."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or default_size()
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.started = 0
        """Pools started so far (a broken one is replaced; for tests)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ImagingUnavailable("The imaging workers are stopped.")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.size, mp_context=multiprocessing.get_context("spawn")
                )
                self.started += 1
            return self._pool

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        """Let the next call start a new pool instead of ``pool``."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        logger.warning("an imaging worker process stopped; the pool is restarted")

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Start ``fn(*args)`` in a worker; see :meth:`result` to wait for it."""
        pool = self._current()
        try:
            return pool.submit(fn, *args)
        except BrokenProcessPool:
            self._broken(pool)
            return self._current().submit(fn, *args)

    def result(self, future: Future[T]) -> T:
        """Wait for ``future`` in this thread (blocking): its value, or its error."""
        try:
            return future.result()
        except BrokenProcessPool:
            self._forget_broken()
            raise ImagingUnavailable() from None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker, awaited from the event loop."""
        future = self.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._forget_broken()
            raise ImagingUnavailable() from None

    def _forget_broken(self) -> None:
        with self._lock:
            pool = self._pool
        if pool is not None and getattr(pool, "_broken", False):
            self._broken(pool)

    def close(self) -> None:
        """Stop the workers (blocking: waits for running work); idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
