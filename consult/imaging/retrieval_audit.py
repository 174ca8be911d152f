"""Retrievals go into the audit chain in batches (group commit), each before its answer (R24).

A viewer asks for hundreds of frames per study; one audit transaction per frame costs more than
serving the frame (an SM3-chained append and a commit each). Retrievals are therefore queued
with the moment they happened and appended by one writer task, many per transaction, through
:func:`consult.audit.audited`; :meth:`RetrievalAudit.record` returns once the transaction that
holds its event has committed, and the route sends the data only then.

Why not answer first and commit after: a process that dies between the two would have shown
a record that the chain never mentions, and R24 asks that every view be logged. The crash
window is then the other way round: an event committed for an answer that never left (the
process died while sending it), which over-reports a view and loses none. Waiting costs one
commit's latency per request when requests come one at a time (a WAL append and its fsync);
under load the waits overlap: every request queued while a transaction is written joins the
next one, so the chain's cost per retrieval falls as the load rises.

The queue is bounded: when the chain cannot keep up, requests wait for room (back-pressure),
they are never dropped. A batch the database refuses fails the requests waiting for it (they
answer 500 and send no data). ``close()`` (application shutdown) writes everything queued.
Refusals are not batched: they are appended before the 403 is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from consult.actor import Actor
from consult.audit import audited
from consult.db import Database
from consult.sqltypes import utc_now

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 500
MAX_QUEUED: Final = 10_000


@dataclass(frozen=True)
class _Retrieval:
    actor: Actor
    study_id: str | None
    details: Mapping[str, Any]
    at: datetime
    done: asyncio.Future[None]


class RetrievalAudit:
    """The batching writer of ``imaging.retrieve`` events; started and closed by its owner."""

    def __init__(self, db: Database, *, max_queued: int = MAX_QUEUED) -> None:
        self.db = db
        self._queue: asyncio.Queue[_Retrieval] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closed

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="imaging-retrieval-audit")

    async def record(self, actor: Actor, study_id: str | None, details: Mapping[str, Any]) -> None:
        """Queue one retrieval; return once it is committed to the chain (waits for room in a
        full queue first). Raises what the database raised if its transaction failed."""
        if self._closed:
            raise RuntimeError("the retrieval audit is closed")
        self._idle.clear()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # a caller cancelled while its event is written must not leave the outcome unread
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        await self._queue.put(_Retrieval(actor, study_id, dict(details), utc_now(), done))
        if self._task is None or self._task.done():  # not started, or closing: write it now
            await self._write_settled(self._drain())
        # shielded: the event is written (and the chain stays whole) even if the caller goes
        await asyncio.shield(done)

    async def flush(self) -> None:
        """Wait until everything queued so far is in the chain."""
        while not self._queue.empty() or not self._idle.is_set():
            if self._task is None or self._task.done():
                await self._write_settled(self._drain())
                self._idle.set()
                return
            await self._idle.wait()

    def _drain(self) -> list[_Retrieval]:
        batch: list[_Retrieval] = []
        while len(batch) < MAX_BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._idle.clear()
            await self._write_settled([first, *self._drain()])
            if self._queue.empty():
                self._idle.set()

    async def _write_settled(self, batch: list[_Retrieval]) -> None:
        """Write ``batch`` and answer each waiting request (the database's error, if any)."""
        try:
            await self._write(batch)
        except Exception as exc:
            logger.exception("retrieval audit batch of %d failed", len(batch))
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
        except BaseException:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(RuntimeError("the retrieval audit stopped"))
            raise
        else:
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)

    async def _write(self, batch: list[_Retrieval]) -> None:
        if not batch:
            return
        async with audited(self.db) as tx:
            for item in batch:
                # The chain's times never go back: a retrieval that waited for room in a full
                # queue is stamped no earlier than the one queued before it.
                at = item.at if self._last_at is None else max(item.at, self._last_at)
                self._last_at = at
                await tx.record(
                    "imaging.retrieve",
                    actor=item.actor,
                    object_type="imaging_study",
                    object_id=item.study_id,
                    details=item.details,
                    at=at,
                )

    async def close(self) -> None:
        """Write what is queued, then stop. Idempotent."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            while rest := self._drain():
                await self._write_settled(rest)
