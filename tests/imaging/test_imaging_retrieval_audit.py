"""Retrieval events are batched into the audit chain, in order, and none is lost at close."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import verify_chain
from consult.db import Database
from consult.imaging.retrieval_audit import RetrievalAudit
from consult.models import AuditEvent
from consult.permissions import Role


async def test_batched_retrievals_reach_the_chain_in_order(tmp_path: Path) -> None:
    """R24: 1200 retrievals queued from 12 tasks are all in the chain, in each task's order,
    in fewer transactions than events, and the chain verifies; close() writes the rest."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await db.start()
    writer = RetrievalAudit(db, max_queued=64)  # small: the producers meet back-pressure
    writer.start()
    actor = Actor(user_id="u" * 32, role=Role.DOCTOR)

    async def viewer(n: int) -> None:
        for frame in range(100):
            await writer.record(actor, f"study{n}", {"what": "frames", "frame": frame})

    await asyncio.gather(*(viewer(n) for n in range(12)))
    await writer.close()
    await writer.close()  # idempotent
    try:
        async with db.session() as session:
            events = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.action == "imaging.retrieve")
                    .order_by(AuditEvent.seq)
                )
            ).all()
        assert len(events) == 1200
        for n in range(12):
            frames = [json.loads(e.details)["frame"] for e in events if e.object_id == f"study{n}"]
            assert frames == list(range(100))
        times = [e.at for e in events]
        assert times == sorted(times)
        assert (await verify_chain(db)).ok
    finally:
        await db.close()
