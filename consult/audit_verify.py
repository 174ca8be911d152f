"""Reading and verifying the audit chain (R22, R24, R25): :func:`verify_chain` recomputes every
digest and link and names the first broken event (against :class:`Anchor` s, the signed heads of
:mod:`consult.checkpoints`, a cut tail or a consistent rewrite too); :func:`list_events` and
:func:`verify_as` are the auditor's reads, themselves audited. How the chain is written, and what
each digest covers, is :mod:`consult.audit`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from consult.actor import Actor
from consult.audit import DIGEST_VERSION, append, event_digest
from consult.authorization import authorize
from consult.crypto import GENESIS_DIGEST
from consult.db import Database
from consult.models import AuditEvent, AuditResult

logger = logging.getLogger(__name__)

Problem = Literal["altered", "missing", "reordered", "bad_link", "truncated", "rewritten"]
"""Stable codes: the first four from the chain itself, the last two against an :class:`Anchor`."""


@dataclass(frozen=True)
class Anchor:
    """A head of the chain known from outside the database (a signed checkpoint)."""

    seq: int
    digest: str
    label: str
    """How to name it in a report, e.g. ``checkpoint 7 of 2026-12-01T21:40:00Z``."""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_chain`."""

    ok: bool
    checked: int
    """Events checked, including the broken one."""
    head_seq: int | None = None
    head_digest: str | None = None
    """The last good event: anchor these outside the database to detect a cut tail."""
    broken_seq: int | None = None
    broken_id: str | None = None
    problem: Problem | None = None
    detail: str = ""
    anchored_seq: int | None = None
    """The newest anchor the chain was checked against (None: no anchor was given)."""
    anchor_label: str | None = None

    def text(self) -> str:
        """A short, printable report (no personal data: events carry none)."""
        anchored = (
            f"; anchored at seq {self.anchored_seq} by {self.anchor_label}"
            if self.anchored_seq is not None
            else ""
        )
        if self.ok:
            if self.checked == 0:
                return "audit chain OK: no events" + anchored
            return (
                f"audit chain OK: {self.checked} events, head seq {self.head_seq} "
                f"digest {self.head_digest}{anchored}"
            )
        return (
            f"audit chain BROKEN at seq {self.broken_seq} (event {self.broken_id}): "
            f"{self.problem}: {self.detail}; {self.checked} events checked"
        )

    @property
    def exit_status(self) -> int:
        """0 when the chain verifies, 1 when it is broken."""
        return 0 if self.ok else 1


async def verify_chain(
    db: Database,
    *,
    batch_size: int = 1000,
    anchors: Sequence[Anchor] = (),
    start_seq: int = 1,
) -> VerifyReport:
    """Recompute every digest and link in ``seq`` order; report the first broken event.

    Per event, in this order: a gap in ``seq`` is ``missing``; a ``prev_digest`` that is not the
    previous event's digest is ``reordered`` when it is the digest of a later event (rows
    swapped), else ``bad_link`` (the previous event was altered and re-hashed, or events were
    removed and renumbered); a digest that does not match the event's own fields (``seq``
    included from version 2 on), or a digest version lower than the previous event's, is
    ``altered``.

    ``anchors`` are heads known from outside the database (signed checkpoints): the event at
    each anchor's ``seq`` must have its ``digest`` (else ``rewritten``: events before it were
    removed, edited or added and the chain recomputed), and the chain must reach the newest
    anchor (else ``truncated``: events were cut from its end). Without anchors a cut tail
    leaves a shorter valid chain.

    ``start_seq`` > 1 checks only the events from there on, taking the event before it as
    given: enough to show that those events are the ones the anchors signed (each digest covers
    the one before), at the cost of what follows them only.
    """
    newest = max(anchors, key=lambda anchor: anchor.seq) if anchors else None
    checked = 0
    prev_seq, prev_digest, prev_version = 0, GENESIS_DIGEST, 1
    if start_seq > 1:
        async with db.session() as session:
            before = await session.get(AuditEvent, start_seq - 1)
            if before is not None:
                prev_seq, prev_digest = before.seq, before.digest
                prev_version = before.digest_version or 1
    by_seq = {anchor.seq: anchor for anchor in anchors if anchor.seq > prev_seq}

    def broken(event: AuditEvent | None, kind: Problem, detail: str, seq: int) -> VerifyReport:
        logger.warning("audit chain broken at seq %s: %s", seq, kind)
        return VerifyReport(
            ok=False,
            checked=checked,
            head_seq=prev_seq or None,
            head_digest=prev_digest if prev_seq else None,
            broken_seq=seq,
            broken_id=event.id if event is not None else None,
            problem=kind,
            detail=detail,
            anchored_seq=newest.seq if newest else None,
            anchor_label=newest.label if newest else None,
        )

    async with db.session() as session:
        while True:
            rows = (await session.scalars(_events_after(prev_seq, batch_size))).all()
            if not rows:
                break
            for event in rows:
                checked += 1
                problem = await _check_event(session, event, prev_seq, prev_digest, prev_version)
                if problem is not None:
                    return broken(event, *problem, event.seq)
                anchor = by_seq.get(event.seq)
                if anchor is not None and anchor.digest != event.digest:
                    return broken(
                        event,
                        "rewritten",
                        f"the chain up to it no longer ends in the digest {anchor.label} "
                        "signed: events were removed, edited or added and the chain recomputed",
                        event.seq,
                    )
                prev_seq, prev_digest = event.seq, event.digest
                prev_version = event.digest_version or 1
            session.expunge_all()
    if newest is not None and prev_seq < newest.seq:
        cut = newest.seq - prev_seq
        return broken(
            None,
            "truncated",
            f"the chain ends at seq {prev_seq} but {newest.label} signed seq {newest.seq}: "
            f"at least {cut} event(s) were cut from its end",
            prev_seq + 1,
        )
    return VerifyReport(
        ok=True,
        checked=checked,
        head_seq=prev_seq or None,
        head_digest=prev_digest if prev_seq else None,
        anchored_seq=newest.seq if newest else None,
        anchor_label=newest.label if newest else None,
    )


def _events_after(seq: int, limit: int) -> Select[AuditEvent]:
    """The first ``limit`` events after ``seq``, in chain order."""
    return select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq).limit(limit)


async def _check_event(
    session: AsyncSession, event: AuditEvent, prev_seq: int, prev_digest: str, prev_version: int
) -> tuple[Problem, str] | None:
    if event.seq != prev_seq + 1:
        first, last = prev_seq + 1, event.seq - 1
        span = f"event {first}" if first == last else f"events {first}..{last}"
        return "missing", f"{span} missing before it"
    if event.prev_digest != prev_digest:
        later = await session.scalar(
            select(AuditEvent.seq).where(AuditEvent.digest == event.prev_digest)
        )
        if later is not None and later > event.seq:
            return "reordered", f"it follows event seq {later}, which is stored after it"
        return (
            "bad_link",
            f"it does not follow event seq {prev_seq}: that event was altered and re-hashed, "
            "or events were removed",
        )
    version = event.digest_version or 1
    if version < prev_version or version > DIGEST_VERSION:
        return "altered", f"its digest version {version} follows version {prev_version}"
    try:
        recomputed = event_digest(event.prev_digest, event)
    except (ValueError, TypeError) as exc:
        return "altered", f"fields cannot be read ({type(exc).__name__})"
    if recomputed != event.digest:
        return "altered", "its digest does not match its fields"
    return None


async def list_events(
    db: Database, actor: Actor, *, after_seq: int = 0, limit: int = 100
) -> list[AuditEvent]:
    """Events after ``after_seq`` in order, for an auditor (``audit.view``; the view is audited)."""
    await authorize(db, actor, "audit.view", object_type="audit_chain")
    limit = max(1, min(limit, 1000))
    async with db.session() as session:
        rows = (await session.scalars(_events_after(after_seq, limit))).all()
    await append(
        db,
        "audit.view",
        actor=actor,
        object_type="audit_chain",
        details={"after_seq": after_seq, "count": len(rows)},
    )
    return list(rows)


async def verify_as(db: Database, actor: Actor) -> VerifyReport:
    """:func:`verify_chain` for an auditor (``audit.verify``); the check itself is audited."""
    await authorize(db, actor, "audit.verify", object_type="audit_chain")
    report = await verify_chain(db)
    await append(
        db,
        "audit.verify",
        actor=actor,
        object_type="audit_chain",
        result=AuditResult.OK,
        details={
            "ok": report.ok,
            "checked": report.checked,
            "broken_seq": report.broken_seq,
            "problem": report.problem,
        },
    )
    return report


async def events_for(db: Database, object_id: str) -> list[AuditEvent]:
    """Every event about one object, in chain order (for tests and the regulator's export)."""
    async with db.session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == object_id).order_by(AuditEvent.seq)
        )
        return list(rows.all())
