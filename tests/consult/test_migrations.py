"""Migrations reach head on both backends and produce exactly the tables the models declare."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from consult.db import Database
from consult.migrate import alembic_config, current_revision, head_revision
from consult.models import Base


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_head_is_the_imaging_pixel_layout_revision() -> None:
    assert head_revision() == "0016_imaging_pixel_layout"


async def test_start_migrates_an_empty_database_to_head(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    await db.start()
    try:
        async with db.engine.connect() as connection:
            assert await connection.run_sync(current_revision) == head_revision()
            tables = await connection.run_sync(_tables)
    finally:
        await db.close()
    assert {
        "alembic_version",
        "institutions",
        "departments",
        "users",
        "visits",
        "user_departments",
        "sessions",
        "audit_events",
        "practitioners",
        "schedule_slots",
        "patients",
        "prior_diagnoses",
        "consents",
    } <= tables


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_schema_diff) == []


async def test_start_again_on_a_migrated_database_is_a_no_op(empty_db_url: str) -> None:
    first = Database(empty_db_url)
    await first.start()
    await first.close()
    second = Database(empty_db_url)
    await second.start()
    try:
        async with second.engine.connect() as connection:
            assert await connection.run_sync(current_revision) == head_revision()
            assert await connection.run_sync(_schema_diff) == []
    finally:
        await second.close()


def _migrate(connection: Connection, target: str, *, down: bool = False) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if down:
        command.downgrade(config, target)
    else:
        command.upgrade(config, target)


async def test_0002_upgrades_existing_rows_and_downgrades(empty_db_url: str) -> None:
    """Accounts and visits made under 0001 get roles and states; 0002 downgrades cleanly."""
    url = make_url(empty_db_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0001")
            await connection.execute(
                text(
                    "INSERT INTO institutions (id, name, level, created_at) "
                    "VALUES ('i1', 'H', 'tertiary', CURRENT_TIMESTAMP)"
                )
            )
            for user_id, kind in (("d1", "staff"), ("p1", "patient")):
                await connection.execute(
                    text(
                        "INSERT INTO users (id, username, display_name, kind, created_at) "
                        "VALUES (:id, :id, 'x', :kind, CURRENT_TIMESTAMP)"
                    ),
                    {"id": user_id, "kind": kind},
                )
            await connection.execute(
                text(
                    "INSERT INTO visits (id, institution_id, doctor_id, patient_id, mode, "
                    "created_at) VALUES ('v1', 'i1', 'd1', 'p1', 'video', CURRENT_TIMESTAMP)"
                )
            )
        upgraded = Database(empty_db_url)  # as the server does it (SQLite foreign keys on)
        await upgraded.start()
        await upgraded.close()
        async with engine.begin() as connection:
            roles = dict((await connection.execute(text("SELECT id, role FROM users"))).all())
            status = (await connection.execute(text("SELECT status FROM visits"))).scalar()
        assert roles == {"d1": "doctor", "p1": "patient"}
        assert status == "booked"
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0001", down=True)
            status = (await connection.execute(text("SELECT status FROM visits"))).scalar()
            tables = await connection.run_sync(_tables)
        assert status == "scheduled"
        assert "audit_events" not in tables and "patients" not in tables
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "head")
            assert await connection.run_sync(current_revision) == head_revision()
    finally:
        await engine.dispose()


async def _insert(connection: Any, table: str, **values: object) -> None:
    columns = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    await connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)


async def test_0007_moves_visits_rooms_and_chat_to_room_ids_without_loss(
    empty_db_url: str,
) -> None:
    """A database made by the code before rooms (0006): every visit gets its room (keeping the
    visit's id, which the audit chain and the recordings on disk name) and its participations in
    the visit's state; chat messages, blocks and images move to the room's id; the append-only
    triggers hold again; the migration downgrades and upgrades again without loss."""
    url = make_url(empty_db_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0006_imaging")
            await _insert(
                connection, "institutions", id="i1", name="H", level="tertiary", created_at=now
            )
            for user_id, role in (
                ("d1", "doctor"),
                ("p1", "patient"),
                ("g1", "patient"),
                ("p2", "patient"),
            ):
                await _insert(
                    connection,
                    "users",
                    id=user_id,
                    username=user_id,
                    display_name="x",
                    kind="staff" if role == "doctor" else "patient",
                    role=role,
                    is_active=True,
                    created_at=now,
                    failed_logins=0,
                )
            # p1: a patient with its own record; w1: a ward (no account) of g1's record
            await _insert(
                connection,
                "patients",
                id="r1",
                user_id="p1",
                name="n",
                id_number_enc="e1",
                id_number_index="x1",
                birth_date=date(1980, 1, 1),
                created_at=now,
            )
            await _insert(
                connection,
                "patients",
                id="rg",
                user_id="g1",
                name="n",
                id_number_enc="e2",
                id_number_index="x2",
                birth_date=date(1985, 1, 1),
                created_at=now,
            )
            await _insert(
                connection,
                "patients",
                id="w1",
                name="n",
                id_number_enc="e3",
                id_number_index="x3",
                birth_date=date(2023, 1, 1),
                guardian_id="rg",
                created_at=now,
            )
            visits = {
                "v_room": ("p1", "r1", "in_room"),
                "v_wait": ("g1", "w1", "waiting"),
                "v_done": ("p2", None, "ended"),
            }
            for visit_id, (account, record, status) in visits.items():
                await _insert(
                    connection,
                    "visits",
                    id=visit_id,
                    institution_id="i1",
                    doctor_id="d1",
                    patient_id=account,
                    patient_record_id=record,
                    mode="video",
                    status=status,
                    created_at=now,
                    guardian_present=False,
                    checked_in_at=None if status == "booked" else now,
                    closed_at=now if status == "ended" else None,
                )
            await _insert(
                connection,
                "chat_images",
                id="img1",
                visit_id="v_room",
                uploader_id="p1",
                content_type="image/jpeg",
                width=1,
                height=1,
                size=1,
                data_enc=b"d",
                thumb_content_type="image/jpeg",
                thumb_enc=b"t",
                created_at=now,
            )
            for seq, (visit_id, sender) in enumerate(
                (("v_room", "d1"), ("v_room", "p1"), ("v_done", "p2")), start=1
            ):
                await _insert(
                    connection,
                    "chat_messages",
                    id=f"m{seq}",
                    visit_id=visit_id,
                    seq=seq,
                    sender_id=sender,
                    sender_role="doctor",
                    kind="text",
                    text_enc=f"c{seq}",
                    image_id="img1" if seq == 2 else None,
                    created_at=now,
                )
            await _insert(
                connection,
                "chat_blocks",
                id="b1",
                visit_id="v_done",
                sender_id="p2",
                sender_role="patient",
                text_enc="c",
                word_ids="w",
                created_at=now,
            )
        upgraded = Database(empty_db_url)  # as the server does it
        await upgraded.start()
        await upgraded.close()

        async with engine.begin() as connection:
            rooms = {
                r.subject_id: r
                for r in (await connection.execute(text("SELECT * FROM rooms"))).all()
            }
            people = sorted(
                (p.room_id, p.user_id, p.room_role, p.state, p.arrived_at is not None)
                for p in (await connection.execute(text("SELECT * FROM participations"))).all()
            )
            chat = sorted(
                (await connection.execute(text("SELECT id, room_id, seq FROM chat_messages"))).all()
            )
            block = (await connection.execute(text("SELECT room_id FROM chat_blocks"))).scalar()
            image = (await connection.execute(text("SELECT room_id FROM chat_images"))).scalar()
        assert set(rooms) == set(visits)
        assert all(r.id == r.subject_id and r.kind == "visit" for r in rooms.values())
        assert rooms["v_done"].closed_at is not None and rooms["v_room"].closed_at is None
        assert people == [
            ("v_done", "d1", "doctor", "left", False),
            ("v_done", "p2", "patient", "left", True),
            ("v_room", "d1", "doctor", "admitted", False),
            ("v_room", "p1", "patient", "admitted", True),
            ("v_wait", "d1", "doctor", "admitted", False),
            ("v_wait", "g1", "guardian", "waiting", True),  # the ward's guardian's account
        ]
        assert chat == [("m1", "v_room", 1), ("m2", "v_room", 2), ("m3", "v_done", 3)]
        assert (block, image) == ("v_done", "v_room")

        async with engine.begin() as connection:  # still append-only
            with pytest.raises(DBAPIError):
                async with connection.begin_nested():
                    await connection.execute(text("UPDATE chat_messages SET seq = 9"))
            with pytest.raises(DBAPIError):
                async with connection.begin_nested():
                    await connection.execute(text("DELETE FROM chat_blocks"))

        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0006_imaging", down=True)
            back = sorted(
                (
                    await connection.execute(text("SELECT id, visit_id, seq FROM chat_messages"))
                ).all()
            )
            tables = await connection.run_sync(_tables)
        assert back == chat and "rooms" not in tables and "participations" not in tables
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "head")
            assert await connection.run_sync(current_revision) == head_revision()
            assert await connection.run_sync(_schema_diff) == []
    finally:
        await engine.dispose()
