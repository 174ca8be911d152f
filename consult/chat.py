"""Text and image chat of a room (R1, R22, R23, R38): send, retract, read, images, export.

Each room has one dialogue (a visit's room, a consultation's). Who reads and who sends is the one
access policy (``consult.access``): the room's participants read it at any time; they send while
the room is open and they are admitted. A message carries its sender's room role.

Storage. Messages are only inserted, never updated or deleted (triggers refuse it): a
retraction is a new message pointing at the one it retracts. Each message gets the next number
of its room (``seq`` 1, 2, 3, ...): the number is taken inside the audit chain's transaction,
whose append lock (``consult.audit``) serialises every writer, across processes on PostgreSQL
too; the room's row is also locked, and a unique ``(room_id, seq)`` constraint guards both.
Texts are patient data: stored SM4-encrypted (R36) and never logged.

Audit. Every message (``room.chat``), every block by the sensitive-word filter (``room.chat``,
``refused``), every read of the history (``chat.read``), upload and view of an image and export
is an audit event. The chain never holds a text itself (its events are kept for years and must
not hold patient data): it holds ``text_mac``, the HMAC-SM3 of the text under the field key,
which binds the encrypted text kept beside it (in the message, or in the block's row for a
blocked original) to the chain.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consult import access, sensitive_words
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.chat_images import ProcessedImage, process
from consult.db import Database
from consult.errors import (
    ConsultError,
    ImageNotFound,
    MessageEmpty,
    MessageInvalidCharacters,
    MessageNotFound,
    MessageTooLong,
    RetractNotAllowed,
    RoomNotFound,
    SensitiveWordBlocked,
)
from consult.models import (
    AuditResult,
    ChatBlock,
    ChatImage,
    ChatKind,
    ChatMessage,
    Room,
    User,
    VisitState,
)
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS: Final = 2000
HISTORY_LIMIT: Final = 200
"""At most this many messages per history page; ask again after the last ``seq`` for more."""
EXPORT_LIMIT: Final = 20_000
_CLOSED: Final = frozenset({VisitState.ENDED, VisitState.REFERRED, VisitState.CANCELLED})
_ALLOWED_CONTROLS: Final = frozenset("\n\t")
_BIDI_CONTROLS: Final = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


# --- Views --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    """A message as the room's participants see it (no names: ids and roles only)."""

    id: str
    room_id: str
    seq: int
    sender_id: str
    sender_role: str
    kind: ChatKind
    text: str | None
    image_id: str | None
    retracts_id: str | None
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The JSON form sent to clients (``docs/chat.md``)."""
        return {
            "id": self.id,
            "room_id": self.room_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "sender_role": self.sender_role,
            "kind": self.kind.value,
            "text": self.text,
            "image_id": self.image_id,
            "retracts_id": self.retracts_id,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class BlockView:
    """A message the filter stopped (for the sender's notice and the recording; no text)."""

    id: str
    room_id: str
    sender_id: str
    sender_role: str
    word_count: int
    spans: tuple[tuple[int, int], ...]
    """Where the listed words sit in the original text (start, end), for the sender's page."""
    at: datetime


@dataclass(frozen=True)
class ImageView:
    """An image's description (its bytes are served apart, to participants only)."""

    id: str
    room_id: str
    uploader_id: str
    content_type: str
    width: int
    height: int
    size: int
    at: datetime


@dataclass(frozen=True)
class HistoryPage:
    """Messages after a ``seq``, in order, and whether more follow."""

    messages: list[MessageView]
    more: bool


@dataclass(frozen=True)
class ChatExport:
    """A room's whole dialogue for an export, with its images' thumbnails."""

    room_id: str
    exported_at: datetime
    messages: list[MessageView]
    images: list[ImageView]
    thumbnails: dict[str, tuple[str, bytes]]
    #: sender id -> display name, for a readable record (the participants' own export)
    names: dict[str, str]


class Blocked(SensitiveWordBlocked):
    """:class:`SensitiveWordBlocked` with the stored block, for signaling's hook and notice."""

    def __init__(self, block: BlockView) -> None:
        super().__init__()
        self.block = block


# --- Checks -------------------------------------------------------------------------------------


def clean_text(text: Any) -> str:
    """``text`` checked for sending: trimmed, at most :data:`MAX_TEXT_CHARS`, no control chars."""
    if not isinstance(text, str):
        raise MessageInvalidCharacters()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageInvalidCharacters() from None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise MessageEmpty()
    if len(text) > MAX_TEXT_CHARS:
        raise MessageTooLong()
    for char in text:
        if char in _BIDI_CONTROLS or (
            unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS
        ):
            raise MessageInvalidCharacters()
    return text


async def _load_room(
    tx: AuditTx, actor: Actor, room_id: str, action: str, *, sending: bool = False
) -> Room:
    """The room if the policy lets ``actor`` do ``action`` in it (to send: admitted, open)."""
    room = await tx.session.get(Room, room_id, with_for_update=sending)
    if room is None:
        raise RoomNotFound()
    await access.check(tx, actor, action, room)
    return room


def _room_role(actor: Actor) -> str:
    """As what the sender speaks: its room role (a join token's), else its account's role."""
    return actor.room_role or actor.role.value


def _text_context(message_id: str) -> str:
    return f"chat_messages.text/{message_id}"


def stored_text(db: Database, row: ChatMessage | ChatBlock) -> str | None:
    """The decrypted text of a stored message or block (for checks on the server itself)."""
    if row.text_enc is None:
        return None
    context = (
        _text_context(row.id) if isinstance(row, ChatMessage) else f"chat_blocks.text/{row.id}"
    )
    return db.cipher.decrypt(row.text_enc, context)


def _view(db: Database, row: ChatMessage) -> MessageView:
    text = None
    if row.text_enc is not None:
        text = db.cipher.decrypt(row.text_enc, _text_context(row.id))
    return MessageView(
        id=row.id,
        room_id=row.room_id,
        seq=row.seq,
        sender_id=row.sender_id,
        sender_role=row.sender_role,
        kind=ChatKind(row.kind),
        text=text,
        image_id=row.image_id,
        retracts_id=row.retracts_id,
        at=row.created_at,
    )


def _image_view(row: ChatImage) -> ImageView:
    return ImageView(
        id=row.id,
        room_id=row.room_id,
        uploader_id=row.uploader_id,
        content_type=row.content_type,
        width=row.width,
        height=row.height,
        size=row.size,
        at=row.created_at,
    )


def text_mac(db: Database, text: str) -> str:
    """The HMAC-SM3 of a text under the field key: what the audit chain holds of it."""
    return db.cipher.blind_index(text, "chat.text")


async def _next_seq(session: AsyncSession, room_id: str) -> int:
    last = await session.scalar(
        select(func.max(ChatMessage.seq)).where(ChatMessage.room_id == room_id)
    )
    return int(last or 0) + 1


async def _insert(
    tx: AuditTx,
    db: Database,
    actor: Actor,
    room: Room,
    kind: ChatKind,
    *,
    text: str | None = None,
    image_id: str | None = None,
    retracts_id: str | None = None,
) -> ChatMessage:
    assert actor.user_id is not None
    message_id = new_id()
    row = ChatMessage(
        id=message_id,
        room_id=room.id,
        seq=await _next_seq(tx.session, room.id),
        sender_id=actor.user_id,
        sender_role=_room_role(actor),
        kind=kind.value,
        text_enc=db.cipher.encrypt(text, _text_context(message_id)) if text is not None else None,
        image_id=image_id,
        retracts_id=retracts_id,
        created_at=utc_now(),
    )
    tx.session.add(row)
    await tx.session.flush()
    details: dict[str, Any] = {"message_id": row.id, "seq": row.seq, "kind": kind.value}
    if text is not None:
        details["text_mac"] = text_mac(db, text)
    if image_id is not None:
        details["image_id"] = image_id
    if retracts_id is not None:
        details["retracts_id"] = retracts_id
    await tx.record(
        "room.chat", actor=actor, object_type="room", object_id=room.id, details=details
    )
    return row


# --- Sending ------------------------------------------------------------------------------------


async def send_message(
    db: Database,
    actor: Actor,
    room_id: str,
    *,
    text: str | None = None,
    image_id: str | None = None,
) -> MessageView:
    """Send a text, or an image (uploaded before) with an optional caption, to the room.

    The text passes the sensitive-word filter (R38): a hit stores the original (encrypted) as a
    block, appends a ``refused`` ``room.chat`` event naming the block, and raises
    :class:`Blocked` (code ``sensitive_word``). Nothing is delivered then.
    """
    await authorize(db, actor, "room.chat", object_type="room", object_id=room_id)
    if text is None and image_id is None:
        raise MessageEmpty()
    if text is not None:
        text = clean_text(text)
    hits = (await sensitive_words.matcher(db)).find(text) if text is not None else []
    if hits:
        block = await _block(db, actor, room_id, text or "", hits)
        logger.info("chat message blocked", extra={"room_id": room_id, "block_id": block.id})
        raise Blocked(block)
    async with audited(db) as tx:
        room = await _load_room(tx, actor, room_id, "room.chat", sending=True)
        if image_id is not None:
            image = await tx.session.get(ChatImage, image_id)
            if image is None or image.room_id != room_id:
                raise ImageNotFound()
        kind = ChatKind.IMAGE if image_id is not None else ChatKind.TEXT
        row = await _insert(tx, db, actor, room, kind, text=text, image_id=image_id)
    return _view(db, row)


async def _block(
    db: Database, actor: Actor, room_id: str, text: str, hits: list[sensitive_words.Hit]
) -> BlockView:
    assert actor.user_id is not None
    word_ids = sorted({hit.word_id for hit in hits})
    async with audited(db) as tx:
        await _load_room(tx, actor, room_id, "room.chat", sending=True)
        block_id = new_id()
        row = ChatBlock(
            id=block_id,
            room_id=room_id,
            sender_id=actor.user_id,
            sender_role=_room_role(actor),
            text_enc=db.cipher.encrypt(text, f"chat_blocks.text/{block_id}"),
            word_ids=",".join(word_ids),
            created_at=utc_now(),
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "room.chat",
            actor=actor,
            object_type="room",
            object_id=room_id,
            result=AuditResult.REFUSED,
            details={
                "code": SensitiveWordBlocked.code,
                "block_id": block_id,
                "word_ids": word_ids[:8],
                "text_mac": text_mac(db, text),
            },
        )
    return BlockView(
        id=block_id,
        room_id=room_id,
        sender_id=actor.user_id,
        sender_role=_room_role(actor),
        word_count=len(word_ids),
        spans=tuple((hit.start, hit.end) for hit in hits),
        at=row.created_at,
    )


async def blocked_text(db: Database, block_id: str) -> str:
    """The original text of a blocked message (for an investigation on the server itself)."""
    async with db.session() as session:
        row = await session.get(ChatBlock, block_id)
    if row is None:
        raise MessageNotFound()
    return db.cipher.decrypt(row.text_enc, f"chat_blocks.text/{block_id}")


async def retract(db: Database, actor: Actor, room_id: str, message_id: str) -> MessageView:
    """Retract one's own message: a new ``retraction`` message pointing at it (never an edit)."""
    await authorize(db, actor, "room.chat", object_type="room", object_id=room_id)
    async with audited(db) as tx:
        room = await _load_room(tx, actor, room_id, "room.chat", sending=True)
        target = await tx.session.get(ChatMessage, message_id)
        if target is None or target.room_id != room_id:
            raise MessageNotFound()
        already = await tx.session.scalar(
            select(ChatMessage.id).where(ChatMessage.retracts_id == message_id)
        )
        if (
            target.sender_id != actor.user_id
            or target.kind == ChatKind.RETRACTION.value
            or already is not None
        ):
            raise tx.refuse(
                RetractNotAllowed(),
                actor=actor,
                action="room.chat",
                object_type="room",
                object_id=room_id,
                details={"message_id": message_id},
            )
        row = await _insert(tx, db, actor, room, ChatKind.RETRACTION, retracts_id=message_id)
    return _view(db, row)


# --- Reading ------------------------------------------------------------------------------------


async def history(
    db: Database,
    actor: Actor,
    room_id: str,
    *,
    after: int = 0,
    limit: int = HISTORY_LIMIT,
    action: str = "chat.read",
) -> HistoryPage:
    """The room's messages with ``seq > after``, in order, at most ``limit`` (audited read).

    ``action`` is the permission checked: ``chat.read`` over REST, ``room.chat`` from the room.
    """
    await authorize(db, actor, action, object_type="room", object_id=room_id)
    limit = max(1, min(int(limit), HISTORY_LIMIT))
    after = max(0, int(after))
    async with audited(db) as tx:
        await _load_room(tx, actor, room_id, "chat.read")
        rows = (
            await tx.session.scalars(
                select(ChatMessage)
                .where(ChatMessage.room_id == room_id, ChatMessage.seq > after)
                .order_by(ChatMessage.seq)
                .limit(limit + 1)
            )
        ).all()
        await tx.record(
            "chat.read",
            actor=actor,
            object_type="room",
            object_id=room_id,
            details={"after": after, "count": min(len(rows), limit)},
        )
    return HistoryPage([_view(db, row) for row in rows[:limit]], more=len(rows) > limit)


# --- Images -------------------------------------------------------------------------------------


async def upload_image(db: Database, actor: Actor, room_id: str, data: bytes) -> ImageView:
    """Check, clean and store an image for the room (``chat.upload_image``; audited).

    Refusals: ``image_type_unsupported``, ``image_too_large``, ``image_too_many_pixels``,
    ``image_unreadable`` (each audited as ``refused``), and the room's own checks.
    """
    await authorize(db, actor, "chat.upload_image", object_type="room", object_id=room_id)
    assert actor.user_id is not None
    async with audited(db) as tx:  # check the room before spending CPU on the image
        await _load_room(tx, actor, room_id, "chat.upload_image", sending=True)
    try:
        processed: ProcessedImage = await asyncio.to_thread(process, data)
    except ConsultError as exc:
        async with audited(db) as tx:
            await tx.record(
                "chat.upload_image",
                actor=actor,
                object_type="room",
                object_id=room_id,
                result=AuditResult.REFUSED,
                details={"code": exc.code, "bytes": len(data)},
            )
        raise
    image_id = new_id()
    async with audited(db) as tx:
        await _load_room(tx, actor, room_id, "chat.upload_image", sending=True)
        row = ChatImage(
            id=image_id,
            room_id=room_id,
            uploader_id=actor.user_id,
            content_type=processed.content_type,
            width=processed.width,
            height=processed.height,
            size=len(processed.data),
            data_enc=db.cipher.encrypt_bytes(processed.data, f"chat_images.data/{image_id}"),
            thumb_content_type=processed.thumb_content_type,
            thumb_enc=db.cipher.encrypt_bytes(processed.thumb, f"chat_images.thumb/{image_id}"),
            created_at=utc_now(),
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "chat.upload_image",
            actor=actor,
            object_type="chat_image",
            object_id=image_id,
            details={
                "room_id": room_id,
                "content_type": processed.content_type,
                "width": processed.width,
                "height": processed.height,
                "bytes": len(processed.data),
            },
        )
    return _image_view(row)


async def image_bytes(
    db: Database, actor: Actor, image_id: str, *, thumbnail: bool = False
) -> tuple[ImageView, str, bytes]:
    """An image (or its thumbnail) for a participant of its room (``chat.view_image``; audited).

    Anyone else is refused (``not_a_participant``) and the refusal is audited.
    """
    await authorize(db, actor, "chat.view_image", object_type="chat_image", object_id=image_id)
    async with audited(db) as tx:
        row = await tx.session.get(ChatImage, image_id)
        if row is None:
            raise ImageNotFound()
        room = await tx.session.get(Room, row.room_id)
        if room is None:
            raise ImageNotFound()
        participation = await access.participation_of(tx.session, room.id, actor.user_id)
        error = access.decide(actor, "chat.view_image", room, participation)
        if error is not None:  # audited on the image, whose trail it belongs to
            raise tx.refuse(
                error,
                actor=actor,
                action="chat.view_image",
                object_type="chat_image",
                object_id=image_id,
                details={"room_id": row.room_id},
            )
        await tx.record(
            "chat.view_image",
            actor=actor,
            object_type="chat_image",
            object_id=image_id,
            details={"room_id": row.room_id, "thumbnail": thumbnail},
        )
    if thumbnail:
        data = db.cipher.decrypt_bytes(row.thumb_enc, f"chat_images.thumb/{image_id}")
        return _image_view(row), row.thumb_content_type, data
    data = db.cipher.decrypt_bytes(row.data_enc, f"chat_images.data/{image_id}")
    return _image_view(row), row.content_type, data


# --- Export -------------------------------------------------------------------------------------


async def export(db: Database, actor: Actor, room_id: str, *, fmt: str) -> ChatExport:
    """The room's whole dialogue for its participants (``chat.export``; audited with ``fmt``)."""
    await authorize(db, actor, "chat.export", object_type="room", object_id=room_id)
    async with audited(db) as tx:
        await _load_room(tx, actor, room_id, "chat.export")
        rows = (
            await tx.session.scalars(
                select(ChatMessage)
                .where(ChatMessage.room_id == room_id)
                .order_by(ChatMessage.seq)
                .limit(EXPORT_LIMIT)
            )
        ).all()
        images = (
            await tx.session.scalars(
                select(ChatImage).where(ChatImage.room_id == room_id).order_by(ChatImage.id)
            )
        ).all()
        senders = {row.sender_id for row in rows}
        names: dict[str, str] = {}
        if senders:
            found = await tx.session.execute(
                select(User.id, User.display_name).where(User.id.in_(senders))
            )
            names = {user_id: name for user_id, name in found}
        await tx.record(
            "chat.export",
            actor=actor,
            object_type="room",
            object_id=room_id,
            details={"format": fmt, "messages": len(rows), "images": len(images)},
        )
    thumbnails = {
        image.id: (
            image.thumb_content_type,
            db.cipher.decrypt_bytes(image.thumb_enc, f"chat_images.thumb/{image.id}"),
        )
        for image in images
    }
    return ChatExport(
        room_id=room_id,
        exported_at=utc_now(),
        messages=[_view(db, row) for row in rows],
        images=[_image_view(image) for image in images],
        thumbnails=thumbnails,
        names=names,
    )
