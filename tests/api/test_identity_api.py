"""Identity registration over the API (issue 13 item 3; R33, R34): a patient registering a
number on file gets the same answer as for a new one, staff see and resolve the dispute, and a
ward's guardian books for it only once staff verified the relation."""

from __future__ import annotations

from apiclient import Clinic
from people import CONDITION, new_id_number, verified_doctor

_PER_PERSON = {"id", "user_id", "name", "id_number_masked"}


def _shape(body: dict) -> dict:  # type: ignore[type-arg]
    return {k: (k if k in _PER_PERSON else v) for k, v in body.items()}


async def test_r33_the_answer_does_not_tell_a_patient_a_number_is_on_file(clinic: Clinic):
    nurse = await clinic.person("nurse")
    on_file = new_id_number()
    desk = await nurse.ok("POST", "/patients", {"name": "王五", "id_number": on_file})
    reply = await nurse.call("POST", "/patients", {"name": "王五", "id_number": on_file})
    assert (reply.status, reply.code) == (409, "patient_exists")  # staff resolve disputes

    claimant, newcomer = await clinic.person("patient"), await clinic.person("patient")
    claimed = await claimant.call("POST", "/patients", {"name": "王五", "id_number": on_file})
    fresh = await newcomer.call("POST", "/patients", {"name": "赵六", "id_number": new_id_number()})
    assert claimed.status == fresh.status == 201
    assert _shape(claimed.body) == _shape(fresh.body)

    reply = await claimant.call("GET", "/identity-disputes")
    assert (reply.status, reply.code) == (403, "forbidden")
    (dispute,) = (await nurse.ok("GET", "/identity-disputes"))["disputes"]
    assert dispute["claim"]["id"] == claimed.body["id"]
    assert dispute["existing"]["id"] == desk["id"] and dispute["state"] == "open"
    done = await nurse.ok(
        "POST", f"/identity-disputes/{dispute['id']}/resolve", {"decision": "merge"}
    )
    assert done["state"] == "merged" and done["existing"]["user_id"] == claimant.user_id
    mine = await claimant.ok("GET", "/patients")
    assert [p["id"] for p in mine["patients"]] == [desk["id"]]
    reply = await nurse.call(
        "POST", f"/identity-disputes/{dispute['id']}/resolve", {"decision": "reject"}
    )
    assert (reply.status, reply.code) == (409, "dispute_closed")


async def test_r33_a_guardian_books_for_a_ward_once_staff_verified_the_relation(clinic: Clinic):
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    parent = await clinic.person("patient")
    own = await parent.ok("POST", "/patients", {"name": "李某", "id_number": new_id_number()})
    ward = await parent.ok(
        "POST",
        "/patients",
        {
            "name": "李小某",
            "id_number": new_id_number("20230101"),
            "guardian_id": own["id"],
            "guardian_relation": "parent",
        },
    )
    assert ward["guardian_verified"] is False
    await nurse.ok(
        "POST",
        f"/patients/{ward['id']}/diagnoses",
        {
            "condition_code": CONDITION,
            "condition_name": "原发性高血压",
            "institution_name": "市儿童医院",
            "diagnosed_on": "2025-03-01",
        },
    )
    book = {
        "patient_id": ward["id"],
        "doctor_id": doctor.user_id,
        "mode": "video",
        "condition_code": CONDITION,
    }
    reply = await parent.call("POST", "/visits", book)
    assert (reply.status, reply.code) == (403, "guardian_pending"), reply
    reply = await parent.call("POST", f"/patients/{ward['id']}/guardian", {"decision": "verify"})
    assert (reply.status, reply.code) == (403, "forbidden")

    links = (await nurse.ok("GET", "/guardian-links/pending"))["links"]
    assert [(x["ward"]["id"], x["guardian"]["id"]) for x in links] == [(ward["id"], own["id"])]
    verified = await nurse.ok("POST", f"/patients/{ward['id']}/guardian", {"decision": "verify"})
    assert verified["guardian_verified"] is True
    visit = await parent.ok("POST", "/visits", book)
    assert visit["patient_record_id"] == ward["id"]
    reply = await nurse.call("POST", f"/patients/{ward['id']}/guardian", {"decision": "verify"})
    assert (reply.status, reply.code) == (409, "guardian_not_pending")
