"""Framing for the channel between the main process and a media worker process.

Each message is a JSON object preceded by its length (4 bytes, big-endian). Requests carry
``id``, ``method`` and ``args``; replies carry the same ``id`` and ``result`` or ``error``
(``{code, message}``); events carry ``event``, ``room`` and ``data``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

#: Largest message either side accepts (SDP offers of big rooms stay far below).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a message of this channel."""


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {length} bytes")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ProtocolError("message is not an object")
    return message


def encode_message(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(body)} bytes")
    return _LENGTH.pack(len(body)) + body
