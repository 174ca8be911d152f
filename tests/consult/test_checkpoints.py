"""R24-R26: the audit chain anchored outside the database by signed checkpoints.

A hash chain alone lets a database owner cut its tail, or remove or edit events and recompute
every later digest, and still verify. Each case below verified before issue 13; now ``audit
verify`` names it with a stable code: ``truncated``, ``rewritten``. A checkpoint file that was
forged or thinned is named too, and so is a chat row deleted past the triggers. Old chains
(digest version 1, made before ``seq`` entered the digest) still verify after migration 0004.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from timestamping import make_authority, serve_authority

from consult import chat
from consult.actor import Actor
from consult.admin_commands import audit_checkpoint, audit_verify
from consult.audit import append, event_digest
from consult.audit_verify import verify_chain
from consult.checkpoints import CheckpointRefused, read_checkpoints, write_checkpoint
from consult.crypto import GENESIS_DIGEST, sm3_hex
from consult.db import Database
from consult.integrity import check_chat, verify_integrity
from consult.models import AuditEvent, ChatMessage
from consult.permissions import Role
from consult.sqltypes import UtcDateTime, new_id
from consult.trust import SM2Key, TimestampAuthority, load_certificates
from consult.visits import create_demo_visit

ACTOR = Actor(user_id=new_id(), role=Role.DOCTOR, session_id=new_id(), source_ip="10.0.0.7")


@pytest.fixture
def key() -> SM2Key:
    return SM2Key.generate()


async def _fill(db: Database, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        await append(db, "test.event", actor=ACTOR, object_type="thing", details={"n": n})


async def _events(db: Database) -> list[AuditEvent]:
    async with db.session() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


async def _as_dba(db: Database, *statements: str, table: str = "audit_events") -> None:
    """``statements`` with the append-only triggers out of the way, as a database owner could."""
    async with db.session() as session, session.begin():
        if db.dialect == "postgresql":
            await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        for statement in statements:
            await session.execute(text(statement))
        if db.dialect == "postgresql":
            await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


async def _rechain(db: Database) -> None:
    """Recompute every link and digest in ``seq`` order: the chain verifies again on its own."""
    events = await _events(db)
    prev = GENESIS_DIGEST
    statements = []
    for event in events:
        event.prev_digest = prev
        digest = event_digest(prev, event)
        statements.append(
            f"UPDATE audit_events SET prev_digest = '{prev}', digest = '{digest}' "
            f"WHERE seq = {event.seq}"
        )
        prev = digest
    await _as_dba(db, *statements)


async def _renumber_after(db: Database, removed: int) -> None:
    """Close the gap a deleted event left, one row at a time (primary key order)."""
    last = max(e.seq for e in await _events(db))
    await _as_dba(
        db,
        *(
            f"UPDATE audit_events SET seq = {seq - 1} WHERE seq = {seq}"
            for seq in range(removed + 1, last + 1)
        ),
    )


async def _verify(db: Database, path: Path, key: SM2Key) -> tuple[str, int]:
    return await audit_verify(db, path, key.public())


# --- The tamper cases -------------------------------------------------------------------------


async def test_r24_a_cut_last_event_is_named_truncated(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 8)
    await write_checkpoint(db, path, key)
    assert (await _verify(db, path, key))[1] == 0
    await _as_dba(db, "DELETE FROM audit_events WHERE seq = 8")
    assert (await verify_chain(db)).ok  # the chain alone does not show it
    out, status = await _verify(db, path, key)
    assert status == 1 and "truncated" in out and "at least 1 event" in out, out


async def test_r24_a_cut_of_a_hundred_events_is_named_truncated(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 130)
    await write_checkpoint(db, path, key)
    await _as_dba(db, "DELETE FROM audit_events WHERE seq > 30")
    assert (await verify_chain(db)).ok
    log = read_checkpoints(path, key.public())
    report = await verify_chain(db, anchors=log.anchors())
    assert (report.ok, report.problem, report.head_seq, report.anchored_seq) == (
        False,
        "truncated",
        30,
        130,
    )
    assert "at least 100 event(s)" in report.detail
    out, status = await _verify(db, path, key)
    assert status == 1 and "truncated" in out


async def test_r24_a_deleted_middle_event_with_the_chain_recomputed_is_named_rewritten(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 20)
    await write_checkpoint(db, path, key)
    await _fill(db, 5, first=20)
    await write_checkpoint(db, path, key)
    await _as_dba(db, "DELETE FROM audit_events WHERE seq = 7")
    await _renumber_after(db, 7)
    await _rechain(db)
    assert (await verify_chain(db)).ok  # a consistent rewrite: the chain alone verifies
    out, status = await _verify(db, path, key)
    assert status == 1 and "rewritten" in out, out
    report = await verify_chain(db, anchors=read_checkpoints(path, key.public()).anchors())
    assert (report.problem, report.broken_seq) == ("rewritten", 20)  # the first anchor after it


async def test_r24_an_edited_event_with_the_chain_recomputed_is_named_rewritten(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 12)
    await write_checkpoint(db, path, key)
    await _as_dba(db, "UPDATE audit_events SET result = 'denied' WHERE seq = 4")
    assert (await verify_chain(db)).problem == "altered"
    await _rechain(db)
    assert (await verify_chain(db)).ok
    report = await verify_chain(db, anchors=read_checkpoints(path, key.public()).anchors())
    assert (report.ok, report.problem, report.broken_seq) == (False, "rewritten", 12)
    out, status = await _verify(db, path, key)
    assert status == 1 and "rewritten" in out


async def test_r24_an_events_place_is_part_of_its_digest(scratch_db: Database) -> None:
    """Digest version 2 covers ``seq``: the same event at another place has another digest, so
    an exported event proves where in the chain it stood."""
    db = scratch_db
    await _fill(db, 3)
    event = (await _events(db))[1]
    assert event.digest_version == 2 and event_digest(event.prev_digest, event) == event.digest
    event.seq = 7
    assert event_digest(event.prev_digest, event) != event.digest


async def test_r26_the_checkpoint_writer_never_signs_a_rewritten_chain(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 6)
    await write_checkpoint(db, path, key)
    assert await write_checkpoint(db, path, key) is None  # the head did not move
    await _as_dba(db, "UPDATE audit_events SET action = 'x' WHERE seq = 2")
    await _rechain(db)
    with pytest.raises(CheckpointRefused):
        await write_checkpoint(db, path, key)
    out, status = await audit_checkpoint(db, path, key)
    assert status == 1 and out.startswith("error: checkpoint_refused")
    assert len(path.read_text().splitlines()) == 1


# --- The checkpoint file ----------------------------------------------------------------------


async def test_r26_checkpoints_are_signed_linked_and_name_sealed_recordings(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 3)
    visit_id = new_id()
    await append(
        db,
        "recording.sealed",
        actor_role="system",
        object_type="visit",
        object_id=visit_id,
        details={"session": "20261201T120000-abcdef", "head": "ab" * 32},
    )
    first = await write_checkpoint(db, path, key)
    assert first is not None
    assert first["body"]["recordings"] == [
        {"visit_id": visit_id, "session": "20261201T120000-abcdef", "head": "ab" * 32, "seq": 4}
    ]
    await _fill(db, 2, first=3)
    second = await write_checkpoint(db, path, key)
    assert second is not None and second["body"]["recordings"] == []
    assert second["body"]["n"] == 2 and second["body"]["audit"]["seq"] == 6
    log = read_checkpoints(path, key.public())
    assert log.problems == [] and [c.audit_seq for c in log.checkpoints] == [4, 6]
    assert log.recording_heads()[(visit_id, "20261201T120000-abcdef")].head == "ab" * 32
    assert second["body"]["prev"] == log.checkpoints[0].link
    # signed by another key: not an anchor
    stranger = SM2Key.generate()
    assert [p.code for p in read_checkpoints(path, stranger.public()).problems] == [
        "checkpoint_invalid",
        "checkpoint_invalid",
    ]


async def test_r26_a_forged_or_thinned_checkpoint_file_is_named(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    for n in range(3):
        await _fill(db, 2, first=2 * n)
        await write_checkpoint(db, path, key)
    lines = path.read_text().splitlines()
    # a rewritten head in a line: its signature fails
    forged = json.loads(lines[2])
    forged["body"]["audit"]["digest"] = "00" * 32
    (tmp_path / "forged.jsonl").write_text("\n".join([*lines[:2], json.dumps(forged)]) + "\n")
    log = read_checkpoints(tmp_path / "forged.jsonl", key.public())
    assert [(p.code, p.line) for p in log.problems] == [("checkpoint_invalid", 3)]
    # a line dropped from the middle: the next no longer links
    (tmp_path / "thinned.jsonl").write_text("\n".join([lines[0], lines[2]]) + "\n")
    log = read_checkpoints(tmp_path / "thinned.jsonl", key.public())
    assert [(p.code, p.line) for p in log.problems] == [("checkpoint_unlinked", 2)]
    out, status = await audit_verify(db, tmp_path / "thinned.jsonl", key.public())
    assert status == 1 and "checkpoint_unlinked" in out
    # garbage is a finding, never a traceback
    (tmp_path / "garbage.jsonl").write_bytes(b'{"body": 1}\n\xff\xfe\n[]\n')
    log = read_checkpoints(tmp_path / "garbage.jsonl", key.public())
    assert {p.code for p in log.problems} == {"checkpoint_invalid"} and not log.checkpoints


async def test_r26_checkpoints_carry_a_verified_rfc3161_timestamp(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    authority = make_authority(tmp_path / "tsa")
    roots = load_certificates(authority.ca_file.read_bytes())
    await _fill(db, 2)
    async with serve_authority(authority) as url:
        record = await write_checkpoint(db, path, key, TimestampAuthority(url))
    assert record is not None and record["tst"]
    log = read_checkpoints(path, key.public(), roots)
    assert log.problems == [] and log.checkpoints[0].stamped_at is not None
    # the authority gone: the checkpoint is still written, unstamped, and says why
    await _fill(db, 1, first=2)
    record = await write_checkpoint(
        db, path, key, TimestampAuthority("http://127.0.0.1:9/", timeout_s=2)
    )
    assert record is not None and record["tst"] is None
    assert record["tsa_error"] == "tsa_unreachable"
    # a stamp moved onto another line does not verify
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1]["tst"] = lines[0]["tst"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = read_checkpoints(path, key.public(), roots)
    assert [(p.code, p.line) for p in log.problems] == [("timestamp_invalid", 2)]
    assert base64.b64decode(lines[0]["tst"])  # the stored reply is DER, base64


# --- The chat record against the chain --------------------------------------------------------


async def test_r24_a_deleted_or_altered_chat_row_is_named(scratch_db: Database) -> None:
    db = scratch_db
    demo = await create_demo_visit(db)
    patient = Actor(user_id=demo.patient_id, role=Role.PATIENT, source_ip="192.0.2.2")
    sent = [
        await chat.send_message(db, patient, demo.room_id, text=f"第{n}条消息") for n in range(3)
    ]
    assert await check_chat(db) == []
    assert (await audit_verify(db))[1] == 0
    await _as_dba(db, f"DELETE FROM chat_messages WHERE id = '{sent[1].id}'", table="chat_messages")
    assert (await verify_chain(db)).ok  # the chain itself is intact
    findings = await check_chat(db)
    assert [(f.code, f.object_id) for f in findings] == [("chat_missing", sent[1].id)]
    out, status = await audit_verify(db)
    assert status == 1 and "chat_missing" in out
    # another text put in place of the first (encrypted properly, under the field key)
    forged = db.cipher.encrypt("改过的消息", f"chat_messages.text/{sent[0].id}")
    await _as_dba(
        db,
        f"UPDATE chat_messages SET text_enc = '{forged}' WHERE id = '{sent[0].id}'",
        table="chat_messages",
    )
    codes = {(f.code, f.object_id) for f in await check_chat(db)}
    assert ("chat_altered", sent[0].id) in codes
    # a row slipped in that no event records
    async with db.session() as session, session.begin():
        original = await session.get(ChatMessage, sent[2].id)
        assert original is not None
        session.add(
            ChatMessage(
                id=new_id(),
                room_id=original.room_id,
                seq=99,
                sender_id=original.sender_id,
                sender_role=original.sender_role,
                kind=original.kind,
                text_enc=None,
            )
        )
    assert "chat_unaudited" in {f.code for f in await check_chat(db)}
    report = await verify_integrity(db, None, None)
    assert not report.ok and "no message text" not in report.text()
    assert "改过" not in report.text() and "消息" not in report.text()


# --- Chains made before digest version 2 ------------------------------------------------------


def _v1_digest(prev: str, row: dict[str, object]) -> str:
    """The digest as the code before issue 13 made it: every field but ``seq``."""
    fields = {k: row[k] for k in row if k not in ("seq", "prev_digest", "digest")}
    fields["details"] = json.loads(str(row["details"]))
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sm3_hex(bytes.fromhex(prev) + canonical.encode())


async def test_r24_a_chain_made_before_version_2_still_verifies_after_migration(
    empty_db_url: str, tmp_path: Path, key: SM2Key
) -> None:
    """Events written under 0003 keep their digests (version 1); new ones are version 2; a
    version going back is ``altered``; a downgrade past 0004 is refused once version 2 exists."""
    from alembic import command

    from consult.migrate import alembic_config

    url = make_url(empty_db_url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)

    def migrate(connection: object, target: str, down: bool = False) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, target)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate, "0003_chat")
            prev = GENESIS_DIGEST
            for seq in range(1, 4):
                row: dict[str, object] = {
                    "seq": seq,
                    "id": new_id(),
                    "at": f"2026-11-30T08:00:0{seq}.000000+00:00",
                    "actor_id": None,
                    "actor_role": "system",
                    "action": "old.event",
                    "object_type": "thing",
                    "object_id": None,
                    "result": "ok",
                    "source_ip": None,
                    "details": json.dumps({"n": seq}, separators=(",", ":")),
                }
                digest = _v1_digest(prev, row)
                await connection.execute(
                    text(
                        "INSERT INTO audit_events (seq, id, at, actor_id, actor_role, action, "
                        "object_type, object_id, result, source_ip, details, prev_digest, "
                        "digest) VALUES (:seq, :id, :at, :actor_id, :actor_role, :action, "
                        ":object_type, :object_id, :result, :source_ip, :details, :prev, :digest)"
                    ).bindparams(bindparam("at", type_=UtcDateTime())),
                    {
                        **row,
                        "at": datetime.fromisoformat(str(row["at"])),
                        "prev": prev,
                        "digest": digest,
                    },
                )
                prev = digest
        db = Database(empty_db_url)  # as the server starts: migrates to head
        await db.start()
        try:
            assert (await verify_chain(db)).ok
            await append(db, "new.event", actor=ACTOR)
            events = await _events(db)
            assert [e.digest_version for e in events] == [1, 1, 1, 2]
            report = await verify_chain(db)
            assert report.ok and report.checked == 4
            await write_checkpoint(db, tmp_path / "c.jsonl", key)
            assert (await audit_verify(db, tmp_path / "c.jsonl", key.public()))[1] == 0
            await _as_dba(db, "UPDATE audit_events SET digest_version = 1 WHERE seq = 4")
            report = await verify_chain(db)
            assert (report.problem, report.broken_seq) == ("altered", 4)
            await _as_dba(db, "UPDATE audit_events SET digest_version = 2 WHERE seq = 4")
        finally:
            await db.close()
        async with engine.begin() as connection:
            with pytest.raises(RuntimeError, match="digest version 2"):
                await connection.run_sync(migrate, "0003_chat", True)
    finally:
        await engine.dispose()


async def test_r24_a_partial_walk_from_an_event_still_meets_the_anchor(
    scratch_db: Database, tmp_path: Path, key: SM2Key
) -> None:
    """From ``start_seq`` on (the regulator's export of one visit): a rewrite before it still
    changes the digest the checkpoint signed, and a cut tail is still short of it."""
    db, path = scratch_db, tmp_path / "checkpoints.jsonl"
    await _fill(db, 10)
    await write_checkpoint(db, path, key)
    anchors = read_checkpoints(path, key.public()).anchors()
    report = await verify_chain(db, anchors=anchors, start_seq=8)
    assert report.ok and report.checked == 3 and report.anchored_seq == 10
    await _as_dba(db, "UPDATE audit_events SET action = 'x' WHERE seq = 3")
    await _rechain(db)
    report = await verify_chain(db, anchors=anchors, start_seq=8)
    assert (report.problem, report.broken_seq) == ("rewritten", 10)
    await _as_dba(db, "DELETE FROM audit_events WHERE seq = 10")
    assert (await verify_chain(db, anchors=anchors, start_seq=8)).problem == "truncated"
