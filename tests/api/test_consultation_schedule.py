"""Scheduling a consultation's session against both sides' calendars (issue 14):
``PUT /api/v1/consultations/{id}/schedule``.

The requester or the invited centre sets the time; it must be in the future, and the requester
and every accepted expert must be free then: no other session of theirs within an hour, no slot
of their visit schedule. A refusal is audited; the time is on the consultation for both sides.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from consultation_world import World
from harness import Server
from sqlalchemy import select

from consult.models import AuditEvent, ScheduleSlot
from consult.sqltypes import utc_now
from web.keys import DATABASE


async def _accepted(w: World) -> str:
    """A request sent and accepted by the world's expert."""
    (expert,) = w.experts
    draft = await w.doctor.ok("POST", "/consultations", w.request())
    cid = str(draft["id"])
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    await expert.ok("POST", f"/invitations/{invitation['id']}/accept")
    return cid


async def _events(server: Server, cid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The consultation's ``consultation.schedule`` events: action, result, details."""
    async with server.app[DATABASE].session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_id == cid, AuditEvent.action == "consultation.schedule")
                .order_by(AuditEvent.seq)
            )
        ).all()
    return [(r.action, r.result, json.loads(r.details or "{}")) for r in rows]


async def test_a_session_is_scheduled_when_both_sides_are_free(
    server: Server, world: World
) -> None:
    w = world
    (expert,) = w.experts
    first, second = await _accepted(w), await _accepted(w)
    at = (utc_now() + timedelta(days=3)).replace(microsecond=0)

    # Only the requester and the invited centre schedule; never in the past.
    for who in (expert, w.down_centre):
        refused = await who.call(
            "PUT", f"/consultations/{first}/schedule", {"scheduled_at": at.isoformat()}
        )
        assert refused.status == 403, refused
    past = (utc_now() - timedelta(minutes=1)).isoformat()
    refused = await w.doctor.call("PUT", f"/consultations/{first}/schedule", {"scheduled_at": past})
    assert (refused.status, refused.code) == (422, "schedule_in_past"), refused
    body = await w.doctor.ok(
        "PUT", f"/consultations/{first}/schedule", {"scheduled_at": at.isoformat()}
    )
    assert body["scheduled_at"].replace("Z", "+00:00") == at.isoformat()
    seen = await w.up_centre.ok("GET", f"/consultations/{first}")
    assert seen["scheduled_at"] == body["scheduled_at"]
    action, result, details = (await _events(server, first))[-1]
    assert (action, result, details["scheduled_at"]) == (
        "consultation.schedule",
        "ok",
        at.isoformat(),
    )

    # The same requester and expert are busy within the hour of that session.
    clash = (at + timedelta(minutes=30)).isoformat()
    refused = await w.up_centre.call(
        "PUT", f"/consultations/{second}/schedule", {"scheduled_at": clash}
    )
    assert (refused.status, refused.code) == (409, "schedule_conflict"), refused
    action, result, details = (await _events(server, second))[-1]
    assert (action, result) == ("consultation.schedule", "refused")
    assert set(details["busy"]) == {w.doctor.user_id, expert.user_id}
    later = (at + timedelta(hours=1)).isoformat()
    await w.up_centre.ok("PUT", f"/consultations/{second}/schedule", {"scheduled_at": later})

    # A slot of the expert's visit schedule is its calendar too.
    slot_start = at + timedelta(days=1)
    async with server.app[DATABASE].session() as session, session.begin():
        session.add(
            ScheduleSlot(
                doctor_id=expert.user_id,
                starts_at=slot_start,
                ends_at=slot_start + timedelta(hours=2),
                capacity=4,
            )
        )
    inside = (slot_start + timedelta(minutes=90)).isoformat()
    refused = await w.doctor.call(
        "PUT", f"/consultations/{first}/schedule", {"scheduled_at": inside}
    )
    assert (refused.status, refused.code) == (409, "schedule_conflict"), refused
    # moving a session to a free time: its own old time is no conflict
    moved = (at - timedelta(minutes=20)).isoformat()
    await w.doctor.ok("PUT", f"/consultations/{first}/schedule", {"scheduled_at": moved})
