"""Signing the opinion report (R27, R35): the practitioner's SM2 key and certificate, made at
its first signature; a co-signature after the signing PIN, over the report version in its
context (no patient identifiers, R37); the signed report exported for both sides (R15)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.errors import (
    AlreadySignedReport,
    ReportNotFound,
    ReportSigned,
    ReportUnsigned,
    SigningUnavailable,
)
from consult.consultations.exams import exam_view, is_diagnosis
from consult.consultations.loading import (
    REPORT_CONTEXT,
    TEXT_CONTEXTS,
    load_consultation,
    names_of,
    parties_of,
)
from consult.consultations.machines import REPORT_MACHINE, ReportEvent
from consult.consultations.models import (
    Consultation,
    ConsultationAttachment,
    OpinionReport,
    ReportSignature,
    ReportState,
    SigningCredential,
)
from consult.consultations.reports import get_report, require_reporting
from consult.consultations.signing import SigningAuthority, canonical, export_document
from consult.consultations.views import ReportView
from consult.crypto import sm3_hex
from consult.db import Database
from consult.models import Institution, Practitioner, User
from consult.practitioners import verify_signing_pin
from consult.sqltypes import utc_now

_KEY_CONTEXT: Final = "signing_credentials.key"


async def _document(session: Any, cipher: Any, report: OpinionReport) -> dict[str, Any]:
    """What the signers sign: the report version in its context (no patient identifiers, R37)."""
    consultation = await session.get(Consultation, report.consultation_id)
    inviter = await session.get(Institution, consultation.institution_id)
    invitee = await session.get(Institution, consultation.target_institution_id)
    content = json.loads(cipher.decrypt(report.content_enc, REPORT_CONTEXT))
    document: dict[str, Any] = {
        "type": "opinion_report",
        "consultation_id": consultation.id,
        "kind": consultation.kind,
        "report_id": report.id,
        "version": report.version,
        "supersedes_id": report.supersedes_id,
        "inviter_institution": {"id": inviter.id, "name": inviter.name},
        "invitee_institution": {"id": invitee.id, "name": invitee.name},
        "patient_ref": consultation.patient_id,
        "content": content,
        "content_sm3": report.content_digest,
    }
    if is_diagnosis(consultation.kind):
        document.update(await _diagnosis_part(session, consultation, report, inviter, invitee))
    return document


async def _diagnosis_part(
    session: Any, consultation: Consultation, report: OpinionReport, inviter: Any, invitee: Any
) -> dict[str, Any]:
    """A remote read's diagnostic report (R14, R19): the exams read and the joint liability.

    The performing side (the inviter institution and its requesting doctor, who did the exam)
    and the reading side (the invited institution; its reading experts are the signers, each
    named by its signature and certificate) share liability. The exams are those attached when
    this version was begun, so the signed bytes do not change under a later attachment."""
    names = await names_of(session, [consultation.requested_by])
    exams = (
        await session.scalars(
            select(ConsultationAttachment)
            .where(
                ConsultationAttachment.consultation_id == consultation.id,
                ConsultationAttachment.study_id.is_not(None),
                ConsultationAttachment.created_at <= report.created_at,
            )
            .order_by(ConsultationAttachment.created_at, ConsultationAttachment.id)
        )
    ).all()
    exam_rows = []
    for exam in exams:
        view = await exam_view(session, exam)
        assert view is not None
        exam_rows.append(
            {
                "attachment_id": exam.id,
                "modalities": view.modalities,
                "instances": view.instances,
                "instances_sm3": exam.sm3,
            }
        )
    return {
        "type": "diagnostic_report",
        "exams": exam_rows,
        "liability": {
            "shared": True,
            "basis": "R14: the inviter performs the exam, the invitee reads and reports; both"
            " sides share liability.",
            "performing": {
                "institution": {"id": inviter.id, "name": inviter.name},
                "requesting_doctor": {
                    "id": consultation.requested_by,
                    "name": names.get(consultation.requested_by, ""),
                },
            },
            "reading": {
                "institution": {"id": invitee.id, "name": invitee.name},
                "experts": "the signers of this document",
            },
        },
    }


async def _acceptance(
    session: Any, cipher: Any, report: OpinionReport, document: dict[str, Any]
) -> dict[str, Any] | None:
    """The inviter's decision on an issued version (its part of the joint liability, R13, R14):
    who, when, what, and the SM3 of the document it accepts. Recorded by the server (audited
    as ``consultation.decide``), not signed by the inviter."""
    consultation = await session.get(Consultation, report.consultation_id)
    if (
        consultation is None
        or consultation.decided_by is None
        or consultation.decision_enc is None
        or report.status != ReportState.ISSUED.value
    ):
        return None
    names = await names_of(session, [consultation.decided_by])
    inviter = await session.get(Institution, consultation.institution_id)
    return {
        "decided_by": {
            "id": consultation.decided_by,
            "name": names.get(consultation.decided_by, ""),
        },
        "institution": {"id": inviter.id, "name": inviter.name},
        "decided_at": consultation.decided_at.isoformat() if consultation.decided_at else None,
        "decision": cipher.decrypt(consultation.decision_enc, TEXT_CONTEXTS["decision"]),
        "accepts_document_sm3": sm3_hex(canonical(document)),
    }


async def _credential(
    db: Database, actor: Actor, authority: SigningAuthority, now: datetime
) -> tuple[Any, str]:
    """The practitioner's SM2 key and certificate, made and issued at the first signature."""
    from consult.trust import SM2Key

    async with db.session() as session:
        row = await session.get(SigningCredential, actor.user_id)
        user = await session.get(User, actor.user_id)
        practitioner = await session.get(Practitioner, actor.user_id)
    if row is not None:
        key = SM2Key.from_pem(db.cipher.decrypt(row.key_enc, _KEY_CONTEXT).encode())
        return key, row.certificate_pem
    assert user is not None and practitioner is not None
    key = await asyncio.to_thread(SM2Key.generate)
    certificate = authority.issue(
        key.public_pem(),
        common_name=user.display_name,
        serial=practitioner.licence_number,
        now=now,
    ).decode()
    async with audited(db) as tx:
        existing = await tx.session.get(SigningCredential, actor.user_id, with_for_update=True)
        if existing is not None:
            key = SM2Key.from_pem(db.cipher.decrypt(existing.key_enc, _KEY_CONTEXT).encode())
            return key, existing.certificate_pem
        tx.session.add(
            SigningCredential(
                user_id=actor.user_id,
                key_enc=db.cipher.encrypt(key.private_pem().decode(), _KEY_CONTEXT),
                certificate_pem=certificate,
                created_at=now,
            )
        )
        await tx.record(
            "opinion.issue_certificate",
            actor=actor,
            object_type="practitioner",
            object_id=actor.user_id,
            details={"key_id": key.key_id},
        )
    return key, certificate


async def sign_report(
    db: Database,
    actor: Actor,
    report_id: str,
    pin: str,
    authority: SigningAuthority | None,
    *,
    expected_digest: str | None = None,
) -> ReportView:
    """Co-sign a report version with SM2 after the signing PIN (R27, R35); the first signature
    freezes it. ``expected_digest`` (the content the signer saw) must match when given."""
    action = "opinion.sign"
    await authorize(db, actor, action, object_type="opinion", object_id=report_id)
    if authority is None:
        raise SigningUnavailable()
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id)
        if report is None:
            raise ReportNotFound()
        loaded = await load_consultation(
            tx, actor, report.consultation_id, action, frozenset({"expert"}), lock=False
        )
        require_reporting(tx, actor, loaded, action)
    await verify_signing_pin(db, actor, pin, purpose=f"opinion:{report_id}")
    now = utc_now()
    key, certificate = await _credential(db, actor, authority, now)
    async with db.session() as session:
        report = await session.get(OpinionReport, report_id)
        assert report is not None
        document = await _document(session, db.cipher, report)
    data = canonical(document)
    signature = await asyncio.to_thread(key.sign, data)
    stamp = await authority.tsa.stamp(signature) if authority.tsa is not None else None
    async with audited(db) as tx:
        report = await tx.session.get(OpinionReport, report_id, with_for_update=True)
        assert report is not None
        loaded = await load_consultation(
            tx, actor, report.consultation_id, action, frozenset({"expert"})
        )
        if expected_digest is not None and expected_digest != report.content_digest:
            raise tx.refuse(
                ReportSigned("The report changed since you read it."),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        if canonical(await _document(tx.session, db.cipher, report)) != data:
            raise tx.refuse(
                ReportSigned("The report changed while signing."),
                actor=actor,
                action=action,
                object_type="opinion",
                object_id=report_id,
            )
        done = await tx.session.scalar(
            select(ReportSignature.id).where(
                ReportSignature.report_id == report_id, ReportSignature.signer_id == actor.user_id
            )
        )
        if done is not None:
            raise AlreadySignedReport()
        await REPORT_MACHINE.set_state(
            tx,
            actor,
            report,
            ReportEvent.SIGN,
            {"document_sm3": sm3_hex(data)},
            parties=parties_of(loaded),
        )
        tx.session.add(
            ReportSignature(
                report_id=report_id,
                signer_id=actor.user_id,
                certificate_pem=certificate,
                signature_b64=base64.b64encode(signature).decode(),
                timestamp_b64=base64.b64encode(stamp).decode() if stamp else None,
                signed_at=now,
            )
        )
    return await get_report(db, actor, report_id, audit=False)


async def export_report(db: Database, actor: Actor, report_id: str) -> dict[str, Any]:
    """The signed report as machine-readable JSON (R15: both sides archive it)."""
    await get_report(db, actor, report_id)
    async with db.session() as session:
        report = await session.get(OpinionReport, report_id)
        assert report is not None
        document = await _document(session, db.cipher, report)
        rows = (
            await session.scalars(
                select(ReportSignature)
                .where(ReportSignature.report_id == report_id)
                .order_by(ReportSignature.signed_at, ReportSignature.id)
            )
        ).all()
        names = await names_of(session, [r.signer_id for r in rows])
        acceptance = await _acceptance(session, db.cipher, report, document)
    if not rows:
        raise ReportUnsigned()
    return export_document(
        document,
        [
            {
                "signer_id": r.signer_id,
                "signer_name": names.get(r.signer_id, ""),
                "signed_at": r.signed_at.isoformat(),
                "certificate": r.certificate_pem,
                "signature": r.signature_b64,
                "timestamp": r.timestamp_b64,
                "algorithm": "SM2-with-SM3",
            }
            for r in rows
        ],
        acceptance=acceptance,
    )
