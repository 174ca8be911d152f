"""A doctor's fixed schedule (R7): slots of time that take a number of bookings.

The other way in is the queue of a doctor who has opened online hours
(:func:`consult.practitioners.set_online`); :func:`consult.visit_flow.book_visit` takes either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    PractitionerNotFound,
    SlotNotFound,
)
from consult.models import Practitioner, ScheduleSlot, Visit, VisitState
from consult.permissions import Role, in_scope
from consult.sqltypes import new_id, utc_now

MAX_SLOT: Final = timedelta(hours=12)
MAX_CAPACITY: Final = 200
ACTIVE_STATES: Final = frozenset(
    {VisitState.BOOKED.value, VisitState.WAITING.value, VisitState.IN_ROOM.value}
)


@dataclass(frozen=True)
class SlotView:
    """A slot and how many bookings it still takes."""

    id: str
    doctor_id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int

    @property
    def remaining(self) -> int:
        """Bookings still possible."""
        return max(0, self.capacity - self.booked)


async def booked_count(tx: AuditTx, slot_id: str) -> int:
    """Visits holding a place in the slot (all but cancelled ones)."""
    count = await tx.session.scalar(
        select(func.count())
        .select_from(Visit)
        .where(Visit.slot_id == slot_id, Visit.status != VisitState.CANCELLED.value)
    )
    return int(count or 0)


async def _own_or_scoped(tx: AuditTx, actor: Actor, doctor_id: str, action: str) -> None:
    """Doctors manage their own schedule; operators those of their departments' doctors."""
    practitioner = await tx.session.get(Practitioner, doctor_id)
    if practitioner is None:
        raise PractitionerNotFound()
    allowed = (
        actor.user_id == doctor_id
        if actor.role is Role.DOCTOR
        else in_scope(
            actor,
            institution_id=practitioner.institution_id,
            department_id=practitioner.department_id,
        )
    )
    if not allowed:
        raise tx.refuse(
            PermissionDenied("Not your schedule."),
            actor=actor,
            action=action,
            object_type="practitioner",
            object_id=doctor_id,
        )


async def add_slot(
    db: Database,
    actor: Actor,
    *,
    doctor_id: str,
    starts_at: datetime,
    ends_at: datetime,
    capacity: int = 1,
) -> SlotView:
    """Open a slot in a doctor's schedule (``schedule.create_slot``)."""
    await authorize(db, actor, "schedule.create_slot", object_type="slot")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("Times need a time zone.")
    if not timedelta(0) < ends_at - starts_at <= MAX_SLOT:
        raise InvalidInput("A slot ends after it starts, within 12 hours.")
    if ends_at <= utc_now():
        raise InvalidInput("The slot is over already.")
    if isinstance(capacity, bool) or not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidInput(f"Capacity must be 1-{MAX_CAPACITY}.")
    async with audited(db) as tx:
        await _own_or_scoped(tx, actor, doctor_id, "schedule.create_slot")
        row = ScheduleSlot(
            id=new_id(),
            doctor_id=doctor_id,
            starts_at=starts_at,
            ends_at=ends_at,
            capacity=capacity,
        )
        tx.session.add(row)
        await tx.record(
            "schedule.create_slot",
            actor=actor,
            object_type="slot",
            object_id=row.id,
            details={"doctor_id": doctor_id, "capacity": capacity},
        )
    return SlotView(row.id, doctor_id, starts_at, ends_at, capacity, 0)


async def delete_slot(db: Database, actor: Actor, slot_id: str) -> None:
    """Remove a slot nobody has booked (``schedule.delete_slot``)."""
    await authorize(db, actor, "schedule.delete_slot", object_type="slot", object_id=slot_id)
    async with audited(db) as tx:
        row = await tx.session.get(ScheduleSlot, slot_id)
        if row is None:
            raise SlotNotFound()
        await _own_or_scoped(tx, actor, row.doctor_id, "schedule.delete_slot")
        if await booked_count(tx, slot_id):
            raise Conflict("The slot has bookings; cancel them first.")
        await tx.session.delete(row)
        await tx.record("schedule.delete_slot", actor=actor, object_type="slot", object_id=slot_id)


async def list_slots(
    db: Database, actor: Actor, doctor_id: str, *, include_past: bool = False
) -> list[SlotView]:
    """A doctor's slots in time order, with their bookings (``schedule.view``)."""
    await authorize(db, actor, "schedule.view", object_type="slot")
    statement = select(ScheduleSlot).where(ScheduleSlot.doctor_id == doctor_id)
    if not include_past:
        statement = statement.where(ScheduleSlot.ends_at > utc_now())
    async with db.session() as session:
        rows = (await session.scalars(statement.order_by(ScheduleSlot.starts_at))).all()
        counts = dict(
            (
                await session.execute(
                    select(Visit.slot_id, func.count())
                    .where(
                        Visit.slot_id.in_([r.id for r in rows]),
                        Visit.status != VisitState.CANCELLED.value,
                    )
                    .group_by(Visit.slot_id)
                )
            ).all()
        )
    return [
        SlotView(r.id, r.doctor_id, r.starts_at, r.ends_at, r.capacity, int(counts.get(r.id, 0)))
        for r in rows
    ]
