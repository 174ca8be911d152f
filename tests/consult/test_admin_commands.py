"""R22, R25: the command-line helpers: audit verification, accounts and organisation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from databases import FIELD_KEY
from sqlalchemy import text

from consult.admin_commands import (
    add_department,
    add_institution,
    add_practitioner,
    add_user,
    audit_verify,
    needs_first_admin,
)
from consult.audit_verify import events_for
from consult.db import Database


@pytest.fixture
async def fresh(empty_db_url: str) -> AsyncIterator[Database]:
    database = Database(empty_db_url, field_key=FIELD_KEY)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def test_r25_bootstrap_an_organisation_from_the_command_line(fresh: Database) -> None:
    assert await needs_first_admin(fresh)
    out, status = await add_user(
        fresh,
        username="root-admin",
        display_name="管理员",
        role="admin",
        password="Admin-Pass-2024",
    )
    assert status == 0 and "enrol TOTP" in out
    assert not await needs_first_admin(fresh)
    out, status = await add_institution(fresh, "示范医院", "tertiary")
    institution_id = out.split()[1]
    out, status = await add_department(fresh, institution_id, "心内科")
    department_id = out.split()[1]
    out, status = await add_user(
        fresh,
        username="dr-wang",
        display_name="王医生",
        role="doctor",
        password="Doctor-Pass-2024",
        institution_id=institution_id,
        department_id=department_id,
    )
    doctor_id = out.split()[1]
    out, status = await add_practitioner(
        fresh,
        user_id=doctor_id,
        department_id=department_id,
        licence_number="110000123456",
        title="chief",
        years_of_practice=20,
        specialty="心内科",
        verified=True,
    )
    assert (out, status) == (f"practitioner {doctor_id} verified", 0)
    events = await events_for(fresh, doctor_id)
    assert [e.action for e in events] == [
        "account.create",
        "practitioner.create",
        "practitioner.verify",
    ]
    assert {(e.actor_id, e.actor_role, e.source_ip) for e in events} == {(None, "admin", "cli")}
    assert await add_institution(fresh, "x", "quaternary") == (
        "error: level must be one of tertiary, secondary, grassroots",
        2,
    )
    out, status = await add_user(
        fresh, username="dr-wang", display_name="x", role="doctor", password="Doctor-Pass-2024"
    )
    assert status == 2 and out.startswith("error: ")


async def test_r22_audit_verify_prints_and_exits(scratch_db: Database) -> None:
    fresh = scratch_db
    assert await audit_verify(fresh) == ("audit chain OK: no events", 0)
    await add_institution(fresh, "示范医院", "tertiary")
    await add_institution(fresh, "第二医院", "secondary")
    out, status = await audit_verify(fresh)
    assert status == 0 and out.startswith("audit chain OK: 2 events")
    async with fresh.session() as session, session.begin():
        if fresh.dialect == "postgresql":
            await session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            await session.execute(text("DROP TRIGGER audit_events_no_update"))
        await session.execute(text("UPDATE audit_events SET object_type = 'x' WHERE seq = 2"))
    out, status = await audit_verify(fresh)
    assert status == 1
    assert out.startswith("audit chain BROKEN at seq 2") and "altered" in out
