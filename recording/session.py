"""A room's recording sessions on disk: open, timeline, seal, recover, retention.

Layout under the recordings root (``<data_dir>/recordings`` by default)::

    <room>/<session>/session.json        room, session, started_at, keep_until (written at open)
    <room>/<session>/timeline.jsonl      the room's events and chat, chained like a manifest
    <room>/<session>/tracks/<track>/     one directory per Producer: segments + manifest.jsonl
    <room>/<session>/manifest.json       written at seal: every track's head, the timeline's
                                         digest, the session head (which enters the audit chain)
    <room>/<session>/composite.mp4       the playback file, built afterwards (composite.json)

With a :class:`recording.at_rest.KeyWrapper` (the application always gives one), every segment
and the composite are SM4-CTR-encrypted under a random per-session key that ``session.json``
keeps wrapped by the configured key (R36); files are 0600 (0400 once sealed), directories 0700.

A session is one opening of a room's media: a room emptied and opened again is a new session.
Every session keeps a ``keep_until`` date at least :data:`MIN_RETENTION_DAYS` after it started
(R23); :meth:`RecordingStore.purge` removes nothing before that date.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .at_rest import KeyWrapper, key_context, new_key
from .chain import GENESIS, link, sm3_file
from .errors import BadName, NotFound, RetentionError
from .segments import ManifestWriter

logger = logging.getLogger(__name__)

#: Audio and video of a visit are kept at least 3 years (R23): 3 x 365 days + a leap day.
MIN_RETENTION_DAYS = 3 * 365 + 1
#: Segment lengths a store accepts, in seconds.
SEGMENT_S_RANGE = (1.0, 60.0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MANIFEST = "manifest.json"
SESSION = "session.json"
TIMELINE = "timeline.jsonl"

TextSealer = Callable[[str, str], str]
"""Encrypts a timeline text at rest (R36): ``(text, context) -> sealed string``. The store is
handed one (SM4-GCM under the field key, from ``web``); ``recording`` holds no key itself."""


def timeline_text_context(room: str, session: str, message_id: str) -> str:
    """What a sealed timeline text is bound to: a copy moved to another line fails to open."""
    return f"recording.timeline.text/{room}/{session}/{message_id}"


def check_name(name: str) -> str:
    """A room or session name must be a plain identifier: never a path."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise BadName("not a valid recording name")
    return name


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    os.chmod(path, 0o400)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of ``path`` and the number of unreadable ones (a torn last line
    after a kill is one)."""
    records: list[dict[str, Any]] = []
    bad = 0
    if not path.exists():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                bad += 1
    return records, bad


@dataclass(frozen=True)
class SessionInfo:
    room: str
    session: str
    directory: Path
    started_at: float
    keep_until: str
    sealed: bool


class SessionRecording:
    """One open recording session: where its tracks go, and its timeline."""

    def __init__(
        self,
        room: str,
        session: str,
        directory: Path,
        segment_s: float,
        seal_text: TextSealer | None = None,
        data_key: bytes | None = None,
    ) -> None:
        self.room = room
        self.session = session
        self.directory = directory
        self.segment_s = segment_s
        self._seal_text = seal_text
        self.data_key = data_key
        # flushed per event (a killed process loses none), synced at seal: events come on the
        # event loop, which must not wait for the disk
        self._timeline = ManifestWriter(directory / TIMELINE, sync=False)
        self._lock = threading.Lock()  # events come from the loop; sealing may be in a thread
        self.sealed = False

    def tap_options(self) -> dict[str, Any]:
        """What the media pool hands its taps (plain data: it may cross to a worker)."""
        return {
            "recording": {
                "dir": str(self.directory.resolve()),
                "room": self.room,
                "session": self.session,
                "segment_s": self.segment_s,
                # the session's own SM4 key, in memory only (the writer may be a worker)
                "data_key": self.data_key.hex() if self.data_key is not None else None,
            }
        }

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Append a room event (join, leave, mute, chat ...) to the timeline, at server time.

        ``data`` must hold no patient name, ID number or phone (ids only). A ``text`` (chat) is
        kept as ``text_enc``, sealed by the store's :data:`TextSealer` (R36), when it has one."""
        data = dict(data or {})
        text = data.get("text")
        if self._seal_text is not None and isinstance(text, str):
            context = timeline_text_context(self.room, self.session, str(data.get("id", "")))
            data["text_enc"] = self._seal_text(data.pop("text"), context)
        with self._lock:
            if self.sealed:
                return
            # "event" and "at" (server time, seconds) are the timeline's own: data cannot hide them
            self._timeline.append({**(data or {}), "event": name, "at": time.time()})

    def close_timeline(self) -> tuple[str, int]:
        with self._lock:
            self.sealed = True
            self._timeline.close()
            return self._timeline.head, self._timeline.lines


class RecordingStore:
    """The recordings root: opens sessions, seals them, finds and verifies them."""

    def __init__(
        self,
        root: Path,
        *,
        segment_s: float = 5.0,
        retention_days: int = MIN_RETENTION_DAYS,
        seal_text: TextSealer | None = None,
        key_wrapper: KeyWrapper | None = None,
    ) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(f"recordings are kept at least {MIN_RETENTION_DAYS} days (R23)")
        low, high = SEGMENT_S_RANGE
        if not low <= segment_s <= high:
            raise ValueError(f"segment_s must be between {low:g} and {high:g} seconds")
        self.root = root
        self.segment_s = segment_s
        self.retention_days = retention_days
        self.seal_text = seal_text
        self.key_wrapper = key_wrapper

    # --- open / seal -------------------------------------------------------------------------

    def open_session(self, room: str) -> SessionRecording:
        check_name(room)
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        session = f"{stamp}-{secrets.token_hex(3)}"
        directory = self.root / room / session
        for path in (self.root, self.root / room, directory, directory / "tracks"):
            path.mkdir(mode=0o700, exist_ok=path != directory)
        keep_until = datetime.fromtimestamp(now, UTC) + timedelta(days=self.retention_days)
        header: dict[str, Any] = {
            "room": room,
            "session": session,
            "started_at": now,
            "keep_until": keep_until.date().isoformat(),
            "segment_s": self.segment_s,
        }
        data_key = None
        if self.key_wrapper is not None:
            data_key = new_key()
            header["encryption"] = "sm4-ctr"
            header["data_key"] = self.key_wrapper.wrap(data_key, key_context(room, session))
        _write_json_atomically(directory / SESSION, header)
        recording = SessionRecording(
            room, session, directory, self.segment_s, self.seal_text, data_key
        )
        recording.event("recording_started")
        return recording

    def seal(self, recording: SessionRecording, *, interrupted: bool = False) -> dict[str, Any]:
        """End ``recording``: close its timeline and write its manifest. Blocking (file I/O)."""
        recording.event("recording_stopped", {"interrupted": interrupted})
        recording.close_timeline()
        return seal_directory(recording.directory, interrupted=interrupted)

    def recover(self) -> list[dict[str, Any]]:
        """Seal every session a killed process left open (the open segments as partial)."""
        sealed = []
        for info in self.sessions():
            if not info.sealed:
                logger.warning(
                    "sealing an interrupted recording",
                    extra={"room": info.room, "session": info.session},
                )
                sealed.append(seal_directory(info.directory, interrupted=True))
        return sealed

    # --- find --------------------------------------------------------------------------------

    def room_directory(self, room: str) -> Path:
        return self.root / check_name(room)

    def sessions(self, room: str | None = None) -> list[SessionInfo]:
        rooms = [self.room_directory(room)] if room is not None else self._dirs(self.root)
        found = []
        for room_dir in rooms:
            for directory in self._dirs(room_dir):
                try:
                    info = json.loads((directory / SESSION).read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                found.append(
                    SessionInfo(
                        room=room_dir.name,
                        session=directory.name,
                        directory=directory,
                        started_at=float(info.get("started_at", 0)),
                        keep_until=str(info.get("keep_until", "")),
                        sealed=(directory / MANIFEST).exists(),
                    )
                )
        return found

    def session_key(self, directory: Path) -> bytes | None:
        """The unwrapped data key of the session in ``directory`` (None: stored in the clear).

        Raises ``ValueError`` when the session is encrypted and this store has no key wrapper
        (or the wrapped key does not open under it: another configured key)."""
        info = json.loads((directory / SESSION).read_text())
        wrapped = info.get("data_key")
        if not wrapped:
            return None
        if self.key_wrapper is None:
            raise ValueError("the recording is encrypted and no key is configured")
        return self.key_wrapper.unwrap(
            str(wrapped), key_context(str(info["room"]), str(info["session"]))
        )

    def session(self, room: str, session: str) -> SessionInfo:
        check_name(session)
        for info in self.sessions(room):
            if info.session == session:
                return info
        raise NotFound("no such recording session")

    @staticmethod
    def _dirs(path: Path) -> list[Path]:
        if not path.is_dir():
            return []
        return sorted(p for p in path.iterdir() if p.is_dir() and _NAME.match(p.name))

    # --- retention ---------------------------------------------------------------------------

    def purge(self, *, today: str | None = None, dry_run: bool = False) -> list[SessionInfo]:
        """Remove sessions whose keep-until date has passed; nothing earlier (R23)."""
        day = today or datetime.now(UTC).date().isoformat()
        expired = [i for i in self.sessions() if i.keep_until and i.keep_until < day]
        for info in expired:
            if not dry_run:
                self.remove(info, today=day)
        return expired

    def remove(self, info: SessionInfo, *, today: str | None = None) -> None:
        day = today or datetime.now(UTC).date().isoformat()
        if not info.keep_until or info.keep_until >= day:
            raise RetentionError(f"kept until {info.keep_until or 'an unknown date'}")
        for path in info.directory.rglob("*"):
            if path.is_file():
                os.chmod(path, 0o600)
        shutil.rmtree(info.directory)


def seal_directory(directory: Path, *, interrupted: bool = False) -> dict[str, Any]:
    """Write ``manifest.json`` for the session in ``directory`` and return it.

    A track whose manifest has no end (its process was killed) gets its unlisted segment files
    appended as ``partial`` entries and an ``interrupted`` end, so that what survived is
    verifiable from then on.
    """
    info = json.loads((directory / SESSION).read_text())
    tracks = []
    for track_dir in sorted(p for p in (directory / "tracks").iterdir() if p.is_dir()):
        tracks.append(_seal_track(track_dir))
    timeline, bad = read_jsonl(directory / TIMELINE)
    timeline_head = GENESIS
    for record in timeline:
        timeline_head = record.get("chain", timeline_head)
    digest, size = sm3_file(directory / TIMELINE) if (directory / TIMELINE).exists() else ("", 0)
    ended_at = max(
        [float(info["started_at"])]
        + [_seconds(r.get("at")) for r in timeline]
        + [_seconds(t.get("ended_at")) for t in tracks]
    )
    manifest: dict[str, Any] = {
        "room": info["room"],
        "session": info["session"],
        "started_at": float(info["started_at"]),
        "ended_at": ended_at,
        "started": _iso(float(info["started_at"])),
        "ended": _iso(ended_at),
        "keep_until": info["keep_until"],
        "interrupted": interrupted or any(t["interrupted"] for t in tracks),
        "tracks": tracks,
        "timeline": {
            "file": TIMELINE,
            "events": len(timeline),
            "unreadable_lines": bad,
            "head": timeline_head,
            "sm3": digest,
            "size": size,
        },
    }
    manifest["head"] = link(GENESIS, manifest)
    _write_json_atomically(directory / MANIFEST, manifest)
    logger.info("recording sealed", extra={"room": info["room"], "session": info["session"]})
    return manifest


def _seconds(value: Any) -> float:
    """A time in seconds from a manifest or timeline line; 0 for anything else (a bad line
    must not stop a seal: verify reports it)."""
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _seal_track(track_dir: Path) -> dict[str, Any]:
    path = track_dir / "manifest.jsonl"
    records, _bad = read_jsonl(path)
    header = records[0] if records and records[0].get("type") == "track" else {}
    end = records[-1] if records and records[-1].get("type") == "end" else None
    interrupted = end is None
    if interrupted:
        end = _recover_track(track_dir, records)
        records, _bad = read_jsonl(path)
    head = records[-1].get("chain", GENESIS) if records else GENESIS
    segments = [r for r in records if r.get("type") == "segment"]
    assert end is not None
    return {
        "track": track_dir.name,
        "participant_id": header.get("participant_id"),
        "kind": header.get("kind"),
        "codec": header.get("codec"),
        "clock_rate": header.get("clock_rate"),
        "segments": len(segments),
        "packets": sum(int(s.get("packets", 0)) for s in segments),
        "lost": sum(int(s.get("lost", 0)) for s in segments),
        "ended_at": end.get("ended_at"),
        "interrupted": interrupted,
        "head": head,
        "lines": len(records),
    }


def _recover_track(track_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Append the segments a killed writer left unlisted, then an ``interrupted`` end."""
    listed = {r.get("file") for r in records if r.get("type") == "segment"}
    last_write = max([p.stat().st_mtime for p in track_dir.iterdir() if p.is_file()] + [0.0])
    # rewrite a torn last line away: keep the complete records, re-chained as they were
    path = track_dir / "manifest.jsonl"
    if records:
        with open(path, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    writer = ManifestWriter(path)
    writer.head = records[-1].get("chain", GENESIS) if records else GENESIS
    if not records:
        writer.append({"type": "track", "track": track_dir.name, "recovered": True})
    index = max([int(r.get("index", 0)) for r in records if r.get("type") == "segment"] + [0])
    for file in sorted(p for p in track_dir.iterdir() if p.name != "manifest.jsonl"):
        if file.name in listed or not file.is_file() or file.name.startswith("."):
            continue
        index += 1
        digest, size = sm3_file(file)
        os.chmod(file, 0o400)
        entry = {"type": "segment", "index": index, "file": file.name, "sm3": digest}
        writer.append({**entry, "size": size, "partial": True})
    end = writer.append({"type": "end", "interrupted": True, "ended_at": last_write})
    writer.close()
    return end
