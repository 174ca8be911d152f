"""Chat in the consult room: the ``chat``, ``chat_history`` and ``chat_retract`` events.

Protocol: ``docs/chat.md``. consult decides and stores (``consult.chat``: the filter, the
per-room numbering, encryption, the audit chain); this module parses the payloads, broadcasts a
stored message to the room (``chat_message``, sender included), and tells the recording hook.

The recording hook is an awaitable ``on_record(room_id, event, data)`` given to
:class:`ChatComponent`; it is called after a message (``"chat_message"``) or a block
(``"chat_blocked"``) is stored. ``data`` never holds a blocked text nor any patient identifier.
A failing hook is logged and never undoes nor delays the message's delivery to the room.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from consult import chat as consult_chat
from consult.db import Database

from .errors import bad_request
from .session import Session

logger = logging.getLogger(__name__)

RecordHook = Callable[[str, str, dict[str, Any]], Awaitable[None]]
Emit = Callable[[str, dict[str, Any], str], Coroutine[Any, Any, None]]
Handler = Callable[[Session, Any], Awaitable[dict[str, Any] | None]]

_ID: Final = re.compile(r"^[0-9a-f]{32}$")
MAX_AFTER: Final = 2**31 - 1


async def no_record(room_id: str, event: str, data: dict[str, Any]) -> None:
    """The default recording hook: does nothing."""


# --- Payloads -----------------------------------------------------------------------------------


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_request("the payload must be an object")
    return data


def _optional_id(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise bad_request(f"'{key}' must be an id (32 hex characters)")
    return value


def _int(d: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"'{key}' must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class ChatSend:
    """``chat``: a text, or an uploaded image with an optional caption."""

    text: str | None
    image_id: str | None

    @classmethod
    def parse(cls, data: Any) -> ChatSend:
        d = _object(data)
        text = d.get("text")
        if text is not None and not isinstance(text, str):
            raise bad_request("'text' must be a string")
        return cls(text=text, image_id=_optional_id(d, "image_id"))


@dataclass(frozen=True)
class ChatHistory:
    """``chat_history``: the messages after ``after`` (the last ``seq`` the client saw)."""

    after: int
    limit: int

    @classmethod
    def parse(cls, data: Any) -> ChatHistory:
        d = _object(data)
        return cls(
            after=_int(d, "after", 0, 0, MAX_AFTER),
            limit=_int(d, "limit", consult_chat.HISTORY_LIMIT, 1, consult_chat.HISTORY_LIMIT),
        )


@dataclass(frozen=True)
class ChatRetract:
    """``chat_retract``: retract one's own message."""

    message_id: str

    @classmethod
    def parse(cls, data: Any) -> ChatRetract:
        message_id = _optional_id(_object(data), "message_id")
        if message_id is None:
            raise bad_request("'message_id' is required")
        return cls(message_id=message_id)


# --- The component ------------------------------------------------------------------------------


class ChatComponent:
    """The chat events of the signaling server (each runs in the sender's queue)."""

    def __init__(self, db: Database, emit: Emit, on_record: RecordHook | None = None) -> None:
        self._db = db
        self._emit = emit
        self.on_record: RecordHook = on_record or no_record
        """The recording hook (settable, e.g. once the recording starts)."""

    def handlers(self) -> dict[str, Handler]:
        """Event name -> handler, for the server's table."""
        return {
            "chat": self.send,
            "chat_history": self.history,
            "chat_retract": self.retract,
        }

    async def send(self, session: Session, data: Any) -> dict[str, Any]:
        request = ChatSend.parse(data)
        room_id = session.room_id
        try:
            message = await consult_chat.send_message(
                self._db, session.actor, room_id, text=request.text, image_id=request.image_id
            )
        except consult_chat.Blocked as blocked:
            block = blocked.block
            await self._record(
                room_id,
                "chat_blocked",
                {
                    "block_id": block.id,
                    "sender_id": block.sender_id,
                    "sender_role": block.sender_role,
                    "word_count": block.word_count,
                    "at": block.at.isoformat(),
                },
            )
            raise
        await self._deliver(message)
        return {"message": message.as_dict()}

    async def retract(self, session: Session, data: Any) -> dict[str, Any]:
        request = ChatRetract.parse(data)
        message = await consult_chat.retract(
            self._db, session.actor, session.room_id, request.message_id
        )
        await self._deliver(message)
        return {"message": message.as_dict()}

    async def history(self, session: Session, data: Any) -> dict[str, Any]:
        request = ChatHistory.parse(data)
        page = await consult_chat.history(
            self._db,
            session.actor,
            session.room_id,
            after=request.after,
            limit=request.limit,
            action="room.chat",
        )
        last = page.messages[-1].seq if page.messages else request.after
        return {
            "messages": [message.as_dict() for message in page.messages],
            "more": page.more,
            "last_seq": last,
        }

    async def _deliver(self, message: consult_chat.MessageView) -> None:
        payload = message.as_dict()
        await self._emit("chat_message", payload, message.room_id)
        await self._record(
            message.room_id,
            "chat_message",
            {
                "id": message.id,
                "seq": message.seq,
                "sender_id": message.sender_id,
                "sender_role": message.sender_role,
                "kind": message.kind.value,
                "at": payload["at"],
                "text": message.text,
                "image_id": message.image_id,
                "retracts_id": message.retracts_id,
            },
        )

    async def _record(self, room_id: str, event: str, data: dict[str, Any]) -> None:
        try:
            await self.on_record(room_id, event, data)
        except Exception:  # the recording must never stop the chat
            logger.exception("chat record hook failed", extra={"room_id": room_id})


__all__ = ["ChatComponent", "RecordHook", "no_record"]
