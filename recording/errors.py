"""Errors of the recording package, each with a stable code."""

from __future__ import annotations


class RecordingError(Exception):
    code = "recording_error"


class NotFound(RecordingError):
    code = "recording_not_found"


class BadName(RecordingError):
    """A room or session name that is not a plain identifier (never a path)."""

    code = "bad_recording_name"


class RetentionError(RecordingError):
    """Removing a recording before its keep-until date."""

    code = "retention_not_reached"


class CompositeError(RecordingError):
    code = "composite_failed"
