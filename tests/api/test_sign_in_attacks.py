"""Sign-in under attack (issue 13, R33): races sent in parallel, one answer, throttles.

Every request goes over HTTP to the real server (SQLite and PostgreSQL), many at once with
``asyncio.gather``, the way the attacker's run did.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp
from apiclient import PASSWORD, Api, Clinic
from harness import Server
from sqlalchemy import select

from consult.models import AuditEvent, User
from web.keys import DATABASE


async def _user(server: Server, user_id: str) -> User:
    async with server.app[DATABASE].session() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user


async def _sign_in_failures(server: Server) -> list[AuditEvent]:
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "session.sign_in", AuditEvent.result == "failed")
            .order_by(AuditEvent.seq)
        )
        return list(rows.all())


def _api_from(server: Server, address: str) -> Api:
    """An API client whose connections come from ``address`` (another loopback address)."""
    api = Api(server.url)
    api.http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    )
    return api


async def test_r33_parallel_wrong_passwords_all_count_and_lock(
    any_server: Server, any_clinic: Clinic
) -> None:
    """31 wrong passwords at once, then the right one: refused, and the account is locked."""
    patient = await any_clinic.person("patient")
    body = {"username": patient.username, "password": "Wrong-Password-1"}
    attacker = _api_from(any_server, "127.0.0.2")  # its address is throttled soon: not ours
    try:
        replies = await asyncio.gather(
            *(attacker.call("POST", "/session", body) for _ in range(31))
        )
    finally:
        await attacker.close()
    codes = [reply.code for reply in replies]
    assert set(codes) <= {"invalid_credentials", "account_locked", "rate_limited"}, codes
    assert codes.count("invalid_credentials") <= 4, codes  # the fifth counted failure locks
    right = await any_clinic.api.call(
        "POST", "/session", {"username": patient.username, "password": PASSWORD}
    )
    assert (right.status, right.code) == (401, "account_locked"), right
    user = await _user(any_server, patient.user_id)
    assert user.locked_until is not None


async def test_r33_one_totp_code_opens_one_session_when_sent_in_parallel(
    any_server: Server, any_clinic: Clinic
) -> None:
    doctor = await any_clinic.person("doctor")
    assert doctor.totp is not None
    code = await doctor.totp.code()  # a step no one used yet
    body = {"username": doctor.username, "password": PASSWORD, "totp_code": code}
    replies = await asyncio.gather(
        *(any_clinic.api.call("POST", "/session", body) for _ in range(5))
    )
    assert sorted(reply.status for reply in replies).count(201) == 1, replies
    assert {r.code for r in replies if r.status != 201} == {"invalid_credentials"}, replies


async def test_r33_every_failure_answers_alike_until_both_factors_pass(
    any_server: Server, any_clinic: Clinic
) -> None:
    """No password oracle: a right password without its code answers as a wrong one does."""
    doctor = await any_clinic.person("doctor")
    wrong = await any_clinic.api.call(
        "POST", "/session", {"username": doctor.username, "password": "Wrong-Password-1"}
    )
    right_no_code = await any_clinic.api.call(
        "POST", "/session", {"username": doctor.username, "password": PASSWORD}
    )
    unknown = await any_clinic.api.call(
        "POST", "/session", {"username": "nobody-at-all", "password": PASSWORD}
    )
    answers = {(r.status, r.code, r.body["error"]["message"]) for r in (wrong, right_no_code)}
    answers.add((unknown.status, unknown.code, unknown.body["error"]["message"]))
    assert len(answers) == 1 and next(iter(answers))[1] == "invalid_credentials", answers


async def test_r33_unknown_usernames_lock_like_accounts(
    any_server: Server, any_clinic: Clinic
) -> None:
    """Lockout does not tell which usernames exist: five failures lock either kind."""
    patient = await any_clinic.person("patient")
    results: dict[str, list[str | None]] = {}
    for address, name in (("127.0.0.3", patient.username), ("127.0.0.4", "ghost-a1b2c3")):
        answers = []
        client = _api_from(any_server, address)
        try:
            for _ in range(6):
                reply = await client.call(
                    "POST", "/session", {"username": name, "password": "Wrong-Password-1"}
                )
                answers.append(reply.code)
        finally:
            await client.close()
        results[name] = answers
    first, second = results.values()
    assert first == second == ["invalid_credentials"] * 4 + ["account_locked"] * 2, results
    # ... and the failures under the unknown name are audited by reference, never by name
    failures = await _sign_in_failures(any_server)
    ghost = [e for e in failures if e.actor_id is None]
    assert ghost and all("ghost-" not in str(e.details) for e in ghost)


async def test_r33_one_address_is_throttled_across_accounts(
    any_server: Server, any_clinic: Clinic
) -> None:
    """4 accounts x 4 tries from one address: from the 11th failure on, ``rate_limited`` with a
    Retry-After, before any password is checked; another address is not affected."""
    people = [await any_clinic.person("patient") for _ in range(4)]
    attacker = _api_from(any_server, "127.0.0.2")
    try:
        codes: list[str | None] = []
        retry_after: list[str] = []
        for person in people:
            for _ in range(4):
                reply = await attacker.call(
                    "POST", "/session", {"username": person.username, "password": "Nope-Nope-12"}
                )
                codes.append(reply.code)
                if reply.code == "rate_limited":
                    assert reply.status == 429
                    retry_after.append(reply.headers.get("Retry-After", ""))
        assert codes[:10] == ["invalid_credentials"] * 10, codes
        assert set(codes[10:]) == {"rate_limited"}, codes
        assert retry_after and all(value.isdigit() for value in retry_after)
        # the refusals are summarised in the audit chain, not written one per request
        failures = await _sign_in_failures(any_server)
        summaries = [e for e in failures if json.loads(e.details)["reason"] == "rate_limited"]
        assert len(summaries) == 1, summaries
        # no account was locked by the throttled tries (4 failures each at most)
        for person in people:
            assert (await _user(any_server, person.user_id)).locked_until is None
        # the right person from another address gets in
        reply = await people[3].sign_in()
        assert reply.status == 201, reply
    finally:
        await attacker.close()


async def test_r33_weak_passwords_are_refused_at_the_edge(
    any_server: Server, any_clinic: Clinic
) -> None:
    for password in ("Password12", "P@ssw0rd2024", "Qwerty123456", " " * 10 + "aA1"):
        body: dict[str, Any] = {
            "username": f"weak-{secrets.token_hex(3)}",
            "display_name": "weak",
            "role": "patient",
            "password": password,
        }
        reply = await any_clinic.admin.call("POST", "/accounts", body)
        assert (reply.status, reply.code) == (422, "weak_password"), (password, reply)
