"""Demo visits, and a join token turned into the one Actor (``consult.rooms.authenticate_join``)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, update

from consult.actor import Actor
from consult.db import Database
from consult.errors import NotAParticipant, RoomNotFound
from consult.models import Department, Institution, User, Visit
from consult.passwords import verify_password
from consult.permissions import Role
from consult.rooms import authenticate_join
from consult.sqltypes import new_id
from consult.tokens import issue_join_token
from consult.visits import DemoVisit, create_demo_visit, get_visit

SECRET = "visits-test-secret-" + "0123456789abcdef" * 2


async def resolve_participant(db: Database, room_id: str, user_id: str, role: str) -> Actor:
    token = issue_join_token(SECRET, room_id=room_id, user_id=user_id, role=role)
    return await authenticate_join(db, SECRET, token)


async def test_demo_visit_rows(db: Database) -> None:
    demo = await create_demo_visit(db)
    assert isinstance(demo, DemoVisit)
    async with db.session() as session:
        visit = await session.get(Visit, demo.visit_id)
        institution = await session.get(Institution, demo.institution_id)
        doctor = await session.get(User, demo.doctor_id)
        patient = await session.get(User, demo.patient_id)
        departments = (
            await session.scalars(
                select(Department).where(Department.institution_id == demo.institution_id)
            )
        ).all()
    assert visit is not None and institution is not None
    assert doctor is not None and patient is not None
    assert institution.level == "tertiary"
    assert institution.name == "示范互联网医院"
    assert len(departments) == 1
    assert (visit.institution_id, visit.doctor_id, visit.patient_id) == (
        demo.institution_id,
        demo.doctor_id,
        demo.patient_id,
    )
    assert visit.mode == "video"
    assert visit.status == "in_room"  # demo links join at once
    assert (doctor.kind, doctor.role) == ("staff", "doctor")
    assert doctor.department_id == departments[0].id
    assert doctor.display_name == demo.doctor_name == "王医生"
    assert doctor.password_hash is not None and doctor.password_hash.startswith("$argon2id$")
    assert not verify_password(doctor.password_hash, "")
    assert (patient.kind, patient.role) == ("patient", "patient")
    assert patient.display_name == demo.patient_name == "患者 张某"
    assert doctor.is_active and patient.is_active


async def test_each_demo_visit_is_new(db: Database) -> None:
    first = await create_demo_visit(db)
    second = await create_demo_visit(db)
    for field in ("visit_id", "institution_id", "doctor_id", "patient_id"):
        assert getattr(first, field) != getattr(second, field)
    ids = [first.doctor_id, first.patient_id, second.doctor_id, second.patient_id]
    async with db.session() as session:
        usernames = (await session.scalars(select(User.username).where(User.id.in_(ids)))).all()
    assert len(usernames) == len(set(usernames)) == 4


async def test_resolve_doctor_and_patient(db: Database) -> None:
    demo = await create_demo_visit(db)
    doctor = await resolve_participant(db, demo.room_id, demo.doctor_id, "doctor")
    patient = await resolve_participant(db, demo.room_id, demo.patient_id, "patient")
    assert (doctor.user_id, doctor.role, doctor.room_role, doctor.display_name) == (
        demo.doctor_id,
        Role.DOCTOR,
        "doctor",
        "王医生",
    )
    assert (patient.room_id, patient.room_role, patient.display_name) == (
        demo.room_id,
        "patient",
        "患者 张某",
    )


@pytest.mark.parametrize(("user", "role"), [("doctor", "patient"), ("patient", "doctor")])
async def test_swapped_role_is_not_a_participant(db: Database, user: str, role: str) -> None:
    demo = await create_demo_visit(db)
    user_id = demo.doctor_id if user == "doctor" else demo.patient_id
    with pytest.raises(NotAParticipant) as info:
        await resolve_participant(db, demo.room_id, user_id, role)
    assert info.value.code == "not_a_participant"


async def test_someone_elses_room_is_not_theirs(db: Database) -> None:
    mine = await create_demo_visit(db)
    other = await create_demo_visit(db)
    for role, user_id in (("doctor", other.doctor_id), ("patient", other.patient_id)):
        with pytest.raises(NotAParticipant):
            await resolve_participant(db, mine.room_id, user_id, role)


async def test_unknown_role_cannot_be_issued() -> None:
    with pytest.raises(ValueError):
        issue_join_token(SECRET, room_id=new_id(), user_id=new_id(), role="admin")


async def test_unknown_room(db: Database) -> None:
    demo = await create_demo_visit(db)
    for room_id in (new_id(), "not-an-id", "x" * 300):
        with pytest.raises(RoomNotFound) as info:
            await resolve_participant(db, room_id, demo.doctor_id, "doctor")
        assert info.value.code == "room_not_found"


async def test_deactivated_account_is_refused(db: Database) -> None:
    demo = await create_demo_visit(db)
    async with db.session() as session, session.begin():
        await session.execute(
            update(User).where(User.id == demo.patient_id).values(is_active=False)
        )
    with pytest.raises(NotAParticipant):
        await resolve_participant(db, demo.room_id, demo.patient_id, "patient")
    doctor = await resolve_participant(db, demo.room_id, demo.doctor_id, "doctor")
    assert doctor.room_role == "doctor"


async def test_get_visit(db: Database) -> None:
    demo = await create_demo_visit(db)
    visit = await get_visit(db, demo.visit_id)
    assert visit is not None
    assert visit.doctor_id == demo.doctor_id
    assert visit.created_at.tzinfo is not None
    assert await get_visit(db, new_id()) is None


async def test_logs_name_no_patient(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="consult")
    demo = await create_demo_visit(db)
    await resolve_participant(db, demo.room_id, demo.patient_id, "patient")
    with pytest.raises(NotAParticipant):
        await resolve_participant(db, demo.room_id, demo.patient_id, "doctor")
    messages = [record.getMessage() for record in caplog.records]
    assert any(demo.room_id in message for message in messages)  # logging did happen
    for message in messages:
        assert demo.patient_id not in message
        assert demo.patient_name not in message
        assert "张" not in message
