"""What the staff console and the booking page need from the API (issue 12): a patient account
made at the desk, the visit card's details, and one open visit per doctor and condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apiclient import PASSWORD, Clinic, Person
from people import CONDITION, new_id_number, patient_with_diagnosis, sign, verified_doctor


async def test_operator_gives_a_registered_patient_an_account(clinic: Clinic):
    operator = await clinic.person("operator")
    record = await operator.ok("POST", "/patients", {"name": "赵某", "id_number": new_id_number()})
    assert record["user_id"] is None
    username = f"pt-{record['id'][:8]}"
    account = await operator.ok(
        "POST", f"/patients/{record['id']}/account", {"username": username, "password": PASSWORD}
    )
    assert account["role"] == "patient" and account["display_name"] == "赵某"
    found = await operator.ok("GET", f"/patients/{record['id']}")
    assert found["user_id"] == account["id"]

    # The patient signs in with it (no TOTP for patients) and sees its own record.
    patient = Person(clinic.api, username, "patient")
    await patient.sign_in()
    mine = await patient.ok("GET", "/patients")
    assert [p["id"] for p in mine["patients"]] == [record["id"]]

    # Once only; a ward gets none; a taken username and a weak password are refused.
    reply = await operator.call(
        "POST", f"/patients/{record['id']}/account", {"username": "other-1", "password": PASSWORD}
    )
    assert (reply.status, reply.code) == (409, "patient_exists"), reply
    ward = await operator.ok(
        "POST",
        "/patients",
        {
            "name": "赵小某",
            "id_number": new_id_number("20220101"),
            "guardian_id": record["id"],
            "guardian_relation": "parent",
        },
    )
    reply = await operator.call(
        "POST", f"/patients/{ward['id']}/account", {"username": "ward-1", "password": PASSWORD}
    )
    assert (reply.status, reply.code) == (409, "patient_exists"), reply
    other = await operator.ok("POST", "/patients", {"name": "钱某", "id_number": new_id_number()})
    reply = await operator.call(
        "POST", f"/patients/{other['id']}/account", {"username": username, "password": PASSWORD}
    )
    assert (reply.status, reply.code) == (409, "username_taken"), reply
    reply = await operator.call(
        "POST", f"/patients/{other['id']}/account", {"username": "qian-1", "password": "short"}
    )
    assert (reply.status, reply.code) == (422, "weak_password"), reply

    # R34: the admin (no clinical data) and the patient itself may not.
    for who in (clinic.admin, patient):
        reply = await who.call(
            "POST", f"/patients/{other['id']}/account", {"username": "x-123", "password": PASSWORD}
        )
        assert (reply.status, reply.code) == (403, "forbidden"), reply


async def test_visit_card_names_doctor_department_time_and_queue_place(clinic: Clinic):
    doctor = await verified_doctor(clinic, name="孙医生")
    nurse = await clinic.person("nurse")
    first = await patient_with_diagnosis(clinic, nurse, name="甲某")
    second = await patient_with_diagnosis(clinic, nurse, name="乙某")
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    slot = await doctor.ok(
        "POST",
        f"/practitioners/{doctor.user_id}/slots",
        {"starts_at": starts.isoformat(), "ends_at": (starts + timedelta(minutes=30)).isoformat()},
    )
    visits = []
    for patient, slot_id in ((first, slot["id"]), (second, None)):
        body = {
            "patient_id": patient.extra["record"]["id"],
            "doctor_id": doctor.user_id,
            "mode": "video",
            "condition_code": CONDITION,
        }
        if slot_id:
            body["slot_id"] = slot_id
        visit = await patient.ok("POST", "/visits", body)
        assert visit["doctor_name"] == "孙医生" and visit["department_name"] == "心血管内科"
        assert visit["queue_position"] is None
        visits.append(visit)
    assert datetime.fromisoformat(visits[0]["slot_starts_at"]) == starts
    assert visits[1]["slot_starts_at"] is None

    for patient, visit in zip((first, second), visits, strict=True):
        await sign(patient, visit["id"], "risk_notice", "consent")
        await patient.ok("POST", f"/visits/{visit['id']}/check-in", {})
    listed = {v["id"]: v for v in (await second.ok("GET", "/visits"))["visits"]}
    assert listed[visits[1]["id"]]["queue_position"] == 1
    listed = {v["id"]: v for v in (await first.ok("GET", "/visits"))["visits"]}
    assert listed[visits[0]["id"]]["queue_position"] == 0

    await doctor.ok("POST", f"/visits/{visits[0]['id']}/admit")
    listed = {v["id"]: v for v in (await second.ok("GET", "/visits"))["visits"]}
    assert listed[visits[1]["id"]]["queue_position"] == 0
    ended = await doctor.ok("POST", f"/visits/{visits[0]['id']}/end")
    assert ended["queue_position"] is None


async def test_one_open_visit_per_doctor_and_condition(clinic: Clinic):
    """R2/R7 bookkeeping: a second open booking of the same follow-up is refused."""
    doctor = await verified_doctor(clinic)
    other_doctor = await verified_doctor(clinic, name="周医生")
    nurse = await clinic.person("nurse")
    patient = await patient_with_diagnosis(clinic, nurse)
    record_id = patient.extra["record"]["id"]
    body = {"patient_id": record_id, "doctor_id": doctor.user_id, "mode": "video"}
    first = await patient.ok("POST", "/visits", {**body, "condition_code": CONDITION})
    # The same category (I10.0 is I10) with the same doctor: refused, whoever books.
    for who in (patient, nurse):
        reply = await who.call("POST", "/visits", {**body, "condition_code": "I10.0"})
        assert (reply.status, reply.code) == (409, "visit_exists"), reply
    # Another doctor is another follow-up.
    await patient.ok(
        "POST",
        "/visits",
        {**body, "doctor_id": other_doctor.user_id, "condition_code": CONDITION},
    )
    # Once the first is closed, the patient books again.
    await patient.ok("POST", f"/visits/{first['id']}/cancel", {})
    again = await patient.ok("POST", "/visits", {**body, "condition_code": CONDITION})
    assert again["state"] == "booked"
