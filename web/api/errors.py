"""API errors and the one boundary that turns any failure into ``{"error": {code, message}}``.

A :class:`consult.errors.ConsultError` keeps its stable ``code``; its HTTP status comes from its
category (401 unauthenticated, 403 permission denied, 404 not found, 422 invalid input, 409
conflict or a rule of care). Errors of the edge itself (bad JSON, validation, missing
token) are :class:`ApiError`. Nothing else about an exception reaches a client: anything
unexpected is logged with an incident id and answered with ``internal_error``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

from aiohttp import web

from consult.error_table import ERRORS
from consult.errors import (
    Conflict,
    ConsultError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RuleRefused,
    Unauthenticated,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal at the HTTP edge: status, stable code and short English message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def unauthenticated(message: str = "Sign in first.") -> ApiError:
    return ApiError(401, "unauthenticated", message)


# A consult error's category decides its status; the few errors older than the categories are
# listed by code. Anything else a domain rule refuses is 409 Conflict.
_BY_CATEGORY: Final[tuple[tuple[type[ConsultError], int], ...]] = (
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (RuleRefused, 409),
)
_BY_CODE: Final[dict[str, int]] = {
    "token_missing": 401,
    "token_invalid": 401,
    "token_expired": 401,
    "not_a_participant": 403,
    "visit_not_found": 404,
}


def status_of(exc: ConsultError) -> int:
    """The HTTP status for a consult refusal: always 4xx, from the one table of error codes
    (``consult/error_table.py``); a code it lacks falls back to the error's category."""
    row = ERRORS.get(exc.code)
    if row is not None and 400 <= row.status < 500:
        return row.status
    for category, status in _BY_CATEGORY:
        if isinstance(exc, category):
            return status
    return _BY_CODE.get(exc.code, 409)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response(error_body(code, message), status=status)


# aiohttp's own HTTP errors (unknown route, wrong method, body too large) as stable codes.
_HTTP_CODES: Final[dict[int, tuple[str, str]]] = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send JSON (application/json)."),
}


class BodyTimeout(TimeoutError):
    """The request body did not arrive within ``body_timeout_s`` (``web.transport``).

    A ``TimeoutError``: aiohttp's lingering read after the answer (which meets it again on the
    same payload) treats it as the quiet end it is."""


def from_exception(exc: BaseException) -> web.Response:
    """The JSON error response for any exception raised while handling an API request."""
    if isinstance(exc, BodyTimeout):
        response = error_response(
            408, "request_timeout", "The request arrived too slowly; the connection was closed."
        )
        response.force_close()
        return response
    if isinstance(exc, ConnectionResetError):  # the client left mid-body: nobody to answer
        logger.info("client left mid-request")
        return error_response(400, "bad_request", "The request is malformed.")
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, ConsultError):
        response = error_response(status_of(exc), exc.code, exc.message)
        retry_after = getattr(exc, "retry_after_s", None)
        if isinstance(retry_after, int):
            response.headers["Retry-After"] = str(retry_after)
        return response
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        response = error_response(exc.status, code, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    incident = uuid.uuid4().hex[:12]
    logger.exception("internal error in an API request (incident %s)", incident)
    return error_response(500, "internal_error", f"Internal error (incident {incident}).")
