"""Which reminders of remote consultation are due at a moment (issue 14, R11).

- An invited expert who has not answered: at half of its time to answer
  (``invitation_due_half``, only when that is before the last hour) and an hour before the
  deadline (``invitation_due_soon``), never once the deadline passed.
- A scheduled session (``scheduled_at``, the request accepted): 24 hours
  (``session_soon_24h``) and 15 minutes (``session_soon_15m``) before it starts, to the
  requester, each accepted expert and the patient's account; when both are due at once (a
  session scheduled 10 minutes ahead, or a server that was down) only the nearer one.
- An invitation answered or expired (``invitation_accepted``, ``invitation_declined``,
  ``invitation_expired``): the requester and the operators of both consult centres, for
  answers of the last :data:`ANSWER_LOOKBACK` (a server started after a long stop does not
  replay old news).

A reminder's key includes the moment it is about, so each is made once
(:func:`consult.reminders.store`); a session moved to another time is reminded again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import or_, select

from consult.consultations.loading import centre_of
from consult.consultations.models import (
    Consultation,
    ConsultationInvitation,
    ConsultationState,
    InvitationState,
)
from consult.db import Database
from consult.models import User, UserDepartment
from consult.permissions import Role
from consult.reminders import Due

INVITATION_DUE_SOON: Final = timedelta(hours=1)
"""An unanswered invitation is reminded this long before its deadline (and at half time)."""
SESSION_LEADS: Final = (
    (timedelta(minutes=15), "session_soon_15m"),
    (timedelta(hours=24), "session_soon_24h"),
)
"""How long before a scheduled session its parties are reminded, nearest first."""
ANSWER_KINDS: Final = {
    InvitationState.ACCEPTED.value: "invitation_accepted",
    InvitationState.DECLINED.value: "invitation_declined",
    InvitationState.EXPIRED.value: "invitation_expired",
}
ANSWER_LOOKBACK: Final = timedelta(days=2)
"""Answers older than this are not told again (longer than any stop the server should have)."""
OPEN_STATES: Final = frozenset(
    {
        ConsultationState.SENT.value,
        ConsultationState.ACCEPTED.value,
        ConsultationState.IN_SESSION.value,
    }
)
"""Requests whose invited experts are still asked to answer."""
MAX_ROWS: Final = 500
"""Invitations (or sessions) looked at per kind and run: each run's work is bounded."""


def _invitation_kind(invitation: ConsultationInvitation, now: datetime) -> str | None:
    deadline = invitation.respond_by
    if now >= deadline:
        return None
    soon = deadline - INVITATION_DUE_SOON
    if now >= soon:
        return "invitation_due_soon"
    half = invitation.created_at + (deadline - invitation.created_at) / 2
    if half < soon and now >= half:
        return "invitation_due_half"
    return None


def _session_kind(starts: datetime, now: datetime) -> str | None:
    if now >= starts:
        return None
    for lead, kind in SESSION_LEADS:  # nearest first: only the nearer of two due at once
        if now >= starts - lead:
            return kind
    return None


async def _unanswered(session: Any, now: datetime) -> list[Due]:
    rows = (
        await session.execute(
            select(ConsultationInvitation)
            .join(Consultation, Consultation.id == ConsultationInvitation.consultation_id)
            .where(
                ConsultationInvitation.status == InvitationState.INVITED.value,
                ConsultationInvitation.respond_by > now,
                Consultation.status.in_(OPEN_STATES),
            )
            .order_by(ConsultationInvitation.respond_by, ConsultationInvitation.id)
            .limit(MAX_ROWS)
        )
    ).scalars()
    due = []
    for invitation in rows:
        kind = _invitation_kind(invitation, now)
        if kind is not None:
            due.append(
                Due(
                    kind=kind,
                    subject_type="invitation",
                    subject_id=invitation.id,
                    consultation_id=invitation.consultation_id,
                    recipient_id=invitation.expert_id,
                    at=invitation.respond_by,
                )
            )
    return due


async def _sessions(session: Any, now: datetime) -> list[Due]:
    widest = max(lead for lead, _kind in SESSION_LEADS)
    rows = (
        await session.execute(
            select(Consultation)
            .where(
                Consultation.status == ConsultationState.ACCEPTED.value,
                Consultation.scheduled_at.is_not(None),
                Consultation.scheduled_at > now,
                Consultation.scheduled_at <= now + widest,
            )
            .order_by(Consultation.scheduled_at, Consultation.id)
            .limit(MAX_ROWS)
        )
    ).scalars()
    due = []
    for row in rows:
        assert row.scheduled_at is not None
        kind = _session_kind(row.scheduled_at, now)
        if kind is None:
            continue
        experts = (
            await session.scalars(
                select(ConsultationInvitation.expert_id).where(
                    ConsultationInvitation.consultation_id == row.id,
                    ConsultationInvitation.status == InvitationState.ACCEPTED.value,
                )
            )
        ).all()
        people = [row.requested_by, *sorted(experts)]
        if row.patient_account_id:
            people.append(row.patient_account_id)
        due += [
            Due(kind, "consultation", row.id, row.id, user_id, row.scheduled_at)
            for user_id in dict.fromkeys(people)
        ]
    return due


async def _operators(session: Any, institution_id: str) -> list[str]:
    """The active operators of the institution's consult centre (none without a centre)."""
    department_id = await centre_of(session, institution_id)
    if department_id is None:
        return []
    rows = await session.scalars(
        select(UserDepartment.user_id)
        .join(User, User.id == UserDepartment.user_id)
        .where(
            UserDepartment.department_id == department_id,
            User.role == Role.OPERATOR.value,
            User.is_active.is_(True),
        )
    )
    return sorted(rows.all())


async def _answers(session: Any, now: datetime) -> list[Due]:
    since = now - ANSWER_LOOKBACK
    rows = (
        await session.execute(
            select(ConsultationInvitation, Consultation)
            .join(Consultation, Consultation.id == ConsultationInvitation.consultation_id)
            .where(
                ConsultationInvitation.status.in_(ANSWER_KINDS),
                or_(
                    ConsultationInvitation.responded_at >= since,
                    ConsultationInvitation.closed_at >= since,
                ),
            )
            .order_by(ConsultationInvitation.updated_at, ConsultationInvitation.id)
            .limit(MAX_ROWS)
        )
    ).all()
    due = []
    operators: dict[str, list[str]] = {}
    for invitation, consultation in rows:
        at = (
            invitation.respond_by
            if invitation.status == InvitationState.EXPIRED.value
            else invitation.responded_at
        )
        if at is None or at > now:
            continue
        for institution_id in (consultation.institution_id, consultation.target_institution_id):
            if institution_id not in operators:
                operators[institution_id] = await _operators(session, institution_id)
        people = [
            consultation.requested_by,
            *operators[consultation.institution_id],
            *operators[consultation.target_institution_id],
        ]
        kind = ANSWER_KINDS[invitation.status]
        due += [
            Due(kind, "invitation", invitation.id, consultation.id, user_id, at)
            for user_id in dict.fromkeys(people)
        ]
    return due


async def due_reminders(db: Database, *, now: datetime) -> list[Due]:
    """Every consultation reminder due at ``now`` (made ones included: storing skips them)."""
    async with db.session() as session:
        due: list[Due] = []
        for part in (_unanswered, _sessions, _answers):
            due += await part(session, now)
    return due
