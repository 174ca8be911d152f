"""Reminders (issue 14, R11): made once, kept per recipient (read or unread), pushed to its
pages, and handed to the hospital's SMS/WeChat gateway through a webhook.

What is due is decided elsewhere (:func:`consult.consultations.flow.due_reminders` for remote
consultation); this module keeps them:

- :func:`store` inserts each due reminder conditionally (the key ``(subject_type, subject_id,
  kind, recipient_id, at)`` is unique), so of two processes, or a process and itself after a
  restart, exactly one makes it; only the one that made it relays :class:`~consult.events.
  ReminderMade` (the ``reminder`` push on ``/updates``);
- :func:`list_reminders` and :func:`mark_read` are the recipient's in-app list;
- :func:`claim_deliveries`, :func:`delivered` and :func:`delivery_failed` keep each reminder's
  webhook delivery state: a claim is a conditional update (one process sends it), a failure
  backs off and gives up after a bounded number of attempts;
- :func:`purge` removes old ones, bounded per call.

A reminder holds ids, its kind and the moment it is about: no patient name, ID number or phone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult

from consult import events
from consult.actor import Actor
from consult.authorization import authorize
from consult.db import Database
from consult.errors import ReminderNotFound
from consult.models import Reminder, WebhookState
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

LIST_LIMIT: Final = 50
"""The newest reminders a recipient's list holds."""
KEEP: Final = timedelta(days=90)
"""Reminders older than this are purged (longer than any window that could make them again)."""


@dataclass(frozen=True)
class Due:
    """A reminder that is due now for one recipient."""

    kind: str
    subject_type: str
    subject_id: str
    consultation_id: str | None
    recipient_id: str
    at: datetime


@dataclass(frozen=True)
class ReminderView:
    """One reminder of the caller's."""

    id: str
    kind: str
    """``invitation_due_half``, ``invitation_due_soon``, ``session_soon_24h``,
    ``session_soon_15m``, ``invitation_accepted``, ``invitation_declined`` or
    ``invitation_expired`` (docs/consultations.md, Reminders)."""
    subject_type: str
    """``invitation`` or ``consultation``."""
    subject_id: str
    consultation_id: str | None
    at: datetime
    """The moment it is about: the answer's deadline, the session's start, the answer's time."""
    created_at: datetime
    read: bool


@dataclass(frozen=True)
class ReminderList:
    """The caller's newest reminders and how many of all of them are unread."""

    reminders: list[ReminderView]
    unread: int


@dataclass(frozen=True)
class Delivery:
    """A reminder claimed for one webhook attempt."""

    id: str
    kind: str
    subject_type: str
    subject_id: str
    consultation_id: str | None
    recipient_id: str
    at: datetime
    created_at: datetime
    attempt: int
    """1 for the first attempt."""


def iso(moment: datetime) -> str:
    """``moment`` as the API writes it (ISO 8601, UTC, ``Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _view(row: Reminder) -> ReminderView:
    return ReminderView(
        id=row.id,
        kind=row.kind,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        consultation_id=row.consultation_id,
        at=row.at,
        created_at=row.created_at,
        read=row.read_at is not None,
    )


def _insert(dialect: str) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(Reminder)


def _key(subject_type: str, subject_id: str, kind: str, recipient_id: str, at: datetime) -> Any:
    return (subject_type, subject_id, kind, recipient_id, at.timestamp())


async def _not_made(session: Any, due: Sequence[Due]) -> list[Due]:
    """``due`` without the ones already made (read first: most runs find nothing new, and a
    conflicting insert is the costlier way to learn it)."""
    subjects = sorted({item.subject_id for item in due})
    made: set[Any] = set()
    for start in range(0, len(subjects), 200):
        rows = await session.execute(
            select(
                Reminder.subject_type,
                Reminder.subject_id,
                Reminder.kind,
                Reminder.recipient_id,
                Reminder.at,
            ).where(Reminder.subject_id.in_(subjects[start : start + 200]))
        )
        made |= {_key(*row) for row in rows.all()}
    fresh = [
        item
        for item in due
        if _key(item.subject_type, item.subject_id, item.kind, item.recipient_id, item.at)
        not in made
    ]
    return list(dict.fromkeys(fresh))


async def store(
    db: Database, due: Sequence[Due], *, now: datetime, webhook: bool
) -> list[ReminderView]:
    """Make each of ``due`` unless it was made before (by this process or another); relay the
    ones made here. ``webhook``: queue each made one for the gateway."""
    made: list[tuple[Due, str]] = []
    async with db.session() as session, session.begin():
        for item in await _not_made(session, due):
            reminder_id = new_id()
            statement = (
                _insert(db.dialect)
                .values(
                    id=reminder_id,
                    kind=item.kind,
                    subject_type=item.subject_type,
                    subject_id=item.subject_id,
                    consultation_id=item.consultation_id,
                    recipient_id=item.recipient_id,
                    at=item.at,
                    created_at=now,
                    webhook_state=(WebhookState.PENDING if webhook else WebhookState.OFF).value,
                    webhook_attempts=0,
                    webhook_next_at=now if webhook else None,
                )
                .on_conflict_do_nothing(
                    index_elements=["subject_type", "subject_id", "kind", "recipient_id", "at"]
                )
            )
            result = await session.execute(statement)
            if isinstance(result, CursorResult) and result.rowcount == 1:
                made.append((item, reminder_id))
    views = [
        ReminderView(
            id=reminder_id,
            kind=item.kind,
            subject_type=item.subject_type,
            subject_id=item.subject_id,
            consultation_id=item.consultation_id,
            at=item.at,
            created_at=now,
            read=False,
        )
        for item, reminder_id in made
    ]
    for view, (item, _id) in zip(views, made, strict=True):
        logger.info(
            "reminder made: %s %s %s for %s", view.id, view.kind, view.subject_id, item.recipient_id
        )
        await events.relay(
            db,
            events.ReminderMade(
                reminder_id=view.id,
                user_id=item.recipient_id,
                kind=view.kind,
                subject_type=view.subject_type,
                subject_id=view.subject_id,
                consultation_id=view.consultation_id,
                at=iso(view.at),
            ),
        )
    return views


async def list_reminders(db: Database, actor: Actor, *, limit: int = LIST_LIMIT) -> ReminderList:
    """The caller's newest reminders, and its unread count."""
    await authorize(db, actor, "reminder.list", object_type="reminder")
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(Reminder)
                .where(Reminder.recipient_id == actor.user_id)
                .order_by(Reminder.created_at.desc(), Reminder.id.desc())
                .limit(limit)
            )
        ).all()
        unread = await session.scalar(
            select(func.count())
            .select_from(Reminder)
            .where(Reminder.recipient_id == actor.user_id, Reminder.read_at.is_(None))
        )
    return ReminderList([_view(row) for row in rows], int(unread or 0))


async def mark_read(
    db: Database, actor: Actor, reminder_id: str, *, now: datetime | None = None
) -> ReminderView:
    """Mark one of the caller's reminders read (again: no change); another's is not found."""
    await authorize(db, actor, "reminder.read", object_type="reminder", object_id=reminder_id)
    async with db.session() as session, session.begin():
        row = await session.get(Reminder, reminder_id)
        if row is None or row.recipient_id != actor.user_id:
            raise ReminderNotFound()
        if row.read_at is None:
            row.read_at = now or utc_now()
        return _view(row)


async def claim_deliveries(
    db: Database, *, now: datetime, limit: int, lease: timedelta
) -> list[Delivery]:
    """Up to ``limit`` reminders whose webhook attempt is due, each claimed for this process
    (its next attempt moved ``lease`` ahead by a conditional update: another process that read
    the same row claims nothing)."""
    async with db.session() as session:
        candidates = (
            await session.scalars(
                select(Reminder)
                .where(
                    Reminder.webhook_state == WebhookState.PENDING.value,
                    Reminder.webhook_next_at <= now,
                )
                .order_by(Reminder.webhook_next_at, Reminder.id)
                .limit(limit)
            )
        ).all()
    claimed: list[Delivery] = []
    for row in candidates:
        async with db.session() as session, session.begin():
            result = await session.execute(
                update(Reminder)
                .where(
                    Reminder.id == row.id,
                    Reminder.webhook_state == WebhookState.PENDING.value,
                    Reminder.webhook_next_at == row.webhook_next_at,
                    Reminder.webhook_attempts == row.webhook_attempts,
                )
                .values(webhook_next_at=now + lease, webhook_attempts=row.webhook_attempts + 1)
            )
        if isinstance(result, CursorResult) and result.rowcount == 1:
            claimed.append(
                Delivery(
                    id=row.id,
                    kind=row.kind,
                    subject_type=row.subject_type,
                    subject_id=row.subject_id,
                    consultation_id=row.consultation_id,
                    recipient_id=row.recipient_id,
                    at=row.at,
                    created_at=row.created_at,
                    attempt=row.webhook_attempts + 1,
                )
            )
    return claimed


async def delivered(db: Database, reminder_id: str, *, now: datetime) -> None:
    """The gateway took the reminder."""
    async with db.session() as session, session.begin():
        await session.execute(
            update(Reminder)
            .where(Reminder.id == reminder_id)
            .values(
                webhook_state=WebhookState.DELIVERED.value,
                webhook_next_at=None,
                webhook_error=None,
                delivered_at=now,
            )
        )


async def delivery_failed(
    db: Database,
    delivery: Delivery,
    *,
    now: datetime,
    error: str,
    max_attempts: int,
    retry_in: timedelta,
) -> bool:
    """One attempt failed: try again in ``retry_in``, or give up after ``max_attempts``
    (returns whether it gave up)."""
    give_up = delivery.attempt >= max_attempts
    async with db.session() as session, session.begin():
        await session.execute(
            update(Reminder)
            .where(Reminder.id == delivery.id)
            .values(
                webhook_state=(WebhookState.FAILED if give_up else WebhookState.PENDING).value,
                webhook_next_at=None if give_up else now + retry_in,
                webhook_error=error[:200],
            )
        )
    return give_up


async def purge(db: Database, *, now: datetime, keep: timedelta = KEEP, limit: int = 500) -> int:
    """Remove up to ``limit`` reminders made before ``now - keep``; returns how many (a
    delivery still pending then was given up long ago by any bound)."""
    cutoff = now - keep
    async with db.session() as session, session.begin():
        ids = (
            await session.scalars(
                select(Reminder.id).where(Reminder.created_at < cutoff).limit(limit)
            )
        ).all()
        if ids:
            await session.execute(delete(Reminder).where(Reminder.id.in_(ids)))
    return len(ids)
