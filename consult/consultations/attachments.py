"""A request's attachments: PDF, PNG or JPEG typed by their bytes, SM4-encrypted at rest, every
view audited (R24)."""

from __future__ import annotations

from typing import Final

from consult.access import INVITEE_SIDES, INVITER_SIDES
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.errors import AttachmentNotFound, AttachmentRefused
from consult.consultations.loading import load_consultation, refuse
from consult.consultations.machines import CONSULTATION_MACHINE
from consult.consultations.models import ConsultationAttachment
from consult.consultations.views import AttachmentView, attachment_view
from consult.crypto import sm3_hex
from consult.db import Database
from consult.sqltypes import utc_now

ATTACHMENT_MAX_BYTES: Final = 10 * 1024 * 1024
ATTACHMENT_TYPES: Final = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
_ATTACHMENT_CONTEXT: Final = "consultation_attachments.data"


async def add_attachment(
    db: Database,
    actor: Actor,
    consultation_id: str,
    *,
    filename: str,
    data: bytes,
) -> AttachmentView:
    """Attach a PDF, PNG or JPEG (typed by its bytes) to an open request, SM4-encrypted."""
    await authorize(db, actor, "consultation.attach", object_type="consultation")
    content_type = next(
        (t for magic, t in ATTACHMENT_TYPES.items() if data.startswith(magic)), None
    )
    if content_type is None or len(data) > ATTACHMENT_MAX_BYTES or not data:
        raise AttachmentRefused()
    name = "".join(ch for ch in filename if ch.isprintable() and ch not in "/\\")[:200] or "file"
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, "consultation.attach", INVITER_SIDES - {"inviter_centre"}
        )
        if loaded.row.closed_at is not None:
            raise refuse(
                tx,
                actor,
                CONSULTATION_MACHINE.closed_error(),
                "consultation.attach",
                consultation_id,
            )
        assert tx.db is not None
        row = ConsultationAttachment(
            consultation_id=consultation_id,
            uploaded_by=actor.user_id,
            filename=name,
            content_type=content_type,
            size=len(data),
            sm3=sm3_hex(data),
            data_enc=tx.db.cipher.encrypt_bytes(data, _ATTACHMENT_CONTEXT),
            created_at=utc_now(),
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "consultation.attach",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={"attachment_id": row.id, "sm3": row.sm3, "size": row.size},
        )
        return attachment_view(row)


async def get_attachment(
    db: Database, actor: Actor, consultation_id: str, attachment_id: str
) -> tuple[AttachmentView, bytes]:
    """An attachment's bytes for either side (the view is audited, R24)."""
    await authorize(db, actor, "consultation.view", object_type="consultation")
    async with audited(db) as tx:
        await load_consultation(
            tx,
            actor,
            consultation_id,
            "consultation.view",
            INVITER_SIDES | INVITEE_SIDES,
            lock=False,
        )
        row = await tx.session.get(ConsultationAttachment, attachment_id)
        if row is None or row.consultation_id != consultation_id or row.study_id is not None:
            raise AttachmentNotFound()  # an exam is opened in the viewer (``exams``)
        assert tx.db is not None
        data = tx.db.cipher.decrypt_bytes(row.data_enc, _ATTACHMENT_CONTEXT)
        await tx.record(
            "consultation.view_attachment",
            actor=actor,
            object_type="consultation",
            object_id=consultation_id,
            details={"attachment_id": attachment_id},
        )
        return attachment_view(row), data
