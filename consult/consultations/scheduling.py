"""Scheduling a consultation's session against both sides' calendars (issue 14).

The request proposes a window (``proposed_start``, ``proposed_end``: the inviter's side); once
sent, the requester or the invited institution's centre sets ``scheduled_at``. It is refused
when the requester or an accepted expert is busy then: another consultation's session of theirs
(accepted or in session) within :data:`SESSION_LENGTH`, or a slot of their visit schedule
(``schedule_slots``, R7) that overlaps. A new time may be set again (the parties are reminded
of the new one). The change is audited and pushed (``consultation_changed``, event
``schedule``); the session reminders follow ``scheduled_at``
(:mod:`consult.consultations.reminders`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.errors import ScheduleConflict, ScheduleInPast
from consult.consultations.loading import load_consultation, parties_of, refuse
from consult.consultations.machines import CONSULTATION_MACHINE
from consult.consultations.models import (
    Consultation,
    ConsultationInvitation,
    ConsultationState,
    InvitationState,
)
from consult.consultations.queries import get_consultation
from consult.consultations.views import ConsultationView
from consult.db import Database
from consult.errors import InvalidTransition
from consult.events import StateChanged, publish
from consult.models import ScheduleSlot
from consult.sqltypes import utc_now

SESSION_LENGTH: Final = timedelta(hours=1)
"""How long a session is taken to last when calendars are compared."""
SCHEDULABLE: Final = frozenset({ConsultationState.SENT.value, ConsultationState.ACCEPTED.value})
BUSY_STATES: Final = (ConsultationState.ACCEPTED.value, ConsultationState.IN_SESSION.value)


async def busy_people(
    session: Any, people: list[str], starts: datetime, *, besides: str
) -> list[str]:
    """Who of ``people`` is busy in ``[starts, starts + SESSION_LENGTH)``: another consultation's
    session of theirs (other than ``besides``) or a slot of their visit schedule."""
    ends = starts + SESSION_LENGTH
    busy: set[str] = set()
    near = (
        Consultation.id != besides,
        Consultation.status.in_(BUSY_STATES),
        Consultation.scheduled_at > starts - SESSION_LENGTH,
        Consultation.scheduled_at < ends,
    )
    requesters = await session.scalars(
        select(Consultation.requested_by).where(*near, Consultation.requested_by.in_(people))
    )
    busy |= set(requesters.all())
    experts = await session.scalars(
        select(ConsultationInvitation.expert_id)
        .join(Consultation, Consultation.id == ConsultationInvitation.consultation_id)
        .where(
            *near,
            ConsultationInvitation.status == InvitationState.ACCEPTED.value,
            ConsultationInvitation.expert_id.in_(people),
        )
    )
    busy |= set(experts.all())
    slots = await session.scalars(
        select(ScheduleSlot.doctor_id).where(
            ScheduleSlot.doctor_id.in_(people),
            ScheduleSlot.starts_at < ends,
            ScheduleSlot.ends_at > starts,
        )
    )
    busy |= set(slots.all())
    return sorted(busy)


async def schedule_session(
    db: Database,
    actor: Actor,
    consultation_id: str,
    starts_at: datetime,
    *,
    now: datetime | None = None,
) -> ConsultationView:
    """Set when the session starts (the requester or the invited centre), both sides free."""
    action = "consultation.schedule"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    now = now or utc_now()
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"requester", "invitee_centre"})
        )
        row = loaded.row
        if row.status not in SCHEDULABLE:
            error = CONSULTATION_MACHINE.closed_error() if row.closed_at else InvalidTransition()
            raise refuse(tx, actor, error, action, consultation_id, state=row.status)
        if starts_at <= now:
            raise refuse(tx, actor, ScheduleInPast(), action, consultation_id)
        people = [row.requested_by] + [
            i.expert_id for i in loaded.invitations if i.status == InvitationState.ACCEPTED.value
        ]
        busy = await busy_people(tx.session, people, starts_at, besides=row.id)
        if busy:
            raise refuse(tx, actor, ScheduleConflict(), action, consultation_id, busy=busy)
        previous = row.scheduled_at
        row.scheduled_at = starts_at
        row.updated_at = now
        await tx.record(
            action,
            actor=actor,
            object_type="consultation",
            object_id=row.id,
            details={
                "scheduled_at": starts_at.isoformat(),
                "previous": previous.isoformat() if previous else None,
            },
        )
        publish(
            tx,
            StateChanged(
                "consultation",
                row.id,
                row.status,
                row.status,
                "schedule",
                actor.user_id,
                parties_of(loaded),
            ),
        )
    return await get_consultation(db, actor, consultation_id, audit=False)
