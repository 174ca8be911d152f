"""Ratings of finished visits (R40) and the satisfaction figure of a doctor (R41).

The rules, each checked here, refused with a stable code and audited:

- only a finished service is rated: an ended visit, or one referred offline after the doctor
  saw the patient (``visit_not_finished``);
- only the visit's patient side rates it (its patient-side account, or a guardian taking part in
  its room), only its doctor replies: the one access policy (``consult.access``, actions
  ``rating.*`` and :data:`consult.access.VISIT_SIDE_ACTIONS`);
- within :data:`RATE_WINDOW` of the visit's end; one rating per visit (``already_rated``; of two
  submits at once exactly one lands: the visit row is locked and ``visit_id`` is unique);
- one edit (``rating_edit_used``) within :data:`EDIT_WINDOW` of the rating; the doctor's one
  reply (``rating_already_replied``) within :data:`REPLY_WINDOW` of the rating; past a window,
  ``rating_window_closed``;
- 1 to 5 whole stars (``rating_stars_invalid``); text of at most :data:`MAX_TEXT_CHARS`
  characters, without control characters (``rating_text_invalid``), that passes the
  sensitive-word filter (``sensitive_word``, R38).

The comment and the reply are stored SM4-encrypted; the audit chain holds their HMAC-SM3
(``text_mac``), never the text. ``now`` parameters are the clock seam for tests.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from consult import access, events, sensitive_words
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    AlreadyRated,
    ConsultError,
    PermissionDenied,
    PractitionerNotFound,
    RatingAlreadyReplied,
    RatingEditUsed,
    RatingNotFound,
    RatingStarsInvalid,
    RatingTextInvalid,
    RatingWindowClosed,
    SensitiveWordBlocked,
    VisitNotFinished,
    VisitNotFound,
)
from consult.events import RatingChanged
from consult.models import Practitioner, Visit, VisitRating, VisitState
from consult.permissions import Role, in_scope
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

RATE_WINDOW: Final = timedelta(days=15)
"""R40: a visit is rated within 15 days of its end."""
EDIT_WINDOW: Final = timedelta(days=30)
"""R40: the one edit, within 30 days of the rating."""
REPLY_WINDOW: Final = timedelta(days=30)
"""R40: the doctor's one reply, within 30 days of the rating."""
MAX_TEXT_CHARS: Final = 500
_ALLOWED_CONTROLS: Final = frozenset("\n\t")
_BIDI_CONTROLS: Final = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Direction overrides: they make a text read otherwise than it is stored (as chat refuses)."""


@dataclass(frozen=True)
class RatingView:
    """A visit's rating as its patient side, its doctor and the staff in scope see it."""

    visit_id: str
    stars: int
    text: str | None
    created_at: datetime
    edited_at: datetime | None
    reply: str | None
    replied_at: datetime | None
    can_edit: bool
    """The patient side may still edit it (the one edit unused, within its window)."""
    can_reply: bool
    """The doctor may still reply (no reply yet, within its window)."""


@dataclass(frozen=True)
class RatingState:
    """Where a visit stands with its rating, for the patient's history of visits."""

    can_rate: bool
    """Finished, not rated yet, and within the window."""
    rate_until: datetime | None
    """The end of the window to rate (a finished visit), else ``None``."""
    rating: RatingView | None


@dataclass(frozen=True)
class Satisfaction:
    """R41: a doctor's rated visits and their average stars (``None`` without any)."""

    doctor_id: str
    count: int
    average: float | None


# --- Checking input -----------------------------------------------------------------------------


def check_stars(stars: Any) -> int:
    """Whole stars from 1 to 5 (``True`` is not a star)."""
    if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
        raise RatingStarsInvalid()
    return stars


def clean_text(text: Any, *, required: bool = False) -> str | None:
    """Trimmed text of at most :data:`MAX_TEXT_CHARS`, no control characters; blank is ``None``
    (refused when ``required``)."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise RatingTextInvalid()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RatingTextInvalid() from None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise RatingTextInvalid()
    for char in text:
        if char in _BIDI_CONTROLS or (
            unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS
        ):
            raise RatingTextInvalid()
    if not text:
        if required:
            raise RatingTextInvalid("Write a reply.")
        return None
    return text


async def _filter(db: Database, text: str | None) -> list[str]:
    """The ids of listed sensitive words the text holds (R38), as chat does."""
    if text is None:
        return []
    return sorted({hit.word_id for hit in (await sensitive_words.matcher(db)).find(text)})


# --- Rules --------------------------------------------------------------------------------------


def finished(visit: Visit) -> bool:
    """A finished service: ended, or referred offline after the doctor saw the patient."""
    state = VisitState(visit.status)
    if visit.closed_at is None:
        return False
    return state is VisitState.ENDED or (
        state is VisitState.REFERRED and visit.admitted_at is not None
    )


def _view(db: Database, row: VisitRating, now: datetime) -> RatingView:
    return RatingView(
        visit_id=row.visit_id,
        stars=row.stars,
        text=db.cipher.decrypt(row.text_enc, _context("text", row.id)) if row.text_enc else None,
        created_at=row.created_at,
        edited_at=row.edited_at,
        reply=(
            db.cipher.decrypt(row.reply_enc, _context("reply", row.id)) if row.reply_enc else None
        ),
        replied_at=row.replied_at,
        can_edit=row.edited_at is None and now <= row.created_at + EDIT_WINDOW,
        can_reply=row.replied_at is None and now <= row.created_at + REPLY_WINDOW,
    )


def _context(column: str, rating_id: str) -> str:
    return f"visit_ratings.{column}/{rating_id}"


def _state(db: Database, visit: Visit, row: VisitRating | None, now: datetime) -> RatingState:
    until = visit.closed_at + RATE_WINDOW if finished(visit) and visit.closed_at else None
    return RatingState(
        can_rate=row is None and until is not None and now <= until,
        rate_until=until,
        rating=_view(db, row, now) if row is not None else None,
    )


async def _load(tx: AuditTx, actor: Actor, visit_id: str, action: str) -> Visit:
    """The visit, locked, if the one policy lets ``actor`` do ``action`` on it (audited)."""
    visit = await tx.session.get(Visit, visit_id, with_for_update=True)
    if visit is None:
        raise VisitNotFound()
    await access.check(tx, actor, action, visit)
    return visit


async def _rating_of(tx: AuditTx, visit_id: str) -> VisitRating | None:
    return await tx.session.scalar(select(VisitRating).where(VisitRating.visit_id == visit_id))


def _refuse(
    tx: AuditTx, error: ConsultError, actor: Actor, action: str, visit_id: str, **details: Any
) -> ConsultError:
    return tx.refuse(
        error, actor=actor, action=action, object_type="visit", object_id=visit_id, details=details
    )


def _mac(db: Database, text: str | None) -> str | None:
    return db.cipher.blind_index(text, "rating.text") if text is not None else None


# --- Services -----------------------------------------------------------------------------------


def _told(tx: AuditTx, visit: Visit | None, row: VisitRating, event: str) -> None:
    """After commit, the visit's doctor and the one who rated are pushed the change."""
    users = {row.rated_by} | ({visit.doctor_id} if visit is not None else set())
    events.publish(
        tx, RatingChanged(visit_id=row.visit_id, user_ids=tuple(sorted(users)), event=event)
    )


async def rate_visit(
    db: Database,
    actor: Actor,
    visit_id: str,
    *,
    stars: Any,
    text: Any = None,
    now: datetime | None = None,
) -> RatingView:
    """The patient side rates a finished visit (``rating.submit``, R40). Raises, audited:
    :class:`VisitNotFinished`, :class:`RatingWindowClosed`, :class:`AlreadyRated`,
    :class:`SensitiveWordBlocked`; and :class:`RatingStarsInvalid`, :class:`RatingTextInvalid`.
    """
    action = "rating.submit"
    await authorize(db, actor, action, object_type="visit", object_id=visit_id)
    stars = check_stars(stars)
    text = clean_text(text)
    words = await _filter(db, text)
    now = now or utc_now()
    async with audited(db) as tx:
        visit = await _load(tx, actor, visit_id, action)
        if not finished(visit):
            raise _refuse(tx, VisitNotFinished(), actor, action, visit_id, state=visit.status)
        assert visit.closed_at is not None
        if now > visit.closed_at + RATE_WINDOW:
            raise _refuse(tx, RatingWindowClosed(), actor, action, visit_id, window="rate")
        if await _rating_of(tx, visit_id) is not None:
            raise _refuse(tx, AlreadyRated(), actor, action, visit_id)
        if words:
            raise _refuse(tx, SensitiveWordBlocked(), actor, action, visit_id, word_ids=words[:8])
        assert actor.user_id is not None
        rating_id = new_id()
        row = VisitRating(
            id=rating_id,
            visit_id=visit_id,
            rated_by=actor.user_id,
            stars=stars,
            text_enc=db.cipher.encrypt(text, _context("text", rating_id)) if text else None,
            created_at=now,
        )
        tx.session.add(row)
        try:
            await tx.session.flush()
        except IntegrityError:  # another node's submit won the race
            raise _refuse(tx, AlreadyRated(), actor, action, visit_id) from None
        await tx.record(
            action,
            actor=actor,
            object_type="visit",
            object_id=visit_id,
            details={"rating_id": rating_id, "stars": stars, "text_mac": _mac(db, text)},
        )
        _told(tx, visit, row, "rated")
    logger.info("visit rated", extra={"visit_id": visit_id, "stars": stars})
    return _view(db, row, now)


async def edit_rating(
    db: Database,
    actor: Actor,
    visit_id: str,
    *,
    stars: Any,
    text: Any = None,
    now: datetime | None = None,
) -> RatingView:
    """The patient side edits its rating once, within :data:`EDIT_WINDOW` (``rating.edit``).

    Raises, audited: :class:`RatingNotFound`, :class:`RatingEditUsed`,
    :class:`RatingWindowClosed`, :class:`SensitiveWordBlocked`; and the input errors.
    """
    action = "rating.edit"
    await authorize(db, actor, action, object_type="visit", object_id=visit_id)
    stars = check_stars(stars)
    text = clean_text(text)
    words = await _filter(db, text)
    now = now or utc_now()
    async with audited(db) as tx:
        row = await _once_within(
            tx, actor, visit_id, action, now, words, "edit", EDIT_WINDOW, RatingEditUsed()
        )
        old = row.stars
        row.stars = stars
        row.text_enc = db.cipher.encrypt(text, _context("text", row.id)) if text else None
        row.edited_at = now
        await tx.record(
            action,
            actor=actor,
            object_type="visit",
            object_id=visit_id,
            details={
                "rating_id": row.id,
                "from": old,
                "stars": stars,
                "text_mac": _mac(db, text),
            },
        )
        _told(tx, await tx.session.get(Visit, visit_id), row, "edited")
    return _view(db, row, now)


async def reply(
    db: Database, actor: Actor, visit_id: str, *, text: Any, now: datetime | None = None
) -> RatingView:
    """The visit's doctor replies to its rating once, within :data:`REPLY_WINDOW`
    (``rating.reply``). Raises, audited: :class:`RatingNotFound`, :class:`RatingAlreadyReplied`,
    :class:`RatingWindowClosed`, :class:`SensitiveWordBlocked`; :class:`RatingTextInvalid`."""
    action = "rating.reply"
    await authorize(db, actor, action, object_type="visit", object_id=visit_id)
    cleaned = clean_text(text, required=True)
    words = await _filter(db, cleaned)
    now = now or utc_now()
    async with audited(db) as tx:
        row = await _once_within(
            tx, actor, visit_id, action, now, words, "reply", REPLY_WINDOW, RatingAlreadyReplied()
        )
        assert cleaned is not None
        row.reply_enc = db.cipher.encrypt(cleaned, _context("reply", row.id))
        row.replied_by = actor.user_id
        row.replied_at = now
        await tx.record(
            action,
            actor=actor,
            object_type="visit",
            object_id=visit_id,
            details={"rating_id": row.id, "text_mac": _mac(db, cleaned)},
        )
        _told(tx, await tx.session.get(Visit, visit_id), row, "replied")
    return _view(db, row, now)


async def get_rating(
    db: Database, actor: Actor, visit_id: str, *, now: datetime | None = None
) -> RatingState:
    """A visit's rating state (``rating.view``: its patient side, its doctor, staff in scope;
    the view is audited)."""
    action = "rating.view"
    await authorize(db, actor, action, object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load(tx, actor, visit_id, action)
        row = await _rating_of(tx, visit_id)
        await tx.record(action, actor=actor, object_type="visit", object_id=visit_id)
    return _state(db, visit, row, now or utc_now())


async def states_of(
    db: Database, visit_ids: Iterable[str], *, now: datetime | None = None
) -> dict[str, RatingState]:
    """The rating state of each visit, for a list the caller has already authorised (the
    patient's own history): not audited, like a list of one's visits."""
    ids = sorted(set(visit_ids))
    if not ids:
        return {}
    now = now or utc_now()
    async with db.session() as session:
        visits = (await session.scalars(select(Visit).where(Visit.id.in_(ids)))).all()
        rows = (
            await session.scalars(select(VisitRating).where(VisitRating.visit_id.in_(ids)))
        ).all()
    by_visit = {row.visit_id: row for row in rows}
    return {visit.id: _state(db, visit, by_visit.get(visit.id), now) for visit in visits}


async def satisfaction(db: Database, actor: Actor, doctor_id: str) -> Satisfaction:
    """R41: how many of a doctor's visits are rated and their average stars
    (``report.satisfaction``: the doctor its own; an operator the doctors of its departments)."""
    action = "report.satisfaction"
    await authorize(db, actor, action, object_type="practitioner", object_id=doctor_id)
    async with audited(db) as tx:
        practitioner = await tx.session.get(Practitioner, doctor_id)
        if practitioner is None:
            raise PractitionerNotFound()
        mine = actor.role is Role.DOCTOR and actor.user_id == doctor_id
        scoped = actor.role is Role.OPERATOR and in_scope(
            actor,
            institution_id=practitioner.institution_id,
            department_id=practitioner.department_id,
        )
        if not (mine or scoped):
            raise tx.refuse(
                PermissionDenied("Not your figure."),
                actor=actor,
                action=action,
                object_type="practitioner",
                object_id=doctor_id,
            )
        count, average = (
            await tx.session.execute(
                select(func.count(VisitRating.id), func.avg(VisitRating.stars))
                .join(Visit, Visit.id == VisitRating.visit_id)
                .where(Visit.doctor_id == doctor_id)
            )
        ).one()
    return Satisfaction(
        doctor_id=doctor_id,
        count=int(count or 0),
        average=round(float(average), 2) if count else None,
    )


@dataclass(frozen=True)
class DoctorRating:
    """One rating of a doctor's visit, for the doctor to read and reply to."""

    visit_id: str
    closed_at: datetime | None
    rating: RatingView


async def doctor_ratings(
    db: Database, actor: Actor, *, limit: int = 20, now: datetime | None = None
) -> list[DoctorRating]:
    """The newest ratings of the actor's own visits (``rating.list``: a doctor; the list is
    audited as one event, as the ratings' texts are read)."""
    action = "rating.list"
    await authorize(db, actor, action, object_type="practitioner", object_id=actor.user_id)
    now = now or utc_now()
    async with audited(db) as tx:
        rows = (
            await tx.session.execute(
                select(VisitRating, Visit.closed_at)
                .join(Visit, Visit.id == VisitRating.visit_id)
                .where(Visit.doctor_id == actor.user_id)
                .order_by(VisitRating.created_at.desc())
                .limit(max(1, min(limit, 100)))
            )
        ).all()
        await tx.record(
            action,
            actor=actor,
            object_type="practitioner",
            object_id=actor.user_id,
            details={"count": len(rows)},
        )
    return [DoctorRating(row.visit_id, closed_at, _view(db, row, now)) for row, closed_at in rows]


async def _once_within(
    tx: AuditTx,
    actor: Actor,
    visit_id: str,
    action: str,
    now: datetime,
    words: list[str],
    window: str,
    length: timedelta,
    used: ConsultError,
) -> VisitRating:
    """The visit's rating for a step allowed once (``window``: ``edit`` or ``reply``) within
    ``length`` of the rating; refusals audited: ``used`` if done already, the window, a word."""
    await _load(tx, actor, visit_id, action)
    row = await _rating_of(tx, visit_id)
    if row is None:
        raise RatingNotFound()
    done_at = row.edited_at if window == "edit" else row.replied_at
    if done_at is not None:
        raise _refuse(tx, used, actor, action, visit_id)
    if now > row.created_at + length:
        raise _refuse(tx, RatingWindowClosed(), actor, action, visit_id, window=window)
    if words:
        raise _refuse(tx, SensitiveWordBlocked(), actor, action, visit_id, word_ids=words[:8])
    return row
