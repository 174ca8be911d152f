"""From an aiohttp request to a handler call and back: the order every route follows.

0. take one of the caller's in-flight slots (:func:`web.api.limits.admitted`: per bearer token,
   or per address, and per address), waiting for it -> 429 ``rate_limited`` when too many wait;
   a token that authenticated a moment ago, whose account's budget is spent or whose refusals
   are throttled, is refused here -> 429, before any database work;
1. authenticate the bearer token (public routes skip this) -> 401;
   spend the caller's request budget (:mod:`web.api.limits`: per account, or per address on a
   public route) -> 429 ``rate_limited``, so a flood costs neither a permission check nor body
   parsing;
2. check the route's permission-table action through consult (a refusal is audited) -> 403;
3. validate the path, the query and the JSON body with the route's pydantic models -> 400/404/422;
4. call the handler, which calls one consult service;
5. serialise its pydantic result (or 204).

Authorisation comes before validation, so that a refused caller learns nothing about the input
the route expects, and every refusal is recorded whatever the body looks like.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ValidationError

from consult.authorization import refuse_if_throttled

from . import auth
from .call import Call
from .errors import ApiError
from .limits import API_LIMITS, ApiLimits, admitted, spend
from .registry import BinaryResponse, Operation, RawBody

MAX_ERRORS_SHOWN: Final = 5

AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def aiohttp_handler(op: Operation) -> AiohttpHandler:
    """The aiohttp handler of one operation."""

    async def handle(request: web.Request) -> web.StreamResponse:
        call = Call.of(request)
        limits = request.app[API_LIMITS]
        async with admitted(limits, call, op.operation_id):
            await _admit(limits, call)
            return await _run(request, call)

    async def _admit(limits: ApiLimits, call: Call) -> None:
        """Authenticate, spend the budget and check the permission, refusing cheaply first."""
        if op.public:
            await spend(limits, call, op)
            return
        assert op.action is not None
        known = limits.known(call.bearer)
        if known is not None:  # refused now if it would be after the database work
            call.actor = known
            await spend(limits, call, op)
            await refuse_if_throttled(call.db, known, op.action)
            call.actor = None
        await auth.authenticate(call, op.action)
        limits.remember(call.bearer, call.actor)
        if known is None or call.me.user_id != known.user_id:
            await spend(limits, call, op)
        await auth.authorize(call, op.action)

    async def _run(request: web.Request, call: Call) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        if op.path_params is not None:
            kwargs["path"] = _validate_path(op.path_params, request)
        if op.query is not None:
            kwargs["query"] = _validate_query(op.query, request)
        if op.body is not None:
            kwargs["body"] = await _validate_body(op.body, request)
        elif op.raw_body:
            kwargs["body"] = await _read_raw(op, request)
        result = await op.handler(call, **kwargs)
        if op.produces:
            if not isinstance(result, BinaryResponse):
                raise TypeError(f"{op.operation_id} returned {type(result).__name__}")
            return await _binary(request, result)
        if op.response is None:
            return web.Response(status=204)
        if not isinstance(result, op.response):
            raise TypeError(f"{op.operation_id} returned {type(result).__name__}")
        return web.json_response(result.model_dump(mode="json"), status=op.status)

    handle.__name__ = op.operation_id
    return handle


def _describe(exc: ValidationError) -> str:
    """Where and what, never the value: inputs may carry personal data."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - MAX_ERRORS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _validate_path(model: type[BaseModel], request: web.Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.match_info))
    except ValidationError:
        # An id that cannot exist does not exist.
        raise ApiError(404, "not_found", "No such resource.") from None


def _validate_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    values: dict[str, str] = {}
    for key in request.query:
        got = request.query.getall(key)
        if len(got) > 1:
            raise ApiError(422, "invalid_request", f"query: {key!r} is given more than once")
        values[key] = got[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", _describe(exc)) from None


async def _validate_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send a JSON body (application/json).")
    raw = await request.read()
    if not raw:
        raise ApiError(400, "bad_json", "The request body is empty.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "bad_json", "The request body is not valid JSON.") from None
        raise ApiError(422, "invalid_request", _describe(exc)) from None


async def _read_raw(op: Operation, request: web.Request) -> RawBody:
    """The body as bytes, refused past ``op.max_body`` (413) before it is all read."""
    declared = request.content_length
    if declared is not None and declared > op.max_body:
        raise ApiError(413, "payload_too_large", f"The body is over {op.max_body} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > op.max_body:
            raise ApiError(413, "payload_too_large", f"The body is over {op.max_body} bytes.")
        chunks.append(chunk)
    if not size:
        raise ApiError(400, "empty_body", "The request body is empty.")
    return RawBody(b"".join(chunks), request.content_type)


#: What a served file may do in a browser: nothing but show itself (and inline images).
_FILE_CSP: Final = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


async def _binary(request: web.Request, result: BinaryResponse) -> web.StreamResponse:
    disposition = "attachment" if result.attachment else "inline"
    safe_name = "".join(c for c in result.filename if c.isalnum() or c in "._-") or "file"
    headers = {
        "Content-Type": result.content_type,
        "Content-Disposition": f'{disposition}; filename="{safe_name}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _FILE_CSP,
        "Cache-Control": "no-store",
    }
    if result.opener is not None:  # encrypted at rest: decrypted as it is sent, Range too
        return await _stream_plain(request, result, headers)
    if result.path is not None:  # streamed from disk, with Range support (video seeking)
        return web.FileResponse(result.path, headers=headers)
    return web.Response(body=result.content, headers=headers)


_STREAM_CHUNK: Final = 256 * 1024


async def _stream_plain(
    request: web.Request, result: BinaryResponse, headers: dict[str, str]
) -> web.StreamResponse:
    """Send the plain bytes of ``result.opener()``, whole or one ``Range`` (RFC 9110 14.2)."""
    assert result.opener is not None
    size = result.size
    start, stop, status = 0, size, 200
    try:
        wanted = request.http_range
    except ValueError:
        wanted = slice(None, None)
    if request.headers.get("Range") and (wanted.start is not None or wanted.stop is not None):
        start = wanted.start if wanted.start is not None else 0
        stop = wanted.stop if wanted.stop is not None else size
        if start < 0:  # a suffix range: the last -start bytes
            start, stop = max(0, size + start), size
        stop = min(stop, size)
        if start >= stop:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = stop - start
    await response.prepare(request)
    stream = await asyncio.to_thread(result.opener)
    try:
        await asyncio.to_thread(stream.seek, start)
        left = stop - start
        while left > 0:
            chunk = await asyncio.to_thread(stream.read, min(_STREAM_CHUNK, left))
            if not chunk:
                break
            await response.write(chunk)
            left -= len(chunk)
    finally:
        await asyncio.to_thread(stream.close)
    await response.write_eof()
    return response
