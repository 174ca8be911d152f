"""One-time enrolment links: a person sets their own credentials after an admin reset (R34).

Separation of duties: an admin maintains accounts but must not be able to act as a clinician.
So for the roles in :data:`CREDENTIALS_BY_PERSON` an admin cannot set a password
(``credentials_set_by_person``); a reset instead clears the password and the second factor, ends
every session and issues a link that is shown once, expires after :data:`LINK_LIFETIME` and
works once. The person opens it, sets a password the admin never sees, and then signs in to an
enrolment-only session that may do nothing but enrol a new TOTP secret: clinical data stays out
of reach until they have. Only the link's SM3 digest is stored.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update

from consult import passwords
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.crypto import sm3_hex
from consult.db import Database
from consult.errors import EnrolmentLinkInvalid, UserNotFound
from consult.models import AuditResult, EnrolmentLink, User
from consult.password_policy import check_password
from consult.permissions import Role
from consult.sessions import revoke_sessions
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

CREDENTIALS_BY_PERSON: Final = frozenset({Role.DOCTOR})
"""Roles whose credentials an admin may not set (R34). Nurses follow once the staff console
issues links (its reset form still sets a nurse's password)."""
LINK_LIFETIME: Final = timedelta(hours=24)
MAX_TOKEN_CHARS: Final = 128


@dataclass(frozen=True)
class IssuedLink:
    """The link's secret, to show once, and when it stops working."""

    token: str
    expires_at: datetime


async def issue_enrolment_link(
    db: Database, actor: Actor, user_id: str, *, now: datetime | None = None
) -> IssuedLink:
    """Reset an account's credentials and issue its one-time enrolment link
    (``account.reset_password``: admin). Earlier unused links of the account stop working."""
    await authorize(db, actor, "account.reset_password", object_type="user", object_id=user_id)
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    async with audited(db) as tx:
        user = await tx.session.get(User, user_id, with_for_update=True)
        if user is None:
            raise UserNotFound()
        user.password_hash = None
        user.password_changed_at = now
        user.totp_secret_enc = None
        user.totp_confirmed_at = None
        user.totp_last_step = None
        user.failed_logins = 0
        user.locked_until = None
        await tx.session.execute(
            update(EnrolmentLink)
            .where(EnrolmentLink.user_id == user_id, EnrolmentLink.used_at.is_(None))
            .values(used_at=now)
        )
        link = EnrolmentLink(
            id=new_id(),
            user_id=user_id,
            token_digest=sm3_hex(token),
            issued_by=actor.user_id,
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        )
        tx.session.add(link)
        await revoke_sessions(tx, user_id, "credentials_reset")
        await tx.record(
            "account.enrolment_link",
            actor=actor,
            object_type="user",
            object_id=user_id,
            details={"hours": int(LINK_LIFETIME.total_seconds() // 3600)},
        )
    logger.info("enrolment link issued for account %s", user_id)
    return IssuedLink(token, link.expires_at)


async def redeem_enrolment_link(
    db: Database,
    token: str,
    new_password: str,
    source_ip: str | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Set the account's password with its link (once; before it expires).

    Raises :class:`EnrolmentLinkInvalid` for an unknown, used or expired link (all alike,
    audited) and :class:`WeakPassword` for a password the policy refuses (the link stays good).
    """
    now = now or utc_now()
    if not isinstance(token, str) or not 16 <= len(token) <= MAX_TOKEN_CHARS:
        raise EnrolmentLinkInvalid()
    digest = sm3_hex(token)
    async with db.session() as session:
        link = await session.scalar(
            select(EnrolmentLink).where(EnrolmentLink.token_digest == digest)
        )
        user = await session.get(User, link.user_id) if link is not None else None
    if link is None or user is None or link.used_at is not None or link.expires_at <= now:
        async with audited(db) as tx:
            await tx.record(
                "account.enrol_by_link",
                source_ip=source_ip,
                object_type="user",
                object_id=user.id if user is not None else None,
                result=AuditResult.FAILED,
                details={"reason": "invalid_link"},
            )
        raise EnrolmentLinkInvalid()
    check_password(new_password, username=user.username, user_inputs=[user.display_name])
    new_hash = await passwords.hash_async(new_password)
    async with audited(db) as tx:
        claimed = await tx.session.execute(
            update(EnrolmentLink)
            .where(EnrolmentLink.id == link.id, EnrolmentLink.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if not getattr(claimed, "rowcount", 0):  # a parallel use won
            raise EnrolmentLinkInvalid()
        row = await tx.session.get(User, user.id, with_for_update=True)
        assert row is not None
        row.password_hash = new_hash
        row.password_changed_at = now
        await tx.record(
            "account.enrol_by_link",
            actor_id=row.id,
            actor_role=row.role,
            source_ip=source_ip,
            object_type="user",
            object_id=row.id,
        )
