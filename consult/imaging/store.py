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
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import append, audited
from consult.db import Database
from consult.models import AuditResult, Patient, Visit

from .errors import DicomRejected, DicomStudyMismatch, StudyNotFound
from .models import ImagingInstance, ImagingStudy
from .retrieval_audit import RetrievalAudit

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .parse import ParsedInstance
    from .query import StudyRows

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_INSTANCE_BYTES: Final = 512 * 1024 * 1024


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
    ) -> None:
        self.db = db
        self.root = Path(root)
        self.max_instance_bytes = max_instance_bytes
        self._executor = executor
        self.incoming = self.root / "incoming"
        self.studies = self.root / "studies"
        self.retrievals = RetrievalAudit(db)
        """Batches the ``imaging.retrieve`` audit events (see :mod:`.retrieval_audit`)."""

    async def start(self) -> None:
        """Prepare the directories and start the retrieval audit writer."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.prepare)
        self.retrievals.start()

    async def close(self) -> None:
        """Write the queued retrieval events; idempotent."""
        await self.retrievals.close()

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

    async def ingest(self, incoming: Path, dest: Destination, actor: Actor | None) -> Stored:
        """Parse and check the file at ``incoming``, then store it; the file is consumed.

        Raises :class:`DicomRejected` (with its code; the refusal is audited) for anything the
        parser or the study's links refuse.
        """
        from .parse import parse_file  # pydicom: imported on first use, not at start-up

        try:
            parsed = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: parse_file(incoming, max_bytes=self.max_instance_bytes)
            )
            if dest.expected_study_uid and parsed.study_uid != dest.expected_study_uid:
                raise DicomStudyMismatch()
            return await self._insert(incoming, parsed, dest, actor)
        except DicomRejected as exc:
            await self._audit_refusal(exc, dest, actor)
            raise
        finally:
            # One unlink (usually of nothing: the file was renamed into place); it must run
            # even when the task is cancelled, so it is not deferred to the executor.
            incoming.unlink(missing_ok=True)  # noqa: ASYNC240

    async def _audit_refusal(
        self, exc: DicomRejected, dest: Destination, actor: Actor | None
    ) -> None:
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

    async def _insert(
        self, incoming: Path, parsed: ParsedInstance, dest: Destination, actor: Actor | None
    ) -> Stored:
        size = (await self.run(incoming.stat)).st_size
        placed: list[Path] = []
        try:
            return await self._insert_tx(incoming, parsed, dest, actor, size, placed)
        except BaseException:
            for path in placed:  # the row was rolled back: so goes its file
                path.unlink(missing_ok=True)
            raise

    async def _insert_tx(
        self,
        incoming: Path,
        parsed: ParsedInstance,
        dest: Destination,
        actor: Actor | None,
        size: int,
        placed: list[Path],
    ) -> Stored:
        async with audited(self.db) as tx:
            session = tx.session
            study = (
                await session.scalars(
                    select(ImagingStudy).where(
                        ImagingStudy.institution_id == dest.institution_id,
                        ImagingStudy.study_uid == parsed.study_uid,
                    )
                )
            ).first()
            visit_id, patient_id = dest.visit_id, dest.patient_id
            if dest.source == "cstore" and visit_id is None:
                visit_id, patient_id = await _link_from_modality(tx.session, dest, parsed)
            if study is None:
                study = ImagingStudy(
                    study_uid=parsed.study_uid,
                    institution_id=dest.institution_id,
                    patient_id=patient_id,
                    visit_id=visit_id,
                    source=dest.source,
                    created_by=actor.user_id if actor else None,
                )
                session.add(study)
                await session.flush()
                await tx.record(
                    "imaging.study_created",
                    actor=actor,
                    actor_role=None if actor else "modality",
                    source_ip=None if actor else dest.calling_ae,
                    object_type="imaging_study",
                    object_id=study.id,
                    details={"source": dest.source, "visit_id": visit_id},
                )
            elif study.deidentified or (
                visit_id is not None and study.visit_id not in (None, visit_id)
            ):
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
            existing = (
                await session.scalars(
                    select(ImagingInstance).where(
                        ImagingInstance.study_id == study.id,
                        ImagingInstance.sop_instance_uid == parsed.sop_instance_uid,
                    )
                )
            ).first()
            if existing is not None:  # the same instance sent again: keep what we hold
                return _stored(study, existing, duplicate=True)
            instance = _instance_row(study.id, parsed, size)
            session.add(instance)
            await session.flush()
            target = self.path_of(study.id, instance.id)
            await asyncio.get_running_loop().run_in_executor(
                self._executor, _place, incoming, target
            )
            placed.append(target)
            await tx.record(
                "imaging.store",
                actor=actor,
                actor_role=None if actor else "modality",
                source_ip=None if actor else dest.calling_ae,
                object_type="imaging_study",
                object_id=study.id,
                details={
                    "instance_id": instance.id,
                    "source": dest.source,
                    "sop_class_uid": parsed.sop_class_uid,
                    "size": size,
                },
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
    session: object, dest: Destination, parsed: ParsedInstance
) -> tuple[str | None, str | None]:
    """A modality's study: the visit its Accession Number names, or the patient its Patient ID
    names, within the sending institution; else nothing."""
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    accession = parsed.accession_number.strip()
    if accession and accession.isalnum():
        visit = await session.get(Visit, accession)
        if visit is not None and visit.institution_id == dest.institution_id:
            return visit.id, visit.patient_record_id
    patient_id = parsed.patient_id.strip()
    if patient_id and patient_id.isalnum():
        patient = await session.get(Patient, patient_id)
        if patient is not None:
            return None, patient.id
    return None, None


def _instance_row(study_id: str, parsed: ParsedInstance, size: int) -> ImagingInstance:
    """The row for one stored instance of ``study_id``, from what its parse found."""
    return ImagingInstance(
        study_id=study_id,
        series_uid=parsed.series_uid,
        sop_instance_uid=parsed.sop_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        transfer_syntax=parsed.transfer_syntax,
        modality=parsed.modality,
        series_number=parsed.series_number,
        instance_number=parsed.instance_number,
        frames=parsed.frames,
        rows=parsed.rows,
        columns=parsed.columns,
        size=size,
        burned_in=parsed.burned_in,
    )
