"""Database models of the consult domain (SQLAlchemy 2 declarative).

Every change here needs a migration in ``consult/migrations/versions`` (``tests/consult`` checks
that the migrations produce exactly these tables). Personal identifiers live in ``patients``,
encrypted with SM4 (``consult.crypto``); ``User`` carries no identifier beyond a display name.
Columns named ``*_enc`` hold ciphertexts, ``*_index`` HMAC-SM3 blind indexes (R36).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from consult.permissions import Role
from consult.sqltypes import UtcDateTime, new_id, utc_now

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints, so later migrations can alter them (SQLite batch mode needs names)."""

ID_LENGTH = 32


class InstitutionLevel(StrEnum):
    """Tier of a hospital or clinic in the referral system."""

    TERTIARY = "tertiary"
    SECONDARY = "secondary"
    GRASSROOTS = "grassroots"


class UserKind(StrEnum):
    """Whether an account belongs to staff (any clinical or admin role) or to a patient."""

    STAFF = "staff"
    PATIENT = "patient"


class VisitMode(StrEnum):
    """How a visit is held."""

    VIDEO = "video"
    VOICE = "voice"
    TEXT = "text"


class VisitState(StrEnum):
    """Where a visit stands; the transitions between them are in ``consult.visit_flow``."""

    BOOKED = "booked"
    WAITING = "waiting"
    IN_ROOM = "in_room"
    ENDED = "ended"
    REFERRED = "referred"
    CANCELLED = "cancelled"


VISIT_STATUS_SCHEDULED = VisitState.BOOKED.value
"""Kept for old imports: a new visit's state (it was called "scheduled" before issue 4)."""


class SessionScope(StrEnum):
    """What a session may do: everything its role allows, or only enrol TOTP (R33)."""

    FULL = "full"
    ENROL = "enrol"


class VerificationStatus(StrEnum):
    """A practitioner's real-name and licence verification (R9)."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Title(StrEnum):
    """A physician's professional title."""

    RESIDENT = "resident"
    ATTENDING = "attending"
    ASSOCIATE_CHIEF = "associate_chief"
    CHIEF = "chief"


class DiagnosisSource(StrEnum):
    """Where a diagnosis was made: only ``offline`` (a physical institution) opens a follow-up."""

    OFFLINE = "offline"
    ONLINE = "online"


class DisputeState(StrEnum):
    """An identity dispute: open until staff decide whose the ID number is."""

    OPEN = "open"
    MERGED = "merged"
    """The claimant is the person: the record on file is theirs (or their ward's)."""
    REJECTED = "rejected"
    """The claim is wrong (a typo, another person): the claimant's provisional record goes."""


class AuditResult(StrEnum):
    """How an audited attempt ended."""

    OK = "ok"
    DENIED = "denied"
    """Refused by the permission table, ownership or scope."""
    REFUSED = "refused"
    """Refused by a rule of care (R2-R9) or the visit's state."""
    FAILED = "failed"
    """An authentication attempt failed."""


class ChatKind(StrEnum):
    """What a chat message carries; a retraction points at an earlier message (never an edit)."""

    TEXT = "text"
    IMAGE = "image"
    RETRACTION = "retraction"


class RoomKind(StrEnum):
    """What a room is for: a visit, a consultation between institutions, a study reviewed."""

    VISIT = "visit"
    CONSULTATION = "consultation"
    REVIEW = "review"


class RoomRole(StrEnum):
    """As what a person takes part in a room (apart from the account's role, R34)."""

    DOCTOR = "doctor"
    PATIENT = "patient"
    GUARDIAN = "guardian"
    COMPANION = "companion"
    INTERPRETER = "interpreter"
    INVITER = "inviter"
    INVITEE = "invitee"
    OBSERVER = "observer"


class ParticipationState(StrEnum):
    """Where a participant stands: waiting to be let in, admitted, or gone from the room."""

    WAITING = "waiting"
    ADMITTED = "admitted"
    LEFT = "left"


class ConsentKind(StrEnum):
    """Documents a patient signs for a visit (R5)."""

    RISK_NOTICE = "risk_notice"
    REFERRAL_REFUSAL = "referral_refusal"


def _one_of(column: str, allowed: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in allowed)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_allowed")


class Base(DeclarativeBase):
    """Declarative base holding the shared metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id_column() -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)


def _created_at_column() -> Mapped[datetime]:
    return mapped_column(UtcDateTime(), nullable=False, default=utc_now)


class Institution(Base):
    """A hospital or clinic."""

    __tablename__ = "institutions"
    __table_args__ = (_one_of("level", InstitutionLevel),)

    id: Mapped[str] = _id_column()
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created_at_column()


class Department(Base):
    """A department of an institution."""

    __tablename__ = "departments"

    id: Mapped[str] = _id_column()
    institution_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))


def _kind_from_role(context: Any) -> str:
    """Default ``users.kind`` from ``role``: a patient's account is a patient account."""
    role = context.get_current_parameters().get("role")
    return UserKind.PATIENT.value if role == Role.PATIENT else UserKind.STAFF.value


class User(Base):
    """An account: staff or patient, with exactly one role (R34).

    ``password_hash`` is ``None`` for an account that cannot sign in with a password (for example
    a patient who only joins through a link). ``totp_secret_enc`` is the SM4-encrypted TOTP
    secret; it counts only once ``totp_confirmed_at`` is set. ``failed_logins`` counts
    consecutive failures; the fifth locks the account until ``locked_until`` (R33).
    """

    __tablename__ = "users"
    __table_args__ = (
        _one_of("kind", UserKind),
        _one_of("role", Role),
        CheckConstraint("(role = 'patient') = (kind = 'patient')", name="kind_matches_role"),
    )

    id: Mapped[str] = _id_column()
    institution_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    department_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("departments.id"), index=True
    )
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default=_kind_from_role)
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created_at_column()
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    totp_secret_enc: Mapped[str | None] = mapped_column(String(255))
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    """The last accepted TOTP time step: a code is accepted once (replay protection)."""


class UserDepartment(Base):
    """The departments an operator is scoped to (R34); other roles use ``users.department_id``."""

    __tablename__ = "user_departments"

    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id"), primary_key=True
    )
    department_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("departments.id"), primary_key=True, index=True
    )


class SignInFailure(Base):
    """Failed sign-ins under a username that has no account (issue 13: no enumeration).

    Keyed by a keyed HMAC-SM3 of the case-folded username (never the name itself): after five
    failures such a name answers ``account_locked`` for ten minutes exactly as an account would,
    so lockout does not tell which usernames exist. Counted with one atomic statement.
    """

    __tablename__ = "sign_in_failures"

    username_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class EnrolmentLink(Base):
    """A one-time link an admin issues to a person to set their own credentials (R34).

    Only the SM3 digest of the link's secret is stored; it is shown once to the admin, expires,
    and is used at most once (a conditional update marks it used).
    """

    __tablename__ = "enrolment_links"

    id: Mapped[str] = _id_column()
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Session(Base):
    """A signed-in session. The bearer token itself is never stored, only its SM3 digest."""

    __tablename__ = "sessions"
    __table_args__ = (_one_of("scope", SessionScope),)

    id: Mapped[str] = _id_column()
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created_at_column()
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """The absolute end of the session, whatever its activity."""
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    source_ip: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    """One link of the audit chain (R22, R24, R25). Rows are only ever inserted.

    ``seq`` orders the chain (1, 2, 3, ... without gaps). ``digest`` is
    ``SM3(prev_digest || canonical JSON of the event)`` in the form ``digest_version`` names
    (1: without ``seq``, events older than migration 0004; 2: with it); see ``consult.audit``.
    ``details`` is canonical JSON and never carries personal data. Triggers refuse UPDATE and
    DELETE.
    """

    __tablename__ = "audit_events"
    __table_args__ = (_one_of("result", AuditResult),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    result: Mapped[str] = mapped_column(String(16))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    digest_version: Mapped[int] = mapped_column(Integer, server_default="1")


class Practitioner(Base):
    """A doctor's professional record (R9, R35), one per doctor account.

    ``signing_pin_hash`` is an Argon2id hash of the personal signing PIN, apart from the
    password; five wrong PINs lock signing until ``pin_locked_until``.
    """

    __tablename__ = "practitioners"
    __table_args__ = (
        _one_of("title", Title),
        _one_of("verification", VerificationStatus),
        CheckConstraint("years_of_practice >= 0", name="years_not_negative"),
    )

    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id"), primary_key=True
    )
    institution_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    department_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("departments.id"), index=True
    )
    licence_number: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(32))
    years_of_practice: Mapped[int] = mapped_column(Integer)
    specialty: Mapped[str] = mapped_column(String(128))
    verification: Mapped[str] = mapped_column(
        String(16),
        default=VerificationStatus.PENDING.value,
        server_default=VerificationStatus.PENDING.value,
    )
    verified_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    signing_pin_hash: Mapped[str | None] = mapped_column(String(255))
    pin_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pin_locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    online_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """Set while the doctor has opened online hours (R7): the queue accepts bookings."""
    created_at: Mapped[datetime] = _created_at_column()


class ScheduleSlot(Base):
    """A fixed period of a doctor's schedule (R7) that takes up to ``capacity`` bookings."""

    __tablename__ = "schedule_slots"
    __table_args__ = (
        CheckConstraint("capacity > 0", name="capacity_positive"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: Mapped[str] = _id_column()
    doctor_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    capacity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at_column()


class Patient(Base):
    """A person who receives care (R36, R37): identifiers encrypted, looked up by blind index.

    ``user_id`` is the person's own account, if any; a young child has none and is linked to a
    guardian's record instead (``guardian_id``), whose account acts for it once staff have
    verified the relation (``guardian_verified_at``).

    ``id_number_index`` is NULL on a *provisional* record: a patient registered a number that
    is on file already, which opens an :class:`IdentityDispute` for staff (the patient is not
    told, issue 13 item 3).
    """

    __tablename__ = "patients"

    id: Mapped[str] = _id_column()
    user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id"), unique=True
    )
    name: Mapped[str] = mapped_column(String(128))
    id_number_enc: Mapped[str] = mapped_column(String(255))
    id_number_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[str | None] = mapped_column(String(255))
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    birth_date: Mapped[date] = mapped_column(Date)
    guardian_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    guardian_relation: Mapped[str | None] = mapped_column(String(32))
    guardian_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """When staff verified the guardian relation; NULL: pending, the guardian cannot act yet."""
    guardian_verified_by: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id")
    )
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created_at_column()


class IdentityDispute(Base):
    """A patient registered (for themselves or a ward) an ID number already on file.

    The patient's record is made provisional (no blind index) and answered like any other, so
    that existence is never disclosed; staff compare documents and decide (issue 13 item 3).
    """

    __tablename__ = "identity_disputes"
    __table_args__ = (_one_of("state", DisputeState),)

    id: Mapped[str] = _id_column()
    claim_patient_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    """The claimant's provisional record (NULL once resolved: it is merged or removed)."""
    existing_patient_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    claimant_user_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    as_ward: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    state: Mapped[str] = mapped_column(String(16), default=DisputeState.OPEN.value, index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = _created_at_column()


class PriorDiagnosis(Base):
    """A diagnosis the patient holds (R2): only an offline one opens an online follow-up."""

    __tablename__ = "prior_diagnoses"
    __table_args__ = (_one_of("source", DiagnosisSource),)

    id: Mapped[str] = _id_column()
    patient_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    condition_code: Mapped[str] = mapped_column(String(16))
    """ICD-10 code; a follow-up matches on the three-character category."""
    condition_name: Mapped[str] = mapped_column(String(200))
    institution_name: Mapped[str] = mapped_column(String(200))
    diagnosed_on: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created_at_column()


class Visit(Base):
    """An online visit between one doctor and one patient (R1-R8).

    ``patient_id`` is the patient-side *account* (the guardian's for a child);
    ``patient_record_id`` the person seen. ``status`` changes only through
    ``consult.visit_flow`` (one transition table, one ``_set_state``).
    """

    __tablename__ = "visits"
    __table_args__ = (_one_of("mode", VisitMode), _one_of("status", VisitState))

    id: Mapped[str] = _id_column()
    institution_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    doctor_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    patient_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(
        String(32), default=VISIT_STATUS_SCHEDULED, server_default=VISIT_STATUS_SCHEDULED
    )
    created_at: Mapped[datetime] = _created_at_column()
    department_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("departments.id"), index=True
    )
    patient_record_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    diagnosis_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("prior_diagnoses.id")
    )
    slot_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("schedule_slots.id"), index=True
    )
    booked_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    checked_in_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    guardian_present: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    admitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    referral_reason: Mapped[str | None] = mapped_column(Text)
    referral_appointment: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Consent(Base):
    """A document the patient signed for a visit (R5): what text, which version, when, by whom.

    ``document_digest`` is the SM3 digest of the exact text shown, so the record proves which
    wording was accepted.
    """

    __tablename__ = "consents"
    __table_args__ = (
        _one_of("kind", ConsentKind),
        UniqueConstraint("visit_id", "kind", name="uq_consents_visit_id_kind"),
    )

    id: Mapped[str] = _id_column()
    visit_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("visits.id"))
    kind: Mapped[str] = mapped_column(String(32))
    signer_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    document_version: Mapped[str] = mapped_column(String(64))
    document_digest: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    source_ip: Mapped[str | None] = mapped_column(String(64))


# --- Rooms (issue 11) ---------------------------------------------------------------------------


class Room(Base):
    """Where people meet: a visit's consult room, a consultation's MDT room, a review.

    ``subject_type``/``subject_id`` name what the room belongs to (``visit`` and the visit's
    id). Signaling rooms, join tokens, chat, recordings and the timeline are keyed by the room's
    id. A visit's room made by migration 0007 kept the visit's id as its own: the append-only
    audit chain and the recordings on disk name the room by it.
    """

    __tablename__ = "rooms"
    __table_args__ = (
        _one_of("kind", RoomKind),
        UniqueConstraint("subject_type", "subject_id", name="uq_rooms_subject"),
    )

    id: Mapped[str] = _id_column()
    kind: Mapped[str] = mapped_column(String(16))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    institution_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    """The institution that holds the room (the visit's; a consultation's requester)."""
    created_at: Mapped[datetime] = _created_at_column()
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Participation(Base):
    """One person in one room: its room role, whether it is admitted, and for whom it acts.

    One row per person and room (a second tab of the same person takes over its socket, it is
    not a second participation). ``arrived_at`` is set when the person came to the waiting room
    (checked in, redeemed an invitation); R4 asks a guardian to have arrived before the doctor
    starts. ``institution_id`` is the institution the person takes part for (a consultation's
    invitee comes from another one).
    """

    __tablename__ = "participations"
    __table_args__ = (
        _one_of("room_role", RoomRole),
        _one_of("state", ParticipationState),
        UniqueConstraint("room_id", "user_id", name="uq_participations_room_id_user_id"),
    )

    id: Mapped[str] = _id_column()
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("rooms.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"), index=True)
    room_role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    institution_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id")
    )
    invited_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    arrived_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = _created_at_column()
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RoomInvitation(Base):
    """A single-use link that lets one more person into a room in a room role (a companion, an
    interpreter). Only the SM3 digest of the link's secret is stored; ``used_at`` is set once.
    """

    __tablename__ = "room_invitations"
    __table_args__ = (_one_of("room_role", RoomRole),)

    id: Mapped[str] = _id_column()
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("rooms.id"), index=True)
    room_role: Mapped[str] = mapped_column(String(16))
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64))
    """The name the doctor gave the invitee (shown in the waiting room and on its tile)."""
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    used_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))


# --- Chat (issue 6: R1, R22, R23, R38) ----------------------------------------------------------


class ChatImage(Base):
    """An image shared in a room: re-encoded without metadata, SM4-encrypted, with a thumbnail.

    ``data_enc`` and ``thumb_enc`` are ``FieldCipher.encrypt_bytes`` outputs; only the room's
    participants are served them (``consult.chat_images``).
    """

    __tablename__ = "chat_images"

    id: Mapped[str] = _id_column()
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("rooms.id"), index=True)
    uploader_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    data_enc: Mapped[bytes] = mapped_column(LargeBinary)
    thumb_content_type: Mapped[str] = mapped_column(String(32))
    thumb_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at_column()


class ChatMessage(Base):
    """One message of a room's dialogue (R22, R23). Rows are only ever inserted.

    ``seq`` numbers a room's messages 1, 2, 3, ... (unique per room): a client that saw up to N
    asks for everything after N. ``text_enc`` is the SM4-encrypted text (patient data, R36).
    """

    __tablename__ = "chat_messages"
    __table_args__ = (
        _one_of("kind", ChatKind),
        UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_id_seq"),
        CheckConstraint("seq > 0", name="seq_positive"),
    )

    id: Mapped[str] = _id_column()
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("rooms.id"))
    seq: Mapped[int] = mapped_column(Integer)
    sender_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    sender_role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    text_enc: Mapped[str | None] = mapped_column(Text)
    image_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("chat_images.id"))
    retracts_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("chat_messages.id")
    )
    created_at: Mapped[datetime] = _created_at_column()


class ChatBlock(Base):
    """A message the sensitive-word filter stopped (R38): kept, encrypted, never delivered.

    The audit event of the block carries ``text_mac`` (HMAC-SM3 of the original text under the
    field key), which binds this row's text to the chain.
    """

    __tablename__ = "chat_blocks"

    id: Mapped[str] = _id_column()
    room_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("rooms.id"), index=True)
    sender_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    sender_role: Mapped[str] = mapped_column(String(16))
    text_enc: Mapped[str] = mapped_column(Text)
    word_ids: Mapped[str] = mapped_column(Text)
    """The matched words' ids, comma-separated."""
    created_at: Mapped[datetime] = _created_at_column()


class SensitiveWord(Base):
    """One entry of the sensitive-word list (R38), kept by operators.

    ``normalized`` is the word after ``consult.sensitive_words.normalise``: two spellings that
    normalise alike are one entry.
    """

    __tablename__ = "sensitive_words"

    id: Mapped[str] = _id_column()
    word: Mapped[str] = mapped_column(String(64))
    normalized: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created_at_column()


# --- Ratings (issue 12: R40, R41) ---------------------------------------------------------------


class VisitRating(Base):
    """The patient side's rating of a finished visit (R40), and the doctor's one reply.

    One per visit (``visit_id`` unique: of two submits at once exactly one lands). ``text_enc``
    and ``reply_enc`` are SM4-encrypted (free text about one's care is patient data, R36).
    ``edited_at`` set: the one edit is used; ``replied_at`` set: the doctor has replied.
    Changes only through ``consult.ratings``.
    """

    __tablename__ = "visit_ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),)

    id: Mapped[str] = _id_column()
    visit_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("visits.id"), unique=True)
    rated_by: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    stars: Mapped[int] = mapped_column(Integer)
    text_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at_column()
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reply_enc: Mapped[str | None] = mapped_column(Text)
    replied_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    replied_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


# --- Reminders (issue 14: R11) ------------------------------------------------------------------


class WebhookState(StrEnum):
    """Where a reminder's webhook delivery (SMS/WeChat gateway) stands."""

    OFF = "off"
    """No webhook was configured when the reminder was made."""
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up after the bounded number of attempts."""


class Reminder(Base):
    """One reminder for one recipient (in-app, and the webhook for SMS/WeChat).

    Made exactly once: the key ``(subject_type, subject_id, kind, recipient_id, at)`` is unique
    and rows are inserted conditionally, so two processes, or one restarted, never make (nor
    send) the same reminder twice. ``at`` is the moment it is about (the invitation's deadline,
    the session's start, the answer's time): a session moved to another time is reminded again.
    No patient data: ids, the kind and the moment only. Changes only through
    ``consult.reminders``.
    """

    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint(
            "subject_type", "subject_id", "kind", "recipient_id", "at", name="uq_reminders_key"
        ),
        _one_of("webhook_state", WebhookState),
        Index("ix_reminders_recipient_created", "recipient_id", "created_at"),
        Index("ix_reminders_webhook_due", "webhook_state", "webhook_next_at"),
    )

    id: Mapped[str] = _id_column()
    kind: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    consultation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    recipient_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = _created_at_column()
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    webhook_state: Mapped[str] = mapped_column(String(16), default=WebhookState.OFF.value)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    webhook_error: Mapped[str | None] = mapped_column(String(200))
    """The last failure (``http 500``, ``timeout``, the exception's class): never a body."""
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
