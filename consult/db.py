"""The database handle: one async engine, migrations on start, sessions on demand."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from consult.crypto import FieldCipher
from consult.migrate import upgrade_to_head

logger = logging.getLogger(__name__)

SQLITE_POOL_SIZE: Final = 20
SQLITE_MAX_OVERFLOW: Final = 20
"""Connections kept open to an SQLite file, and opened beyond that under a burst. SQLAlchemy's
default (5 kept, 10 more) closes every connection beyond the fifth when it is returned, so a
burst of requests (each session an aiosqlite thread, a file open and two pragmas) churned them
and a sixteenth request waited behind the burst for one (issue 13: a flood's requests took the
connections a healthy client's read needed). Reads do not block each other in WAL mode; writes
are serialized by SQLite whatever the pool."""

QUIET_TABLES: Final = frozenset(
    {"audit_events", "chat_messages", "chat_images", "sign_in_failures"}
)
"""Tables whose writes decide nothing that a cache of decisions holds (who a bearer token is,
who may read a study): they do not move :attr:`Database.changes`. Every other table does (a
table added later too, until it is named here)."""
QUIET_INSERTS: Final = frozenset({"imaging_instances"})
"""Tables whose new rows change no decision already taken (an instance not found is never
cached); an update or a delete of them still counts."""
_WRITE: Final = re.compile(
    r"\s*(?:(INSERT)(?:\s+OR\s+\w+)?\s+INTO|(UPDATE)(?:\s+OR\s+\w+)?|DELETE\s+FROM"
    r"|REPLACE\s+INTO)\s+\"?(\w+)\"?(?:\s+SET\s+(\w+)\s*=[^,]*?\s+WHERE\b)?",
    re.IGNORECASE,
)
_READ_ONLY: Final = frozenset({"SELECT", "PRAGMA", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"})
_ROLLBACK: Final = "ROLLBACK"
_TOUCH: Final = ("sessions", "last_seen_at")
"""``UPDATE sessions SET last_seen_at=...``: a session's activity, not its validity."""


def changes_decisions(statement: str) -> bool:
    """Whether ``statement`` may change what a decision cache holds (see
    :attr:`Database.changes`): any write but those of :data:`QUIET_TABLES`, new rows of
    :data:`QUIET_INSERTS` and a session's activity stamp; a statement not recognised counts."""
    head = statement.lstrip()[:16].split(None, 1)
    verb = head[0].upper() if head else ""
    if verb in _READ_ONLY or verb.startswith(_ROLLBACK):
        return False
    found = _WRITE.match(statement)
    if found is None:
        return True  # DDL, WITH ... : count it
    insert, update, table, only_column = found.groups()
    table = table.lower()
    if table in QUIET_TABLES or (insert and table in QUIET_INSERTS):
        return False
    return not (update and (table, (only_column or "").lower()) == _TOUCH)


class Database:
    """Owns the engine of one database (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://``).

    Lifecycle: ``await start()`` (creates the engine and migrates to head), then ``session()`` as
    often as needed, then ``await close()``, which first awaits the :meth:`before_close`
    callbacks (writers that still hold queued rows). ``start()`` on a started database does nothing;
    ``start()`` after ``close()`` and ``session()`` outside start..close raise ``RuntimeError``.

    ``field_key`` (configuration, at least 32 bytes, never stored in the database) keys the SM4
    encryption of personal identifiers and TOTP secrets (R36); services that need it use
    :attr:`cipher`.
    """

    def __init__(self, url: str, *, field_key: str | None = None) -> None:
        self._url: URL = make_url(url)
        self._cipher = FieldCipher(field_key) if field_key is not None else None
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._closed = False
        self._start_lock = asyncio.Lock()
        self._before_close: list[Callable[[], Awaitable[None]]] = []
        self._changes = 0

    @property
    def changes(self) -> int:
        """A counter of this process's writes that may change a cached decision (who a bearer
        token is, who may read a study; see :func:`changes_decisions`).

        It moves when such a statement is executed and again when its connection goes back to
        the pool (after the commit or the rollback), so a decision drawn from rows read while
        it stood still holds: compare it before reading and when using what was read
        (:class:`consult.decision_cache.DecisionCache`). Writes of other processes do not move
        it (a cache bounds those by time)."""
        return self._changes

    def note_change(self) -> None:
        """Move :attr:`changes` (a write the engine does not see, in tests)."""
        self._changes += 1

    @property
    def dialect(self) -> str:
        """The backend's name: ``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def cipher(self) -> FieldCipher:
        """The field cipher; ``RuntimeError`` when the database was made without ``field_key``."""
        if self._cipher is None:
            raise RuntimeError("no field_key configured: Database(url, field_key=...)")
        return self._cipher

    @property
    def engine(self) -> AsyncEngine:
        """The async engine; only between :meth:`start` and :meth:`close`."""
        self._check_open()
        if self._engine is None:
            raise RuntimeError("the database is not started; await Database.start() first")
        return self._engine

    async def start(self) -> None:
        """Create the engine and apply pending migrations; idempotent while open."""
        async with self._start_lock:
            self._check_open()
            if self._engine is not None:
                return
            engine = self._create_engine()
            self._watch(engine)
            try:
                await self._migrate(engine)
            except BaseException:
                await engine.dispose()
                raise
            if self._closed:  # close() ran while we were migrating
                await engine.dispose()
                self._check_open()
            self._engine = engine
            self._sessions = async_sessionmaker(engine, expire_on_commit=False)
            logger.info("database started (%s)", self.dialect)

    def session(self) -> AsyncSession:
        """A new session; use it as ``async with db.session() as session:``."""
        self._check_open()
        if self._sessions is None:
            raise RuntimeError("the database is not started; await Database.start() first")
        return self._sessions()

    def before_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` in :meth:`close`, while the database is still open (a writer that
        batches rows flushes them here)."""
        self._before_close.append(callback)

    async def close(self) -> None:
        """Await the :meth:`before_close` callbacks, then dispose of the engine and its
        connections; idempotent."""
        if self._closed:
            return
        for callback in list(self._before_close):
            try:
                await callback()
            except Exception:  # the engine is disposed of all the same
                logger.exception("a before-close callback failed")
        self._closed = True
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()
            logger.info("database closed (%s)", self.dialect)

    async def _migrate(self, engine: AsyncEngine) -> None:
        if self.dialect != "sqlite":
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to_head)
            return
        # SQLite batch migrations rebuild tables (copy, drop, rename); with foreign keys on,
        # dropping a table that others reference fails. Alembic's advice: switch them off
        # around the migration (the pragma only takes effect outside a transaction), and
        # upgrade_to_head checks every reference before committing.
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
            try:
                async with connection.begin():
                    await connection.run_sync(upgrade_to_head)
            finally:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")

    def _create_engine(self) -> AsyncEngine:
        if self.dialect != "sqlite":
            return create_async_engine(self._url, pool_pre_ping=True)
        database = self._url.database
        options: dict[str, Any] = {}
        if not database or database == ":memory:":
            # Every new connection to ":memory:" would be a new, empty database: keep one.
            options["poolclass"] = StaticPool
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            options.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW)
        engine = create_async_engine(self._url, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine

    def _watch(self, engine: AsyncEngine) -> None:
        """Move :attr:`changes` on every write that may change a decision, and again when
        its connection is returned (committed or rolled back)."""

        def before_execute(
            conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
        ) -> None:
            if changes_decisions(statement):
                self._changes += 1
                conn.info["changed_decisions"] = True

        def checkin(_dbapi_connection: Any, record: Any) -> None:
            if record.info.pop("changed_decisions", False):
                self._changes += 1

        event.listen(engine.sync_engine, "before_cursor_execute", before_execute)
        event.listen(engine.sync_engine.pool, "checkin", checkin)


def sqlite_worker_engine(db: Database, *, busy_timeout_s: float = 5.0) -> Engine:
    """A synchronous engine on ``db``'s SQLite file, one connection, the same pragmas, for a
    writer that does a whole transaction in one worker-thread call (the async driver costs a
    round trip through the event loop per statement). The caller owns it (``dispose()``);
    its writes do not move :attr:`Database.changes`: the caller calls
    :meth:`Database.note_change` after a write that may change a decision."""
    url = db.engine.url.set(drivername="sqlite")
    engine = create_engine(
        url, pool_size=1, max_overflow=0, connect_args={"timeout": busy_timeout_s}
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    """SQLite leaves foreign keys off per connection; WAL lets readers run beside the writer."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
