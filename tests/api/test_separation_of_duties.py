"""Separation of duties (R34, issue 13 item 2): an admin cannot take over a doctor's account."""

from __future__ import annotations

import asyncio
import json

from apiclient import PASSWORD, Clinic, Person, Totp
from harness import Server
from people import booked_visit, verified_doctor
from sqlalchemy import select

from consult.models import AuditEvent
from web.keys import DATABASE


async def test_r34_an_admin_reset_never_lets_the_admin_in_as_the_doctor(
    any_server: Server, any_clinic: Clinic
):
    admin = any_clinic.admin
    doctor = await verified_doctor(any_clinic)
    nurse = await any_clinic.person("nurse")
    visit = (await booked_visit(any_clinic, doctor, nurse)).visit
    assert (await doctor.call("GET", f"/visits/{visit['id']}")).status == 200

    # the admin cannot choose the doctor's password (refused, audited)
    reply = await admin.call(
        "POST", f"/accounts/{doctor.user_id}/password", {"new_password": "Admin-Knows-This-9"}
    )
    assert (reply.status, reply.code) == (403, "credentials_set_by_person"), reply
    # ... it issues a one-time link instead; the doctor's sessions end at once
    issued = await admin.ok("POST", f"/accounts/{doctor.user_id}/enrolment-link")
    assert issued["url"] == "/enrol#" + issued["token"]  # the secret stays out of the query
    assert (await doctor.call("GET", f"/visits/{visit['id']}")).code == "session_invalid"
    # neither the old password nor anything the admin chose signs in
    for password in (PASSWORD, "Admin-Knows-This-9"):
        reply = await doctor.api.call(
            "POST", "/session", {"username": doctor.username, "password": password}
        )
        assert reply.code == "invalid_credentials", reply

    # the person redeems the link (once; in parallel only one wins)
    new_password = "Doctor-Own-Secret-58"
    replies = await asyncio.gather(
        *(
            doctor.api.call(
                "POST", "/enrolment", {"token": issued["token"], "new_password": new_password}
            )
            for _ in range(3)
        )
    )
    assert sorted(r.status for r in replies) == [204, 401, 401], replies
    assert {r.code for r in replies if r.status == 401} == {"enrolment_link_invalid"}

    # whoever holds the new password gets an enrolment-only session: clinical routes refuse
    # until a second factor of their own is enrolled
    returning = Person(doctor.api, doctor.username, "doctor", password=new_password)
    reply = await returning.sign_in()
    assert reply.status == 201 and reply.body["totp_enrolment_required"] is True, reply
    reply = await returning.call("GET", f"/visits/{visit['id']}")
    assert (reply.status, reply.code) == (403, "totp_enrolment_required"), reply
    enrolment = await returning.ok("POST", "/me/totp")
    returning.totp = Totp(enrolment["secret"])
    await returning.ok("POST", "/me/totp/confirm", {"code": await returning.totp.code()})
    assert (await returning.call("GET", f"/visits/{visit['id']}")).status == 200

    async with any_server.app[DATABASE].session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_id == doctor.user_id)
                .order_by(AuditEvent.seq)
            )
        ).all()
    actions = [(e.action, e.result) for e in rows]
    assert ("account.reset_password", "denied") in actions or (
        "account.reset_password",
        "refused",
    ) in actions, actions
    assert ("account.enrolment_link", "ok") in actions
    assert ("account.enrol_by_link", "ok") in actions
    assert all("Doctor-Own" not in (e.details or "") for e in rows)
    assert json.loads(next(e.details for e in rows if e.action == "account.enrolment_link"))


async def test_r34_an_expired_or_unknown_link_answers_alike(any_clinic: Clinic):
    reply = await any_clinic.api.call(
        "POST", "/enrolment", {"token": "x" * 43, "new_password": "Doctor-Own-Secret-58"}
    )
    assert (reply.status, reply.code) == (401, "enrolment_link_invalid"), reply
