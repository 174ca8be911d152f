"""R9, R35: practitioner records, verification in scope, online hours, the signing PIN."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from consult_world import PASSWORD, SYSTEM, Org, make_doctor, make_org, make_person
from sqlalchemy import select

from consult.db import Database
from consult.errors import (
    InvalidInput,
    PermissionDenied,
    PractitionerExists,
    PractitionerNotVerified,
    SigningPinInvalid,
    SigningPinLocked,
    SigningPinNotSet,
    WeakPin,
)
from consult.models import AuditEvent, Practitioner, VerificationStatus
from consult.permissions import Role
from consult.practitioners import (
    check_pin,
    get_practitioner,
    list_practitioners,
    register_practitioner,
    set_online,
    set_signing_pin,
    verify_practitioner,
    verify_signing_pin,
)
from consult.sqltypes import utc_now


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


def _record(user_id: str, department_id: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "user_id": user_id,
        "department_id": department_id,
        "licence_number": f"110{user_id[:12]}",
        "title": "associate_chief",
        "years_of_practice": 12,
        "specialty": "心内科",
    }
    values.update(overrides)
    return values


async def test_r9_register_verify_and_go_online(db: Database, org: Org) -> None:
    doctor = await make_person(db, org, Role.DOCTOR)
    operator = await make_person(db, org, Role.OPERATOR)
    view = await register_practitioner(
        db, operator.actor, **_record(doctor.user_id, org.department_id)
    )  # type: ignore[arg-type]
    assert view.verification is VerificationStatus.PENDING and not view.online
    assert doctor.user_id not in {p.user_id for p in await list_practitioners(db, doctor.actor)}
    with pytest.raises(PractitionerNotVerified):
        await set_online(db, doctor.actor, True)
    verified = await verify_practitioner(db, operator.actor, doctor.user_id)
    assert verified.verification is VerificationStatus.VERIFIED and verified.verified_at
    await set_online(db, doctor.actor, True)
    online = await list_practitioners(
        db, doctor.actor, online_only=True, institution_id=org.institution_id
    )
    assert doctor.user_id in {p.user_id for p in online}
    assert (await get_practitioner(db, doctor.actor, doctor.user_id)).online
    with pytest.raises(PractitionerExists):
        await register_practitioner(db, SYSTEM, **_record(doctor.user_id, org.department_id))  # type: ignore[arg-type]


async def test_r34_operators_verify_only_in_their_departments(db: Database, org: Org) -> None:
    doctor = await make_person(db, org, Role.DOCTOR)
    outsider = await make_person(db, org, Role.OPERATOR, department_id=org.other_department_id)
    with pytest.raises(PermissionDenied):
        await register_practitioner(
            db, outsider.actor, **_record(doctor.user_id, org.department_id)
        )  # type: ignore[arg-type]
    await register_practitioner(db, SYSTEM, **_record(doctor.user_id, org.department_id))  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        await verify_practitioner(db, outsider.actor, doctor.user_id)
    async with db.session() as session:
        denials = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.actor_id == outsider.user_id, AuditEvent.result == "denied"
                )
            )
        ).all()
    assert [e.action for e in denials] == ["practitioner.create", "practitioner.verify"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": "professor"},
        {"years_of_practice": -1},
        {"years_of_practice": True},
        {"licence_number": "x"},
        {"specialty": ""},
    ],
)
async def test_r9_practitioner_values_are_checked(
    db: Database, org: Org, overrides: dict[str, object]
) -> None:
    doctor = await make_person(db, org, Role.DOCTOR)
    with pytest.raises(InvalidInput):
        await register_practitioner(
            db, SYSTEM, **_record(doctor.user_id, org.department_id, **overrides)
        )  # type: ignore[arg-type]


async def test_r9_only_doctor_accounts_are_practitioners(db: Database, org: Org) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    with pytest.raises(InvalidInput):
        await register_practitioner(db, SYSTEM, **_record(nurse.user_id, org.department_id))  # type: ignore[arg-type]


@pytest.mark.parametrize("pin", ["12345", "1234567890123", "abcdef", "111111", "123456", "987654"])
def test_r35_weak_pins_are_refused(pin: str) -> None:
    with pytest.raises(WeakPin):
        check_pin(pin)


async def test_r35_signing_pin_is_separate_and_locks_after_five_failures(
    db: Database, org: Org
) -> None:
    doctor = await make_doctor(db, org)
    with pytest.raises(SigningPinNotSet):
        await verify_signing_pin(db, doctor.actor, "274915", purpose="report:1")
    with pytest.raises(PermissionDenied):
        await set_signing_pin(db, doctor.actor, "Wrong-Password-1", "274915")
    await set_signing_pin(db, doctor.actor, PASSWORD, "274915")
    async with db.session() as session:
        row = await session.get(Practitioner, doctor.user_id)
    assert row is not None and row.signing_pin_hash and "274915" not in row.signing_pin_hash
    await verify_signing_pin(db, doctor.actor, "274915", purpose="report:1")
    with pytest.raises(SigningPinInvalid):
        await verify_signing_pin(db, doctor.actor, PASSWORD, purpose="report:1")  # not the password
    t0 = utc_now()
    for _ in range(3):
        with pytest.raises(SigningPinInvalid):
            await verify_signing_pin(db, doctor.actor, "000001", purpose="report:2", now=t0)
    with pytest.raises(SigningPinLocked):
        await verify_signing_pin(db, doctor.actor, "000001", purpose="report:2", now=t0)
    with pytest.raises(SigningPinLocked):  # even the right PIN, while locked
        await verify_signing_pin(db, doctor.actor, "274915", purpose="report:2", now=t0)
    await verify_signing_pin(
        db, doctor.actor, "274915", purpose="report:2", now=t0 + timedelta(minutes=10)
    )
    async with db.session() as session:
        checks = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.actor_id == doctor.user_id,
                    AuditEvent.action == "practitioner.check_pin",
                )
            )
        ).all()
    assert [e.result for e in checks] == [
        "ok",
        "denied",
        "denied",
        "denied",
        "denied",
        "denied",
        "denied",
        "ok",
    ]
    assert json.loads(checks[0].details)["purpose"] == "report:1"
    with pytest.raises(PermissionDenied):  # only doctors sign
        nurse = await make_person(db, org, Role.NURSE)
        await verify_signing_pin(db, nurse.actor, "274915", purpose="x")
