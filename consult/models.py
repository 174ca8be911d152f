"""Database models of the consult domain (SQLAlchemy 2 declarative).

Every change here needs a migration in ``consult/migrations/versions`` (``tests/consult`` checks
that the migrations produce exactly these tables). Later issues add roles, practitioners and
patients (identifiers encrypted with SM4) as tables of their own that point at ``users.id``, so
``User`` carries no personal identifiers beyond a display name.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, MetaData, String, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


VISIT_STATUS_SCHEDULED = "scheduled"


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


class User(Base):
    """An account: staff or patient.

    ``password_hash`` is ``None`` for an account that cannot sign in with a password (for example
    a patient who only joins through a link).
    """

    __tablename__ = "users"
    __table_args__ = (_one_of("kind", UserKind),)

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
    kind: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created_at_column()


class Visit(Base):
    """A consultation between one doctor and one patient.

    ``status`` is free text for now; a later issue puts it under a state machine.
    """

    __tablename__ = "visits"
    __table_args__ = (_one_of("mode", VisitMode),)

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
