"""Refusals, audited and throttled (R34): the check every REST route and socket event makes.

:func:`authorize` is :func:`consult.permissions.require` that records a refusal in the audit
chain (:func:`consult.audit.append`). An actor refused again and again is throttled: past
:data:`DENIALS_BURST` at once and :data:`DENIALS_PER_S` after, it gets ``rate_limited`` and
the chain one summary row a minute; :func:`refuse_if_throttled` lets the edges refuse such an
actor before any database work.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Final

from consult.actor import Actor
from consult.audit import append
from consult.db import Database
from consult.errors import PermissionDenied, RateLimited
from consult.models import AuditResult
from consult.permissions import require
from consult.ratelimit import RefusalSummary, TokenBuckets

logger = logging.getLogger(__name__)


async def authorize(
    db: Database,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
) -> None:
    """:func:`consult.permissions.require`, recording a refusal in the audit chain (R34).

    This is the check for every REST route and socket event: it raises
    :class:`PermissionDenied` (``forbidden``) or ``totp_enrolment_required`` after appending a
    ``denied`` event. Nothing is recorded when the action is allowed. An actor refused more
    often than :data:`DENIALS_BURST` at once and :data:`DENIALS_PER_S` after gets
    :class:`RateLimited` instead, counted in one ``audit.denials_throttled`` row a minute.
    """
    try:
        require(actor, action)
    except PermissionDenied as exc:
        # a flood of refused requests: rate_limited, one summary row a minute
        await _raise_if_throttled(db, actor, action, object_type, object_id, spend=True)
        await append(
            db,
            action,
            actor=actor,
            object_type=object_type,
            object_id=object_id,
            result=AuditResult.DENIED,
            details={"code": exc.code},
        )
        raise


async def refuse_if_throttled(
    db: Database,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
) -> None:
    """Raise :class:`RateLimited` when :func:`authorize` would: ``actor`` may not do ``action``
    and its refusals are being throttled. Counted in the same summary; nothing else happens.

    For the edges, before they authenticate a caller they recognise (a bearer token that was
    this actor a moment ago): a flood of refused requests then costs no database work at all.
    It only ever refuses, so a stale ``actor`` (whose rights changed since) costs at most a
    ``rate_limited`` while its refusals are throttled.
    """
    try:
        require(actor, action)
    except PermissionDenied:
        await _raise_if_throttled(db, actor, action, object_type, object_id, spend=False)


async def _raise_if_throttled(
    db: Database,
    actor: Actor,
    action: str,
    object_type: str | None,
    object_id: str | None,
    *,
    spend: bool,
) -> None:
    """:class:`RateLimited` (counted in the summary) when ``actor``'s refusals are throttled:
    its budget spent by this refusal (``spend``), or already (not ``spend``)."""
    guard = _denial_guard(db)
    key = _denial_key(actor)
    wait = guard.budget.take(key) if spend else guard.budget.peek(key)
    if wait > 0:
        await _throttled_denial(db, guard, actor, action, object_type, object_id)
        raise RateLimited(wait) from None


def _denial_key(actor: Actor) -> str:
    return actor.user_id or actor.source_ip or "anonymous"


async def _throttled_denial(
    db: Database,
    guard: _DenialGuard,
    actor: Actor,
    action: str,
    object_type: str | None,
    object_id: str | None,
) -> None:
    """Count one throttled refusal; its summary row is written now or within the minute."""

    async def write(count: int) -> None:
        await append(
            db,
            "audit.denials_throttled",
            actor=actor,
            object_type=object_type,
            object_id=object_id,
            result=AuditResult.DENIED,
            details={"action": action, "refused": count},
        )
        logger.warning("refused requests throttled (%d)", count)

    await guard.summary.refused(_denial_key(actor), write)


DENIALS_BURST: Final = 100
DENIALS_PER_S: Final = 1.0
"""Refused actions audited one row each per actor: 100 at once, then one a second; beyond that
the actor gets ``rate_limited`` and the audit chain one summary row a minute (issue 13: a
patient hitting a forbidden route wrote 179 rows a second)."""


@dataclass
class _DenialGuard:
    budget: TokenBuckets = field(default_factory=lambda: TokenBuckets(DENIALS_PER_S, DENIALS_BURST))
    summary: RefusalSummary = field(default_factory=lambda: RefusalSummary(60.0))


_denial_guards: weakref.WeakKeyDictionary[Database, _DenialGuard] = weakref.WeakKeyDictionary()


def _denial_guard(db: Database) -> _DenialGuard:
    guard = _denial_guards.get(db)
    if guard is None:
        guard = _denial_guards[db] = _DenialGuard()
    return guard
