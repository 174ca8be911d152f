"""Sign-in, sessions and sign-out (R33): lockout, TOTP, token rotation, idle and absolute expiry.

- 5 consecutive failures (wrong password, missing or wrong TOTP code) lock the account for 10
  minutes; attempts while locked are refused without checking the password and do not extend
  the lock; a success resets the count. Counting is atomic (parallel failures all count), and
  usernames without an account lock the same way (``sign_in_failures``), so lockout does not
  reveal which exist.
- Every failure answers ``invalid_credentials`` until both factors pass: a right password
  without its code is not told apart (issue 13: no password oracle).
- One address is throttled after 10 failures across usernames (exponential back-off) and to a
  burst of 60 attempts, before any Argon2 work (``rate_limited``, audited once a minute). An
  address has one password check at a time; the next waits its turn and is checked against the
  throttle again when it comes, so a burst from one address hashes no more than its allowance
  and leaves the other hashing thread to everyone else.
- A staff account with a confirmed TOTP secret must give a code; without one, it gets an
  enrolment-only session (it may only enrol TOTP). A patient who enrolled TOTP must give it too.
  A code's time step is claimed atomically: one code opens one session.
- Every sign-in issues a new random bearer token (only its SM3 digest is stored) and revokes the
  account's other sessions: one session per account, no fixation.
- A session expires after 15 minutes idle for staff (2 hours for patients), and 12 hours after
  sign-in whatever its activity.

Every success and failure is an audit event; failures for unknown usernames carry a keyed
HMAC-SM3 reference to the username (correlatable, not readable).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consult import passwords
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.crypto import sm3_hex
from consult.db import Database
from consult.decision_cache import PerDatabase, token_key
from consult.errors import (
    AccountLocked,
    ConsultError,
    InvalidCredentials,
    RateLimited,
    SessionExpired,
    SessionInvalid,
)
from consult.events import AccessRevoked, publish
from consult.models import (
    AuditResult,
    Session,
    SessionScope,
    SignInFailure,
    User,
    UserDepartment,
)
from consult.permissions import STAFF_ROLES, Role
from consult.ratelimit import (
    ConcurrencyCap,
    FailureBackoff,
    RefusalSummary,
    TokenBuckets,
    TooManyWaiting,
)
from consult.sqltypes import new_id, utc_now
from consult.tokens import TokenClaims
from consult.totp import matching_step

logger = logging.getLogger(__name__)

MAX_FAILURES: Final = 5
LOCKOUT: Final = timedelta(minutes=10)
STAFF_IDLE: Final = timedelta(minutes=15)
PATIENT_IDLE: Final = timedelta(hours=2)
ABSOLUTE_LIFETIME: Final = timedelta(hours=12)
TOUCH_EVERY: Final = timedelta(seconds=15)
"""``last_seen_at`` is written at most this often (idle timeouts are minutes long)."""
MAX_TOKEN_CHARS: Final = 256
TOTP_SECRET_CONTEXT: Final = "users.totp_secret"
USERNAME_REF_CONTEXT: Final = "audit.username"
ADDRESS_FAILURES: Final = 10
"""Failed sign-ins from one address (any usernames) within 15 minutes before back-off starts."""
ADDRESS_RATE: Final = 1.0
ADDRESS_BURST: Final = 60.0
"""Sign-in attempts from one address: 60 at once, then one a second."""
CONCURRENT_HASHES: Final = 2
HASHES_PER_ADDRESS: Final = 1
"""Password checks of one address at once: a burst from one address queues behind itself."""
ADDRESS_WAITING: Final = 64
"""Sign-ins of one address waiting for its password check; one more is refused at once."""


@dataclass(frozen=True)
class SignInResult:
    """A successful sign-in. ``token`` is shown once; the server keeps only its digest."""

    token: str
    session_id: str
    user_id: str
    role: Role
    expires_at: datetime
    """The absolute end of the session."""
    idle_timeout_s: int
    totp_enrolment_required: bool
    """The session may only enrol TOTP (staff account without a confirmed secret)."""


def idle_timeout(role: Role) -> timedelta:
    """15 minutes for staff, 2 hours for patients."""
    return PATIENT_IDLE if role is Role.PATIENT else STAFF_IDLE


def token_digest(token: str) -> str:
    """The SM3 digest under which a bearer token is stored."""
    return sm3_hex(token)


_dummy_hashes: dict[int, str] = {}


async def _dummy_hash() -> str:
    """A hash to verify against when there is no account, so timing does not reveal that."""
    key = id(passwords._hasher)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = await passwords.hash_async(secrets.token_urlsafe(16))
    return _dummy_hashes[key]


class _Guard:
    """Per-database, per-process throttles of sign-in (issue 13).

    - per address: from :data:`ADDRESS_FAILURES` failures within 15 minutes (whatever the
      usernames), each next attempt waits 1 s, 2 s, 4 s ... up to 15 minutes after the last
      failure; refused attempts get ``rate_limited`` before any password is hashed;
    - per address, every attempt: a bucket of :data:`ADDRESS_BURST` refilled at
      :data:`ADDRESS_RATE` a second, so a flood costs no Argon2 time;
    - Argon2 itself: at most :data:`CONCURRENT_HASHES` at once, so a burst cannot take every core,
      and :data:`HASHES_PER_ADDRESS` per address, so one address's burst waits behind itself
      (re-checked against the back-off when its turn comes) and not in front of everyone else.
    """

    def __init__(self) -> None:
        self.failures = FailureBackoff(ADDRESS_FAILURES, window_s=900.0, base_s=1.0)
        self.attempts = TokenBuckets(ADDRESS_RATE, ADDRESS_BURST)
        self.summary = RefusalSummary(60.0)
        self.per_address = ConcurrencyCap(HASHES_PER_ADDRESS, ADDRESS_WAITING)
        self._hashing: asyncio.Semaphore | None = None

    @property
    def hashing(self) -> asyncio.Semaphore:
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(CONCURRENT_HASHES)
        return self._hashing


_guards: weakref.WeakKeyDictionary[Database, _Guard] = weakref.WeakKeyDictionary()


def sign_in_guard(db: Database) -> _Guard:
    """The sign-in throttles of ``db`` in this process."""
    guard = _guards.get(db)
    if guard is None:
        guard = _guards[db] = _Guard()
    return guard


def username_ref(db: Database, username: str) -> str:
    """The keyed reference of a (case-folded) username: correlatable, not readable."""
    return db.cipher.blind_index(str(username).casefold(), USERNAME_REF_CONTEXT)[:32]


async def _verify(
    db: Database, guard: _Guard, source_ip: str | None, password_hash: str, password: str
) -> bool:
    """Check the password (Argon2), in the address's turn: an address throttled meanwhile (its
    earlier tries failed while this one waited) is refused without hashing."""
    if source_ip is None:
        async with guard.hashing:
            return await passwords.verify_async(password_hash, password)
    try:
        async with guard.per_address.slot(source_ip):
            wait = guard.failures.wait(source_ip)
            if wait > 0:
                await _throttled(db, guard, source_ip, wait)
            async with guard.hashing:
                return await passwords.verify_async(password_hash, password)
    except TooManyWaiting:
        await _throttled(db, guard, source_ip, 1.0)


async def sign_in(
    db: Database,
    username: str,
    password: str,
    totp_code: str | None = None,
    source_ip: str | None = None,
    *,
    now: datetime | None = None,
) -> SignInResult:
    """Check the credentials and open a session.

    Every failure answers alike until both factors pass (issue 13: no password oracle, no
    enumeration): :class:`InvalidCredentials` (``invalid_credentials``) for an unknown user, a
    wrong password, a missing or wrong or replayed code, an inactive account;
    :class:`AccountLocked` (``account_locked``) after five failures under one username, whether
    or not it has an account; :class:`RateLimited` (``rate_limited``) when the address is
    throttled. Failures are counted with atomic statements, so parallel attempts all count, and
    a TOTP step is claimed atomically, so one code opens one session.
    """
    now = now or utc_now()
    guard = sign_in_guard(db)
    if source_ip is not None:
        wait = max(guard.failures.wait(source_ip), guard.attempts.take(source_ip))
        if wait > 0:
            await _throttled(db, guard, source_ip, wait)
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
    if user is None or user.password_hash is None or not user.is_active:
        await _verify(db, guard, source_ip, await _dummy_hash(), password)
        await _count_unknown_failure(db, guard, user, username, source_ip, now)
        raise AssertionError("unreachable")  # pragma: no cover
    if user.locked_until is not None and user.locked_until > now:
        async with audited(db) as tx:
            await _record_failure(tx, db, user, username, source_ip, "locked")
        raise AccountLocked()
    good_password = await _verify(db, guard, source_ip, user.password_hash, password)
    if not good_password:
        await _count_failure(db, guard, user.id, username, source_ip, "bad_password", now)
    step: int | None = None
    if user.totp_confirmed_at is not None:
        if not totp_code:
            await _count_failure(db, guard, user.id, username, source_ip, "totp_missing", now)
        secret = db.cipher.decrypt(user.totp_secret_enc or "", TOTP_SECRET_CONTEXT)
        step = matching_step(secret, totp_code, now, last_step=user.totp_last_step)
        if step is None:
            await _count_failure(db, guard, user.id, username, source_ip, "bad_totp", now)
    result = await _open_session(db, user.id, source_ip, step, now)
    if result is None:  # locked meanwhile, or the code's step was claimed by a parallel sign-in
        await _count_failure(db, guard, user.id, username, source_ip, "bad_totp", now)
    assert result is not None
    if source_ip is not None:
        guard.failures.forget(source_ip)
    return result


async def _throttled(db: Database, guard: _Guard, source_ip: str, wait: float) -> NoReturn:
    """Refuse with ``rate_limited``; audit one summary per address a minute, not every try."""

    async def write(count: int) -> None:
        async with audited(db) as tx:
            await tx.record(
                "session.sign_in",
                source_ip=source_ip,
                object_type="user",
                result=AuditResult.FAILED,
                details={"reason": "rate_limited", "refused": count},
            )
        logger.warning("sign-in throttled for an address (%d refused)", count)

    await guard.summary.refused(source_ip, write)
    raise RateLimited(wait)


async def _count_unknown_failure(
    db: Database,
    guard: _Guard,
    user: User | None,
    username: str,
    source_ip: str | None,
    now: datetime,
) -> None:
    """A failure under a username without a usable account: counted like an account's (atomic
    upsert), locking the name at the fifth, so lockout tells nothing about existence."""
    if source_ip is not None:
        guard.failures.failed(source_ip)
    reason = "unknown_user" if user is None else "inactive"
    ref = username_ref(db, username)
    error: ConsultError = InvalidCredentials()
    async with audited(db) as tx:
        row = await tx.session.get(SignInFailure, ref)
        if row is None:
            row = SignInFailure(username_ref=ref, failures=0, updated_at=now)
            tx.session.add(row)
            await tx.session.flush()
        if row.locked_until is not None and row.locked_until > now:
            await _record_failure(tx, db, user, username, source_ip, "locked")
            error = AccountLocked()
        else:
            await tx.session.execute(
                update(SignInFailure)
                .where(SignInFailure.username_ref == ref)
                .values(failures=SignInFailure.failures + 1, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            failures = await tx.session.scalar(
                select(SignInFailure.failures).where(SignInFailure.username_ref == ref)
            )
            await _record_failure(tx, db, user, username, source_ip, reason)
            if (failures or 0) >= MAX_FAILURES:
                await tx.session.execute(
                    update(SignInFailure)
                    .where(SignInFailure.username_ref == ref)
                    .values(failures=0, locked_until=now + LOCKOUT)
                    .execution_options(synchronize_session=False)
                )
                error = AccountLocked()
    raise error


async def _record_failure(
    tx: AuditTx,
    db: Database,
    user: User | None,
    username: str,
    source_ip: str | None,
    reason: str,
) -> None:
    details: dict[str, str] = {"reason": reason}
    if user is None:
        details["username_ref"] = username_ref(db, username)
    await tx.record(
        "session.sign_in",
        actor_id=user.id if user else None,
        actor_role=user.role if user else None,
        source_ip=source_ip,
        object_type="user",
        object_id=user.id if user else None,
        result=AuditResult.FAILED,
        details=details,
    )


async def _count_failure(
    db: Database,
    guard: _Guard,
    user_id: str,
    username: str,
    source_ip: str | None,
    reason: str,
    now: datetime,
) -> None:
    """Count one failure (locking at the fifth), record it, and raise.

    The count is one conditional ``UPDATE ... SET failed_logins = failed_logins + 1`` on an
    account that is not locked: parallel failures each add one (a read-modify-write would lose
    some), and a failure after the lock does not extend it.
    """
    if source_ip is not None:
        guard.failures.failed(source_ip)
    error: ConsultError = InvalidCredentials()
    async with audited(db) as tx:
        counted = await tx.session.execute(
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(failed_logins=User.failed_logins + 1)
            .execution_options(synchronize_session=False)
        )
        user = await tx.session.get(User, user_id, populate_existing=True)
        assert user is not None
        if not getattr(counted, "rowcount", 0):
            error = AccountLocked()  # locked meanwhile by a parallel attempt: do not extend
            await _record_failure(tx, db, user, username, source_ip, "locked")
        else:
            await _record_failure(tx, db, user, username, source_ip, reason)
            if user.failed_logins >= MAX_FAILURES:
                user.failed_logins = 0
                user.locked_until = now + LOCKOUT
                error = AccountLocked()
                await tx.record(
                    "account.lock",
                    actor_id=user.id,
                    actor_role=user.role,
                    source_ip=source_ip,
                    object_type="user",
                    object_id=user.id,
                    details={"failures": MAX_FAILURES, "minutes": LOCKOUT.seconds // 60},
                )
                logger.warning("account %s locked after %d failures", user.id, MAX_FAILURES)
    raise error


async def _open_session(
    db: Database, user_id: str, source_ip: str | None, step: int | None, now: datetime
) -> SignInResult | None:
    """Open the session, or ``None`` when the account was locked meanwhile or the TOTP step was
    claimed by a parallel sign-in: one conditional update checks both and claims the step."""
    token = secrets.token_urlsafe(32)
    async with audited(db) as tx:
        claim = (
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(failed_logins=0, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        if step is not None:
            claim = claim.where(
                or_(User.totp_last_step.is_(None), User.totp_last_step < step)
            ).values(totp_last_step=step)
        if not getattr(await tx.session.execute(claim), "rowcount", 0):
            return None
        user = await tx.session.get(User, user_id, populate_existing=True)
        assert user is not None
        role = Role(user.role)
        enrol_only = role in STAFF_ROLES and user.totp_confirmed_at is None
        await _revoke_all(tx, user.id, "rotated", now)
        row = Session(
            id=new_id(),
            user_id=user.id,
            token_digest=token_digest(token),
            scope=(SessionScope.ENROL if enrol_only else SessionScope.FULL).value,
            created_at=now,
            last_seen_at=now,
            expires_at=now + ABSOLUTE_LIFETIME,
            source_ip=source_ip,
        )
        tx.session.add(row)
        await tx.record(
            "session.sign_in",
            actor_id=user.id,
            actor_role=user.role,
            source_ip=source_ip,
            object_type="session",
            object_id=row.id,
            details={"scope": row.scope, "second_factor": step is not None},
        )
    logger.info("user %s signed in (session %s, %s)", user_id, row.id, row.scope)
    return SignInResult(
        token=token,
        session_id=row.id,
        user_id=user_id,
        role=role,
        expires_at=row.expires_at,
        idle_timeout_s=int(idle_timeout(role).total_seconds()),
        totp_enrolment_required=enrol_only,
    )


async def _revoke_all(
    tx: AuditTx, user_id: str, reason: str, now: datetime, *, keep: str | None = None
) -> None:
    """Revoke every live session of ``user_id`` but ``keep``; their sockets and join tokens go
    with them after commit (:class:`AccessRevoked`)."""
    live = select(Session.id).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    if keep is not None:
        live = live.where(Session.id != keep)
    ids = frozenset((await tx.session.scalars(live)).all())
    if not ids:
        return
    await tx.session.execute(
        update(Session)
        .where(Session.id.in_(sorted(ids)), Session.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    publish(tx, AccessRevoked(user_id, reason, ids))


async def revoke_sessions(
    tx: AuditTx, user_id: str, reason: str, *, keep: str | None = None
) -> None:
    """Revoke every live session of an account (deactivation, password or TOTP reset).

    Without ``keep``, every socket and join token of the account ends too, whichever session
    issued it (:class:`AccessRevoked` for the whole account, after commit).
    """
    await _revoke_all(tx, user_id, reason, utc_now(), keep=keep)
    if keep is None:
        publish(tx, AccessRevoked(user_id, reason))


async def authenticate(
    db: Database, token: str | None, source_ip: str | None = None, *, now: datetime | None = None
) -> Actor:
    """The :class:`Actor` of a bearer token, or an error.

    Raises :class:`SessionInvalid` (``session_invalid``) for a missing, malformed, unknown or
    revoked token or a deactivated account, and :class:`SessionExpired` (``session_expired``)
    after the idle timeout or the absolute lifetime (the session is then revoked and the expiry
    audited).
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise SessionInvalid()
    now = now or utc_now()
    cache = _bearers_of(db)
    key = token_key(token)
    known = cache.get(key)
    # a hit until a touch of last_seen_at is due (then the full check below makes it)
    if known is not None and now < known.expires_at and now - known.seen_at < TOUCH_EVERY:
        actor = known.actor
        return actor if source_ip is None else replace(actor, source_ip=source_ip)
    stamp = cache.stamp()  # before the rows are read (consult.decision_cache)
    async with db.session() as session:
        # the session and its account in one statement: every request of the API passes here
        found = (
            await session.execute(
                select(Session, User)
                .join(User, User.id == Session.user_id)
                .where(Session.token_digest == token_digest(token))
            )
        ).first()
        if found is None or found[0].revoked_at is not None:
            raise SessionInvalid()
        row, user = found
        departments = set(
            (
                await session.scalars(
                    select(UserDepartment.department_id).where(UserDepartment.user_id == user.id)
                )
            ).all()
        )
    role = Role(user.role)
    expiry = None
    if now >= row.expires_at:
        expiry = "absolute"
    elif now - row.last_seen_at >= idle_timeout(role):
        expiry = "idle"
    elif not user.is_active:
        expiry = "deactivated"
    if expiry is not None:
        await _expire(db, row, user, expiry, source_ip, now)
        raise SessionInvalid() if expiry == "deactivated" else SessionExpired()
    seen_at = row.last_seen_at
    if now - seen_at >= TOUCH_EVERY:
        async with db.session() as session, session.begin():
            await session.execute(
                update(Session).where(Session.id == row.id).values(last_seen_at=now)
            )
        seen_at = now
    if user.department_id is not None:
        departments.add(user.department_id)
    actor = Actor(
        user_id=user.id,
        role=role,
        session_id=row.id,
        source_ip=row.source_ip,
        department_ids=frozenset(departments),
        institution_id=user.institution_id,
        enrolment_only=row.scope == SessionScope.ENROL,
    )
    cache.put(key, _Bearer(actor, row.expires_at, seen_at), stamp)
    return actor if source_ip is None else replace(actor, source_ip=source_ip)


@dataclass(frozen=True)
class _Bearer:
    """What a bearer token was found to be a moment ago (:func:`authenticate`)."""

    actor: Actor
    """With the session's own address (the request's replaces it)."""
    expires_at: datetime
    seen_at: datetime
    """``last_seen_at`` as it was then: hits do not touch it, so they stop when a touch is due
    (:data:`TOUCH_EVERY`) and the full check touches it."""


_bearers_of: PerDatabase[bytes, _Bearer] = PerDatabase()
"""Bearer tokens recently authenticated (by :func:`~consult.decision_cache.token_key`),
forgotten when this process changes a session, an account or its departments, and after two
seconds whatever happens (another process's change)."""


async def _expire(
    db: Database, row: Session, user: User, reason: str, source_ip: str | None, now: datetime
) -> None:
    async with audited(db) as tx:
        result = await tx.session.execute(
            update(Session)
            .where(Session.id == row.id, Session.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
        if getattr(result, "rowcount", 0):  # once, even when two requests race
            publish(tx, AccessRevoked(user.id, reason, frozenset({row.id})))
            await tx.record(
                "session.expire",
                actor_id=user.id,
                actor_role=user.role,
                source_ip=source_ip,
                object_type="session",
                object_id=row.id,
                details={"reason": reason},
            )


def credential_stamp(user: User) -> int:
    """The account's last password change in Unix microseconds (0: never), for join tokens."""
    changed = user.password_changed_at
    if changed is None:
        return 0
    return (changed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


async def account_stamp(db: Database, user_id: str) -> int:
    """:func:`credential_stamp` of an account, to put into the join token it is issued."""
    async with db.session() as session:
        user = await session.get(User, user_id)
    return 0 if user is None else credential_stamp(user)


async def join_token_alive(session: AsyncSession, claims: TokenClaims, user: User) -> bool:
    """Whether a verified join token still stands: its session (if one issued it) is neither
    revoked nor past its absolute end, and the account's password did not change since it was
    issued. Tokens of the command line (no session, no stamp) depend on the account alone."""
    if claims.credential_stamp is not None and claims.credential_stamp != credential_stamp(user):
        return False
    if claims.session_id is None:
        return True
    row = await session.get(Session, claims.session_id)
    return (
        row is not None
        and row.user_id == user.id
        and row.revoked_at is None
        and utc_now() < row.expires_at
    )


async def sign_out(db: Database, actor: Actor) -> None:
    """Revoke the actor's session (idempotent) and record it."""
    async with audited(db) as tx:
        await tx.session.execute(
            update(Session)
            .where(Session.id == actor.session_id, Session.revoked_at.is_(None))
            .values(revoked_at=utc_now(), revoke_reason="sign_out")
        )
        await tx.record(
            "session.sign_out", actor=actor, object_type="session", object_id=actor.session_id
        )
        if actor.user_id is not None and actor.session_id is not None:
            publish(tx, AccessRevoked(actor.user_id, "sign_out", frozenset({actor.session_id})))
