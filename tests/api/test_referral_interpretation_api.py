"""After the report (issue 14 item 7) over the REST API and /updates, on SQLite and PostgreSQL:
R17 online referral to the invited institution (requested -> accepted / declined / cancelled)
and R18 report interpretation requests (asked -> answered in writing; asked -> scheduled call
with join tokens -> answered), their refusals with stable codes, the pushes to the parties (and
to nobody else), the audit chain, and what the patient and the expert see (R37)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from apiclient import Clinic, Person
from client import Participant
from consultation_world import PIN, World, department, two_institutions
from harness import Server, start_server
from peers import wait_for
from people import new_id_number
from signing_ca import SigningCa, make_sm2_ca
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from web.keys import DATABASE


@pytest.fixture(params=["sqlite", "postgresql"])
async def ca_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The server with a signing CA (reports are signed before they are issued)."""
    ca: SigningCa = make_sm2_ca(tmp_path / "ca")
    settings: dict[str, Any] = {"signing_ca_cert_file": ca.cert, "signing_ca_key_file": ca.key}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("pg_database_url")
    server = await start_server(tmp_path, **settings)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def world(ca_server: Server) -> AsyncIterator[World]:
    clinic = await Clinic.open(ca_server)
    try:
        yield await two_institutions(clinic, experts=2)
    finally:
        await clinic.close()


REPORT = {
    "findings": "冠脉 CTA：前降支近段狭窄约 80%",
    "opinion": "冠心病，稳定型心绞痛",
    "treatment_plan": "建议上级医院心内科介入评估",
    "medication_advice": "阿司匹林 100 mg 每日一次",
    "referral_advice": "转上级医院心内科",
}


async def patient_with_record(w: World, name: str) -> tuple[Person, str]:
    """A patient account and its record, registered at the grassroots clinic's desk."""
    person = await w.clinic.person("patient", name=name)
    body = {"name": name, "id_number": new_id_number("19670304"), "user_id": person.user_id}
    record = await w.nurse.ok("POST", "/patients", body)
    return person, str(record["id"])


async def accepted_request(w: World, record_id: str) -> str:
    """Drafted, submitted, approved (sent), the first expert invited and accepted."""
    cid = str((await w.doctor.ok("POST", "/consultations", w.request(patient_id=record_id)))["id"])
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": w.experts[0].user_id}
    )
    await w.experts[0].ok("POST", f"/invitations/{invitation['id']}/accept")
    return cid


async def issue_report(w: World, cid: str) -> str:
    """The accepted expert writes, signs with its PIN and issues the report (R13)."""
    expert = w.experts[0]
    report = await expert.ok("PUT", f"/consultations/{cid}/report", REPORT)
    await expert.ok("POST", f"/reports/{report['id']}/sign", {"pin": PIN})
    issued = await expert.ok("POST", f"/reports/{report['id']}/issue")
    assert issued["state"] == "issued"
    return str(report["id"])


async def watch(server: Server, person: Person, pushed: list[dict[str, Any]]) -> Any:
    """``person``'s /updates socket; its ``consultation_changed`` pushes go to ``pushed``."""
    updates = socketio.AsyncClient(reconnection=False)
    updates.on("consultation_changed", pushed.append, namespace="/updates")
    await updates.connect(
        server.url,
        namespaces=["/updates"],
        auth={"session": person.token},
        transports=["websocket"],
        wait_timeout=5,
    )
    return updates


async def audit_of(server: Server, *object_ids: str) -> list[tuple[str, str, str | None]]:
    """``(action, result, code)`` of the events on these objects, in order."""
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.object_id.in_(object_ids)).order_by(AuditEvent.seq)
        )
        return [
            (r.action, r.result, json.loads(r.details).get("code") if r.details else None)
            for r in rows
        ]


def code(reply: Any) -> tuple[int, str | None]:
    return reply.status, reply.code


def pushed_states(pushed: list[dict[str, Any]], machine: str, object_id: str) -> list[str]:
    return [p["state"] for p in pushed if p["machine"] == machine and p["id"] == object_id]


async def test_r17_referral_after_the_report_answered_by_the_invited_centre(
    ca_server: Server, world: World
) -> None:
    w = world
    expert = w.experts[0]
    patient, record = await patient_with_record(w, "赵某")
    stranger, _ = await patient_with_record(w, "钱某")
    cid = await accepted_request(w, record)

    # Not before the report is issued.
    early = await w.doctor.call("POST", f"/consultations/{cid}/referrals", {"reason": "介入治疗"})
    assert code(early) == (409, "consultation_not_reported"), early
    report_id = await issue_report(w, cid)

    heard: dict[str, list[dict[str, Any]]] = {"doctor": [], "centre": [], "patient": []}
    heard["stranger"] = []
    sockets = [
        await watch(ca_server, w.doctor, heard["doctor"]),
        await watch(ca_server, w.up_centre, heard["centre"]),
        await watch(ca_server, patient, heard["patient"]),
        await watch(ca_server, stranger, heard["stranger"]),
    ]
    try:
        # Only the requesting doctor refers: not the expert, not another institution's doctor.
        for person in (expert, w.junior):
            refused = await person.call(
                "POST", f"/consultations/{cid}/referrals", {"reason": "介入治疗"}
            )
            assert code(refused) == (403, "not_your_consultation"), refused
        by_centre = await w.up_centre.call(
            "POST", f"/consultations/{cid}/referrals", {"reason": "介入治疗"}
        )
        assert code(by_centre) == (403, "forbidden"), by_centre  # R34: the role table
        # The department must be the invited institution's.
        wrong = await w.doctor.call(
            "POST",
            f"/consultations/{cid}/referrals",
            {
                "reason": "介入治疗",
                "target_department_id": await department(w.clinic, w.down_id, "内科"),
            },
        )
        assert code(wrong) == (422, "invalid_input"), wrong

        # R17: the referral, with the issued report by reference, to a department upstream.
        referral = await w.doctor.ok(
            "POST",
            f"/consultations/{cid}/referrals",
            {"reason": "冠脉狭窄 80%，需介入治疗", "target_department_id": w.clinic.department_id},
        )
        rid = referral["id"]
        assert referral["state"] == "requested" and referral["report_id"] == report_id
        assert referral["target_institution_id"] == w.up_id
        assert referral["target_department_name"]
        assert referral["institution_name"] == "青山镇卫生院"
        twice = await w.doctor.call(
            "POST", f"/consultations/{cid}/referrals", {"reason": "再次转诊"}
        )
        assert code(twice) == (409, "referral_open"), twice

        # The invited centre's inbox, the referring doctor's list, the patient's page.
        inbox = (await w.up_centre.ok("GET", "/referrals"))["referrals"]
        assert [(r["id"], r["state"]) for r in inbox] == [(rid, "requested")]
        assert "invitee_centre" in inbox[0]["sides"]
        assert "赵某" not in json.dumps(inbox, ensure_ascii=False)  # R37
        assert [r["id"] for r in (await w.doctor.ok("GET", "/referrals"))["referrals"]] == [rid]
        (mine,) = (await patient.ok("GET", "/me/referrals"))["referrals"]
        assert (mine["id"], mine["state"], mine["reason"]) == (rid, "requested", referral["reason"])
        assert mine["target_institution_name"] == referral["target_institution_name"]
        assert (await stranger.ok("GET", "/me/referrals"))["referrals"] == []
        staff_mine = await w.doctor.call("GET", "/me/referrals")
        assert code(staff_mine) == (403, "forbidden"), staff_mine

        # Answers: the referring side's centre may read but not answer; a decline needs its
        # reason; the invited centre accepts with a time; then it is answered for good.
        foreign = await w.down_centre.call("POST", f"/referrals/{rid}/accept", {})
        assert code(foreign) == (403, "not_your_consultation"), foreign
        bare = await w.up_centre.call("POST", f"/referrals/{rid}/decline", {"reason": "  "})
        assert code(bare) == (422, "referral_decline_reason_required"), bare
        accepted = await w.up_centre.ok(
            "POST",
            f"/referrals/{rid}/accept",
            {
                "proposed_time": "2030-02-01T01:30:00+00:00",
                "note": "请携带既往检查资料到心内科门诊",
            },
        )
        assert accepted["state"] == "accepted"
        assert accepted["proposed_time"].startswith("2030-02-01T01:30:00")
        for person, path, body in (
            (w.up_centre, "accept", {}),
            (w.up_centre, "decline", {"reason": "床位已满"}),
            (w.doctor, "cancel", None),
        ):
            again = await person.call("POST", f"/referrals/{rid}/{path}", body)
            assert code(again) == (409, "referral_answered"), again
        (mine,) = (await patient.ok("GET", "/me/referrals"))["referrals"]
        assert (
            mine["state"] == "accepted" and mine["answer_note"] == "请携带既往检查资料到心内科门诊"
        )
        assert mine["proposed_time"].startswith("2030-02-01T01:30:00")

        # A second referral: cancelled by its doctor; a third: declined with its reason.
        second = await w.doctor.ok(
            "POST", f"/consultations/{cid}/referrals", {"reason": "复查后再转诊"}
        )
        cancelled = await w.doctor.ok("POST", f"/referrals/{second['id']}/cancel")
        assert cancelled["state"] == "cancelled"
        third = await w.doctor.ok("POST", f"/consultations/{cid}/referrals", {"reason": "转外科"})
        declined = await w.up_centre.ok(
            "POST", f"/referrals/{third['id']}/decline", {"reason": "本院心外科暂停收治"}
        )
        assert (declined["state"], declined["decline_reason"]) == ("declined", "本院心外科暂停收治")
        states = [
            (r["reason"], r["state"])
            for r in (await patient.ok("GET", "/me/referrals"))["referrals"]
        ]
        assert sorted(states) == sorted(
            [
                ("冠脉狭窄 80%，需介入治疗", "accepted"),
                ("复查后再转诊", "cancelled"),
                ("转外科", "declined"),
            ]
        )

        # Pushed to the referring doctor, the invited centre and the patient; not to others.
        for who in ("doctor", "centre", "patient"):
            await wait_for(
                lambda who=who: (
                    pushed_states(heard[who], "referral", third["id"]) == ["requested", "declined"]
                ),
                timeout=10,
                message=lambda who=who: f"{who} heard {heard[who]}",
            )
            assert pushed_states(heard[who], "referral", rid) == ["requested", "accepted"]
            assert pushed_states(heard[who], "referral", second["id"]) == ["requested", "cancelled"]
        assert heard["stranger"] == []
    finally:
        for s in sockets:
            await s.disconnect()

    # Audited: each move, and each refusal with its code; the chain holds.
    events = await audit_of(ca_server, cid, rid, second["id"], third["id"])
    ok = [a for a, result, _ in events if result == "ok"]
    assert ok.count("referral.create") == 3
    assert {"referral.accept", "referral.decline", "referral.cancel"} <= set(ok)
    refused = {(a, c) for a, result, c in events if result != "ok"}
    assert {
        ("referral.create", "consultation_not_reported"),
        ("referral.create", "not_your_consultation"),
        ("referral.create", "referral_open"),
        ("referral.accept", "not_your_consultation"),
        ("referral.decline", "referral_decline_reason_required"),
        ("referral.accept", "referral_answered"),
        ("referral.decline", "referral_answered"),
        ("referral.cancel", "referral_answered"),
    } <= refused, refused
    assert (await verify_chain(ca_server.app[DATABASE])).ok


async def test_r18_interpretation_answered_in_writing_and_in_a_video_call(
    ca_server: Server, world: World
) -> None:
    w = world
    author, other_expert = w.experts
    patient, record = await patient_with_record(w, "赵某")
    stranger, _ = await patient_with_record(w, "钱某")
    cid = await accepted_request(w, record)
    early = await patient.call(
        "POST", f"/consultations/{cid}/interpretations", {"question": "报告是什么意思？"}
    )
    assert code(early) == (409, "consultation_not_reported"), early
    report_id = await issue_report(w, cid)

    heard: dict[str, list[dict[str, Any]]] = {"patient": [], "author": [], "other": []}
    heard["stranger"] = []
    sockets = [
        await watch(ca_server, patient, heard["patient"]),
        await watch(ca_server, author, heard["author"]),
        await watch(ca_server, other_expert, heard["other"]),
        await watch(ca_server, stranger, heard["stranger"]),
    ]
    try:
        # Only the consultation's patient (or its requesting doctor) asks.
        refused = await stranger.call(
            "POST", f"/consultations/{cid}/interpretations", {"question": "我也想问"}
        )
        assert code(refused) == (403, "not_your_consultation"), refused
        # R18, in writing: the patient asks; the expert who wrote the report is named.
        asked = await patient.ok(
            "POST",
            f"/consultations/{cid}/interpretations",
            {"question": "“前降支近段狭窄约 80%”严重吗？"},
        )
        iid = asked["id"]
        assert (asked["state"], asked["expert_id"], asked["report_id"]) == (
            "asked",
            author.user_id,
            report_id,
        )
        assert asked["asked_by_patient"] is True
        # The expert's inbox: the question, the report, the patient's age, never its name (R37).
        (item,) = (await author.ok("GET", "/interpretations"))["interpretations"]
        assert item["id"] == iid and item["sides"] == ["expert"]
        assert item["report"] == REPORT and item["patient_age"] is not None
        assert "赵某" not in json.dumps(item, ensure_ascii=False)
        assert (await other_expert.ok("GET", "/interpretations"))["interpretations"] == []
        not_named = await other_expert.call(
            "POST", f"/interpretations/{iid}/answer", {"answer": "不严重"}
        )
        assert code(not_named) == (403, "not_your_consultation"), not_named
        empty = await author.call("POST", f"/interpretations/{iid}/answer", {"answer": " "})
        assert code(empty) == (422, "invalid_input"), empty
        answer = "狭窄 80% 属于重度，建议尽快到上级医院心内科评估是否需要支架治疗。"
        answered = await author.ok("POST", f"/interpretations/{iid}/answer", {"answer": answer})
        assert (answered["state"], answered["answer"], answered["mode"]) == (
            "answered",
            answer,
            "text",
        )
        again = await author.call("POST", f"/interpretations/{iid}/answer", {"answer": "补充"})
        assert code(again) == (409, "interpretation_answered"), again
        (mine,) = (await patient.ok("GET", "/me/interpretations"))["interpretations"]
        assert (mine["state"], mine["answer"], mine["expert_name"]) == (
            "answered",
            answer,
            "张主任",
        )
        assert (await stranger.ok("GET", "/me/interpretations"))["interpretations"] == []

        # By video: the doctor asks for the patient; the invited centre names another expert
        # (R12 checked), who schedules a video call: the room opens for the three of them.
        for_patient = await w.doctor.ok(
            "POST", f"/consultations/{cid}/interpretations", {"question": "请向患者解释治疗方案"}
        )
        vid = for_patient["id"]
        assert for_patient["asked_by_patient"] is False
        junior = await w.up_centre.call(
            "POST", f"/interpretations/{vid}/assign", {"expert_id": w.junior.user_id}
        )
        assert code(junior) == (409, "expert_not_qualified"), junior
        by_doctor = await w.doctor.call(
            "POST", f"/interpretations/{vid}/assign", {"expert_id": other_expert.user_id}
        )
        assert code(by_doctor) == (403, "forbidden"), by_doctor
        assigned = await w.up_centre.ok(
            "POST", f"/interpretations/{vid}/assign", {"expert_id": other_expert.user_id}
        )
        assert (assigned["state"], assigned["expert_id"]) == ("asked", other_expert.user_id)
        stale = await author.call("POST", f"/interpretations/{vid}/schedule", {"mode": "video"})
        assert code(stale) == (403, "not_your_consultation"), stale
        scheduled = await other_expert.ok(
            "POST", f"/interpretations/{vid}/schedule", {"mode": "video"}
        )
        assert (scheduled["state"], scheduled["mode"]) == ("scheduled", "video")
        room_id = scheduled["room_id"]
        assert room_id
        mine = {
            i["id"]: i for i in (await patient.ok("GET", "/me/interpretations"))["interpretations"]
        }
        assert (mine[vid]["state"], mine[vid]["room_open"]) == ("scheduled", True)

        # Join tokens from the room's policy: the expert hosts, the patient and its doctor join.
        tokens = {}
        for person, role in ((other_expert, "doctor"), (patient, "patient"), (w.doctor, "inviter")):
            reply = await person.ok("POST", f"/interpretations/{vid}/join-token")
            assert (reply["role"], reply["room_id"]) == (role, room_id), reply
            tokens[role] = reply["token"]
        for outsider in (stranger, author):
            denied = await outsider.call("POST", f"/interpretations/{vid}/join-token")
            assert code(denied) == (403, "not_a_participant"), denied
        people = [
            Participant(ca_server.url, tokens[r], "", room_id=room_id)
            for r in ("doctor", "patient")
        ]
        left: list[dict[str, Any]] = []
        try:
            for p in people:
                p.on("room_left", left.append)
                await p.connect()
                await p.join()
            await wait_for(
                lambda: (
                    sorted(x["room_role"] for x in people[0].participants) == ["doctor", "patient"]
                ),
                timeout=10,
                message=lambda: f"participants: {people[0].participants}",
            )
            # Answered after the call (a summary): the room ends, its sockets are told.
            done = await other_expert.ok(
                "POST", f"/interpretations/{vid}/answer", {"answer": "已视频讲解，建议介入治疗"}
            )
            assert done["state"] == "answered"
            await wait_for(lambda: len(left) == 2, timeout=10, message=lambda: f"room_left: {left}")
            assert {(x["reason"], x["room"], x["interpretation"]) for x in left} == {
                ("ended", room_id, vid)
            }
        finally:
            for p in people:
                await p.close()
        closed = await patient.call("POST", f"/interpretations/{vid}/join-token")
        assert code(closed) == (409, "visit_closed"), closed
        mine = {
            i["id"]: i for i in (await patient.ok("GET", "/me/interpretations"))["interpretations"]
        }
        assert (mine[vid]["state"], mine[vid]["room_open"]) == ("answered", False)

        # Only the one who asked withdraws a request.
        third = await patient.ok(
            "POST", f"/consultations/{cid}/interpretations", {"question": "还需要复查吗？"}
        )
        for person in (stranger, w.doctor):
            refused = await person.call("POST", f"/interpretations/{third['id']}/cancel")
            assert code(refused) == (403, "not_your_consultation"), refused
        withdrawn = await patient.ok("POST", f"/interpretations/{third['id']}/cancel")
        assert withdrawn["state"] == "cancelled"

        # Pushed: the patient heard every move of both; the experts theirs; the stranger none.
        await wait_for(
            lambda: (
                pushed_states(heard["patient"], "interpretation", vid)
                == ["asked", "asked", "scheduled", "answered"]
            ),
            timeout=10,
            message=lambda: f"patient heard {heard['patient']}",
        )
        assert pushed_states(heard["patient"], "interpretation", iid) == ["asked", "answered"]
        assert pushed_states(heard["author"], "interpretation", iid) == ["asked", "answered"]
        assert "scheduled" in pushed_states(heard["other"], "interpretation", vid)
        assert heard["stranger"] == []
    finally:
        for s in sockets:
            await s.disconnect()

    events = await audit_of(ca_server, cid, iid, vid, room_id)
    ok = [a for a, result, _ in events if result == "ok"]
    assert ok.count("interpretation.ask") == 2 and ok.count("interpretation.answer") == 2
    assert {"interpretation.assign", "interpretation.schedule", "interpretation.open_room"} <= set(
        ok
    )
    assert "room.join" in ok
    refused = {(a, c) for a, result, c in events if result != "ok"}
    assert {
        ("interpretation.ask", "consultation_not_reported"),
        ("interpretation.ask", "not_your_consultation"),
        ("interpretation.answer", "not_your_consultation"),
        ("interpretation.answer", "interpretation_answered"),
        ("interpretation.assign", "expert_not_qualified"),
        ("room.join", "not_a_participant"),
    } <= refused, refused
    assert (await verify_chain(ca_server.app[DATABASE])).ok
