"""The patient's own consultations (issue 14): ``GET /api/v1/me/consultations``.

The signed-in patient lists the consultations whose patient account it is, and nothing of
anyone else's; the fields are the minimum its waiting page needs (R37): no clinical text, no
patient or doctor names, no ids of people. ``room_open`` says when the consultation's room lets
it in (in session, admitted) and follows the inviter's step-out and step-in; ``stepped_out``
says why it does not. Only patients may ask (R34): a doctor is refused, and the refusal is the
newest event of the audit chain.
"""

from __future__ import annotations

from typing import Any

from apiclient import Person
from consultation_world import World
from harness import Server
from people import new_id_number
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from web.keys import DATABASE

FIELDS = {
    "id",
    "kind",
    "state",
    "institution_name",
    "target_institution_name",
    "starts_at",
    "room_open",
    "stepped_out",
}


async def _record_of(w: World, person: Person, name: str) -> str:
    """A patient record registered at the desk, linked to ``person``'s own account."""
    body = {"name": name, "id_number": new_id_number("19660512"), "user_id": person.user_id}
    return str((await w.nurse.ok("POST", "/patients", body))["id"])


async def _mine(person: Person) -> list[dict[str, Any]]:
    return list((await person.ok("GET", "/me/consultations"))["consultations"])


async def _head(server: Server) -> AuditEvent:
    async with server.app[DATABASE].session() as session:
        row = await session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert row is not None
    return row


async def test_r37_a_patient_sees_only_its_own_consultations_and_when_its_room_is_open(
    server: Server, world: World
) -> None:
    w = world
    (expert,) = w.experts
    patient = await w.clinic.person("patient", name="赵某")
    other = await w.clinic.person("patient", name="钱某")
    record = await _record_of(w, patient, "赵某")

    # Its consultation, submitted; a draft of another for it (the doctor's own until sent);
    # one for a record registered at the desk with no account (nobody's page).
    cid = (await w.doctor.ok("POST", "/consultations", w.request(patient_id=record)))["id"]
    await w.doctor.ok("POST", "/consultations", w.request(patient_id=record))
    await w.doctor.ok("POST", "/consultations", w.request())
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")

    (item,) = await _mine(patient)
    assert set(item) == FIELDS  # the minimum: no clinical text, no names of people (R37)
    assert item["id"] == cid
    assert (item["kind"], item["state"]) == ("consultation", "submitted")
    listed = (await w.clinic.admin.ok("GET", "/institutions"))["institutions"]
    names = {i["id"]: i["name"] for i in listed}
    assert (item["institution_name"], item["target_institution_name"]) == (
        names[w.down_id],
        names[w.up_id],
    )
    assert item["institution_name"] == "青山镇卫生院"
    assert item["starts_at"].startswith("2030-01-05T02:00:00")
    assert (item["room_open"], item["stepped_out"]) == (False, False)
    assert await _mine(other) == []

    # Sent, accepted, in session: the room is open to the patient.
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    await expert.ok("POST", f"/invitations/{invitation['id']}/accept")
    (item,) = await _mine(patient)
    assert (item["state"], item["room_open"]) == ("accepted", False)
    await w.doctor.ok("POST", f"/consultations/{cid}/start")
    (item,) = await _mine(patient)
    assert (item["state"], item["room_open"], item["stepped_out"]) == ("in_session", True, False)
    await patient.ok("POST", f"/consultations/{cid}/join-token")
    assert await _mine(other) == []

    # Asked out for the doctors' discussion: closed to it, and said why; back in: open again.
    base = f"/consultations/{cid}/participants/{patient.user_id}"
    await w.doctor.ok("POST", f"{base}/step-out")
    (item,) = await _mine(patient)
    assert (item["state"], item["room_open"], item["stepped_out"]) == ("in_session", False, True)
    refused = await patient.call("POST", f"/consultations/{cid}/join-token")
    assert (refused.status, refused.code) == (403, "not_admitted"), refused
    await w.doctor.ok("POST", f"{base}/step-in")
    (item,) = await _mine(patient)
    assert (item["room_open"], item["stepped_out"]) == (True, False)
    await patient.ok("POST", f"/consultations/{cid}/join-token")

    # R34: staff do not use the patient's list; the refusal is audited.
    for person in (w.doctor, expert, w.down_centre):
        reply = await person.call("GET", "/me/consultations")
        assert (reply.status, reply.code) == (403, "forbidden"), reply
        head = await _head(server)
        assert (head.action, head.actor_id, head.result) == (
            "consultation.mine",
            person.user_id,
            "denied",
        )
    assert (await verify_chain(server.app[DATABASE])).ok
