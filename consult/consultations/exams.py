"""Exams of a remote diagnosis request (R14, R19): the inviter attaches a study of its imaging
store (CT, MR, ultrasound, a pathology slide stored as DICOM, an ECG waveform) through the
attachment model; when the request is sent the study leaves as a de-identified copy for the
invited institution (R37), which its invited experts open in the viewer. Every listing, share
and opening is audited (R24).

An exam attachment names the study by our row id (``study_id``), holds no bytes, and gets
``copy_study_id`` once shared. Which studies may be attached: originals of the requesting
institution, of the request's patient. Who opens what: the requesting side's doctors the
original, the invited experts (invited or accepted) the copy; :mod:`consult.imaging.access`
applies the same relationship to every DICOMweb retrieval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select

from consult.access import INVITEE_SIDES, INVITER_SIDES
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.errors import ExamNotAttachable, ExamNotFound
from consult.consultations.loading import load_consultation, refuse
from consult.consultations.machines import CONSULTATION_MACHINE
from consult.consultations.models import (
    Consultation,
    ConsultationAttachment,
    ConsultationInvitation,
    ConsultationKind,
    ConsultationState,
    InvitationState,
)
from consult.consultations.views import (
    AttachmentView,
    ExamChoice,
    ExamLink,
    ExamView,
    attachment_view,
)
from consult.crypto import sm3_hex
from consult.db import Database
from consult.errors import PermissionDenied
from consult.imaging.models import ImagingInstance, ImagingStudy
from consult.sqltypes import utc_now

if TYPE_CHECKING:
    from consult.imaging.store import ImagingStore

log = logging.getLogger(__name__)

EXAM_CONTENT_TYPE: Final = "application/dicom"
DIAGNOSIS_KINDS: Final = frozenset(
    {
        ConsultationKind.IMAGING,
        ConsultationKind.ECG,
        ConsultationKind.PATHOLOGY,
        ConsultationKind.ULTRASOUND,
    }
)
"""The remote diagnosis kinds (R14, R19): each needs an exam attached before it is submitted."""
_ATTACHERS: Final = INVITER_SIDES - {"inviter_centre"}
_SHAREABLE: Final = frozenset(
    {
        ConsultationState.SENT,
        ConsultationState.ACCEPTED,
        ConsultationState.IN_SESSION,
        ConsultationState.REPORTED,
    }
)


def is_diagnosis(kind: str) -> bool:
    """Whether ``kind`` is a remote diagnosis (a read of an exam) rather than a consultation."""
    return kind in {k.value for k in DIAGNOSIS_KINDS}


async def _instances(session: Any, study_id: str) -> list[ImagingInstance]:
    return list(
        (
            await session.scalars(
                select(ImagingInstance)
                .where(ImagingInstance.study_id == study_id)
                .order_by(ImagingInstance.series_uid, ImagingInstance.instance_number)
            )
        ).all()
    )


def _modalities(instances: list[ImagingInstance]) -> list[str]:
    return sorted({i.modality for i in instances if i.modality})


async def exam_view(session: Any, row: ConsultationAttachment) -> ExamView | None:
    """What an exam attachment holds (modalities, instances), without any identifier."""
    if row.study_id is None:
        return None
    instances = await _instances(session, row.study_id)
    modalities = _modalities(instances)
    return ExamView(
        modalities=modalities,
        instances=len(instances),
        ecg="ECG" in modalities,
        shared=row.copy_study_id is not None,
    )


async def exam_count(session: Any, consultation_id: str) -> int:
    """How many exams the request carries."""
    rows = await session.scalars(
        select(ConsultationAttachment.id).where(
            ConsultationAttachment.consultation_id == consultation_id,
            ConsultationAttachment.study_id.is_not(None),
        )
    )
    return len(rows.all())


async def exam_choices(db: Database, actor: Actor, consultation_id: str) -> list[ExamChoice]:
    """The studies the requester may attach: originals its institution holds for the request's
    patient, newest first (the listing is audited)."""
    await authorize(db, actor, "consultation.attach", object_type="consultation")
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, "consultation.list_exams", _ATTACHERS, lock=False
        )
        row = loaded.row
        studies = (
            await tx.session.scalars(
                select(ImagingStudy)
                .where(
                    ImagingStudy.institution_id == row.institution_id,
                    ImagingStudy.patient_id == row.patient_id,
                    ImagingStudy.deidentified.is_(False),
                )
                .order_by(ImagingStudy.created_at.desc())
                .limit(100)
            )
        ).all()
        choices = []
        for study in studies:
            instances = await _instances(tx.session, study.id)
            modalities = _modalities(instances)
            choices.append(
                ExamChoice(
                    study_uid=study.study_uid,
                    modalities=modalities,
                    instances=len(instances),
                    ecg="ECG" in modalities,
                    created_at=study.created_at,
                )
            )
        await tx.record(
            "consultation.list_exams",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={"count": len(choices)},
        )
    return choices


async def attach_exam(
    db: Database,
    store: ImagingStore | None,
    actor: Actor,
    consultation_id: str,
    study_uid: str,
) -> AttachmentView:
    """Attach a stored study (by its Study Instance UID) to an open request (R14, R19): only an
    original of the requesting institution, of the request's patient. A request already sent
    shares it with the invited institution at once."""
    action = "consultation.attach"
    await authorize(db, actor, action, object_type="consultation")
    async with audited(db) as tx:
        loaded = await load_consultation(tx, actor, consultation_id, action, _ATTACHERS)
        row = loaded.row
        if row.closed_at is not None:
            raise refuse(tx, actor, CONSULTATION_MACHINE.closed_error(), action, consultation_id)
        study = await tx.session.scalar(
            select(ImagingStudy).where(
                ImagingStudy.study_uid == study_uid,
                ImagingStudy.institution_id == row.institution_id,
            )
        )
        if study is None or study.deidentified or study.patient_id != row.patient_id:
            raise refuse(tx, actor, ExamNotAttachable(), action, consultation_id)
        existing = await tx.session.scalar(
            select(ConsultationAttachment).where(
                ConsultationAttachment.consultation_id == consultation_id,
                ConsultationAttachment.study_id == study.id,
            )
        )
        if existing is not None:
            return attachment_view(existing, await exam_view(tx.session, existing))
        instances = await _instances(tx.session, study.id)
        if not instances:
            raise refuse(tx, actor, ExamNotAttachable(), action, consultation_id)
        modalities = _modalities(instances)
        attachment = ConsultationAttachment(
            consultation_id=consultation_id,
            uploaded_by=actor.user_id,
            filename=f"{'/'.join(modalities) or 'DICOM'} x{len(instances)}",
            content_type=EXAM_CONTENT_TYPE,
            size=sum(i.size for i in instances),
            # Which instances: SM3 over their SOP Instance UIDs (the performing side can show
            # which exam was read; the invited side never sees the original UIDs).
            sm3=sm3_hex("\n".join(sorted(i.sop_instance_uid for i in instances)).encode()),
            data_enc=b"",
            study_id=study.id,
            created_at=utc_now(),
        )
        tx.session.add(attachment)
        await tx.session.flush()
        await tx.record(
            action,
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={
                "attachment_id": attachment.id,
                "study_id": study.id,
                "instances": len(instances),
                "exam": True,
            },
        )
        attachment_id = attachment.id
        sent = ConsultationState(row.status) in _SHAREABLE
    if sent and store is not None:
        await share_exams(db, store, actor, consultation_id)
    async with db.session() as session:
        saved = await session.get(ConsultationAttachment, attachment_id)
        assert saved is not None
        return attachment_view(saved, await exam_view(session, saved))


async def share_exams(db: Database, store: ImagingStore, actor: Actor, consultation_id: str) -> int:
    """Make the de-identified copy of each exam not shared yet for the invited institution
    (R37), once the request is sent; the number of copies made. Idempotent."""
    async with db.session() as session:
        row = await session.get(Consultation, consultation_id)
        if row is None or ConsultationState(row.status) not in _SHAREABLE:
            return 0
        target = row.target_institution_id
        pending = (
            await session.scalars(
                select(ConsultationAttachment).where(
                    ConsultationAttachment.consultation_id == consultation_id,
                    ConsultationAttachment.study_id.is_not(None),
                    ConsultationAttachment.copy_study_id.is_(None),
                )
            )
        ).all()
        todo = [(a.id, a.study_id) for a in pending]
    if not todo:
        return 0
    from consult.imaging.share import copy_for_institution  # pydicom: imported on first use

    made = 0
    for attachment_id, study_id in todo:
        assert study_id is not None
        copy = await copy_for_institution(store, actor, study_id, target)
        async with audited(db) as tx:
            attachment = await tx.session.get(
                ConsultationAttachment, attachment_id, with_for_update=True
            )
            assert attachment is not None
            if attachment.copy_study_id is not None:
                # shared meanwhile by another request; the spare copy stays unreferenced
                log.warning(
                    "exam shared twice", extra={"attachment_id": attachment_id, "copy": copy.id}
                )
                continue
            attachment.copy_study_id = copy.id
            await tx.record(
                "consultation.share_exam",
                actor=actor,
                object_type="consultation",
                object_id=consultation_id,
                details={
                    "attachment_id": attachment_id,
                    "study_id": study_id,
                    "copy_id": copy.id,
                    "institution_id": target,
                },
            )
            made += 1
    return made


async def open_exam(
    db: Database,
    store: ImagingStore | None,
    actor: Actor,
    consultation_id: str,
    attachment_id: str,
) -> ExamLink:
    """The study the caller opens in the viewer for an exam attachment (the opening is
    audited, R24): the original for the requesting side's doctors, the de-identified copy for an
    invited expert (made now if the share at sending did not happen)."""
    action = "consultation.view_exam"
    await authorize(db, actor, "consultation.view", object_type="consultation")
    for attempt in range(2):
        async with audited(db) as tx:
            loaded = await load_consultation(
                tx, actor, consultation_id, action, INVITER_SIDES | INVITEE_SIDES, lock=False
            )
            attachment = await tx.session.get(ConsultationAttachment, attachment_id)
            if (
                attachment is None
                or attachment.consultation_id != consultation_id
                or attachment.study_id is None
            ):
                raise ExamNotFound()
            if loaded.sides & _ATTACHERS:
                study_id: str | None = attachment.study_id
            elif "expert" in loaded.sides and await _invited(
                tx.session, consultation_id, actor.user_id
            ):
                study_id = attachment.copy_study_id
            else:
                raise refuse(
                    tx,
                    actor,
                    PermissionDenied("Only the requesting doctors and the invited experts."),
                    action,
                    consultation_id,
                )
            if study_id is not None:
                study = await tx.session.get(ImagingStudy, study_id)
                assert study is not None
                view = await exam_view(tx.session, attachment)
                assert view is not None
                await tx.record(
                    action,
                    actor=actor,
                    object_type="consultation",
                    object_id=consultation_id,
                    details={"attachment_id": attachment_id, "study_id": study_id},
                )
                return ExamLink(
                    attachment_id=attachment_id,
                    study_uid=study.study_uid,
                    ecg=view.ecg,
                    viewer_url=f"/viewer?study={study.study_uid}",
                )
        if attempt == 0 and store is not None:
            await share_exams(db, store, actor, consultation_id)
    raise ExamNotFound("The exam has not been shared with your institution yet.")


async def _invited(session: Any, consultation_id: str, user_id: str | None) -> bool:
    found = await session.scalar(
        select(ConsultationInvitation.id).where(
            ConsultationInvitation.consultation_id == consultation_id,
            ConsultationInvitation.expert_id == user_id,
            ConsultationInvitation.status.in_(
                [InvitationState.INVITED.value, InvitationState.ACCEPTED.value]
            ),
        )
    )
    return found is not None


__all__ = [
    "DIAGNOSIS_KINDS",
    "attach_exam",
    "exam_choices",
    "exam_count",
    "exam_view",
    "is_diagnosis",
    "open_exam",
    "share_exams",
]
