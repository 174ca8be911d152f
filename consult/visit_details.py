"""What a visit card shows besides the visit itself: the doctor, the department, the booked time
and the place in the doctor's queue.

Read-only and not audited: the caller has already checked (and audited where it must) that the
actor may see the visit, hence whom it is for; the queue position is a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from consult.db import Database
from consult.models import Department, Patient, ScheduleSlot, User, Visit, VisitState


@dataclass(frozen=True)
class VisitDetails:
    """Names and times for one visit's card."""

    doctor_name: str
    patient_name: str | None
    """The person seen; the caller may see the visit, hence whom it is for."""
    department_name: str | None
    slot_starts_at: datetime | None
    slot_ends_at: datetime | None
    queue_position: int | None
    """Patients waiting ahead of this one (0: next); ``None`` unless the visit is waiting."""


async def visit_details(db: Database, visit_id: str) -> VisitDetails | None:
    """The details of one visit, or ``None`` when it does not exist."""
    async with db.session() as session:
        row = (
            await session.execute(
                select(Visit, User.display_name, Patient.name, Department.name, ScheduleSlot)
                .join(User, User.id == Visit.doctor_id)
                .outerjoin(Patient, Patient.id == Visit.patient_record_id)
                .outerjoin(Department, Department.id == Visit.department_id)
                .outerjoin(ScheduleSlot, ScheduleSlot.id == Visit.slot_id)
                .where(Visit.id == visit_id)
            )
        ).first()
        if row is None:
            return None
        visit, doctor_name, patient_name, department_name, slot = row
        position = None
        if visit.status == VisitState.WAITING.value and visit.checked_in_at is not None:
            ahead = await session.scalar(
                select(func.count())
                .select_from(Visit)
                .where(
                    Visit.doctor_id == visit.doctor_id,
                    Visit.status == VisitState.WAITING.value,
                    Visit.checked_in_at < visit.checked_in_at,
                )
            )
            position = int(ahead or 0)
    return VisitDetails(
        doctor_name=doctor_name,
        patient_name=patient_name,
        department_name=department_name,
        slot_starts_at=slot.starts_at if slot is not None else None,
        slot_ends_at=slot.ends_at if slot is not None else None,
        queue_position=position,
    )
