"""Client messages, validated once at the edge into frozen dataclasses (docs/signaling.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from .errors import MAX_MESSAGE_BYTES, SignalingError, bad_request


def check_size(data: Any) -> None:
    """Refuse payloads over :data:`MAX_MESSAGE_BYTES` (and anything JSON cannot carry)."""
    try:
        size = len(json.dumps(data, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise bad_request("the payload is not JSON") from None
    if size > MAX_MESSAGE_BYTES:
        raise SignalingError(
            "message_too_large", f"the payload is {size} bytes, over {MAX_MESSAGE_BYTES}"
        )


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_request("the payload must be an object")
    return data


def _string(data: dict[str, Any], key: str, max_len: int = MAX_MESSAGE_BYTES) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise bad_request(f"'{key}' must be a non-empty string")
    return value


@dataclass(frozen=True)
class Join:
    """``join``: the room the token is for, named by its id (``room``) or, for a visit's room,
    by the visit's id (``visit``, as the room page's link has it). At least one.

    ``resume``: the ``resume_key`` of this page's previous join ack, sent by a page whose
    socket dropped while its media went on (docs/providers.md, "Signaling survives too"): the
    new socket takes over the participant's connections instead of making new ones."""

    room: str | None
    visit: str | None
    resume: str | None = None

    @classmethod
    def parse(cls, data: Any) -> Join:
        d = _object(data)
        room = _string(d, "room", 128) if "room" in d else None
        visit = _string(d, "visit", 128) if "visit" in d or room is None else None
        resume = _string(d, "resume", 64) if d.get("resume") is not None else None
        return cls(room=room, visit=visit, resume=resume)


@dataclass(frozen=True)
class Publish:
    sdp: str
    path: int | None = None  # a connection on one provider's path (0 or 1): the hot standby

    @classmethod
    def parse(cls, data: Any) -> Publish:
        d = _object(data)
        if d.get("type") != "offer":
            raise bad_request("'type' must be 'offer'")
        path = d.get("path")
        if path is not None and (not isinstance(path, int) or isinstance(path, bool)):
            raise bad_request("'path' must be 0 or 1")
        if path is not None and path not in (0, 1):
            raise bad_request("'path' must be 0 or 1")
        return cls(sdp=_string(d, "sdp"), path=path)


@dataclass(frozen=True)
class SubscribeAnswer:
    revision: int
    sdp: str

    @classmethod
    def parse(cls, data: Any) -> SubscribeAnswer:
        d = _object(data)
        revision = d.get("revision")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise bad_request("'revision' must be a non-negative integer")
        if d.get("type") != "answer":
            raise bad_request("'type' must be 'answer'")
        return cls(revision=revision, sdp=_string(d, "sdp"))


@dataclass(frozen=True)
class IceCandidate:
    target: Literal["publish", "subscribe", "standby"]
    candidate: dict[str, Any] | None

    @classmethod
    def parse(cls, data: Any) -> IceCandidate:
        d = _object(data)
        target = d.get("target")
        if target not in ("publish", "subscribe", "standby"):
            raise bad_request("'target' must be 'publish', 'standby' or 'subscribe'")
        candidate = d.get("candidate")
        if candidate is not None:
            if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
                raise bad_request("'candidate' must be null or an RTCIceCandidate object")
            mid = candidate.get("sdpMid")
            index = candidate.get("sdpMLineIndex")
            if mid is not None and not isinstance(mid, str):
                raise bad_request("'sdpMid' must be a string")
            if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
                raise bad_request("'sdpMLineIndex' must be an integer")
        return cls(target=target, candidate=candidate)


@dataclass(frozen=True)
class Mute:
    kind: Literal["audio", "video"]
    muted: bool

    @classmethod
    def parse(cls, data: Any) -> Mute:
        d = _object(data)
        kind = d.get("kind")
        if kind not in ("audio", "video"):
            raise bad_request("'kind' must be 'audio' or 'video'")
        muted = d.get("muted")
        if not isinstance(muted, bool):
            raise bad_request("'muted' must be true or false")
        return cls(kind=kind, muted=muted)


@dataclass(frozen=True)
class Empty:
    @classmethod
    def parse(cls, data: Any) -> Empty:
        _object(data)
        return cls()
