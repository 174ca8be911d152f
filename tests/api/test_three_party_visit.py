"""A visit of three (issue 11): doctor, a child under 6 and its guardian, in aiortc clients.

R4: a child under 6 needs a guardian present. The doctor cannot start (admit) until the guardian
has come to the waiting room on its own account; then everyone in the room receives everyone
else's audio and video, and the ``participants`` event names each one's room role.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from apiclient import Clinic, Person
from client import Participant, sees
from peers import wait_for
from people import CONDITION, booked_visit, new_id_number, new_phone, sign, verified_doctor
from sqlalchemy import update
from test_room_events import Watch

from consult.models import Patient, RoomInvitation
from consult.sqltypes import utc_now
from web.keys import DATABASE


async def _child_with_guardian(server, clinic: Clinic, age: int = 4) -> tuple[Person, Person, dict]:  # type: ignore[no-untyped-def]
    """A child of ``age`` with its own account (a family tablet) and a guardian with another."""
    nurse = await clinic.person("nurse")
    guardian = await clinic.person("patient", name="家长 李某")
    guardian_record = await guardian.ok(
        "POST", "/patients", {"name": "李某", "id_number": new_id_number(), "phone": new_phone()}
    )
    child = await clinic.person("patient", name="小李")
    birth = date.today().replace(year=date.today().year - age)
    child_record = await child.ok(
        "POST",
        "/patients",
        {"name": "小李", "id_number": new_id_number(birth.strftime("%Y%m%d"))},
    )
    # the guardian link of a record that has its own account: no route sets it (the desk
    # registers wards without accounts), so the test writes it
    async with server.app[DATABASE].session() as session, session.begin():
        await session.execute(
            update(Patient)
            .where(Patient.id == child_record["id"])
            .values(
                guardian_id=guardian_record["id"],
                guardian_relation="parent",
                guardian_verified_at=utc_now(),  # issue 13 item 3: staff saw the proof
            )
        )
    await nurse.ok(
        "POST",
        f"/patients/{child_record['id']}/diagnoses",
        {
            "condition_code": CONDITION,
            "condition_name": "原发性高血压",
            "institution_name": "市儿童医院",
            "diagnosed_on": "2025-03-01",
        },
    )
    return child, guardian, child_record


async def test_r4_three_people_see_and_hear_each_other_once_the_guardian_came(
    server, clinic: Clinic
) -> None:
    doctor = await verified_doctor(clinic)
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
    visit_id = visit["id"]
    # the guardian's waiting room is pushed the ward's visit changes, as the child's is; the
    # doctor's queue hears when the guardian comes (it may start then)
    pushed, queue = Watch(server.url, guardian), Watch(server.url, doctor)
    await pushed.connect()
    await queue.connect()
    await sign(child, visit_id, "risk_notice", "consent")
    checked = await child.ok("POST", f"/visits/{visit_id}/check-in", {})
    assert checked["state"] == "waiting" and checked["guardian_present"] is False

    # R4: the doctor cannot start before the guardian is there
    refused = await doctor.call("POST", f"/visits/{visit_id}/admit")
    assert (refused.status, refused.code) == (409, "guardian_required"), refused
    # the guardian sees the ward's visit and comes to the waiting room
    assert visit_id in {v["id"] for v in (await guardian.ok("GET", "/visits"))["visits"]}
    arrived = await guardian.ok("POST", f"/visits/{visit_id}/check-in", {})
    assert arrived["guardian_present"] is True
    await wait_for(
        lambda: _events(queue, visit_id) == [("waiting", "check_in"), ("waiting", "arrived")],
        timeout=1,
        message=f"the doctor's queue was not told the guardian came: {queue.pushed}",
    )
    listed = {v["id"]: v for v in (await doctor.ok("GET", "/queue"))["visits"]}
    assert listed[visit_id]["guardian_present"] is True  # what the queue reads on the push
    assert (await doctor.ok("POST", f"/visits/{visit_id}/admit"))["state"] == "in_room"
    await wait_for(
        lambda: (
            _events(pushed, visit_id)
            == [("waiting", "check_in"), ("waiting", "arrived"), ("in_room", "admit")]
        ),
        timeout=3,
        message=f"the guardian was not pushed the visit's changes: {pushed.pushed}",
    )
    await pushed.close()
    await queue.close()

    people: list[Participant] = []
    try:
        for person, room_role in ((doctor, "doctor"), (child, "patient"), (guardian, "guardian")):
            reply = await person.ok("POST", f"/visits/{visit_id}/join-token")
            assert reply["role"] == room_role
            p = Participant(server.url, reply["token"], visit_id)
            people.append(p)
            await p.connect()
            await p.join()
            await p.publish()
            await p.subscribe()
        await wait_for(
            lambda: all(
                sees(receiver, sender, 5)
                and (audio := receiver.received_from(sender.id, "audio")) is not None
                and audio.frames > 10
                for receiver in people
                for sender in people
                if receiver is not sender
            ),
            timeout=30,
            message="not everyone received everyone's audio and video",
        )
        roles = {p["room_role"]: p for p in people[0].participants}
        assert set(roles) == {"doctor", "patient", "guardian"}
        assert roles["guardian"]["label"] == "家长 李某" and roles["patient"]["label"] == "小李"
    finally:
        for p in people:
            await p.close()


def _events(watch: Watch, visit_id: str) -> list[tuple[str, str]]:
    """(state, event) of each ``visit_changed`` a page was pushed about the visit."""
    return [
        (d["state"], d["event"])
        for name, d in watch.pushed
        if name == "visit_changed" and d["visit"] == visit_id
    ]


async def test_r4_a_guardian_coming_late_goes_straight_into_the_room(
    server, clinic: Clinic
) -> None:
    """A child of 8 started without its guardian (R4 asks one only under 6); the guardian comes
    while the visit is on: its check-in lets it in at once (the doctor admitted this patient's
    side already), the doctor's queue is pushed the arrival within a second, and the guardian
    joins the live room as ``guardian``. Before: its join token was refused ``not_admitted``
    with nothing in any page to let it in, and the doctor never heard."""
    doctor = await verified_doctor(clinic)
    child, guardian, record = await _child_with_guardian(server, clinic, age=8)
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
    visit_id = visit["id"]
    await sign(child, visit_id, "risk_notice", "consent")
    await child.ok("POST", f"/visits/{visit_id}/check-in", {})
    assert (await doctor.ok("POST", f"/visits/{visit_id}/admit"))["state"] == "in_room"
    queue = Watch(server.url, doctor)
    await queue.connect()
    people: list[Participant] = []
    try:
        for person in (doctor, child):
            reply = await person.ok("POST", f"/visits/{visit_id}/join-token")
            people.append(p := Participant(server.url, reply["token"], visit_id))
            await p.connect()
            await p.join()
        refused = await guardian.call("POST", f"/visits/{visit_id}/join-token")
        assert (refused.status, refused.code) == (403, "not_admitted")  # not come yet

        came = await guardian.ok("POST", f"/visits/{visit_id}/check-in", {})
        assert (came["state"], came["guardian_present"]) == ("in_room", True)
        await wait_for(
            lambda: ("in_room", "arrived") in _events(queue, visit_id),
            timeout=1,
            message=f"the doctor's queue was not told: {queue.pushed}",
        )
        reply = await guardian.ok("POST", f"/visits/{visit_id}/join-token")
        assert reply["role"] == "guardian"
        people.append(g := Participant(server.url, reply["token"], visit_id))
        await g.connect()
        await g.join()
        await wait_for(
            lambda: (
                {p["room_role"] for p in people[0].participants}
                == {"doctor", "patient", "guardian"}
            ),
            timeout=2,
            message=f"the doctor's room does not show the guardian: {people[0].participants}",
        )
    finally:
        await queue.close()
        for p in people:
            await p.close()


async def test_a_companion_comes_in_by_a_single_use_link_and_is_admitted(
    server, clinic: Clinic
) -> None:
    """The doctor invites a companion (or an interpreter); the link works once; the companion
    waits until the doctor admits it, then joins the room as ``companion``."""
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")

    reply = await patient.call(
        "POST", f"/visits/{visit_id}/invitations", {"room_role": "companion", "label": "女儿"}
    )
    assert (reply.status, reply.code) == (403, "forbidden")  # only the doctor invites
    made = await doctor.ok(
        "POST", f"/visits/{visit_id}/invitations", {"room_role": "companion", "label": "女儿"}
    )
    companion = await clinic.person("patient", name="女儿")
    other = await clinic.person("patient")
    bogus = await companion.call("POST", "/invitations/redeem", {"code": "x" * 32})
    assert (bogus.status, bogus.code) == (404, "invitation_not_found")
    redeemed = await companion.ok("POST", "/invitations/redeem", {"code": made["code"]})
    assert (redeemed["room_role"], redeemed["state"], redeemed["visit_id"]) == (
        "companion",
        "waiting",
        visit_id,
    )
    again = await other.call("POST", "/invitations/redeem", {"code": made["code"]})
    assert (again.status, again.code) == (409, "invitation_used")
    waiting = await companion.call("POST", f"/visits/{visit_id}/join-token")
    assert (waiting.status, waiting.code) == (403, "not_admitted")

    told = Watch(server.url, companion)  # the companion's waiting page
    await told.connect()
    await doctor.ok("POST", f"/visits/{visit_id}/participants/{companion.user_id}/admit")
    await wait_for(
        lambda: ("in_room", "admitted") in _events(told, visit_id),
        timeout=1,
        message=f"the companion's page was not told it is in: {told.pushed}",
    )
    await told.close()
    joined = await companion.ok("POST", f"/visits/{visit_id}/join-token")
    assert joined["role"] == "companion"

    late = await doctor.ok(
        "POST", f"/visits/{visit_id}/invitations", {"room_role": "interpreter", "label": "翻译"}
    )
    async with server.app[DATABASE].session() as session, session.begin():
        await session.execute(
            update(RoomInvitation)
            .where(RoomInvitation.id == late["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await other.call("POST", "/invitations/redeem", {"code": late["code"]})
    assert (expired.status, expired.code) == (409, "invitation_expired")
