"""R22, R24, R25: the audit chain appends, verifies, refuses edits, and names tampering."""

from __future__ import annotations

import asyncio
import json

import pytest
from consult_world import make_org, make_patient, signed_in
from databases import FIELD_KEY
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from consult import audit
from consult.actor import Actor
from consult.audit import append, audited, canonical_details, canonical_event
from consult.audit_verify import list_events, verify_as, verify_chain
from consult.crypto import GENESIS_DIGEST, sm3_hex
from consult.db import Database
from consult.errors import PermissionDenied
from consult.models import AuditEvent, AuditResult
from consult.permissions import Role
from consult.sqltypes import new_id

ACTOR = Actor(user_id=new_id(), role=Role.DOCTOR, session_id=new_id(), source_ip="10.0.0.7")


@pytest.fixture
def fresh(scratch_db: Database) -> Database:
    """A database whose chain is ours alone: tampering must not break the run's shared chain."""
    return scratch_db


async def _events(db: Database) -> list[AuditEvent]:
    async with db.session() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


async def _fill(db: Database, count: int) -> list[AuditEvent]:
    for n in range(count):
        await append(db, "test.event", actor=ACTOR, object_type="thing", details={"n": n})
    return await _events(db)


async def test_r22_events_chain_from_the_genesis_digest(fresh: Database) -> None:
    events = await _fill(fresh, 4)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_digest == GENESIS_DIGEST
    for prev, event in zip([None, *events], events, strict=False):
        prev_digest = GENESIS_DIGEST if prev is None else prev.digest
        assert event.prev_digest == prev_digest
        recomputed = sm3_hex(bytes.fromhex(prev_digest) + canonical_event(event).encode())
        assert event.digest == recomputed
    first = json.loads(canonical_event(events[0]))
    assert set(first) == {
        "id",
        "at",
        "actor_id",
        "actor_role",
        "action",
        "object_type",
        "object_id",
        "result",
        "source_ip",
        "details",
        "seq",  # digest version 2: an event moved elsewhere no longer matches its digest
        "v",
    }
    assert first["seq"] == 1 and first["v"] == 2 and events[0].digest_version == 2
    assert first["actor_role"] == "doctor" and first["source_ip"] == "10.0.0.7"
    report = await verify_chain(fresh)
    assert report.ok and report.checked == 4 and report.exit_status == 0
    assert report.head_seq == 4 and report.head_digest == events[-1].digest
    assert "OK" in report.text() and "4 events" in report.text()


async def test_r22_empty_chain_verifies(fresh: Database) -> None:
    report = await verify_chain(fresh)
    assert report.ok and report.checked == 0 and report.head_seq is None


async def test_r22_verify_reads_in_batches(fresh: Database) -> None:
    await _fill(fresh, 7)
    report = await verify_chain(fresh, batch_size=2)
    assert report.ok and report.checked == 7


async def test_r22_a_change_and_its_event_commit_together(fresh: Database) -> None:
    with pytest.raises(RuntimeError):
        async with audited(fresh) as tx:
            await tx.record("test.rolled_back", actor=ACTOR)
            raise RuntimeError("boom")
    assert await _events(fresh) == []


async def test_r34_a_refusal_is_recorded_even_though_the_work_rolls_back(fresh: Database) -> None:
    with pytest.raises(PermissionDenied):
        async with audited(fresh) as tx:
            await tx.record("test.rolled_back", actor=ACTOR)
            raise tx.refuse(PermissionDenied(), actor=ACTOR, action="visit.admit", object_id="v1")
    (event,) = await _events(fresh)
    assert (event.action, event.result, event.object_id) == ("visit.admit", "denied", "v1")
    assert json.loads(event.details) == {"code": "forbidden"}
    assert (await verify_chain(fresh)).ok


async def test_r22_after_commit_callbacks_run_only_after_commit(fresh: Database) -> None:
    ran: list[str] = []

    async def note() -> None:
        ran.append("x")

    async with audited(fresh) as tx:
        tx.after_commit(note)
        assert ran == []
    assert ran == ["x"]
    with pytest.raises(RuntimeError):
        async with audited(fresh) as tx:
            tx.after_commit(note)
            raise RuntimeError
    assert ran == ["x"]


@pytest.mark.parametrize(
    "details",
    [
        {"id_number": "11010519491231002X"},
        {"note": "call 13800138000"},
        {"nested": {"a": 1}},
        {"long": "x" * 201},
        {"list": [{"a": 1}]},
    ],
)
def test_r37_details_refuse_personal_data_and_structure(details: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        canonical_details(details)


def test_r22_details_are_canonical() -> None:
    assert canonical_details({"b": 1, "a": ["x", None, True]}) == '{"a":["x",null,true],"b":1}'
    assert canonical_details(None) == "{}"


async def test_r22_appends_from_several_processes_chain_without_forks(fresh: Database) -> None:
    """Three engines on one database (three processes, as far as the database can tell)."""
    url = fresh.engine.url.render_as_string(hide_password=False)
    others = [Database(url, field_key=FIELD_KEY) for _ in range(2)]
    for other in others:
        await other.start()
    try:

        async def burst(db: Database, tag: str) -> None:
            for n in range(15):
                await append(db, "test.burst", actor=ACTOR, details={"tag": tag, "n": n})

        await asyncio.gather(
            *(burst(db, str(i)) for i, db in enumerate([fresh, *others])),
            burst(fresh, "same-process"),
        )
    finally:
        for other in others:
            await other.close()
    events = await _events(fresh)
    assert [e.seq for e in events] == list(range(1, 61))
    report = await verify_chain(fresh)
    assert report.ok and report.checked == 60


async def test_r22_appends_at_once_share_a_transaction_and_chain_in_order(
    fresh: Database,
) -> None:
    """Group commit: 60 appends made at once are written in a few transactions (one per batch
    the writer finds queued), each returns its own committed event, and they chain in the order
    they were made."""
    commits: list[int] = []

    def count(_conn: object) -> None:
        commits.append(1)

    # every engine: on an SQLite file the appender commits through its own (SqliteChainWriter)
    sa_event.listen(Engine, "commit", count)
    try:
        returned = await asyncio.gather(
            *(append(fresh, "test.burst", actor=ACTOR, details={"n": n}) for n in range(60))
        )
    finally:
        sa_event.remove(Engine, "commit", count)
    events = await _events(fresh)
    assert [e.seq for e in events] == list(range(1, 61))
    assert [json.loads(e.details)["n"] for e in events] == list(range(60))  # the callers' order
    assert [(e.seq, e.digest) for e in returned] == [(e.seq, e.digest) for e in events]
    assert 1 <= len(commits) <= 3, len(commits)  # not 60
    assert (await verify_chain(fresh)).ok


async def test_r22_a_batch_that_fails_is_written_one_event_at_a_time(
    fresh: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the database refuses is retried event by event: only the bad event fails."""
    write = audit._Appender._write

    async def refuse_batches_and_one(self: audit._Appender, batch: list) -> list[AuditEvent]:  # type: ignore[type-arg]
        if len(batch) > 1 or batch[0].object_id == "bad":
            raise DBAPIError("INSERT", {}, Exception("refused"))
        return await write(self, batch)

    monkeypatch.setattr(audit._Appender, "_write", refuse_batches_and_one)
    outcomes = await asyncio.gather(
        *(
            append(fresh, "test.batch", actor=ACTOR, object_id="bad" if n == 2 else f"ok-{n}")
            for n in range(5)
        ),
        return_exceptions=True,
    )
    assert [isinstance(o, DBAPIError) for o in outcomes] == [False, False, True, False, False]
    assert [e.object_id for e in await _events(fresh)] == ["ok-0", "ok-1", "ok-3", "ok-4"]
    assert (await verify_chain(fresh)).ok


async def test_r22_personal_data_is_refused_before_it_is_queued(fresh: Database) -> None:
    with pytest.raises(ValueError):
        await append(fresh, "test.pii", actor=ACTOR, details={"phone": "13800138000"})
    assert await _events(fresh) == []


async def test_r22_queued_appends_are_written_before_the_database_closes(
    fresh: Database,
) -> None:
    """Appends whose callers went away (cancelled mid-write) are still written, and the
    database waits for them when it closes: shutdown loses no event."""
    url = fresh.engine.url.render_as_string(hide_password=False)
    other = Database(url, field_key=FIELD_KEY)
    await other.start()
    callers = [
        asyncio.create_task(append(other, "test.shutdown", actor=ACTOR, details={"n": n}))
        for n in range(30)
    ]
    await asyncio.sleep(0)  # every caller has queued its event
    for caller in callers[::2]:
        caller.cancel()
    await other.close()
    assert other.closed
    events = await _events(fresh)
    assert sorted(json.loads(e.details)["n"] for e in events) == list(range(30))
    assert (await verify_chain(fresh)).ok


async def test_r22_a_writer_that_is_cancelled_leaves_no_caller_waiting(fresh: Database) -> None:
    """The writer cancelled mid-batch (its loop going away): every caller gets an error at once
    instead of waiting for ever, and the next append starts a new writer."""
    callers = [
        asyncio.create_task(append(fresh, "test.cancel", actor=ACTOR, details={"n": n}))
        for n in range(5)
    ]
    await asyncio.sleep(0)  # queued, the writer started
    writer = audit._appender_of(fresh)._group._writer
    assert writer is not None
    writer.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 10)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    event = await append(fresh, "test.after", actor=ACTOR)
    assert event.action == "test.after"
    assert (await verify_chain(fresh)).ok


# --- The application cannot edit the chain --------------------------------------------------


async def test_r24_triggers_refuse_update_and_delete(fresh: Database) -> None:
    await _fill(fresh, 2)
    for statement in (
        "UPDATE audit_events SET action = 'x' WHERE seq = 1",
        "UPDATE audit_events SET seq = 99 WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with fresh.session() as session, session.begin():
                await session.execute(text(statement))
    assert len(await _events(fresh)) == 2
    assert (await verify_chain(fresh)).ok


async def test_r24_postgresql_truncate_is_refused(pg_scratch_db: Database) -> None:
    fresh = pg_scratch_db
    await _fill(fresh, 1)
    with pytest.raises(DBAPIError, match="append-only"):
        async with fresh.session() as session, session.begin():
            await session.execute(text("TRUNCATE audit_events"))


async def test_r24_postgresql_app_role_may_only_insert_and_select(pg_scratch_db: Database) -> None:
    fresh = pg_scratch_db
    await _fill(fresh, 2)
    async with fresh.engine.connect() as connection:
        await connection.execute(text("SET ROLE teleconsult_app"))
        count = (await connection.execute(text("SELECT count(*) FROM audit_events"))).scalar()
        assert count == 2
        await connection.execute(
            text(
                "INSERT INTO audit_events (seq, id, at, action, result, details, prev_digest, "
                "digest) VALUES (3, :id, now(), 'probe', 'ok', '{}', :prev, :digest)"
            ),
            {"id": new_id(), "prev": GENESIS_DIGEST, "digest": "f" * 64},
        )
        await connection.rollback()  # the probe row is not a real event
    for statement in (
        "UPDATE audit_events SET action = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "DROP TRIGGER audit_events_no_update ON audit_events",
    ):
        async with fresh.engine.connect() as connection:
            await connection.execute(text("SET ROLE teleconsult_app"))
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                await connection.execute(text(statement))
            await connection.rollback()
    assert (await verify_chain(fresh)).ok


# --- A DBA bypasses the triggers: verify names the first broken event ------------------------


async def _as_dba(db: Database, *statements: str) -> None:
    """Run ``statements`` with the append-only triggers out of the way, as an owner could."""
    async with db.session() as session, session.begin():
        if db.dialect == "postgresql":
            await session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            await session.execute(text("DROP TRIGGER audit_events_no_update"))
            await session.execute(text("DROP TRIGGER audit_events_no_delete"))
        for statement in statements:
            await session.execute(text(statement))
        if db.dialect == "postgresql":
            await session.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


async def test_r24_changed_row_is_reported_altered(fresh: Database) -> None:
    events = await _fill(fresh, 6)
    await _as_dba(fresh, "UPDATE audit_events SET action = 'innocent' WHERE seq = 3")
    report = await verify_chain(fresh)
    assert not report.ok and report.exit_status == 1
    assert (report.broken_seq, report.broken_id, report.problem) == (3, events[2].id, "altered")
    assert report.head_seq == 2 and report.checked == 3
    assert "BROKEN at seq 3" in report.text()


@pytest.mark.parametrize(
    "change", ["details = '{}'", "source_ip = '10.0.0.8'", "actor_id = NULL", "id = 'x'"]
)
async def test_r24_any_changed_field_is_reported_altered(fresh: Database, change: str) -> None:
    await _fill(fresh, 4)
    await _as_dba(fresh, f"UPDATE audit_events SET {change} WHERE seq = 2")
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (2, "altered")


async def test_r24_changed_and_rehashed_row_breaks_the_next_link(fresh: Database) -> None:
    events = await _fill(fresh, 5)
    victim = events[2]
    victim.result = AuditResult.DENIED.value
    rehashed = sm3_hex(bytes.fromhex(victim.prev_digest) + canonical_event(victim).encode())
    await _as_dba(
        fresh,
        f"UPDATE audit_events SET result = 'denied', digest = '{rehashed}' WHERE seq = 3",
    )
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (4, "bad_link")
    assert report.broken_id == events[3].id


async def test_r24_deleted_row_is_reported_missing(fresh: Database) -> None:
    events = await _fill(fresh, 6)
    await _as_dba(fresh, "DELETE FROM audit_events WHERE seq = 4")
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.broken_id, report.problem) == (5, events[4].id, "missing")
    assert "event 4 missing" in report.detail


async def test_r24_deleted_first_row_is_reported_missing(fresh: Database) -> None:
    await _fill(fresh, 3)
    await _as_dba(fresh, "DELETE FROM audit_events WHERE seq = 1")
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (2, "missing")


async def test_r24_deleted_and_renumbered_rows_break_the_link(fresh: Database) -> None:
    await _fill(fresh, 5)
    await _as_dba(
        fresh,
        "DELETE FROM audit_events WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = 5",
    )
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (3, "bad_link")


@pytest.mark.parametrize(("a", "b"), [(3, 4), (2, 5)])
async def test_r24_swapped_rows_are_reported_reordered(fresh: Database, a: int, b: int) -> None:
    events = await _fill(fresh, 6)
    await _as_dba(
        fresh,
        f"UPDATE audit_events SET seq = -1 WHERE seq = {a}",
        f"UPDATE audit_events SET seq = {a} WHERE seq = {b}",
        f"UPDATE audit_events SET seq = {b} WHERE seq = -1",
    )
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (a, "reordered")
    assert report.broken_id == events[b - 1].id  # the event now stored at seq a


async def test_r24_forged_digest_is_reported_altered(fresh: Database) -> None:
    await _fill(fresh, 3)
    await _as_dba(fresh, "UPDATE audit_events SET digest = 'zz' WHERE seq = 3")
    report = await verify_chain(fresh)
    assert (report.broken_seq, report.problem) == (3, "altered")


async def test_r22_auditors_verify_and_read_the_chain_and_that_is_audited(fresh: Database) -> None:
    await _fill(fresh, 3)
    auditor = Actor(user_id=new_id(), role=Role.AUDITOR, session_id=new_id())
    report = await verify_as(fresh, auditor)
    assert report.ok and report.checked == 3
    events = await list_events(fresh, auditor, after_seq=1, limit=10)
    assert [e.seq for e in events] == [2, 3, 4]  # 4: the audit.verify event itself
    with pytest.raises(PermissionDenied):
        await verify_as(fresh, ACTOR)
    with pytest.raises(PermissionDenied):
        await list_events(fresh, ACTOR)
    tail = (await _events(fresh))[-4:]
    assert [(e.action, e.result) for e in tail] == [
        ("audit.verify", "ok"),
        ("audit.view", "ok"),
        ("audit.verify", "denied"),
        ("audit.view", "denied"),
    ]


async def test_r24_the_app_runs_as_teleconsult_app_and_cannot_edit_the_chain(
    pg_scratch_db: Database,
) -> None:
    """Serve as a login role in ``teleconsult_app`` (INSERT and SELECT only on audit_events)."""
    fresh = pg_scratch_db
    login = f"tc_app_{new_id()[:12]}"
    async with fresh.engine.connect() as connection:
        await connection.execute(text(f"CREATE ROLE {login} LOGIN IN ROLE teleconsult_app"))
        await connection.commit()
    app = Database(
        fresh.engine.url.set(username=login, password=None).render_as_string(hide_password=False),
        field_key=FIELD_KEY,
    )
    try:
        await app.start()  # at head: the migration step only reads alembic_version
        org = await make_org(app)
        patient = await make_patient(app, org)
        await signed_in(app, patient.person)
        assert (await verify_chain(app)).ok
        for statement in (
            "UPDATE audit_events SET action = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with app.session() as session, session.begin():
                    await session.execute(text(statement))
    finally:
        await app.close()
        async with fresh.engine.connect() as connection:
            await connection.execute(text(f"DROP ROLE IF EXISTS {login}"))
            await connection.commit()
