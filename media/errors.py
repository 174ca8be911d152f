"""Errors of the media layer; signaling maps each ``code`` to its client-facing error."""

from __future__ import annotations


class MediaError(Exception):
    """Base of media-layer errors. ``code`` is stable; the message is for humans."""

    code = "media_error"


class ClosedError(MediaError):
    """An operation on a Router, Transport, Producer or Consumer that was closed."""

    code = "closed"


class BadSdp(MediaError):
    """A session description that does not parse or has no usable media section."""

    code = "bad_sdp"


class InvalidState(MediaError):
    """An operation that does not fit the current negotiation state."""

    code = "invalid_state"


class ServerBusy(MediaError):
    """The media worker is overloaded and takes no new room or participant for now."""

    code = "server_busy"
