"""Who may read a study: the one check every imaging retrieval goes through (R24, R34, R37).

Today's rules, from the permission table and the relationships the visit model has:

- the permission table's ``imaging.read`` (patients, doctors, nurses, operators; never admin,
  auditor or regulator) is checked first;
- a study attached to a visit: the visit's doctor, the visit's patient (and the account whose
  patient record it is), nurses of the institution, operators of the visit's department;
- a modality's study nobody linked yet: nurses of the institution only (it has no visit,
  so no doctor and no department yet);
- a de-identified copy shared with another institution: the doctor it was shared with, and
  nurses of that institution. The original stays with its own institution;
- a room's join token (the viewer of a consult room has no session of its own): only the studies
  attached to that room's visit, and only as its participant may read them; in a consultation's
  room (MDT, R14, R37), the exams of that consultation: the original to the requesting side (the
  inviter, the patient's own account), the de-identified copy made for the invited institution to
  its experts in the room (invited or accepted), never the other side's;
- an exam attached to a remote diagnosis request (R14, R19): the original, doctors of the
  requesting side (the requester, doctors of its department); the de-identified copy made for
  the invited institution, the experts invited to that request (invited or accepted, R37).

Every decision is recorded: a refusal as a ``denied`` audit event, a retrieval as an ``ok`` one
(:func:`audit_retrieval`). When the access policy module replaces the participation checks, it
replaces :func:`related` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consult.actor import Actor
from consult.audit import append
from consult.authorization import authorize
from consult.consultations.models import (
    Consultation,
    ConsultationAttachment,
    ConsultationInvitation,
    InvitationState,
)
from consult.db import Database
from consult.decision_cache import PerDatabase
from consult.models import AuditResult, Patient, Room, RoomRole, Visit
from consult.permissions import Role, in_scope
from consult.sqltypes import utc_now

from .errors import StudyAccessDenied, StudyNotFound
from .models import ImagingInstance, ImagingStudy

READ: str = "imaging.read"


def related(
    actor: Actor,
    study: ImagingStudy,
    visit: Visit | None,
    patient: Patient | None,
    room_visit_id: str | None = None,
    *,
    consultation_reader: bool = False,
) -> bool:
    """Whether ``actor`` has a relationship to the study's patient or visit that lets it read.

    ``room_visit_id``: for a room's join token, the visit the room belongs to (None for a room
    of another subject). ``consultation_reader``: the study is an exam of a remote diagnosis
    request on the actor's side (:func:`_consultation_reader`)."""
    if actor.user_id is None:
        return False
    if actor.room_id is not None and (room_visit_id is None or study.visit_id != room_visit_id):
        # a room's join token (the shared viewer of a room): that room's visit's studies only
        return False
    if consultation_reader and actor.room_id is None and actor.role is Role.DOCTOR:
        return True
    if study.deidentified:
        if actor.role is Role.DOCTOR:
            return study.recipient_id == actor.user_id
        if actor.role is Role.NURSE:
            return actor.institution_id == study.institution_id
        return False
    if actor.role is Role.PATIENT:
        return (visit is not None and visit.patient_id == actor.user_id) or (
            patient is not None and patient.user_id == actor.user_id
        )
    if actor.role is Role.DOCTOR:
        return visit is not None and visit.doctor_id == actor.user_id
    if actor.role is Role.NURSE:
        return in_scope(actor, institution_id=study.institution_id, department_id=None)
    if actor.role is Role.OPERATOR:
        return visit is not None and in_scope(
            actor, institution_id=visit.institution_id, department_id=visit.department_id
        )
    return False


async def _consultation_reader(session: AsyncSession, actor: Actor, study: ImagingStudy) -> bool:
    """Whether the study is an exam of a remote diagnosis request that ``actor`` (a doctor, with
    its own session) reads: as the requester or a doctor of its department (the original), or
    as an expert invited to it, not withdrawn, declined or expired (the institution's copy)."""
    if actor.role is not Role.DOCTOR or actor.room_id is not None or actor.user_id is None:
        return False
    if study.deidentified:
        if study.recipient_id is not None:
            return False
        found = await session.scalar(
            select(ConsultationInvitation.id)
            .join(
                ConsultationAttachment,
                ConsultationAttachment.consultation_id == ConsultationInvitation.consultation_id,
            )
            .where(
                ConsultationAttachment.copy_study_id == study.id,
                ConsultationInvitation.expert_id == actor.user_id,
                ConsultationInvitation.institution_id == study.institution_id,
                ConsultationInvitation.status.in_(
                    [InvitationState.INVITED.value, InvitationState.ACCEPTED.value]
                ),
            )
            .limit(1)
        )
        return found is not None
    if actor.institution_id != study.institution_id:
        return False
    rows = (
        await session.execute(
            select(Consultation.requested_by, Consultation.department_id)
            .join(ConsultationAttachment, ConsultationAttachment.consultation_id == Consultation.id)
            .where(
                ConsultationAttachment.study_id == study.id,
                Consultation.institution_id == actor.institution_id,
            )
        )
    ).all()
    return any(
        requested_by == actor.user_id
        or (department_id is not None and department_id in actor.department_ids)
        for requested_by, department_id in rows
    )


async def _invited_expert(session: AsyncSession, consultation_id: str, actor: Actor) -> bool:
    found = await session.scalar(
        select(ConsultationInvitation.id)
        .where(
            ConsultationInvitation.consultation_id == consultation_id,
            ConsultationInvitation.expert_id == actor.user_id,
            ConsultationInvitation.institution_id == actor.institution_id,
            ConsultationInvitation.status.in_(
                [InvitationState.INVITED.value, InvitationState.ACCEPTED.value]
            ),
        )
        .limit(1)
    )
    return found is not None


async def _consultation_room_reader(
    session: AsyncSession, actor: Actor, consultation_id: str, study: ImagingStudy
) -> bool:
    """Whether a join token's actor of a consultation's room reads ``study``: an exam of that
    consultation, on the actor's side of it (R37: each institution its own holding)."""
    if actor.user_id is None:
        return False
    held_as = (
        ConsultationAttachment.copy_study_id
        if study.deidentified
        else ConsultationAttachment.study_id
    )
    attached = await session.scalar(
        select(ConsultationAttachment.id)
        .where(ConsultationAttachment.consultation_id == consultation_id, held_as == study.id)
        .limit(1)
    )
    if attached is None:
        return False
    if study.deidentified:  # the invited institution's copy: its experts in the room
        return (
            actor.room_role == RoomRole.INVITEE.value
            and actor.role is Role.DOCTOR
            and actor.institution_id == study.institution_id
            and await _invited_expert(session, consultation_id, actor)
        )
    if actor.room_role == RoomRole.INVITER.value:  # the requester, of the performing side
        return actor.role is Role.DOCTOR and actor.institution_id == study.institution_id
    if actor.room_role == RoomRole.PATIENT.value:  # the patient's own account: its own exam
        consultation = await session.get(Consultation, consultation_id)
        return (
            actor.role is Role.PATIENT
            and consultation is not None
            and consultation.patient_account_id == actor.user_id
        )
    return False


async def _may_read(session: AsyncSession, actor: Actor, study: ImagingStudy) -> bool:
    room_visit_id = None
    if actor.room_id is not None:
        room = await session.get(Room, actor.room_id)
        if room is None:
            return False
        if room.subject_type == "consultation":
            return await _consultation_room_reader(session, actor, room.subject_id, study)
        if room.subject_type == "visit":
            room_visit_id = room.subject_id
    visit = await session.get(Visit, study.visit_id) if study.visit_id else None
    patient = await session.get(Patient, study.patient_id) if study.patient_id else None
    reader = await _consultation_reader(session, actor, study)
    return related(actor, study, visit, patient, room_visit_id, consultation_reader=reader)


async def may_read_study(db: Database, actor: Actor, study: ImagingStudy, what: str) -> None:
    """Allow, or raise :class:`StudyAccessDenied` after recording the refusal (``denied``)."""
    await authorize(db, actor, READ, object_type="imaging_study", object_id=study.id)
    async with db.session() as session:
        allowed = await _may_read(session, actor, study)
    if not allowed:
        await _deny(db, actor, study.id, what)
        raise StudyAccessDenied()


async def _deny(db: Database, actor: Actor, study_id: str | None, what: str) -> None:
    await append(
        db,
        READ,
        actor=actor,
        object_type="imaging_study",
        object_id=study_id,
        result=AuditResult.DENIED,
        details={"code": StudyAccessDenied.code, "what": what},
    )


async def readable_study(db: Database, actor: Actor, study_uid: str, what: str) -> ImagingStudy:
    """The study with this Study Instance UID that ``actor`` may read.

    404 when no institution holds it; 403 (audited) when some do but none lets ``actor`` read.
    """
    await authorize(db, actor, READ, object_type="imaging_study")
    cache, key = _granted_of(db), (_who(actor), study_uid)
    known = cache.get(key)
    if known is not None:
        return known
    stamp = cache.stamp()  # before the rows are read (consult.decision_cache)
    async with db.session() as session:
        studies = (
            await session.scalars(select(ImagingStudy).where(ImagingStudy.study_uid == study_uid))
        ).all()
        for study in studies:
            if await _may_read(session, actor, study):
                cache.put(key, study, stamp)
                return study
    if not studies:
        raise StudyNotFound()
    await _deny(db, actor, studies[0].id, what)
    raise StudyAccessDenied()


async def readable_instance(
    db: Database,
    actor: Actor,
    study_uid: str,
    sop_instance_uid: str,
    what: str,
    *,
    series_uid: str | None = None,
) -> tuple[ImagingStudy, ImagingInstance | None]:
    """:func:`readable_study` and that study's instance with this SOP Instance UID (None when
    it holds none): a viewer's hot path.

    Instance rows never change once written, so they are kept (:func:`_instances_of`); a
    viewer scrolls through a series, so the first instance asked of a ``series_uid`` brings
    the whole series' rows in one statement."""
    study = await readable_study(db, actor, study_uid, what)
    cache, key = _instances_of(db), (study.id, sop_instance_uid)
    known = cache.get(key)
    if known is not None:
        return study, known
    stamp = cache.stamp()
    wanted = ImagingInstance.study_id == study.id
    if series_uid is not None:
        wanted &= (ImagingInstance.series_uid == series_uid) | (
            ImagingInstance.sop_instance_uid == sop_instance_uid
        )
    else:
        wanted &= ImagingInstance.sop_instance_uid == sop_instance_uid
    async with db.session() as session:
        rows = (await session.scalars(select(ImagingInstance).where(wanted))).all()
    found = None
    for row in rows:
        cache.put((study.id, row.sop_instance_uid), row, stamp)
        if row.sop_instance_uid == sop_instance_uid:
            found = row
    return study, found


INSTANCE_ROWS_TTL_S = 60.0
"""Instance rows are never updated nor deleted by this code; the bound is for another
process's change all the same (this process's changes empty the cache at once)."""

_granted_of: PerDatabase[tuple[Actor, str], ImagingStudy] = PerDatabase()
"""Reads recently granted: (who, Study Instance UID) to the study read. Forgotten when this
process writes anything a decision rests on (a share, an invitation, a visit, a room, an
account ...) and after two seconds whatever happens (``consult.decision_cache``). Only grants
are kept: a refusal is decided and audited every time."""

_instances_of: PerDatabase[tuple[str, str], ImagingInstance] = PerDatabase(
    ttl_s=INSTANCE_ROWS_TTL_S, max_items=50_000
)
"""Instance rows by (study row id, SOP Instance UID); an instance not held is not kept."""


def _who(actor: Actor) -> Actor:
    """The actor as a key: everything a decision may rest on, not the request's address."""
    return actor if actor.source_ip is None else replace(actor, source_ip=None)


async def room_upload_visit(db: Database, actor: Actor, visit_id: str) -> Visit:
    """The visit a room's join token may store into (STOW-RS from the room's viewer): only the
    room's own visit, only as its doctor; a refusal is audited (``imaging.store`` denied)."""
    async with db.session() as session:
        room = await session.get(Room, actor.room_id) if actor.room_id else None
        visit = await session.get(Visit, visit_id)
    if (
        room is None
        or visit is None
        or room.subject_type != "visit"
        or room.subject_id != visit_id
        or actor.room_role != RoomRole.DOCTOR.value
        or actor.role is not Role.DOCTOR
        or visit.doctor_id != actor.user_id
    ):
        await append(
            db,
            "imaging.store",
            actor=actor,
            object_type="visit",
            object_id=visit_id,
            result=AuditResult.DENIED,
            details={"code": StudyAccessDenied.code, "room": actor.room_id},
        )
        raise StudyAccessDenied("Only the doctor of this visit's room stores into it.")
    return visit


async def readable_among(
    db: Database, actor: Actor, studies: list[ImagingStudy]
) -> ImagingStudy | None:
    """The first of ``studies`` that ``actor`` may read, or None; nothing is audited (it is no
    retrieval: a review asks which of a study's copies a participant holds, and each retrieval
    that follows is checked and audited)."""
    async with db.session() as session:
        for study in studies:
            if await _may_read(session, actor, study):
                return study
    return None


async def readable_studies(db: Database, actor: Actor) -> list[ImagingStudy]:
    """Every study ``actor`` may read, newest first (for QIDO-RS without a study UID)."""
    await authorize(db, actor, READ, object_type="imaging_study")
    async with db.session() as session:
        studies = (
            await session.scalars(select(ImagingStudy).order_by(ImagingStudy.created_at.desc()))
        ).all()
        return [study for study in studies if await _may_read(session, actor, study)]


async def audit_retrieval(
    db: Database,
    actor: Actor,
    study: ImagingStudy | None,
    what: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record one retrieval (a query answer, metadata, an instance, frames, a rendering); return
    once it is committed to the chain: the caller sends the data only then (R24).

    A viewer asks for hundreds of frames a minute: the retrievals of concurrent requests share
    a transaction (:func:`consult.audit.append` is a group commit), so the chain's cost per
    retrieval falls as the load rises, and one request alone waits for one commit. A process
    that dies after answering has logged the view; one that dies while answering may have
    logged a view that never arrived (over-reported, never lost). The event is stamped with the
    moment of the request (kept monotonic along the chain); a chain that cannot keep up makes
    requests wait for room in its queue, none is dropped; queued events are written before the
    database closes. A batch the database refuses fails its requests (500, no data sent).
    """
    await append(
        db,
        "imaging.retrieve",
        actor=actor,
        object_type="imaging_study",
        object_id=study.id if study is not None else None,
        details={"what": what, **(details or {})},
        at=utc_now(),
    )
