"""Retrieval events reach the audit chain through its group commit: in order, each committed
before the caller goes on, the queue bounded, the chain's times never going back (R24)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from consult import audit
from consult.actor import Actor
from consult.audit import append
from consult.audit_verify import verify_chain
from consult.db import Database
from consult.imaging.access import audit_retrieval
from consult.imaging.models import ImagingStudy
from consult.models import AuditEvent
from consult.permissions import Role
from consult.sqltypes import utc_now


async def _retrievals(db: Database) -> list[AuditEvent]:
    async with db.session() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.action == "imaging.retrieve")
                    .order_by(AuditEvent.seq)
                )
            ).all()
        )


async def test_r24_retrievals_share_commits_in_order_with_back_pressure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R24: 1200 retrievals from 12 tasks, through a queue bounded at 4 (the tasks meet
    back-pressure), are all in the chain, each task's in its order, in fewer transactions than
    events; each caller returns only once its event is committed; the chain verifies."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await db.start()
    monkeypatch.setattr(audit, "MAX_QUEUED", 4)
    appender = audit._appender_of(db)
    actor = Actor(user_id="u" * 32, role=Role.DOCTOR)
    most_queued = most_waiting = 0
    behind: list[int] = []

    async def viewer(n: int) -> None:
        nonlocal most_queued, most_waiting
        study = ImagingStudy(id=f"{n:032d}")
        for frame in range(100):
            most_queued = max(most_queued, appender._group._unsettled)
            most_waiting = max(most_waiting, len(appender._group._waiting))
            await audit_retrieval(db, actor, study, "frames", {"frame": frame})
            if frame == 99:  # committed before the call returned
                behind.append(sum(1 for e in await _retrievals(db) if e.object_id == study.id))

    try:
        await asyncio.gather(*(viewer(n) for n in range(12)))
        events = await _retrievals(db)
        assert len(events) == 1200
        assert behind == [100] * 12
        for n in range(12):
            frames = [json.loads(e.details)["frame"] for e in events if e.object_id == f"{n:032d}"]
            assert frames == list(range(100))
        assert most_queued <= 4 and most_waiting > 0  # bounded, and callers waited for room
        assert 0 < appender._group.batches < 1200
        times = [e.at for e in events]
        assert times == sorted(times)
        assert (await verify_chain(db)).ok
    finally:
        await db.close()


async def test_a_retrieval_stamped_earlier_never_sets_the_chain_back(tmp_path: Path) -> None:
    """R24: an event stamped with its request's moment, written after a later event (it waited
    for room), takes that event's time: the chain's times never go back."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await db.start()
    try:
        later = await append(db, "imaging.retrieve", details={"what": "first"})
        earlier = await append(
            db, "imaging.retrieve", details={"what": "second"}, at=later.at - timedelta(seconds=5)
        )
        assert earlier.at == later.at
        now = utc_now()
        stamped = await append(db, "imaging.retrieve", details={"what": "third"}, at=now)
        assert stamped.at == now  # a moment after the head is kept as it is
        assert (await verify_chain(db)).ok
    finally:
        await db.close()


async def test_retrievals_queued_at_close_are_written(tmp_path: Path) -> None:
    """R24: retrievals still queued when the database closes are written first, none lost."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await db.start()
    actor = Actor(user_id="u" * 32, role=Role.DOCTOR)
    tasks = [
        asyncio.create_task(audit_retrieval(db, actor, None, "qido.studies", {"n": n}))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # queued, not written
    await db.close()
    await asyncio.gather(*tasks)
    reopened = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await reopened.start()
    try:
        assert len(await _retrievals(reopened)) == 50
    finally:
        await reopened.close()
