"""Verify a room's recordings: every digest recomputed, every link of every chain followed.

Problems are named, each with a stable code:

* ``manifest_altered``   a manifest line's chain digest does not follow from the lines before
* ``manifest_truncated`` a track manifest ends before the head the session manifest sealed
* ``segment_missing``    a listed segment file is gone
* ``segment_altered``    a segment's bytes no longer have their listed SM3 digest
* ``segment_reordered``  a segment holds the bytes listed for another position (swapped files)
* ``segment_extra``      a file in a track directory that no manifest lists
* ``track_missing``      a sealed track directory is gone; ``track_extra``: one not sealed
* ``session_altered``    the session manifest's head does not match its content
* ``timeline_altered``   the timeline's bytes or chain do not match what was sealed
* ``unsealed``           a session never sealed (its process was killed and no recovery ran,
                         or it is still recording); its tracks' unlisted files are reported as
                         ``open_segments``, not as extra

RTP sequence gaps (packets lost before they reached the server) are figures, not problems.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chain import GENESIS, link, sm3_file
from .session import MANIFEST, TIMELINE, RecordingStore, read_jsonl


@dataclass
class Problem:
    code: str
    session: str
    track: str | None = None
    segment: str | None = None
    detail: str = ""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class Report:
    room: str
    problems: list[Problem] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "ok": self.ok,
            "problems": [p.describe() for p in self.problems],
            "sessions": self.sessions,
        }


def verify_room(store: RecordingStore, room: str) -> Report:
    report = Report(room)
    for info in store.sessions(room):
        report.sessions.append(_verify_session(info.directory, info.session, report))
    return report


def _verify_session(directory: Path, session: str, report: Report) -> dict[str, Any]:
    figures: dict[str, Any] = {"session": session, "sealed": (directory / MANIFEST).exists()}
    sealed: dict[str, Any] = {}
    if figures["sealed"]:
        sealed = json.loads((directory / MANIFEST).read_text())
        body = {k: v for k, v in sealed.items() if k != "head"}
        if link(GENESIS, body) != sealed.get("head"):
            report.problems.append(Problem("session_altered", session))
        figures.update(
            keep_until=sealed.get("keep_until"),
            head=sealed.get("head"),
            interrupted=sealed.get("interrupted"),
            duration_s=round(float(sealed["ended_at"]) - float(sealed["started_at"]), 3),
        )
        _verify_timeline(directory, session, sealed.get("timeline") or {}, report)
    else:
        report.problems.append(Problem("unsealed", session))
    sealed_tracks = {t["track"]: t for t in sealed.get("tracks", [])}
    track_dirs = sorted(p for p in (directory / "tracks").glob("*") if p.is_dir())
    tracks = []
    for track_dir in track_dirs:
        tracks.append(_verify_track(track_dir, session, sealed_tracks.get(track_dir.name), report))
        if figures["sealed"] and track_dir.name not in sealed_tracks:
            report.problems.append(Problem("track_extra", session, track_dir.name))
    for name in sealed_tracks.keys() - {p.name for p in track_dirs}:
        report.problems.append(Problem("track_missing", session, name))
    figures["tracks"] = tracks
    return figures


def _follow_chain(records: list[dict[str, Any]]) -> tuple[str, int | None]:
    """The head of a chained file's records, and the number of the first line whose chain
    digest does not follow (None when every link holds)."""
    head = GENESIS
    for number, record in enumerate(records, 1):
        if link(head, record) != record.get("chain"):
            return head, number
        head = record["chain"]
    return head, None


def _verify_timeline(directory: Path, session: str, sealed: dict[str, Any], report: Report) -> None:
    path = directory / TIMELINE
    if not path.exists():
        report.problems.append(Problem("timeline_altered", session, detail="missing"))
        return
    digest, _size = sm3_file(path)
    records, _bad = read_jsonl(path)
    head, broken = _follow_chain(records)
    if broken is not None:
        report.problems.append(Problem("timeline_altered", session, detail="chain"))
        return
    if digest != sealed.get("sm3") or head != sealed.get("head"):
        report.problems.append(Problem("timeline_altered", session, detail="digest"))


def _verify_track(
    track_dir: Path, session: str, sealed: dict[str, Any] | None, report: Report
) -> dict[str, Any]:
    track = track_dir.name
    records, bad = read_jsonl(track_dir / "manifest.jsonl")
    head, broken = _follow_chain(records)
    if broken is not None:
        report.problems.append(Problem("manifest_altered", session, track, detail=f"line {broken}"))
    if bad:
        report.problems.append(Problem("manifest_altered", session, track, detail="unreadable"))
    if sealed is not None and head != sealed.get("head"):
        report.problems.append(Problem("manifest_truncated", session, track))
    header = records[0] if records else {}
    segments = [r for r in records if r.get("type") == "segment"]
    by_digest = {s.get("sm3"): s.get("file") for s in segments}
    listed = {s.get("file") for s in segments}
    ok = 0
    for entry in segments:
        name = str(entry.get("file"))
        path = track_dir / name
        if "/" in name or not path.is_file():
            report.problems.append(Problem("segment_missing", session, track, name))
            continue
        digest, size = sm3_file(path)
        if digest == entry.get("sm3") and size == entry.get("size"):
            ok += 1
        elif digest in by_digest and by_digest[digest] != name:
            report.problems.append(
                Problem("segment_reordered", session, track, name, f"holds {by_digest[digest]}")
            )
        else:
            report.problems.append(Problem("segment_altered", session, track, name))
    ended = bool(records) and records[-1].get("type") == "end"
    open_files = []
    for path in sorted(track_dir.iterdir()):
        if path.name == "manifest.jsonl" or path.name in listed:
            continue
        if ended:
            report.problems.append(Problem("segment_extra", session, track, path.name))
        else:  # the track is still being written, or its writer was killed: not sealed yet
            open_files.append(path.name)
    lost = sum(int(s.get("lost", 0)) for s in segments)
    gaps = [g for s in segments for g in s.get("gaps", [])]
    return {
        "track": track,
        "kind": header.get("kind"),
        "codec": header.get("codec"),
        "participant_id": header.get("participant_id"),
        "segments": len(segments),
        "segments_ok": ok,
        "partial_segments": sum(1 for s in segments if s.get("partial")),
        "open_segments": open_files,
        "bytes": sum(int(s.get("size", 0)) for s in segments),
        "frames": sum(int(s.get("frames", 0)) for s in segments),
        "packets": sum(int(s.get("packets", 0)) for s in segments),
        "lost_packets": lost,
        "gaps": gaps,
    }
