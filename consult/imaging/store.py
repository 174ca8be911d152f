"""The imaging store: DICOM files on disk, their rows, and an audit event per stored instance.

Layout under ``root`` (``<data_dir>/imaging`` by default)::

    incoming/<random>.part          an upload or a C-STORE being received
    studies/<study row id>/<instance row id>.dcm

Every path is built from our own ids: nothing a sender writes (UIDs, patient ids, descriptions)
ever becomes part of a path. A file is written whole to ``incoming/``, parsed and checked there,
then renamed into place in the transaction that inserts its row, so a crash leaves either a
stored instance or a stray ``.part`` (removed at start), never a row without its file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import AuditTx, SqliteChainWriter, append, audited, chain_lock
from consult.db import Database
from consult.group_commit import GroupWriter
from consult.models import AuditResult, Patient, Visit
from consult.sqltypes import new_id

from .errors import DicomRejected, DicomStudyMismatch, StudyNotFound
from .ingest_rows import instance_fields, store_event, study_created_event, study_fields
from .models import ImagingInstance, ImagingStudy
from .render_cache import DEFAULT_MAX_BYTES as DEFAULT_RENDER_CACHE_BYTES
from .render_cache import RenderCache

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .ingest_sqlite import SqliteIngest
    from .parse import ParsedInstance
    from .query import StudyRows
    from .workers import WorkerPool

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_INSTANCE_BYTES: Final = 512 * 1024 * 1024
SLOW_GRACE_S: Final = 30.0
"""How long an arriving instance (a C-STORE message, a STOW-RS upload) may take before
:data:`MIN_RECEIVE_RATE` applies to it."""
MIN_RECEIVE_RATE: Final = 1024
"""Bytes a second an arriving instance must come at on average, past :data:`SLOW_GRACE_S` (a
64 kbit/s line gives eight times that): a bound on silence alone (pynetdicom's network
timeout, ``body_timeout_s``) let a peer sending a byte just within it hold its connection, and
a DICOM association slot, for ever (R33)."""


def arriving_too_slowly(received: int, elapsed_s: float) -> bool:
    """Whether ``received`` bytes in ``elapsed_s`` of an instance's arrival are under the floor
    (:data:`MIN_RECEIVE_RATE` past :data:`SLOW_GRACE_S`): the one rule of the C-STORE
    messages (:class:`web.dicom_limits.BoundedRecv`) and the STOW-RS uploads."""
    return elapsed_s > SLOW_GRACE_S and received < MIN_RECEIVE_RATE * elapsed_s


RENDER_THREADS: Final = os.cpu_count() or 2
"""Threads rendering PNGs (without worker processes): one per core. A rendering is CPU work,
partly under the GIL (the header's parse); more threads than cores only queue for it, and the
event loop with them (bench/dicom_ingest.py, 8 clients, 2 cores, cold renderings: p95 36.7-37.7
ms with 2 threads against 37.0-53.5 with the store's 4, side by side at load 2.2-2.8)."""


@dataclass(frozen=True)
class Destination:
    """Where an arriving instance goes: the institution, and the visit when the sender knows it.

    STOW-RS names the visit in its URL. A modality (C-STORE) knows only its institution (its AE
    title): the study is linked to a visit of that institution whose id is the study's
    Accession Number (as the worklist gave it), else to the patient whose record id is the
    Patient ID, else left unlinked for staff to attach.
    """

    institution_id: str
    visit_id: str | None = None
    patient_id: str | None = None
    source: str = "stow"
    expected_study_uid: str | None = None
    calling_ae: str | None = None


@dataclass(frozen=True)
class Stored:
    """The outcome of storing one instance."""

    study_id: str
    instance_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    duplicate: bool


class ImagingStore:
    """Files and rows of the imaging store; every method is safe to call from the event loop."""

    def __init__(
        self,
        db: Database,
        root: Path,
        *,
        max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
        executor: Executor | None = None,
        render_cache_bytes: int = DEFAULT_RENDER_CACHE_BYTES,
        workers: WorkerPool | None = None,
    ) -> None:
        self.db = db
        self.root = Path(root)
        self.max_instance_bytes = max_instance_bytes
        self._executor = executor
        self.incoming = self.root / "incoming"
        self.studies = self.root / "studies"
        self._writer: GroupWriter[_Arrival, Stored] = GroupWriter(
            self._write_batch, self._write_one, name="arriving DICOM instances"
        )
        """Arriving instances commit in groups (see :mod:`consult.group_commit`)."""
        self._sqlite: SqliteIngest | None = None
        self._sqlite_lock = threading.Lock()
        self.workers = workers
        """Worker processes for rendering (:mod:`.workers`); None: the render threads."""
        self._render_threads = ThreadPoolExecutor(
            max_workers=RENDER_THREADS, thread_name_prefix="imaging-render"
        )
        self.renders = RenderCache(render_cache_bytes)
        """Rendered PNGs of recent requests (see :mod:`.render_cache`)."""

    async def start(self) -> None:
        """Prepare the directories."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.prepare)

    async def close(self) -> None:
        """Write the queued arrivals; idempotent. (Retrieval events are the audit chain's:
        the database writes what is queued before it closes.)"""
        await self._writer.drain()
        sqlite, self._sqlite = self._sqlite, None
        if sqlite is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, sqlite.close)
        if self.workers is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.workers.close)
        self._render_threads.shutdown(wait=False)

    def prepare(self) -> None:
        """Create the directories and remove partial files a killed process left (blocking)."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.studies.mkdir(parents=True, exist_ok=True)
        for stray in self.incoming.glob("*.part"):
            stray.unlink(missing_ok=True)

    def new_incoming(self) -> Path:
        """A fresh path under ``incoming/`` for a file being received."""
        return self.incoming / f"{secrets.token_hex(12)}.part"

    def path_of(self, study_id: str, instance_id: str) -> Path:
        """The file of a stored instance (ids are ours: hex, no separators)."""
        if not (study_id.isalnum() and instance_id.isalnum()):
            raise StudyNotFound()
        return self.studies / study_id / f"{instance_id}.dcm"

    async def rows(self, study: ImagingStudy) -> StudyRows:
        """The study with its instances, in series and instance order."""
        from .query import StudyRows

        async with self.db.session() as session:
            instances = (
                await session.scalars(
                    select(ImagingInstance)
                    .where(ImagingInstance.study_id == study.id)
                    .order_by(
                        ImagingInstance.series_number,
                        ImagingInstance.series_uid,
                        ImagingInstance.instance_number,
                        ImagingInstance.created_at,
                    )
                )
            ).all()
        return StudyRows(study, list(instances))

    def header(self, study: ImagingStudy, instance: ImagingInstance) -> Dataset:
        """The stored file's header, without pixel data (blocking)."""
        from .query import read_header

        return read_header(self.path_of(study.id, instance.id))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (parsing, file I/O, decoding) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def prepare_arrival(self, incoming: Path) -> tuple[ParsedInstance, int]:
        """Parse and check the received file at ``incoming`` and fsync it (blocking): the
        instance and its size, or :class:`DicomRejected`.

        In the calling thread, not in a worker process: measured on the 2-core machine under
        load, a C-STORE parsed in the render workers took 11-30 ms of CPU an instance against
        11-13 in the association's thread (spawn, pipes and wake-ups, and two workers queueing
        four associations), and its tail latency tripled. :func:`.parse.parse_file_summary`
        is there for a machine where that measures the other way."""
        return prepare_file(incoming, self.max_instance_bytes)

    def prepare_received(
        self,
        incoming: Path,
        header: bytes,
        body: bytes | memoryview,
        parser: Executor,
        *,
        fd: int | None = None,
    ) -> tuple[ParsedInstance, int]:
        """A received dataset ``body`` behind its Part 10 ``header`` (preamble and file meta):
        this thread writes both to ``incoming`` and syncs it while ``parser`` parses and checks
        the same bytes in memory (blocking). The instance and its size once the file is on
        disk, or :class:`DicomRejected` once the write is over (the file may exist: the caller
        removes it). ``fd``: ``incoming`` already created by :func:`create_synced` (closed here
        whatever happens); None: created here.

        The C-STORE path (:mod:`web.dicom_scp`): writing a new 0.5 MB file costs ~1.3 ms of
        kernel time here and its sync ~0.6 ms, without the GIL, which the parse (~1.5 ms)
        needs; one after the other they were ~5 ms of an association's ~10 ms an instance.
        The write is this thread's, so that the parser finds the GIL free as soon as the
        write starts (a writer thread woken while this one parsed waited for the parse to end
        before it could start), and the file is no longer read back to be parsed. The file is
        created before the parse is handed over: the create lets the GIL go too, and a parse
        that took it then kept it to its end, the write behind it (one association, storescu:
        124-128 -> 132-139 instances/s side by side)."""
        from .errors import DicomTooLarge
        from .parse import parse_parts

        try:
            size = len(header) + len(body)
            if size > self.max_instance_bytes:
                raise DicomTooLarge()
            if fd is None:
                # Created before the parse starts: each system call lets the GIL go, and a
                # parse that took it during the create held it to its end (~1.2 ms), the
                # write waiting.
                fd = create_synced(incoming)
            parsing = parser.submit(parse_parts, header, body, max_bytes=self.max_instance_bytes)
            try:
                write_all(fd, header, body)
            finally:
                futures_wait([parsing])  # nothing of the instance is used after a failed write
        finally:
            if fd is not None:
                os.close(fd)
        return parsing.result(), size

    async def render(self, path: Path, number: int, layout: str | None = None) -> bytes:
        """Frame ``number`` of the instance at ``path`` as a PNG (:func:`.render.render_png`;
        ``layout``: its row's), in a worker process (or the store's render threads without
        workers)."""
        from .render import render_png

        if self.workers is None:
            return await asyncio.get_running_loop().run_in_executor(
                self._render_threads, render_png, path, number, layout
            )
        return await self.workers.run(render_png, path, number, layout)

    async def ingest(self, incoming: Path, dest: Destination, actor: Actor | None) -> Stored:
        """Parse and check the file at ``incoming``, fsync it, then store it; the file is
        consumed.

        Raises :class:`DicomRejected` (with its code; the refusal is audited) for anything the
        parser or the study's links refuse.
        """
        try:
            parsed, size = await self.run(self.prepare_arrival, incoming)
        except DicomRejected as exc:
            # One unlink; it must run even when the task is cancelled, so it is not deferred to
            # the executor.
            incoming.unlink(missing_ok=True)  # noqa: ASYNC240
            await self.audit_refusal(exc, dest, actor)
            raise
        except BaseException:
            incoming.unlink(missing_ok=True)  # noqa: ASYNC240
            raise
        return await self.store_prepared(incoming, parsed, size, dest, actor)

    async def store_prepared(
        self,
        incoming: Path,
        parsed: ParsedInstance,
        size: int,
        dest: Destination,
        actor: Actor | None,
    ) -> Stored:
        """Store an instance whose file at ``incoming`` is parsed and already fsync'd
        (:func:`prepare_file`, or the SCP's own thread); the file is consumed.

        The row, its audit event and the file's rename commit in one transaction, shared with
        the instances arriving meanwhile (:class:`consult.group_commit.GroupWriter`); this
        returns once that transaction has committed (the instance is on disk, its directory
        entry too).
        """
        if dest.expected_study_uid and parsed.study_uid != dest.expected_study_uid:
            incoming.unlink(missing_ok=True)  # noqa: ASYNC240  (one unlink)
            mismatch = DicomStudyMismatch()
            await self.audit_refusal(mismatch, dest, actor)
            raise mismatch
        try:
            # From here the writer owns the file: it renames it into place or removes it (a
            # writer stopped at shutdown leaves a .part, removed at the next start).
            return await self._writer.submit(_Arrival(incoming, parsed, size, dest, actor))
        except DicomRejected as exc:
            await self.audit_refusal(exc, dest, actor)
            raise

    def store_prepared_here(
        self,
        loop: asyncio.AbstractEventLoop,
        incoming: Path,
        parsed: ParsedInstance,
        size: int,
        dest: Destination,
        actor: Actor | None,
        timeout_s: float,
    ) -> Stored:
        """:meth:`store_prepared` from a thread that may block (a pynetdicom association's),
        with the event loop ``loop``. On an SQLite file the transaction runs in this thread, in
        a group with the threads arriving meanwhile (:meth:`.ingest_sqlite.SqliteIngest
        .store_here`: no hop to the loop and back, no executor); elsewhere it goes through
        the loop. Returns once committed; refusals are audited as :meth:`store_prepared` does."""
        ingest = self._sqlite_ingest() if not dest.expected_study_uid else None
        if ingest is None:
            future = asyncio.run_coroutine_threadsafe(
                self.store_prepared(incoming, parsed, size, dest, actor), loop
            )
            return future.result(timeout=timeout_s)
        try:
            stored, changed = ingest.store_here(_Arrival(incoming, parsed, size, dest, actor))
        except DicomRejected as exc:
            asyncio.run_coroutine_threadsafe(self.audit_refusal(exc, dest, actor), loop).result(
                timeout=timeout_s
            )
            raise
        finally:
            incoming.unlink(missing_ok=True)  # usually nothing: renamed or removed
        if changed:  # a study's readers may have changed: cached grants go (on the loop)
            loop.call_soon_threadsafe(self.db.note_change)
        return stored

    async def audit_refusal(
        self, exc: DicomRejected, dest: Destination, actor: Actor | None
    ) -> None:
        """Record that an arriving instance was refused (``imaging.store`` refused)."""
        await append(
            self.db,
            "imaging.store",
            actor=actor,
            actor_role=None if actor else "modality",
            source_ip=None if actor else dest.calling_ae,
            object_type="visit" if dest.visit_id else "institution",
            object_id=dest.visit_id or dest.institution_id,
            result=AuditResult.REFUSED,
            details={"code": exc.code, "source": dest.source},
        )

    def _sqlite_ingest(self) -> SqliteIngest | None:
        """The worker-thread writer of arrivals, on an SQLite file (see :mod:`.ingest_sqlite`);
        None elsewhere (PostgreSQL, an in-memory SQLite: the async path below). Any thread."""
        with self._sqlite_lock:
            if self._sqlite is None and SqliteChainWriter.fits(self.db):
                from .ingest_sqlite import SqliteIngest

                self._sqlite = SqliteIngest(self.db, self.studies)
            return self._sqlite

    async def _write_sqlite(
        self, ingest: SqliteIngest, items: list[_Arrival], alone: bool
    ) -> list[Stored]:
        try:
            async with chain_lock(self.db):  # as audited(): one chain writer at a time
                written = await self.run(functools.partial(ingest.write, items, alone=alone))
        finally:
            if alone:
                items[0].incoming.unlink(missing_ok=True)  # usually nothing: renamed or removed
        if written.studies_changed:
            self.db.note_change()  # a study's readers may have changed: cached grants go
        return written.stored

    async def _write_one(self, item: _Arrival) -> Stored:
        """One arrival in its own transaction (a refusal of the study's links is audited)."""
        ingest = self._sqlite_ingest()
        if ingest is not None:
            (stored,) = await self._write_sqlite(ingest, [item], True)
            return stored
        moves: list[tuple[Path, Path]] = []
        try:
            async with audited(self.db) as tx:
                stored = await self._insert_tx(tx, item, moves, alone=True)
                await self._sync_moves(moves)
            return stored
        except BaseException:
            for target, _ in moves:  # the row was rolled back: so goes its file
                target.unlink(missing_ok=True)
            raise
        finally:
            item.incoming.unlink(missing_ok=True)  # usually nothing: it was renamed

    async def _write_batch(self, items: list[_Arrival]) -> list[Stored]:
        """Several arrivals in one transaction; on failure every file is put back where it was,
        for :meth:`_write_one` to take each alone."""
        ingest = self._sqlite_ingest()
        if ingest is not None:
            return await self._write_sqlite(ingest, items, False)
        moves: list[tuple[Path, Path]] = []
        try:
            async with audited(self.db) as tx:
                stored = [await self._insert_tx(tx, item, moves, alone=False) for item in items]
                await self._sync_moves(moves)
        except BaseException:
            for target, incoming in reversed(moves):
                try:
                    os.replace(target, incoming)  # a rename, even when cancelled
                except OSError:
                    target.unlink(missing_ok=True)
            raise
        for item in items:
            item.incoming.unlink(missing_ok=True)  # usually nothing: it was renamed
        return stored

    async def _sync_moves(self, moves: list[tuple[Path, Path]]) -> None:
        """Make the renames durable before the commit: fsync each directory that gained an
        entry (and the studies directory when a study's directory is new)."""
        if moves:
            await self.run(_sync_dirs, {target.parent for target, _ in moves}, self.studies)

    async def _insert_tx(
        self, tx: AuditTx, item: _Arrival, moves: list[tuple[Path, Path]], *, alone: bool
    ) -> Stored:
        """The rows and events of one arrival in ``tx``, its file renamed into place (the
        rename is noted in ``moves``). A refusal of the study's links is recorded through
        ``tx.refuse`` when the arrival is ``alone``; in a batch it fails the batch instead, and
        the arrival is then written (and refused) alone."""
        parsed, dest, actor = item.parsed, item.dest, item.actor
        session = tx.session
        # the study and (if it is held already) this instance of it, in one statement
        found = (
            await session.execute(
                select(ImagingStudy, ImagingInstance)
                .outerjoin(
                    ImagingInstance,
                    (ImagingInstance.study_id == ImagingStudy.id)
                    & (ImagingInstance.sop_instance_uid == parsed.sop_instance_uid),
                )
                .where(
                    ImagingStudy.institution_id == dest.institution_id,
                    ImagingStudy.study_uid == parsed.study_uid,
                )
            )
        ).first()
        study, existing = (None, None) if found is None else (found[0], found[1])
        visit_id, patient_id = dest.visit_id, dest.patient_id
        if dest.source == "cstore" and visit_id is None:
            # the Patient ID only matters to a new study (a held one keeps its patient)
            visit_id, patient_id = await _link_from_modality(
                session, dest, parsed, by_patient=study is None
            )
        if study is None:
            study = ImagingStudy(
                **study_fields(parsed, dest, actor, patient_id=patient_id, visit_id=visit_id)
            )
            session.add(study)
            await session.flush()
            await tx.record(
                "imaging.study_created", **study_created_event(dest, actor, study.id, visit_id)
            )
        elif study.deidentified or (
            visit_id is not None and study.visit_id not in (None, visit_id)
        ):
            if not alone:
                raise _WriteAlone()
            # One study, one visit: another visit's study is not extended from here.
            raise tx.refuse(
                DicomStudyMismatch("The study belongs to another visit."),
                actor=actor,
                action="imaging.store",
                object_type="imaging_study",
                object_id=study.id,
            )
        elif study.visit_id is None and visit_id is not None:
            study.visit_id, study.patient_id = visit_id, patient_id
        if existing is not None:  # the same instance sent again: keep what we hold
            return _stored(study, existing, duplicate=True)
        instance = _instance_row(study.id, parsed, item.size)
        instance.id = new_id()  # now, not at the flush: its file is named by it
        session.add(instance)  # flushed with the event below (one round trip)
        target = self.path_of(study.id, instance.id)
        await self.run(_rename, item.incoming, target)
        moves.append((target, item.incoming))
        await tx.record(
            "imaging.store",
            **store_event(dest, actor, study.id, instance.id, parsed, item.size),
        )
        return _stored(study, instance, duplicate=False)

    async def add_copy(
        self,
        source: ImagingStudy,
        copy_uid: str,
        recipient_institution_id: str,
        recipient_id: str | None,
        files: list[tuple[ParsedInstance, Path, str]],
        actor: Actor,
    ) -> ImagingStudy:
        """Store a de-identified copy of ``source`` for another institution (see ``share``):
        ``files`` are the copies in ``incoming/``, each with the id of the instance it copies."""
        async with audited(self.db) as tx:
            copy = ImagingStudy(
                study_uid=copy_uid,
                institution_id=recipient_institution_id,
                patient_id=source.patient_id,
                visit_id=None,
                source_study_id=source.id,
                recipient_id=recipient_id,
                deidentified=True,
                source="share",
                created_by=actor.user_id,
            )
            tx.session.add(copy)
            await tx.session.flush()
            for parsed, path, source_instance_id in files:
                instance = _instance_row(copy.id, parsed, (await self.run(path.stat)).st_size)
                instance.source_instance_id = source_instance_id
                tx.session.add(instance)
                await tx.session.flush()
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, _place, path, self.path_of(copy.id, instance.id)
                )
            await tx.record(
                "imaging.share",
                actor=actor,
                object_type="imaging_study",
                object_id=source.id,
                details={
                    "copy_id": copy.id,
                    "institution_id": recipient_institution_id,
                    "recipient_id": recipient_id,
                    "instances": len(files),
                },
            )
        return copy


@dataclass(frozen=True)
class _Arrival:
    """An instance waiting for its transaction: its parsed, fsync'd file in ``incoming/``."""

    incoming: Path
    parsed: ParsedInstance
    size: int
    dest: Destination
    actor: Actor | None


class _WriteAlone(Exception):
    """An arrival of a batch that must be refused: the batch is written one by one instead."""


def prepare_file(path: Path, max_bytes: int) -> tuple[ParsedInstance, int]:
    """Parse and check the received file at ``path`` and fsync it: the instance and its size
    (blocking; :class:`DicomRejected` if refused)."""
    from .parse import parse_file  # pydicom: imported on first use, not at start-up

    parsed = parse_file(path, max_bytes=max_bytes)
    return parsed, _fsync(path)


def create_synced(path: Path) -> int:
    """Create the file at ``path`` (it must not exist) for writing, opened ``O_SYNC``: each
    write returns once its data and the file's metadata are on disk, as an ``fsync`` after
    it would. The descriptor; the caller closes it."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC, 0o666)


def write_all(fd: int, *parts: bytes | memoryview) -> None:
    """Write ``parts`` to ``fd`` whole: one ``writev`` where the kernel takes them all, which
    writes (and, on an ``O_SYNC`` descriptor, syncs) without taking the GIL in between (a
    parse in another thread holds it)."""
    views = [memoryview(part).cast("B") for part in parts]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if views and done:
            views[0] = views[0][done:]


def _fsync(path: Path) -> int:
    """fsync the file at ``path``; its size."""
    with path.open("rb") as f:
        os.fsync(f.fileno())
        return os.fstat(f.fileno()).st_size


def _rename(incoming: Path, target: Path) -> None:
    """Move a file (already fsync'd) into place; :func:`_sync_dirs` makes it durable."""
    target.parent.mkdir(exist_ok=True)
    os.replace(incoming, target)


def _sync_dirs(directories: set[Path], studies: Path) -> None:
    """fsync each directory, and ``studies`` (a study's directory may be new): a rename is on
    disk only once its directory is."""
    for directory in sorted(directories | {studies}):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _place(incoming: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with incoming.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(incoming, target)


def _stored(study: ImagingStudy, instance: ImagingInstance, *, duplicate: bool) -> Stored:
    return Stored(
        study_id=study.id,
        instance_id=instance.id,
        study_uid=study.study_uid,
        series_uid=instance.series_uid,
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        duplicate=duplicate,
    )


async def _link_from_modality(
    session: object, dest: Destination, parsed: ParsedInstance, *, by_patient: bool = True
) -> tuple[str | None, str | None]:
    """A modality's study: the visit its Accession Number names, or (``by_patient``) the patient
    its Patient ID names, within the sending institution; else nothing."""
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    accession = parsed.accession_number.strip()
    if accession and accession.isalnum():
        visit = await session.get(Visit, accession)
        if visit is not None and visit.institution_id == dest.institution_id:
            return visit.id, visit.patient_record_id
    patient_id = parsed.patient_id.strip()
    if by_patient and patient_id and patient_id.isalnum():
        patient = await session.get(Patient, patient_id)
        if patient is not None:
            return None, patient.id
    return None, None


def _instance_row(study_id: str, parsed: ParsedInstance, size: int) -> ImagingInstance:
    """The row for one stored instance of ``study_id``, from what its parse found."""
    return ImagingInstance(study_id=study_id, **instance_fields(parsed, size))
