"""Alembic, configured in code: the migration scripts live in ``consult/migrations``.

No ``alembic.ini`` is read. :class:`consult.db.Database` calls :func:`upgrade_to_head` on one of its
own connections (``AsyncConnection.run_sync``), so the migration's database I/O is awaited on the
event loop like any other query. To write a new revision against a scratch database::

    python -c "from alembic import command; from consult.migrate import alembic_config; \\
        command.revision(alembic_config('sqlite+aiosqlite:///scratch.db'), 'what changed', \\
        autogenerate=True)"

(upgrade the scratch database to head first; ``env.py`` then opens its own engine from the URL.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

logger = logging.getLogger(__name__)

SCRIPT_LOCATION: Final = Path(__file__).resolve().parent / "migrations"

_PG_MIGRATION_LOCK_KEY: Final = 0x7C_0001
"""``pg_advisory_xact_lock`` key: processes that start together migrate one after the other."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at ``consult/migrations``, optionally with a database URL.

    The URL is only used when no connection is handed over (command-line style use).
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        # ConfigParser interpolates '%': escape it (a password may contain one).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision id among the migration scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the connected database is at (``None`` for an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: Connection) -> None:
    """Apply every pending migration on ``connection`` (a sync connection inside a transaction).

    Run it through ``AsyncConnection.run_sync`` inside ``engine.begin()``; the caller's transaction
    commits the result. Safe to call on a database already at head.
    """
    sqlite = connection.dialect.name == "sqlite"
    if connection.dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:key)")
        connection.execute(lock, {"key": _PG_MIGRATION_LOCK_KEY})
    before = current_revision(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = current_revision(connection)
    if sqlite and before != after:
        # Batch mode ran with foreign keys off (see consult.db): check every reference now.
        broken = connection.execute(text("PRAGMA foreign_key_check")).first()
        if broken is not None:
            raise RuntimeError(f"migration left a dangling reference in table {broken[0]!r}")
    if before != after:
        logger.info("database migrated from %s to %s", before, after)
