"""Online referral after a consultation (R17; seed 004: "为会诊后需要转诊的患者，提供线上转诊").

Once the report is issued, the requesting doctor refers the patient to the invited institution
(or one of its departments), with a reason; the issued report travels by reference. The invited
institution's consult centre accepts (with the time it expects the patient, and a note, both
optional) or declines with a reason (as R11 asks of a declined invitation); the requester may
cancel while the referral waits. One referral of a consultation waits at a time.

Every change is a move of :data:`~consult.consultations.machines.REFERRAL_MACHINE` (audited,
relayed after commit and pushed as ``consultation_changed`` with ``machine: referral`` to the
consultation's parties and the patient's account). The patient sees its referrals and their
answers on its waiting page (:func:`my_referrals`); the listing carries no patient name (R37).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import or_, select

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations.errors import (
    NotYourConsultation,
    ReferralDeclineReasonRequired,
    ReferralNotFound,
    ReferralOpen,
)
from consult.consultations.followup import department_names, institution_names, issued_report
from consult.consultations.loading import (
    Loaded,
    load_consultation,
    load_sides,
    names_of,
    parties_of,
    refuse,
)
from consult.consultations.machines import REFERRAL_MACHINE, ReferralEvent
from consult.consultations.models import Consultation, ConsultationReferral, ReferralState
from consult.consultations.views import MyReferralView, ReferralView
from consult.db import Database
from consult.errors import InvalidInput
from consult.events import StateChanged, publish
from consult.models import Department
from consult.sqltypes import utc_now

LIST_LIMIT: Final = 200
SEEING: Final = frozenset({"requester", "inviter", "inviter_centre", "invitee_centre"})
"""Who sees a consultation's referrals: the referring side and the invited centre."""


async def refer(
    db: Database,
    actor: Actor,
    consultation_id: str,
    reason: str,
    *,
    target_department_id: str | None = None,
) -> ReferralView:
    """The requesting doctor refers the patient to the invited institution (R17)."""
    action = "referral.create"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    reason = reason.strip()
    if not reason:
        raise InvalidInput("A referral needs its reason.")
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx,
            actor,
            consultation_id,
            action,
            frozenset({"requester"}),
            denied=NotYourConsultation(),
        )
        row = loaded.row
        report = await issued_report(tx, actor, row, action)
        if target_department_id is not None:
            department = await tx.session.get(Department, target_department_id)
            if department is None or department.institution_id != row.target_institution_id:
                raise InvalidInput("The department is not of the invited institution.")
        waiting = await tx.session.scalar(
            select(ConsultationReferral.id).where(
                ConsultationReferral.consultation_id == row.id,
                ConsultationReferral.status == ReferralState.REQUESTED.value,
            )
        )
        if waiting is not None:
            raise refuse(tx, actor, ReferralOpen(), action, row.id, referral_id=waiting)
        referral = ConsultationReferral(
            consultation_id=row.id,
            report_id=report.id,
            requested_by=actor.user_id,
            target_institution_id=row.target_institution_id,
            target_department_id=target_department_id,
            reason=reason,
            status=ReferralState.REQUESTED.value,
            created_at=utc_now(),
        )
        tx.session.add(referral)
        await tx.session.flush()
        await tx.record(
            action,
            actor=actor,
            object_type="referral",
            object_id=referral.id,
            details={
                "consultation_id": row.id,
                "report_id": report.id,
                "target_department_id": target_department_id,
            },
        )
        publish(
            tx,
            StateChanged(
                "referral",
                referral.id,
                "",
                ReferralState.REQUESTED.value,
                "request",
                actor.user_id,
                parties_of(loaded),
            ),
        )
        return (await _views(tx.session, [(referral, loaded)]))[0]


async def _load(
    tx: AuditTx, actor: Actor, referral_id: str, action: str, needs: frozenset[str]
) -> tuple[ConsultationReferral, Loaded]:
    referral = await tx.session.get(ConsultationReferral, referral_id, with_for_update=True)
    if referral is None:
        raise ReferralNotFound()
    loaded = await load_consultation(
        tx, actor, referral.consultation_id, action, needs, denied=NotYourConsultation()
    )
    return referral, loaded


async def accept_referral(
    db: Database,
    actor: Actor,
    referral_id: str,
    *,
    proposed_time: datetime | None = None,
    note: str = "",
) -> ReferralView:
    """The invited centre accepts, optionally with the time it expects the patient (R17)."""
    action = "referral.accept"
    await authorize(db, actor, action, object_type="referral", object_id=referral_id)
    async with audited(db) as tx:
        referral, loaded = await _load(
            tx, actor, referral_id, action, frozenset({"invitee_centre"})
        )
        await REFERRAL_MACHINE.set_state(
            tx,
            actor,
            referral,
            ReferralEvent.ACCEPT,
            {"proposed_time": proposed_time.isoformat() if proposed_time else None},
            parties=parties_of(loaded),
        )
        referral.proposed_time = proposed_time
        referral.answer_note = note.strip() or None
        referral.answered_by = actor.user_id
        referral.answered_at = utc_now()
        return (await _views(tx.session, [(referral, loaded)]))[0]


async def decline_referral(
    db: Database, actor: Actor, referral_id: str, reason: str
) -> ReferralView:
    """The invited centre declines with its reason; the referring doctor and the patient see it."""
    action = "referral.decline"
    await authorize(db, actor, action, object_type="referral", object_id=referral_id)
    async with audited(db) as tx:
        referral, loaded = await _load(
            tx, actor, referral_id, action, frozenset({"invitee_centre"})
        )
        if not reason.strip():
            raise tx.refuse(
                ReferralDeclineReasonRequired(),
                actor=actor,
                action=action,
                object_type="referral",
                object_id=referral_id,
            )
        await REFERRAL_MACHINE.set_state(
            tx,
            actor,
            referral,
            ReferralEvent.DECLINE,
            {"reason": reason.strip()[:200]},
            parties=parties_of(loaded),
        )
        referral.decline_reason = reason.strip()
        referral.answered_by = actor.user_id
        referral.answered_at = utc_now()
        return (await _views(tx.session, [(referral, loaded)]))[0]


async def cancel_referral(db: Database, actor: Actor, referral_id: str) -> ReferralView:
    """The requesting doctor withdraws a referral not yet answered."""
    action = "referral.cancel"
    await authorize(db, actor, action, object_type="referral", object_id=referral_id)
    async with audited(db) as tx:
        referral, loaded = await _load(tx, actor, referral_id, action, frozenset({"requester"}))
        await REFERRAL_MACHINE.set_state(
            tx, actor, referral, ReferralEvent.CANCEL, parties=parties_of(loaded)
        )
        return (await _views(tx.session, [(referral, loaded)]))[0]


# --- Reading --------------------------------------------------------------------------------------


async def list_referrals(
    db: Database, actor: Actor, *, consultation_id: str | None = None
) -> list[ReferralView]:
    """The caller's referrals, newest first: a doctor's own (and its department's), the
    referring centre's, and the invited centre's inbox (the ``requested`` ones to answer)."""
    await authorize(db, actor, "referral.list", object_type="referral")
    async with audited(db) as tx:
        query = (
            select(ConsultationReferral)
            .join(Consultation, Consultation.id == ConsultationReferral.consultation_id)
            .where(
                or_(
                    Consultation.institution_id == actor.institution_id,
                    Consultation.target_institution_id == actor.institution_id,
                )
            )
            .order_by(ConsultationReferral.created_at.desc(), ConsultationReferral.id)
            .limit(LIST_LIMIT)
        )
        if consultation_id is not None:
            query = query.where(ConsultationReferral.consultation_id == consultation_id)
        rows = (await tx.session.scalars(query)).all()
        loaded_by_id: dict[str, Loaded] = {}
        pairs = []
        for referral in rows:
            loaded = loaded_by_id.get(referral.consultation_id)
            if loaded is None:
                consultation = await tx.session.get(Consultation, referral.consultation_id)
                assert consultation is not None
                loaded = await load_sides(tx, actor, consultation)
                loaded_by_id[referral.consultation_id] = loaded
            if loaded.sides & SEEING:
                pairs.append((referral, loaded))
        return await _views(tx.session, pairs)


async def _views(
    session: Any, pairs: list[tuple[ConsultationReferral, Loaded]]
) -> list[ReferralView]:
    institutions = await institution_names(
        session,
        {r.target_institution_id for r, _ in pairs} | {c.row.institution_id for _, c in pairs},
    )
    departments = await department_names(
        session, {r.target_department_id for r, _ in pairs if r.target_department_id}
    )
    people = await names_of(session, sorted({r.requested_by for r, _ in pairs}))
    return [
        ReferralView(
            id=r.id,
            consultation_id=r.consultation_id,
            report_id=r.report_id,
            state=ReferralState(r.status),
            requested_by=r.requested_by,
            requester_name=people.get(r.requested_by, ""),
            institution_name=institutions.get(loaded.row.institution_id, ""),
            target_institution_id=r.target_institution_id,
            target_institution_name=institutions.get(r.target_institution_id, ""),
            target_department_id=r.target_department_id,
            target_department_name=departments.get(r.target_department_id)
            if r.target_department_id
            else None,
            reason=r.reason,
            proposed_time=r.proposed_time,
            answer_note=r.answer_note,
            decline_reason=r.decline_reason,
            answered_at=r.answered_at,
            created_at=r.created_at,
            sides=tuple(sorted(loaded.sides)),
        )
        for r, loaded in pairs
    ]


async def my_referrals(db: Database, actor: Actor) -> list[MyReferralView]:
    """The signed-in patient's referrals (``referral.mine``), newest first: where to, why, and
    the answer; another patient's never (R37)."""
    await authorize(db, actor, "referral.mine", object_type="referral")
    if actor.user_id is None:
        return []
    async with db.session() as session:
        rows = (
            await session.execute(
                select(ConsultationReferral, Consultation.institution_id)
                .join(Consultation, Consultation.id == ConsultationReferral.consultation_id)
                .where(Consultation.patient_account_id == actor.user_id)
                .order_by(ConsultationReferral.created_at.desc(), ConsultationReferral.id)
                .limit(LIST_LIMIT)
            )
        ).all()
        institutions = await institution_names(
            session,
            {r.target_institution_id for r, _ in rows} | {i for _, i in rows},
        )
        departments = await department_names(
            session, {r.target_department_id for r, _ in rows if r.target_department_id}
        )
    return [
        MyReferralView(
            id=r.id,
            consultation_id=r.consultation_id,
            state=ReferralState(r.status),
            institution_name=institutions.get(from_id, ""),
            target_institution_name=institutions.get(r.target_institution_id, ""),
            target_department_name=departments.get(r.target_department_id)
            if r.target_department_id
            else None,
            reason=r.reason,
            proposed_time=r.proposed_time,
            answer_note=r.answer_note,
            decline_reason=r.decline_reason,
            created_at=r.created_at,
            answered_at=r.answered_at,
        )
        for r, from_id in rows
    ]
