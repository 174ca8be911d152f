"""The imaging store's worker processes: renderings and parses there give what the threads gave,
errors keep their stable codes, a dead worker answers ``busy`` and is replaced; and an arriving
instance is durable (file, directory, row, event) before it is answered (R20, R24)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import pytest
from dicom_data import local_file, part10, series_from, write_series
from sqlalchemy import event, select

from consult.admin_commands import add_institution
from consult.audit_verify import verify_chain
from consult.db import Database
from consult.imaging import ingest_sqlite
from consult.imaging.errors import (
    DicomMalformed,
    DicomRejected,
    FrameNotRenderable,
    ImagingUnavailable,
)
from consult.imaging.models import ImagingInstance
from consult.imaging.parse import parse_bytes, parse_file, parse_file_summary
from consult.imaging.render import render_png
from consult.imaging.store import Destination, ImagingStore
from consult.imaging.workers import WorkerPool
from consult.models import AuditEvent

RENDERED = ["CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb.dcm", "US1_J2KR.dcm"]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(size=1)
    yield workers
    workers.close()


async def test_a_rendering_in_a_worker_is_the_same_png_as_in_a_thread(pool: WorkerPool) -> None:
    """Native, RLE, RGB and JPEG 2000 instances: the worker's PNG is byte for byte the one
    rendered in this process."""
    for name in RENDERED:
        path = local_file(name)
        assert await pool.run(render_png, path, 1) == render_png(path, 1), name


async def test_an_error_in_a_worker_keeps_its_stable_code(pool: WorkerPool, tmp_path: Path) -> None:
    """A frame that cannot be rendered (an ECG has no image) is ``frame_not_renderable``, a
    malformed file ``dicom_malformed``, raised from the worker as they are in a thread."""
    with pytest.raises(FrameNotRenderable) as refused:
        await pool.run(render_png, local_file("waveform_ecg.dcm"), 1)
    assert refused.value.code == "frame_not_renderable"
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(local_file("CT_small.dcm").read_bytes()[:1000])
    with pytest.raises(DicomMalformed) as malformed:
        pool.result(pool.submit(parse_file_summary, broken, 1 << 20))
    assert malformed.value.code == "dicom_malformed"


async def test_a_worker_that_dies_answers_busy_and_the_next_call_gets_a_new_pool() -> None:
    """A worker killed mid-call (out of memory, a signal): that call is ``busy`` (503, may be
    tried again), never a traceback; the next call runs in a new pool."""
    workers = WorkerPool(size=1)
    try:
        with pytest.raises(ImagingUnavailable) as busy:
            await workers.run(os._exit, 3)
        assert busy.value.code == "busy"
        path = local_file("CT_small.dcm")
        assert await workers.run(render_png, path, 1) == render_png(path, 1)
        assert workers.started == 2
    finally:
        workers.close()
    with pytest.raises(ImagingUnavailable):  # closed: refused, not restarted
        workers.submit(render_png, local_file("CT_small.dcm"), 1)


async def test_a_parse_in_a_worker_finds_what_the_thread_finds(pool: WorkerPool) -> None:
    path = local_file("CT_small.dcm")
    summary = pool.result(pool.submit(parse_file_summary, path, 1 << 30))
    here = parse_file(path, max_bytes=1 << 30)
    assert summary.dataset is None
    assert summary == type(here)(**{**here.__dict__, "dataset": None})


async def test_the_store_renders_in_its_workers(store: ImagingStore) -> None:
    """With workers configured, :meth:`ImagingStore.render` runs there: the same PNG."""
    path = local_file("CT_small.dcm")
    assert store.workers is not None and store.workers.started == 0
    assert await store.render(path, 1) == render_png(path, 1)
    assert store.workers.started == 1


# --- Durability order of an arriving instance ------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ImagingStore]:
    async for imaging in _store(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path):
        yield imaging


@pytest.fixture(params=["sqlite file", "in memory"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImagingStore]:
    """The store on an SQLite file (transactions in the association's threads) and in memory
    (on the event loop, as on PostgreSQL)."""
    name = str(tmp_path / "t.db") if request.param == "sqlite file" else ":memory:"
    async for imaging in _store(f"sqlite+aiosqlite:///{name}", tmp_path):
        yield imaging


async def _store(url: str, tmp_path: Path) -> AsyncIterator[ImagingStore]:
    db = Database(url, field_key="k" * 40)
    await db.start()
    text, code = await add_institution(db, "Order Hospital", "tertiary")
    assert code == 0, text
    imaging = ImagingStore(db, tmp_path / "imaging", workers=WorkerPool(size=1))
    imaging.institution_id = text.split()[1]  # type: ignore[attr-defined]
    await imaging.start()
    try:
        yield imaging
    finally:
        await imaging.close()
        await db.close()


def _record_fsyncs_and_renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Each fsync (of the path the descriptor names) and each rename into place, in order."""
    steps: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        steps.append(("rename", str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ingest_sqlite.os, "replace", replace)
    return steps


async def test_r24_an_instance_is_answered_only_once_file_directory_row_and_event_are_durable(
    store: ImagingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R20, R24: for each arriving instance, in this order: its file fsync'd in incoming/, renamed
    into its study's directory, that directory (and studies/, for a new study) fsync'd, the
    transaction holding its row and its ``imaging.store`` event committed; only then does
    :meth:`ImagingStore.ingest` (a C-STORE response, a STOW-RS answer) return."""
    steps = _record_fsyncs_and_renames(monkeypatch)
    ingest = store._sqlite_ingest()
    assert ingest is not None
    event.listen(ingest._engine, "commit", lambda _conn: steps.append(("commit", "")))
    files = write_series(series_from("CT_small.dcm", 2), tmp_path / "in")
    dest = Destination(
        institution_id=store.institution_id,  # type: ignore[attr-defined]
        source="cstore",
        calling_ae="CT",
    )
    for path in files:
        incoming = store.new_incoming()
        incoming.write_bytes(path.read_bytes())
        stored = await store.ingest(incoming, dest, None)
        steps.append(("answered", stored.instance_id))
        target = str(store.path_of(stored.study_id, stored.instance_id))
        mine = steps[steps.index(("fsync", str(incoming))) :]
        assert [kind for kind, _ in mine][:2] == ["fsync", "rename"]
        assert mine[1] == ("rename", target)
        synced = [what for kind, what in mine[2:] if kind == "fsync"]
        assert str(Path(target).parent) in synced
        if path == files[0]:  # a new study's directory: studies/ too
            assert str(store.studies) in synced
        kinds = [kind for kind, _ in mine]
        assert kinds.index("commit") > max(i for i, k in enumerate(kinds) if k == "fsync")
        assert kinds[-1] == "answered" and kinds[-2] == "commit"
        steps.clear()
    async with store.db.session() as session:
        rows = (await session.scalars(select(ImagingInstance))).all()
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "imaging.store"))
        ).all()
    assert len(rows) == len(events) == 2
    assert (await verify_chain(store.db)).ok


async def test_r24_a_failed_commit_leaves_no_file_in_place_and_answers_no_one_success(
    store: ImagingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R24: when the transaction cannot commit after the rename (here the directory fsync
    fails), the file goes back to incoming/ and then away, no row stays, and the sender is
    told it failed."""
    files = write_series(series_from("CT_small.dcm", 1), tmp_path / "in")

    def failing_sync(_self: object, _moves: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(ingest_sqlite.SqliteIngest, "_sync", failing_sync)
    dest = Destination(
        institution_id=store.institution_id,  # type: ignore[attr-defined]
        source="cstore",
        calling_ae="CT",
    )
    incoming = store.new_incoming()
    incoming.write_bytes(files[0].read_bytes())
    with pytest.raises(OSError):
        await store.ingest(incoming, dest, None)
    async with store.db.session() as session:
        assert (await session.scalars(select(ImagingInstance))).all() == []
    assert list(store.studies.rglob("*.dcm")) == []
    assert list(store.incoming.iterdir()) == []


async def test_r24_association_threads_arriving_together_commit_in_one_group(
    store: ImagingStore, tmp_path: Path
) -> None:
    """R20, R24: instances stored from eight association threads at once (the SCP's path: the
    transaction in the thread, no hop to the event loop) are written in one transaction, each
    thread answered only after it, every file in place, every event in the chain."""
    ingest = store._sqlite_ingest()
    assert ingest is not None
    loop = asyncio.get_running_loop()
    files = write_series(series_from("CT_small.dcm", 8), tmp_path / "in")
    dest = Destination(
        institution_id=store.institution_id,  # type: ignore[attr-defined]
        source="cstore",
        calling_ae="CT",
    )

    def arrive(path: Path) -> object:
        incoming = store.new_incoming()
        incoming.write_bytes(path.read_bytes())
        parsed, size = store.prepare_arrival(incoming)
        return store.store_prepared_here(loop, incoming, parsed, size, dest, None, 60)

    threads = ThreadPoolExecutor(max_workers=len(files))  # one per association
    ingest._leader.acquire()  # hold the writer back until all eight have queued
    try:
        jobs = [loop.run_in_executor(threads, arrive, path) for path in files]
        deadline = time.monotonic() + 60
        while len(ingest._pending) < len(files):
            assert time.monotonic() < deadline, "the arrivals did not queue"
            await asyncio.sleep(0.01)
        assert not any(job.done() for job in jobs)  # nobody answered before its commit
    finally:
        ingest._leader.release()
    stored = await asyncio.gather(*jobs)
    threads.shutdown()
    assert ingest.groups == 1
    assert len({s.instance_id for s in stored}) == 8  # type: ignore[attr-defined]
    for s in stored:
        assert store.path_of(s.study_id, s.instance_id).is_file()  # type: ignore[attr-defined]
    async with store.db.session() as session:
        assert len((await session.scalars(select(ImagingInstance))).all()) == 8
    assert list(store.incoming.iterdir()) == []
    assert (await verify_chain(store.db)).ok


def _split_part10(data: bytes) -> tuple[bytes, bytes]:
    """A Part 10 file as the SCP holds it: the preamble and file meta, then the dataset."""
    meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, explicit VR
    return data[: 144 + meta_length], data[144 + meta_length :]


async def test_r24_a_received_dataset_is_on_disk_before_it_is_renamed_and_committed(
    store: ImagingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R20, R24, the C-STORE path (:meth:`ImagingStore.prepare_received`): the association's
    thread writes the file meta and the received dataset into incoming/ through a descriptor
    opened O_SYNC (each write returns once on disk, as an fsync after it) while another thread
    parses the same bytes; then the file is renamed into place, its directory fsync'd and the
    transaction committed, and only then is the sender answered."""
    steps = _record_fsyncs_and_renames(monkeypatch)
    real_writev = os.writev

    def writev(fd: int, buffers: list[memoryview]) -> int:
        synced = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_SYNC)
        done = real_writev(fd, buffers)
        steps.append(("synced write" if synced else "write", os.readlink(f"/proc/self/fd/{fd}")))
        return done

    monkeypatch.setattr(os, "writev", writev)
    ingest = store._sqlite_ingest()
    assert ingest is not None
    event.listen(ingest._engine, "commit", lambda _conn: steps.append(("commit", "")))
    loop = asyncio.get_running_loop()
    dest = Destination(
        institution_id=store.institution_id,  # type: ignore[attr-defined]
        source="cstore",
        calling_ae="CT",
    )
    parsers = ThreadPoolExecutor(2)
    data = part10(series_from("CT_small.dcm", 1)[0])
    header, body = _split_part10(data)

    def arrive() -> object:
        incoming = store.new_incoming()
        parsed, size = store.prepare_received(incoming, header, memoryview(body), parsers)
        assert size == len(data) and incoming.read_bytes() == data
        assert parsed.sop_instance_uid == parse_bytes(data).sop_instance_uid
        stored = store.store_prepared_here(loop, incoming, parsed, size, dest, None, 60)
        steps.append(("answered", ""))
        assert store.path_of(stored.study_id, stored.instance_id).read_bytes() == data
        return stored, incoming

    try:
        stored, incoming = await loop.run_in_executor(None, arrive)  # type: ignore[misc]
    finally:
        parsers.shutdown()
    target = str(store.path_of(stored.study_id, stored.instance_id))
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("synced write", str(incoming)) and "write" not in kinds
    assert steps[kinds.index("rename")] == ("rename", target)
    synced = [what for kind, what in steps if kind == "fsync"]
    assert str(Path(target).parent) in synced and str(store.studies) in synced
    assert kinds.index("rename") < kinds.index("fsync") < kinds.index("commit")
    assert kinds[-2:] == ["commit", "answered"]


def test_a_received_dataset_s_file_is_created_before_its_parse_starts(
    store: ImagingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create is a system call of its own that lets the GIL go: made after the parse was
    handed over, it let the parse take the GIL and hold it to its end (~1.2 ms of a 0.5 MB
    CT), the write waiting behind it. Created first, the write runs beside the parse."""
    steps: list[str] = []
    real_open = os.open

    def recording_open(path: object, flags: int, *args: object) -> int:
        fd = real_open(path, flags, *args)  # type: ignore[arg-type]
        steps.append(f"created {Path(str(path)).name}")
        return fd

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            steps.append(f"parse of {len(args[1])} bytes handed over")
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    header, body = _split_part10(part10(series_from("CT_small.dcm", 1)[0]))
    incoming = store.new_incoming()
    with Recording(1) as parsers:
        parsed, _ = store.prepare_received(incoming, header, memoryview(body), parsers)
    assert parsed.rows == 128
    assert steps == [f"created {incoming.name}", f"parse of {len(body)} bytes handed over"]


async def test_a_received_dataset_refused_is_refused_once_written_and_a_too_large_one_at_once(
    store: ImagingStore,
) -> None:
    """A malformed dataset is refused (with its stable code) only once its write is over, so
    the caller's removal of the file cannot race the write; one over the size limit is refused
    before any file is made."""
    data = part10(series_from("CT_small.dcm", 1)[0])
    header, body = _split_part10(data)
    parsers = ThreadPoolExecutor(1)

    def check() -> None:
        incoming = store.new_incoming()
        with pytest.raises(DicomRejected) as caught:
            store.prepare_received(incoming, header, body[:-100], parsers)
        assert caught.value.code == "dicom_malformed"  # the pixel data is cut short
        assert incoming.read_bytes() == header + body[:-100]  # written whole, then refused
        incoming.unlink()
        store.max_instance_bytes = len(data) - 1
        with pytest.raises(DicomRejected) as caught:
            store.prepare_received(incoming, header, body, parsers)
        assert caught.value.code == "dicom_too_large"
        assert not incoming.exists()

    try:
        await asyncio.get_running_loop().run_in_executor(None, check)
    finally:
        parsers.shutdown()


async def test_r24_the_scp_answers_a_stored_instance_success_and_a_refused_one_its_code(
    any_store: ImagingStore,
) -> None:
    """The SCP's C-STORE handler on the write-while-parsing path: a good dataset is stored and
    answered 0x0000; a cut one and one over the size limit are answered 0xC000, audited with
    their stable codes, and leave nothing in incoming/. Both transaction paths: in the
    association's thread (an SQLite file), on the event loop (elsewhere)."""
    store = any_store
    assert (store._sqlite_ingest() is None) == (store.db.engine.url.database == ":memory:")
    from types import SimpleNamespace

    from web.dicom_scp import STATUS_CANNOT_UNDERSTAND, STATUS_SUCCESS, DicomScp

    loop = asyncio.get_running_loop()
    scp = DicomScp(
        store, host="127.0.0.1", port=0, ae_title="US", peers={"CT": store.institution_id}
    )  # type: ignore[attr-defined]
    scp._loop, scp._server = loop, object()
    scp._parsers = ThreadPoolExecutor(2)
    ds = series_from("CT_small.dcm", 1)[0]
    _, body = _split_part10(part10(ds))

    class Association:  # one for the three messages, as pynetdicom's (a thread) is
        requestor = SimpleNamespace(ae_title="CT")

    assoc = Association()

    def c_store(dataset: bytes) -> int:
        event = SimpleNamespace(
            assoc=assoc,
            request=SimpleNamespace(
                DataSet=BytesIO(dataset),
                AffectedSOPClassUID=ds.SOPClassUID,
                AffectedSOPInstanceUID=ds.SOPInstanceUID,
            ),
            context=SimpleNamespace(transfer_syntax=ds.file_meta.TransferSyntaxUID),
        )
        return scp._on_store(event)

    try:
        assert await loop.run_in_executor(None, c_store, body[:-100]) == STATUS_CANNOT_UNDERSTAND
        store.max_instance_bytes = len(body) // 2
        assert await loop.run_in_executor(None, c_store, body) == STATUS_CANNOT_UNDERSTAND
        store.max_instance_bytes = 1 << 30
        assert await loop.run_in_executor(None, c_store, body) == STATUS_SUCCESS
        assert scp.next_files.taken == 2  # made ahead after the first, refused or not
        scp._on_connection_closed(SimpleNamespace(assoc=assoc))  # the one made after the last
    finally:
        scp._parsers.shutdown()
    assert (scp.stored, scp.refused) == (1, 2)
    assert await loop.run_in_executor(None, lambda: list(store.incoming.iterdir())) == []
    async with store.db.session() as session:
        refused = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "imaging.store", AuditEvent.result == "refused"
                )
            )
        ).all()
        assert len((await session.scalars(select(ImagingInstance))).all()) == 1
    codes = sorted(json.loads(e.details)["code"] for e in refused)
    assert codes == ["dicom_malformed", "dicom_too_large"]
