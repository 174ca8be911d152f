"""A text-only visit's dialogue is kept beside its media: on the recording's timeline, chained,
named in the manifest (R22, R23), its texts SM4-encrypted (R36); a blocked message's text is
not there at all (R38)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_client import ChatClient
from harness import start_server
from peers import wait_for
from recording_helpers import sealed_session

from consult import sensitive_words
from consult.actor import Actor
from consult.audit_verify import events_for
from consult.crypto import FieldCipher, FieldDecryptError
from consult.db import Database
from consult.permissions import Role
from recording import RecordingStore, verify_room
from recording.session import timeline_text_context
from web.keys import DATABASE


async def test_chat_goes_onto_the_recording_timeline_R22_R23(tmp_path: Path) -> None:
    server = await start_server(tmp_path, recording_composite=True)
    try:
        operator = Actor(user_id=None, role=Role.OPERATOR, department_ids=frozenset({"d"}))
        await sensitive_words.add_words(server.app[DATABASE], operator, ["禁词甲"])
        visit = await server.visit()
        doctor = ChatClient(server.url, visit.tokens["doctor"], visit.visit_id)
        patient = ChatClient(server.url, visit.tokens["patient"], visit.visit_id)
        await doctor.connect()
        await patient.connect()
        first = await patient.say("医生您好，我头痛三天了")
        blocked = await patient.call("chat", {"text": "能不能开点 禁 词 甲"})
        assert blocked["ok"] is False and blocked["error"]["code"] == "sensitive_word"
        second = await doctor.say("请描述一下疼痛的位置")
        await patient.wait_for_seq(2)
        await doctor.close()
        await patient.close()
        session, manifest = await sealed_session(server.config.recordings, visit.room_id)
        # no media, no playback file: the timeline is the record
        await wait_for(lambda: (session / "composite.json").exists(), timeout=10)
        info = json.loads((session / "composite.json").read_text())
        assert info["skipped"] == "no_media" and not (session / "composite.mp4").exists()
    finally:
        await server.stop()
    raw = (session / "timeline.jsonl").read_text()
    events = [json.loads(line) for line in raw.splitlines()]
    chat = [e for e in events if e["event"].startswith("chat_")]
    # R36: the texts are SM4-encrypted at rest, bound to their room, session and message
    assert "头痛" not in raw and "疼痛" not in raw and all("text" not in e for e in chat)
    cipher = FieldCipher(server.config.field_secret())

    def opened(event: dict) -> str | None:
        if "text_enc" not in event:
            return None
        context = timeline_text_context(visit.room_id, session.name, event["id"])
        return cipher.decrypt(event["text_enc"], context)

    assert [(e["event"], e.get("seq"), opened(e)) for e in chat] == [
        ("chat_message", 1, "医生您好，我头痛三天了"),
        ("chat_blocked", None, None),
        ("chat_message", 2, "请描述一下疼痛的位置"),
    ]
    with pytest.raises(FieldDecryptError):  # a sealed text moved onto another message's line
        cipher.decrypt(
            chat[0]["text_enc"], timeline_text_context(visit.room_id, session.name, chat[2]["id"])
        )
    # the operator reads it on the server: opened, and the read is audited
    done = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "teleconsult"), "recording", "timeline",
         visit.room_id, session.name, "--data-dir", str(server.config.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e.get("text") for e in printed if e["event"] == "chat_message"] == [
        "医生您好，我头痛三天了",
        "请描述一下疼痛的位置",
    ]
    db = Database(server.config.database)
    await db.start()
    try:
        reads = [e for e in await events_for(db, visit.room_id) if e.action.endswith("_read")]
    finally:
        await db.close()
    assert [(e.action, json.loads(e.details)["session"]) for e in reads] == [
        ("recording.timeline_read", session.name)
    ]
    assert chat[0]["id"] == first["id"] and chat[2]["id"] == second["id"]
    assert "禁" not in json.dumps(chat[1], ensure_ascii=False)
    assert manifest["timeline"]["events"] == len(events)
    assert manifest["tracks"] == []  # text only: no camera, no microphone (R1)
    report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
    assert report.ok, report.describe()
