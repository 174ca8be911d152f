"""The opinion report (R13, R24, R26): a draft the accepted experts write, frozen at its first
signature (:mod:`consult.consultations.report_signing`), replaced only by a new version, issued
to the inviter; who sees which version."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select

from consult.access import INVITEE_SIDES, INVITER_SIDES
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations.errors import ReportNotFound, ReportSigned, ReportUnsigned
from consult.consultations.exams import is_diagnosis
from consult.consultations.loading import (
    REPORT_CONTEXT,
    Loaded,
    has_accepted,
    load_consultation,
    move,
    names_of,
    parties_of,
)
from consult.consultations.machines import (
    CONSULTATION_MACHINE,
    REPORT_MACHINE,
    ConsultationEvent,
    ReportEvent,
)
from consult.consultations.models import (
    ConsultationState,
    OpinionReport,
    ReportSignature,
    ReportState,
)
from consult.consultations.signing import canonical
from consult.consultations.views import ReportView, SignatureView
from consult.crypto import sm3_hex
from consult.db import Database
from consult.errors import InvalidInput, InvalidTransition, PermissionDenied
from consult.sqltypes import utc_now

REPORT_FIELDS: Final = (
    "findings",
    "opinion",
    "treatment_plan",
    "medication_advice",
    "referral_advice",
)
"""The structured opinion report (R13, R16: diagnosis, plan, medication advice; R17 referral)."""
DIAGNOSIS_FIELDS: Final = ("examination", "findings", "opinion", "recommendation")
"""The diagnostic report of a remote read (R14, R19): the examination read, the findings, the
impression (diagnosis: ``opinion``) and the recommendation."""


def fields_of(kind: str) -> tuple[str, ...]:
    """The report's fields for a consultation of ``kind``."""
    return DIAGNOSIS_FIELDS if is_diagnosis(kind) else REPORT_FIELDS


def _clean_content(content: Mapping[str, str], kind: str) -> dict[str, str]:
    fields = fields_of(kind)
    known = set(REPORT_FIELDS) | set(DIAGNOSIS_FIELDS)
    unknown = set(content) - known
    if unknown:
        raise InvalidInput(f"Unknown report fields: {', '.join(sorted(unknown))}.")
    foreign = sorted(k for k in set(content) - set(fields) if str(content.get(k) or "").strip())
    if foreign:
        raise InvalidInput(f"Not fields of a {kind} report: {', '.join(foreign)}.")
    cleaned = {name: str(content.get(name, "") or "").strip() for name in fields}
    if not cleaned["opinion"]:
        raise InvalidInput("The diagnostic opinion is required.")
    return cleaned


async def reports_of(session: Any, consultation_id: str) -> list[OpinionReport]:
    """Every version of the consultation's report, oldest first."""
    return list(
        (
            await session.scalars(
                select(OpinionReport)
                .where(OpinionReport.consultation_id == consultation_id)
                .order_by(OpinionReport.version)
            )
        ).all()
    )


async def write_report(
    db: Database, actor: Actor, consultation_id: str, content: Mapping[str, str]
) -> ReportView:
    """Write the report: a new first version, or change the current draft. A signed version is
    never changed (R24: :func:`new_version`)."""
    action = "opinion.write"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(tx, actor, consultation_id, action, frozenset({"expert"}))
        require_reporting(tx, actor, loaded, action)
        cleaned = _clean_content(content, loaded.row.kind)
        reports = await reports_of(tx.session, consultation_id)
        current = reports[-1] if reports else None
        if current is not None and current.status != ReportState.DRAFT.value:
            raise tx.refuse(
                ReportSigned(),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=current.id,
            )
        if current is None:
            current = OpinionReport(
                consultation_id=consultation_id,
                version=1,
                status=ReportState.DRAFT.value,
                created_by=actor.user_id,
                created_at=utc_now(),
            )
            tx.session.add(current)
        _set_content(tx, current, cleaned)
        await tx.session.flush()
        await tx.record(
            action,
            actor=actor,
            object_type="opinion",
            object_id=current.id,
            details={"version": current.version, "digest": current.content_digest},
        )
        report_id = current.id
    return await get_report(db, actor, report_id, audit=False)


def _set_content(tx: AuditTx, report: OpinionReport, content: dict[str, str]) -> None:
    assert tx.db is not None
    text = json.dumps(content, sort_keys=True, ensure_ascii=False)
    report.content_enc = tx.db.cipher.encrypt(text, REPORT_CONTEXT)
    report.content_digest = sm3_hex(canonical(content))
    report.updated_at = utc_now()


def require_reporting(tx: AuditTx, actor: Actor, loaded: Loaded, action: str) -> None:
    """Refuse unless ``actor`` accepted its invitation and the consultation is open for the
    report (accepted, in session or reported)."""
    if not has_accepted(loaded, actor.user_id):
        raise tx.refuse(
            PermissionDenied("Only an expert who accepted writes and signs the report."),
            actor=actor,
            action=action,
            object_type="consultation",
            object_id=loaded.row.id,
        )
    if loaded.row.status not in {
        ConsultationState.ACCEPTED.value,
        ConsultationState.IN_SESSION.value,
        ConsultationState.REPORTED.value,
    }:
        error = CONSULTATION_MACHINE.closed_error() if loaded.row.closed_at else InvalidTransition()
        raise tx.refuse(
            error, actor=actor, action=action, object_type="consultation", object_id=loaded.row.id
        )


async def new_version(
    db: Database, actor: Actor, consultation_id: str, content: Mapping[str, str]
) -> ReportView:
    """A new draft version replacing a signed one; the old version stays, superseded (R24)."""
    action = "opinion.supersede"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(tx, actor, consultation_id, action, frozenset({"expert"}))
        require_reporting(tx, actor, loaded, action)
        cleaned = _clean_content(content, loaded.row.kind)
        reports = await reports_of(tx.session, consultation_id)
        if not reports or reports[-1].status == ReportState.DRAFT.value:
            raise tx.refuse(
                ReportUnsigned("The current version is a draft: change it instead."),
                actor=actor,
                action=action,
                object_type="consultation",
                object_id=consultation_id,
            )
        old = reports[-1]
        await REPORT_MACHINE.set_state(
            tx, actor, old, ReportEvent.SUPERSEDE, parties=parties_of(loaded)
        )
        report = OpinionReport(
            consultation_id=consultation_id,
            version=old.version + 1,
            supersedes_id=old.id,
            status=ReportState.DRAFT.value,
            created_by=actor.user_id,
            created_at=utc_now(),
        )
        _set_content(tx, report, cleaned)
        tx.session.add(report)
        await tx.session.flush()
        await tx.record(
            "opinion.write",
            actor=actor,
            object_type="opinion",
            object_id=report.id,
            details={
                "version": report.version,
                "supersedes": old.id,
                "digest": report.content_digest,
            },
        )
        report_id = report.id
    return await get_report(db, actor, report_id, audit=False)


async def issue_report(db: Database, actor: Actor, report_id: str) -> ReportView:
    """Issue a signed version to the inviter: the consultation moves to ``reported`` (R13)."""
    action = "opinion.issue"
    await authorize(db, actor, action, object_type="opinion", object_id=report_id)
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id, with_for_update=True)
        if report is None:
            raise ReportNotFound()
        loaded = await load_consultation(
            tx, actor, report.consultation_id, action, frozenset({"expert"})
        )
        require_reporting(tx, actor, loaded, action)
        if report.status == ReportState.DRAFT.value:
            raise tx.refuse(
                ReportUnsigned(),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        await REPORT_MACHINE.set_state(
            tx, actor, report, ReportEvent.ISSUE, parties=parties_of(loaded)
        )
        report.issued_at = utc_now()
        await move(
            tx,
            actor,
            loaded,
            ConsultationEvent.REPORT,
            {"report_id": report_id, "version": report.version},
        )
    return await get_report(db, actor, report_id, audit=False)


# --- Reading --------------------------------------------------------------------------------------


async def report_view(session: Any, cipher: Any, report: OpinionReport) -> ReportView:
    """The version with its content decrypted and its signatures named."""
    signatures = (
        await session.scalars(
            select(ReportSignature)
            .where(ReportSignature.report_id == report.id)
            .order_by(ReportSignature.signed_at, ReportSignature.id)
        )
    ).all()
    names = await names_of(session, [s.signer_id for s in signatures])
    return ReportView(
        id=report.id,
        consultation_id=report.consultation_id,
        version=report.version,
        state=ReportState(report.status),
        supersedes_id=report.supersedes_id,
        content=json.loads(cipher.decrypt(report.content_enc, REPORT_CONTEXT)),
        content_digest=report.content_digest,
        created_by=report.created_by,
        created_at=report.created_at,
        issued_at=report.issued_at,
        signatures=[
            SignatureView(
                s.signer_id, names.get(s.signer_id, ""), s.signed_at, s.timestamp_b64 is not None
            )
            for s in signatures
        ],
    )


async def get_report(
    db: Database, actor: Actor, report_id: str, *, audit: bool = True
) -> ReportView:
    """One report version: the experts see drafts; the inviter side sees issued versions."""
    await authorize(db, actor, "opinion.view", object_type="opinion", object_id=report_id)
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id)
        if report is None:
            raise ReportNotFound()
        loaded = await load_consultation(
            tx,
            actor,
            report.consultation_id,
            "opinion.view",
            INVITER_SIDES | INVITEE_SIDES,
            lock=False,
        )
        if not loaded.sides & INVITEE_SIDES and report.status not in {
            ReportState.ISSUED.value,
            ReportState.SUPERSEDED.value,
        }:
            raise ReportNotFound()
        assert tx.db is not None
        view = await report_view(tx.session, tx.db.cipher, report)
        if audit:
            await tx.record("opinion.view", actor=actor, object_type="opinion", object_id=report_id)
    return view
