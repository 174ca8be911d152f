"""Tables of remote consultation between institutions (issue 14, R10-R16, R26, R27).

- :class:`CooperationAgreement`: who may invite whom (R15); a request goes only to an
  institution the inviter's institution has an agreement with.
- :class:`ConsultCentre`: the department of an institution whose operators approve its outgoing
  requests and assign experts to incoming ones.
- :class:`Consultation`: the inviter's request (R10, R16), moved by ``consultations.request``.
- :class:`ConsultationInvitation`: one per invited expert (R11, R12; several for an MDT).
- :class:`OpinionReport` and :class:`ReportSignature`: the invitee's report, versioned (a new
  version supersedes the old one, which stays, R24), co-signed with SM2 (R13, R26, R27).
- :class:`SigningCredential`: a practitioner's SM2 key (SM4-encrypted) and its certificate.
- :class:`ConsultationReferral` (R17) and :class:`ReportInterpretation` (R18): what follows an
  issued report.

Clinical free text is SM4-encrypted (``*_enc``, R36); ids and states are plain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from consult.models import ID_LENGTH, Base
from consult.sqltypes import UtcDateTime, new_id, utc_now


class ConsultationState(StrEnum):
    """Where a consultation request stands (transitions in ``consult.consultations.machines``)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    SENT = "sent"
    ACCEPTED = "accepted"
    IN_SESSION = "in_session"
    REPORTED = "reported"
    DECIDED = "decided"
    DECLINED = "declined"
    CANCELLED = "cancelled"


class InvitationState(StrEnum):
    """An invited expert's answer (R11)."""

    INVITED = "invited"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class ReportState(StrEnum):
    """An opinion report version: editable draft, then frozen while co-signed, then issued."""

    DRAFT = "draft"
    SIGNING = "signing"
    ISSUED = "issued"
    SUPERSEDED = "superseded"


class ConsultationKind(StrEnum):
    """A consultation, or a remote diagnosis of one exam (R14, R19)."""

    CONSULTATION = "consultation"
    IMAGING = "imaging"
    ECG = "ecg"
    PATHOLOGY = "pathology"
    ULTRASOUND = "ultrasound"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"


def _one_of(column: str, allowed: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in allowed)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_allowed")


def _id() -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)


def _fk(table: str, *, index: bool = True, nullable: bool = False) -> Mapped[str]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(f"{table}.id"), index=index, nullable=nullable
    )


class CooperationAgreement(Base):
    """The inviter institution may send requests to the invitee institution (R15)."""

    __tablename__ = "cooperation_agreements"
    __table_args__ = (
        UniqueConstraint(
            "inviter_institution_id",
            "invitee_institution_id",
            name="uq_cooperation_agreements_inviter_invitee",
        ),
    )

    id: Mapped[str] = _id()
    inviter_institution_id: Mapped[str] = _fk("institutions")
    invitee_institution_id: Mapped[str] = _fk("institutions")
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class ConsultCentre(Base):
    """An institution's consult centre: the department whose operators approve and assign."""

    __tablename__ = "consult_centres"

    institution_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), primary_key=True
    )
    department_id: Mapped[str] = _fk("departments")


class Consultation(Base):
    """A request for a remote consultation or diagnosis, from one institution to another."""

    __tablename__ = "consultations"
    __table_args__ = (
        _one_of("status", ConsultationState),
        _one_of("kind", ConsultationKind),
        _one_of("urgency", Urgency),
    )

    id: Mapped[str] = _id()
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ConsultationState.DRAFT.value)
    institution_id: Mapped[str] = _fk("institutions")
    department_id: Mapped[str | None] = _fk("departments", nullable=True)
    requested_by: Mapped[str] = _fk("users")
    patient_id: Mapped[str] = _fk("patients")
    patient_account_id: Mapped[str | None] = _fk("users", nullable=True)
    """The patient's account, when the patient joins the session from a page of its own."""
    target_institution_id: Mapped[str] = _fk("institutions")
    target_department_id: Mapped[str | None] = _fk("departments", nullable=True)
    reason: Mapped[str] = mapped_column(String(1000))
    purpose: Mapped[str] = mapped_column(String(1000))
    specialty: Mapped[str] = mapped_column(String(128))
    min_title: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(16))
    description_enc: Mapped[str] = mapped_column(Text)
    history_enc: Mapped[str] = mapped_column(Text)
    """Existing diagnosis and treatment (R16)."""
    summary_enc: Mapped[str] = mapped_column(Text)
    """The record summary (R10)."""
    proposed_start: Mapped[datetime | None] = mapped_column(UtcDateTime())
    proposed_end: Mapped[datetime | None] = mapped_column(UtcDateTime())
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    room_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    """The consultation's MDT room, once opened."""
    decision_enc: Mapped[str | None] = mapped_column(Text)
    """The inviter's decision on diagnosis and treatment (R13)."""
    return_reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ConsultationAttachment(Base):
    """A document or image attached to a request (SM4-encrypted bytes, R36)."""

    __tablename__ = "consultation_attachments"

    id: Mapped[str] = _id()
    consultation_id: Mapped[str] = _fk("consultations")
    uploaded_by: Mapped[str] = _fk("users", index=False)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sm3: Mapped[str] = mapped_column(String(64))
    data_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class ConsultationInvitation(Base):
    """One invited expert of a consultation (R11, R12)."""

    __tablename__ = "consultation_invitations"
    __table_args__ = (
        _one_of("status", InvitationState),
        UniqueConstraint(
            "consultation_id", "expert_id", name="uq_consultation_invitations_consultation_expert"
        ),
    )

    id: Mapped[str] = _id()
    consultation_id: Mapped[str] = _fk("consultations")
    institution_id: Mapped[str] = _fk("institutions")
    expert_id: Mapped[str] = _fk("users")
    assigned_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=InvitationState.INVITED.value)
    respond_by: Mapped[datetime] = mapped_column(UtcDateTime())
    decline_reason: Mapped[str | None] = mapped_column(String(1000))
    responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OpinionReport(Base):
    """One version of a consultation's opinion report (R13). Frozen at the first signature."""

    __tablename__ = "opinion_reports"
    __table_args__ = (
        _one_of("status", ReportState),
        UniqueConstraint("consultation_id", "version", name="uq_opinion_reports_version"),
        CheckConstraint("version > 0", name="version_positive"),
    )

    id: Mapped[str] = _id()
    consultation_id: Mapped[str] = _fk("consultations")
    version: Mapped[int] = mapped_column(Integer)
    supersedes_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("opinion_reports.id")
    )
    status: Mapped[str] = mapped_column(String(16), default=ReportState.DRAFT.value)
    content_enc: Mapped[str] = mapped_column(Text)
    """The structured report as canonical JSON, SM4-encrypted."""
    content_digest: Mapped[str] = mapped_column(String(64))
    """SM3 of the canonical document the signers sign (``consult.consultations.reports``)."""
    created_by: Mapped[str] = _fk("users", index=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ReportSignature(Base):
    """One practitioner's SM2 signature over a report version's signed document."""

    __tablename__ = "report_signatures"
    __table_args__ = (
        UniqueConstraint("report_id", "signer_id", name="uq_report_signatures_report_signer"),
    )

    id: Mapped[str] = _id()
    report_id: Mapped[str] = _fk("opinion_reports")
    signer_id: Mapped[str] = _fk("users", index=False)
    certificate_pem: Mapped[str] = mapped_column(Text)
    signature_b64: Mapped[str] = mapped_column(Text)
    timestamp_b64: Mapped[str | None] = mapped_column(Text)
    """The RFC 3161 reply over the signature, when an authority is configured."""
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class SigningCredential(Base):
    """A practitioner's SM2 signing key (SM4-encrypted) and the certificate the CA issued."""

    __tablename__ = "signing_credentials"

    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id"), primary_key=True
    )
    key_enc: Mapped[str] = mapped_column(Text)
    certificate_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


# --- After the report (R17, R18) ---------------------------------------------------------------


class ReferralState(StrEnum):
    """An online referral after a consultation (R17)."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CANCELLED = "cancelled"


class InterpretationState(StrEnum):
    """A request to have the issued report explained (R18)."""

    ASKED = "asked"
    SCHEDULED = "scheduled"
    ANSWERED = "answered"
    CANCELLED = "cancelled"


class AnswerMode(StrEnum):
    """How an interpretation is answered: in writing, or in a voice or video call."""

    TEXT = "text"
    VOICE = "voice"
    VIDEO = "video"


class ConsultationReferral(Base):
    """The requesting doctor refers the patient to the invited institution (or a department of
    it) once the report is issued; that institution's consult centre accepts or declines (R17).
    The issued report travels by reference (``report_id``)."""

    __tablename__ = "consultation_referrals"
    __table_args__ = (_one_of("status", ReferralState),)

    id: Mapped[str] = _id()
    consultation_id: Mapped[str] = _fk("consultations")
    report_id: Mapped[str] = _fk("opinion_reports", index=False)
    requested_by: Mapped[str] = _fk("users", index=False)
    target_institution_id: Mapped[str] = _fk("institutions")
    target_department_id: Mapped[str | None] = _fk("departments", index=False, nullable=True)
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default=ReferralState.REQUESTED.value)
    proposed_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """When the receiving institution expects the patient (its answer, optional)."""
    answer_note: Mapped[str | None] = mapped_column(String(1000))
    decline_reason: Mapped[str | None] = mapped_column(String(1000))
    answered_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ReportInterpretation(Base):
    """The patient (or its requesting doctor for it) asks for the issued report to be explained;
    an expert of the invited institution answers in writing or in a call (R18). The question
    and the answer are SM4-encrypted (R36)."""

    __tablename__ = "report_interpretations"
    __table_args__ = (
        _one_of("status", InterpretationState),
        _one_of("mode", AnswerMode),
    )

    id: Mapped[str] = _id()
    consultation_id: Mapped[str] = _fk("consultations")
    report_id: Mapped[str] = _fk("opinion_reports", index=False)
    asked_by: Mapped[str] = _fk("users", index=False)
    institution_id: Mapped[str] = _fk("institutions")
    """The invited institution, whose centre may assign the expert."""
    expert_id: Mapped[str | None] = _fk("users", nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=InterpretationState.ASKED.value)
    mode: Mapped[str] = mapped_column(String(8), default=AnswerMode.TEXT.value)
    question_enc: Mapped[str] = mapped_column(Text)
    answer_enc: Mapped[str | None] = mapped_column(Text)
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    room_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    """The call's room (kind ``consultation``, subject ``interpretation``), once scheduled."""
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
