"""Reading consultations: one as the caller's side sees it (the invitee side gets no patient
name, R37), the caller's worklist, and the patients a requester may name. Views are audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from consult.access import INVITEE_SIDES, INVITER_SIDES
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.exams import exam_view
from consult.consultations.loading import (
    TEXT_CONTEXTS,
    Loaded,
    load_consultation,
    load_sides,
    names_of,
)
from consult.consultations.models import (
    Consultation,
    ConsultationAttachment,
    ConsultationInvitation,
    ConsultationKind,
    ConsultationState,
    ReportState,
    Urgency,
)
from consult.consultations.reports import report_view, reports_of
from consult.consultations.views import (
    ConsultationView,
    PatientChoice,
    attachment_view,
    invitation_view,
)
from consult.db import Database
from consult.identifiers import age_on
from consult.models import Institution, Patient, Title, User
from consult.sqltypes import utc_now


async def get_consultation(
    db: Database, actor: Actor, consultation_id: str, *, audit: bool = True
) -> ConsultationView:
    """One consultation as the actor's side sees it (the view is audited, R24)."""
    await authorize(
        db, actor, "consultation.view", object_type="consultation", object_id=consultation_id
    )
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx,
            actor,
            consultation_id,
            "consultation.view",
            INVITER_SIDES | INVITEE_SIDES,
            lock=False,
        )
        view = await _view(tx.session, tx.db.cipher if tx.db else None, loaded)
        if audit:
            await tx.record(
                "consultation.view",
                actor=actor,
                object_type="consultation",
                object_id=consultation_id,
            )
    return view


async def _view(session: Any, cipher: Any, loaded: Loaded) -> ConsultationView:
    row = loaded.row
    inviter_side = bool(loaded.sides & INVITER_SIDES)
    patient = await session.get(Patient, row.patient_id)
    institutions = {
        i.id: i.name
        for i in (
            await session.scalars(
                select(Institution).where(
                    Institution.id.in_([row.institution_id, row.target_institution_id])
                )
            )
        ).all()
    }
    names = await names_of(
        session,
        [
            row.requested_by,
            *(i.expert_id for i in loaded.invitations),
            *([row.decided_by] if row.decided_by else []),
        ],
    )
    attachments = (
        await session.scalars(
            select(ConsultationAttachment)
            .where(ConsultationAttachment.consultation_id == row.id)
            .order_by(ConsultationAttachment.created_at)
        )
    ).all()
    reports = await reports_of(session, row.id)
    visible_reports = [
        r
        for r in reports
        if not (inviter_side and not loaded.sides & INVITEE_SIDES)
        or r.status in {ReportState.ISSUED.value, ReportState.SUPERSEDED.value}
    ]
    return ConsultationView(
        id=row.id,
        kind=ConsultationKind(row.kind),
        state=ConsultationState(row.status),
        institution_id=row.institution_id,
        institution_name=institutions.get(row.institution_id, ""),
        department_id=row.department_id,
        requested_by=row.requested_by,
        requester_name=names.get(row.requested_by, ""),
        target_institution_id=row.target_institution_id,
        target_institution_name=institutions.get(row.target_institution_id, ""),
        target_department_id=row.target_department_id,
        patient_id=row.patient_id if inviter_side else None,
        patient_name=patient.name if inviter_side and patient is not None else None,
        patient_age=age_on(patient.birth_date, utc_now().date()) if patient is not None else None,
        reason=row.reason,
        purpose=row.purpose,
        specialty=row.specialty,
        min_title=Title(row.min_title),
        urgency=Urgency(row.urgency),
        description=cipher.decrypt(row.description_enc, TEXT_CONTEXTS["description"]),
        history=cipher.decrypt(row.history_enc, TEXT_CONTEXTS["history"]),
        summary=cipher.decrypt(row.summary_enc, TEXT_CONTEXTS["summary"]),
        proposed_start=row.proposed_start,
        proposed_end=row.proposed_end,
        scheduled_at=row.scheduled_at,
        room_id=row.room_id,
        decision=cipher.decrypt(row.decision_enc, TEXT_CONTEXTS["decision"])
        if row.decision_enc
        else None,
        return_reason=row.return_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        sides=tuple(sorted(loaded.sides)),
        invitations=[invitation_view(i, names) for i in loaded.invitations],
        attachments=[attachment_view(a, await exam_view(session, a)) for a in attachments],
        reports=[await report_view(session, cipher, r) for r in visible_reports],
        decided_by=row.decided_by,
        decided_by_name=names.get(row.decided_by) if row.decided_by else None,
        decided_at=row.decided_at,
    )


async def list_consultations(
    db: Database, actor: Actor, *, limit: int = 200
) -> list[ConsultationView]:
    """The actor's worklist: a doctor's requests and invitations; a centre's requests to
    approve (its institution's) and to assign (sent to it). Newest first."""
    await authorize(db, actor, "consultation.list", object_type="consultation")
    async with audited(db) as tx:
        session = tx.session
        query = select(Consultation.id).order_by(Consultation.created_at.desc()).limit(limit)
        if actor.role.value == "doctor":
            invited = select(ConsultationInvitation.consultation_id).where(
                ConsultationInvitation.expert_id == actor.user_id
            )
            query = query.where(
                or_(
                    Consultation.requested_by == actor.user_id,
                    Consultation.department_id.in_(sorted(actor.department_ids))
                    & (Consultation.institution_id == actor.institution_id),
                    Consultation.id.in_(invited),
                )
            )
        else:
            query = query.where(
                or_(
                    Consultation.institution_id == actor.institution_id,
                    Consultation.target_institution_id == actor.institution_id,
                )
            )
        ids = (await session.scalars(query)).all()
        views = []
        for consultation_id in ids:
            row = await session.get(Consultation, consultation_id)
            assert row is not None
            loaded = await load_sides(tx, actor, row)
            if not loaded.sides:
                continue
            views.append(await _view(session, tx.db.cipher if tx.db else None, loaded))
    return views


async def requester_patients(db: Database, actor: Actor) -> list[PatientChoice]:
    """The patients registered by staff of the requester's institution (the request form's list;
    the listing is audited)."""
    await authorize(db, actor, "consultation.create", object_type="consultation")
    async with audited(db) as tx:
        staff = select(User.id).where(User.institution_id == actor.institution_id)
        rows = (
            await tx.session.scalars(
                select(Patient)
                .where(Patient.created_by.in_(staff))
                .order_by(Patient.created_at.desc())
                .limit(200)
            )
        ).all()
        await tx.record(
            "consultation.list_patients",
            actor=actor,
            object_type="patient",
            details={"count": len(rows)},
        )
        today = utc_now().date()
        return [PatientChoice(r.id, r.name, age_on(r.birth_date, today)) for r in rows]
