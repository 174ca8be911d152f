"""Retrievals go into the audit chain in batches, off the request path (R24).

A viewer asks for hundreds of frames per study; one audit transaction per frame costs more than
serving the frame (an SM3-chained append and a commit each). Retrievals are therefore queued
with the moment they happened and appended by one writer task, many per transaction, through
:func:`consult.audit.audited`. The queue is bounded: when the chain cannot keep up, requests
wait for room (back-pressure), they are never dropped. ``close()`` (application shutdown)
writes everything queued. What a crash can lose is what was queued in the last moments
(one batch); refusals are not batched: they are appended before the 403 is sent.
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
        """Queue one retrieval (waits only when the queue is full)."""
        if self._closed:
            raise RuntimeError("the retrieval audit is closed")
        self._idle.clear()
        await self._queue.put(_Retrieval(actor, study_id, dict(details), utc_now()))

    async def flush(self) -> None:
        """Wait until everything queued so far is in the chain."""
        while not self._queue.empty() or not self._idle.is_set():
            if self._task is None or self._task.done():
                await self._write(self._drain())
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
            batch = [first, *self._drain()]
            while True:
                try:
                    await self._write(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The chain refused the batch (database away): keep it, try again shortly.
                    logger.exception("retrieval audit batch of %d failed; retrying", len(batch))
                    await asyncio.sleep(0.5)
            if self._queue.empty():
                self._idle.set()

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
            rest = self._drain()
            if rest:
                await self._write(rest)
