"""Migrated empty databases for the tests' servers: migrated once per test process, copied per test.

Migrating an empty database to head costs about a second on SQLite and two on PostgreSQL, and
nearly every test starts a server on a database of its own. A copy of a migrated SQLite file, or
PostgreSQL's ``CREATE DATABASE ... TEMPLATE``, costs milliseconds and gives the same database:
the server's own start then finds it at head. The migrations themselves run from an empty
database in tests/consult/test_migrations.py.
"""

from __future__ import annotations

import asyncio
import atexit
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from consult.db import Database

#: The file name the server's default SQLite URL uses (web.config.Config.database).
SQLITE_NAME = "teleconsult.db"

FIELD_KEY = "consult-tests-field-key-" + "0123456789abcdef" * 2
"""The configured SM4/HMAC-SM3 secret of the consult tests' databases (never stored in them)."""

T = TypeVar("T")

_lock = threading.Lock()
_sqlite_template: Path | None = None
_pg_template: str | None = None


def run_aside(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own in another thread (callable from inside a loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.start()
    finally:
        await database.close()


def sqlite_template() -> Path:
    """A migrated empty SQLite file, made on first use and removed when the process exits."""
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            directory = Path(tempfile.mkdtemp(prefix="tc-template-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            path = directory / SQLITE_NAME
            run_aside(_migrate(f"sqlite+aiosqlite:///{path}"))
            _sqlite_template = path
        return _sqlite_template


def seed_data_dir(data_dir: Path) -> None:
    """Put a migrated empty database in ``data_dir`` unless it holds one already."""
    target = data_dir / SQLITE_NAME
    if target.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template(), target)


def _drop_at_exit(admin: Callable[[str], Coroutine[Any, Any, None]], statement: str) -> None:
    # No thread pool takes work once the interpreter is shutting down, and no loop runs in this
    # thread any more: the drop gets a loop of its own here.
    try:
        asyncio.run(admin(statement))
    except Exception as exc:  # the server may be gone already; a leftover template is harmless
        print(f"tests/databases.py: template not dropped: {exc!r}")


def pg_template(
    admin: Callable[[str], Coroutine[Any, Any, None]], url_of: Callable[[str], str]
) -> str:
    """The name of a migrated empty PostgreSQL database to copy with ``CREATE DATABASE ...
    TEMPLATE``; made on first use (``admin(statement)`` runs a statement on the server,
    ``url_of`` gives a database's URL) and dropped when the process exits."""
    global _pg_template
    with _lock:
        if _pg_template is None:
            name = f"tc_template_{secrets.token_hex(6)}"
            run_aside(admin(f'CREATE DATABASE "{name}"'))
            atexit.register(_drop_at_exit, admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            run_aside(_migrate(url_of(name)))
            _pg_template = name
        return _pg_template
