"""The relationship matrix (issue 11): the role table lets a role attempt an action; the
relationship decides whether it may on this visit. Every REST route of a visit, tried by each
outsider whose role the table allows: a patient and a doctor of another visit (participants of
another room), a nurse of another institution, an operator of another department, and another
room's join token on the chat routes. None gets through; each refusal is a 403 or 404 with a
stable code, the refusals are audited, and the visit is untouched. SQLite and PostgreSQL.
"""

from __future__ import annotations

import secrets
from typing import Any

from apiclient import Clinic, Person
from harness import Server
from people import booked_visit, sign, verified_doctor
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from consult.permissions import PERMISSIONS, Role
from web.api import api
from web.api.registry import Operation
from web.keys import DATABASE

REFUSALS = {
    (403, "forbidden"),
    (403, "not_a_participant"),
    (404, "visit_not_found"),
    (404, "not_found"),
}
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


def _visit_routes() -> list[Operation]:
    return [op for op in api.operations if op.path.startswith("/visits/{visit_id}")]


async def _in_room(clinic: Clinic, doctor: Person, nurse: Person) -> tuple[Person, str]:
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    return patient, visit_id


async def _staff(clinic: Clinic, role: str, institution_id: str, department_id: str) -> Person:
    person = Person(clinic.api, f"{role}-{secrets.token_hex(4)}", role)
    body: dict[str, Any] = {
        "username": person.username,
        "display_name": f"{role} elsewhere",
        "role": role,
        "password": person.password,
        "institution_id": institution_id,
        "department_id": department_id,
    }
    if role == "operator":
        body["operator_department_ids"] = [department_id]
    person.user_id = (await clinic.admin.ok("POST", "/accounts", body))["id"]
    await person.enrol()
    return person


async def _call(person: Person, op: Operation, visit_id: str, signature: dict[str, str]) -> Any:
    path = op.path.replace("{visit_id}", visit_id).replace("{session}", secrets.token_hex(16))
    if op.operation_id == "upload_chat_image":
        return await person.call(op.method, path, raw=PNG, headers={"Content-Type": "image/png"})
    body: Any = None
    if op.operation_id in ("sign_consent", "acknowledge_refusal"):
        body = signature
    elif op.operation_id == "refer_offline":
        body = {"reason": "需要线下检查"}
    elif op.operation_id in ("rate_visit", "edit_rating"):
        body = {"stars": 4}
    elif op.operation_id == "reply_to_rating":
        body = {"text": "谢谢"}
    elif op.operation_id == "invite":
        body = {"room_role": "interpreter", "label": "翻译"}
    elif op.body is not None:
        body = {}
    return await person.call(op.method, path, body)


async def test_relationship_matrix(any_server: Server, any_clinic: Clinic):
    server, clinic = any_server, any_clinic
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    patient, visit_id = await _in_room(clinic, doctor, nurse)

    # Participants of another room: a second doctor with its own patient in its own room.
    other_doctor = await verified_doctor(clinic, name="李医生")
    other_patient, other_visit = await _in_room(clinic, other_doctor, nurse)
    token = (await other_patient.ok("POST", f"/visits/{other_visit}/join-token"))["token"]
    other_room = Person(clinic.api, "other-room-link", "patient", token=token)
    # Another institution's nurse, another department's operator.
    elsewhere = await clinic.admin.ok(
        "POST", "/institutions", {"name": "另一家医院", "level": "secondary"}
    )
    far_department = await clinic.admin.ok(
        "POST", f"/institutions/{elsewhere['id']}/departments", {"name": "内科"}
    )
    near_department = await clinic.admin.ok(
        "POST", f"/institutions/{clinic.institution_id}/departments", {"name": "儿科"}
    )
    far_nurse = await _staff(clinic, "nurse", elsewhere["id"], far_department["id"])
    near_operator = await _staff(clinic, "operator", clinic.institution_id, near_department["id"])

    document = await patient.ok("GET", "/documents/risk_notice")
    signature = {"version": document["version"], "digest": document["digest"]}
    outsiders = {
        "patient of another room": other_patient,
        "doctor of another room": other_doctor,
        "nurse of another institution": far_nurse,
        "operator of another department": near_operator,
    }
    tried = 0
    for who, person in outsiders.items():
        for op in _visit_routes():
            assert op.action is not None
            if Role(person.role) not in PERMISSIONS[op.action]:
                continue  # the role table refuses it already (test_role_matrix)
            reply = await _call(person, op, visit_id, signature)
            where = f"{who}: {op.method} {op.path}"
            assert (reply.status, reply.code) in REFUSALS, f"{where}: {reply}"
            if reply.status == 403:
                async with server.app[DATABASE].session() as session:
                    head = await session.scalar(
                        select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
                    )
                assert head is not None
                assert (head.actor_id, head.result) == (person.user_id, "denied"), where
            tried += 1
    # another room's join token opens none of this room's chat routes
    for op in _visit_routes():
        if op.action and op.action.startswith("chat."):
            reply = await _call(other_room, op, visit_id, signature)
            assert (reply.status, reply.code) in REFUSALS, f"other room's token: {op.path}"
            tried += 1
    assert tried >= 30, tried

    # the visit is as it was, its people still have their way, and the chain verifies
    visit = await patient.ok("GET", f"/visits/{visit_id}")
    assert visit["state"] == "in_room"
    await doctor.ok("GET", f"/visits/{visit_id}")
    report = await verify_chain(server.app[DATABASE])
    assert report.ok, report.text()
