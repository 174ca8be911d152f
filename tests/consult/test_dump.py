"""R36: a dump of the database holds no plaintext ID number, phone or TOTP secret."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from conftest import FIELD_KEY
from consult_world import (
    PASSWORD,
    make_doctor,
    make_org,
    make_patient,
    make_person,
)
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from consult.accounts import enrol_totp
from consult.db import Database
from consult.permissions import Role
from consult.sessions import sign_in
from consult.visit_flow import book_visit


@pytest.fixture
def fresh(scratch_db: Database) -> Database:
    """A database whose chain is ours alone: tampering must not break the run's shared chain."""
    return scratch_db


async def _populate(db: Database) -> tuple[list[str], list[str]]:
    """Patients with visits, a TOTP enrolment, sessions. Returns (secrets, proof-of-data)."""
    org = await make_org(db)
    doctor = await make_doctor(db, org)
    secrets: list[str] = []
    record_ids: list[str] = []
    for birth in (date(1950, 1, 2), date(1988, 12, 31), date(2001, 6, 15)):
        patient = await make_patient(db, org, birth=birth)
        secrets += [patient.id_number, patient.phone]
        record_ids.append(patient.record_id)
        await book_visit(
            db,
            patient.person.actor,
            patient_id=patient.record_id,
            doctor_id=doctor.user_id,
            mode="video",
            condition_code="I10",
        )
        await sign_in(db, patient.person.username, PASSWORD)
    nurse = await make_person(db, org, Role.NURSE, totp=False)
    enrolment = await enrol_totp(db, nurse.actor)
    secrets.append(enrolment.secret)
    secrets.append(FIELD_KEY)  # the key comes from configuration, never from the database
    return secrets, record_ids


def _sqlite_dump(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


async def _pg_dump(url: str) -> str:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        "pg_dump",
        "--no-owner",
        f"--dbname={dsn}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode()


async def _every_text_value(db: Database) -> str:
    """Fallback without pg_dump: every column of every row, as text."""
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        parts = []
        for table in tables:
            rows = (await connection.execute(text(f'SELECT * FROM "{table}"'))).all()
            parts += [" ".join(map(str, row)) for row in rows]
    return "\n".join(parts)


async def test_r36_database_dump_has_no_plaintext_identifiers(fresh: Database) -> None:
    secrets, record_ids = await _populate(fresh)
    url = fresh.engine.url.render_as_string(hide_password=False)
    if fresh.dialect == "sqlite":
        path = Path(str(make_url(url).database))
        dumps = {"iterdump": await asyncio.to_thread(_sqlite_dump, path)}
        raw = b"".join(
            p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)
        )
        dumps["file bytes"] = raw.decode("utf-8", errors="replace")
    elif shutil.which("pg_dump"):
        dumps = {"pg_dump": await _pg_dump(url)}
    else:
        dumps = {"select": await _every_text_value(fresh)}
    for name, dump in dumps.items():
        for record_id in record_ids:
            assert record_id in dump, f"{name}: the dump does not hold the data at all"
        assert "张三" in dump  # names are plaintext: the search does see text
        for secret in secrets:
            assert secret not in dump, f"{name} holds a plaintext identifier or secret"
