"""Migrations reach head on both backends and produce exactly the tables the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from consult.db import Database
from consult.migrate import alembic_config, current_revision, head_revision
from consult.models import Base


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_head_is_the_hardening_revision() -> None:
    assert head_revision() == "0007_hardening"


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
