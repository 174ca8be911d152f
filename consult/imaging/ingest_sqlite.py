"""The ingest transaction on an SQLite file as one worker-thread call.

Through the async driver, storing one instance was ~12 statements (the chain's write lock, the
study, the visit or patient of a modality's study, the inserts, the head, the events, the
commit, the connection's reset), each a round trip to the driver's thread and back through the
event loop, plus two executor calls (the rename, the directory fsync): ~4.5 ms of the loop's
CPU an instance, under the one GIL that pynetdicom's receiving and the parser need too. Here a
batch of arrivals (:class:`consult.group_commit.GroupWriter`) is one call in a worker thread on
a plain ``sqlite3`` connection: the same statements, rows and audit events, the same order
(SQLite's write lock before the chain's head is read; each file renamed into place, then its
directories fsync'd, then the commit), the same durability (it returns once committed); the
rows' and events' values come from :mod:`.ingest_rows`, as the async path's do. The caller
holds the chain's append lock around the call (:func:`consult.audit.chain_lock`), as
:func:`consult.audit.audited` does. PostgreSQL (and an in-memory SQLite) keep the async path.

A directory is fsync'd once per batch; ``studies/`` only when a study directory this process
has not made durable yet is involved (a new study, or the first write after a start).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update

from consult.audit import SyncAuditTx
from consult.db import Database, sqlite_worker_engine
from consult.models import AuditResult, Patient, Visit
from consult.sqltypes import new_id, utc_now

from .errors import DicomStudyMismatch
from .ingest_rows import instance_fields, store_event, study_created_event, study_fields
from .models import ImagingInstance, ImagingStudy

if TYPE_CHECKING:
    from .store import Stored, _Arrival

_STUDIES = ImagingStudy.metadata.tables[ImagingStudy.__tablename__]
_INSTANCES = ImagingInstance.metadata.tables[ImagingInstance.__tablename__]
# Statements built once: SQLAlchemy keeps their compiled form, each call only binds values.
_FIND = (
    select(
        _STUDIES.c.id,
        _STUDIES.c.visit_id,
        _STUDIES.c.deidentified,
        _INSTANCES.c.id,
        _INSTANCES.c.series_uid,
        _INSTANCES.c.sop_class_uid,
    )
    .select_from(
        _STUDIES.outerjoin(
            _INSTANCES,
            (_INSTANCES.c.study_id == _STUDIES.c.id)
            & (_INSTANCES.c.sop_instance_uid == bindparam("sop_instance_uid")),
        )
    )
    .where(
        _STUDIES.c.institution_id == bindparam("institution_id"),
        _STUDIES.c.study_uid == bindparam("study_uid"),
    )
)
_INSERT_STUDY = insert(_STUDIES)
_LINK_STUDY = (
    update(_STUDIES)
    .where(_STUDIES.c.id == bindparam("study_id"))
    .values(visit_id=bindparam("new_visit_id"), patient_id=bindparam("new_patient_id"))
)
_INSERT_INSTANCE = insert(_INSTANCES)
_VISIT = select(Visit.institution_id, Visit.patient_record_id).where(
    Visit.id == bindparam("visit_id")
)
_PATIENT = select(Patient.id).where(Patient.id == bindparam("patient_id"))


MAX_GROUP = 32
"""Arrivals in one transaction at most (as :data:`consult.group_commit.MAX_BATCH`)."""
BUSY_TIMEOUT_S = 30.0
"""How long a transaction waits for SQLite's write lock held by another connection."""


class _Slot:
    """One arrival waiting in :meth:`SqliteIngest.store_here`, and its outcome."""

    def __init__(self, item: _Arrival) -> None:
        self.item = item
        self.done = False
        self.stored: Stored | None = None
        self.changed = False
        self.error: BaseException | None = None


class WriteAlone(Exception):
    """An arrival of a batch that must be refused: the batch is written one by one instead."""


@dataclass(frozen=True)
class Written:
    """What one call committed: each arrival's outcome, and whether a study row was added or
    changed (a decision about who may read it may have changed)."""

    stored: list[Stored]
    studies_changed: bool


class SqliteIngest:
    """Writes batches of arrivals into an SQLite file, each batch one transaction in one call
    (blocking: run it in a worker thread, holding :func:`consult.audit.chain_lock`)."""

    def __init__(self, db: Database, studies: Path) -> None:
        self._engine = sqlite_worker_engine(db, busy_timeout_s=BUSY_TIMEOUT_S)
        self._studies = studies
        self._durable: set[Path] = set()
        """Study directories whose entry in ``studies/`` is known to be on disk."""
        self._guard = threading.Lock()  # one call at a time even if a caller forgets the lock
        self._leader = threading.Lock()
        """Held by the thread writing a group for the others (:meth:`store_here`)."""
        self._pending_lock = threading.Lock()
        self._pending: list[_Slot] = []
        self.groups = 0
        """Transactions of two or more arrivals written by :meth:`store_here` (for tests)."""

    def close(self) -> None:
        self._engine.dispose()

    def store_here(self, item: _Arrival) -> tuple[Stored, bool]:
        """Store ``item`` from the calling thread (a pynetdicom association's, which waits for
        the outcome anyway): its outcome and whether a study row changed, once committed.

        Group commit among threads, without the event loop: each caller queues its arrival and
        waits for the leader's lock; the one that gets it writes every arrival queued by then
        in one transaction (:meth:`write`) and hands each its outcome; a caller whose arrival
        was written meanwhile returns at once. A failed group is written again one arrival at
        a time (one bad arrival fails alone). The chain's append lock of the event loop is not
        held: SQLite's write lock, taken first in every chain transaction of every connection,
        is what keeps the chain from forking; this connection waits for it
        (:data:`BUSY_TIMEOUT_S`) in this thread."""
        slot = _Slot(item)
        with self._pending_lock:
            self._pending.append(slot)
        with self._leader:
            if not slot.done:
                with self._pending_lock:
                    group = self._pending[:MAX_GROUP]
                    self._pending = self._pending[MAX_GROUP:]
                self._write_group(group)
        if slot.error is not None:
            raise slot.error
        assert slot.stored is not None
        return slot.stored, slot.changed

    def _write_group(self, group: list[_Slot]) -> None:
        try:
            if len(group) > 1:
                try:
                    written = self.write([s.item for s in group], alone=False)
                except Exception:
                    pass  # written again one by one below
                else:
                    self.groups += 1
                    for slot, stored in zip(group, written.stored, strict=True):
                        slot.stored, slot.changed = stored, written.studies_changed
                        slot.done = True
                    return
            for slot in group:
                try:
                    written = self.write([slot.item], alone=True)
                    slot.stored, slot.changed = written.stored[0], written.studies_changed
                except Exception as exc:
                    slot.error = exc
                slot.done = True
        finally:
            for slot in group:  # never leave a caller without an outcome
                if not slot.done:
                    slot.error = RuntimeError("the group's writer stopped")
                    slot.done = True

    def write(self, items: list[_Arrival], *, alone: bool) -> Written:
        """Insert the rows and events of ``items``, rename their files into place, fsync the
        directories, commit. On failure every renamed file is put back into ``incoming/`` and
        the transaction rolled back. ``alone``: a study-link refusal is recorded (its own
        transaction) and raised as :class:`DicomStudyMismatch`; in a batch it raises
        :class:`WriteAlone` instead."""
        moves: list[tuple[Path, Path]] = []
        refused: tuple[str, _Arrival] | None = None
        with self._guard:
            try:
                with self._engine.begin() as connection:
                    chain = SyncAuditTx.begin(connection)
                    stored: list[Stored] = []
                    changed = False
                    for item in items:
                        outcome = self._insert(connection, chain, item, moves, alone=alone)
                        if isinstance(outcome, str):  # the study refused it (alone)
                            refused = (outcome, item)
                            raise _Refused()
                        result, study_changed = outcome
                        stored.append(result)
                        changed = changed or study_changed
                    chain.flush()
                    self._sync(moves)
            except BaseException:
                for target, incoming in reversed(moves):
                    try:
                        os.replace(target, incoming)
                    except OSError:
                        target.unlink(missing_ok=True)
                if refused is None:
                    if alone:  # nothing else will take it
                        items[0].incoming.unlink(missing_ok=True)
                    raise
            if refused is not None:
                study_id, item = refused
                item.incoming.unlink(missing_ok=True)
                self._record_refusal(study_id, item)
                raise DicomStudyMismatch("The study belongs to another visit.")
        for item in items:
            item.incoming.unlink(missing_ok=True)  # a duplicate's (the others were renamed)
        return Written(stored, changed)

    def _insert(
        self,
        connection: Any,
        chain: SyncAuditTx,
        item: _Arrival,
        moves: list[tuple[Path, Path]],
        *,
        alone: bool,
    ) -> tuple[Stored, bool] | str:
        from .store import Stored

        parsed, dest, actor = item.parsed, item.dest, item.actor
        found = connection.execute(
            _FIND,
            {
                "sop_instance_uid": parsed.sop_instance_uid,
                "institution_id": dest.institution_id,
                "study_uid": parsed.study_uid,
            },
        ).first()
        visit_id, patient_id = dest.visit_id, dest.patient_id
        if dest.source == "cstore" and visit_id is None:
            visit_id, patient_id = _link_from_modality(
                connection, dest.institution_id, parsed, by_patient=found is None
            )
        changed = False
        if found is None:
            study_id = new_id()
            connection.execute(
                _INSERT_STUDY,
                {
                    "id": study_id,
                    **study_fields(parsed, dest, actor, patient_id=patient_id, visit_id=visit_id),
                    "deidentified": False,
                    "created_at": utc_now(),
                },
            )
            chain.record(
                "imaging.study_created", **study_created_event(dest, actor, study_id, visit_id)
            )
            changed = True
        else:
            study_id, study_visit = found[0], found[1]
            if found[2] or (visit_id is not None and study_visit not in (None, visit_id)):
                if not alone:
                    raise WriteAlone()
                return str(study_id)  # one study, one visit: not extended from here
            if study_visit is None and visit_id is not None:
                connection.execute(
                    _LINK_STUDY,
                    {"study_id": study_id, "new_visit_id": visit_id, "new_patient_id": patient_id},
                )
                changed = True
            if found[3] is not None:  # the same instance sent again: keep what we hold
                return (
                    Stored(
                        study_id=study_id,
                        instance_id=found[3],
                        study_uid=parsed.study_uid,
                        series_uid=found[4],
                        sop_instance_uid=parsed.sop_instance_uid,
                        sop_class_uid=found[5],
                        duplicate=True,
                    ),
                    changed,
                )
        instance_id = new_id()  # its file is named by it
        connection.execute(
            _INSERT_INSTANCE,
            {
                "id": instance_id,
                "study_id": study_id,
                **instance_fields(parsed, item.size),
                "created_at": utc_now(),
                "source_instance_id": None,
            },
        )
        target = self._studies / study_id / f"{instance_id}.dcm"
        target.parent.mkdir(exist_ok=True)
        os.replace(item.incoming, target)
        moves.append((target, item.incoming))
        chain.record(
            "imaging.store", **store_event(dest, actor, study_id, instance_id, parsed, item.size)
        )
        stored = Stored(
            study_id=study_id,
            instance_id=instance_id,
            study_uid=parsed.study_uid,
            series_uid=parsed.series_uid,
            sop_instance_uid=parsed.sop_instance_uid,
            sop_class_uid=parsed.sop_class_uid,
            duplicate=False,
        )
        return stored, changed

    def _sync(self, moves: list[tuple[Path, Path]]) -> None:
        """fsync each directory that gained an entry, and ``studies/`` when one of them is not
        known to be in it on disk: a rename is durable only once its directory is."""
        directories = {target.parent for target, _ in moves}
        if not directories:
            return
        new = directories - self._durable
        for directory in sorted(directories | ({self._studies} if new else set())):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._durable |= new

    def _record_refusal(self, study_id: str, item: _Arrival) -> None:
        """The study-link refusal, in its own transaction (the arrival's was rolled back)."""
        with self._engine.begin() as connection:
            chain = SyncAuditTx.begin(connection)
            chain.record(
                "imaging.store",
                actor=item.actor,
                object_type="imaging_study",
                object_id=study_id,
                result=AuditResult.REFUSED,
                details={"code": DicomStudyMismatch.code},
            )
            chain.flush()


class _Refused(Exception):
    """Rolls the transaction back before a refusal is recorded."""


def _link_from_modality(
    connection: Any, institution_id: str, parsed: Any, *, by_patient: bool
) -> tuple[str | None, str | None]:
    """A modality's study: the visit its Accession Number names, or (``by_patient``) the patient
    its Patient ID names, within the sending institution; else nothing (as
    :func:`consult.imaging.store._link_from_modality`)."""
    accession = parsed.accession_number.strip()
    if accession and accession.isalnum():
        visit = connection.execute(_VISIT, {"visit_id": accession}).first()
        if visit is not None and visit[0] == institution_id:
            return accession, visit[1]
    patient_id = parsed.patient_id.strip()
    if by_patient and patient_id and patient_id.isalnum():
        found = connection.execute(_PATIENT, {"patient_id": patient_id}).first()
        if found is not None:
            return None, str(found[0])
    return None, None
