"""R40: the patient side rates a finished visit within 15 days, edits it once within 30 days,
the doctor replies once within 30 days; R41: a doctor's satisfaction figure. Through the REST
API, each refusal with its stable code and in the audit chain; windows by moving the visit's
end and the rating's time back in the database."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import socketio
from apiclient import Clinic, Person
from harness import Server
from peers import wait_for
from people import CONDITION, booked_visit, sign, verified_doctor
from sqlalchemy import func, select, update
from test_three_party_visit import _child_with_guardian

from consult.audit_verify import verify_chain
from consult.models import AuditEvent, Visit, VisitRating
from consult.sqltypes import utc_now
from web.keys import DATABASE


async def _finished_visit(clinic: Clinic, doctor: Person, nurse: Person) -> tuple[Person, str]:
    """A patient whose visit the doctor admitted and ended."""
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    assert (await doctor.ok("POST", f"/visits/{visit_id}/end"))["state"] == "ended"
    return patient, visit_id


async def _audit(server: Server, visit_id: str) -> list[tuple[str, str, str | None]]:
    """The rating events of a visit: (action, result, code)."""
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_id == visit_id, AuditEvent.action.like("rating.%"))
            .order_by(AuditEvent.seq)
        )
        events = []
        for row in rows:
            code = json.loads(row.details).get("code") if row.details else None
            events.append((row.action, row.result, code))
        return events


async def _move_back(server: Server, visit_id: str, *, ended: timedelta, rated: timedelta) -> None:
    """Set the visit's end and its rating's time to ``ended`` / ``rated`` ago."""
    now = utc_now()
    async with server.app[DATABASE].session() as session, session.begin():
        await session.execute(
            update(Visit).where(Visit.id == visit_id).values(closed_at=now - ended)
        )
        await session.execute(
            update(VisitRating)
            .where(VisitRating.visit_id == visit_id)
            .values(created_at=now - rated)
        )


def _code(reply: Any) -> tuple[int, str | None]:
    return reply.status, reply.code


async def test_r40_rate_edit_once_reply_once(any_server: Server, any_clinic: Clinic):
    server, clinic = any_server, any_clinic
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    rating_path = f"/visits/{visit_id}/rating"

    # An open visit is not rated yet.
    reply = await patient.call("POST", rating_path, {"stars": 5})
    assert _code(reply) == (409, "visit_not_finished"), reply
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    await doctor.ok("POST", f"/visits/{visit_id}/end")

    status = await patient.ok("GET", rating_path)
    assert status["can_rate"] is True and status["rating"] is None
    history = await patient.ok("GET", "/me/visits")
    [item] = [v for v in history["visits"] if v["id"] == visit_id]
    assert (item["state"], item["doctor_name"], item["department_name"]) == (
        "ended",
        "王医生",
        "心血管内科",
    )
    assert item["can_rate"] is True and item["rating"] is None and item["closed_at"]

    # Wrong people: another patient, the doctor (it does not rate), a nurse (reads only).
    stranger = await clinic.person("patient")
    assert _code(await stranger.call("POST", rating_path, {"stars": 1})) == (403, "forbidden")
    assert _code(await stranger.call("GET", rating_path)) == (403, "forbidden")
    assert _code(await doctor.call("POST", rating_path, {"stars": 5})) == (403, "forbidden")
    assert _code(await nurse.call("POST", rating_path, {"stars": 5})) == (403, "forbidden")
    assert _code(await stranger.call("GET", "/me/visits")) == (200, None)
    assert visit_id not in {v["id"] for v in (await stranger.ok("GET", "/me/visits"))["visits"]}
    assert _code(await doctor.call("GET", "/me/visits")) == (403, "forbidden")

    # Bad input, each with a stable code; nothing is stored.
    for body, expected in (
        ({"stars": 0}, (422, "rating_stars_invalid")),
        ({"stars": 6}, (422, "rating_stars_invalid")),
        ({"stars": -1}, (422, "rating_stars_invalid")),
        ({"stars": "x"}, (422, "invalid_request")),
        ({"stars": "5"}, (422, "invalid_request")),
        ({"stars": 4.5}, (422, "invalid_request")),
        ({}, (422, "invalid_request")),
        ({"stars": 5, "text": "好" * 501}, (422, "rating_text_invalid")),
        ({"stars": 5, "text": "x" * 1_000_000}, (422, "rating_text_invalid")),
        ({"stars": 5, "text": "a\x07b"}, (422, "rating_text_invalid")),
        ({"stars": 5, "text": "a\u202eb"}, (422, "rating_text_invalid")),
        ({"stars": 5, "text": "a\x00b"}, (422, "invalid_request")),
        ({"stars": 5, "extra": 1}, (422, "invalid_request")),
    ):
        reply = await patient.call("POST", rating_path, body)
        assert _code(reply) == expected, (body if len(str(body)) < 80 else "huge", reply)
    assert (await patient.ok("GET", rating_path))["rating"] is None
    reply = await patient.call("PUT", rating_path, {"stars": 3})
    assert _code(reply) == (404, "rating_not_found"), reply
    reply = await doctor.call("POST", f"{rating_path}/reply", {"text": "谢谢"})
    assert _code(reply) == (404, "rating_not_found"), reply

    # Rate once.
    rating = await patient.ok("POST", rating_path, {"stars": 4, "text": "  医生很耐心。 "})
    assert (rating["stars"], rating["text"], rating["edited_at"]) == (4, "医生很耐心。", None)
    assert rating["can_edit"] is True and rating["reply"] is None
    reply = await patient.call("POST", rating_path, {"stars": 5})
    assert _code(reply) == (409, "already_rated"), reply

    # Edit once.
    edited = await patient.ok("PUT", rating_path, {"stars": 5})
    assert (edited["stars"], edited["text"], edited["can_edit"]) == (5, None, False)
    assert edited["edited_at"] is not None
    reply = await patient.call("PUT", rating_path, {"stars": 1, "text": "改主意了"})
    assert _code(reply) == (409, "rating_edit_used"), reply

    # The doctor replies once; another doctor, the patient and a blank reply are refused.
    other_doctor = await verified_doctor(clinic, name="李医生")
    # the doctor's own list of ratings to reply to; not another doctor's, not a patient's
    mine = (await doctor.ok("GET", "/me/ratings"))["ratings"]
    assert [(r["visit_id"], r["rating"]["stars"], r["rating"]["can_reply"]) for r in mine] == [
        (visit_id, 5, True)
    ]
    assert (await other_doctor.ok("GET", "/me/ratings"))["ratings"] == []
    assert _code(await patient.call("GET", "/me/ratings")) == (403, "forbidden")
    reply = await other_doctor.call("POST", f"{rating_path}/reply", {"text": "谢谢"})
    assert _code(reply) == (403, "forbidden"), reply
    reply = await patient.call("POST", f"{rating_path}/reply", {"text": "谢谢"})
    assert _code(reply) == (403, "forbidden"), reply
    reply = await doctor.call("POST", f"{rating_path}/reply", {"text": "   "})
    assert _code(reply) == (422, "rating_text_invalid"), reply
    answered = await doctor.ok("POST", f"{rating_path}/reply", {"text": "谢谢您的评价，按时服药。"})
    assert (answered["reply"], answered["can_reply"]) == ("谢谢您的评价，按时服药。", False)
    reply = await doctor.call("POST", f"{rating_path}/reply", {"text": "再说一句"})
    assert _code(reply) == (409, "rating_already_replied"), reply

    # Everyone with a relationship reads the same rating; the history shows it.
    for person in (patient, doctor, nurse):
        seen = (await person.ok("GET", rating_path))["rating"]
        assert (seen["stars"], seen["reply"]) == (5, "谢谢您的评价，按时服药。")
    [item] = [v for v in (await patient.ok("GET", "/me/visits"))["visits"] if v["id"] == visit_id]
    assert item["can_rate"] is False and item["rating"]["stars"] == 5

    # R41: the doctor's own figure; not another doctor's; an operator of its department.
    figure = await doctor.ok("GET", f"/practitioners/{doctor.user_id}/satisfaction")
    assert (figure["count"], figure["average"]) == (1, 5.0)
    reply = await other_doctor.call("GET", f"/practitioners/{doctor.user_id}/satisfaction")
    assert _code(reply) == (403, "forbidden"), reply
    operator = await clinic.person("operator")
    figure = await operator.ok("GET", f"/practitioners/{doctor.user_id}/satisfaction")
    assert figure["count"] == 1
    reply = await patient.call("GET", f"/practitioners/{doctor.user_id}/satisfaction")
    assert _code(reply) == (403, "forbidden"), reply

    # The comment is stored encrypted, and the chain holds each step and each refusal.
    async with server.app[DATABASE].session() as session:
        row = await session.scalar(select(VisitRating).where(VisitRating.visit_id == visit_id))
    assert row is not None and row.reply_enc and "谢谢" not in row.reply_enc
    events = await _audit(server, visit_id)
    ok = [action for action, result, _ in events if result == "ok"]
    assert ok.count("rating.submit") == 1 and ok.count("rating.edit") == 1
    assert ok.count("rating.reply") == 1
    refused = {(action, code) for action, result, code in events if result != "ok"}
    assert {
        ("rating.submit", "visit_not_finished"),
        ("rating.submit", "forbidden"),
        ("rating.submit", "already_rated"),
        ("rating.edit", "rating_edit_used"),
        ("rating.reply", "forbidden"),
        ("rating.reply", "rating_already_replied"),
    } <= refused, refused
    report = await verify_chain(server.app[DATABASE])
    assert report.ok, report.text()


async def test_r40_windows_rate_15_days_edit_and_reply_30_days(server: Server, clinic: Clinic):
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient, visit_id = await _finished_visit(clinic, doctor, nurse)
    path = f"/visits/{visit_id}/rating"

    # Ended 15 days and a minute ago: too late to rate.
    await _move_back(server, visit_id, ended=timedelta(days=15, minutes=1), rated=timedelta())
    assert (await patient.ok("GET", path))["can_rate"] is False
    reply = await patient.call("POST", path, {"stars": 3})
    assert _code(reply) == (409, "rating_window_closed"), reply
    # Ended 14 days ago: still in time.
    await _move_back(server, visit_id, ended=timedelta(days=14), rated=timedelta())
    await patient.ok("POST", path, {"stars": 3})

    # Rated 30 days and a minute ago: neither the edit nor the reply is allowed any more.
    await _move_back(
        server, visit_id, ended=timedelta(days=31), rated=timedelta(days=30, minutes=1)
    )
    rating = (await patient.ok("GET", path))["rating"]
    assert (rating["can_edit"], rating["can_reply"]) == (False, False)
    reply = await patient.call("PUT", path, {"stars": 4})
    assert _code(reply) == (409, "rating_window_closed"), reply
    reply = await doctor.call("POST", f"{path}/reply", {"text": "谢谢"})
    assert _code(reply) == (409, "rating_window_closed"), reply
    # Rated 29 days ago: both still in time.
    await _move_back(server, visit_id, ended=timedelta(days=31), rated=timedelta(days=29))
    assert (await patient.ok("PUT", path, {"stars": 4}))["stars"] == 4
    assert (await doctor.ok("POST", f"{path}/reply", {"text": "谢谢"}))["reply"] == "谢谢"
    codes = {code for _, result, code in await _audit(server, visit_id) if result != "ok"}
    assert codes == {"rating_window_closed"}


async def test_r40_two_submits_at_once_exactly_one_lands(any_server: Server, any_clinic: Clinic):
    server, clinic = any_server, any_clinic
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient, visit_id = await _finished_visit(clinic, doctor, nurse)
    replies = await asyncio.gather(
        *(patient.call("POST", f"/visits/{visit_id}/rating", {"stars": n}) for n in (1, 2, 3, 4))
    )
    statuses = sorted(_code(reply) for reply in replies)
    assert statuses == [(201, None)] + [(409, "already_rated")] * 3, replies
    async with server.app[DATABASE].session() as session:
        count = await session.scalar(
            select(func.count()).select_from(VisitRating).where(VisitRating.visit_id == visit_id)
        )
    assert count == 1
    [landed] = [reply.body for reply in replies if reply.status == 201]
    assert (await patient.ok("GET", f"/visits/{visit_id}/rating"))["rating"]["stars"] == landed[
        "stars"
    ]


async def test_r40_rating_text_passes_the_sensitive_word_filter(server: Server, clinic: Clinic):
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient, visit_id = await _finished_visit(clinic, doctor, nurse)
    operator = await clinic.person("operator")
    await operator.ok("POST", "/sensitive-words", {"word": "代开处方"})
    reply = await patient.call(
        "POST", f"/visits/{visit_id}/rating", {"stars": 2, "text": "能不能代开处方"}
    )
    assert _code(reply) == (409, "sensitive_word"), reply
    assert (await patient.ok("GET", f"/visits/{visit_id}/rating"))["rating"] is None
    assert ("rating.submit", "refused", "sensitive_word") in await _audit(server, visit_id)
    assert (await patient.ok("POST", f"/visits/{visit_id}/rating", {"stars": 2}))["stars"] == 2


async def _watch(server: Server, person: Person, pushed: list[dict[str, Any]]) -> Any:
    """``person``'s /updates socket, its ``rating_changed`` pushes appended to ``pushed``."""
    updates = socketio.AsyncClient(reconnection=False)
    updates.on("rating_changed", pushed.append, namespace="/updates")
    await updates.connect(
        server.url,
        namespaces=["/updates"],
        auth={"session": person.token},
        transports=["websocket"],
        wait_timeout=5,
    )
    return updates


async def test_r40_r41_a_rating_and_its_reply_are_pushed_to_both_sides(
    server: Server, clinic: Clinic
):
    """The doctor's queue reads its ratings again when one is given or edited, the patient's
    waiting room its history when the doctor answers; nobody else is told."""
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient, visit_id = await _finished_visit(clinic, doctor, nurse)
    stranger = await clinic.person("patient")
    to_doctor: list[dict[str, Any]] = []
    to_patient: list[dict[str, Any]] = []
    to_stranger: list[dict[str, Any]] = []
    sockets = [
        await _watch(server, doctor, to_doctor),
        await _watch(server, patient, to_patient),
        await _watch(server, stranger, to_stranger),
    ]
    try:
        await patient.ok("POST", f"/visits/{visit_id}/rating", {"stars": 4})
        await wait_for(lambda: len(to_doctor) == 1 and len(to_patient) == 1, timeout=5)
        assert to_doctor == [{"rating_visit": visit_id, "event": "rated"}]
        await patient.ok("PUT", f"/visits/{visit_id}/rating", {"stars": 5, "text": "很耐心"})
        await doctor.ok("POST", f"/visits/{visit_id}/rating/reply", {"text": "谢谢您的评价"})
        await wait_for(lambda: len(to_patient) == 3, timeout=5)
        assert [p["event"] for p in to_patient] == ["rated", "edited", "replied"]
        await wait_for(lambda: len(to_doctor) == 3, timeout=5)
        # a refused reply (the second one) changes nothing and tells nobody
        again = await doctor.call("POST", f"/visits/{visit_id}/rating/reply", {"text": "再次"})
        assert _code(again)[0] == 409, again
        await asyncio.sleep(0.3)  # asserting that nothing more arrives in this time
        assert len(to_doctor) == 3 and len(to_patient) == 3
        assert to_stranger == []
    finally:
        for socket in sockets:
            await socket.disconnect()


async def test_r40_a_referred_visit_is_rated_and_a_guardian_rates_for_the_child(
    server: Server, clinic: Clinic
):
    """A visit the doctor referred offline after seeing the patient was still a visit with
    that doctor: its patient rates it (one referred from the queue, unseen, is not a service).
    A child's guardian, on its own account, reads the ended visit and rates it on the child's
    behalf (once the visit ended, everyone has left its room: that used to refuse the guardian
    ``forbidden`` while its history offered the rating); one rating per visit, whoever gives it.
    """
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")

    # Seen, then referred: rated.
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    referred = await doctor.ok("POST", f"/visits/{visit_id}/refer", {"reason": "需要线下检查"})
    assert referred["state"] == "referred"
    assert (await patient.ok("GET", f"/visits/{visit_id}/rating"))["can_rate"] is True
    rated = await patient.ok("POST", f"/visits/{visit_id}/rating", {"stars": 4, "text": "及时转诊"})
    assert rated["stars"] == 4

    # Referred from the queue before the doctor saw the patient: nothing to rate.
    unseen = await booked_visit(clinic, doctor, nurse)
    unseen_id = unseen.visit["id"]
    await sign(unseen.patient, unseen_id, "risk_notice", "consent")
    await unseen.patient.ok("POST", f"/visits/{unseen_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{unseen_id}/refer", {"reason": "不适合线上复诊"})
    assert (await unseen.patient.ok("GET", f"/visits/{unseen_id}/rating"))["can_rate"] is False
    reply = await unseen.patient.call("POST", f"/visits/{unseen_id}/rating", {"stars": 1})
    assert _code(reply) == (409, "visit_not_finished"), reply

    # A child of 4 and its guardian, each on its own account: both come, the doctor ends.
    child, guardian, record = await _child_with_guardian(server, clinic)
    visit = await child.ok(
        "POST",
        "/visits",
        {
            "patient_id": record["id"],
            "doctor_id": doctor.user_id,
            "mode": "video",
            "condition_code": CONDITION,
        },
    )
    child_visit = visit["id"]
    path = f"/visits/{child_visit}/rating"
    await sign(child, child_visit, "risk_notice", "consent")
    await child.ok("POST", f"/visits/{child_visit}/check-in", {})
    await guardian.ok("POST", f"/visits/{child_visit}/check-in", {})
    await doctor.ok("POST", f"/visits/{child_visit}/admit")
    await doctor.ok("POST", f"/visits/{child_visit}/end")

    # the guardian reads the ended visit, its history offers the rating, and the rating lands
    assert (await guardian.ok("GET", f"/visits/{child_visit}"))["state"] == "ended"
    [item] = [
        v for v in (await guardian.ok("GET", "/me/visits"))["visits"] if v["id"] == child_visit
    ]
    assert item["can_rate"] is True
    assert (await guardian.ok("GET", path))["can_rate"] is True
    given = await guardian.ok("POST", path, {"stars": 5, "text": "对孩子很耐心"})
    assert given["stars"] == 5
    # one rating per visit: the child's account sees it and cannot rate again
    seen = await child.ok("GET", path)
    assert seen["can_rate"] is False and seen["rating"]["text"] == "对孩子很耐心"
    assert _code(await child.call("POST", path, {"stars": 1})) == (409, "already_rated")
    # another patient's guardian relation does not carry over: a stranger is still refused
    stranger = await clinic.person("patient")
    assert _code(await stranger.call("POST", path, {"stars": 1})) == (403, "forbidden")
    ok = [a for a, result, _ in await _audit(server, child_visit) if result == "ok"]
    assert ok.count("rating.submit") == 1
