"""Chat over signaling (issue 6): a text-only visit (R1), history for late joiners and after a
reconnect (R22, R23), the filter's notice (R38), the recording hook, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from chat_client import ChatClient
from chat_images import jpeg_with_gps

from consult import sensitive_words
from consult.actor import Actor
from consult.permissions import Role
from consult.sqltypes import new_id
from web.keys import DATABASE


def _clients(server: Any, visit: Any) -> tuple[ChatClient, ChatClient]:
    return (
        ChatClient(server.url, visit.tokens["doctor"], visit.visit_id),
        ChatClient(server.url, visit.tokens["patient"], visit.visit_id),
    )


async def test_r1_text_only_visit_exchange_and_a_late_joiner_gets_everything_in_order(server):
    """No camera, no microphone: text and an image go both ways; a client that joins later (a
    second device with nothing saved) receives the whole history in order."""
    visit = await server.visit()
    doctor, patient = _clients(server, visit)
    late: ChatClient | None = None
    try:
        await doctor.connect()
        await doctor.say("您好，请描述一下症状。")
        await patient.connect()  # joins after the first message: it comes as history
        assert patient.history_seqs == [1]
        await patient.say("手臂上有红疹。")
        image = await patient.upload_json(jpeg_with_gps())
        ack = await patient.call("chat", {"image_id": image["id"], "text": "照片"})
        assert ack["ok"], ack
        assert ack["message"]["kind"] == "image" and ack["message"]["seq"] == 3
        await doctor.say("收到，我看一下。")
        for client in (doctor, patient):
            await client.wait_for_seq(4)
        assert (
            doctor.texts()
            == patient.texts()
            == [
                "您好，请描述一下症状。",
                "手臂上有红疹。",
                "照片",
                "收到，我看一下。",
            ]
        )
        assert [doctor.messages[s]["sender_role"] for s in range(1, 5)] == [
            "doctor",
            "patient",
            "patient",
            "doctor",
        ]

        # The doctor fetches the image with its room link's token; it is served safely.
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{server.url}/api/v1/chat/images/{image['id']}",
                headers={"Authorization": f"Bearer {visit.tokens['doctor']}"},
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/jpeg"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Content-Disposition"].startswith("inline;")
                assert b"Exif" not in await response.read()

        late = ChatClient(server.url, visit.tokens["doctor"], visit.visit_id)
        await late.connect()
        assert late.history_seqs == [1, 2, 3, 4]
        assert late.texts() == doctor.texts()
        assert late.messages[3]["image_id"] == image["id"]
    finally:
        for client in (doctor, patient, late):
            if client is not None:
                await client.close()


async def test_r23_a_reconnecting_participant_misses_nothing_and_gets_no_duplicate(server):
    visit = await server.visit()
    doctor, patient = _clients(server, visit)
    try:
        await doctor.connect()
        await patient.connect()
        for i in range(3):
            await doctor.say(f"第{i + 1}条")
        await patient.wait_for_seq(3)
        await patient.sio.disconnect()  # the connection drops mid-conversation
        for i in range(3, 6):
            await doctor.say(f"第{i + 1}条")
        await patient.connect()  # asks for everything after seq 3
        assert patient.history_seqs == [4, 5, 6]
        await doctor.say("第7条")
        await patient.wait_for_seq(7)
        assert patient.received == [1, 2, 3, 4, 5, 6, 7]  # nothing lost, nothing twice
        assert patient.texts() == [f"第{i}条" for i in range(1, 8)]

        # Again while the doctor keeps sending during the reconnect: live messages and the
        # history overlap, the page keeps each seq once and misses none.
        await patient.sio.disconnect()

        async def keep_sending() -> None:
            for i in range(8, 20):
                await doctor.say(f"第{i}条")

        sender = asyncio.ensure_future(keep_sending())
        await patient.connect()
        await sender
        await patient.catch_up()  # what a page does when it sees a gap
        await patient.wait_for_seq(19)
        assert sorted(patient.messages) == list(range(1, 20))
        assert patient.texts() == [f"第{i}条" for i in range(1, 20)]
    finally:
        for client in (doctor, patient):
            await client.close()


async def test_r38_a_blocked_message_gets_a_notice_and_the_recording_hook_no_text(server):
    """The sender is told (``sensitive_word``); nobody receives it; the hook sees the block
    without its text, and every sent message with its text."""
    db = server.app[DATABASE]
    word = f"禁词{new_id()[:4]}"
    operator = Actor(user_id=None, role=Role.OPERATOR, department_ids=frozenset({"d"}))
    await sensitive_words.add_words(db, operator, [word])
    recorded: list[tuple[str, str, dict[str, Any]]] = []

    async def on_record(room_id: str, event: str, data: dict[str, Any]) -> None:
        recorded.append((room_id, event, data))

    server.signaling.chat.on_record = on_record
    visit = await server.visit()
    doctor, patient = _clients(server, visit)
    try:
        await doctor.connect()
        await patient.connect()
        ack = await patient.call("chat", {"text": f"给我开点 {' '.join(word)} 吧"})
        assert ack == {
            "ok": False,
            "error": {"code": "sensitive_word", "message": ack["error"]["message"]},
        }
        sent = await patient.say("好的，谢谢医生")
        await doctor.wait_for_seq(1)
        assert doctor.texts() == ["好的，谢谢医生"]  # the blocked one never arrived
        assert [(v, e) for v, e, _ in recorded] == [
            (visit.room_id, "chat_blocked"),
            (visit.room_id, "chat_message"),
        ]
        blocked = recorded[0][2]
        assert set(blocked) == {"block_id", "sender_id", "sender_role", "word_count", "at"}
        assert word not in repr(blocked)
        assert recorded[1][2] == {
            "id": sent["id"],
            "seq": 1,
            "sender_id": sent["sender_id"],
            "sender_role": "patient",
            "kind": "text",
            "at": sent["at"],
            "text": "好的，谢谢医生",
            "image_id": None,
            "retracts_id": None,
        }
    finally:
        for client in (doctor, patient):
            await client.close()


async def test_bad_chat_input_gets_stable_codes(server):
    visit = await server.visit()
    doctor, patient = _clients(server, visit)
    try:
        await doctor.connect()
        await patient.connect()
        other = await server.visit()
        stranger = ChatClient(server.url, other.tokens["patient"], other.visit_id)
        await stranger.connect()
        foreign = await stranger.upload_json(jpeg_with_gps())
        await stranger.close()
        cases = [
            ("chat", "not an object", "bad_request"),
            ("chat", {"text": 42}, "bad_request"),
            ("chat", {"image_id": "../../etc/passwd"}, "bad_request"),
            ("chat", {}, "message_empty"),
            ("chat", {"text": "   "}, "message_empty"),
            ("chat", {"text": "x" * 2001}, "message_too_long"),
            ("chat", {"text": "a\x00b"}, "message_invalid_characters"),
            ("chat", {"image_id": new_id()}, "image_not_found"),
            ("chat", {"image_id": foreign["id"]}, "image_not_found"),  # another room's image
            ("chat", {"text": "y" * 70_000}, "message_too_large"),
            ("chat_history", {"after": -1}, "bad_request"),
            ("chat_history", {"after": "3"}, "bad_request"),
            ("chat_history", {"limit": 10_000}, "bad_request"),
            ("chat_retract", {}, "bad_request"),
            ("chat_retract", {"message_id": new_id()}, "message_not_found"),
        ]
        for event, payload, code in cases:
            ack = await patient.call(event, payload)
            assert not ack["ok"] and ack["error"]["code"] == code, (event, payload, ack)
            assert "Traceback" not in ack["error"]["message"]
        mine = await patient.say("说错了")
        retract = await doctor.call("chat_retract", {"message_id": mine["id"]})
        assert retract["error"]["code"] == "retract_not_allowed"
        retract = await patient.call("chat_retract", {"message_id": mine["id"]})
        assert retract["ok"] and retract["message"]["retracts_id"] == mine["id"]
        await doctor.wait_for_seq(2)
        assert doctor.messages[2]["kind"] == "retraction"
    finally:
        for client in (doctor, patient):
            await client.close()
