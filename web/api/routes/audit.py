"""The audit chain for auditors (R22, R24, R25): read events, verify the chain; for the
regulator, the signed checkpoints of the chain's head (R26)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from pydantic import Field

from consult import audit, audit_verify
from consult.checkpoints import read_checkpoints
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
    rows = await audit_verify.list_events(
        call.db, call.me, after_seq=query.after_seq, limit=query.limit
    )
    return EventList(events=[event_of(row) for row in rows])


@api.operation("GET", "/audit/verify", action="audit.verify", tag="audit")
async def verify_audit_chain(call: Call) -> Verification:
    """Recompute every digest and link; name the first broken event."""
    report = await audit_verify.verify_chain(call.db)
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


class CheckpointQuery(Input):
    after_n: int = Field(default=0, ge=0, le=2**62)
    limit: int = Field(default=1000, ge=1, le=5000)


class CheckpointExport(Output):
    key_id: str | None
    """SM3 of the signing key's DER SubjectPublicKeyInfo."""
    public_key: str | None
    """The SM2 public key (PEM) that signs the checkpoints."""
    checkpoints: list[dict[str, Any]]
    """The lines of the checkpoint file after ``after_n``, as written (``docs/checkpoints.md``)."""
    more: bool
    verified: bool
    """Every line verifies and the chain verifies against every checkpoint."""
    problems: list[dict[str, Any]]
    head_seq: int | None
    anchored_seq: int | None


def _lines(path: Any, after_n: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    lines: list[dict[str, Any]] = []
    more = False
    if not path.exists():
        return lines, more
    with open(path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
                n = int(record["body"]["n"])
            except (ValueError, KeyError, TypeError):
                continue  # the verification below names it
            if n <= after_n:
                continue
            if len(lines) == limit:
                more = True
                break
            lines.append(record)
    return lines, more


@api.operation("GET", "/exports/audit/checkpoints", action="export.audit", tag="audit")
async def export_checkpoints(call: Call, query: CheckpointQuery) -> CheckpointExport:
    """For the regulator: the signed checkpoints of the audit head, the key that signs them,
    and whether the chain still leads through every one of them (R22, R26; audited)."""
    public_key = call.config.public_key()
    loop = asyncio.get_running_loop()
    lines, more = await loop.run_in_executor(
        None, _lines, call.config.checkpoints, query.after_n, query.limit
    )
    problems: list[dict[str, Any]] = []
    anchors = []
    if public_key is not None:
        log = await loop.run_in_executor(
            None, read_checkpoints, call.config.checkpoints, public_key, call.config.tsa_roots()
        )
        problems += [p.describe() for p in log.problems]
        anchors = log.anchors()
    chain = await audit_verify.verify_chain(call.db, anchors=anchors)
    if not chain.ok:
        problems.append({"code": chain.problem, "seq": chain.broken_seq, "detail": chain.detail})
    await audit.append(
        call.db,
        "export.audit",
        actor=call.me,
        object_type="audit_chain",
        details={"checkpoints": len(lines), "verified": not problems},
    )
    return CheckpointExport(
        key_id=public_key.key_id if public_key else None,
        public_key=public_key.public_pem().decode() if public_key else None,
        checkpoints=lines,
        more=more,
        verified=not problems,
        problems=problems,
        head_seq=chain.head_seq,
        anchored_seq=chain.anchored_seq,
    )
