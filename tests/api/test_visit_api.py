"""A whole visit through the REST API, and its refusals, each with its stable code, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from apiclient import Clinic
from people import CONDITION, booked_visit, new_id_number, sign, verified_doctor
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from consult.rooms import visit_room_id
from web.keys import DATABASE


async def _actions(server, visit_id: str) -> list[tuple[str, str]]:
    """The audit trail of a visit and of its room (joins are the room's), in chain order."""
    room_id = await visit_room_id(server.app[DATABASE], visit_id)
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_id.in_([visit_id, room_id]))
            .order_by(AuditEvent.seq)
        )
        return [(row.action, row.result) for row in rows]


async def test_a_visit_from_booking_to_referral(any_server, any_clinic: Clinic):
    server, clinic = any_server, any_clinic
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]

    # Check-in needs the signed risk notice (R5); the token needs admission.
    reply = await patient.call("POST", f"/visits/{visit_id}/check-in", {})
    assert (reply.status, reply.code) == (409, "consent_required"), reply
    visit = await sign(patient, visit_id, "risk_notice", "consent")
    assert visit["consent_signed"] is True
    visit = await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    assert visit["state"] == "waiting"
    reply = await patient.call("POST", f"/visits/{visit_id}/join-token")
    assert (reply.status, reply.code) == (403, "not_admitted"), reply

    queue = await doctor.ok("GET", "/queue")
    assert [(v["id"], v["state"], v["patient_name"]) for v in queue["visits"]] == [
        (visit_id, "waiting", "张某")
    ]
    assert (await doctor.ok("POST", f"/visits/{visit_id}/admit"))["state"] == "in_room"
    for person, role in ((patient, "patient"), (doctor, "doctor")):
        join = await person.ok("POST", f"/visits/{visit_id}/join-token")
        assert join["role"] == role
        # R33: the token in the fragment, which no server, log or Referer ever sees
        assert join["room_url"] == f"/room?visit={visit_id}#token={join['token']}"
    reply = await nurse.call("POST", f"/visits/{visit_id}/join-token")
    assert (reply.status, reply.code) == (403, "forbidden"), reply

    assert (await doctor.ok("POST", f"/visits/{visit_id}/send-back"))["state"] == "waiting"
    reply = await patient.call("POST", f"/visits/{visit_id}/join-token")
    assert reply.code == "not_admitted", reply
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    reply = await doctor.call("POST", f"/visits/{visit_id}/refer", {"reason": "   "})
    assert (reply.status, reply.code) == (422, "invalid_input"), reply
    visit = await doctor.ok(
        "POST",
        f"/visits/{visit_id}/refer",
        {"reason": "血压控制不佳，需线下检查", "appointment": "明天上午心内科"},
    )
    assert (visit["state"], visit["referral_reason"]) == ("referred", "血压控制不佳，需线下检查")
    reply = await doctor.call("POST", f"/visits/{visit_id}/end")
    assert (reply.status, reply.code) == (409, "visit_closed"), reply

    visit = await sign(patient, visit_id, "referral_refusal", "refusal")
    assert visit["refusal_acknowledged"] is True
    signed = await doctor.ok("GET", f"/visits/{visit_id}/consents")
    assert [(d["kind"], d["signer_id"]) for d in signed["documents"]] == [
        ("risk_notice", patient.user_id),
        ("referral_refusal", patient.user_id),
    ]

    actions = await _actions(server, visit_id)
    for expected in [
        ("visit.book", "ok"),
        ("visit.check_in", "refused"),
        ("consent.sign", "ok"),
        ("visit.check_in", "ok"),
        ("room.join", "denied"),
        ("visit.admit", "ok"),
        ("room.join", "ok"),
        ("visit.send_back", "ok"),
        ("visit.refer", "ok"),
        ("visit.end", "refused"),
        ("visit.acknowledge_refusal", "ok"),
    ]:
        assert expected in actions, (expected, actions)
    auditor = await clinic.person("auditor")
    verification = await auditor.ok("GET", "/audit/verify")
    assert verification["ok"] is True, verification
    assert (await verify_chain(server.app[DATABASE])).ok


async def test_rules_refuse_with_codes(any_clinic: Clinic):
    clinic = any_clinic
    doctor = await verified_doctor(clinic, online=False)
    nurse = await clinic.person("nurse")
    patient = await clinic.person("patient")
    id_number = new_id_number()
    record = await patient.ok("POST", "/patients", {"name": "李某", "id_number": id_number})
    assert "*" in record["id_number_masked"]
    book = {
        "patient_id": record["id"],
        "doctor_id": doctor.user_id,
        "mode": "video",
        "condition_code": CONDITION,
    }
    reply = await patient.call("POST", "/visits", book)  # no offline diagnosis (R2)
    assert (reply.status, reply.code) == (409, "first_visit_refused"), reply
    await nurse.ok(
        "POST",
        f"/patients/{record['id']}/diagnoses",
        {
            "condition_code": "I10.0",
            "condition_name": "高血压",
            "institution_name": "市医院",
            "diagnosed_on": "2024-01-01",
        },
    )
    reply = await patient.call("POST", "/visits", {**book, "emergency": True})
    assert reply.code == "emergency_not_allowed", reply
    reply = await patient.call("POST", "/visits", book)  # the doctor is not online
    assert reply.code == "doctor_offline", reply
    await doctor.ok("POST", "/me/online", {"online": True})
    assert (await patient.ok("POST", "/visits", book))["state"] == "booked"

    # Patients are found by ID number (POST: the number never goes into a URL).
    found = await nurse.ok("POST", "/patients/find", {"id_number": new_id_number("19700101")})
    assert found == {"patient": None}
    found = await nurse.ok("POST", "/patients/find", {"id_number": id_number})
    assert found["patient"]["id"] == record["id"]
    reply = await nurse.call("POST", "/patients/find", {"id_number": "not-a-number"})
    assert (reply.status, reply.code) == (422, "invalid_id_number"), reply

    # The signing PIN: set with the password, checked before signing.
    reply = await doctor.call(
        "PUT", "/me/signing-pin", {"current_password": doctor.password, "pin": "123456"}
    )
    assert reply.code == "weak_pin", reply
    await doctor.ok(
        "PUT", "/me/signing-pin", {"current_password": doctor.password, "pin": "860412"}
    )
    await doctor.ok("POST", "/me/signing-pin/check", {"pin": "860412", "purpose": "test"})
    reply = await doctor.call("POST", "/me/signing-pin/check", {"pin": "860413", "purpose": "test"})
    assert (reply.status, reply.code) == (403, "signing_pin_invalid"), reply
