"""``teleconsult recording ...``: verify, list, purge and composite recordings on the server.

``verify ROOM`` recomputes every digest of every session of the room (``recording.verify``)
and walks disk -> audit and audit -> disk (:mod:`web.recording_audit`): each sealed session's
head against its ``recording.sealed`` event and the signed checkpoints, each sealed session the
chain or a checkpoint names against the disk, and the chain against the checkpoints. Exit
status: 0 all verified, 1 a problem was found, 2 nothing to verify. ``purge`` enters a
``recording.purged`` event for each session it removes, so its absence is not a problem.
``timeline ROOM SESSION`` prints a session's timeline with its chat texts (SM4-encrypted at
rest, R36) opened with the field key; each such read is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from consult import audit
from consult.crypto import FieldCipher, FieldDecryptError
from consult.db import Database
from recording import RecordingStore
from recording.composite import build
from recording.errors import RecordingError
from recording.session import TIMELINE, read_jsonl, timeline_text_context

from . import composite_labels
from .config import Config
from .recording_audit import PURGED, verify_recordings
from .recording_keys import key_wrapper


def add_parsers(sub: Any, add_common: Any) -> None:
    recording = sub.add_parser("recording", help="verify, list, purge recordings")
    verbs = recording.add_subparsers(dest="action", required=True)
    p = verbs.add_parser("verify", help="recompute every digest of a room's recordings")
    p.add_argument("room", help="the room id (an old visit's room has the visit's id)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_common(p)
    p = verbs.add_parser("list", help="a room's recording sessions (or every room's)")
    p.add_argument("room", nargs="?")
    add_common(p)
    p = verbs.add_parser("purge", help="remove recordings past their keep-until date, only those")
    p.add_argument("--dry-run", action="store_true")
    add_common(p)
    p = verbs.add_parser(
        "timeline", help="a session's timeline with its chat texts decrypted (audited)"
    )
    p.add_argument("room")
    p.add_argument("session")
    add_common(p)
    p = verbs.add_parser("composite", help="(re)build a session's playback composite now")
    p.add_argument("room")
    p.add_argument("session")
    add_common(p)


def _store(config: Config) -> RecordingStore:
    return RecordingStore(
        config.recordings,
        retention_days=config.recording_retention_days,
        key_wrapper=key_wrapper(FieldCipher(config.field_secret())),
    )


def run(config: Config, args: argparse.Namespace) -> int:
    store = _store(config)
    try:
        if args.action == "verify":
            return asyncio.run(_verify(config, store, args.room, as_json=args.json))
        if args.action == "list":
            for info in store.sessions(args.room):
                state = "sealed" if info.sealed else "open or interrupted"
                print(f"{info.room} {info.session} keep-until {info.keep_until} {state}")
            return 0
        if args.action == "purge":
            removed = store.purge(dry_run=args.dry_run)
            if not args.dry_run and removed:
                asyncio.run(_audit_purge(config, removed))
            verb = "would remove" if args.dry_run else "removed"
            print(f"{verb} {len(removed)} session(s) past their keep-until date")
            for info in removed:
                print(f"  {info.room} {info.session} (kept until {info.keep_until})")
            return 0
        info = store.session(args.room, args.session)
        if args.action == "timeline":
            for line in _open_timeline(config, info.room, info.session, info.directory):
                print(json.dumps(line, ensure_ascii=False, sort_keys=True))
            asyncio.run(_audit_read(config, info.room, info.session))
            return 0
        key = store.session_key(info.directory)
        labels = asyncio.run(_labels(config, info.room))
        result = asyncio.run(
            build(info.directory, fps=config.composite_fps, data_key=key, labels=labels)
        )
        print(json.dumps(result, indent=1, sort_keys=True))
        return 0
    except RecordingError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 2


def _open_timeline(config: Config, room: str, session: str, directory: Path) -> list[Any]:
    """The timeline's lines, each sealed chat text opened (``text``) with the field key; one
    that does not open (another key, altered) is named ``text_unreadable``."""
    cipher = FieldCipher(config.field_secret())
    records, _bad = read_jsonl(directory / TIMELINE)
    for record in records:
        sealed = record.pop("text_enc", None)
        if isinstance(sealed, str):
            context = timeline_text_context(room, session, str(record.get("id", "")))
            try:
                record["text"] = cipher.decrypt(sealed, context)
            except FieldDecryptError:
                record["text_unreadable"] = True
    return records


async def _labels(config: Config, room: str) -> dict[str, str]:
    """The composite's tile labels (role and name) from the database."""
    db = Database(config.database, field_key=config.field_secret())
    await db.start()
    try:
        return await composite_labels.labels(db, room)
    finally:
        await db.close()


async def _audit_read(config: Config, room: str, session: str) -> None:
    db = Database(config.database)
    await db.start()
    try:
        await audit.append(
            db,
            "recording.timeline_read",
            actor_role="system",
            source_ip="cli",
            object_type="room",
            object_id=room,
            details={"session": session},
        )
    finally:
        await db.close()


async def _audit_purge(config: Config, removed: list[Any]) -> None:
    db = Database(config.database)  # the audit chain holds no encrypted field: no key needed
    await db.start()
    try:
        for info in removed:
            await audit.append(
                db,
                PURGED,
                actor_role="system",
                source_ip="cli",
                object_type="room",
                object_id=info.room,
                details={"session": info.session, "keep_until": info.keep_until},
            )
    finally:
        await db.close()


async def _verify(config: Config, store: RecordingStore, room: str, *, as_json: bool) -> int:
    db = Database(config.database)  # the audit chain holds no encrypted field: no key needed
    await db.start()
    try:
        result = await verify_recordings(db, store, config, room)
    finally:
        await db.close()
    if as_json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        _print_report(result)
    if not result["sessions"] and result["ok"]:
        return 2
    return 0 if result["ok"] else 1


def _print_report(result: dict[str, Any]) -> None:
    print(f"room {result['room']}: {'verified' if result['ok'] else 'PROBLEMS FOUND'}")
    for session in result["sessions"]:
        print(
            f"  session {session['session']}: sealed={session['sealed']} "
            f"duration={session.get('duration_s', '?')} s keep-until={session.get('keep_until')}"
        )
        for t in session["tracks"]:
            print(
                f"    track {t['track']} {t['kind']}/{t['codec']}: segments {t['segments_ok']}"
                f"/{t['segments']} ok ({t['partial_segments']} partial), {t['frames']} frames, "
                f"{t['packets']} packets, {t['lost_packets']} lost before the server"
                f" in {len(t['gaps'])} gap(s), {t['bytes']} bytes"
            )
    for problem in result["problems"]:
        where = " ".join(
            f"{k}={problem[k]}" for k in ("session", "track", "segment", "detail") if k in problem
        )
        print(f"  {problem['code']}: {where}")
