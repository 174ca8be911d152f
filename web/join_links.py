"""Join links: the room page's address with its join token in the fragment (issue 13, R33).

A query string reaches access logs, proxies, ``Referer`` headers and the browser's history; a
fragment never leaves the browser, and the page removes it from the address bar once read
(``web/static/join-link.js``). The server refuses a token in a query string
(``web.transport``: ``token_in_query``), so a link in the old form fails clearly."""

from __future__ import annotations

from urllib.parse import urlencode


def room_link(
    token: str,
    *,
    visit_id: str | None = None,
    room_id: str | None = None,
    text_only: bool = False,
    base_url: str = "",
) -> str:
    """``/room?visit=..[&mode=text]#token=..`` (or ``?room=..`` for a room without a visit)."""
    query: dict[str, str] = {}
    if visit_id is not None:
        query["visit"] = visit_id
    if room_id is not None:
        query["room"] = room_id
    if text_only:
        query["mode"] = "text"  # R1: no camera, no microphone
    return f"{base_url.rstrip('/')}/room?{urlencode(query)}#{urlencode({'token': token})}"
