"""The request (R10, R12, R15, R16): the draft a verified physician fills in, and its moves up to
and after the invited side's work: submit, return, approve and send, decline, cancel, decide."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations.errors import (
    DeclineReasonRequired,
    ExamRequired,
    InviterNotQualified,
    NoAgreement,
    NoConsultCentre,
)
from consult.consultations.exams import exam_count, is_diagnosis
from consult.consultations.loading import (
    TEXT_CONTEXTS,
    centre_of,
    has_agreement,
    load_consultation,
    move,
    parties_of,
    refuse,
)
from consult.consultations.machines import (
    CONSULTATION_MACHINE,
    INVITATION_MACHINE,
    ConsultationEvent,
    InvitationEvent,
)
from consult.consultations.models import Consultation, ConsultationState, InvitationState
from consult.consultations.queries import get_consultation
from consult.consultations.views import ConsultationView, RequestFields
from consult.db import Database
from consult.errors import (
    DepartmentNotFound,
    InstitutionNotFound,
    InvalidInput,
    InvalidTransition,
    PatientNotFound,
    PermissionDenied,
)
from consult.events import StateChanged, publish
from consult.models import Department, Institution, Patient, Practitioner, User, VerificationStatus
from consult.patients import may_view
from consult.sqltypes import new_id, utc_now


def _check_fields(fields: RequestFields) -> None:
    for name in ("reason", "purpose", "specialty", "summary", "description"):
        if not getattr(fields, name).strip():
            raise InvalidInput(f"{name} is required (R10).")
    if (
        fields.proposed_start is not None
        and fields.proposed_end is not None
        and fields.proposed_end <= fields.proposed_start
    ):
        raise InvalidInput("The proposed end must come after its start.")


async def _requester_practitioner(tx: AuditTx, actor: Actor, action: str) -> Practitioner:
    row = await tx.session.get(Practitioner, actor.user_id)
    if row is None or row.verification != VerificationStatus.VERIFIED.value:
        raise tx.refuse(
            InviterNotQualified(),
            actor=actor,
            action=action,
            object_type="practitioner",
            object_id=actor.user_id,
        )
    return row


async def _apply_fields(
    tx: AuditTx, actor: Actor, row: Consultation, fields: RequestFields, action: str
) -> None:
    cipher = tx.db.cipher if tx.db is not None else None
    assert cipher is not None
    patient = await tx.session.get(Patient, fields.patient_id)
    if patient is None:
        raise PatientNotFound()
    creator = await tx.session.get(User, patient.created_by) if patient.created_by else None
    same_institution = creator is not None and creator.institution_id == actor.institution_id
    if not same_institution and not await may_view(tx.session, actor, patient):
        raise refuse(
            tx, actor, PermissionDenied("Not a patient of your institution."), action, row.id or ""
        )
    if await tx.session.get(Institution, fields.target_institution_id) is None:
        raise InstitutionNotFound()
    if fields.target_department_id is not None:
        department = await tx.session.get(Department, fields.target_department_id)
        if department is None or department.institution_id != fields.target_institution_id:
            raise DepartmentNotFound()
    if not await has_agreement(tx, row.institution_id, fields.target_institution_id):
        raise refuse(
            tx, actor, NoAgreement(), action, row.id or "", target=fields.target_institution_id
        )
    row.kind = fields.kind.value
    row.patient_id = fields.patient_id
    row.patient_account_id = fields.patient_account_id or patient.user_id
    row.target_institution_id = fields.target_institution_id
    row.target_department_id = fields.target_department_id
    row.reason = fields.reason.strip()
    row.purpose = fields.purpose.strip()
    row.specialty = fields.specialty.strip()
    row.min_title = fields.min_title.value
    row.urgency = fields.urgency.value
    row.description_enc = cipher.encrypt(fields.description, TEXT_CONTEXTS["description"])
    row.history_enc = cipher.encrypt(fields.history, TEXT_CONTEXTS["history"])
    row.summary_enc = cipher.encrypt(fields.summary, TEXT_CONTEXTS["summary"])
    row.proposed_start = fields.proposed_start
    row.proposed_end = fields.proposed_end


async def create_consultation(
    db: Database, actor: Actor, fields: RequestFields
) -> ConsultationView:
    """A draft request by a verified physician of the inviter's institution (R10, R12, R15)."""
    await authorize(db, actor, "consultation.create", object_type="consultation")
    _check_fields(fields)
    async with audited(db) as tx:
        practitioner = await _requester_practitioner(tx, actor, "consultation.create")
        row = Consultation(
            status=ConsultationState.DRAFT.value,
            institution_id=practitioner.institution_id,
            department_id=practitioner.department_id,
            requested_by=actor.user_id,
            created_at=utc_now(),
        )
        row.id = new_id()
        await _apply_fields(tx, actor, row, fields, "consultation.create")
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "consultation.create",
            actor=actor,
            object_type="consultation",
            object_id=row.id,
            details={"kind": row.kind, "target": row.target_institution_id},
        )
        publish(
            tx,
            StateChanged(
                "consultation",
                row.id,
                "",
                row.status,
                "create",
                actor.user_id,
                (("requester", row.requested_by),),
            ),
        )
        consultation_id = row.id
    return await get_consultation(db, actor, consultation_id, audit=False)


async def update_consultation(
    db: Database, actor: Actor, consultation_id: str, fields: RequestFields
) -> ConsultationView:
    """Change a draft (a request the centre returned is a draft again)."""
    await authorize(db, actor, "consultation.update", object_type="consultation")
    _check_fields(fields)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, "consultation.update", frozenset({"requester"})
        )
        if loaded.row.status != ConsultationState.DRAFT.value:
            raise refuse(
                tx,
                actor,
                InvalidTransition("Only a draft request can be changed."),
                "consultation.update",
                consultation_id,
            )
        await _apply_fields(tx, actor, loaded.row, fields, "consultation.update")
        loaded.row.updated_at = utc_now()
        await tx.record(
            "consultation.update",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
        )
    return await get_consultation(db, actor, consultation_id, audit=False)


# --- Transitions of the request -----------------------------------------------------------------


async def _transition(
    db: Database,
    actor: Actor,
    consultation_id: str,
    event: ConsultationEvent,
    needs: frozenset[str],
    details: Mapping[str, Any] | None = None,
) -> None:
    action = CONSULTATION_MACHINE.action(event)
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(tx, actor, consultation_id, action, needs)
        await move(tx, actor, loaded, event, details)


async def submit(db: Database, actor: Actor, consultation_id: str) -> None:
    """The requester hands the draft to its consult centre (R16); a remote diagnosis request
    carries at least one exam (R14, R19: ``exam_required``)."""
    action = CONSULTATION_MACHINE.action(ConsultationEvent.SUBMIT)
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"requester"})
        )
        if (
            is_diagnosis(loaded.row.kind)
            and loaded.row.status == ConsultationState.DRAFT.value
            and not await exam_count(tx.session, consultation_id)
        ):
            raise refuse(tx, actor, ExamRequired(), action, consultation_id)
        await move(tx, actor, loaded, ConsultationEvent.SUBMIT)


async def return_to_requester(
    db: Database, actor: Actor, consultation_id: str, reason: str
) -> None:
    """The inviter's centre sends the request back as a draft, with its reason."""
    if not reason.strip():
        raise InvalidInput("A return needs its reason.")
    action = "consultation.return"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"inviter_centre"})
        )
        loaded.row.return_reason = reason.strip()
        await move(tx, actor, loaded, ConsultationEvent.RETURN)


async def approve(db: Database, actor: Actor, consultation_id: str) -> None:
    """The inviter's centre approves; the request is sent to the invited institution (R15:
    agreement and the other side's centre checked again at sending)."""
    action = "consultation.approve"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"inviter_centre"})
        )
        row = loaded.row
        await move(tx, actor, loaded, ConsultationEvent.APPROVE)
        if not await has_agreement(tx, row.institution_id, row.target_institution_id):
            raise refuse(tx, actor, NoAgreement(), "consultation.send", row.id)
        if await centre_of(tx.session, row.target_institution_id) is None:
            raise refuse(tx, actor, NoConsultCentre(), "consultation.send", row.id)
        await move(tx, actor, loaded, ConsultationEvent.SEND)


async def decline_request(db: Database, actor: Actor, consultation_id: str, reason: str) -> None:
    """The invited institution's centre declines the whole request, with its reason (R11)."""
    if not reason.strip():
        raise DeclineReasonRequired()
    action = "consultation.decline"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"invitee_centre"})
        )
        loaded.row.return_reason = reason.strip()
        await move(tx, actor, loaded, ConsultationEvent.DECLINE, {"reason": reason.strip()[:200]})


async def cancel(db: Database, actor: Actor, consultation_id: str) -> None:
    """The requester (or its centre) withdraws the request; open invitations are withdrawn."""
    action = "consultation.cancel"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"requester", "inviter_centre"})
        )
        await move(tx, actor, loaded, ConsultationEvent.CANCEL)
        for invitation in loaded.invitations:
            if invitation.status in {InvitationState.INVITED.value, InvitationState.ACCEPTED.value}:
                await INVITATION_MACHINE.set_state(
                    tx, actor, invitation, InvitationEvent.WITHDRAW, parties=parties_of(loaded)
                )


async def decide(db: Database, actor: Actor, consultation_id: str, decision: str) -> None:
    """The inviter records its decision on diagnosis and treatment (R13); the record is archived."""
    if not decision.strip():
        raise InvalidInput("The decision is required.")
    action = "consultation.decide"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"requester", "inviter"})
        )
        assert tx.db is not None
        loaded.row.decision_enc = tx.db.cipher.encrypt(decision.strip(), TEXT_CONTEXTS["decision"])
        await move(tx, actor, loaded, ConsultationEvent.DECIDE)
        # the inviter's part of the joint liability of a read (R14), named in the signed export
        loaded.row.decided_by = actor.user_id
        loaded.row.decided_at = utc_now()
