"""Group commit: what arrives while one transaction is written goes into the next one together.

Each caller waits for its item to be committed (:meth:`GroupWriter.submit`), so one caller at a
time gets nothing from batching; several at once do: one lock, one chain head read, one fsync
and one commit per batch instead of per item. A batch that fails is written again one item at a
time, so one bad item fails alone, exactly as it would have without the batch. The audit chain's
appends (:func:`consult.audit.append`) and arriving DICOM instances
(:class:`consult.imaging.store.ImagingStore`) are written this way.

The queue may be bounded (``max_queued``): a caller that finds it full waits for room
(back-pressure), nothing is dropped.

The writer task exists only while there is something queued (the first caller starts it); its
owner awaits :meth:`GroupWriter.drain` when it closes, so nothing queued is left behind. A
writer cancelled (its loop going away) fails every caller it leaves, so that none waits for
ever, and the next submit starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

logger = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741  (an item, as in the typing docs)
R = TypeVar("R")

MAX_BATCH: Final = 32
"""Items in one transaction at most, unless the owner says otherwise."""


class GroupWriter(Generic[I, R]):
    """Writes queued items in batches: ``write_batch`` for two or more, ``write_one`` for one
    (and for each item of a batch that failed)."""

    def __init__(
        self,
        write_batch: Callable[[list[I]], Awaitable[list[R]]],
        write_one: Callable[[I], Awaitable[R]],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
        max_queued: int | None = None,
    ) -> None:
        self.name = name
        """What is written, for task names, logs and errors ("the audit chain")."""
        self._write_batch = write_batch
        self._write_one = write_one
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._unsettled = 0
        """Items queued or being written (what ``max_queued`` bounds)."""
        self._waiting: deque[asyncio.Future[None]] = deque()
        """Callers waiting for room, first come first served."""
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        """Transactions of two or more items written (for tests and figures)."""

    async def submit(self, item: I) -> R:
        """Queue ``item`` and return its outcome once its transaction has committed (after
        waiting for room when ``max_queued`` items are already waiting)."""
        loop = asyncio.get_running_loop()
        while self._max_queued is not None and (
            self._unsettled >= self._max_queued or self._waiting
        ):
            room: asyncio.Future[None] = loop.create_future()
            self._waiting.append(room)
            try:
                await room
            except asyncio.CancelledError:
                if room in self._waiting:
                    self._waiting.remove(room)
                elif room.done() and not room.cancelled():
                    self._wake_next()  # the room it was given goes to the next one
                raise
            if self._unsettled < self._max_queued:
                break
        done: asyncio.Future[R] = loop.create_future()
        # a caller cancelled while its item is written must not leave the outcome unread
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._unsettled += 1
        done.add_done_callback(self._settled)
        self._queue.append((item, done))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not done.get_loop():
            self._writer = asyncio.create_task(self._run(), name=f"group-commit: {self.name}")
            self._writer.add_done_callback(self._stopped)
        # shielded: a caller that goes away does not cancel the transaction of the others
        return await asyncio.shield(done)

    def _settled(self, _done: asyncio.Future[R]) -> None:
        """One item less in the queue: let the first caller waiting for room in."""
        self._unsettled -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiting:
            room = self._waiting.popleft()
            if not room.done():
                room.set_result(None)
                return

    async def drain(self) -> None:
        """Wait until every queued item is written (or has failed)."""
        while (writer := self._writer) is not None:
            if writer.done():
                self._stopped(writer)
                continue
            await asyncio.shield(writer)

    async def _run(self) -> None:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                self._queue = self._queue[self._max_batch :]
                if len(batch) > 1:
                    try:
                        results = await self._write_batch([item for item, _ in batch])
                    except Exception:
                        logger.info(
                            "%s: a batch of %d failed; writing each alone", self.name, len(batch)
                        )
                    else:
                        self.batches += 1
                        for (_, done), result in zip(batch, results, strict=True):
                            _settle(done, result)
                        continue
                for item, done in batch:
                    try:
                        _settle(done, await self._write_one(item))
                    except Exception as exc:
                        _settle(done, exc)
        except BaseException:  # cancelled (the loop is going away): no caller waits forever
            for _, done in batch:
                _settle(done, RuntimeError(f"the writer of {self.name} stopped while writing"))
            raise

    def _stopped(self, writer: asyncio.Task[None]) -> None:
        if self._writer is not writer:
            return
        self._writer = None
        if writer.cancelled() or writer.exception() is not None:
            left, self._queue = self._queue, []
            for _, done in left:
                _settle(done, RuntimeError(f"the writer of {self.name} stopped before writing"))


def _settle(done: asyncio.Future[R], outcome: R | BaseException) -> None:
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
