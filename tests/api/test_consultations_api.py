"""Remote consultation over the REST API (issue 14), on SQLite and PostgreSQL: the request ->
invitation -> accept/decline -> session -> co-signed report -> decision flow, and its refusals.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apiclient import Clinic, Person
from client import Participant, sees
from consultation_world import PIN, World, two_institutions
from harness import Server, start_server
from peers import wait_for
from signing_ca import SM2_ID_OPT, SigningCa, make_sm2_ca
from timestamping import need_openssl

from consult.consultations.flow import expire_overdue
from consult.consultations.signing import canonical, verify_export
from consult.sqltypes import utc_now
from web.keys import DATABASE

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def signing_ca(tmp_path: Path) -> SigningCa:
    return make_sm2_ca(tmp_path / "ca")


@pytest.fixture(params=["sqlite", "postgresql"])
async def ca_server(
    request: pytest.FixtureRequest, tmp_path: Path, signing_ca: SigningCa
) -> AsyncIterator[Server]:
    settings: dict[str, Any] = {
        "signing_ca_cert_file": signing_ca.cert,
        "signing_ca_key_file": signing_ca.key,
    }
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
        yield await two_institutions(clinic)
    finally:
        await clinic.close()


def openssl_verifies(export: dict[str, Any], ca: SigningCa, directory: Path) -> None:
    """OpenSSL's command line checks the first signature and its certificate on its own."""
    openssl = need_openssl()
    (directory / "doc.json").write_bytes(canonical(export["document"]))
    first = export["signatures"][0]
    (directory / "sig.der").write_bytes(base64.b64decode(first["signature"]))
    (directory / "signer.pem").write_text(first["certificate"])
    check = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", SM2_ID_OPT,
         "-certin", "-inkey", "signer.pem", "-in", "doc.json", "-sigfile", "sig.der"],
        cwd=directory, capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0 and "Signature Verified Successfully" in check.stdout, check
    chain = subprocess.run(
        [openssl, "verify", "-vfyopt", SM2_ID_OPT, "-CAfile", str(ca.cert), "signer.pem"],
        cwd=directory, capture_output=True, text=True,
    )  # fmt: skip
    assert chain.returncode == 0, chain


def ca_server_url(w: World) -> str:
    return w.clinic.api.base_url


async def meet_in_the_room(
    url: str, cid: str, room_id: str, inviter: Person, *invitees_then_declined: Person
) -> None:
    """Issue 14 item 4: the consultation's room (kind consultation) admits the inviter and the
    accepted experts, refuses the expert who declined, and carries everyone's audio and video."""
    *invitees, declined = invitees_then_declined
    refused = await declined.call("POST", f"/consultations/{cid}/join-token")
    assert (refused.status, refused.code) == (403, "not_a_participant"), refused
    people: list[Participant] = []
    try:
        for person, role in ((inviter, "inviter"), *((i, "invitee") for i in invitees)):
            reply = await person.ok("POST", f"/consultations/{cid}/join-token")
            assert (reply["role"], reply["room_id"]) == (role, room_id), reply
            assert reply["room_url"] == f"/room?room={room_id}#token={reply['token']}"
            p = Participant(url, reply["token"], "", room_id=room_id)
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
            timeout=40,
            message="not everyone in the consultation room received everyone's media",
        )
        roles = sorted(p["room_role"] for p in people[0].participants)
        assert roles == ["invitee", "invitee", "inviter"], people[0].participants
    finally:
        for p in people:
            await p.close()


async def sent_request(w: World) -> dict[str, Any]:
    """A request drafted, submitted and approved: sent to the hospital."""
    draft = await w.doctor.ok("POST", "/consultations", w.request())
    assert draft["state"] == "draft"
    cid = draft["id"]
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    approved = await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    assert approved["state"] == "sent"
    return approved


async def test_r10_to_r13_request_invitations_session_cosigned_report_and_decision(
    world: World, signing_ca: SigningCa, tmp_path: Path
) -> None:
    w = world
    e1, e2, e3 = w.experts
    # R10, R16: the grassroots doctor drafts with a PDF attachment and submits; its centre approves.
    draft = await w.doctor.ok("POST", "/consultations", w.request())
    cid = draft["id"]
    assert draft["patient_name"] == "赵某" and draft["sides"] == ["inviter", "requester"]
    attachment = await w.doctor.ok(
        "POST",
        f"/consultations/{cid}/attachments?filename=ecg.pdf",
        raw=PDF,
        headers={"Content-Type": "application/pdf"},
    )
    assert attachment["content_type"] == "application/pdf" and attachment["size"] == len(PDF)
    # The hospital's centre sees nothing before the request is sent.
    early = await w.up_centre.call("GET", f"/consultations/{cid}")
    assert early.status == 403, early
    assert (await w.doctor.ok("POST", f"/consultations/{cid}/submit"))["state"] == "submitted"
    sent = await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    assert sent["state"] == "sent"
    # R37: the invited side sees the case but not the patient's name.
    seen = await w.up_centre.ok("GET", f"/consultations/{cid}")
    assert seen["patient_name"] is None and seen["patient_id"] is None
    assert seen["summary"] == w.request()["summary"] and seen["patient_age"] is not None
    # R12: an expert with under 3 years cannot be assigned.
    junior = await w.up_centre.call(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": w.junior.user_id}
    )
    assert (junior.status, junior.code) == (409, "expert_not_qualified"), junior
    i1 = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": e1.user_id}
    )
    i2 = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": e2.user_id}
    )
    # R11: a decline without a reason is refused; with one, the inviter sees the reason.
    bare = await e1.call("POST", f"/invitations/{i1['id']}/decline", {"reason": "  "})
    assert (bare.status, bare.code) == (422, "decline_reason_required"), bare
    await e1.ok("POST", f"/invitations/{i1['id']}/decline", {"reason": "当日有手术"})
    other = await e1.call("POST", f"/invitations/{i2['id']}/accept")
    assert other.status == 403, other
    await e2.ok("POST", f"/invitations/{i2['id']}/accept")
    mine = await w.doctor.ok("GET", f"/consultations/{cid}")
    assert mine["state"] == "accepted"
    by_expert = {i["expert_id"]: i for i in mine["invitations"]}
    assert by_expert[e1.user_id]["state"] == "declined"
    assert by_expert[e1.user_id]["decline_reason"] == "当日有手术"
    # MDT: a third expert is added and accepts.
    i3 = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": e3.user_id}
    )
    await e3.ok("POST", f"/invitations/{i3['id']}/accept")
    # The declined expert cannot act on the case any more than look at it.
    started = await w.doctor.ok("POST", f"/consultations/{cid}/start")
    assert started["state"] == "in_session" and started["room_id"]
    await meet_in_the_room(ca_server_url(w), cid, started["room_id"], w.doctor, e2, e3, e1)
    # R13: an accepted expert drafts; the inviter does not see a draft.
    content = {
        "findings": "心电图 ST 段压低，运动试验阳性",
        "opinion": "稳定型心绞痛可能性大",
        "treatment_plan": "建议冠脉 CTA",
        "medication_advice": "阿司匹林 100 mg 每日一次",
        "referral_advice": "如 CTA 提示狭窄 >70%，转上级医院介入治疗",
    }
    report = await e2.ok("PUT", f"/consultations/{cid}/report", content)
    rid = report["id"]
    assert report["state"] == "draft" and report["version"] == 1
    hidden = await w.doctor.call("GET", f"/reports/{rid}")
    assert hidden.status == 404, hidden
    declined_expert = await e1.call("PUT", f"/consultations/{cid}/report", content)
    assert declined_expert.status == 403, declined_expert
    # R27, R35: no signature without the PIN; a wrong PIN is refused.
    no_pin = await e2.call("POST", f"/reports/{rid}/sign", {})
    assert no_pin.status == 422, no_pin
    wrong = await e2.call("POST", f"/reports/{rid}/sign", {"pin": "999999"})
    assert (wrong.status, wrong.code) == (403, "signing_pin_invalid"), wrong
    signed = await e2.ok(
        "POST", f"/reports/{rid}/sign", {"pin": PIN, "content_digest": report["content_digest"]}
    )
    assert signed["state"] == "signing" and len(signed["signatures"]) == 1
    # R24: a signed report cannot be changed.
    changed = await e3.call("PUT", f"/consultations/{cid}/report", {**content, "opinion": "改"})
    assert (changed.status, changed.code) == (409, "report_signed"), changed
    cosigned = await e3.ok("POST", f"/reports/{rid}/sign", {"pin": PIN})
    assert [s["signer_id"] for s in cosigned["signatures"]] == [e2.user_id, e3.user_id]
    again = await e3.call("POST", f"/reports/{rid}/sign", {"pin": PIN})
    assert again.code == "report_already_signed_by_you", again
    issued = await e2.ok("POST", f"/reports/{rid}/issue")
    assert issued["state"] == "issued"
    # R13: the inviter decides; R15: both institutions see the archived report.
    decided = await w.doctor.ok(
        "POST", f"/consultations/{cid}/decision", {"decision": "按会诊意见行冠脉 CTA，暂不转诊"}
    )
    assert decided["state"] == "decided" and decided["closed_at"]
    for side in (w.doctor, w.down_centre, w.up_centre, e2):
        archived = await side.ok("GET", f"/consultations/{cid}")
        assert archived["state"] == "decided"
        assert [r["state"] for r in archived["reports"]] == ["issued"]
        assert archived["reports"][0]["content"] == content
    # The signed export verifies offline against the CA; OpenSSL verifies a signature alone.
    export = await w.up_centre.ok("GET", f"/reports/{rid}/signed")
    result = verify_export(export, signing_ca.cert.read_bytes())
    assert result.ok, result.text()
    assert result.signers == ["王教授", "陈医生"]
    await asyncio.to_thread(openssl_verifies, export, signing_ca, tmp_path)
    # R15: the inviter archives the PDF in Chinese, with the signatures listed.
    pdf = await w.doctor.call("GET", f"/reports/{rid}/signed.pdf")
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf", pdf
    assert pdf.raw.startswith(b"%PDF-") and b"+NotoSansCJKSC" in pdf.raw
    # Nothing changes a decided consultation.
    late = await e2.call("POST", f"/consultations/{cid}/report/versions", content)
    assert (late.status, late.code) == (409, "consultation_closed"), late
    # The attachment reaches the invited side, byte for byte.
    got = await e2.call("GET", f"/consultations/{cid}/attachments/{attachment['id']}")
    assert got.status == 200 and got.raw == PDF


async def test_r15_no_agreement_no_invitation_and_r24_new_version_keeps_the_old(
    world: World, ca_server: Server
) -> None:
    w = world
    # R15: an institution without an agreement cannot be invited.
    other = await w.clinic.admin.ok(
        "POST", "/institutions", {"name": "远方医院", "level": "tertiary"}
    )
    refused = await w.doctor.call(
        "POST", "/consultations", w.request(target_institution_id=other["id"])
    )
    assert (refused.status, refused.code) == (409, "no_cooperation_agreement"), refused
    # Nor the other way round: the agreement is one way.
    sent = await sent_request(w)
    cid = sent["id"]
    e1 = w.experts[0]
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": e1.user_id}
    )
    twice = await w.up_centre.call(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": e1.user_id}
    )
    assert twice.code == "expert_already_invited", twice
    await e1.ok("POST", f"/invitations/{invitation['id']}/accept")
    # R11: an invitation not answered by its deadline expires; a late answer is refused.
    e2 = w.experts[1]
    late = await w.up_centre.ok(
        "POST",
        f"/consultations/{cid}/invitations",
        {"expert_id": e2.user_id, "respond_within_hours": 1},
    )
    db = ca_server.app[DATABASE]
    assert await expire_overdue(db, now=utc_now() + timedelta(minutes=59)) == 0
    assert await expire_overdue(db, now=utc_now() + timedelta(hours=1, seconds=1)) == 1
    answer = await e2.call("POST", f"/invitations/{late['id']}/accept")
    assert (answer.status, answer.code) == (409, "invitation_closed"), answer
    states = {
        i["expert_id"]: i["state"]
        for i in (await w.doctor.ok("GET", f"/consultations/{cid}"))["invitations"]
    }
    assert states == {e1.user_id: "accepted", e2.user_id: "expired"}
    content = {"opinion": "高血压 2 级，很高危", "treatment_plan": "调整降压方案"}
    first = await e1.ok("PUT", f"/consultations/{cid}/report", content)
    unsigned = await e1.call("POST", f"/consultations/{cid}/report/versions", content)
    assert unsigned.code == "report_unsigned", unsigned
    await e1.ok("POST", f"/reports/{first['id']}/sign", {"pin": PIN})
    # R24: a change after signing is a new version; the old one stays as it was.
    second = await e1.ok(
        "POST", f"/consultations/{cid}/report/versions", {**content, "opinion": "高血压 3 级"}
    )
    assert second["version"] == 2 and second["supersedes_id"] == first["id"]
    old = await e1.ok("GET", f"/reports/{first['id']}")
    assert old["state"] == "superseded" and old["content"]["opinion"] == "高血压 2 级，很高危"
    assert len(old["signatures"]) == 1
    stale = await e1.call("POST", f"/reports/{first['id']}/sign", {"pin": PIN})
    assert stale.status == 409, stale
    # The requester may cancel before a decision; the invitation is withdrawn with it.
    cancelled = await w.doctor.ok("POST", f"/consultations/{cid}/cancel")
    assert cancelled["state"] == "cancelled"
    assert [i["state"] for i in cancelled["invitations"]] == ["withdrawn", "expired"]
