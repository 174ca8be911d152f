"""The room's chat over REST (issue 6): history, image upload and download, export.

Sending happens over signaling (``docs/chat.md``); these routes serve what a page cannot carry
over the socket (image bytes, with an upload progress bar) and what is read outside the room
(history, export). The room page authenticates with its join token (``web/api/auth.py``).

The chat is the room's (issue 11): ``/rooms/{room_id}/chat/...`` serves any room, a visit's or a
consultation's. ``/visits/{visit_id}/chat/...`` are the same routes addressed by the visit, for
pages and clients that hold only the visit's id; both reach the one policy through consult.chat.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from consult import chat, rooms
from consult.chat_images import MAX_IMAGE_BYTES
from consult.errors import VisitNotFound
from consult.models import ChatKind

from ...chat_export import render_html
from ..call import Call
from ..fields import Id, Input, Output
from ..registry import BinaryResponse, RawBody, api

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


class RoomPath(Input):
    room_id: Id


class VisitPath(Input):
    visit_id: Id


async def _room(call: Call, visit_id: str) -> str:
    """The id of the visit's room (its chat is keyed by it)."""
    room_id = await rooms.visit_room_id(call.db, visit_id)
    if room_id is None:
        raise VisitNotFound()
    return room_id


class ImagePath(Input):
    image_id: Id


class HistoryQuery(Input):
    after_seq: int = Field(default=0, ge=0, le=2**31 - 1, description="The last seq seen.")
    limit: int = Field(default=chat.HISTORY_LIMIT, ge=1, le=chat.HISTORY_LIMIT)


class Message(Output):
    id: str
    room_id: str
    seq: int = Field(description="1, 2, 3, ... within the room, without gaps.")
    sender_id: str
    sender_role: str
    kind: ChatKind
    text: str | None
    image_id: str | None
    retracts_id: str | None = Field(description="For a retraction: the message it retracts.")
    at: datetime = Field(description="Server time.")


class MessagePage(Output):
    messages: list[Message]
    more: bool = Field(description="More follow: ask again with after_seq = last_seq.")
    last_seq: int


class Image(Output):
    id: str
    room_id: str
    content_type: str
    width: int
    height: int
    size: int
    at: datetime


class ChatExport(Output):
    room_id: str
    exported_at: datetime
    messages: list[Message]
    images: list[Image]


def message_of(view: chat.MessageView) -> Message:
    return Message(
        id=view.id,
        room_id=view.room_id,
        seq=view.seq,
        sender_id=view.sender_id,
        sender_role=view.sender_role,
        kind=view.kind,
        text=view.text,
        image_id=view.image_id,
        retracts_id=view.retracts_id,
        at=view.at,
    )


def image_of(view: chat.ImageView) -> Image:
    return Image(
        id=view.id,
        room_id=view.room_id,
        content_type=view.content_type,
        width=view.width,
        height=view.height,
        size=view.size,
        at=view.at,
    )


@api.operation("GET", "/visits/{visit_id}/chat/messages", action="chat.read", tag="chat")
async def list_chat_messages(call: Call, path: VisitPath, query: HistoryQuery) -> MessagePage:
    """The room's messages after ``after_seq``, in order, a page at a time (the read is audited)."""
    return await _history(call, await _room(call, path.visit_id), query)


@api.operation(
    "POST",
    "/visits/{visit_id}/chat/images",
    action="chat.upload_image",
    tag="chat",
    status=201,
    max_body=MAX_IMAGE_BYTES,
)
async def upload_chat_image(call: Call, path: VisitPath, body: RawBody) -> Image:
    """Upload an image (JPEG, PNG or WebP, checked from its bytes), then send it with `chat`."""
    return image_of(
        await chat.upload_image(call.db, call.me, await _room(call, path.visit_id), body.data)
    )


@api.operation(
    "GET", "/chat/images/{image_id}", action="chat.view_image", tag="chat", produces=IMAGE_TYPES
)
async def get_chat_image(call: Call, path: ImagePath) -> BinaryResponse:
    """The image, for the participants of its room only (the view is audited)."""
    view, content_type, data = await chat.image_bytes(call.db, call.me, path.image_id)
    return BinaryResponse(data, content_type, f"{view.id}.{content_type.split('/')[1]}")


@api.operation(
    "GET",
    "/chat/images/{image_id}/thumbnail",
    action="chat.view_image",
    tag="chat",
    produces=("image/jpeg", "image/png"),
)
async def get_chat_thumbnail(call: Call, path: ImagePath) -> BinaryResponse:
    """The image's thumbnail (at most 320 pixels a side), for the room's participants only."""
    view, content_type, data = await chat.image_bytes(
        call.db, call.me, path.image_id, thumbnail=True
    )
    return BinaryResponse(data, content_type, f"{view.id}-thumb.{content_type.split('/')[1]}")


@api.operation("GET", "/visits/{visit_id}/chat/export", action="chat.export", tag="chat")
async def export_chat(call: Call, path: VisitPath) -> ChatExport:
    """The room's whole dialogue as JSON (R22, R23; the export is audited)."""
    return await _export_json(call, await _room(call, path.visit_id))


@api.operation(
    "GET",
    "/visits/{visit_id}/chat/export.html",
    action="chat.export",
    tag="chat",
    produces=("text/html",),
)
async def export_chat_html(call: Call, path: VisitPath) -> BinaryResponse:
    """The room's whole dialogue as a readable HTML page with thumbnails (audited)."""
    return await _export_html(call, await _room(call, path.visit_id))


async def _history(call: Call, room_id: str, query: HistoryQuery) -> MessagePage:
    page = await chat.history(call.db, call.me, room_id, after=query.after_seq, limit=query.limit)
    last = page.messages[-1].seq if page.messages else query.after_seq
    return MessagePage(
        messages=[message_of(m) for m in page.messages], more=page.more, last_seq=last
    )


async def _export_json(call: Call, room_id: str) -> ChatExport:
    result = await chat.export(call.db, call.me, room_id, fmt="json")
    return ChatExport(
        room_id=result.room_id,
        exported_at=result.exported_at,
        messages=[message_of(m) for m in result.messages],
        images=[image_of(i) for i in result.images],
    )


async def _export_html(call: Call, room_id: str) -> BinaryResponse:
    result = await chat.export(call.db, call.me, room_id, fmt="html")
    page = render_html(result)
    return BinaryResponse(
        page.encode(), "text/html; charset=utf-8", f"chat-{result.room_id}.html", attachment=True
    )


# --- Addressed by the room: any room (a visit's, a consultation's) ---------------------------


@api.operation("GET", "/rooms/{room_id}/chat/messages", action="chat.read", tag="chat")
async def list_room_chat_messages(call: Call, path: RoomPath, query: HistoryQuery) -> MessagePage:
    """The room's messages after ``after_seq``, in order, a page at a time (the read is audited)."""
    return await _history(call, path.room_id, query)


@api.operation(
    "POST",
    "/rooms/{room_id}/chat/images",
    action="chat.upload_image",
    tag="chat",
    status=201,
    max_body=MAX_IMAGE_BYTES,
)
async def upload_room_chat_image(call: Call, path: RoomPath, body: RawBody) -> Image:
    """Upload an image (JPEG, PNG or WebP, checked from its bytes), then send it with `chat`."""
    return image_of(await chat.upload_image(call.db, call.me, path.room_id, body.data))


@api.operation("GET", "/rooms/{room_id}/chat/export", action="chat.export", tag="chat")
async def export_room_chat(call: Call, path: RoomPath) -> ChatExport:
    """The room's whole dialogue as JSON (R22, R23; the export is audited)."""
    return await _export_json(call, path.room_id)


@api.operation(
    "GET",
    "/rooms/{room_id}/chat/export.html",
    action="chat.export",
    tag="chat",
    produces=("text/html",),
)
async def export_room_chat_html(call: Call, path: RoomPath) -> BinaryResponse:
    """The room's whole dialogue as a readable HTML page with thumbnails (audited)."""
    return await _export_html(call, path.room_id)
