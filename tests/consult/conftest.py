"""Fixtures for consult tests: databases on SQLite and on PostgreSQL.

PostgreSQL comes from ``TELECONSULT_TEST_PG_URL`` (default: the local ``test`` database). The run
creates its own databases there (``tc_test_<random>``) and drops them afterwards: one shared,
migrated database for the whole run (``db_url``, ``db``; tests use fresh ids so they do not see
each other), and a fresh empty one for each test that migrates from nothing (``empty_db_url``).
Tests that tamper with the audit chain use ``scratch_db``: on PostgreSQL one more database for the
run whose chain is wiped (triggers bypassed, as a DBA would) before each test; on SQLite a new
file. A migrated SQLite file is made once per run and copied for each ``db_url`` test, so only the
migration tests pay for migrating (they use ``empty_db_url``). When PostgreSQL cannot be reached the PostgreSQL cases are skipped, unless ``TELECONSULT_STRICT=1``,
which turns the skip into a failure. SQLite cases get a new file under ``tmp_path`` every time.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import databases
import pytest
from databases import FIELD_KEY, run_aside
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from consult.db import Database

PG_URL_ENV = "TELECONSULT_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
STRICT_ENV = "TELECONSULT_STRICT"


def pg_url() -> URL:
    """The PostgreSQL URL (SQLAlchemy form) that tests create their databases from."""
    return make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))


def strict() -> bool:
    """Whether a missing service fails the run instead of skipping."""
    return os.environ.get(STRICT_ENV) == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under ``TELECONSULT_STRICT=1``."""
    if strict():
        pytest.fail(f"{reason} ({STRICT_ENV}=1)")
    pytest.skip(reason)


async def _admin(statement: str | None = None) -> None:
    dsn = pg_url().set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        if statement is not None:
            await connection.execute(statement)
    finally:
        await connection.close()


def _create_database() -> str:
    name = f"tc_test_{secrets.token_hex(6)}"
    run_aside(_admin(f'CREATE DATABASE "{name}"'))
    return name


def _drop_database(name: str) -> None:
    run_aside(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _url_of(name: str) -> str:
    return pg_url().set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> None:
    """Checks once per run that PostgreSQL answers; skips (or fails) its cases otherwise."""
    try:
        run_aside(_admin())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        skip_or_fail(f"PostgreSQL unreachable at {pg_url()!r}: {exc!r}")


@pytest.fixture(scope="session")
def pg_shared_database_url(pg_server: None) -> Iterator[str]:
    """A PostgreSQL database for the whole run, dropped at its end."""
    name = _create_database()
    try:
        yield _url_of(name)
    finally:
        _drop_database(name)


@pytest.fixture
def pg_empty_database_url(pg_server: None) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    name = _create_database()
    try:
        yield _url_of(name)
    finally:
        _drop_database(name)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/data/teleconsult.db"


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    """A SQLite file migrated to head once per run (tests/databases.py)."""
    return databases.sqlite_template()


def _sqlite_copy(template: Path, tmp_path: Path) -> str:
    url = _sqlite_url(tmp_path)
    target = Path(str(make_url(url).database))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database on each backend: a new SQLite file, or the run's PostgreSQL database."""
    if request.param == "sqlite":
        return _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    url: str = request.getfixturevalue("pg_shared_database_url")
    return url


@pytest.fixture(scope="session")
def pg_scratch_database_url(pg_server: None) -> Iterator[str]:
    """A second PostgreSQL database for the run, for tests that tamper with the audit chain."""
    name = _create_database()
    try:
        yield _url_of(name)
    finally:
        _drop_database(name)


async def wipe_audit_chain(database: Database) -> None:
    """Empty ``audit_events`` past its triggers, as a DBA could (test setup only), and the chat
    record the chain accounts for (``audit verify`` cross-checks the two)."""
    async with database.session() as session, session.begin():
        for table in ("audit_events", "chat_messages", "chat_blocks"):
            if database.dialect == "postgresql":
                await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
                await session.execute(text(f"DELETE FROM {table}"))
                await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            elif table == "audit_events":
                await session.execute(text("DELETE FROM audit_events"))  # a new file: empty


@pytest.fixture(params=["sqlite", "postgresql"])
async def scratch_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database whose audit chain is empty and may be tampered with."""
    if request.param == "sqlite":
        url = _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        url = request.getfixturevalue("pg_scratch_database_url")
    database = Database(url, field_key=FIELD_KEY)
    await database.start()
    try:
        await wipe_audit_chain(database)
        yield database
    finally:
        await database.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database that has never been migrated, on each backend."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_empty_database_url")
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started (migrated) database with a field key, closed after the test."""
    database = Database(db_url, field_key=FIELD_KEY)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def pg_scratch_db(pg_scratch_database_url: str) -> AsyncIterator[Database]:
    """:func:`scratch_db` on PostgreSQL only, for roles, grants and TRUNCATE."""
    database = Database(pg_scratch_database_url, field_key=FIELD_KEY)
    await database.start()
    try:
        await wipe_audit_chain(database)
        yield database
    finally:
        await database.close()
