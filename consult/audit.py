"""The audit chain (R22, R24, R25): append-only events, each digest covering the previous one.

``digest = SM3(bytes.fromhex(prev_digest) || canonical_json(event))`` where the canonical JSON
holds the event's fields (keys sorted, no spaces, UTF-8). Its form is versioned per event
(``digest_version``): version 2, written by this code, covers ``seq`` too, so an event moved to
another place no longer matches its digest; version 1 (events written before version 2 existed)
holds every field but ``seq``. Versions never go back along the chain. The first event's
``prev_digest`` is 64 zeros. Changing, removing or reordering any row breaks a digest or a
link, and :func:`consult.audit_verify.verify_chain` names the first broken event.

A hash chain alone does not show a cut tail, nor a consistent rewrite (events removed or edited
and every later digest recomputed: SM3 needs no key). :mod:`consult.checkpoints` therefore signs
the head periodically (SM2, and an RFC 3161 timestamp where configured) into a file kept outside
the database; :func:`~consult.audit_verify.verify_chain` takes those heads as anchors and names
a chain that ends before one (``truncated``) or no longer leads to its digest (``rewritten``).

Appending is serialized so the chain never forks: an asyncio lock per :class:`Database` (one
process), and inside the transaction ``pg_advisory_xact_lock`` on PostgreSQL (several processes)
or an immediate write lock on SQLite, taken *before* the head is read and held until commit.

State changes and their events commit together: services open :func:`audited`, change rows and
call :meth:`AuditTx.record` in the same transaction. A refusal raised through
:meth:`AuditTx.refuse` rolls the work back and still records the refusal.

Events with nothing else to commit (:func:`append`: a view, a refusal, a summary) are written
together (group commit): the first caller starts a writer that takes every event queued
meanwhile, links them in queue order in one transaction under the append lock, commits once and
answers each caller. A caller returns only once its event is committed, as before; a batch that
fails is written again one event at a time, so one bad event fails alone; and the database
waits for the writer before it closes (:meth:`Database.before_close`), so shutdown loses none.
A flood of audited refusals then costs one commit per batch instead of one per request.

Details never carry personal data (names, ID numbers, phones): :func:`canonical_details` refuses
values that look like an ID number or a mobile number, as a last line of defence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from consult.actor import Actor
from consult.crypto import GENESIS_DIGEST, sm3_digest
from consult.db import Database
from consult.errors import ConsultError, PermissionDenied
from consult.group_commit import GroupWriter
from consult.models import AuditEvent, AuditResult
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

PG_AUDIT_LOCK_KEY: Final = 0x7C_0002
"""``pg_advisory_xact_lock`` key serializing appends across processes (migrations use 0x7C0001)."""

MAX_DETAIL_CHARS: Final = 200
DIGEST_VERSION: Final = 2
"""The canonical form new events are digested in (2: ``seq`` included)."""
_PII_PATTERNS: Final = (
    # Whole tokens only: a hex id that happens to hold a run of digits is not an ID number.
    re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"),  # resident ID number
    re.compile(r"(?<![0-9A-Za-z])(?:\+?86)?1[3-9]\d{9}(?![0-9A-Za-z])"),  # mobile number
)

DetailValue = str | int | float | bool | None
_TABLE: Final = AuditEvent.metadata.tables[AuditEvent.__tablename__]
_COLUMNS: Final = tuple(column.key for column in _TABLE.columns)
_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_of(db: Database) -> asyncio.Lock:
    lock = _locks.get(db)
    if lock is None:
        lock = _locks[db] = asyncio.Lock()
    return lock


# --- The canonical form and the digest ---------------------------------------------------------


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """``details`` as canonical JSON, after checking it holds only short scalars and no PII.

    Raises ``ValueError`` for nested values, long strings, or anything that looks like an ID
    number or a mobile number: the audit chain is kept for years and must not hold them.
    """
    clean: dict[str, DetailValue | list[DetailValue]] = {}
    for key, value in (details or {}).items():
        if not isinstance(key, str):
            raise ValueError("audit detail keys must be strings")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(f"audit detail {key!r} must be a scalar or a list of scalars")
            if isinstance(item, str):
                if len(item) > MAX_DETAIL_CHARS:
                    raise ValueError(f"audit detail {key!r} is too long")
                if any(pattern.search(item) for pattern in _PII_PATTERNS):
                    raise ValueError(f"audit detail {key!r} looks like personal data")
        clean[key] = value
    return _json(clean)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_event(event: AuditEvent) -> str:
    """The canonical JSON of an event's fields, in the form of its ``digest_version``.

    Version 2 holds every field but ``prev_digest`` and ``digest`` (``seq`` included); version 1
    also leaves out ``seq``.
    """
    fields: dict[str, Any] = {
        "id": event.id,
        "at": _iso(event.at),
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "result": event.result,
        "source_ip": event.source_ip,
        "details": json.loads(event.details),
    }
    version = event.digest_version or 1
    if version >= 2:
        fields["seq"] = event.seq
        fields["v"] = version
    return _json(fields)


def event_digest(prev_digest: str, event: AuditEvent) -> str:
    """``SM3(prev_digest || canonical event)`` as 64 hex characters."""
    return sm3_digest(bytes.fromhex(prev_digest) + canonical_event(event).encode()).hex()


# --- Appending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fields:
    """One event's fields before it is linked (``details`` already canonical JSON)."""

    action: str
    actor_id: str | None
    actor_role: str | None
    source_ip: str | None
    object_type: str | None
    object_id: str | None
    result: AuditResult
    details: str
    at: datetime | None


def _fields(
    action: str,
    *,
    actor: Actor | None,
    actor_id: str | None,
    actor_role: str | None,
    source_ip: str | None,
    object_type: str | None,
    object_id: str | None,
    result: AuditResult,
    details: str,
    at: datetime | None = None,
) -> _Fields:
    """``actor`` fills ``actor_id``, ``actor_role`` and ``source_ip`` unless they are given."""
    if actor is not None:
        actor_id = actor_id if actor_id is not None else actor.user_id
        actor_role = actor_role if actor_role is not None else actor.role.value
        source_ip = source_ip if source_ip is not None else actor.source_ip
    return _Fields(
        action, actor_id, actor_role, source_ip, object_type, object_id, result, details, at
    )


@dataclass
class _Refusal:
    actor: Actor | None
    action: str
    object_type: str | None
    object_id: str | None
    result: AuditResult
    details: dict[str, Any]


@dataclass
class AuditTx:
    """One transaction that may append audit events; see :func:`audited`."""

    session: AsyncSession
    db: Database | None = None
    """The database the transaction belongs to (for per-database listeners)."""
    events: list[AuditEvent] = field(default_factory=list)
    _head: tuple[int, str, datetime | None] | None = None
    _refusal: _Refusal | None = None
    _after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def record(
        self,
        action: str,
        *,
        actor: Actor | None = None,
        actor_id: str | None = None,
        actor_role: str | None = None,
        source_ip: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        result: AuditResult = AuditResult.OK,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        """Append one event to the chain, in this transaction.

        ``actor`` fills ``actor_id``, ``actor_role`` and ``source_ip`` unless they are given.
        """
        (event,) = await self._add(
            [
                _fields(
                    action,
                    actor=actor,
                    actor_id=actor_id,
                    actor_role=actor_role,
                    source_ip=source_ip,
                    object_type=object_type,
                    object_id=object_id,
                    result=result,
                    details=canonical_details(details),
                    at=at,
                )
            ]
        )
        return event

    async def _add(self, batch: Sequence[_Fields]) -> list[AuditEvent]:
        """Link ``batch`` onto the head in order and write it with one statement."""
        if self._head is None:
            self._head = await _read_head(self.session)
        events, self._head = _link(self._head, batch)
        # One INSERT (executemany) through Core: the ORM's unit of work cost more than the
        # statement on the retrieval hot path, and nothing reads these objects back from the
        # session (rows of the chain are only ever inserted). Pending ORM work of the same
        # transaction is flushed first (autoflush), as before.
        await self.session.execute(insert(_TABLE), _rows(events))
        self.events.extend(events)
        return events

    def refuse(
        self,
        exc: ConsultError,
        *,
        actor: Actor | None,
        action: str,
        object_type: str | None = None,
        object_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ConsultError:
        """Note a refusal to record after rollback, and return ``exc`` for the caller to raise.

        ``raise tx.refuse(SomeError(), actor=..., action=...)``: the transaction's other work
        is rolled back, then the refusal is appended (``denied`` for a
        :class:`PermissionDenied`, ``refused`` for a rule) with ``exc.code`` in its details.
        """
        result = AuditResult.DENIED if isinstance(exc, PermissionDenied) else AuditResult.REFUSED
        merged = {"code": exc.code, **(details or {})}
        self._refusal = _Refusal(actor, action, object_type, object_id, result, merged)
        return exc

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` once the transaction has committed (not after a rollback)."""
        self._after_commit.append(callback)


_Head = tuple[int, str, datetime | None]
"""The chain's last ``seq``, digest and time (``(0, genesis, None)`` when empty)."""


def _link(head: _Head, batch: Sequence[_Fields]) -> tuple[list[AuditEvent], _Head]:
    """The events of ``batch`` linked onto ``head`` in order, and the new head."""
    seq, prev_digest, last_at = head
    events = []
    for fields in batch:
        seq += 1
        at = utc_now() if fields.at is None else fields.at
        if fields.at is not None and last_at is not None and at < last_at:
            # stamped when it happened (a retrieval's request) and written after later
            # events: the chain's times never go back
            at = last_at
        last_at = at
        event = AuditEvent(
            seq=seq,
            id=new_id(),
            at=at,
            actor_id=fields.actor_id,
            actor_role=fields.actor_role,
            action=fields.action,
            object_type=fields.object_type,
            object_id=fields.object_id,
            result=fields.result.value,
            source_ip=fields.source_ip,
            details=fields.details,
            prev_digest=prev_digest,
            digest_version=DIGEST_VERSION,
        )
        event.digest = prev_digest = event_digest(prev_digest, event)
        events.append(event)
    return events, (seq, prev_digest, last_at)


def _rows(events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    return [{column: getattr(event, column) for column in _COLUMNS} for event in events]


_HEAD_QUERY: Final = (
    select(AuditEvent.seq, AuditEvent.digest, AuditEvent.at)
    .order_by(AuditEvent.seq.desc())
    .limit(1)
)
_SQLITE_LOCK: Final = "UPDATE audit_events SET seq = seq WHERE 0 = 1"


def _head_of(row: Any) -> _Head:
    return (0, GENESIS_DIGEST, None) if row is None else (int(row[0]), str(row[1]), row[2])


async def _read_head(session: AsyncSession) -> _Head:
    return _head_of((await session.execute(_HEAD_QUERY)).first())


async def _lock_chain(session: AsyncSession, dialect: str) -> None:
    """Take the database's append lock inside this transaction, before the head is read."""
    if dialect == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK_KEY}
        )
    elif dialect == "sqlite":
        # A write statement (even one that touches no row) takes SQLite's write lock now, so the
        # head read below cannot be stale when another process appends (pysqlite would otherwise
        # start the transaction only at the first INSERT, after the read).
        await session.execute(text(_SQLITE_LOCK))


@asynccontextmanager
async def audited(db: Database) -> AsyncIterator[AuditTx]:
    """A transaction in which state changes and their audit events commit together.

    Holds the append lock from start to commit, so keep slow work (Argon2) outside it. Do not
    nest: the lock is not re-entrant. On a :meth:`AuditTx.refuse`-d exception the work is rolled
    back and the refusal alone is recorded; any other exception rolls everything back.
    """
    lock = _lock_of(db)
    async with lock:
        tx: AuditTx | None = None
        try:
            async with db.session() as session, session.begin():
                await _lock_chain(session, db.dialect)
                tx = AuditTx(session, db)
                yield tx
        except ConsultError:
            if tx is not None and tx._refusal is not None:
                await _record_refusal(db, tx._refusal)
            raise
    for callback in tx._after_commit if tx is not None else ():
        try:
            await callback()
        except Exception:  # a listener's failure must not undo a committed change
            logger.exception("after-commit callback failed")


async def _record_refusal(db: Database, refusal: _Refusal) -> None:
    async with db.session() as session, session.begin():
        await _lock_chain(session, db.dialect)
        await AuditTx(session).record(
            refusal.action,
            actor=refusal.actor,
            object_type=refusal.object_type,
            object_id=refusal.object_id,
            result=refusal.result,
            details=refusal.details,
        )


async def append(
    db: Database,
    action: str,
    *,
    actor: Actor | None = None,
    actor_id: str | None = None,
    actor_role: str | None = None,
    source_ip: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    result: AuditResult = AuditResult.OK,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event that has nothing else to commit; return it once it is committed.

    Events appended meanwhile by other callers share its transaction (group commit, see the
    module docstring); at most :data:`MAX_QUEUED` wait at once, the next caller waits for room.
    ``at``: when it happened (default: when it is written); an event written after a later one
    takes that one's time, so the chain's times never go back. ``ValueError`` for details that
    :func:`canonical_details` refuses, before anything is queued.
    """
    fields = _fields(
        action,
        actor=actor,
        actor_id=actor_id,
        actor_role=actor_role,
        source_ip=source_ip,
        object_type=object_type,
        object_id=object_id,
        result=result,
        details=canonical_details(details),
        at=at,
    )
    return await _appender_of(db).append(fields)


MAX_BATCH: Final = 200
"""Events linked in one transaction at most (a flood's backlog is written in several)."""
MAX_QUEUED: Final = 10_000
"""Events waiting for their transaction at most; more callers wait for room (back-pressure:
a chain that cannot keep up slows its callers, it never drops an event)."""


class _Appender:
    """The group-commit writer of one database's :func:`append` calls."""

    def __init__(self, db: Database) -> None:
        self._db = weakref.ref(db)
        self._sqlite: SqliteChainWriter | None = None
        # through lambdas: the methods are looked up at each write (a test replaces them)
        self._group: GroupWriter[_Fields, AuditEvent] = GroupWriter(
            lambda batch: self._write(batch),
            lambda fields: self._write_one(fields),
            name="the audit chain",
            max_batch=MAX_BATCH,
            max_queued=MAX_QUEUED,
        )
        db.before_close(self.drain)

    async def append(self, fields: _Fields) -> AuditEvent:
        # the event is written (and the chain stays whole) even if the caller goes
        return await self._group.submit(fields)

    async def drain(self) -> None:
        """Wait until every queued event is written (or has failed); then let go of the
        SQLite writer's connection (the database is closing)."""
        await self._group.drain()
        sqlite, self._sqlite = self._sqlite, None
        if sqlite is not None:
            await asyncio.get_running_loop().run_in_executor(None, sqlite.close)

    async def _write_one(self, fields: _Fields) -> AuditEvent:
        (event,) = await self._write([fields])
        return event

    async def _write(self, batch: list[_Fields]) -> list[AuditEvent]:
        db = self._db()
        if db is None:
            raise RuntimeError("the database is gone")
        if SqliteChainWriter.fits(db):
            if self._sqlite is None:
                self._sqlite = SqliteChainWriter(db)
            async with _lock_of(db):  # the same lock as audited(): one appender at a time
                return await asyncio.get_running_loop().run_in_executor(
                    None, self._sqlite.write, batch
                )
        async with audited(db) as tx:
            return await tx._add(batch)


class SqliteChainWriter:
    """Appends a batch in one worker-thread call on a plain ``sqlite3`` connection (SQLite files).

    Through the async driver, each statement of an append (the write lock, the head, the
    insert, the commit, the connection's reset) is a round trip to the driver's thread and back
    to the event loop: about 1.5 ms of the loop's CPU per transaction, most of a viewer's
    request. Here the whole transaction is one call in a worker thread: the same statements,
    the same locks (the asyncio lock is held around the call, SQLite's write lock is taken
    before the head is read), the same durability (committed before it returns), a tenth of
    the CPU. PostgreSQL keeps :func:`audited`."""

    def __init__(self, db: Database) -> None:
        from sqlalchemy import create_engine

        url = db.engine.url.set(drivername="sqlite")
        self._engine = create_engine(url, pool_size=1, max_overflow=0)
        self._insert = insert(_TABLE)

    @staticmethod
    def fits(db: Database) -> bool:
        database = db.engine.url.database
        return db.dialect == "sqlite" and bool(database) and database != ":memory:"

    def write(self, batch: Sequence[_Fields]) -> list[AuditEvent]:
        """Link ``batch`` onto the head and commit it (blocking: a worker thread)."""
        with self._engine.begin() as connection:
            connection.exec_driver_sql(_SQLITE_LOCK)
            head = _head_of(connection.execute(_HEAD_QUERY).first())
            events, _ = _link(head, batch)
            connection.execute(self._insert, _rows(events))
        return events

    def close(self) -> None:
        self._engine.dispose()


def chain_lock(db: Database) -> asyncio.Lock:
    """This process's append lock of ``db`` (the one :func:`audited` holds): a writer that
    appends from a worker thread (:class:`SyncAuditTx`) holds it around its call."""
    return _lock_of(db)


class SyncAuditTx:
    """Audit events of one transaction on a synchronous SQLite connection (a worker thread's
    whole transaction, as :class:`SqliteChainWriter` writes appends).

    :meth:`begin` takes SQLite's write lock first, so the head read at :meth:`flush` cannot be
    stale; :meth:`record` keeps events in order; :meth:`flush` links them onto the head and
    inserts them with one statement, before the caller commits. Hold :func:`chain_lock` around
    the worker-thread call, as :func:`audited` does."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._pending: list[_Fields] = []

    @classmethod
    def begin(cls, connection: Any) -> SyncAuditTx:
        """Take the chain's write lock in ``connection``'s transaction (SQLite only)."""
        connection.exec_driver_sql(_SQLITE_LOCK)
        return cls(connection)

    def record(
        self,
        action: str,
        *,
        actor: Actor | None = None,
        actor_role: str | None = None,
        source_ip: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        result: AuditResult = AuditResult.OK,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """One event to append at :meth:`flush` (``ValueError`` for details refused by
        :func:`canonical_details`, at once)."""
        self._pending.append(
            _fields(
                action,
                actor=actor,
                actor_id=None,
                actor_role=actor_role,
                source_ip=source_ip,
                object_type=object_type,
                object_id=object_id,
                result=result,
                details=canonical_details(details),
            )
        )

    def flush(self) -> list[AuditEvent]:
        """Link the recorded events onto the head and insert them (nothing to do if none)."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        head = _head_of(self._connection.execute(_HEAD_QUERY).first())
        events, _ = _link(head, pending)
        self._connection.execute(insert(_TABLE), _rows(events))
        return events


_appenders: weakref.WeakKeyDictionary[Database, _Appender] = weakref.WeakKeyDictionary()


def _appender_of(db: Database) -> _Appender:
    appender = _appenders.get(db)
    if appender is None:
        appender = _appenders[db] = _Appender(db)
    return appender


async def read_head(db: Database) -> tuple[int, str]:
    """The chain's last ``(seq, digest)`` as committed now (``(0, genesis)`` when empty)."""
    async with db.session() as session:
        seq, digest, _ = await _read_head(session)
    return seq, digest
