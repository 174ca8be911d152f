"""Accounts (R33, R34): creation and removal by admin, passwords, TOTP enrolment.

Sign-in, sessions and sign-out live in :mod:`consult.sessions` and are re-exported here. Every
service takes the acting :class:`Actor`, checks the permission table (refusals are audited) and
records what it changed in the audit chain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select

from consult import passwords
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    CredentialsSetByPerson,
    DepartmentNotFound,
    InstitutionNotFound,
    InvalidCredentials,
    InvalidInput,
    PermissionDenied,
    TotpAlreadyEnrolled,
    TotpInvalid,
    TotpNotEnrolled,
    UsernameTaken,
    UserNotFound,
    WeakPassword,
)
from consult.events import AccessRevoked, publish
from consult.models import (
    Department,
    Institution,
    Session,
    SessionScope,
    User,
    UserDepartment,
)
from consult.password_policy import check_password
from consult.permissions import Role
from consult.sessions import (
    TOTP_SECRET_CONTEXT,
    SignInResult,
    authenticate,
    revoke_sessions,
    sign_in,
    sign_out,
)
from consult.sqltypes import new_id, utc_now
from consult.totp import matching_step, new_secret, provisioning_uri

__all__ = [
    "AccountView",
    "SignInResult",
    "TotpEnrolment",
    "authenticate",
    "change_password",
    "confirm_totp",
    "create_user",
    "deactivate_user",
    "enrol_totp",
    "get_account",
    "list_accounts",
    "my_account",
    "reset_password",
    "reset_totp",
    "sign_in",
    "sign_out",
    "unlock_user",
]

USERNAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$")
DEFAULT_ISSUER: Final = "Teleconsult"
_INSTITUTION_ROLES: Final = frozenset({Role.DOCTOR, Role.NURSE, Role.OPERATOR})
_CREDENTIALS_BY_PERSON: Final = frozenset({Role.DOCTOR})
"""As :data:`consult.enrolment.CREDENTIALS_BY_PERSON` (that module imports this one)."""


@dataclass(frozen=True)
class AccountView:
    """What an admin sees of an account: no clinical data, no secrets."""

    id: str
    username: str
    display_name: str
    role: Role
    institution_id: str | None
    department_id: str | None
    department_ids: frozenset[str]
    is_active: bool
    locked_until: datetime | None
    totp_enrolled: bool
    created_at: datetime


@dataclass(frozen=True)
class TotpEnrolment:
    """A pending TOTP secret to show once (as text and as an ``otpauth://`` QR code)."""

    secret: str
    provisioning_uri: str


def _view(user: User, departments: Iterable[str]) -> AccountView:
    return AccountView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        institution_id=user.institution_id,
        department_id=user.department_id,
        department_ids=frozenset(departments),
        is_active=user.is_active,
        locked_until=user.locked_until,
        totp_enrolled=user.totp_confirmed_at is not None,
        created_at=user.created_at,
    )


async def create_user(
    db: Database,
    actor: Actor,
    *,
    username: str,
    display_name: str,
    role: Role | str,
    password: str | None,
    institution_id: str | None = None,
    department_id: str | None = None,
    operator_department_ids: Iterable[str] = (),
) -> AccountView:
    """Create an account (``account.create``: admin, or the command line).

    ``password=None`` makes an account that cannot sign in with a password. Operators need at
    least one department in ``operator_department_ids`` (their scope, R34); doctors, nurses and
    operators need an institution. Raises :class:`InvalidInput`, :class:`WeakPassword`,
    :class:`UsernameTaken`, :class:`InstitutionNotFound`, :class:`DepartmentNotFound`.
    """
    await authorize(db, actor, "account.create", object_type="user")
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput("Unknown role.") from None
    if not isinstance(username, str) or not USERNAME_PATTERN.match(username):
        raise InvalidInput("Usernames are 3-64 letters, digits, '.', '_', '@' or '-'.")
    display_name = (display_name or "").strip()
    if not 1 <= len(display_name) <= 128:
        raise InvalidInput("The display name must be 1-128 characters.")
    scope = sorted(set(operator_department_ids))
    if role is Role.OPERATOR and not scope:
        raise InvalidInput("An operator needs at least one department.")
    if role is not Role.OPERATOR and scope:
        raise InvalidInput("Only operators have department scopes.")
    if role in _INSTITUTION_ROLES and institution_id is None:
        raise InvalidInput("Doctors, nurses and operators belong to an institution.")
    password_hash = None
    if password is not None:
        check_password(password, username=username)
        password_hash = await passwords.hash_async(password)
    async with audited(db) as tx:
        session = tx.session
        if await session.scalar(select(User.id).where(User.username == username)):
            raise UsernameTaken()
        if institution_id is not None and await session.get(Institution, institution_id) is None:
            raise InstitutionNotFound()
        for dep in [department_id, *scope] if department_id else scope:
            department = await session.get(Department, dep)
            if department is None or department.institution_id != institution_id:
                raise DepartmentNotFound()
        user = User(
            id=new_id(),
            username=username,
            display_name=display_name,
            role=role.value,
            institution_id=institution_id,
            department_id=department_id,
            password_hash=password_hash,
            password_changed_at=utc_now() if password_hash else None,
        )
        session.add(user)
        await session.flush()
        for dep in scope:
            session.add(UserDepartment(user_id=user.id, department_id=dep))
        await tx.record(
            "account.create",
            actor=actor,
            object_type="user",
            object_id=user.id,
            details={"role": role.value, "departments": scope},
        )
    return _view(user, scope)


async def _load_user(db: Database, user_id: str) -> tuple[User, list[str]]:
    async with db.session() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise UserNotFound()
        departments = (
            await session.scalars(
                select(UserDepartment.department_id).where(UserDepartment.user_id == user_id)
            )
        ).all()
    return user, list(departments)


async def get_account(db: Database, actor: Actor, user_id: str) -> AccountView:
    """One account (``account.view``: admin)."""
    await authorize(db, actor, "account.view", object_type="user", object_id=user_id)
    user, departments = await _load_user(db, user_id)
    return _view(user, departments)


async def my_account(db: Database, actor: Actor) -> AccountView:
    """The actor's own account (``session.view``: everyone, also during TOTP enrolment)."""
    await authorize(db, actor, "session.view", object_type="user", object_id=actor.user_id)
    if actor.user_id is None:
        raise UserNotFound()
    user, departments = await _load_user(db, actor.user_id)
    return _view(user, departments)


async def list_accounts(
    db: Database, actor: Actor, *, role: Role | None = None, limit: int = 200, offset: int = 0
) -> list[AccountView]:
    """Accounts by username (``account.list``: admin)."""
    await authorize(db, actor, "account.list", object_type="user")
    async with db.session() as session:
        statement = select(User).order_by(User.username).limit(min(limit, 1000)).offset(offset)
        if role is not None:
            statement = statement.where(User.role == role.value)
        users = (await session.scalars(statement)).all()
        links = (
            await session.execute(
                select(UserDepartment.user_id, UserDepartment.department_id).where(
                    UserDepartment.user_id.in_([u.id for u in users])
                )
            )
        ).all()
    scopes: dict[str, list[str]] = {}
    for user_id, department_id in links:
        scopes.setdefault(user_id, []).append(department_id)
    return [_view(user, scopes.get(user.id, [])) for user in users]


async def _admin_change(
    db: Database,
    actor: Actor,
    action: str,
    user_id: str,
    *,
    revoke: str | None,
    details: dict[str, str | int | bool] | None = None,
    **values: object,
) -> None:
    """Apply ``values`` to one account as an admin action; revoke its sessions if asked."""
    await authorize(db, actor, action, object_type="user", object_id=user_id)
    async with audited(db) as tx:
        user = await tx.session.get(User, user_id, with_for_update=True)
        if user is None:
            raise UserNotFound()
        if user_id == actor.user_id and action == "account.deactivate":
            raise tx.refuse(
                PermissionDenied("You cannot deactivate your own account."),
                actor=actor,
                action=action,
                object_type="user",
                object_id=user_id,
            )
        for name, value in values.items():
            setattr(user, name, value)
        if revoke is not None:
            await revoke_sessions(tx, user_id, revoke)
        await tx.record(action, actor=actor, object_type="user", object_id=user_id, details=details)


async def deactivate_user(db: Database, actor: Actor, user_id: str) -> None:
    """Deactivate an account and end its sessions (``account.deactivate``; R34 staff leaving)."""
    await _admin_change(
        db, actor, "account.deactivate", user_id, revoke="deactivated", is_active=False
    )


async def unlock_user(db: Database, actor: Actor, user_id: str) -> None:
    """Lift a lockout now (``account.unlock``)."""
    await _admin_change(
        db, actor, "account.unlock", user_id, revoke=None, failed_logins=0, locked_until=None
    )


async def reset_totp(db: Database, actor: Actor, user_id: str) -> None:
    """Forget an account's TOTP secret (lost phone) and end its sessions (``account.reset_totp``).

    A staff account must enrol again at its next sign-in.
    """
    await _admin_change(
        db,
        actor,
        "account.reset_totp",
        user_id,
        revoke="totp_reset",
        totp_secret_enc=None,
        totp_confirmed_at=None,
        totp_last_step=None,
    )


async def reset_password(db: Database, actor: Actor, user_id: str, new_password: str) -> None:
    """Set a new password for an account and end its sessions (``account.reset_password``).

    Refused for a doctor (``credentials_set_by_person``, R34): issue a one-time enrolment link
    instead (:func:`consult.enrolment.issue_enrolment_link`)."""
    await authorize(db, actor, "account.reset_password", object_type="user", object_id=user_id)
    user, _ = await _load_user(db, user_id)
    if Role(user.role) in _CREDENTIALS_BY_PERSON:  # R34: the admin would know it
        async with audited(db) as tx:
            raise tx.refuse(
                CredentialsSetByPerson(),
                actor=actor,
                action="account.reset_password",
                object_type="user",
                object_id=user_id,
            )
    check_password(new_password, username=user.username)
    new_hash = await passwords.hash_async(new_password)
    await _admin_change(
        db,
        actor,
        "account.reset_password",
        user_id,
        revoke="password_reset",
        password_hash=new_hash,
        password_changed_at=utc_now(),
        failed_logins=0,
        locked_until=None,
    )


async def change_password(
    db: Database, actor: Actor, current_password: str, new_password: str
) -> None:
    """Change one's own password; other sessions of the account end (``account.change_password``).

    Raises :class:`InvalidCredentials` for a wrong current password (audited as a failure),
    :class:`WeakPassword` when the new one breaks the policy or equals the current one.
    """
    await authorize(db, actor, "account.change_password", object_type="user")
    assert actor.user_id is not None
    user, _ = await _load_user(db, actor.user_id)
    right = user.password_hash is not None and await passwords.verify_async(
        user.password_hash, current_password
    )
    if not right:
        async with audited(db) as tx:
            raise tx.refuse(
                InvalidCredentials("The current password is wrong."),
                actor=actor,
                action="account.change_password",
                object_type="user",
                object_id=user.id,
            )
    if new_password == current_password:
        raise WeakPassword("The new password must differ from the current one.")
    check_password(new_password, username=user.username)
    new_hash = await passwords.hash_async(new_password)
    async with audited(db) as tx:
        row = await tx.session.get(User, user.id, with_for_update=True)
        assert row is not None
        row.password_hash = new_hash
        row.password_changed_at = utc_now()
        await revoke_sessions(tx, user.id, "password_changed", keep=actor.session_id)
        # this session stays; the join tokens it issued (stamped with the old password) do not
        publish(tx, AccessRevoked(user.id, "password_changed", tokens_only=True))
        await tx.record(
            "account.change_password", actor=actor, object_type="user", object_id=user.id
        )


async def enrol_totp(db: Database, actor: Actor, *, issuer: str = DEFAULT_ISSUER) -> TotpEnrolment:
    """Start TOTP enrolment: a new secret, stored SM4-encrypted, pending confirmation.

    Allowed in an enrolment-only session. Raises :class:`TotpAlreadyEnrolled` when a confirmed
    secret exists (an admin resets it with :func:`reset_totp`).
    """
    await authorize(db, actor, "account.enrol_totp", object_type="user", object_id=actor.user_id)
    secret = new_secret()
    async with audited(db) as tx:
        user = await tx.session.get(User, actor.user_id, with_for_update=True)
        if user is None:
            raise UserNotFound()
        if user.totp_confirmed_at is not None:
            raise tx.refuse(
                TotpAlreadyEnrolled(),
                actor=actor,
                action="account.enrol_totp",
                object_type="user",
                object_id=user.id,
            )
        user.totp_secret_enc = db.cipher.encrypt(secret, TOTP_SECRET_CONTEXT)
        user.totp_last_step = None
        await tx.record("account.enrol_totp", actor=actor, object_type="user", object_id=user.id)
        username = user.username
    return TotpEnrolment(secret, provisioning_uri(secret, account=username, issuer=issuer))


async def confirm_totp(
    db: Database, actor: Actor, code: str, *, now: datetime | None = None
) -> None:
    """Confirm the pending TOTP secret with a current code; the session becomes a full one.

    Raises :class:`TotpNotEnrolled` without a pending secret, :class:`TotpInvalid` for a wrong
    code (both audited).
    """
    await authorize(db, actor, "account.confirm_totp", object_type="user", object_id=actor.user_id)
    now = now or utc_now()
    async with audited(db) as tx:
        user = await tx.session.get(User, actor.user_id, with_for_update=True)
        if user is None:
            raise UserNotFound()
        refusal: Exception | None = None
        if user.totp_confirmed_at is not None:
            refusal = TotpAlreadyEnrolled()
        elif user.totp_secret_enc is None:
            refusal = TotpNotEnrolled()
        else:
            secret = db.cipher.decrypt(user.totp_secret_enc, TOTP_SECRET_CONTEXT)
            step = matching_step(secret, code, now, last_step=user.totp_last_step)
            if step is None:
                refusal = TotpInvalid()
        if refusal is not None:
            assert isinstance(refusal, TotpAlreadyEnrolled | TotpNotEnrolled | TotpInvalid)
            raise tx.refuse(
                refusal,
                actor=actor,
                action="account.confirm_totp",
                object_type="user",
                object_id=user.id,
            )
        user.totp_confirmed_at = now
        user.totp_last_step = step
        session = await tx.session.get(Session, actor.session_id)
        if session is not None and session.user_id == user.id:
            session.scope = SessionScope.FULL.value
        await tx.record("account.confirm_totp", actor=actor, object_type="user", object_id=user.id)


async def count_admins(db: Database) -> int:
    """How many active admin accounts exist (the command line bootstraps the first)."""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).where(User.role == Role.ADMIN.value, User.is_active.is_(True))
        )
    return int(count or 0)
