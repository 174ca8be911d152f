"""Domain events (issue 11): recorded in the transaction, relayed after commit, never after a
rollback; revocations name what ends; a join token dies with its session and its password."""

from __future__ import annotations

import pytest
from consult_world import PASSWORD, Org, make_org, make_person, signed_in

from consult import events
from consult.accounts import change_password, deactivate_user
from consult.actor import Actor
from consult.audit import audited
from consult.db import Database
from consult.errors import InvalidTransition
from consult.events import AccessRevoked, DomainEvent, StateChanged
from consult.machine import StateMachine
from consult.models import User
from consult.permissions import Role
from consult.sessions import credential_stamp, join_token_alive, sign_in, sign_out
from consult.tokens import TokenClaims
from consult.visit_flow import VISIT_MACHINE, VisitEvent, VisitState


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


@pytest.fixture
async def heard(db: Database):
    got: list[DomainEvent] = []

    async def listener(event: DomainEvent) -> None:
        got.append(event)

    unsubscribe = events.subscribe(db, listener)
    yield got
    unsubscribe()


def test_the_visit_machine_is_a_table():
    assert isinstance(VISIT_MACHINE, StateMachine)
    assert (VisitState.IN_ROOM, VisitEvent.SEND_BACK, VisitState.WAITING) in VISIT_MACHINE.table()
    assert VISIT_MACHINE.action(VisitEvent.REFER) == "visit.refer"


async def test_events_are_relayed_after_commit_only(db: Database, heard) -> None:
    class Row:
        id, status, updated_at, closed_at = "r" * 32, "booked", None, None

    actor = Actor(user_id="u" * 32, role=Role.DOCTOR)
    row = Row()
    async with audited(db) as tx:
        await VISIT_MACHINE.set_state(tx, actor, row, VisitEvent.CHECK_IN)  # type: ignore[arg-type]
        assert heard == []  # not before the commit
    assert heard == [StateChanged("visit", "r" * 32, "booked", "waiting", "check_in", "u" * 32, ())]
    with pytest.raises(RuntimeError):
        async with audited(db) as tx:
            await VISIT_MACHINE.set_state(tx, actor, row, VisitEvent.ADMIT)  # type: ignore[arg-type]
            raise RuntimeError("rolled back")
    assert len(heard) == 1  # a rolled-back change relays nothing
    with pytest.raises(InvalidTransition):
        async with audited(db) as tx:
            await VISIT_MACHINE.set_state(tx, actor, row, VisitEvent.CHECK_IN)  # type: ignore[arg-type]
    assert len(heard) == 1


async def _claims(db: Database, user_id: str, session_id: str | None) -> TokenClaims:
    async with db.session() as session:
        user = await session.get(User, user_id)
        assert user is not None
        stamp = credential_stamp(user)
    return TokenClaims("v" * 32, user_id, "patient", 2**31, "j" * 32, session_id, stamp)


async def _alive(db: Database, claims: TokenClaims) -> bool:
    async with db.session() as session:
        user = await session.get(User, claims.user_id)
        assert user is not None
        return await join_token_alive(session, claims, user)


async def test_sign_out_revokes_its_session_and_its_join_tokens(db: Database, org: Org, heard):
    patient = await make_person(db, org, Role.PATIENT)
    actor = await signed_in(db, patient)
    claims = await _claims(db, patient.user_id, actor.session_id)
    assert await _alive(db, claims)
    await sign_out(db, actor)
    assert heard[-1] == AccessRevoked(patient.user_id, "sign_out", frozenset({actor.session_id}))
    assert not await _alive(db, claims)


async def test_a_new_sign_in_revokes_the_old_sessions_tokens(db: Database, org: Org, heard):
    patient = await make_person(db, org, Role.PATIENT)
    first = await sign_in(db, patient.username, PASSWORD)
    claims = await _claims(db, patient.user_id, first.session_id)
    await sign_in(db, patient.username, PASSWORD)
    assert heard[-1] == AccessRevoked(patient.user_id, "rotated", frozenset({first.session_id}))
    assert not await _alive(db, claims)


async def test_a_password_change_kills_the_tokens_but_keeps_the_session(
    db: Database, org: Org, heard
):
    patient = await make_person(db, org, Role.PATIENT)
    actor = await signed_in(db, patient)
    claims = await _claims(db, patient.user_id, actor.session_id)
    await change_password(db, actor, PASSWORD, "Brand-New-Pass-9")
    assert heard[-1] == AccessRevoked(patient.user_id, "password_changed", tokens_only=True)
    assert not await _alive(db, claims)  # stamped with the old password
    assert await _alive(db, await _claims(db, patient.user_id, actor.session_id))


async def test_deactivation_revokes_the_whole_account(db: Database, org: Org, heard):
    admin = await signed_in(db, await make_person(db, org, Role.ADMIN))
    doctor = await make_person(db, org, Role.DOCTOR)
    await signed_in(db, doctor)
    await deactivate_user(db, admin, doctor.user_id)
    revoked = [e for e in heard if isinstance(e, AccessRevoked)]
    assert AccessRevoked(doctor.user_id, "deactivated") in revoked
    assert revoked[-1].whole_account
