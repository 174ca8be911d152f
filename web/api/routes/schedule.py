"""A doctor's fixed schedule (R7): slots that take a number of bookings."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from consult import schedule
from consult.schedule import SlotView

from ..call import Call
from ..fields import Id, Input, Output, Time
from ..registry import api


class SlotCreate(Input):
    starts_at: Time
    ends_at: Time
    capacity: int = Field(default=1, ge=1, le=200)


class Slot(Output):
    id: str
    doctor_id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int
    remaining: int


class SlotList(Output):
    slots: list[Slot]


class DoctorPath(Input):
    user_id: Id


class SlotPath(Input):
    slot_id: Id


class SlotQuery(Input):
    include_past: bool = False


def slot_of(view: SlotView) -> Slot:
    return Slot(
        id=view.id,
        doctor_id=view.doctor_id,
        starts_at=view.starts_at,
        ends_at=view.ends_at,
        capacity=view.capacity,
        booked=view.booked,
        remaining=view.remaining,
    )


@api.operation(
    "POST",
    "/practitioners/{user_id}/slots",
    action="schedule.create_slot",
    tag="schedule",
    status=201,
)
async def create_slot(call: Call, path: DoctorPath, body: SlotCreate) -> Slot:
    """Open a slot in the doctor's schedule (the doctor, or an operator of the department)."""
    view = await schedule.add_slot(
        call.db,
        call.me,
        doctor_id=path.user_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        capacity=body.capacity,
    )
    return slot_of(view)


@api.operation("GET", "/practitioners/{user_id}/slots", action="schedule.view", tag="schedule")
async def list_slots(call: Call, path: DoctorPath, query: SlotQuery) -> SlotList:
    """The doctor's slots in time order, with their bookings."""
    views = await schedule.list_slots(
        call.db, call.me, path.user_id, include_past=query.include_past
    )
    return SlotList(slots=[slot_of(view) for view in views])


@api.operation("DELETE", "/slots/{slot_id}", action="schedule.delete_slot", tag="schedule")
async def delete_slot(call: Call, path: SlotPath) -> None:
    """Remove a slot nobody has booked."""
    await schedule.delete_slot(call.db, call.me, path.slot_id)
