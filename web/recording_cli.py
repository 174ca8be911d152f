"""``teleconsult recording ...``: verify, list, purge and composite recordings on the server.

``verify ROOM`` recomputes every digest of every session of the room (``recording.verify``)
and checks each sealed session's head against the audit chain, where it was entered when the
session was sealed. Exit status: 0 all verified, 1 a problem was found, 2 nothing to verify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from consult.audit import events_for
from consult.db import Database
from recording import RecordingStore, verify_room
from recording.composite import build
from recording.errors import RecordingError

from .config import Config


def add_parsers(sub: Any, add_common: Any) -> None:
    recording = sub.add_parser("recording", help="verify, list, purge recordings")
    verbs = recording.add_subparsers(dest="action", required=True)
    p = verbs.add_parser("verify", help="recompute every digest of a room's recordings")
    p.add_argument("room", help="the visit id")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_common(p)
    p = verbs.add_parser("list", help="a room's recording sessions (or every room's)")
    p.add_argument("room", nargs="?")
    add_common(p)
    p = verbs.add_parser("purge", help="remove recordings past their keep-until date, only those")
    p.add_argument("--dry-run", action="store_true")
    add_common(p)
    p = verbs.add_parser("composite", help="(re)build a session's playback composite now")
    p.add_argument("room")
    p.add_argument("session")
    add_common(p)


def _store(config: Config) -> RecordingStore:
    return RecordingStore(config.recordings, retention_days=config.recording_retention_days)


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
            verb = "would remove" if args.dry_run else "removed"
            print(f"{verb} {len(removed)} session(s) past their keep-until date")
            for info in removed:
                print(f"  {info.room} {info.session} (kept until {info.keep_until})")
            return 0
        info = store.session(args.room, args.session)
        result = asyncio.run(build(info.directory, fps=config.composite_fps))
        print(json.dumps(result, indent=1, sort_keys=True))
        return 0
    except RecordingError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 2


async def _verify(config: Config, store: RecordingStore, room: str, *, as_json: bool) -> int:
    report = await asyncio.get_running_loop().run_in_executor(None, verify_room, store, room)
    db = Database(config.database)  # the audit chain holds no encrypted field: no key needed
    await db.start()
    try:
        events = await events_for(db, room)
    finally:
        await db.close()
    sealed_heads = {}
    for event in events:
        if event.action == "recording.sealed":
            details = json.loads(event.details or "{}")
            sealed_heads[details.get("session")] = details.get("head")
    audit_problems = []
    for session in report.sessions:
        if not session.get("sealed"):
            continue
        head = sealed_heads.get(session["session"])
        if head is None:
            audit_problems.append({"code": "audit_missing", "session": session["session"]})
        elif head != session.get("head"):
            audit_problems.append({"code": "audit_mismatch", "session": session["session"]})
    result = report.describe()
    result["problems"] += audit_problems
    result["ok"] = not result["problems"]
    if as_json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        _print_report(result)
    if not report.sessions:
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
