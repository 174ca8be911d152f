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


async def _child_with_guardian(server, clinic: Clinic) -> tuple[Person, Person, dict]:  # type: ignore[no-untyped-def]
    """A child of 4 with its own account (a family tablet) and a guardian with another."""
    nurse = await clinic.person("nurse")
    guardian = await clinic.person("patient", name="家长 李某")
    guardian_record = await guardian.ok(
        "POST", "/patients", {"name": "李某", "id_number": new_id_number(), "phone": new_phone()}
    )
    child = await clinic.person("patient", name="小李")
    birth = date.today().replace(year=date.today().year - 4)
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
    # the guardian's waiting room is pushed the ward's visit changes, as the child's is
    pushed = Watch(server.url, guardian)
    await pushed.connect()
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
    assert (await doctor.ok("POST", f"/visits/{visit_id}/admit"))["state"] == "in_room"
    await wait_for(
        lambda: pushed.states(visit_id) == ["waiting", "in_room"],
        timeout=3,
        message=f"the guardian was not pushed the visit's changes: {pushed.pushed}",
    )
    await pushed.close()

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

    await doctor.ok("POST", f"/visits/{visit_id}/participants/{companion.user_id}/admit")
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
