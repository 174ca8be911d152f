"""Remote consultation between institutions (issue 14, R10-R16): requests, invitations, the
opinion report and the inviter's decision.

Every change goes through one of the three machines of :mod:`consult.consultations.machines`
(checked, logged, audited, relayed after commit) inside :func:`consult.audit.audited`. Who may
act is the role table (:mod:`consult.permissions`) plus the sides of :func:`consult.access.
consultation_sides`: the requesting doctor and the doctors of its department, the consult
centres of both institutions (operators of the centre department), the invited experts.

Rules, each refused with a stable code and audited:

- R15 a request goes only to an institution the inviter's has a cooperation agreement with;
- R10 reason, purpose, proposed times, record summary, specialty and title wanted are required;
- R12 the requester is a verified physician; an expert has verified practice of 3+ years, the
  title asked or higher, and belongs to the invited institution;
- R11 a decline carries its reason; an invitation not answered by its deadline expires;
- R13, R24 the report is frozen at its first signature; a change is a new version and the old
  one stays; R27, R35 a signature needs the practitioner's signing PIN.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import or_, select

from consult.access import INVITEE_SIDES, INVITER_SIDES, consultation_sides
from consult.actor import Actor
from consult.audit import AuditTx, audited, authorize
from consult.consultations import room
from consult.consultations.errors import (
    AlreadyInvited,
    AlreadySignedReport,
    AttachmentNotFound,
    AttachmentRefused,
    ConsultationNotFound,
    DeclineReasonRequired,
    ExpertElsewhere,
    ExpertNotQualified,
    InvitationExpired,
    InvitationNotFound,
    InviterNotQualified,
    NoAgreement,
    NoConsultCentre,
    ReportNotFound,
    ReportSigned,
    ReportUnsigned,
    SigningUnavailable,
)
from consult.consultations.machines import (
    CONSULTATION_MACHINE,
    INVITATION_MACHINE,
    REPORT_MACHINE,
    ConsultationEvent,
    InvitationEvent,
    ReportEvent,
)
from consult.consultations.models import (
    Consultation,
    ConsultationAttachment,
    ConsultationInvitation,
    ConsultationKind,
    ConsultationState,
    ConsultCentre,
    CooperationAgreement,
    InvitationState,
    OpinionReport,
    ReportSignature,
    ReportState,
    SigningCredential,
    Urgency,
)
from consult.consultations.signing import SigningAuthority, canonical, export_document
from consult.crypto import sm3_hex
from consult.db import Database
from consult.errors import (
    ConsultError,
    DepartmentNotFound,
    InstitutionNotFound,
    InvalidInput,
    InvalidTransition,
    PatientNotFound,
    PermissionDenied,
)
from consult.events import StateChanged, publish
from consult.identifiers import age_on
from consult.models import (
    Department,
    Institution,
    Patient,
    Practitioner,
    Title,
    User,
    VerificationStatus,
)
from consult.patients import may_view
from consult.practitioners import verify_signing_pin
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

MIN_EXPERT_YEARS: Final = 3
"""R12: the invitee side has a physician with 3+ years of independent practice."""
TITLE_RANK: Final = {
    Title.RESIDENT: 0,
    Title.ATTENDING: 1,
    Title.ASSOCIATE_CHIEF: 2,
    Title.CHIEF: 3,
}
RESPOND_WITHIN: Final = {Urgency.ROUTINE: timedelta(hours=24), Urgency.URGENT: timedelta(hours=2)}
"""R11: how long an invited expert has to answer, by urgency (unless the centre says)."""
ATTACHMENT_MAX_BYTES: Final = 10 * 1024 * 1024
ATTACHMENT_TYPES: Final = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
UNSENT: Final = frozenset(
    {ConsultationState.DRAFT, ConsultationState.SUBMITTED, ConsultationState.APPROVED}
)
"""States in which the invited institution does not see the request yet."""
REPORT_FIELDS: Final = (
    "findings",
    "opinion",
    "treatment_plan",
    "medication_advice",
    "referral_advice",
)
"""The structured opinion report (R13, R16: diagnosis, plan, medication advice; R17 referral)."""

_TEXT_CONTEXTS: Final = {
    "description": "consultations.description",
    "history": "consultations.history",
    "summary": "consultations.summary",
    "decision": "consultations.decision",
}
_REPORT_CONTEXT: Final = "opinion_reports.content"
_ATTACHMENT_CONTEXT: Final = "consultation_attachments.data"
_KEY_CONTEXT: Final = "signing_credentials.key"


# --- Views ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvitationView:
    id: str
    consultation_id: str
    expert_id: str
    expert_name: str
    institution_id: str
    state: InvitationState
    respond_by: datetime
    decline_reason: str | None
    responded_at: datetime | None


@dataclass(frozen=True)
class AttachmentView:
    id: str
    filename: str
    content_type: str
    size: int
    sm3: str
    created_at: datetime


@dataclass(frozen=True)
class SignatureView:
    signer_id: str
    signer_name: str
    signed_at: datetime
    timestamped: bool


@dataclass(frozen=True)
class ReportView:
    id: str
    consultation_id: str
    version: int
    state: ReportState
    supersedes_id: str | None
    content: dict[str, str]
    content_digest: str
    created_by: str
    created_at: datetime
    issued_at: datetime | None
    signatures: list[SignatureView]


@dataclass(frozen=True)
class ConsultationView:
    """A consultation as one side sees it: the invitee side gets no patient name (R37)."""

    id: str
    kind: ConsultationKind
    state: ConsultationState
    institution_id: str
    institution_name: str
    department_id: str | None
    requested_by: str
    requester_name: str
    target_institution_id: str
    target_institution_name: str
    target_department_id: str | None
    patient_id: str | None
    patient_name: str | None
    patient_age: int | None
    reason: str
    purpose: str
    specialty: str
    min_title: Title
    urgency: Urgency
    description: str
    history: str
    summary: str
    proposed_start: datetime | None
    proposed_end: datetime | None
    room_id: str | None
    decision: str | None
    return_reason: str | None
    created_at: datetime
    updated_at: datetime | None
    closed_at: datetime | None
    sides: frozenset[str]
    invitations: list[InvitationView] = field(default_factory=list)
    attachments: list[AttachmentView] = field(default_factory=list)
    reports: list[ReportView] = field(default_factory=list)


@dataclass(frozen=True)
class AgreementView:
    id: str
    inviter_institution_id: str
    invitee_institution_id: str
    created_at: datetime


@dataclass(frozen=True)
class RequestFields:
    """What the inviter fills in (R10, R16)."""

    kind: ConsultationKind
    patient_id: str
    target_institution_id: str
    target_department_id: str | None
    reason: str
    purpose: str
    specialty: str
    min_title: Title
    urgency: Urgency
    description: str
    history: str
    summary: str
    proposed_start: datetime | None
    proposed_end: datetime | None
    patient_account_id: str | None = None


# --- Organisation: agreements and centres (R15) ---------------------------------------------------


async def create_agreement(
    db: Database, actor: Actor, *, inviter_institution_id: str, invitee_institution_id: str
) -> AgreementView:
    """Let the first institution invite the second (one way; make two for both ways)."""
    await authorize(db, actor, "agreement.create", object_type="agreement")
    if inviter_institution_id == invitee_institution_id:
        raise InvalidInput("An institution needs no agreement with itself.")
    async with audited(db) as tx:
        for institution_id in (inviter_institution_id, invitee_institution_id):
            if await tx.session.get(Institution, institution_id) is None:
                raise InstitutionNotFound()
        row = await tx.session.scalar(
            select(CooperationAgreement).where(
                CooperationAgreement.inviter_institution_id == inviter_institution_id,
                CooperationAgreement.invitee_institution_id == invitee_institution_id,
            )
        )
        if row is None:
            row = CooperationAgreement(
                inviter_institution_id=inviter_institution_id,
                invitee_institution_id=invitee_institution_id,
                created_by=actor.user_id,
                created_at=utc_now(),
            )
            tx.session.add(row)
            await tx.session.flush()
            await tx.record(
                "agreement.create",
                actor=actor,
                object_type="agreement",
                object_id=row.id,
                details={"inviter": inviter_institution_id, "invitee": invitee_institution_id},
            )
        return AgreementView(
            row.id, row.inviter_institution_id, row.invitee_institution_id, row.created_at
        )


async def list_agreements(db: Database, actor: Actor) -> list[AgreementView]:
    await authorize(db, actor, "agreement.list", object_type="agreement")
    async with db.session() as session:
        query = select(CooperationAgreement).order_by(CooperationAgreement.created_at)
        if actor.role.value != "admin":
            query = query.where(
                or_(
                    CooperationAgreement.inviter_institution_id == actor.institution_id,
                    CooperationAgreement.invitee_institution_id == actor.institution_id,
                )
            )
        rows = (await session.scalars(query)).all()
    return [
        AgreementView(r.id, r.inviter_institution_id, r.invitee_institution_id, r.created_at)
        for r in rows
    ]


async def set_centre(db: Database, actor: Actor, institution_id: str, department_id: str) -> None:
    """Name the department whose operators are the institution's consult centre."""
    await authorize(db, actor, "centre.set", object_type="institution", object_id=institution_id)
    async with audited(db) as tx:
        department = await tx.session.get(Department, department_id)
        if department is None or department.institution_id != institution_id:
            raise DepartmentNotFound()
        row = await tx.session.get(ConsultCentre, institution_id)
        if row is None:
            tx.session.add(
                ConsultCentre(institution_id=institution_id, department_id=department_id)
            )
        else:
            row.department_id = department_id
        await tx.record(
            "centre.set",
            actor=actor,
            object_type="institution",
            object_id=institution_id,
            details={"department_id": department_id},
        )


async def _has_agreement(tx: AuditTx, inviter: str, invitee: str) -> bool:
    found = await tx.session.scalar(
        select(CooperationAgreement.id).where(
            CooperationAgreement.inviter_institution_id == inviter,
            CooperationAgreement.invitee_institution_id == invitee,
        )
    )
    return found is not None


async def _centre(session: Any, institution_id: str) -> str | None:
    row = await session.get(ConsultCentre, institution_id)
    return row.department_id if row is not None else None


# --- Loading with the sides ---------------------------------------------------------------------


@dataclass
class _Loaded:
    row: Consultation
    sides: frozenset[str]
    invitations: list[ConsultationInvitation]
    centre_operators: tuple[tuple[str, str], ...] = ()
    """``(side, user_id)`` of the operators of both centres, told of every change."""


async def _operators_of(session: Any, department_id: str | None) -> list[str]:
    if department_id is None:
        return []
    from consult.models import UserDepartment

    rows = await session.scalars(
        select(UserDepartment.user_id).where(UserDepartment.department_id == department_id)
    )
    return sorted(rows.all())


async def _sides(tx: AuditTx, actor: Actor, row: Consultation) -> _Loaded:
    invitations = list(
        (
            await tx.session.scalars(
                select(ConsultationInvitation)
                .where(ConsultationInvitation.consultation_id == row.id)
                .order_by(ConsultationInvitation.created_at, ConsultationInvitation.id)
            )
        ).all()
    )
    inviter_centre = await _centre(tx.session, row.institution_id)
    invitee_centre = await _centre(tx.session, row.target_institution_id)
    sides = consultation_sides(
        actor,
        institution_id=row.institution_id,
        department_id=row.department_id,
        requested_by=row.requested_by,
        target_institution_id=row.target_institution_id,
        inviter_centre_department=inviter_centre,
        invitee_centre_department=invitee_centre,
        invited_expert_ids=frozenset(
            i.expert_id for i in invitations if i.status != InvitationState.WITHDRAWN.value
        ),
        sent=ConsultationState(row.status) not in UNSENT,
    )
    operators = [("inviter_centre", u) for u in await _operators_of(tx.session, inviter_centre)]
    if ConsultationState(row.status) not in UNSENT:  # the invited side hears once it is sent
        invitee_operators = await _operators_of(tx.session, invitee_centre)
        operators += [("invitee_centre", u) for u in invitee_operators]
    return _Loaded(row, sides, invitations, tuple(operators))


async def _load(
    tx: AuditTx,
    actor: Actor,
    consultation_id: str,
    action: str,
    needs: frozenset[str],
    *,
    lock: bool = True,
) -> _Loaded:
    """The consultation (locked for update unless ``lock`` is false) if ``actor`` holds one of
    the ``needs`` sides; else an audited refusal."""
    row = await tx.session.get(Consultation, consultation_id, with_for_update=lock)
    if row is None:
        raise ConsultationNotFound()
    loaded = await _sides(tx, actor, row)
    if not loaded.sides & needs:
        raise tx.refuse(
            PermissionDenied("Not your consultation."),
            actor=actor,
            action=action,
            object_type="consultation",
            object_id=consultation_id,
        )
    return loaded


def _parties(loaded: _Loaded) -> tuple[tuple[str, str], ...]:
    row = loaded.row
    parties = [("requester", row.requested_by)]
    parties += [("expert", i.expert_id) for i in loaded.invitations]
    if row.patient_account_id:
        parties.append(("patient", row.patient_account_id))
    return (*parties, *loaded.centre_operators)


async def _move(
    tx: AuditTx,
    actor: Actor,
    loaded: _Loaded,
    event: ConsultationEvent,
    details: Mapping[str, Any] | None = None,
) -> None:
    await CONSULTATION_MACHINE.set_state(
        tx, actor, loaded.row, event, details, parties=_parties(loaded)
    )


def _refuse(
    tx: AuditTx, actor: Actor, error: ConsultError, action: str, object_id: str, **details: Any
) -> ConsultError:
    return tx.refuse(
        error,
        actor=actor,
        action=action,
        object_type="consultation",
        object_id=object_id,
        details=details or None,
    )


# --- The request (R10, R15, R16) ------------------------------------------------------------------


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
        raise _refuse(
            tx, actor, PermissionDenied("Not a patient of your institution."), action, row.id or ""
        )
    if await tx.session.get(Institution, fields.target_institution_id) is None:
        raise InstitutionNotFound()
    if fields.target_department_id is not None:
        department = await tx.session.get(Department, fields.target_department_id)
        if department is None or department.institution_id != fields.target_institution_id:
            raise DepartmentNotFound()
    if not await _has_agreement(tx, row.institution_id, fields.target_institution_id):
        raise _refuse(
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
    row.description_enc = cipher.encrypt(fields.description, _TEXT_CONTEXTS["description"])
    row.history_enc = cipher.encrypt(fields.history, _TEXT_CONTEXTS["history"])
    row.summary_enc = cipher.encrypt(fields.summary, _TEXT_CONTEXTS["summary"])
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
        loaded = await _load(
            tx, actor, consultation_id, "consultation.update", frozenset({"requester"})
        )
        if loaded.row.status != ConsultationState.DRAFT.value:
            raise _refuse(
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


async def add_attachment(
    db: Database,
    actor: Actor,
    consultation_id: str,
    *,
    filename: str,
    data: bytes,
) -> AttachmentView:
    """Attach a PDF, PNG or JPEG (typed by its bytes) to an open request, SM4-encrypted."""
    await authorize(db, actor, "consultation.attach", object_type="consultation")
    content_type = next(
        (t for magic, t in ATTACHMENT_TYPES.items() if data.startswith(magic)), None
    )
    if content_type is None or len(data) > ATTACHMENT_MAX_BYTES or not data:
        raise AttachmentRefused()
    name = "".join(ch for ch in filename if ch.isprintable() and ch not in "/\\")[:200] or "file"
    async with audited(db) as tx:
        loaded = await _load(
            tx, actor, consultation_id, "consultation.attach", INVITER_SIDES - {"inviter_centre"}
        )
        if loaded.row.closed_at is not None:
            raise _refuse(
                tx,
                actor,
                CONSULTATION_MACHINE.closed_error(),
                "consultation.attach",
                consultation_id,
            )
        assert tx.db is not None
        row = ConsultationAttachment(
            consultation_id=consultation_id,
            uploaded_by=actor.user_id,
            filename=name,
            content_type=content_type,
            size=len(data),
            sm3=sm3_hex(data),
            data_enc=tx.db.cipher.encrypt_bytes(data, _ATTACHMENT_CONTEXT),
            created_at=utc_now(),
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "consultation.attach",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={"attachment_id": row.id, "sm3": row.sm3, "size": row.size},
        )
        return _attachment_view(row)


def _attachment_view(row: ConsultationAttachment) -> AttachmentView:
    return AttachmentView(row.id, row.filename, row.content_type, row.size, row.sm3, row.created_at)


async def get_attachment(
    db: Database, actor: Actor, consultation_id: str, attachment_id: str
) -> tuple[AttachmentView, bytes]:
    """An attachment's bytes for either side (the view is audited, R24)."""
    await authorize(db, actor, "consultation.view", object_type="consultation")
    async with audited(db) as tx:
        await _load(
            tx,
            actor,
            consultation_id,
            "consultation.view",
            INVITER_SIDES | INVITEE_SIDES,
            lock=False,
        )
        row = await tx.session.get(ConsultationAttachment, attachment_id)
        if row is None or row.consultation_id != consultation_id:
            raise AttachmentNotFound()
        assert tx.db is not None
        data = tx.db.cipher.decrypt_bytes(row.data_enc, _ATTACHMENT_CONTEXT)
        await tx.record(
            "consultation.view_attachment",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={"attachment_id": attachment_id},
        )
        return _attachment_view(row), data


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
        loaded = await _load(tx, actor, consultation_id, action, needs)
        await _move(tx, actor, loaded, event, details)


async def submit(db: Database, actor: Actor, consultation_id: str) -> None:
    """The requester hands the draft to its consult centre (R16)."""
    await _transition(
        db, actor, consultation_id, ConsultationEvent.SUBMIT, frozenset({"requester"})
    )


async def return_to_requester(
    db: Database, actor: Actor, consultation_id: str, reason: str
) -> None:
    """The inviter's centre sends the request back as a draft, with its reason."""
    if not reason.strip():
        raise InvalidInput("A return needs its reason.")
    action = "consultation.return"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"inviter_centre"}))
        loaded.row.return_reason = reason.strip()
        await _move(tx, actor, loaded, ConsultationEvent.RETURN)


async def approve(db: Database, actor: Actor, consultation_id: str) -> None:
    """The inviter's centre approves; the request is sent to the invited institution (R15:
    agreement and the other side's centre checked again at sending)."""
    action = "consultation.approve"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"inviter_centre"}))
        row = loaded.row
        await _move(tx, actor, loaded, ConsultationEvent.APPROVE)
        if not await _has_agreement(tx, row.institution_id, row.target_institution_id):
            raise _refuse(tx, actor, NoAgreement(), "consultation.send", row.id)
        if await _centre(tx.session, row.target_institution_id) is None:
            raise _refuse(tx, actor, NoConsultCentre(), "consultation.send", row.id)
        await _move(tx, actor, loaded, ConsultationEvent.SEND)


async def decline_request(db: Database, actor: Actor, consultation_id: str, reason: str) -> None:
    """The invited institution's centre declines the whole request, with its reason (R11)."""
    if not reason.strip():
        raise DeclineReasonRequired()
    action = "consultation.decline"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"invitee_centre"}))
        loaded.row.return_reason = reason.strip()
        await _move(tx, actor, loaded, ConsultationEvent.DECLINE, {"reason": reason.strip()[:200]})


async def cancel(db: Database, actor: Actor, consultation_id: str) -> None:
    """The requester (or its centre) withdraws the request; open invitations are withdrawn."""
    action = "consultation.cancel"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(
            tx, actor, consultation_id, action, frozenset({"requester", "inviter_centre"})
        )
        await _move(tx, actor, loaded, ConsultationEvent.CANCEL)
        for invitation in loaded.invitations:
            if invitation.status in {InvitationState.INVITED.value, InvitationState.ACCEPTED.value}:
                await INVITATION_MACHINE.set_state(
                    tx, actor, invitation, InvitationEvent.WITHDRAW, parties=_parties(loaded)
                )


async def decide(db: Database, actor: Actor, consultation_id: str, decision: str) -> None:
    """The inviter records its decision on diagnosis and treatment (R13); the record is archived."""
    if not decision.strip():
        raise InvalidInput("The decision is required.")
    action = "consultation.decide"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(
            tx, actor, consultation_id, action, frozenset({"requester", "inviter"})
        )
        assert tx.db is not None
        loaded.row.decision_enc = tx.db.cipher.encrypt(decision.strip(), _TEXT_CONTEXTS["decision"])
        await _move(tx, actor, loaded, ConsultationEvent.DECIDE)


# --- Invitations (R11, R12) -----------------------------------------------------------------------


def _check_expert(practitioner: Practitioner | None, row: Consultation) -> ConsultError | None:
    if practitioner is None or practitioner.verification != VerificationStatus.VERIFIED.value:
        return ExpertNotQualified("The expert's practice is not verified.")
    if practitioner.institution_id != row.target_institution_id:
        return ExpertElsewhere()
    if practitioner.years_of_practice < MIN_EXPERT_YEARS:
        return ExpertNotQualified(
            f"The expert has {practitioner.years_of_practice} years of practice; "
            f"{MIN_EXPERT_YEARS} or more are required (R12)."
        )
    if TITLE_RANK[Title(practitioner.title)] < TITLE_RANK[Title(row.min_title)]:
        return ExpertNotQualified("The expert's title is below the title asked.")
    return None


async def assign_expert(
    db: Database,
    actor: Actor,
    consultation_id: str,
    expert_id: str,
    *,
    respond_within: timedelta | None = None,
    now: datetime | None = None,
) -> InvitationView:
    """The invited institution's centre invites one of its experts (several for an MDT)."""
    action = "consultation.assign"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    now = now or utc_now()
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"invitee_centre"}))
        row = loaded.row
        if row.status not in {
            ConsultationState.SENT.value,
            ConsultationState.ACCEPTED.value,
            ConsultationState.IN_SESSION.value,
        }:
            error = CONSULTATION_MACHINE.closed_error() if row.closed_at else InvalidTransition()
            raise _refuse(tx, actor, error, action, consultation_id, state=row.status)
        if any(i.expert_id == expert_id for i in loaded.invitations):
            raise AlreadyInvited()
        practitioner = await tx.session.get(Practitioner, expert_id)
        problem = _check_expert(practitioner, row)
        if problem is not None:
            raise _refuse(tx, actor, problem, action, consultation_id, expert_id=expert_id)
        within = respond_within or RESPOND_WITHIN[Urgency(row.urgency)]
        invitation = ConsultationInvitation(
            consultation_id=row.id,
            institution_id=row.target_institution_id,
            expert_id=expert_id,
            assigned_by=actor.user_id,
            status=InvitationState.INVITED.value,
            respond_by=now + within,
            created_at=now,
        )
        tx.session.add(invitation)
        await tx.session.flush()
        loaded.invitations.append(invitation)
        await tx.record(
            action,
            actor=actor,
            object_type="consultation",
            object_id=row.id,
            details={"invitation_id": invitation.id, "expert_id": expert_id},
        )
        publish(
            tx,
            StateChanged(
                "invitation",
                invitation.id,
                "",
                "invited",
                "assign",
                actor.user_id,
                _parties(loaded),
            ),
        )
        names = await _names(tx.session, [expert_id])
        return _invitation_view(invitation, names)


async def _load_invitation(
    tx: AuditTx, actor: Actor, invitation_id: str, action: str
) -> tuple[ConsultationInvitation, _Loaded]:
    invitation = await tx.session.get(ConsultationInvitation, invitation_id, with_for_update=True)
    if invitation is None:
        raise InvitationNotFound()
    loaded = await _load(tx, actor, invitation.consultation_id, action, INVITEE_SIDES)
    if (
        action.startswith("invitation.")
        and action != "invitation.withdraw"
        and invitation.expert_id != actor.user_id
    ):
        raise tx.refuse(
            PermissionDenied("Not your invitation."),
            actor=actor,
            action=action,
            object_type="invitation",
            object_id=invitation_id,
        )
    return invitation, loaded


async def accept_invitation(
    db: Database, actor: Actor, invitation_id: str, *, now: datetime | None = None
) -> None:
    """The expert accepts; the first acceptance moves the request to ``accepted`` (R11)."""
    action = "invitation.accept"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    now = now or utc_now()
    expired = False
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if invitation.status == InvitationState.INVITED.value and invitation.respond_by <= now:
            await INVITATION_MACHINE.set_state(
                tx, actor, invitation, InvitationEvent.EXPIRE, parties=_parties(loaded)
            )
            expired = True
        else:
            await INVITATION_MACHINE.set_state(
                tx, actor, invitation, InvitationEvent.ACCEPT, parties=_parties(loaded)
            )
            invitation.responded_at = now
            await room.add_expert(tx, loaded.row, invitation)
            if loaded.row.status == ConsultationState.SENT.value:
                await _move(
                    tx, actor, loaded, ConsultationEvent.ACCEPT, {"invitation_id": invitation_id}
                )
    if expired:
        raise InvitationExpired()


async def decline_invitation(
    db: Database, actor: Actor, invitation_id: str, reason: str, *, now: datetime | None = None
) -> None:
    """The expert declines with its reason (R11); the inviter sees the reason."""
    action = "invitation.decline"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    now = now or utc_now()
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if not reason.strip():
            raise tx.refuse(
                DeclineReasonRequired(),
                actor=actor,
                action=action,
                object_type="invitation",
                object_id=invitation_id,
            )
        invitation.decline_reason = reason.strip()
        invitation.responded_at = now
        await INVITATION_MACHINE.set_state(
            tx,
            actor,
            invitation,
            InvitationEvent.DECLINE,
            {"reason": reason.strip()[:200]},
            parties=_parties(loaded),
        )


async def withdraw_invitation(db: Database, actor: Actor, invitation_id: str) -> None:
    """The invited institution's centre takes an invitation back."""
    action = "invitation.withdraw"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if "invitee_centre" not in loaded.sides:
            raise tx.refuse(
                PermissionDenied(),
                actor=actor,
                action=action,
                object_type="invitation",
                object_id=invitation_id,
            )
        await INVITATION_MACHINE.set_state(
            tx, actor, invitation, InvitationEvent.WITHDRAW, parties=_parties(loaded)
        )


async def expire_overdue(db: Database, *, now: datetime | None = None) -> int:
    """Expire every invitation past its deadline (R11); returns how many. Run periodically."""
    now = now or utc_now()
    system = Actor.system("expiry")
    async with db.session() as session:
        ids = (
            await session.scalars(
                select(ConsultationInvitation.id).where(
                    ConsultationInvitation.status == InvitationState.INVITED.value,
                    ConsultationInvitation.respond_by <= now,
                )
            )
        ).all()
    count = 0
    for invitation_id in ids:
        async with audited(db) as tx:
            invitation = await tx.session.get(
                ConsultationInvitation, invitation_id, with_for_update=True
            )
            if invitation is None or invitation.status != InvitationState.INVITED.value:
                continue
            consultation = await tx.session.get(Consultation, invitation.consultation_id)
            assert consultation is not None
            parties = (("requester", consultation.requested_by), ("expert", invitation.expert_id))
            await INVITATION_MACHINE.set_state(
                tx, system, invitation, InvitationEvent.EXPIRE, parties=parties
            )
            count += 1
    return count


# --- The session (R12 checked at start) --------------------------------------------------------


async def start_session(db: Database, actor: Actor, consultation_id: str) -> ConsultationView:
    """Open the consultation's session: the requester or an accepted expert (R12 checked: a
    verified requester, an accepted expert with 3+ years)."""
    action = "consultation.start"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"requester", "expert"}))
        if "expert" in loaded.sides and not _accepted(loaded, actor.user_id):
            raise _refuse(
                tx, actor, PermissionDenied("Accept the invitation first."), action, consultation_id
            )
        requester = await tx.session.get(Practitioner, loaded.row.requested_by)
        if requester is None or requester.verification != VerificationStatus.VERIFIED.value:
            raise _refuse(tx, actor, InviterNotQualified(), action, consultation_id)
        qualified = False
        for invitation in loaded.invitations:
            if invitation.status == InvitationState.ACCEPTED.value:
                expert = await tx.session.get(Practitioner, invitation.expert_id)
                qualified = qualified or _check_expert(expert, loaded.row) is None
        if not qualified:
            raise _refuse(
                tx,
                actor,
                ExpertNotQualified("No accepted expert with 3+ years of practice."),
                action,
                consultation_id,
            )
        await _move(tx, actor, loaded, ConsultationEvent.START)
        await _open_room(tx, actor, loaded)
    return await get_consultation(db, actor, consultation_id, audit=False)


async def _open_room(tx: AuditTx, actor: Actor, loaded: _Loaded) -> None:
    """The consultation's MDT room (``consult.consultations.room``)."""
    await room.open_room(tx, actor, loaded.row, loaded.invitations)


def _accepted(loaded: _Loaded, user_id: str | None) -> bool:
    return any(
        i.expert_id == user_id and i.status == InvitationState.ACCEPTED.value
        for i in loaded.invitations
    )


# --- The opinion report (R13, R24, R26, R27) ------------------------------------------------------


def _clean_content(content: Mapping[str, str]) -> dict[str, str]:
    unknown = set(content) - set(REPORT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown report fields: {', '.join(sorted(unknown))}.")
    cleaned = {name: str(content.get(name, "") or "").strip() for name in REPORT_FIELDS}
    if not cleaned["opinion"]:
        raise InvalidInput("The diagnostic opinion is required.")
    return cleaned


async def _reports(session: Any, consultation_id: str) -> list[OpinionReport]:
    return list(
        (
            await session.scalars(
                select(OpinionReport)
                .where(OpinionReport.consultation_id == consultation_id)
                .order_by(OpinionReport.version)
            )
        ).all()
    )


async def write_report(
    db: Database, actor: Actor, consultation_id: str, content: Mapping[str, str]
) -> ReportView:
    """Write the report: a new first version, or change the current draft. A signed version is
    never changed (R24: :func:`new_version`)."""
    action = "opinion.write"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    cleaned = _clean_content(content)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"expert"}))
        _require_reporting(tx, actor, loaded, action)
        reports = await _reports(tx.session, consultation_id)
        current = reports[-1] if reports else None
        if current is not None and current.status != ReportState.DRAFT.value:
            raise tx.refuse(
                ReportSigned(),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=current.id,
            )
        if current is None:
            current = OpinionReport(
                consultation_id=consultation_id,
                version=1,
                status=ReportState.DRAFT.value,
                created_by=actor.user_id,
                created_at=utc_now(),
            )
            tx.session.add(current)
        _set_content(tx, current, cleaned)
        await tx.session.flush()
        await tx.record(
            action,
            actor=actor,
            object_type="opinion",
            object_id=current.id,
            details={"version": current.version, "digest": current.content_digest},
        )
        report_id = current.id
    return await get_report(db, actor, report_id, audit=False)


def _set_content(tx: AuditTx, report: OpinionReport, content: dict[str, str]) -> None:
    assert tx.db is not None
    text = json.dumps(content, sort_keys=True, ensure_ascii=False)
    report.content_enc = tx.db.cipher.encrypt(text, _REPORT_CONTEXT)
    report.content_digest = sm3_hex(canonical(content))
    report.updated_at = utc_now()


def _require_reporting(tx: AuditTx, actor: Actor, loaded: _Loaded, action: str) -> None:
    if not _accepted(loaded, actor.user_id):
        raise tx.refuse(
            PermissionDenied("Only an expert who accepted writes and signs the report."),
            actor=actor,
            action=action,
            object_type="consultation",
            object_id=loaded.row.id,
        )
    if loaded.row.status not in {
        ConsultationState.ACCEPTED.value,
        ConsultationState.IN_SESSION.value,
        ConsultationState.REPORTED.value,
    }:
        error = CONSULTATION_MACHINE.closed_error() if loaded.row.closed_at else InvalidTransition()
        raise tx.refuse(
            error, actor=actor, action=action, object_type="consultation", object_id=loaded.row.id
        )


async def new_version(
    db: Database, actor: Actor, consultation_id: str, content: Mapping[str, str]
) -> ReportView:
    """A new draft version replacing a signed one; the old version stays, superseded (R24)."""
    action = "opinion.supersede"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    cleaned = _clean_content(content)
    async with audited(db) as tx:
        loaded = await _load(tx, actor, consultation_id, action, frozenset({"expert"}))
        _require_reporting(tx, actor, loaded, action)
        reports = await _reports(tx.session, consultation_id)
        if not reports or reports[-1].status == ReportState.DRAFT.value:
            raise tx.refuse(
                ReportUnsigned("The current version is a draft: change it instead."),
                actor=actor,
                action=action,
                object_type="consultation",
                object_id=consultation_id,
            )
        old = reports[-1]
        await REPORT_MACHINE.set_state(
            tx, actor, old, ReportEvent.SUPERSEDE, parties=_parties(loaded)
        )
        report = OpinionReport(
            consultation_id=consultation_id,
            version=old.version + 1,
            supersedes_id=old.id,
            status=ReportState.DRAFT.value,
            created_by=actor.user_id,
            created_at=utc_now(),
        )
        _set_content(tx, report, cleaned)
        tx.session.add(report)
        await tx.session.flush()
        await tx.record(
            "opinion.write",
            actor=actor,
            object_type="opinion",
            object_id=report.id,
            details={
                "version": report.version,
                "supersedes": old.id,
                "digest": report.content_digest,
            },
        )
        report_id = report.id
    return await get_report(db, actor, report_id, audit=False)


async def _document(session: Any, cipher: Any, report: OpinionReport) -> dict[str, Any]:
    """What the signers sign: the report version in its context (no patient identifiers, R37)."""
    consultation = await session.get(Consultation, report.consultation_id)
    inviter = await session.get(Institution, consultation.institution_id)
    invitee = await session.get(Institution, consultation.target_institution_id)
    content = json.loads(cipher.decrypt(report.content_enc, _REPORT_CONTEXT))
    return {
        "type": "opinion_report",
        "consultation_id": consultation.id,
        "kind": consultation.kind,
        "report_id": report.id,
        "version": report.version,
        "supersedes_id": report.supersedes_id,
        "inviter_institution": {"id": inviter.id, "name": inviter.name},
        "invitee_institution": {"id": invitee.id, "name": invitee.name},
        "patient_ref": consultation.patient_id,
        "content": content,
        "content_sm3": report.content_digest,
    }


async def _credential(
    db: Database, actor: Actor, authority: SigningAuthority, now: datetime
) -> tuple[Any, str]:
    """The practitioner's SM2 key and certificate, made and issued at the first signature."""
    from consult.trust import SM2Key

    async with db.session() as session:
        row = await session.get(SigningCredential, actor.user_id)
        user = await session.get(User, actor.user_id)
        practitioner = await session.get(Practitioner, actor.user_id)
    if row is not None:
        key = SM2Key.from_pem(db.cipher.decrypt(row.key_enc, _KEY_CONTEXT).encode())
        return key, row.certificate_pem
    assert user is not None and practitioner is not None
    key = await asyncio.to_thread(SM2Key.generate)
    certificate = authority.issue(
        key.public_pem(),
        common_name=user.display_name,
        serial=practitioner.licence_number,
        now=now,
    ).decode()
    async with audited(db) as tx:
        existing = await tx.session.get(SigningCredential, actor.user_id, with_for_update=True)
        if existing is not None:
            key = SM2Key.from_pem(db.cipher.decrypt(existing.key_enc, _KEY_CONTEXT).encode())
            return key, existing.certificate_pem
        tx.session.add(
            SigningCredential(
                user_id=actor.user_id,
                key_enc=db.cipher.encrypt(key.private_pem().decode(), _KEY_CONTEXT),
                certificate_pem=certificate,
                created_at=now,
            )
        )
        await tx.record(
            "opinion.issue_certificate",
            actor=actor,
            object_type="practitioner",
            object_id=actor.user_id,
            details={"key_id": key.key_id},
        )
    return key, certificate


async def sign_report(
    db: Database,
    actor: Actor,
    report_id: str,
    pin: str,
    authority: SigningAuthority | None,
    *,
    expected_digest: str | None = None,
) -> ReportView:
    """Co-sign a report version with SM2 after the signing PIN (R27, R35); the first signature
    freezes it. ``expected_digest`` (the content the signer saw) must match when given."""
    action = "opinion.sign"
    await authorize(db, actor, action, object_type="opinion", object_id=report_id)
    if authority is None:
        raise SigningUnavailable()
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id)
        if report is None:
            raise ReportNotFound()
        loaded = await _load(
            tx, actor, report.consultation_id, action, frozenset({"expert"}), lock=False
        )
        _require_reporting(tx, actor, loaded, action)
    await verify_signing_pin(db, actor, pin, purpose=f"opinion:{report_id}")
    now = utc_now()
    key, certificate = await _credential(db, actor, authority, now)
    async with db.session() as session:
        report = await session.get(OpinionReport, report_id)
        assert report is not None
        document = await _document(session, db.cipher, report)
    data = canonical(document)
    signature = await asyncio.to_thread(key.sign, data)
    stamp = await authority.tsa.stamp(signature) if authority.tsa is not None else None
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id, with_for_update=True)
        assert report is not None
        loaded = await _load(tx, actor, report.consultation_id, action, frozenset({"expert"}))
        if expected_digest is not None and expected_digest != report.content_digest:
            raise tx.refuse(
                ReportSigned("The report changed since you read it."),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        if canonical(await _document(tx.session, db.cipher, report)) != data:
            raise tx.refuse(
                ReportSigned("The report changed while signing."),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        done = await tx.session.scalar(
            select(ReportSignature.id).where(
                ReportSignature.report_id == report_id, ReportSignature.signer_id == actor.user_id
            )
        )
        if done is not None:
            raise AlreadySignedReport()
        await REPORT_MACHINE.set_state(
            tx,
            actor,
            report,
            ReportEvent.SIGN,
            {"document_sm3": sm3_hex(data)},
            parties=_parties(loaded),
        )
        tx.session.add(
            ReportSignature(
                report_id=report_id,
                signer_id=actor.user_id,
                certificate_pem=certificate,
                signature_b64=base64.b64encode(signature).decode(),
                timestamp_b64=base64.b64encode(stamp).decode() if stamp else None,
                signed_at=now,
            )
        )
    return await get_report(db, actor, report_id, audit=False)


async def issue_report(db: Database, actor: Actor, report_id: str) -> ReportView:
    """Issue a signed version to the inviter: the consultation moves to ``reported`` (R13)."""
    action = "opinion.issue"
    await authorize(db, actor, action, object_type="opinion", object_id=report_id)
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id, with_for_update=True)
        if report is None:
            raise ReportNotFound()
        loaded = await _load(tx, actor, report.consultation_id, action, frozenset({"expert"}))
        _require_reporting(tx, actor, loaded, action)
        if report.status == ReportState.DRAFT.value:
            raise tx.refuse(
                ReportUnsigned(),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        await REPORT_MACHINE.set_state(
            tx, actor, report, ReportEvent.ISSUE, parties=_parties(loaded)
        )
        report.issued_at = utc_now()
        await _move(
            tx,
            actor,
            loaded,
            ConsultationEvent.REPORT,
            {"report_id": report_id, "version": report.version},
        )
    return await get_report(db, actor, report_id, audit=False)


# --- Reading --------------------------------------------------------------------------------------


async def _names(session: Any, user_ids: list[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    rows = (
        await session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    ).all()
    return {row[0]: row[1] for row in rows}


def _invitation_view(row: ConsultationInvitation, names: Mapping[str, str]) -> InvitationView:
    return InvitationView(
        id=row.id,
        consultation_id=row.consultation_id,
        expert_id=row.expert_id,
        expert_name=names.get(row.expert_id, ""),
        institution_id=row.institution_id,
        state=InvitationState(row.status),
        respond_by=row.respond_by,
        decline_reason=row.decline_reason,
        responded_at=row.responded_at,
    )


async def _report_view(session: Any, cipher: Any, report: OpinionReport) -> ReportView:
    signatures = (
        await session.scalars(
            select(ReportSignature)
            .where(ReportSignature.report_id == report.id)
            .order_by(ReportSignature.signed_at, ReportSignature.id)
        )
    ).all()
    names = await _names(session, [s.signer_id for s in signatures])
    return ReportView(
        id=report.id,
        consultation_id=report.consultation_id,
        version=report.version,
        state=ReportState(report.status),
        supersedes_id=report.supersedes_id,
        content=json.loads(cipher.decrypt(report.content_enc, _REPORT_CONTEXT)),
        content_digest=report.content_digest,
        created_by=report.created_by,
        created_at=report.created_at,
        issued_at=report.issued_at,
        signatures=[
            SignatureView(
                s.signer_id, names.get(s.signer_id, ""), s.signed_at, s.timestamp_b64 is not None
            )
            for s in signatures
        ],
    )


async def get_consultation(
    db: Database, actor: Actor, consultation_id: str, *, audit: bool = True
) -> ConsultationView:
    """One consultation as the actor's side sees it (the view is audited, R24)."""
    await authorize(
        db, actor, "consultation.view", object_type="consultation", object_id=consultation_id
    )
    async with audited(db) as tx:
        loaded = await _load(
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


async def _view(session: Any, cipher: Any, loaded: _Loaded) -> ConsultationView:
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
    names = await _names(session, [row.requested_by, *(i.expert_id for i in loaded.invitations)])
    attachments = (
        await session.scalars(
            select(ConsultationAttachment)
            .where(ConsultationAttachment.consultation_id == row.id)
            .order_by(ConsultationAttachment.created_at)
        )
    ).all()
    reports = await _reports(session, row.id)
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
        description=cipher.decrypt(row.description_enc, _TEXT_CONTEXTS["description"]),
        history=cipher.decrypt(row.history_enc, _TEXT_CONTEXTS["history"]),
        summary=cipher.decrypt(row.summary_enc, _TEXT_CONTEXTS["summary"]),
        proposed_start=row.proposed_start,
        proposed_end=row.proposed_end,
        room_id=row.room_id,
        decision=cipher.decrypt(row.decision_enc, _TEXT_CONTEXTS["decision"])
        if row.decision_enc
        else None,
        return_reason=row.return_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        sides=loaded.sides,
        invitations=[_invitation_view(i, names) for i in loaded.invitations],
        attachments=[_attachment_view(a) for a in attachments],
        reports=[await _report_view(session, cipher, r) for r in visible_reports],
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
            loaded = await _sides(tx, actor, row)
            if not loaded.sides:
                continue
            views.append(await _view(session, tx.db.cipher if tx.db else None, loaded))
    return views


async def get_report(
    db: Database, actor: Actor, report_id: str, *, audit: bool = True
) -> ReportView:
    """One report version: the experts see drafts; the inviter side sees issued versions."""
    await authorize(db, actor, "opinion.view", object_type="opinion", object_id=report_id)
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id)
        if report is None:
            raise ReportNotFound()
        loaded = await _load(
            tx,
            actor,
            report.consultation_id,
            "opinion.view",
            INVITER_SIDES | INVITEE_SIDES,
            lock=False,
        )
        if not loaded.sides & INVITEE_SIDES and report.status not in {
            ReportState.ISSUED.value,
            ReportState.SUPERSEDED.value,
        }:
            raise ReportNotFound()
        assert tx.db is not None
        view = await _report_view(tx.session, tx.db.cipher, report)
        if audit:
            await tx.record("opinion.view", actor=actor, object_type="opinion", object_id=report_id)
    return view


async def export_report(db: Database, actor: Actor, report_id: str) -> dict[str, Any]:
    """The signed report as machine-readable JSON (R15: both sides archive it)."""
    await get_report(db, actor, report_id)
    async with db.session() as session:
        report = await session.get(OpinionReport, report_id)
        assert report is not None
        document = await _document(session, db.cipher, report)
        rows = (
            await session.scalars(
                select(ReportSignature)
                .where(ReportSignature.report_id == report_id)
                .order_by(ReportSignature.signed_at, ReportSignature.id)
            )
        ).all()
        names = await _names(session, [r.signer_id for r in rows])
    if not rows:
        raise ReportUnsigned()
    return export_document(
        document,
        [
            {
                "signer_id": r.signer_id,
                "signer_name": names.get(r.signer_id, ""),
                "signed_at": r.signed_at.isoformat(),
                "certificate": r.certificate_pem,
                "signature": r.signature_b64,
                "timestamp": r.timestamp_b64,
                "algorithm": "SM2-with-SM3",
            }
            for r in rows
        ],
    )


@dataclass(frozen=True)
class PatientChoice:
    """A patient a requester may name: registered by its institution's staff."""

    id: str
    name: str
    age: int


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


async def room_id_of(db: Database, consultation_id: str) -> str:
    """The consultation's room id; whether the actor may enter is the room's policy
    (``consult.rooms.enter``: a participation, admitted, the room open)."""
    async with db.session() as session:
        row = await session.get(Consultation, consultation_id)
    if row is None:
        raise ConsultationNotFound()
    if row.room_id is None:
        from consult.errors import RoomNotFound

        raise RoomNotFound()
    return row.room_id
