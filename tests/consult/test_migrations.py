"""Migrations reach head on both backends and produce exactly the tables the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from consult.db import Database
from consult.migrate import current_revision, head_revision
from consult.models import Base


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_head_is_the_initial_revision() -> None:
    assert head_revision() == "0001"


async def test_start_migrates_an_empty_database_to_head(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    await db.start()
    try:
        async with db.engine.connect() as connection:
            assert await connection.run_sync(current_revision) == head_revision()
            tables = await connection.run_sync(_tables)
    finally:
        await db.close()
    assert {"alembic_version", "institutions", "departments", "users", "visits"} <= tables


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
