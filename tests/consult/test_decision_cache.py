"""Decisions kept for a moment (consult.decision_cache): a bearer session found a moment ago is
not read again, and is never served once this process revoked it (R33); another process's
change is seen within the cache's time bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from consult_world import PASSWORD, SYSTEM, Org, make_org, make_person
from databases import FIELD_KEY
from sqlalchemy import event, update

from consult.accounts import deactivate_user
from consult.db import Database, changes_decisions
from consult.decision_cache import DecisionCache
from consult.errors import SessionInvalid
from consult.models import Session
from consult.permissions import Role
from consult.sessions import _bearers_of, authenticate, sign_in, sign_out
from consult.sqltypes import utc_now


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements ``db`` executes meanwhile."""
    seen: list[str] = []

    def note(*args: Any) -> None:
        seen.append(args[2])

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_r33_a_session_found_a_moment_ago_costs_no_statement(db: Database, org: Org) -> None:
    """The second request of a bearer token within the moment reads nothing; the request's own
    address is still the actor's."""
    patient = await make_person(db, org, Role.PATIENT)
    token = (await sign_in(db, patient.username, PASSWORD)).token
    first = await authenticate(db, token, "192.0.2.1")
    with statements(db) as seen:
        again = await authenticate(db, token, "192.0.2.2")
    assert seen == []
    assert again.user_id == first.user_id and again.session_id == first.session_id
    assert (first.source_ip, again.source_ip) == ("192.0.2.1", "192.0.2.2")


async def test_r33_a_cached_session_is_refused_at_once_when_revoked(db: Database, org: Org) -> None:
    """R33: sign-out, a newer sign-in and a deactivation end a session whose decision is kept:
    the very next request is refused, no waiting for the cache to age."""
    patient = await make_person(db, org, Role.PATIENT)
    token = (await sign_in(db, patient.username, PASSWORD)).token
    actor = await authenticate(db, token)
    await authenticate(db, token)  # kept
    await sign_out(db, actor)
    with pytest.raises(SessionInvalid):
        await authenticate(db, token)

    first = (await sign_in(db, patient.username, PASSWORD)).token
    await authenticate(db, first)
    second = (await sign_in(db, patient.username, PASSWORD)).token  # rotates: the first ends
    with pytest.raises(SessionInvalid):
        await authenticate(db, first)
    await authenticate(db, second)
    await authenticate(db, second)
    await deactivate_user(db, SYSTEM, patient.user_id)
    with pytest.raises(SessionInvalid):
        await authenticate(db, second)


async def test_r33_another_process_revoking_is_seen_within_the_bound(
    db: Database, db_url: str, org: Org
) -> None:
    """A session revoked by another process (the command line, another worker: its writes do
    not move this process's counter) is refused once the kept decision ages out."""
    patient = await make_person(db, org, Role.PATIENT)
    result = await sign_in(db, patient.username, PASSWORD)
    await authenticate(db, result.token)
    _bearers_of(db).ttl_s = 0.3
    other = Database(db_url, field_key=FIELD_KEY)
    await other.start()
    try:
        async with other.session() as session, session.begin():
            await session.execute(
                update(Session)
                .where(Session.id == result.session_id)
                .values(revoked_at=utc_now(), revoke_reason="sign_out")
            )
    finally:
        await other.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            await authenticate(db, result.token)
        except SessionInvalid:
            break
        assert time.monotonic() < deadline, "a revocation by another process was never seen"
        await asyncio.sleep(0.05)


async def test_a_value_read_while_a_change_was_under_way_is_not_kept(db: Database) -> None:
    """A value is kept only if nothing that may change a decision was written since the stamp
    taken before reading it; a change empties the cache; writes of the chain, new instances
    and a session's activity stamp change nothing."""
    cache: DecisionCache[str, int] = DecisionCache(db)
    stamp = cache.stamp()
    db.note_change()  # a write between the read and the put
    cache.put("a", 1, stamp)
    assert cache.get("a") is None
    cache.put("a", 1, cache.stamp())
    assert cache.get("a") == 1
    db.note_change()
    assert cache.get("a") is None and len(cache) == 0
    assert not changes_decisions("INSERT INTO audit_events (seq) VALUES (?)")
    assert not changes_decisions("UPDATE audit_events SET seq = seq WHERE 0 = 1")
    assert not changes_decisions("INSERT INTO imaging_instances (id) VALUES (?)")
    assert not changes_decisions("UPDATE sessions SET last_seen_at=? WHERE sessions.id = ?")
    assert not changes_decisions("SELECT sessions.id FROM sessions")
    for write in (
        "UPDATE sessions SET revoked_at=?, revoke_reason=? WHERE sessions.id IN (?)",
        "UPDATE sessions SET last_seen_at=?, revoked_at=? WHERE sessions.id = ?",
        "UPDATE consultation_invitations SET status=? WHERE id = ?",
        "DELETE FROM imaging_instances WHERE id = ?",
        'INSERT INTO "users" (id) VALUES (?)',
        "ALTER TABLE users ADD COLUMN x INTEGER",
    ):
        assert changes_decisions(write), write


async def test_the_engine_moves_the_counter_at_a_write_and_at_its_end(
    db: Database, org: Org
) -> None:
    """A decision-changing write moves the counter when it is executed and again once its
    connection is back in the pool (after commit); a session's activity stamp does not."""
    patient = await make_person(db, org, Role.PATIENT)
    result = await sign_in(db, patient.username, PASSWORD)
    seen: list[int] = []
    before = db.changes
    async with db.session() as session, session.begin():
        await session.execute(
            update(Session).where(Session.id == result.session_id).values(last_seen_at=utc_now())
        )
    assert db.changes == before
    async with db.session() as session:
        async with session.begin():
            await session.execute(
                update(Session)
                .where(Session.id == result.session_id)
                .values(revoke_reason="test", revoked_at=utc_now())
            )
            seen.append(db.changes)
        seen.append(db.changes)
    seen.append(db.changes)
    assert seen[0] > before and seen[-1] > seen[0]
