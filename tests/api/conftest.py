"""Fixtures for the REST API tests: the whole server on SQLite and on PostgreSQL.

PostgreSQL comes from ``TELECONSULT_TEST_PG_URL`` (default: the local ``test`` database), as in
``tests/consult/conftest.py``: each test that asks for it gets a fresh database
(``tc_api_<random>``), dropped afterwards. Unreachable PostgreSQL skips those cases, or fails
them under ``TELECONSULT_STRICT=1``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from apiclient import Clinic
from consultation_world import World, two_institutions
from databases import pg_template, run_aside
from harness import Server, skip_or_fail, start_server
from sqlalchemy.engine import URL, make_url

PG_URL_ENV = "TELECONSULT_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _pg_url() -> URL:
    return make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))


async def _admin(statement: str | None = None) -> None:
    dsn = _pg_url().set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        if statement is not None:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    try:
        run_aside(_admin())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        skip_or_fail(f"PostgreSQL unreachable at {_pg_url()!r}: {exc!r}")
    template = pg_template(
        _admin,
        lambda database: _pg_url().set(database=database).render_as_string(hide_password=False),
    )
    name = f"tc_api_{secrets.token_hex(6)}"
    run_aside(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _pg_url().set(database=name).render_as_string(hide_password=False)
    finally:
        run_aside(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The server on a new SQLite file, then on a new PostgreSQL database."""
    settings: dict[str, Any] = {}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("pg_database_url")
    server = await start_server(tmp_path, **settings)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def clinic(server: Server) -> AsyncIterator[Clinic]:
    """An institution, a department and a signed-in admin on the SQLite server."""
    c = await Clinic.open(server)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def world(server: Server) -> AsyncIterator[World]:
    """Two institutions with an agreement, a consult centre each and one expert (a test module
    may override this fixture, as test_consultations_api.py does for its signing CA)."""
    c = await Clinic.open(server)
    try:
        yield await two_institutions(c, experts=1)
    finally:
        await c.close()


@pytest.fixture
async def any_clinic(any_server: Server) -> AsyncIterator[Clinic]:
    """The same on SQLite, then on PostgreSQL."""
    c = await Clinic.open(any_server)
    try:
        yield c
    finally:
        await c.close()
