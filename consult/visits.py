"""Visits: demo visits (who may join a room: ``consult.rooms`` and ``consult.access``)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from consult import rooms
from consult.actor import Actor
from consult.db import Database
from consult.models import (
    Department,
    Institution,
    InstitutionLevel,
    ParticipationState,
    RoomRole,
    User,
    Visit,
    VisitMode,
    VisitState,
)
from consult.passwords import hash_password
from consult.permissions import Role
from consult.sqltypes import new_id

logger = logging.getLogger(__name__)

DEMO_INSTITUTION_NAME = "示范互联网医院"
DEMO_DEPARTMENT_NAME = "心血管内科"
DEMO_DOCTOR_NAME = "王医生"
DEMO_PATIENT_NAME = "患者 张某"
DEMO_COMPANION_NAME = "家属 张某某"


@dataclass(frozen=True)
class DemoVisit:
    """The ids and names of a freshly created demo visit."""

    visit_id: str
    room_id: str
    institution_id: str
    doctor_id: str
    doctor_name: str
    patient_id: str
    patient_name: str
    companion_id: str | None = None
    """With ``companion=True``: a family member admitted to the room beside the patient."""


async def create_demo_visit(db: Database, *, companion: bool = False) -> DemoVisit:
    """Create a demo institution, department, doctor, patient and a video visit between them.

    Every call creates new rows with unique usernames. The doctor gets a random password that is
    hashed and then forgotten: demo participants join by token, never by password. The visit
    starts with its patient admitted (``in_room``), so the demo links join at once. With
    ``companion``, a family member of the patient is in the room too (a call of three).
    """
    suffix = secrets.token_hex(4)
    # Argon2 costs tens of milliseconds of CPU: keep it off the event loop.
    doctor_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(32))
    institution = Institution(
        id=new_id(), name=DEMO_INSTITUTION_NAME, level=InstitutionLevel.TERTIARY.value
    )
    department = Department(id=new_id(), institution_id=institution.id, name=DEMO_DEPARTMENT_NAME)
    doctor = User(
        id=new_id(),
        institution_id=institution.id,
        department_id=department.id,
        username=f"demo-doctor-{suffix}",
        display_name=DEMO_DOCTOR_NAME,
        password_hash=doctor_hash,
        role=Role.DOCTOR.value,
    )
    patient = User(
        id=new_id(),
        username=f"demo-patient-{suffix}",
        display_name=DEMO_PATIENT_NAME,
        password_hash=None,
        role=Role.PATIENT.value,
    )
    visit = Visit(
        id=new_id(),
        institution_id=institution.id,
        doctor_id=doctor.id,
        patient_id=patient.id,
        mode=VisitMode.VIDEO.value,
        status=VisitState.IN_ROOM.value,
        department_id=department.id,
    )
    family = (
        User(
            id=new_id(),
            username=f"demo-companion-{suffix}",
            display_name=DEMO_COMPANION_NAME,
            password_hash=None,
            role=Role.PATIENT.value,
        )
        if companion
        else None
    )
    async with db.session() as session, session.begin():
        # Flush in dependency order: there are no relationships for the unit of work to sort by.
        for row in (institution, department, doctor, patient, family, visit):
            if row is not None:
                session.add(row)
                await session.flush()
        # the demo's patient is already in the room: arrived, admitted
        for event in ("check_in", "admit"):
            room = await rooms.follow_visit(session, visit, event, Actor.system())
        if family is not None:
            await rooms.add_participant(
                session,
                room,
                family.id,
                RoomRole.COMPANION,
                ParticipationState.ADMITTED,
                arrived=True,
            )
    logger.info("demo visit %s created in institution %s", visit.id, institution.id)
    return DemoVisit(
        visit_id=visit.id,
        room_id=room.id,
        institution_id=institution.id,
        doctor_id=doctor.id,
        doctor_name=doctor.display_name,
        patient_id=patient.id,
        patient_name=patient.display_name,
        companion_id=family.id if family is not None else None,
    )


async def get_visit(db: Database, visit_id: str) -> Visit | None:
    """The visit with this id, or ``None``; the returned object is detached from any session."""
    async with db.session() as session:
        return await session.get(Visit, visit_id)
