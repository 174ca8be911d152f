"""R22, R24-R26: a deleted recording session, or a replaced segment with its manifests rewritten,
is named by ``teleconsult recording verify`` and by the regulator's export alike.

Both walk disk -> audit and audit -> disk and compare heads with the signed checkpoints
(``web/recording_audit.py``). Before issue 13 the export answered ``verified: true`` to a
replaced segment with rewritten manifests, and the command printed "verified" for a room whose
whole session directory was gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from apiclient import Clinic
from people import booked_visit, verified_doctor
from sqlalchemy import select, text

from consult.audit import event_digest
from consult.crypto import GENESIS_DIGEST
from consult.models import AuditEvent
from consult.rooms import visit_room_id
from recording import RecordingStore
from recording.chain import GENESIS, link, sm3_file
from recording.segments import ManifestWriter
from recording.session import MANIFEST
from web.keys import DATABASE, RECORDER, SIGNALING

TELECONSULT = Path(sys.executable).parent / "teleconsult"


def _fake_track(directory: Path, track: str, segments: list[bytes]) -> None:
    """A track as a recorder leaves it: segment files and their chained manifest."""
    track_dir = directory / "tracks" / track
    track_dir.mkdir(parents=True)
    writer = ManifestWriter(track_dir / "manifest.jsonl", sync=False)
    writer.append({"type": "track", "kind": "audio", "codec": "opus", "participant_id": "p1"})
    for number, blob in enumerate(segments, 1):
        name = f"{number:06d}.webm"
        (track_dir / name).write_bytes(blob)
        digest, size = sm3_file(track_dir / name)
        writer.append(
            {"type": "segment", "file": name, "sm3": digest, "size": size, "packets": 50,
             "frames": 50, "lost": 0}
        )  # fmt: skip
    writer.append({"type": "end", "ended_at": 1.0})
    writer.close()


async def _recorded_session(server: Any, visit_id: str) -> tuple[Path, dict[str, Any]]:
    """A sealed session with one track of three segments, its head in the audit chain."""
    store: RecordingStore = server.app[RECORDER].store
    room_id = await visit_room_id(server.app[DATABASE], visit_id)  # recordings are the room's
    assert room_id is not None
    recording = store.open_session(room_id)
    recording.event("joined", {"participant_id": "p1", "role": "doctor"})
    _fake_track(recording.directory, "a1", [os.urandom(3000) for _ in range(3)])
    manifest = store.seal(recording)
    await server.app[SIGNALING].recording_sealed(room_id, manifest)  # as a room does
    return recording.directory, manifest


async def _cli(*argv: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    process = await asyncio.create_subprocess_exec(
        str(TELECONSULT), *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def _verify(data: Path, room_id: str) -> tuple[int, set[tuple[str, str | None]]]:
    status, out = await _cli("recording", "verify", room_id, "--data-dir", str(data), "--json")
    result = json.loads(out)
    return status, {(p["code"], p.get("session")) for p in result["problems"]}


def _rewrite_segment(session_dir: Path) -> None:
    """Replace segment 2 and rewrite the track manifest and the session manifest to match."""
    track_dir = session_dir / "tracks" / "a1"
    for path in [*track_dir.iterdir(), session_dir / MANIFEST]:
        os.chmod(path, 0o644)
    (track_dir / "000002.webm").write_bytes(os.urandom(2500))
    lines = [json.loads(x) for x in (track_dir / "manifest.jsonl").read_text().splitlines()]
    head = GENESIS
    for line in lines:
        if line.get("file") == "000002.webm":
            line["sm3"], line["size"] = sm3_file(track_dir / "000002.webm")
        line.pop("chain")
        line["chain"] = head = link(head, line)
    (track_dir / "manifest.jsonl").write_text(
        "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    )
    manifest = json.loads((session_dir / MANIFEST).read_text())
    manifest["tracks"][0]["head"] = head
    manifest.pop("head")
    manifest["head"] = link(GENESIS, manifest)
    (session_dir / MANIFEST).write_text(json.dumps(manifest))


async def _rewrite_sealed_event(server: Any, visit_id: str, session: str, head: str) -> None:
    """As a database owner: put the new head into the recording.sealed event and recompute
    every digest after it, so that the chain verifies on its own again."""
    db = server.app[DATABASE]
    async with db.session() as s:
        events = list((await s.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())
    updates = []
    prev = GENESIS_DIGEST
    for event in events:
        details = json.loads(event.details)
        if event.action == "recording.sealed" and details.get("session") == session:
            details["head"] = head
            event.details = json.dumps(details, sort_keys=True, separators=(",", ":"))
        event.prev_digest = prev
        prev = event_digest(prev, event)
        updates.append(
            {"details": event.details, "prev": event.prev_digest, "digest": prev, "seq": event.seq}
        )
    async with db.session() as s, s.begin():
        await s.execute(text("DROP TRIGGER audit_events_no_update"))
        await s.execute(
            text(
                "UPDATE audit_events SET details = :details, prev_digest = :prev, "
                "digest = :digest WHERE seq = :seq"
            ),
            updates,
        )


async def test_a_deleted_session_and_a_rewritten_segment_are_named_by_both_R22_R24(
    server, clinic: Clinic
):
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    visit_id = (await booked_visit(clinic, doctor, nurse)).visit["id"]
    kept, kept_manifest = await _recorded_session(server, visit_id)
    room_id = kept.parent.name  # the CLI names the room (its recordings' directory)
    doomed, _ = await _recorded_session(server, visit_id)
    data = server.config.data_dir
    status, out = await _cli("audit", "checkpoint", "--data-dir", str(data))
    assert status == 0 and "signed" in out, out
    regulator = await clinic.person("regulator")
    url = f"/exports/visits/{visit_id}/recordings"

    export = await regulator.ok("GET", url)
    assert export["verified"] is True and export["problems"] == [], export["problems"]
    assert export["checkpoint"]["audit_seq"] > 0
    assert await _verify(data, room_id) == (0, set())

    # 1. a whole session directory deleted
    shutil.rmtree(doomed)
    expected = {("session_missing", doomed.name)}
    export = await regulator.ok("GET", url)
    assert export["verified"] is False
    assert {(p["code"], p.get("session")) for p in export["problems"]} == expected
    assert await _verify(data, room_id) == (1, expected)

    # 2. a segment replaced, its track manifest and session manifest rewritten to match
    _rewrite_segment(kept)
    status, problems = await _verify(data, room_id)
    assert status == 1
    assert problems == expected | {
        ("audit_mismatch", kept.name),
        ("checkpoint_mismatch", kept.name),
    }
    export = await regulator.ok("GET", url)
    assert {(p["code"], p.get("session")) for p in export["problems"]} == problems

    # 3. ... and the audit chain rewritten to hold the new head: the checkpoints still tell
    new_head = json.loads((kept / MANIFEST).read_text())["head"]
    assert new_head != kept_manifest["head"]
    await _rewrite_sealed_event(server, visit_id, kept.name, new_head)
    status, problems = await _verify(data, room_id)
    assert status == 1
    assert problems == expected | {
        ("audit_chain_broken", None),
        ("checkpoint_mismatch", kept.name),
    }
    export = await regulator.ok("GET", url)
    assert {(p["code"], p.get("session")) for p in export["problems"]} == problems
    assert any("rewritten" in p.get("detail", "") for p in export["problems"])
    status, out = await _cli("audit", "verify", "--data-dir", str(data))
    assert status == 1 and "rewritten" in out, out


async def test_the_regulator_reads_the_signed_checkpoints_R22_R26(server, clinic: Clinic):
    from consult.trust import SM2PublicKey

    regulator = await clinic.person("regulator")
    status, out = await _cli("audit", "checkpoint", "--data-dir", str(server.config.data_dir))
    assert status == 0, out
    export = await regulator.ok("GET", "/exports/audit/checkpoints")
    assert export["verified"] is True and export["problems"] == []
    assert export["checkpoints"] and export["more"] is False
    public = SM2PublicKey.from_pem(export["public_key"].encode())
    assert public.key_id == export["key_id"] == export["checkpoints"][-1]["sig"]["key"]
    latest = export["checkpoints"][-1]["body"]
    assert export["anchored_seq"] == max(c["body"]["audit"]["seq"] for c in export["checkpoints"])
    assert latest["n"] == len(export["checkpoints"])
    page = await regulator.ok("GET", "/exports/audit/checkpoints?after_n=1&limit=1")
    assert [c["body"]["n"] for c in page["checkpoints"]] == [2]
    # others may not
    reply = await clinic.admin.call("GET", "/exports/audit/checkpoints")
    assert (reply.status, reply.code) == (403, "forbidden")
    # an off-host copy of the file and the public key: audit verify uses them as given
    data = server.config.data_dir
    copy, pem = data.parent / "offhost.jsonl", data.parent / "signing.pub.pem"
    shutil.copy(server.config.checkpoints, copy)
    pem.write_text(export["public_key"])
    offhost = ("--checkpoints", str(copy), "--public-key", str(pem))
    status, out = await _cli("audit", "verify", "--data-dir", str(data), *offhost)
    assert status == 0 and f"anchored at seq {export['anchored_seq']}" in out, out
    (data.parent / "junk.pem").write_text("not a key")
    bad = ("--public-key", str(data.parent / "junk.pem"))
    status, out = await _cli("audit", "verify", "--data-dir", str(data), *bad)
    assert status == 2 and out.startswith("error: key_invalid"), out  # no traceback
    # the chain's tail cut past the last checkpoint: the export says so
    anchored = export["anchored_seq"]
    async with server.app[DATABASE].session() as s, s.begin():
        await s.execute(text("DROP TRIGGER audit_events_no_delete"))
        await s.execute(text(f"DELETE FROM audit_events WHERE seq >= {anchored - 2}"))
    export = await regulator.ok("GET", "/exports/audit/checkpoints")
    assert export["verified"] is False
    assert [p["code"] for p in export["problems"]] == ["truncated"]
    status, out = await _cli("audit", "verify", "--data-dir", str(data), *offhost)
    assert status == 1 and "truncated" in out, out


async def test_a_session_purged_after_its_keep_until_date_is_not_missing_R23(
    server, clinic: Clinic
):
    """``recording purge`` enters a ``recording.purged`` event per session it removes: the
    walk from the chain to the disk then expects it gone."""
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    visit_id = (await booked_visit(clinic, doctor, nurse)).visit["id"]
    directory, _ = await _recorded_session(server, visit_id)
    room_id = directory.parent.name
    data = server.config.data_dir
    assert (await _cli("audit", "checkpoint", "--data-dir", str(data)))[0] == 0
    info = directory / "session.json"
    os.chmod(info, 0o644)
    info.write_text(json.dumps({**json.loads(info.read_text()), "keep_until": "2001-01-01"}))
    status, out = await _cli("recording", "purge", "--data-dir", str(data))
    assert status == 0 and "removed 1 session" in out, out
    assert not directory.exists()
    assert await _verify(data, room_id) == (2, set())  # nothing left, nothing missing
    export = await (await clinic.person("regulator")).ok(
        "GET", f"/exports/visits/{visit_id}/recordings"
    )
    assert export["verified"] is True and export["problems"] == []
