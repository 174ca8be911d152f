"""R36: a dump of the database holds no plaintext ID number, phone or TOTP secret."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from consult_world import (
    PASSWORD,
    make_doctor,
    make_org,
    make_patient,
    make_person,
)
from databases import FIELD_KEY
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


#: What a playable media file starts with, or holds near its start (Matroska/WebM's EBML header,
#: MP4's ftyp box, Ogg's capture pattern, RIFF): none may be on disk without the key.
MEDIA_MAGIC = (b"\x1a\x45\xdf\xa3", b"ftyp", b"OggS", b"RIFF")


async def test_r36_the_data_directory_after_a_recorded_call_has_no_plaintext(
    tmp_path: Path,
) -> None:
    """A whole recorded video call with chat on the embedded default (SQLite in the data
    directory), a registered patient with ID number and phone: afterwards no file under the data
    directory (database and its journal, recordings, segments, timelines, the playback
    composite, keys' neighbours) holds the chat texts, the ID number or the phone, and none
    holds playable media (R36)."""
    from client import start_call
    from harness import skip_or_fail, start_server
    from peers import wait_for

    from web.keys import DATABASE

    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg CLI (Debian package ffmpeg)")
    server = await start_server(tmp_path / "srv", recording_composite=True)
    data_dir = server.config.data_dir
    try:
        db = server.app[DATABASE]
        patient = await make_patient(db, await make_org(db))
        visit = await server.visit()
        doctor, member = await start_call(server.url, visit)
        said = ["医生您好，我胸口闷痛两天了", "请问您有高血压病史吗？"]
        try:
            for who, text_ in zip((member, doctor), said, strict=True):
                ack = await who.call("chat", {"text": text_})
                assert ack["ok"], ack
        finally:
            await doctor.close()
            await member.close()
        room_dir = server.config.recordings / visit.room_id
        await wait_for(lambda: any(room_dir.glob("*/manifest.json")), timeout=20)
        (session,) = [p.parent for p in room_dir.glob("*/manifest.json")]
        manifest = json.loads((session / "manifest.json").read_text())
        assert {t["kind"] for t in manifest["tracks"]} == {"audio", "video"}
        await wait_for(lambda: (session / "composite.json").exists(), timeout=60)
        assert (session / "composite.mp4").exists()
    finally:
        await server.stop()

    files = [p for p in data_dir.rglob("*") if p.is_file()]
    names = {p.relative_to(data_dir).parts[0] for p in files}
    assert "recordings" in names and any(p.suffix == ".db" for p in files), names
    assert any(p.suffix == ".webm" for p in files)  # the segments are there, and checked
    # the sweep sees the data: the patient's record is in the database's bytes
    assert any(patient.record_id.encode() in p.read_bytes() for p in files)
    needles = [patient.id_number, patient.phone, *said, *(s[:6] for s in said)]
    for path in files:
        raw = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in raw, f"{path.relative_to(data_dir)} holds plaintext"
        head = raw[:64]
        assert not any(m in head for m in MEDIA_MAGIC), f"{path.relative_to(data_dir)} plays"
