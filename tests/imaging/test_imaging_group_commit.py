"""Instances arriving together commit together; one refused instance fails alone (R20, R24)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dicom_data import series_from, write_series
from sqlalchemy import select

from consult.admin_commands import add_institution
from consult.audit_verify import verify_chain
from consult.db import Database
from consult.imaging.errors import DicomStudyMismatch
from consult.imaging.models import ImagingInstance, ImagingStudy
from consult.imaging.store import Destination, ImagingStore, prepare_file
from consult.models import AuditEvent


async def _store(tmp_path: Path) -> tuple[Database, ImagingStore, str]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", field_key="k" * 40)
    await db.start()
    text, code = await add_institution(db, "Group Hospital", "tertiary")
    assert code == 0, text
    store = ImagingStore(db, tmp_path / "imaging")
    await store.start()
    return db, store, text.split()[1]


async def _arrive(store: ImagingStore, files: list[Path], institution_id: str) -> list[object]:
    """Each file sent as one modality sends it (copied into incoming/), all at once."""
    dest = Destination(institution_id=institution_id, source="cstore", calling_ae="CT")
    jobs = []
    for path in files:
        incoming = store.new_incoming()
        incoming.write_bytes(path.read_bytes())
        jobs.append(store.ingest(incoming, dest, None))
    return list(await asyncio.gather(*jobs, return_exceptions=True))


async def test_r24_instances_arriving_together_share_a_transaction_and_each_is_on_disk(
    tmp_path: Path,
) -> None:
    """R20, R24: twelve instances sent at once are committed in fewer transactions than
    instances, each answered only once its row, its event and its file are in place; the
    chain verifies and nothing is left in incoming/."""
    db, store, institution_id = await _store(tmp_path)
    try:
        files = write_series(series_from("CT_small.dcm", 12), tmp_path / "in")
        outcomes = await _arrive(store, files, institution_id)
        assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
        assert store._writer.batches >= 1
        async with db.session() as session:
            rows = (await session.scalars(select(ImagingInstance))).all()
            events = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "imaging.store")
                )
            ).all()
        assert len(rows) == 12
        assert len(events) == 12
        for row in rows:
            assert store.path_of(row.study_id, row.id).stat().st_size == row.size
        assert list(store.incoming.iterdir()) == []
        assert (await verify_chain(db)).ok
    finally:
        await store.close()
        await db.close()


async def test_r24_a_refused_instance_in_a_batch_fails_alone_and_is_audited_once(
    tmp_path: Path,
) -> None:
    """R24: one instance of a de-identified study among good ones: the good ones are stored,
    that one is refused (``dicom_study_mismatch``) and its refusal recorded once, as when it
    arrives alone; its file is removed."""
    db, store, institution_id = await _store(tmp_path)
    try:
        good = series_from("CT_small.dcm", 6)
        bad = series_from("CT_small.dcm", 1)
        async with db.session() as session, session.begin():
            closed = ImagingStudy(
                study_uid=str(bad[0].StudyInstanceUID),
                institution_id=institution_id,
                deidentified=True,
                source="share",
            )
            session.add(closed)
        files = write_series([*good[:3], *bad, *good[3:]], tmp_path / "in")
        outcomes = await _arrive(store, files, institution_id)
        assert isinstance(outcomes[3], DicomStudyMismatch)
        assert sum(isinstance(o, BaseException) for o in outcomes) == 1
        async with db.session() as session:
            stored = (await session.scalars(select(ImagingInstance))).all()
            refused = (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == "imaging.store",
                        AuditEvent.result == "refused",
                        AuditEvent.object_id == closed.id,
                    )
                )
            ).all()
        assert len(stored) == 6
        assert len(refused) == 1
        assert list(store.incoming.iterdir()) == []
        assert (await verify_chain(db)).ok
    finally:
        await store.close()
        await db.close()


@pytest.mark.parametrize("count", [1, 3])
async def test_r24_close_waits_for_queued_arrivals(tmp_path: Path, count: int) -> None:
    """R24: closing the store while instances are queued writes them before it returns."""
    db, store, institution_id = await _store(tmp_path)
    try:
        files = write_series(series_from("CT_small.dcm", count), tmp_path / "in")
        dest = Destination(institution_id=institution_id, source="cstore", calling_ae="CT")
        jobs = []
        for path in files:
            incoming = store.new_incoming()
            incoming.write_bytes(path.read_bytes())
            parsed, size = prepare_file(incoming, store.max_instance_bytes)
            jobs.append(
                asyncio.ensure_future(store.store_prepared(incoming, parsed, size, dest, None))
            )
        await asyncio.sleep(0)  # each job runs up to its submit: all are queued
        assert len(store._writer._queue) == count
        await store.close()
        assert all(job.done() for job in jobs)
        await asyncio.gather(*jobs)
        async with db.session() as session:
            assert len((await session.scalars(select(ImagingInstance))).all()) == count
    finally:
        await store.close()
        await db.close()
