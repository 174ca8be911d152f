"""The review events' payloads (``docs/review.md``), checked before they reach a review.

Each ``review_*`` event of :mod:`signaling.review` has a class here whose ``parse`` takes what a
socket sent and returns plain, bounded values, or raises the ``bad_request`` a client is told:
numbers finite and in range, UIDs well formed, lists short, unknown tools and fields refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from consult.imaging.uids import valid_uid

from .errors import bad_request

TOOLS: Final = frozenset({"Length", "Angle", "RectangleROI", "EllipticalROI", "Probe"})
"""Measurement tools whose annotations travel (Cornerstone3D tool names)."""
CALIPERS: Final = frozenset({"RR", "PR", "QRS", "QT", "free"})
ECG_SPEEDS: Final = (12.5, 25.0, 50.0)
ECG_GAINS: Final = (5.0, 10.0, 20.0)
ECG_LAYOUTS: Final = frozenset({"3x4", "12x1"})
MAX_ANNOTATIONS: Final = 200
MAX_CALIPERS: Final = 16
MAX_POINTS: Final = 8
MAX_COORDINATE: Final = 1e7
MAX_INDEX: Final = 100_000
_UID_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# --- Payloads -----------------------------------------------------------------------------------


def as_object(data: Any, what: str = "the payload") -> dict[str, Any]:
    """``data`` as a JSON object (None: an empty one), or the client is told it must be one."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_request(f"{what} must be an object")
    return data


def _number(
    value: Any, key: str, *, low: float = -MAX_COORDINATE, high: float = MAX_COORDINATE
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"'{key}' must be a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise bad_request(f"'{key}' must be a finite number from {low:g} to {high:g}")
    return number


def _int(value: Any, key: str, low: int = 0, high: int = MAX_INDEX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"'{key}' must be an integer from {low} to {high}")
    return value


def _vector(value: Any, key: str) -> list[float]:
    if not isinstance(value, list) or len(value) != 3:
        raise bad_request(f"'{key}' must be 3 numbers")
    return [_number(v, key) for v in value]


def _uid(value: Any, key: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not valid_uid(value):
        raise bad_request(f"'{key}' must be a DICOM UID")
    return value


def _camera(value: Any) -> dict[str, Any]:
    d = as_object(value, "'camera'")
    return {
        "focal_point": _vector(d.get("focal_point"), "focal_point"),
        "position": _vector(d.get("position"), "position"),
        "view_up": _vector(d.get("view_up"), "view_up"),
        "parallel_scale": _number(d.get("parallel_scale"), "parallel_scale", low=1e-6),
    }


def _voi(value: Any) -> dict[str, float]:
    d = as_object(value, "'voi'")
    lower = _number(d.get("lower"), "lower")
    upper = _number(d.get("upper"), "upper")
    if upper <= lower:
        raise bad_request("'voi.upper' must be above 'voi.lower'")
    return {"lower": lower, "upper": upper}


def _caliper(value: Any) -> dict[str, Any]:
    d = as_object(value, "a caliper")
    kind = d.get("kind")
    if kind not in CALIPERS:
        raise bad_request(f"a caliper's 'kind' must be one of {sorted(CALIPERS)}")
    start, end = _int(d.get("from"), "from", 0, 10_000_000), _int(d.get("to"), "to", 0, 10_000_000)
    return {
        "kind": kind,
        "group": _int(d.get("group", 0), "group", 0, 16),
        "from": start,
        "to": end,
    }


def _ecg(value: Any) -> dict[str, Any]:
    d = as_object(value, "'ecg'")
    speed = _number(d.get("speed", 25.0), "speed")
    gain = _number(d.get("gain", 10.0), "gain")
    if speed not in ECG_SPEEDS or gain not in ECG_GAINS:
        raise bad_request("'speed' must be 12.5, 25 or 50 mm/s and 'gain' 5, 10 or 20 mm/mV")
    layout = d.get("layout", "3x4")
    if layout not in ECG_LAYOUTS:
        raise bad_request("'layout' must be '3x4' or '12x1'")
    calipers = d.get("calipers", [])
    if not isinstance(calipers, list) or len(calipers) > MAX_CALIPERS:
        raise bad_request(f"'calipers' must be a list of at most {MAX_CALIPERS}")
    filtered = d.get("filter", True)
    if not isinstance(filtered, bool):
        raise bad_request("'filter' must be true or false")
    return {
        "group": _int(d.get("group", 0), "group", 0, 16),
        "offset_s": _number(d.get("offset_s", 0.0), "offset_s", low=0.0, high=86_400.0),
        "speed": speed,
        "gain": gain,
        "layout": layout,
        "filter": filtered,
        "calipers": [_caliper(c) for c in calipers],
    }


@dataclass(frozen=True)
class ReviewShare:
    """``review_share``: a study (its series and instance) or an ECG instance."""

    kind: str
    study: str
    series: str | None
    instance: str | None

    @classmethod
    def parse(cls, data: Any) -> ReviewShare:
        d = as_object(data)
        kind = d.get("kind", "image")
        if kind not in ("image", "ecg"):
            raise bad_request("'kind' must be 'image' or 'ecg'")
        study = _uid(d.get("study"), "study", required=True)
        assert study is not None
        series = _uid(d.get("series"), "series")
        instance = _uid(d.get("instance"), "instance")
        if kind == "ecg" and (series is None or instance is None):
            raise bad_request("an ECG share names its series and instance")
        return cls(kind=kind, study=study, series=series, instance=instance)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReviewView:
    """``review_view``: the presenter's view, every field optional (what it shows now)."""

    view: dict[str, Any]
    sent_at: float | None

    @classmethod
    def parse(cls, data: Any) -> ReviewView:
        d = as_object(data)
        raw = as_object(d.get("view"), "'view'")
        view: dict[str, Any] = {}
        if "series" in raw:
            view["series"] = _uid(raw["series"], "series")
        if "instance" in raw:
            view["instance"] = _uid(raw["instance"], "instance")
        if "index" in raw:
            view["index"] = _int(raw["index"], "index")
        if "frame" in raw:
            view["frame"] = _int(raw["frame"], "frame", 1)
        if raw.get("camera") is not None:
            view["camera"] = _camera(raw["camera"])
        if raw.get("voi") is not None:
            view["voi"] = _voi(raw["voi"])
        if "invert" in raw:
            if not isinstance(raw["invert"], bool):
                raise bad_request("'invert' must be true or false")
            view["invert"] = raw["invert"]
        if "pointer" in raw:
            view["pointer"] = None if raw["pointer"] is None else _vector(raw["pointer"], "pointer")
        if raw.get("ecg") is not None:
            view["ecg"] = _ecg(raw["ecg"])
        sent_at = d.get("sent_at")
        # the presenter's clock (ms since the epoch), echoed for the followers' latency figures
        return cls(
            view=view,
            sent_at=None if sent_at is None else _number(sent_at, "sent_at", low=0, high=1e14),
        )


def _annotation(value: Any) -> dict[str, Any]:
    d = as_object(value, "an annotation")
    uid = d.get("uid")
    if not isinstance(uid, str) or not _UID_ID.match(uid):
        raise bad_request("an annotation's 'uid' must be 1-64 of A-Z a-z 0-9 . _ -")
    tool = d.get("tool")
    if tool not in TOOLS:
        raise bad_request(f"an annotation's 'tool' must be one of {sorted(TOOLS)}")
    points = d.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
        raise bad_request(f"an annotation has 1 to {MAX_POINTS} points")
    return {
        "uid": uid,
        "tool": tool,
        "instance": _uid(d.get("instance"), "instance", required=True),
        "frame": _int(d.get("frame", 1), "frame", 1),
        "points": [_vector(p, "points") for p in points],
    }


@dataclass(frozen=True)
class ReviewAnnotations:
    """``review_annotations``: the presenter's whole set of measurements (replaces the last)."""

    annotations: list[dict[str, Any]]

    @classmethod
    def parse(cls, data: Any) -> ReviewAnnotations:
        items = as_object(data).get("annotations")
        if not isinstance(items, list) or len(items) > MAX_ANNOTATIONS:
            raise bad_request(f"'annotations' must be a list of at most {MAX_ANNOTATIONS}")
        return cls(annotations=[_annotation(a) for a in items])


@dataclass(frozen=True)
class ReviewSave:
    """``review_save``: store the measurements as DICOM SR (and GSPS for images) into the shared
    study; with ``annotations`` (an image) or ``calipers`` (an ECG) the set is replaced first,
    so a save right after a drag saves what the presenter sees."""

    annotations: list[dict[str, Any]] | None
    calipers: list[dict[str, Any]] | None = None

    @classmethod
    def parse(cls, data: Any) -> ReviewSave:
        d = as_object(data)
        unknown = set(d) - {"annotations", "calipers"}
        if unknown:
            raise bad_request(f"unknown field(s): {sorted(unknown)}")
        calipers = None
        if "calipers" in d:
            items = d["calipers"]
            if not isinstance(items, list) or len(items) > MAX_CALIPERS:
                raise bad_request(f"'calipers' must be a list of at most {MAX_CALIPERS}")
            calipers = [_caliper(c) for c in items]
        if "annotations" not in d:
            return cls(annotations=None, calipers=calipers)
        return cls(annotations=ReviewAnnotations.parse(d).annotations, calipers=calipers)


@dataclass(frozen=True)
class ReviewHandover:
    """``review_handover``: give the presenter role to another member of the review."""

    to: str

    @classmethod
    def parse(cls, data: Any) -> ReviewHandover:
        to = as_object(data).get("to")
        if not isinstance(to, str) or not 1 <= len(to) <= 64:
            raise bad_request("'to' must be a participant id")
        return cls(to=to)
