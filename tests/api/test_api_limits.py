"""Request budgets per account on the REST API (issue 13 item 4, R33).

A flood from one signed-in account is refused with 429 ``rate_limited`` and a ``Retry-After``
before its body is parsed; other accounts go on; reads, writes and costly writes have budgets
of their own; the audit chain gets one summary a minute, not a row per refusal. The server's
clock is replaced (``ApiLimits.clock``), so refilling a bucket costs no waiting.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from apiclient import Api, Clinic, Person, Reply
from harness import Server
from people import new_id_number
from sqlalchemy import select

from consult.models import AuditEvent
from web.api import api
from web.api.dispatch import API_LIMITS
from web.api.limits import COSTLY, READ, WRITE, ApiLimits, classes_of
from web.keys import DATABASE


class Clock:
    """The server's budget clock, moved by the test; starts where ``time.monotonic`` is, so
    the buckets the fixtures already used stay consistent."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _frozen(server: Server) -> Clock:
    clock = Clock()
    server.app[API_LIMITS].clock = clock
    return clock


async def _many(
    person: Person, count: int, method: str, path: str, body: Any = None
) -> list[Reply]:
    """``count`` calls, 20 at a time (a script's flood, without 600 sockets at once)."""
    replies: list[Reply] = []
    for start in range(0, count, 20):
        replies += await asyncio.gather(
            *(person.call(method, path, body) for _ in range(min(20, count - start)))
        )
    return replies


def _distinct_id_numbers() -> Iterator[str]:
    """Valid ID numbers of children born in 2020, never one twice (a repeat would be a number
    on file)."""
    seen: set[str] = set()
    while True:
        number = new_id_number(
            f"2020{secrets.randbelow(12) + 1:02d}{secrets.randbelow(28) + 1:02d}"
        )
        if number not in seen:
            seen.add(number)
            yield number


async def _summaries(server: Server) -> list[dict[str, Any]]:
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "api.rate_limited")
            .order_by(AuditEvent.seq)
        )
        return [
            {"actor_id": e.actor_id, "result": e.result, **json.loads(e.details or "{}")}
            for e in rows.all()
        ]


def test_every_route_spends_a_read_or_a_write_budget() -> None:
    """GETs are reads, the rest writes; uploads are costly; only sign-in is left to its own."""
    for op in api.operations:
        kinds = classes_of(op)
        if (op.method, op.path) == ("POST", "/session"):
            assert kinds == (), op.path
            continue
        assert kinds[0] == (READ if op.method == "GET" else WRITE), op.path
        if op.raw_body:
            assert COSTLY in kinds, op.path
    by_route = {(op.method, op.path): classes_of(op) for op in api.operations}
    assert by_route["POST", "/patients"] == (WRITE, COSTLY)
    assert by_route["POST", "/identity-disputes/{dispute_id}/resolve"] == (WRITE, COSTLY)
    assert by_route["GET", "/identity-disputes"] == (READ,)  # the read of a costly action
    assert by_route["POST", "/enrolment"] == (WRITE, COSTLY)
    assert by_route["POST", "/visits"] == (WRITE,)


def test_a_refused_costly_write_spends_nothing_of_the_write_budget() -> None:
    clock = Clock()
    limits = ApiLimits(clock)
    costly = (WRITE, COSTLY)
    assert all(limits.take("k", costly)[1] == 0 for _ in range(int(COSTLY.burst)))
    assert [limits.take("k", costly) for _ in range(500)] == [(COSTLY, 10.0)] * 500
    left = int(WRITE.burst - COSTLY.burst)
    assert all(limits.take("k", (WRITE,))[1] == 0 for _ in range(left))
    assert limits.take("k", (WRITE,)) == (WRITE, 1 / WRITE.rate)
    clock.advance(10.0)
    assert limits.take("k", costly) == (WRITE, 0.0)  # both refilled: one costly write goes


async def test_r33_a_write_flood_from_one_patient_is_refused_and_others_go_on(
    server: Server, clinic: Clinic
) -> None:
    flooder = await clinic.person("patient")
    neighbour = await clinic.person("patient")
    clock = _frozen(server)
    # an empty booking: 422 after the budget, so the flood writes nothing but its refusals
    replies = await _many(flooder, int(WRITE.burst), "POST", "/visits", {})
    assert {r.code for r in replies} == {"invalid_request"}, {r.code for r in replies}
    refused = await _many(flooder, 10, "POST", "/visits", {})
    assert {(r.status, r.code) for r in refused} == {(429, "rate_limited")}, refused
    assert {r.headers.get("Retry-After") for r in refused} == {"1"}  # 5 a second: the next in 0.2 s
    assert refused[0].body == {
        "error": {
            "code": "rate_limited",
            "message": "Too many requests; wait a moment and try again.",
        }
    }
    # before validation: a body that is not even JSON is refused alike, unread
    garbage = await flooder.call(
        "POST", "/visits", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (garbage.status, garbage.code) == (429, "rate_limited"), garbage

    # another account, and the flooder's own reads, are not affected
    other = await neighbour.call("POST", "/visits", {})
    assert (other.status, other.code) == (422, "invalid_request"), other
    me = await flooder.call("GET", "/me")
    assert me.status == 200, me

    # the bucket refills at WRITE.rate a second
    clock.advance(1.0)
    again = await _many(flooder, int(WRITE.rate) + 3, "POST", "/visits", {})
    assert [r.code for r in again] == ["invalid_request"] * int(WRITE.rate) + ["rate_limited"] * 3

    summaries = await _summaries(server)
    assert len(summaries) == 1, summaries  # 14 refusals within a minute: one row
    assert summaries[0]["actor_id"] == flooder.user_id
    assert summaries[0]["result"] == "denied"
    assert (summaries[0]["class"], summaries[0]["refused"]) == ("write", 1)


async def test_r33_reads_have_their_own_budget(server: Server, clinic: Clinic) -> None:
    reader = await clinic.person("patient")
    clock = _frozen(server)
    replies = await _many(reader, int(READ.burst), "GET", "/me")
    assert {r.status for r in replies} == {200}
    refused = await reader.call("GET", "/visits")
    assert (refused.status, refused.code) == (429, "rate_limited"), refused
    assert refused.headers.get("Retry-After") == "1"
    write = await reader.call("POST", "/visits", {})  # writes are another budget
    assert (write.status, write.code) == (422, "invalid_request"), write
    clock.advance(1.0)
    back = await _many(reader, int(READ.rate), "GET", "/me")
    assert {r.status for r in back} == {200}


async def test_r33_a_patient_registering_fifty_wards_is_stopped_an_operator_is_not(
    server: Server, clinic: Clinic
) -> None:
    """Registering a person costs staff work (a pending link, or a dispute): 30 at once, then
    one every 10 seconds; the audit chain gets one summary a minute with the count."""
    parent = await clinic.person("patient")
    operator = await clinic.person("operator")
    clock = _frozen(server)
    numbers = _distinct_id_numbers()
    own = await parent.ok("POST", "/patients", {"name": "李某", "id_number": new_id_number()})
    ward = {"name": "李小某", "guardian_id": own["id"], "guardian_relation": "parent"}
    codes = []
    for _ in range(49):
        reply = await parent.call("POST", "/patients", {**ward, "id_number": next(numbers)})
        codes.append(reply.code)
        if reply.code == "rate_limited":
            assert reply.headers.get("Retry-After") == "10", reply.headers
    assert codes.count(None) == int(COSTLY.burst) - 1, codes  # the 31st registration is refused
    assert set(codes[int(COSTLY.burst) - 1 :]) == {"rate_limited"}, codes

    # an operator at the desk in the same minute registers as before
    desk = await operator.call(
        "POST", "/patients", {"name": "赵六", "id_number": new_id_number("19900101")}
    )
    assert desk.status == 201, desk

    # one every 10 seconds; other writes go on meanwhile
    clock.advance(10.0)
    assert (
        await parent.call("POST", "/patients", {**ward, "id_number": next(numbers)})
    ).status == 201
    assert (await parent.call("POST", "/visits", {})).code == "invalid_request"

    assert [(s["class"], s["refused"]) for s in await _summaries(server)] == [("costly", 1)]
    clock.advance(61.0)  # a minute later: the next refusal writes the second summary
    for _ in range(6):  # 6 tokens came back in 61 s
        assert (
            await parent.call("POST", "/patients", {**ward, "id_number": next(numbers)})
        ).status == 201
    late = await parent.call("POST", "/patients", {**ward, "id_number": next(numbers)})
    assert late.code == "rate_limited", late
    summaries = await _summaries(server)
    refused_in_first_minute = codes.count("rate_limited")
    assert [(s["class"], s["refused"]) for s in summaries] == [
        ("costly", 1),
        ("costly", refused_in_first_minute),  # the 19 counted since, and this one
    ]
    assert {s["actor_id"] for s in summaries} == {parent.user_id}


async def test_r33_a_public_route_is_budgeted_per_address(server: Server, clinic: Clinic) -> None:
    """Redeeming enrolment links (public, Argon2, each wrong link audited): 30 at once from an
    address, then 429; another address goes on."""
    _frozen(server)
    guesser = Api(server.url)
    guesser.http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0), force_close=True)
    )
    body = {"token": "x" * 43, "new_password": "Correct-Horse-42-Battery"}
    try:
        codes = [
            (await guesser.call("POST", "/enrolment", body)).code
            for _ in range(int(COSTLY.burst) + 2)
        ]
    finally:
        await guesser.close()
    assert codes == ["enrolment_link_invalid"] * int(COSTLY.burst) + ["rate_limited"] * 2, codes
    elsewhere = await clinic.api.call("POST", "/enrolment", body)
    assert elsewhere.code == "enrolment_link_invalid", elsewhere
    (summary,) = await _summaries(server)
    assert summary["actor_id"] is None and summary["route"] == "redeem_enrolment_link"


async def test_r33_what_a_flood_refused_after_its_summary_is_written_later(
    server: Server, clinic: Clinic
) -> None:
    """A flood's first refusal is summarised at once; the rest, though the flood then stops,
    once its minute has passed (the server's periodic flush), so the chain's counts add up."""
    from consult.ratelimit import flush_summaries

    flooder = await clinic.person("patient")
    clock = _frozen(server)
    await _many(flooder, int(WRITE.burst), "POST", "/visits", {})
    refused = await _many(flooder, 25, "POST", "/visits", {})
    assert {r.code for r in refused} == {"rate_limited"}
    mine = [s for s in await _summaries(server) if s["actor_id"] == flooder.user_id]
    assert [s["refused"] for s in mine] == [1]
    await flush_summaries()  # within the minute: nothing yet
    assert len([s for s in await _summaries(server) if s["actor_id"] == flooder.user_id]) == 1
    clock.advance(61.0)
    assert await flush_summaries() >= 1
    mine = [s for s in await _summaries(server) if s["actor_id"] == flooder.user_id]
    assert [s["refused"] for s in mine] == [1, 24], mine
    assert sum(s["refused"] for s in mine) == len(refused)
