"""A room's recordings checked both ways against the audit chain and the signed checkpoints
(R22, R24-R26): one walk shared by ``teleconsult recording verify`` and the regulator's export.

* disk: every digest and chain link of every session (:func:`recording.verify_room`);
* disk -> audit: every sealed session on disk has its ``recording.sealed`` event, with the same
  head (``audit_missing``, ``audit_mismatch``), and the same head as the checkpoint that signed
  it (``checkpoint_mismatch``);
* audit -> disk: every session the chain or a checkpoint says was sealed is on disk, unless a
  ``recording.purged`` event says it was removed after its keep-until date
  (``session_missing``);
* the audit chain verifies against the checkpoints from the room's first event on
  (``audit_chain_broken``): otherwise a rewritten manifest with a recomputed
  ``recording.sealed`` event would pass the comparisons;
* the checkpoint file verifies (``checkpoint_invalid``, ``checkpoint_unlinked``).

The ``recording`` package cannot see the database (layers), hence this module in ``web``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from consult.audit_verify import events_for, verify_chain
from consult.checkpoints import read_checkpoints
from consult.db import Database
from recording import RecordingStore, verify_room

from .config import Config

SEALED = "recording.sealed"
PURGED = "recording.purged"


async def verify_recordings(
    db: Database, store: RecordingStore, config: Config, room: str
) -> dict[str, Any]:
    """The room's recordings verified on disk and against the chain and the checkpoints.

    Returns :meth:`recording.verify.Report.describe` with the cross-check problems added and
    ``ok`` recomputed, plus ``checkpoint`` (the newest checkpoint checked against, or None).
    """
    report = await asyncio.get_running_loop().run_in_executor(None, verify_room, store, room)
    result = report.describe()
    problems: list[dict[str, Any]] = result["problems"]
    public_key = config.public_key()
    log = None
    if public_key is not None:
        log = read_checkpoints(config.checkpoints, public_key, config.tsa_roots())
        problems += [
            {"code": p.code, "detail": f"checkpoint file line {p.line}: {p.detail}"}
            for p in log.problems
        ]
    events = await events_for(db, room)
    # The chain from the room's first event on: enough to show its events are the signed ones.
    first = min((event.seq for event in events), default=1)
    chain = await verify_chain(db, anchors=log.anchors() if log else (), start_seq=first)
    if not chain.ok:
        problems.append(
            {
                "code": "audit_chain_broken",
                "detail": f"{chain.problem} at seq {chain.broken_seq}: {chain.detail}",
            }
        )
    sealed: dict[str, str | None] = {}
    purged: set[str] = set()
    for event in events:
        if event.action not in (SEALED, PURGED):
            continue
        try:
            details = json.loads(event.details or "{}")
        except json.JSONDecodeError:
            continue
        session = str(details.get("session"))
        if event.action == SEALED:
            sealed[session] = details.get("head")
        else:
            purged.add(session)
    on_disk = {s["session"]: s for s in result["sessions"]}
    for name, session in on_disk.items():
        if not session.get("sealed"):
            continue
        if name not in sealed:
            problems.append({"code": "audit_missing", "session": name})
        elif sealed[name] != session.get("head"):
            problems.append({"code": "audit_mismatch", "session": name})
    anchored = {
        session: recording.head
        for (visit, session), recording in (log.recording_heads() if log else {}).items()
        if visit == room
    }
    for name in sorted((sealed.keys() | anchored.keys()) - on_disk.keys() - purged):
        problems.append(
            {"code": "session_missing", "session": name, "detail": "sealed, but not on disk"}
        )
    for name, head in sorted(anchored.items()):
        if name in on_disk and on_disk[name].get("head") != head:
            problems.append(
                {
                    "code": "checkpoint_mismatch",
                    "session": name,
                    "detail": "its head is not the one the checkpoint signed",
                }
            )
    latest = log.latest if log else None
    result["checkpoint"] = (
        {"n": latest.n, "at": latest.at, "audit_seq": latest.audit_seq} if latest else None
    )
    result["ok"] = not problems
    return result
