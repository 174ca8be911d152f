"""Floods that the attacker's run sent, each beside a healthy client (issue 13 item 4, R33).

A patient hammering a route it may not use wrote 179 audit rows a second; 16 unauthenticated
sign-in workers moved a healthy client's p99 from 13 to 576 ms. Here the same floods run over
HTTP against the real server, from a process of their own (tests/http_flood_client.py: the
flooder's client work must not count as the server's, as it would on the test's event loop),
while a signed-in doctor keeps reading: the flood is refused with ``rate_limited``, the audit
chain grows by a bounded number of rows, and the doctor's round trip holds.

The bound (the acceptance of issue 13): the doctor's p99 while the flood is on is at most
``max(2 x its p99 before the flood, its p99 before + 50 ms)``. The floor: on a quiet machine the
baseline p99 is a few milliseconds, which any scheduler pause of the two shared cores doubles;
50 ms is still far below what a flood costs a server that does its expensive work for it
(a forbidden-route flood took the p99 from ~4 to 200-350 ms, a sign-in flood to 70-170 ms).
While other work shares the cores (load over 1 per core: the suite's other worker) the floor is
150 ms; bench/flood_latency.py gives the figures on a machine to itself.
The doctor sends at most one request every 15 ms: as many as fit while the flood lasts (at
least 40, at most 250), so the p99 is not one sample, and its baseline is 100 before the flood
and as many again after it. bench/flood_latency.py measures
the same side by side with the server in its own process. The mute and chat floods on the
socket are in tests/signaling/test_event_limits.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from apiclient import Clinic, Person
from harness import Server
from sqlalchemy import func, select

from consult import authorization, sessions
from consult.models import AuditEvent
from web.keys import DATABASE

FLOOD_CLIENT = Path(__file__).parent.parent / "http_flood_client.py"
BASELINE_SAMPLES = 100
MIN_FLOODED_SAMPLES = 40
MAX_SAMPLES = 250
"""The doctor's reads (at most 100 + 2 x 250) stay inside its read budget (a burst of 600)."""
EVERY_S = 0.015
"""At most one healthy request per 15 ms: a client, not a second flood."""
FLOOR_S = 0.05
#: Above this load per core other work shares the cores (the suite's other xdist worker runs
#: Chromium calls beside this test): its scheduling pauses, not the flood, then decide the p99
#: (seen: 37 -> 164 ms on the new code while a browser test ran). The floor is then this, still
#: under what a flood cost a server doing its expensive work for it (200-350 ms).
BUSY_LOAD_PER_CORE = 1.0
BUSY_FLOOR_S = 0.15


async def _round_trip(person: Person) -> float:
    started = time.perf_counter()
    reply = await person.call("GET", "/me")
    elapsed = time.perf_counter() - started
    assert reply.status == 200, reply
    return elapsed


async def _paced(person: Person, times: list[float]) -> None:
    began = time.monotonic()
    times.append(await _round_trip(person))
    await asyncio.sleep(max(0.0, began + EVERY_S - time.monotonic()))


def _p99(times: list[float]) -> float:
    return sorted(times)[max(0, round(0.99 * len(times)) - 1)]


async def _beside(healthy: Person, *flood: str) -> tuple[list[float], list[float], dict[str, int]]:
    """The healthy client's round trips beside ``http_flood_client.py *flood`` (while it runs)
    and around it (:data:`BASELINE_SAMPLES` before, as many as beside it after: the baseline
    spans the flood, so a machine that is busier for a while weighs on both alike), and the
    flood's answers (``{"STATUS CODE": count}``)."""
    baseline: list[float] = []
    while len(baseline) < BASELINE_SAMPLES:
        await _paced(healthy, baseline)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(FLOOD_CLIENT), *flood, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        ready = await asyncio.wait_for(process.stdout.readline(), 30)
        assert ready.strip() == b"ready", ready
        output = asyncio.ensure_future(process.stdout.read())
        during: list[float] = []
        while (not output.done() or len(during) < MIN_FLOODED_SAMPLES) and len(
            during
        ) < MAX_SAMPLES:
            await _paced(healthy, during)
        answers = json.loads((await asyncio.wait_for(output, 120)).decode().splitlines()[-1])
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    after = len(baseline) + len(during)
    while len(baseline) < after:
        await _paced(healthy, baseline)
    print(
        f"healthy p99 {_p99(baseline) * 1000:.1f} ms -> {_p99(during) * 1000:.1f} ms "
        f"(median {sorted(baseline)[len(baseline) // 2] * 1000:.1f} -> "
        f"{sorted(during)[len(during) // 2] * 1000:.1f} ms, worst {max(during) * 1000:.1f} ms; "
        f"{len(during)} reads beside the flood, {len(baseline)} around it)"
    )
    return baseline, during, answers


def _assert_healthy(baseline: list[float], during: list[float]) -> None:
    """The p99 bound of the module docstring."""
    base, flooded = _p99(baseline), _p99(during)
    floor = FLOOR_S
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > BUSY_LOAD_PER_CORE:
        floor = BUSY_FLOOR_S
        print(f"load {load:.1f} per core: the p99 floor is {floor * 1000:.0f} ms")
    assert flooded <= max(2 * base, base + floor), (base, flooded, load)


async def _audit_rows(server: Server, actor_id: str | None, action: str) -> list[AuditEvent]:
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.actor_id == actor_id)
            .order_by(AuditEvent.seq)
        )
        return list(rows.all())


async def _audit_count(server: Server) -> int:
    async with server.app[DATABASE].session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_r33_a_forbidden_route_flood_is_refused_and_bounded_in_the_audit(
    server: Server, clinic: Clinic
) -> None:
    """A patient asks for the audit chain (auditors only) for 2 s, 20 requests at a time, while
    a doctor reads: the first refusals are audited one row each, then the patient gets
    ``rate_limited`` and the chain one summary; the doctor's round trip holds."""
    flooder = await clinic.person("patient")
    doctor = await clinic.person("doctor")
    probe = await flooder.call("GET", "/audit/events")
    assert (probe.status, probe.code) == (403, "forbidden"), probe
    before = await _audit_count(server)

    started = time.monotonic()
    baseline, during, answers = await _beside(
        doctor, server.url, "forbidden", flooder.token, "20", "--seconds", "2"
    )
    elapsed = time.monotonic() - started

    assert set(answers) == {"403 forbidden", "429 rate_limited"}, answers
    denied = answers["403 forbidden"]
    # one row each for a burst, then about one a second (the probe above was the first)
    allowed = authorization.DENIALS_BURST + authorization.DENIALS_PER_S * elapsed + 1
    assert denied <= allowed, (denied, elapsed)
    grown = await _audit_count(server) - before
    assert grown <= allowed + 2, (grown, denied, elapsed)  # + the summary rows
    summaries = [
        json.loads(e.details or "{}")
        for e in await _audit_rows(server, flooder.user_id, "audit.denials_throttled")
    ]
    assert len(summaries) == 1, summaries  # within a minute: one summary row
    assert summaries[0]["action"] == "audit.view", summaries
    # the flooder's refusals are its own: the doctor is not refused, nor slowed
    assert (await doctor.call("GET", "/me")).status == 200
    _assert_healthy(baseline, during)


@pytest.mark.production_argon2
async def test_r33_a_sign_in_flood_from_sixteen_workers_leaves_a_healthy_client_its_speed(
    server: Server, clinic: Clinic
) -> None:
    """16 workers from one address send wrong passwords for real accounts and unknown names
    for 3 s, with passwords hashed at the production cost; a signed-in doctor keeps reading.
    After the address's first failures everything is ``rate_limited`` before any hash, and
    the chain gets a bounded number of rows."""
    victims = [await clinic.person("patient") for _ in range(4)]
    doctor = await clinic.person("doctor")
    before = await _audit_count(server)
    baseline, during, answers = await _beside(
        doctor,
        *(server.url, "sign_in", "127.0.0.3", "16", "--seconds", "3"),
        *(victim.username for victim in victims),
    )
    codes = {key.split()[1]: count for key, count in answers.items()}
    assert set(codes) <= {"invalid_credentials", "rate_limited"}, answers
    refused = codes.get("rate_limited", 0)
    checked = codes.get("invalid_credentials", 0)
    print(f"{refused + checked} sign-in tries: {checked} checked, {refused} rate_limited")
    # the address's allowance of failures, plus the tries already in flight when it ran out
    # (at most one per worker): then no more hashing
    assert checked <= sessions.ADDRESS_FAILURES + 16, checked
    # bounded audit growth: the checked failures and a summary, not a row per try
    grown = await _audit_count(server) - before
    assert grown <= checked + 4, (grown, checked, answers)
    # no victim was locked out by tries its attacker could not make
    for victim in victims:
        reply = await victim.sign_in()
        assert reply.status == 201, reply
    _assert_healthy(baseline, during)
