"""R36, R37: patient records, encrypted identifiers, blind-index lookup, audited views."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
from consult_world import (
    Org,
    fresh_id_number,
    fresh_phone,
    make_doctor,
    make_org,
    make_patient,
    make_person,
)
from sqlalchemy import select

from consult.db import Database
from consult.errors import (
    InvalidIdNumber,
    InvalidInput,
    InvalidPhone,
    PatientExists,
    PatientNotFound,
    PermissionDenied,
)
from consult.identifiers import (
    age_on,
    id_check_char,
    mask_id_number,
    mask_phone,
    normalize_id_number,
    normalize_phone,
)
from consult.identity import decide_guardian
from consult.models import AuditEvent, Patient
from consult.patients import (
    ID_NUMBER_CONTEXT,
    find_patient_by_id_number,
    get_patient,
    list_diagnoses,
    my_patients,
    record_prior_diagnosis,
    register_patient,
)
from consult.permissions import Role

# GB 11643-1999's own example.
STANDARD_ID = "11010519491231002X"


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


# --- Identifiers -------------------------------------------------------------------------------


def test_r37_id_number_checksum_and_birth_date() -> None:
    assert id_check_char(STANDARD_ID[:17]) == "X"
    assert normalize_id_number(" 11010519491231002x ") == STANDARD_ID


@pytest.mark.parametrize(
    "bad",
    [
        "110105194912310021",  # wrong check character
        "11010519491231002",  # 17 characters
        "1101051949123100211",  # 19 characters
        "11010519491331002X",  # month 13 (check char recomputed below would not help)
        "A1010519491231002X",
        "",
    ],
)
def test_r37_invalid_id_numbers_are_refused(bad: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        normalize_id_number(bad)
    assert info.value.code == "invalid_id_number"


def test_r37_impossible_birth_dates_are_refused_even_with_a_right_checksum() -> None:
    for body in ("11010518991231002", "11010520990101002", "11010520230230002"):
        with pytest.raises(InvalidIdNumber):
            normalize_id_number(body + id_check_char(body))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("13800138000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("0086 13800138000", "13800138000"),
    ],
)
def test_r37_phones_normalise(raw: str, clean: str) -> None:
    assert normalize_phone(raw) == clean


@pytest.mark.parametrize("bad", ["12800138000", "1380013800", "010-12345678", "", "abc"])
def test_r37_invalid_phones_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(bad)


def test_r37_masks_and_ages() -> None:
    assert mask_id_number(STANDARD_ID) == "110105********002X"
    assert mask_phone("13800138000") == "138****8000"
    assert age_on(date(2020, 3, 1), date(2026, 2, 28)) == 5
    assert age_on(date(2020, 3, 1), date(2026, 3, 1)) == 6


# --- Records -------------------------------------------------------------------------------


async def test_r36_registration_encrypts_and_looks_up_by_blind_index(
    db: Database, org: Org
) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    number, phone = fresh_id_number(date(1975, 2, 3)), fresh_phone()
    view = await register_patient(
        db, nurse.actor, name="李四", id_number=number.lower(), phone=phone
    )
    assert (view.id_number, view.phone, view.birth_date) == (number, phone, date(1975, 2, 3))
    async with db.session() as session:
        row = await session.get(Patient, view.id)
    assert row is not None
    assert number not in row.id_number_enc and phone not in (row.phone_enc or "")
    assert row.id_number_index == db.cipher.blind_index(number, ID_NUMBER_CONTEXT)
    found = await find_patient_by_id_number(db, nurse.actor, number)
    assert found is not None and found.id == view.id
    assert (
        await find_patient_by_id_number(db, nurse.actor, fresh_id_number(date(1975, 2, 3))) is None
    )
    with pytest.raises(PatientExists):
        await register_patient(db, nurse.actor, name="李四", id_number=number)


async def test_r36_views_and_lookups_are_audited_without_identifiers(
    db: Database, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nurse = await make_person(db, org, Role.NURSE)
    patient = await make_patient(db, org)
    await get_patient(db, nurse.actor, patient.record_id)
    await find_patient_by_id_number(db, nurse.actor, patient.id_number)
    async with db.session() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.object_id == patient.record_id)
            )
        ).all()
    assert {"patient.register", "patient.view", "patient.find"} <= {e.action for e in events}
    for event in events:
        assert patient.id_number not in event.details and patient.phone not in event.details
    for record in caplog.records:
        assert patient.id_number not in record.getMessage()
        assert patient.phone not in record.getMessage()


async def test_r36_birth_date_must_match_the_id_number(db: Database, org: Org) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    with pytest.raises(InvalidInput):
        await register_patient(
            db,
            nurse.actor,
            name="王五",
            id_number=fresh_id_number(date(1990, 1, 1)),
            birth_date=date(1990, 1, 2),
        )


async def test_r34_who_may_see_a_record(db: Database, org: Org) -> None:
    patient = await make_patient(db, org)
    stranger = await make_patient(db, org)
    doctor = await make_doctor(db, org)
    for role in (Role.NURSE, Role.OPERATOR):
        staff = await make_person(db, org, role)
        assert (await get_patient(db, staff.actor, patient.record_id)).id == patient.record_id
    assert (await get_patient(db, patient.person.actor, patient.record_id)).name == "张三"
    for outsider in (stranger.person.actor, doctor.actor):  # the doctor has no visit with them
        with pytest.raises(PermissionDenied):
            await get_patient(db, outsider, patient.record_id)
    for role in (Role.ADMIN, Role.AUDITOR, Role.REGULATOR):
        someone = await make_person(db, org, role)
        with pytest.raises(PermissionDenied):
            await get_patient(db, someone.actor, patient.record_id)
    with pytest.raises(PatientNotFound):
        await get_patient(db, patient.person.actor, "0" * 32)


async def test_r4_a_guardian_registers_and_sees_its_ward(db: Database, org: Org) -> None:
    parent = await make_patient(db, org)
    child = await register_patient(
        db,
        parent.person.actor,
        name="张小宝",
        id_number=fresh_id_number(date.today() - timedelta(days=3 * 365)),
        guardian_id=parent.record_id,
        guardian_relation="parent",
    )
    assert child.user_id is None and child.guardian_id == parent.record_id and child.age() < 6
    assert {p.id for p in await my_patients(db, parent.person.actor)} == {
        parent.record_id,
        child.id,
    }
    # issue 13 item 3: the guardian acts for the ward once staff verified the relation
    nurse = await make_person(db, org, Role.NURSE)
    await decide_guardian(db, nurse.actor, child.id, verified=True)
    assert (await get_patient(db, parent.person.actor, child.id)).name == "张小宝"
    stranger = await make_patient(db, org)
    with pytest.raises(PermissionDenied):
        await get_patient(db, stranger.person.actor, child.id)
    with pytest.raises(PermissionDenied):  # not one's own record as guardian
        await register_patient(
            db,
            stranger.person.actor,
            name="别人家孩子",
            id_number=fresh_id_number(date(2022, 1, 1)),
            guardian_id=parent.record_id,
            guardian_relation="parent",
        )
    with pytest.raises(InvalidInput):
        await register_patient(
            db,
            parent.person.actor,
            name="x",
            id_number=fresh_id_number(date(2022, 1, 1)),
            guardian_id=parent.record_id,
        )


async def test_r36_an_account_has_one_own_record(db: Database, org: Org) -> None:
    patient = await make_patient(db, org)
    with pytest.raises(PatientExists):
        await register_patient(
            db, patient.person.actor, name="张三", id_number=fresh_id_number(date(1980, 1, 1))
        )


async def test_r2_diagnoses_are_recorded_and_listed(db: Database, org: Org) -> None:
    patient = await make_patient(db, org)
    nurse = await make_person(db, org, Role.NURSE)
    for code in ("i10", "E11.9"):
        await record_prior_diagnosis(
            db,
            nurse.actor,
            patient.record_id,
            condition_code=code,
            condition_name="x",
            institution_name="医院",
            diagnosed_on=date(2022, 5, 6),
        )
    codes = [
        d.condition_code for d in await list_diagnoses(db, patient.person.actor, patient.record_id)
    ]
    assert sorted(codes) == ["E11.9", "I10", "I10"]
    for bad in (
        {"condition_code": "hypertension"},
        {"diagnosed_on": date.today() + timedelta(days=1)},
    ):
        arguments: dict[str, object] = {
            "condition_code": "I10",
            "condition_name": "x",
            "institution_name": "医院",
            "diagnosed_on": date(2022, 5, 6),
        }
        arguments.update(bad)
        with pytest.raises(InvalidInput):
            await record_prior_diagnosis(db, nurse.actor, patient.record_id, **arguments)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):  # patients do not record diagnoses themselves
        await record_prior_diagnosis(
            db,
            patient.person.actor,
            patient.record_id,
            condition_code="I10",
            condition_name="x",
            institution_name="医院",
            diagnosed_on=date(2022, 5, 6),
        )
