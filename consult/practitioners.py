"""Practitioners (R9, R35): licence, title, years of practice, verification, signing PIN.

A doctor account gets a practitioner record from an admin or an operator of its department;
an admin or such an operator verifies it. Only a verified doctor can go online, be booked or
admit a patient (R9). The signing PIN (Argon2id, apart from the password) must be entered for
anything that will carry the doctor's signature (R27, R35): five wrong PINs lock signing for
10 minutes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Final

from sqlalchemy import select

from consult import passwords
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    ConsultError,
    DepartmentNotFound,
    InvalidInput,
    PermissionDenied,
    PractitionerExists,
    PractitionerNotFound,
    PractitionerNotVerified,
    SigningPinInvalid,
    SigningPinLocked,
    SigningPinNotSet,
    UserNotFound,
    WeakPin,
)
from consult.models import (
    AuditResult,
    Department,
    Practitioner,
    Title,
    User,
    VerificationStatus,
)
from consult.permissions import Role, in_scope
from consult.sqltypes import utc_now

logger = logging.getLogger(__name__)

PIN_PATTERN: Final = re.compile(r"^\d{6,12}$")
PIN_MAX_FAILURES: Final = 5
PIN_LOCKOUT: Final = timedelta(minutes=10)
LICENCE_PATTERN: Final = re.compile(r"^[0-9A-Za-z-]{6,64}$")


@dataclass(frozen=True)
class PractitionerView:
    """A practitioner's professional record (no secrets)."""

    user_id: str
    display_name: str
    institution_id: str
    department_id: str
    licence_number: str
    title: Title
    years_of_practice: int
    specialty: str
    verification: VerificationStatus
    verified_at: datetime | None
    online: bool
    has_signing_pin: bool


def _view(row: Practitioner, display_name: str) -> PractitionerView:
    return PractitionerView(
        user_id=row.user_id,
        display_name=display_name,
        institution_id=row.institution_id,
        department_id=row.department_id,
        licence_number=row.licence_number,
        title=Title(row.title),
        years_of_practice=row.years_of_practice,
        specialty=row.specialty,
        verification=VerificationStatus(row.verification),
        verified_at=row.verified_at,
        online=row.online_since is not None,
        has_signing_pin=row.signing_pin_hash is not None,
    )


def check_pin(pin: str) -> None:
    """Raise :class:`WeakPin` unless ``pin`` is 6-12 digits, not one digit repeated, not a run."""
    if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
        raise WeakPin()
    steps = {int(b) - int(a) for a, b in pairwise(pin)}
    if len(set(pin)) == 1 or steps in ({1}, {-1}):
        raise WeakPin()


def _in_scope_or_refuse(
    tx: AuditTx, actor: Actor, action: str, row: Practitioner | None, department_id: str
) -> None:
    """Operators act only within their departments (R34)."""
    institution_id = row.institution_id if row is not None else actor.institution_id
    if not in_scope(actor, institution_id=institution_id, department_id=department_id):
        raise tx.refuse(
            PermissionDenied("Outside your departments."),
            actor=actor,
            action=action,
            object_type="practitioner",
            object_id=row.user_id if row is not None else None,
        )


async def register_practitioner(
    db: Database,
    actor: Actor,
    *,
    user_id: str,
    department_id: str,
    licence_number: str,
    title: Title | str,
    years_of_practice: int,
    specialty: str,
) -> PractitionerView:
    """Give a doctor account its professional record, pending verification.

    ``practitioner.create``: admin, or an operator of ``department_id``. Raises
    :class:`UserNotFound`, :class:`InvalidInput` (not a doctor account, bad values),
    :class:`DepartmentNotFound`, :class:`PractitionerExists`.
    """
    await authorize(db, actor, "practitioner.create", object_type="practitioner", object_id=user_id)
    try:
        title = Title(title)
    except ValueError:
        raise InvalidInput("Unknown title.") from None
    licence_number = (licence_number or "").strip()
    if not LICENCE_PATTERN.match(licence_number):
        raise InvalidInput("A licence number is 6-64 letters, digits or '-'.")
    if isinstance(years_of_practice, bool) or not 0 <= years_of_practice <= 70:
        raise InvalidInput("Years of practice must be 0-70.")
    specialty = (specialty or "").strip()
    if not 1 <= len(specialty) <= 128:
        raise InvalidInput("The specialty must be 1-128 characters.")
    async with audited(db) as tx:
        session = tx.session
        user = await session.get(User, user_id)
        if user is None:
            raise UserNotFound()
        if user.role != Role.DOCTOR.value:
            raise InvalidInput("Only doctor accounts have a practitioner record.")
        department = await session.get(Department, department_id)
        if department is None or department.institution_id != user.institution_id:
            raise DepartmentNotFound()
        _in_scope_or_refuse(tx, actor, "practitioner.create", None, department_id)
        if await session.get(Practitioner, user_id) is not None or await session.scalar(
            select(Practitioner.user_id).where(Practitioner.licence_number == licence_number)
        ):
            raise PractitionerExists()
        row = Practitioner(
            user_id=user_id,
            institution_id=department.institution_id,
            department_id=department_id,
            licence_number=licence_number,
            title=title.value,
            years_of_practice=years_of_practice,
            specialty=specialty,
            verification=VerificationStatus.PENDING.value,
            pin_failures=0,
            created_at=utc_now(),
        )
        session.add(row)
        await tx.record(
            "practitioner.create",
            actor=actor,
            object_type="practitioner",
            object_id=user_id,
            details={"title": title.value, "department_id": department_id},
        )
        display_name = user.display_name
    return _view(row, display_name)


async def verify_practitioner(
    db: Database, actor: Actor, user_id: str, *, approve: bool = True
) -> PractitionerView:
    """Record the real-name and licence check (R9): ``verified`` or ``rejected``.

    ``practitioner.verify``: admin, or an operator of the practitioner's department. A
    rejected or re-verified record can be decided again; going online needs ``verified``.
    """
    await authorize(db, actor, "practitioner.verify", object_type="practitioner", object_id=user_id)
    async with audited(db) as tx:
        row = await tx.session.get(Practitioner, user_id, with_for_update=True)
        if row is None:
            raise PractitionerNotFound()
        _in_scope_or_refuse(tx, actor, "practitioner.verify", row, row.department_id)
        status = VerificationStatus.VERIFIED if approve else VerificationStatus.REJECTED
        row.verification = status.value
        row.verified_by = actor.user_id
        row.verified_at = utc_now()
        if not approve:
            row.online_since = None
        await tx.record(
            "practitioner.verify",
            actor=actor,
            object_type="practitioner",
            object_id=user_id,
            details={"status": status.value},
        )
        user = await tx.session.get(User, user_id)
        assert user is not None
        display_name = user.display_name
    return _view(row, display_name)


async def get_practitioner(db: Database, actor: Actor, user_id: str) -> PractitionerView:
    """One practitioner's record (``practitioner.view``)."""
    await authorize(db, actor, "practitioner.view", object_type="practitioner", object_id=user_id)
    async with db.session() as session:
        row = await session.get(Practitioner, user_id)
        user = await session.get(User, user_id)
    if row is None or user is None:
        raise PractitionerNotFound()
    return _view(row, user.display_name)


async def list_practitioners(
    db: Database,
    actor: Actor,
    *,
    institution_id: str | None = None,
    department_id: str | None = None,
    verified_only: bool = True,
    online_only: bool = False,
) -> list[PractitionerView]:
    """Practitioners to choose from (``practitioner.list``): verified ones unless told otherwise."""
    await authorize(db, actor, "practitioner.list", object_type="practitioner")
    statement = select(Practitioner, User.display_name).join(User, User.id == Practitioner.user_id)
    statement = statement.where(User.is_active.is_(True))
    if institution_id is not None:
        statement = statement.where(Practitioner.institution_id == institution_id)
    if department_id is not None:
        statement = statement.where(Practitioner.department_id == department_id)
    if verified_only:
        statement = statement.where(Practitioner.verification == VerificationStatus.VERIFIED.value)
    if online_only:
        statement = statement.where(Practitioner.online_since.is_not(None))
    async with db.session() as session:
        rows = (await session.execute(statement.order_by(User.display_name))).all()
    return [_view(row, name) for row, name in rows]


async def set_online(db: Database, actor: Actor, online: bool) -> None:
    """Open or close the doctor's online hours (R7); only a verified doctor can open them (R9)."""
    await authorize(db, actor, "practitioner.go_online", object_type="practitioner")
    async with audited(db) as tx:
        row = await tx.session.get(Practitioner, actor.user_id, with_for_update=True)
        if row is None:
            raise PractitionerNotFound()
        if online and row.verification != VerificationStatus.VERIFIED.value:
            raise tx.refuse(
                PractitionerNotVerified(),
                actor=actor,
                action="practitioner.go_online",
                object_type="practitioner",
                object_id=row.user_id,
            )
        row.online_since = (row.online_since or utc_now()) if online else None
        await tx.record(
            "practitioner.go_online",
            actor=actor,
            object_type="practitioner",
            object_id=row.user_id,
            details={"online": online},
        )


async def set_signing_pin(db: Database, actor: Actor, current_password: str, pin: str) -> None:
    """Set or change one's own signing PIN, confirming with the account password (R35).

    Raises :class:`WeakPin`, :class:`PractitionerNotFound`, and a ``forbidden``
    :class:`PermissionDenied` for a wrong password (audited).
    """
    await authorize(db, actor, "practitioner.set_pin", object_type="practitioner")
    check_pin(pin)
    async with db.session() as session:
        user = await session.get(User, actor.user_id)
        row = await session.get(Practitioner, actor.user_id)
    if row is None or user is None:
        raise PractitionerNotFound()
    right = user.password_hash is not None and await passwords.verify_async(
        user.password_hash, current_password
    )
    pin_hash = await passwords.hash_async(pin) if right else None
    async with audited(db) as tx:
        if pin_hash is None:
            raise tx.refuse(
                PermissionDenied("The password is wrong."),
                actor=actor,
                action="practitioner.set_pin",
                object_type="practitioner",
                object_id=actor.user_id,
            )
        locked = await tx.session.get(Practitioner, actor.user_id, with_for_update=True)
        assert locked is not None
        locked.signing_pin_hash = pin_hash
        locked.pin_failures = 0
        locked.pin_locked_until = None
        await tx.record(
            "practitioner.set_pin",
            actor=actor,
            object_type="practitioner",
            object_id=actor.user_id,
        )


async def verify_signing_pin(
    db: Database, actor: Actor, pin: str, *, purpose: str, now: datetime | None = None
) -> None:
    """Check the doctor's signing PIN before signing ``purpose`` (e.g. ``"report:<id>"``).

    Raises :class:`SigningPinNotSet`, :class:`SigningPinLocked` (five failures, 10 minutes),
    :class:`SigningPinInvalid`. Every attempt is audited; the purpose goes into the details.
    """
    await authorize(db, actor, "practitioner.check_pin", object_type="practitioner")
    now = now or utc_now()
    async with db.session() as session:
        row = await session.get(Practitioner, actor.user_id)
    if row is None:
        raise PractitionerNotFound()
    if row.signing_pin_hash is None:
        raise SigningPinNotSet()
    locked = row.pin_locked_until is not None and row.pin_locked_until > now
    right = not locked and await passwords.verify_async(row.signing_pin_hash, pin)
    error: ConsultError | None = None
    async with audited(db) as tx:
        current = await tx.session.get(Practitioner, actor.user_id, with_for_update=True)
        assert current is not None
        if locked:
            error = SigningPinLocked()
        elif not right:
            current.pin_failures += 1
            error = SigningPinInvalid()
            if current.pin_failures >= PIN_MAX_FAILURES:
                current.pin_failures = 0
                current.pin_locked_until = now + PIN_LOCKOUT
                error = SigningPinLocked()
        else:
            current.pin_failures = 0
        await tx.record(
            "practitioner.check_pin",
            actor=actor,
            object_type="practitioner",
            object_id=actor.user_id,
            result=AuditResult.OK if error is None else AuditResult.DENIED,
            details={"purpose": purpose[:100], **({"code": error.code} if error else {})},
        )
    if error is not None:
        raise error


async def require_verified(tx: AuditTx, actor: Actor, doctor_id: str, action: str) -> Practitioner:
    """The doctor's practitioner record, or an audited :class:`PractitionerNotVerified` (R9)."""
    row = await tx.session.get(Practitioner, doctor_id)
    if row is None or row.verification != VerificationStatus.VERIFIED.value:
        raise tx.refuse(
            PractitionerNotVerified(),
            actor=actor,
            action=action,
            object_type="practitioner",
            object_id=doctor_id,
        )
    return row
