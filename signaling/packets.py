"""socket.io packets parsed with a bounded nesting depth (issue 13, hostile input).

python-socketio hands each packet's JSON to ``json.loads``; a 10,000-deep ``[[[[...`` raises
``RecursionError`` inside the library, before authentication, and each one logged a traceback.
Here the depth is measured first, without recursion (strings skipped), and a packet deeper than
:data:`MAX_DEPTH`, or one that is not JSON at all, becomes the event :data:`MALFORMED` (a
``CONNECT`` carrying it has no usable auth and is refused as such), which the server answers
with one ``bad_request`` error and a rate-limited warning: never a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from engineio import json as engineio_json
from socketio import packet

MAX_DEPTH: Final = 32
MALFORMED: Final = "malformed_packet"
_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of JSON text, counted without recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # cannot be too deep: skip the scan
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


class _BoundedJson:
    """The ``json`` that :class:`BoundedPacket` parses with."""

    @staticmethod
    def dumps(*args: Any, **kwargs: Any) -> str:
        return engineio_json.dumps(*args, **kwargs)

    @staticmethod
    def loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if nesting_depth(text) > MAX_DEPTH:
            return [MALFORMED]
        try:
            return json.loads(text, *args, **kwargs)
        except (ValueError, RecursionError):
            return [MALFORMED]


class BoundedPacket(packet.Packet):
    """A socket.io packet whose JSON is bounded in depth (``AsyncServer(serializer=...)``)."""

    json = _BoundedJson
