"""The audit chain for auditors (R22, R24, R25): read events, verify the chain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field

from consult import audit
from consult.models import AuditEvent

from ..call import Call
from ..fields import Input, Output
from ..registry import api


class EventQuery(Input):
    after_seq: int = Field(default=0, ge=0, le=2**62)
    limit: int = Field(default=100, ge=1, le=1000)


class Event(Output):
    seq: int
    id: str
    at: datetime
    actor_id: str | None
    actor_role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    source_ip: str | None
    details: dict[str, Any]
    prev_digest: str
    digest: str


class EventList(Output):
    events: list[Event]


class Verification(Output):
    ok: bool
    checked: int
    head_seq: int | None
    head_digest: str | None
    broken_seq: int | None
    broken_id: str | None
    problem: str | None
    detail: str
    text: str


def event_of(row: AuditEvent) -> Event:
    return Event(
        seq=row.seq,
        id=row.id,
        at=row.at,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        result=row.result,
        source_ip=row.source_ip,
        details=json.loads(row.details),
        prev_digest=row.prev_digest,
        digest=row.digest,
    )


@api.operation("GET", "/audit/events", action="audit.view", tag="audit")
async def list_audit_events(call: Call, query: EventQuery) -> EventList:
    """Events after ``after_seq``, in chain order (the view itself is audited)."""
    rows = await audit.list_events(call.db, call.me, after_seq=query.after_seq, limit=query.limit)
    return EventList(events=[event_of(row) for row in rows])


@api.operation("GET", "/audit/verify", action="audit.verify", tag="audit")
async def verify_audit_chain(call: Call) -> Verification:
    """Recompute every digest and link; name the first broken event."""
    report = await audit.verify_chain(call.db)
    await audit.append(
        call.db,
        "audit.verify",
        actor=call.me,
        object_type="audit_chain",
        details={"ok": report.ok, "checked": report.checked},
    )
    return Verification(
        ok=report.ok,
        checked=report.checked,
        head_seq=report.head_seq,
        head_digest=report.head_digest,
        broken_seq=report.broken_seq,
        broken_id=report.broken_id,
        problem=report.problem,
        detail=report.detail,
        text=report.text(),
    )
