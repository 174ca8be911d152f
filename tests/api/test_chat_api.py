"""Chat over REST (issue 6): images, history, export, the word list; who may read what."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from apiclient import Clinic, Person
from chat_client import ChatClient
from chat_images import fake_jpeg_executable, jpeg, jpeg_with_gps, png_bomb
from client import Participant
from people import CONDITION, booked_visit, patient_with_diagnosis, sign, verified_doctor
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from web.keys import DATABASE


async def _events(server, object_id: str) -> list[AuditEvent]:
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == object_id).order_by(AuditEvent.seq)
        )
        return list(rows.all())


async def _in_room(clinic: Clinic) -> tuple[Person, Person, str]:
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    visit_id = booked.visit["id"]
    await sign(booked.patient, visit_id, "risk_notice", "consent")
    await booked.patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    return doctor, booked.patient, visit_id


async def test_participants_share_images_outsiders_are_refused_and_audited(
    any_server, any_clinic: Clinic
):
    """With sessions (the portal) or the room link's token; on SQLite and PostgreSQL."""
    server, clinic = any_server, any_clinic
    doctor, patient, visit_id = await _in_room(clinic)
    uploaded = await patient.call(
        "POST",
        f"/visits/{visit_id}/chat/images",
        raw=jpeg_with_gps(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert uploaded.status == 201, uploaded
    image_id = uploaded.body["id"]
    join = await doctor.ok("POST", f"/visits/{visit_id}/join-token")
    room = ChatClient(server.url, join["token"], visit_id)
    try:
        await room.connect()
        await room.call("chat", {"text": "看到了", "image_id": image_id})
    finally:
        await room.close()

    for reader in (doctor, patient):
        page = await reader.ok("GET", f"/visits/{visit_id}/chat/messages")
        assert [(m["seq"], m["text"], m["image_id"]) for m in page["messages"]] == [
            (1, "看到了", image_id)
        ]
        reply = await reader.call("GET", f"/chat/images/{image_id}")
        assert reply.status == 200
    # The room link works for the room's chat routes only.
    reply = await clinic.api.call("GET", f"/chat/images/{image_id}/thumbnail", token=join["token"])
    assert reply.status == 200
    reply = await clinic.api.call("GET", f"/visits/{visit_id}", token=join["token"])
    assert (reply.status, reply.code) == (401, "session_invalid"), reply

    other_doctor = await verified_doctor(clinic, name="李医生")
    other_patient = await clinic.person("patient")
    nurse = await clinic.person("nurse")
    for outsider in (other_doctor, other_patient):
        for path in (f"/visits/{visit_id}/chat/messages", f"/chat/images/{image_id}"):
            reply = await outsider.call("GET", path)
            assert (reply.status, reply.code) == (403, "not_a_participant"), (path, reply)
        reply = await outsider.call("GET", f"/visits/{visit_id}/chat/export")
        assert (reply.status, reply.code) == (403, "not_a_participant")
    reply = await nurse.call("GET", f"/visits/{visit_id}/chat/messages")
    assert (reply.status, reply.code) == (403, "forbidden")
    denied = [
        (e.action, e.actor_id)
        for e in await _events(server, join["room_id"]) + await _events(server, image_id)
        if e.result == "denied"
    ]
    assert ("chat.read", other_doctor.user_id) in denied
    assert ("chat.view_image", other_patient.user_id) in denied
    assert ("chat.export", other_patient.user_id) in denied
    views = [e for e in await _events(server, image_id) if e.action == "chat.view_image"]
    assert {e.result for e in views} == {"ok", "denied"}
    assert (await verify_chain(server.app[DATABASE])).ok


async def test_uploads_are_checked_and_served_safely(server, clinic: Clinic):
    doctor, patient, visit_id = await _in_room(clinic)
    path = f"/visits/{visit_id}/chat/images"
    for data, status, code in [
        (fake_jpeg_executable(), 422, "image_type_unsupported"),
        (png_bomb(), 422, "image_too_many_pixels"),
        (b"\x00" * (10 * 1024 * 1024 + 1), 413, "payload_too_large"),
    ]:
        reply = await patient.call("POST", path, raw=data, headers={"Content-Type": "image/jpeg"})
        assert (reply.status, reply.code) == (status, code), reply
    reply = await patient.call("POST", path, raw=b"", headers={"Content-Type": "image/jpeg"})
    assert reply.status == 400
    image = await patient.ok("POST", path, raw=jpeg(), headers={"Content-Type": "text/html"})
    async with clinic.api.http.get(
        f"{clinic.api.base_url}/api/v1/chat/images/{image['id']}",
        headers={"Authorization": f"Bearer {doctor.token}"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"  # from the bytes, not the upload
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"] == f'inline; filename="{image["id"]}.jpeg"'
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


async def test_r22_r23_export_json_and_html_audited(server, clinic: Clinic):
    doctor, patient, visit_id = await _in_room(clinic)
    image = await patient.ok("POST", f"/visits/{visit_id}/chat/images", raw=jpeg())
    join = await patient.ok("POST", f"/visits/{visit_id}/join-token")
    room = ChatClient(server.url, join["token"], visit_id)
    try:
        await room.connect()
        await room.say("<script>alert(1)</script> 头疼")
        await room.call("chat", {"image_id": image["id"]})
    finally:
        await room.close()
    exported = await doctor.ok("GET", f"/visits/{visit_id}/chat/export")
    assert [m["seq"] for m in exported["messages"]] == [1, 2]
    assert exported["images"][0]["id"] == image["id"]
    async with clinic.api.http.get(
        f"{clinic.api.base_url}/api/v1/visits/{visit_id}/chat/export.html",
        headers={"Authorization": f"Bearer {patient.token}"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Content-Disposition"].startswith("attachment;")
        page = await response.text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 头疼" in page and "<script>" not in page
    assert "data:image/jpeg;base64," in page
    # a readable record (issue 12): who wrote each line by name, in Beijing time, not UTC
    me = await patient.ok("GET", "/me")
    assert f"<td>{me['display_name']}（患者 Patient）</td>" in page, page
    said_at = datetime.fromisoformat(exported["messages"][0]["at"])
    beijing = said_at.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    assert f"<td>{beijing}</td>" in page and "UTC</td>" not in page, page
    formats = [
        json.loads(e.details)["format"]
        for e in await _events(server, join["room_id"])
        if e.action == "chat.export"
    ]
    assert formats == ["json", "html"]


async def test_r38_operators_keep_the_word_list_over_rest(server, clinic: Clinic):
    operator = await clinic.person("operator")
    doctor = await clinic.person("doctor")
    added = await operator.ok("POST", "/sensitive-words", {"word": "ＴＥＳＴ词"})
    assert added["added"][0]["normalized"] == "test词"
    imported = await operator.ok(
        "POST", "/sensitive-words/import", {"words": ["test 詞", "另一个", "另 一 個"]}
    )
    assert (len(imported["added"]), imported["already_listed"]) == (1, 2)
    listed = await operator.ok("GET", "/sensitive-words")
    assert {w["normalized"] for w in listed["words"]} >= {"test词", "另一个"}
    word_id = added["added"][0]["id"]
    reply = await operator.call("DELETE", f"/sensitive-words/{word_id}")
    assert reply.status == 204
    reply = await operator.call("DELETE", f"/sensitive-words/{word_id}")
    assert (reply.status, reply.code) == (404, "word_not_found")
    reply = await operator.call("POST", "/sensitive-words", {"word": "。。"})
    assert (reply.status, reply.code) == (422, "word_invalid")
    reply = await doctor.call("GET", "/sensitive-words")
    assert (reply.status, reply.code) == (403, "forbidden")


async def test_r1_a_text_visit_links_to_a_room_without_camera(server, clinic: Clinic):
    """The join token's room_url of a text visit opens the room in text mode (no getUserMedia)."""
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient = await patient_with_diagnosis(clinic, nurse)
    visit = await patient.ok(
        "POST",
        "/visits",
        {
            "patient_id": patient.extra["record"]["id"],
            "doctor_id": doctor.user_id,
            "mode": "text",
            "condition_code": CONDITION,
        },
    )
    join = await doctor.ok("POST", f"/visits/{visit['id']}/join-token")
    assert join["room_url"] == f"/room?visit={visit['id']}&mode=text#token={join['token']}"
    video_doctor, _, video_visit = await _in_room(clinic)
    join = await video_doctor.ok("POST", f"/visits/{video_visit}/join-token")
    assert "mode=" not in join["room_url"]


async def test_a_consultation_rooms_chat_is_served_by_the_room(server, world) -> None:  # type: ignore[no-untyped-def]
    """The chat is the room's (issue 11): a consultation's room, which has no visit, uploads,
    reads and exports its chat at ``/rooms/{room_id}/chat/...`` with the room link's token (the
    page used to post its pictures to ``/visits/null/...``); a token of another room and an
    outsider are refused by the policy."""
    w = world
    (expert,) = w.experts[:1]
    cid = (await w.doctor.ok("POST", "/consultations", w.request()))["id"]
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    await expert.ok("POST", f"/invitations/{invitation['id']}/accept")
    room_id = (await w.doctor.ok("POST", f"/consultations/{cid}/start"))["room_id"]
    host = (await w.doctor.ok("POST", f"/consultations/{cid}/join-token"))["token"]
    guest = (await expert.ok("POST", f"/consultations/{cid}/join-token"))["token"]
    api = w.clinic.api

    uploaded = await api.call(
        "POST",
        f"/rooms/{room_id}/chat/images",
        raw=jpeg(),
        headers={"Content-Type": "image/jpeg"},
        token=host,
    )
    assert uploaded.status == 201, uploaded
    room = Participant(server.url, host, "", room_id=room_id)
    try:
        await room.connect()
        await room.join()
        sent = await room.call("chat", {"text": "请看片子", "image_id": uploaded.body["id"]})
        assert sent["ok"], sent
    finally:
        await room.close()
    for token in (host, guest):
        page = await api.call("GET", f"/rooms/{room_id}/chat/messages", token=token)
        assert page.status == 200, page
        assert [(m["text"], m["image_id"]) for m in page.body["messages"]] == [
            ("请看片子", uploaded.body["id"])
        ]
    exported = await w.doctor.ok("GET", f"/rooms/{room_id}/chat/export")
    assert [m["text"] for m in exported["messages"]] == ["请看片子"]

    _doctor, _patient, visit_id = await _in_room(w.clinic)
    visit_room = (await _doctor.ok("POST", f"/visits/{visit_id}/join-token"))["room_id"]
    reply = await api.call("GET", f"/rooms/{visit_room}/chat/messages", token=host)
    assert (reply.status, reply.code) == (403, "not_a_participant"), reply
    outsider = await w.clinic.person("patient")
    reply = await outsider.call("GET", f"/rooms/{room_id}/chat/messages")
    assert (reply.status, reply.code) == (403, "not_a_participant"), reply
