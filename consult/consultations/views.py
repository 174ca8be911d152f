"""What the consultation services return: frozen views of a consultation as one side sees it,
and the fields a requester fills in (R10, R16). Built from rows by the services; ``web/`` turns
them into JSON as they are, so a field's docstring is its description in the API document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from consult.consultations.models import (
    ConsultationAttachment,
    ConsultationInvitation,
    ConsultationKind,
    ConsultationState,
    InvitationState,
    ReportState,
    Urgency,
)
from consult.models import Title


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


@dataclass(frozen=True)
class PatientChoice:
    """A patient a requester may name: registered by its institution's staff."""

    id: str
    name: str
    age: int


def attachment_view(row: ConsultationAttachment) -> AttachmentView:
    return AttachmentView(row.id, row.filename, row.content_type, row.size, row.sm3, row.created_at)


def invitation_view(row: ConsultationInvitation, names: Mapping[str, str]) -> InvitationView:
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
