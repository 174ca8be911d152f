"""What the consultation services return: frozen views of a consultation as one side sees it,
and the fields a requester fills in (R10, R16). Built from rows by the services; ``web/`` turns
them into JSON as they are, so a field's docstring is its description in the API document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from consult.consultations.models import (
    AnswerMode,
    ConsultationAttachment,
    ConsultationInvitation,
    ConsultationKind,
    ConsultationState,
    InterpretationState,
    InvitationState,
    ReferralState,
    ReportState,
    Urgency,
)
from consult.models import Title


@dataclass(frozen=True)
class InvitationView:
    """One expert invited to a consultation (R11)."""

    id: str
    consultation_id: str
    expert_id: str
    expert_name: str
    institution_id: str
    state: InvitationState
    respond_by: datetime
    """The deadline to answer; unanswered by then, the invitation expires (R11)."""
    decline_reason: str | None
    responded_at: datetime | None


@dataclass(frozen=True)
class AttachmentView:
    """A file attached to a request (its bytes are fetched apart)."""

    id: str
    filename: str
    content_type: str
    size: int
    sm3: str
    """SM3 of the file's bytes."""
    created_at: datetime


@dataclass(frozen=True)
class SignatureView:
    """One co-signature of a report version (SM2, R27)."""

    signer_id: str
    signer_name: str
    signed_at: datetime
    timestamped: bool
    """Whether a time-stamp authority stamped the signature."""


@dataclass(frozen=True)
class ReportView:
    """One version of the opinion report (R13, R24)."""

    id: str
    consultation_id: str
    version: int
    state: ReportState
    supersedes_id: str | None
    content: dict[str, str]
    content_digest: str
    """SM3 of the content the signers sign."""
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
    """Only the inviter side sees the patient (R37)."""
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
    sides: tuple[str, ...]
    """The caller's sides, sorted: requester, inviter, inviter_centre, invitee_centre, expert."""
    invitations: list[InvitationView] = field(default_factory=list)
    attachments: list[AttachmentView] = field(default_factory=list)
    reports: list[ReportView] = field(default_factory=list)


@dataclass(frozen=True)
class MyConsultationView:
    """A consultation as its patient sees it on its own page: the minimum (R37), no clinical
    text, no names of people."""

    id: str
    kind: ConsultationKind
    state: ConsultationState
    institution_name: str
    """The requesting institution (the patient's doctor's)."""
    target_institution_name: str
    """The invited institution."""
    starts_at: datetime | None
    """When it is to start: the scheduled time, else the proposed one."""
    room_open: bool
    """The consultation's room is open to the patient now: in session, the room open, the
    patient admitted (not asked out). Then ``POST /consultations/{id}/join-token`` lets it in."""
    stepped_out: bool
    """In session, but the inviter asked the patient out for a part among clinicians; it is
    told (``room_changed``) when it may come back."""


@dataclass(frozen=True)
class ReferralView:
    """An online referral after a consultation (R17), as the doctors and centres see it: no
    patient name (the inviter side has it on the consultation, R37)."""

    id: str
    consultation_id: str
    report_id: str
    """The issued report version the referral carries by reference."""
    state: ReferralState
    requested_by: str
    requester_name: str
    institution_name: str
    """The referring institution."""
    target_institution_id: str
    target_institution_name: str
    target_department_id: str | None
    target_department_name: str | None
    reason: str
    proposed_time: datetime | None
    """When the receiving institution expects the patient (its answer)."""
    answer_note: str | None
    decline_reason: str | None
    answered_at: datetime | None
    created_at: datetime
    sides: tuple[str, ...]
    """The caller's sides on the consultation (``invitee_centre`` answers)."""


@dataclass(frozen=True)
class MyReferralView:
    """A referral of the signed-in patient (R17): where to, why, and the answer."""

    id: str
    consultation_id: str
    state: ReferralState
    institution_name: str
    target_institution_name: str
    target_department_name: str | None
    reason: str
    proposed_time: datetime | None
    answer_note: str | None
    decline_reason: str | None
    created_at: datetime
    answered_at: datetime | None


@dataclass(frozen=True)
class InterpretationView:
    """A request to have an issued report explained (R18), as the doctors and the invited
    centre see it: the question, the report it is about, the answer; the patient's age only
    (R37)."""

    id: str
    consultation_id: str
    report_id: str
    state: InterpretationState
    mode: AnswerMode
    """``text``, or ``voice``/``video`` once a call is scheduled."""
    asked_by_patient: bool
    """The patient asked itself (else its requesting doctor asked for it)."""
    question: str
    answer: str | None
    expert_id: str | None
    expert_name: str | None
    institution_id: str
    """The invited institution, whose centre may name the expert."""
    patient_age: int | None
    report: dict[str, str]
    """The issued report's content being explained."""
    scheduled_at: datetime | None
    room_id: str | None
    answered_at: datetime | None
    created_at: datetime
    sides: tuple[str, ...]
    """The caller's relation: ``asker``, ``requester``, ``expert``, ``invitee_centre``."""


@dataclass(frozen=True)
class MyInterpretationView:
    """An interpretation request of the signed-in patient (R18): its question and the answer;
    while a call is on, ``POST /interpretations/{id}/join-token`` lets it in."""

    id: str
    consultation_id: str
    state: InterpretationState
    mode: AnswerMode
    question: str
    answer: str | None
    expert_name: str | None
    scheduled_at: datetime | None
    room_open: bool
    created_at: datetime
    answered_at: datetime | None


@dataclass(frozen=True)
class AgreementView:
    """The inviter institution may send requests to the invitee institution (R15)."""

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


@dataclass(frozen=True)
class PatientChoice:
    """A patient a requester may name: registered by its institution's staff."""

    id: str
    name: str
    age: int


def attachment_view(row: ConsultationAttachment) -> AttachmentView:
    """The attachment's description (not its bytes)."""
    return AttachmentView(row.id, row.filename, row.content_type, row.size, row.sm3, row.created_at)


def invitation_view(row: ConsultationInvitation, names: Mapping[str, str]) -> InvitationView:
    """The invitation, its expert named from ``names`` (user id -> display name)."""
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
