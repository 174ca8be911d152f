"""Reminders of remote consultation (issue 14, R11): made by the reminder task once each,
listed and marked read by their recipient, pushed on ``/updates``, and handed to the hospital's
SMS/WeChat gateway through a signed webhook.

The task runs here only when a test calls :meth:`web.reminders.ReminderTask.run_once` with the
moment to act at (``reminder_interval_s = 0``): no sleeping, no waiting for a real deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from apiclient import Clinic, Person
from consultation_world import World, two_institutions
from harness import Server, start_server
from peers import wait_for
from people import new_id_number
from sqlalchemy import func, select

from consult.consultations import flow
from consult.consultations.models import ConsultationInvitation
from consult.db import Database
from consult.models import Reminder
from consult.reminders import iso
from consult.sqltypes import utc_now
from web.keys import DATABASE, REMINDERS
from web.reminders import ReminderTask

KEY = ("subject_type", "subject_id", "kind", "recipient_id", "at")


@dataclass
class Gateway:
    """A local SMS/WeChat gateway: records each request, answers with the statuses queued."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/hook", gw.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield gw
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(tmp_path: Path, gateway: Gateway) -> AsyncIterator[Server]:
    """The server with its reminder task driven by the tests, and the webhook to ``gateway``
    (its key made in the data directory), three attempts per reminder."""
    srv = await start_server(
        tmp_path,
        reminder_interval_s=0,
        reminder_webhook_url=gateway.url,
        reminder_webhook_attempts=3,
    )
    try:
        yield srv
    finally:
        await srv.stop()


def _task(server: Server) -> ReminderTask:
    return server.app[REMINDERS]


async def _sent(w: World) -> str:
    draft = await w.doctor.ok("POST", "/consultations", w.request())
    await w.doctor.ok("POST", f"/consultations/{draft['id']}/submit")
    await w.down_centre.ok("POST", f"/consultations/{draft['id']}/approve")
    return str(draft["id"])


async def _invite(
    w: World, db: Database, cid: str, expert: Person
) -> tuple[str, datetime, datetime]:
    """Invite ``expert``; its invitation's id, creation and deadline."""
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    async with db.session() as session:
        row = await session.get(ConsultationInvitation, invitation["id"])
    assert row is not None
    return row.id, row.created_at, row.respond_by


async def _rows(db: Database) -> list[Reminder]:
    async with db.session() as session:
        return list((await session.scalars(select(Reminder).order_by(Reminder.kind))).all())


def _made(rows: list[Reminder]) -> set[tuple[str, str, str]]:
    return {(r.kind, r.subject_id, r.recipient_id) for r in rows}


async def _mine(person: Person) -> dict[str, Any]:
    return dict(await person.ok("GET", "/me/reminders"))


@pytest.fixture
async def world(server: Server) -> AsyncIterator[World]:
    c = await Clinic.open(server)
    try:
        yield await two_institutions(c, experts=2)
    finally:
        await c.close()


async def test_r11_an_unanswered_invitation_is_reminded_at_half_time_and_an_hour_before_once(
    server: Server, world: World, gateway: Gateway
) -> None:
    w = world
    expert = w.experts[0]
    task, db = _task(server), server.app[DATABASE]
    cid = await _sent(w)
    iid, created, deadline = await _invite(w, db, cid, expert)
    assert deadline - created == timedelta(hours=24)
    half = created + (deadline - created) / 2

    # not before: a second before half time, nothing
    assert (await task.run_once(half - timedelta(seconds=1))).made == 0
    assert await _rows(db) == []
    # at half time, the expert once; again, or in another process after a restart: nothing
    assert (await task.run_once(half)).made == 1
    assert (await task.run_once(half + timedelta(minutes=1))).made == 0
    restarted = ReminderTask(db, interval_s=0)
    try:
        assert (await restarted.run_once(half + timedelta(minutes=2))).made == 0
    finally:
        await restarted.close()
    assert _made(await _rows(db)) == {("invitation_due_half", iid, expert.user_id)}
    # an hour before the deadline (not a second earlier), once
    soon = deadline - timedelta(hours=1)
    assert (await task.run_once(soon - timedelta(seconds=1))).made == 0
    assert (await task.run_once(soon)).made == 1
    assert (await task.run_once(soon + timedelta(minutes=30))).made == 0

    # The expert's list, newest first; the unread count follows read marking.
    mine = await _mine(expert)
    assert [r["kind"] for r in mine["reminders"]] == ["invitation_due_soon", "invitation_due_half"]
    assert mine["unread"] == 2
    first = mine["reminders"][0]
    assert set(first) == {
        "id",
        "kind",
        "subject_type",
        "subject_id",
        "consultation_id",
        "at",
        "created_at",
        "read",
    }
    assert (first["subject_type"], first["subject_id"], first["consultation_id"]) == (
        "invitation",
        iid,
        cid,
    )
    assert datetime.fromisoformat(first["at"]) == deadline
    read = await expert.ok("POST", f"/me/reminders/{first['id']}/read")
    assert read["read"] is True
    assert (await expert.ok("POST", f"/me/reminders/{first['id']}/read"))["read"] is True
    mine = await _mine(expert)
    assert mine["unread"] == 1 and [r["read"] for r in mine["reminders"]] == [True, False]
    # nobody else's: listed to nobody else, and marking another's is not found
    assert await _mine(w.doctor) == {"reminders": [], "unread": 0}
    other = await w.doctor.call("POST", f"/me/reminders/{first['id']}/read")
    assert (other.status, other.code) == (404, "reminder_not_found"), other
    # admin, auditor, regulator have none (R34)
    refused = await w.clinic.admin.call("GET", "/me/reminders")
    assert refused.status == 403, refused

    # After the deadline: no "answer soon"; once expired, the inviter and both centres are told.
    late = deadline + timedelta(minutes=1)
    assert (await task.run_once(late)).made == 0
    assert await flow.expire_overdue(db, now=late) == 1
    assert (await task.run_once(late)).made == 3
    assert (await task.run_once(late + timedelta(minutes=1))).made == 0
    told = {r.recipient_id for r in await _rows(db) if r.kind == "invitation_expired"}
    assert told == {w.doctor.user_id, w.down_centre.user_id, w.up_centre.user_id}


async def test_r11_a_decline_is_told_to_the_inviter_and_both_centres_and_pushed_live(
    server: Server, world: World
) -> None:
    w = world
    expert = w.experts[0]
    cid = await _sent(w)
    iid, _created, _deadline = await _invite(w, server.app[DATABASE], cid, expert)
    pushed: dict[str, list[dict[str, Any]]] = {}
    sockets = []
    for person in (w.doctor, w.down_centre, w.up_centre, expert):
        pushed[person.user_id] = []
        client = socketio.AsyncClient(reconnection=False)
        client.on("reminder", pushed[person.user_id].append, namespace="/updates")
        await client.connect(
            server.url,
            namespaces=["/updates"],
            auth={"session": person.token},
            transports=["websocket"],
            wait_timeout=5,
        )
        sockets.append(client)
    try:
        await expert.ok("POST", f"/invitations/{iid}/decline", {"reason": "当日有手术"})
        assert (await _task(server).run_once()).made == 3
        told = (w.doctor, w.down_centre, w.up_centre)
        await wait_for(lambda: all(pushed[p.user_id] for p in told), timeout=10)
        for person in told:
            (push,) = pushed[person.user_id]
            assert push["kind"] == "invitation_declined"
            assert (push["subject_type"], push["subject_id"], push["consultation_id"]) == (
                "invitation",
                iid,
                cid,
            )
            (listed,) = (await _mine(person))["reminders"]
            assert listed["id"] == push["id"] and listed["at"] == push["at"]
        # the expert who declined is not told of its own answer; a second run pushes nothing
        assert (await _task(server).run_once()).made == 0
        await asyncio.sleep(0.3)  # asserting that nothing more arrives in this time
        assert pushed[expert.user_id] == []
        assert all(len(pushed[p.user_id]) == 1 for p in told)
    finally:
        for client in sockets:
            await client.disconnect()


async def test_r11_a_scheduled_session_reminds_every_party_24h_and_15min_before(
    server: Server, world: World
) -> None:
    w = world
    first, second = w.experts
    task, db = _task(server), server.app[DATABASE]
    patient = await w.clinic.person("patient", name="赵某")
    record = await w.nurse.ok(
        "POST",
        "/patients",
        {"name": "赵某", "id_number": new_id_number("19660512"), "user_id": patient.user_id},
    )
    draft = await w.doctor.ok("POST", "/consultations", w.request(patient_id=record["id"]))
    cid = str(draft["id"])
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    i1, _c, _d = await _invite(w, db, cid, first)
    i2, _c, _d = await _invite(w, db, cid, second)
    await first.ok("POST", f"/invitations/{i1}/accept")
    await second.ok("POST", f"/invitations/{i2}/decline", {"reason": "出差"})
    now = utc_now()
    await task.run_once(now)  # the answers told; what follows counts the session's only
    starts = (now + timedelta(days=3)).replace(microsecond=0)
    schedule = f"/consultations/{cid}/schedule"
    await w.doctor.ok("PUT", schedule, {"scheduled_at": starts.isoformat()})
    parties = {w.doctor.user_id, first.user_id, patient.user_id}  # not the expert who declined

    day = starts - timedelta(hours=24)
    assert (await task.run_once(day - timedelta(seconds=1))).made == 0
    assert (await task.run_once(day)).made == 3
    assert (await task.run_once(day + timedelta(hours=1))).made == 0
    quarter = starts - timedelta(minutes=15)
    assert (await task.run_once(quarter - timedelta(seconds=1))).made == 0
    assert (await task.run_once(quarter)).made == 3
    assert (await task.run_once(starts - timedelta(minutes=1))).made == 0
    assert (await task.run_once(starts)).made == 0
    rows = [r for r in await _rows(db) if r.subject_id == cid]
    assert {(r.kind, r.recipient_id) for r in rows} == {
        (kind, user_id) for kind in ("session_soon_24h", "session_soon_15m") for user_id in parties
    }
    assert all(r.at == starts for r in rows)
    (mine,) = (await _mine(patient))["reminders"][:1]
    assert mine["kind"] == "session_soon_15m" and mine["consultation_id"] == cid

    # Moved to 10 minutes from a moment never reminded: only the nearer reminder, once.
    moved = starts + timedelta(days=2)
    await w.up_centre.ok("PUT", schedule, {"scheduled_at": moved.isoformat()})
    assert (await task.run_once(moved - timedelta(minutes=10))).made == 3
    assert (await task.run_once(moved - timedelta(minutes=5))).made == 0
    kinds = {r.kind for r in await _rows(db) if r.subject_id == cid and r.at == moved}
    assert kinds == {"session_soon_15m"}


def _check_signature(server: Server, headers: dict[str, str], body: bytes) -> None:
    key = (server.config.data_dir / "reminder_webhook.key").read_text().strip()
    timestamp = headers["X-Teleconsult-Timestamp"]
    expected = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    assert headers["X-Teleconsult-Signature"] == "sha256=" + expected.hexdigest()
    assert abs(int(timestamp) - datetime.now().timestamp()) < 300


async def test_r11_the_webhook_is_signed_carries_no_patient_data_retries_and_gives_up(
    server: Server, world: World, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    first, second = w.experts
    task, db = _task(server), server.app[DATABASE]
    cid = await _sent(w)
    i1, created, deadline = await _invite(w, db, cid, first)
    half = created + (deadline - created) / 2

    # The first attempt meets a 500: kept pending, tried again after the backoff (30 s).
    gateway.statuses = [500]
    result = await task.run_once(half)
    assert (result.made, result.delivered, result.failed) == (1, 0, 1)
    (row,) = await _rows(db)
    assert (row.webhook_state, row.webhook_attempts, row.webhook_error) == (
        "pending",
        1,
        "http 500",
    )
    assert (await task.run_once(half + timedelta(seconds=29))).delivered == 0
    assert len(gateway.received) == 1
    assert (await task.run_once(half + timedelta(seconds=30))).delivered == 1
    assert len(gateway.received) == 2
    (row,) = await _rows(db)
    assert (row.webhook_state, row.webhook_attempts) == ("delivered", 2)
    assert (await task.run_once(half + timedelta(hours=1))).delivered == 0
    assert len(gateway.received) == 2  # delivered once: never again

    headers, body = gateway.received[1]
    _check_signature(server, headers, body)
    assert headers["X-Teleconsult-Delivery"] == row.id
    sent = json.loads(body)
    assert sent == {
        "type": "reminder",
        "id": row.id,
        "kind": "invitation_due_half",
        "subject_type": "invitation",
        "subject_id": i1,
        "consultation_id": cid,
        "recipient_id": first.user_id,
        "at": iso(deadline),
        "created_at": iso(half),
        "attempt": 2,
    }
    # exactly the fields above: no patient name, ID number or phone, no clinical text
    assert "赵" not in body.decode() and "胸痛" not in body.decode()

    # Always 500: three attempts (30 s, then 60 s apart), then given up; counted and logged.
    gateway.statuses = [500] * 10
    i2, created2, deadline2 = await _invite(w, db, cid, second)
    half2 = created2 + (deadline2 - created2) / 2
    caplog.set_level(logging.WARNING, logger="web.reminders")
    before = task.counters.given_up
    assert (await task.run_once(half2)).failed == 1
    assert (await task.run_once(half2 + timedelta(seconds=30))).failed == 1
    assert (await task.run_once(half2 + timedelta(seconds=89))).failed == 0
    last = await task.run_once(half2 + timedelta(seconds=90))
    assert (last.failed, last.given_up) == (1, 1)
    assert task.counters.given_up == before + 1
    assert (await task.run_once(half2 + timedelta(hours=2))).failed == 0
    (gone,) = [r for r in await _rows(db) if r.subject_id == i2]
    assert (gone.webhook_state, gone.webhook_attempts) == ("failed", 3)
    assert sum(1 for _h, b in gateway.received if json.loads(b)["subject_id"] == i2) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("given up" in m and gone.id in m for m in warnings), warnings
    assert not any("赵" in m for m in warnings)
    # the in-app reminder is there whatever the gateway did
    assert (await _mine(second))["unread"] == 1


async def test_r11_two_processes_at_once_make_each_reminder_once_on_postgresql(
    tmp_path: Path, pg_database_url: str
) -> None:
    """Two processes' tasks (two engines on one PostgreSQL database) run at the same moment:
    exactly one row per key, each made (and pushed) by one of them."""
    server = await start_server(tmp_path, database_url=pg_database_url, reminder_interval_s=0)
    clinic = await Clinic.open(server)
    other_db = Database(pg_database_url, field_key=server.config.field_secret())
    other = ReminderTask(other_db, interval_s=0)
    try:
        db = server.app[DATABASE]
        w = await two_institutions(clinic, experts=2)
        await other_db.start()
        cid = await _sent(w)
        declined, _c, _d = await _invite(w, db, cid, w.experts[0])
        await _invite(w, db, cid, w.experts[1])
        await w.experts[0].ok("POST", f"/invitations/{declined}/decline", {"reason": "出差"})
        now = utc_now() + timedelta(hours=12, minutes=1)
        results = await asyncio.gather(
            *(task.run_once(now) for task in (_task(server), other, _task(server), other))
        )
        rows = await _rows(server.app[DATABASE])
        keys = [tuple(getattr(r, k) for k in KEY) for r in rows]
        assert len(keys) == len(set(keys))
        # the declined invitation told to 3, the other one's half time to its expert
        assert len(rows) == 4
        assert sum(r.made for r in results) == 4
        async with server.app[DATABASE].session() as session:
            count = await session.scalar(select(func.count()).select_from(Reminder))
        assert count == 4
    finally:
        await other.close()
        await other_db.close()
        await clinic.close()
        await server.stop()
