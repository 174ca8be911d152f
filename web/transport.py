"""What the HTTP edge refuses before any handler runs (issue 13, R33).

- **Headers:** aiohttp closes a connection whose request has not fully arrived when its
  keep-alive timer fires (started at connection and after each response); the timer is
  :attr:`Config.header_timeout_s`, so a slowloris that trickles its headers is cut then.
- **Bodies:** a declared length over the application's limit is refused at once (413, nothing
  read); any other body must arrive within :attr:`Config.body_timeout_s`: then the handler's
  pending read raises and the answer is 408 ``request_timeout``, connection closed. The body is
  never read here (handlers and engine.io read it as a stream). Routes that stream large uploads
  themselves (DICOM STOW-RS) are skipped here and bounded by their own limits: a size, and
  at most ``body_timeout_s`` of silence between bytes (``web.api.routes.dicomweb.stow``).
- **No bearer in a query string:** a request whose query names a token (``token``,
  ``access_token``) is refused with 400 ``token_in_query`` before any handler runs, so a join
  link in the old ``/room?token=`` form fails clearly instead of leaking its token into logs
  and history (join links carry it in the fragment: ``web.join_links``). The socket.io
  handshake is left to the signaling server, whose refusal the client can read.
- **Security headers** on every response: a CSP without inline script (``frame-ancestors
  'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer`` (the room URL must never leak to another site). A response
  that sets its own CSP (a served file: stricter, sandboxed) keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any, Final

from aiohttp import web

from consult.error_table import ERRORS
from consult.tokens import QUERY_TOKEN_KEYS

from .api.errors import BodyTimeout, error_response
from .config import Config

logger = logging.getLogger(__name__)

PAGE_CSP: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""Scripts only from the server's own files (no inline script, no eval; WebAssembly for the
image codecs); styles may be inline (layout attributes), never scripts."""

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

SOCKETIO_PREFIX: Final = "/socket.io/"

#: Path prefixes whose handlers read (and bound) large bodies themselves.
STREAMED_PREFIXES: Final = ("/api/v1/dicomweb/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


LINGER_S: Final = 1.0
"""After refusing a body, read (and drop) what the client still sends for at most this long, so
it sees the answer; aiohttp's default of 10 s would hold a stalled client that much longer."""


def runner_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` / ``web.run_app``: the header timeout."""
    return {"keepalive_timeout": config.header_timeout_s, "lingering_time": LINGER_S}


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)


def _body_limits(body_timeout_s: float) -> Any:
    @web.middleware
    async def body_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.path.startswith(STREAMED_PREFIXES):
            return await handler(request)
        length = request.content_length
        if length is not None and length > request.client_max_size:
            return _refusal(413, "payload_too_large", "The request body is too large.")

        def cut() -> None:
            # the body is read by the handler (or engine.io) as a stream: a stalled one makes
            # its pending read raise, wherever it is
            if not request.content.is_eof():
                request.content.set_exception(BodyTimeout())

        timer = asyncio.get_running_loop().call_later(body_timeout_s, cut)
        try:
            return await handler(request)
        except BodyTimeout:
            logger.info("request body too slow: closed", extra={"path": request.path})
            return _refusal(
                408, "request_timeout", "The request arrived too slowly; the connection was closed."
            )
        finally:
            timer.cancel()

    return body_limits


@web.middleware
async def _no_query_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(SOCKETIO_PREFIX) or QUERY_TOKEN_KEYS.isdisjoint(request.query):
        return await handler(request)
    logger.info("token in a query string refused", extra={"path": request.path})
    if request.path.startswith("/api/"):
        return error_response(400, "token_in_query", "Send the token in a header, not the URL.")
    # a page opened from a link of the old form: say why, in both languages, without a script
    row = ERRORS["token_in_query"]
    page = (
        '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>链接无效</title>'
        f'<p id="error" data-code="{row.code}">{escape(row.zh)}</p>'
        f'<p lang="en">{escape(row.en)}</p></html>'
    )
    return web.Response(
        status=400, text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def _refusal(status: int, code: str, message: str) -> web.Response:
    response = error_response(status, code, message)
    response.force_close()
    return response


def setup_transport(app: web.Application, config: Config) -> None:
    app.middlewares.append(_no_query_tokens)
    app.middlewares.append(_body_limits(config.body_timeout_s))
    app.on_response_prepare.append(_security_headers)
