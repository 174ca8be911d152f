"""Signaling errors and the one boundary that turns any exception into a client-facing error."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from consult.errors import ConsultError
from media.errors import MediaError

logger = logging.getLogger(__name__)

#: Largest event payload accepted, serialized as JSON.
MAX_MESSAGE_BYTES = 64 * 1024


class SignalingError(Exception):
    """An error with a stable ``code`` that the client is told about."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad_request(message: str) -> SignalingError:
    return SignalingError("bad_request", message)


_MEDIA_CODES = {
    "bad_sdp": "bad_sdp",
    "invalid_state": "invalid_state",
    "closed": "invalid_state",
    "worker_lost": "media_unavailable",
    "server_busy": "server_busy",
}


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The ack for a failed event. Never carries a traceback."""
    if isinstance(exc, SignalingError):
        code, message = exc.code, exc.message
    elif isinstance(exc, MediaError):
        code, message = _MEDIA_CODES.get(exc.code, "invalid_state"), str(exc)
    elif isinstance(exc, ConsultError):
        code, message = exc.code, str(exc)
    else:
        incident = uuid.uuid4().hex[:12]
        logger.exception("internal error in a signaling event (incident %s)", incident)
        code, message = "internal_error", f"internal error (incident {incident})"
    return {"ok": False, "error": {"code": code, "message": message}}
