"""Group commit: what arrives while one transaction is written goes into the next one together.

Each caller waits for its item to be committed (:meth:`GroupWriter.submit`), so one caller at a
time gets nothing from batching; several at once do: one lock, one chain head read, one fsync
and one commit per batch instead of per item. A batch that fails is written again one item at a
time, so one bad item fails alone, exactly as it would have without the batch. The audit chain's
appends (:func:`consult.audit.append`) and arriving DICOM instances
(:class:`consult.imaging.store.ImagingStore`) are written this way.

The writer task exists only while there is something queued (the first caller starts it); its
owner awaits :meth:`GroupWriter.drain` when it closes, so nothing queued is left behind. A
writer cancelled (its loop going away) fails every caller it leaves, so that none waits for
ever, and the next submit starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
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
    ) -> None:
        self.name = name
        """What is written, for task names, logs and errors ("the audit chain")."""
        self._write_batch = write_batch
        self._write_one = write_one
        self._max_batch = max_batch
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        """Transactions of two or more items written (for tests and figures)."""

    async def submit(self, item: I) -> R:
        """Queue ``item`` and return its outcome once its transaction has committed."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # a caller cancelled while its item is written must not leave the outcome unread
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append((item, done))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not done.get_loop():
            self._writer = asyncio.create_task(self._run(), name=f"group-commit: {self.name}")
            self._writer.add_done_callback(self._stopped)
        # shielded: a caller that goes away does not cancel the transaction of the others
        return await asyncio.shield(done)

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
