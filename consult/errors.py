"""Errors of the consult domain, each with a stable code for the client boundary.

The boundary (signaling/ or web/) maps a ``ConsultError`` to ``{"code": exc.code, "message":
exc.message}``; nothing else about the exception reaches a client.
"""

from __future__ import annotations


class ConsultError(Exception):
    """Base class: a refusal the client may be told about.

    ``code`` is stable and machine-readable; ``message`` is short English text for people.
    """

    code: str = "consult_error"
    default_message: str = "The request was refused."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.default_message)

    @property
    def message(self) -> str:
        """The human-readable text, the same as ``str(exc)``."""
        return str(self)


class TokenMissing(ConsultError):
    """No join token was presented."""

    code = "token_missing"
    default_message = "A join token is required."


class TokenInvalid(ConsultError):
    """The token is malformed, forged, signed with another key or carries wrong claims."""

    code = "token_invalid"
    default_message = "The join token is not valid."


class TokenExpired(ConsultError):
    """The token was valid but its expiry time has passed."""

    code = "token_expired"
    default_message = "The join token has expired."


class VisitNotFound(ConsultError):
    """No visit has the requested id."""

    code = "visit_not_found"
    default_message = "The visit does not exist."


class NotAParticipant(ConsultError):
    """The token's user is not this visit's doctor or patient in the claimed role."""

    code = "not_a_participant"
    default_message = "You are not a participant of this visit."
