"""Remote diagnosis requests over the REST API (issue 14 item 6: R14, R19, R37, R24, R27): the
inviter attaches an exam of its imaging store, the invited expert reads the de-identified copy and
signs a diagnostic report naming both sides' liability, the inviter's acceptance recorded.
On SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from apiclient import Clinic, Person
from consultation_world import PIN, World, two_institutions
from harness import Server, start_server
from people import new_id_number, new_phone
from pydicom import dcmread
from pydicom.uid import generate_uid
from signing_ca import SigningCa, make_sm2_ca
from sqlalchemy import select

from consult.consultations.signing import verify_export
from consult.imaging.store import Destination
from consult.models import AuditEvent
from web import report_cli
from web.keys import DATABASE, IMAGING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "imaging"))
from dicom_data import local_file

MARKER_NAME = "ZHAO^MOUMOU"


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
        w = await two_institutions(clinic, experts=2)
        w.extra["server"] = ca_server
        yield w
    finally:
        await clinic.close()


async def stored_study(
    server: Server, name: str, institution_id: str, patient_record_id: str
) -> str:
    """``name`` (a pydicom test file) as a modality of ``institution_id`` sends it (C-STORE),
    its Patient ID our record id and a patient name planted; the new Study Instance UID."""
    store = server.app[IMAGING]
    ds = dcmread(local_file(name))
    ds = copy.deepcopy(ds)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_record_id
    ds.PatientName = MARKER_NAME
    incoming = store.new_incoming()
    ds.save_as(incoming, enforce_file_format=True)
    await store.ingest(
        incoming,
        Destination(institution_id=institution_id, source="cstore", calling_ae="CT_ROOM_1"),
        None,
    )
    return str(ds.StudyInstanceUID)


async def audit_actions(server: Server, action: str) -> list[AuditEvent]:
    async with server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
        return list(rows.all())


async def metadata(person: Person, study_uid: str) -> Any:
    return await person.call(
        "GET",
        f"/dicomweb/studies/{study_uid}/metadata",
        headers={"Accept": "application/dicom+json"},
    )


async def test_r14_r19_imaging_read_shared_deidentified_signed_with_joint_liability(
    world: World, signing_ca: SigningCa, tmp_path: Path
) -> None:
    """R14, R19, R37, R24, R27: a CT study of the grassroots clinic attached to an imaging read;
    another institution's study and another patient's are refused; no submit without an exam;
    sent, the hospital's invited expert opens a de-identified copy (no patient name or ID, no
    original UID) and the uninvited expert cannot; the diagnostic report is signed with the PIN
    and its signed document names the performing and the reading side; the inviter's decision is
    the export's acceptance; ``verify`` accepts it and names a changed acceptance."""
    w = world
    server: Server = w.extra["server"]
    reader, bystander = w.experts
    record_id = w.patient_record["id"]
    ct_uid = await stored_study(server, "CT_small.dcm", w.down_id, record_id)
    elsewhere_uid = await stored_study(server, "CT_small.dcm", w.up_id, record_id)
    other_record = await w.nurse.ok(
        "POST",
        "/patients",
        {"name": "钱某", "id_number": new_id_number("19700101"), "phone": new_phone()},
    )
    other_patient_uid = await stored_study(server, "CT_small.dcm", w.down_id, other_record["id"])

    draft = await w.doctor.ok("POST", "/consultations", w.request(kind="imaging"))
    cid = draft["id"]
    # R14, R19: no imaging read without the exam.
    bare = await w.doctor.call("POST", f"/consultations/{cid}/submit")
    assert (bare.status, bare.code) == (409, "exam_required"), bare
    # The requester picks from its institution's studies of this patient only.
    choices = (await w.doctor.ok("GET", f"/consultations/{cid}/exam-choices"))["exams"]
    assert [c["study_uid"] for c in choices] == [ct_uid]
    assert choices[0]["modalities"] == ["CT"] and choices[0]["instances"] == 1
    for refused_uid in (elsewhere_uid, other_patient_uid):
        refused = await w.doctor.call(
            "POST", f"/consultations/{cid}/exams", {"study_uid": refused_uid}
        )
        assert (refused.status, refused.code) == (409, "exam_not_attachable"), refused
    exam = await w.doctor.ok("POST", f"/consultations/{cid}/exams", {"study_uid": ct_uid})
    assert exam["content_type"] == "application/dicom"
    assert exam["exam"] == {"modalities": ["CT"], "instances": 1, "ecg": False, "shared": False}
    # The requester opens the original in the viewer (audited).
    mine = await w.doctor.ok("GET", f"/consultations/{cid}/exams/{exam['id']}")
    assert mine["study_uid"] == ct_uid and mine["viewer_url"] == f"/viewer?study={ct_uid}"
    assert (await metadata(w.doctor, ct_uid)).status == 200

    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    sent = await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    assert sent["state"] == "sent" and sent["attachments"][0]["exam"]["shared"] is True
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": reader.user_id}
    )
    # R37: the invited expert sees the exam, opens the de-identified copy, never the original.
    seen = await reader.ok("GET", f"/consultations/{cid}")
    assert seen["patient_name"] is None and seen["patient_id"] is None
    assert record_id not in json.dumps(seen) and ct_uid not in json.dumps(seen)
    link = await reader.ok("GET", f"/consultations/{cid}/exams/{exam['id']}")
    copy_uid = link["study_uid"]
    assert copy_uid != ct_uid and link["ecg"] is False
    got = await metadata(reader, copy_uid)
    assert got.status == 200, got
    text = got.raw.decode()
    assert MARKER_NAME not in text and record_id not in text and ct_uid not in text
    instance = got.body[0]
    assert instance.get("00100020", {}).get("Value") != [record_id]  # Patient ID replaced
    assert instance["00120062"]["Value"] == ["YES"]  # Patient Identity Removed
    original = await metadata(reader, ct_uid)
    assert original.status == 403, original
    assert (await metadata(bystander, copy_uid)).status == 403
    assert (await bystander.call("GET", f"/consultations/{cid}/exams/{exam['id']}")).status == 403
    opened = await audit_actions(server, "consultation.view_exam")
    assert {e.actor_id for e in opened if e.result == "ok"} == {w.doctor.user_id, reader.user_id}
    assert {e.actor_id for e in opened if e.result == "denied"} == {bystander.user_id}
    assert await audit_actions(server, "consultation.share_exam")

    # R14, R27: the reading expert writes and signs the diagnostic report.
    await reader.ok("POST", f"/invitations/{invitation['id']}/accept")
    wrong_fields = await reader.call(
        "PUT", f"/consultations/{cid}/report", {"opinion": "x", "treatment_plan": "y"}
    )
    assert wrong_fields.status == 422, wrong_fields
    content = {
        "examination": "胸部 CT 平扫",
        "findings": "右肺上叶见一约 8 mm 磨玻璃结节",
        "opinion": "右肺上叶磨玻璃结节，建议随访",
        "recommendation": "3 个月后复查薄层 CT",
    }
    report = await reader.ok("PUT", f"/consultations/{cid}/report", content)
    assert report["content"] == content
    rid = report["id"]
    signed = await reader.ok("POST", f"/reports/{rid}/sign", {"pin": PIN})
    assert signed["state"] == "signing"
    await reader.ok("POST", f"/reports/{rid}/issue")
    decided = await w.doctor.ok(
        "POST", f"/consultations/{cid}/decision", {"decision": "同意诊断意见，3 个月后复查"}
    )
    assert decided["decided_by"] == w.doctor.user_id and decided["decided_at"]
    assert decided["decided_by_name"] == "李村医"

    export = await w.up_centre.ok("GET", f"/reports/{rid}/signed")
    document = export["document"]
    assert document["type"] == "diagnostic_report" and document["kind"] == "imaging"
    liability = document["liability"]
    assert liability["shared"] is True
    assert liability["performing"]["institution"]["id"] == w.down_id
    assert liability["performing"]["requesting_doctor"]["id"] == w.doctor.user_id
    assert liability["reading"]["institution"]["id"] == w.up_id
    assert document["exams"] == [
        {
            "attachment_id": exam["id"],
            "modalities": ["CT"],
            "instances": 1,
            "instances_sm3": exam["sm3"],
        }
    ]
    acceptance = export["acceptance"]
    assert acceptance["decided_by"]["id"] == w.doctor.user_id
    assert acceptance["decision"] == "同意诊断意见，3 个月后复查"
    assert acceptance["accepts_document_sm3"] == export["document_sm3"]
    result = verify_export(export, signing_ca.cert.read_bytes())
    assert result.ok and result.signers == ["张主任"], result.text()
    tampered = {**export, "acceptance": {**acceptance, "accepts_document_sm3": "0" * 64}}
    problems = verify_export(tampered, signing_ca.cert.read_bytes()).problems
    assert [p.code for p in problems] == ["acceptance_mismatch"]
    pdf = await w.doctor.call("GET", f"/reports/{rid}/signed.pdf")
    assert pdf.status == 200 and pdf.raw.startswith(b"%PDF-")
    # `teleconsult report verify` on the files both sides archive (the PDF made again from them)
    (tmp_path / "report.json").write_text(json.dumps(export, ensure_ascii=False))
    (tmp_path / "report.pdf").write_bytes(pdf.raw)
    (tmp_path / "tampered.json").write_text(json.dumps(tampered, ensure_ascii=False))
    args = {"ca": str(signing_ca.cert), "tsa_ca": None, "require_timestamp": False}
    ok = argparse.Namespace(file=str(tmp_path / "report.json"), pdf=str(tmp_path / "report.pdf"))
    assert await asyncio.to_thread(report_cli.run, argparse.Namespace(**vars(ok), **args)) == 0
    bad = argparse.Namespace(file=str(tmp_path / "tampered.json"), pdf=None, **args)
    assert await asyncio.to_thread(report_cli.run, bad) == 1


async def test_r19_ecg_read_opens_the_ecg_view_of_the_copy(world: World) -> None:
    """R19: an ECG waveform study attached to an ECG read is shared when sent; the invited
    expert's link opens the ECG view and the copy's waveform reads as ECG JSON."""
    w = world
    server: Server = w.extra["server"]
    reader = w.experts[0]
    ecg_uid = await stored_study(server, "waveform_ecg.dcm", w.down_id, w.patient_record["id"])
    draft = await w.doctor.ok("POST", "/consultations", w.request(kind="ecg"))
    cid = draft["id"]
    exam = await w.doctor.ok("POST", f"/consultations/{cid}/exams", {"study_uid": ecg_uid})
    assert exam["exam"]["ecg"] is True and exam["exam"]["modalities"] == ["ECG"]
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    await w.up_centre.ok("POST", f"/consultations/{cid}/invitations", {"expert_id": reader.user_id})
    link = await reader.ok("GET", f"/consultations/{cid}/exams/{exam['id']}")
    assert link["ecg"] is True
    series = await reader.call(
        "GET",
        f"/dicomweb/studies/{link['study_uid']}/series",
        headers={"Accept": "application/dicom+json"},
    )
    assert series.status == 200, series
    series_uid = series.body[0]["0020000E"]["Value"][0]
    instances = await reader.call(
        "GET",
        f"/dicomweb/studies/{link['study_uid']}/series/{series_uid}/instances",
        headers={"Accept": "application/dicom+json"},
    )
    sop = instances.body[0]["00080018"]["Value"][0]
    ecg = await reader.call(
        "GET",
        f"/dicomweb/studies/{link['study_uid']}/series/{series_uid}/instances/{sop}/ecg",
    )
    assert ecg.status == 200 and len(ecg.body["groups"][0]["leads"]) == 12, ecg
    assert MARKER_NAME not in ecg.raw.decode()


async def test_r24_r37_a_withdrawn_expert_is_refused_at_once_though_its_read_was_kept(
    world: World,
) -> None:
    """R37, R24, R33: the invited expert reads the copy twice (the second read is served from
    the kept decision: no access statement), the invited centre withdraws the invitation, and
    the expert's very next read is a 403, audited as a refusal; so is its next one."""
    from consult.imaging.access import _granted_of

    w = world
    server: Server = w.extra["server"]
    reader, _ = w.experts
    ct_uid = await stored_study(server, "CT_small.dcm", w.down_id, w.patient_record["id"])
    cid = (await w.doctor.ok("POST", "/consultations", w.request(kind="imaging")))["id"]
    exam = await w.doctor.ok("POST", f"/consultations/{cid}/exams", {"study_uid": ct_uid})
    await w.doctor.ok("POST", f"/consultations/{cid}/submit")
    await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
    invitation = await w.up_centre.ok(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": reader.user_id}
    )
    copy_uid = (await reader.ok("GET", f"/consultations/{cid}/exams/{exam['id']}"))["study_uid"]
    grants = _granted_of(server.app[DATABASE])
    assert (await metadata(reader, copy_uid)).status == 200
    hits = grants.hits
    assert (await metadata(reader, copy_uid)).status == 200
    assert grants.hits == hits + 1  # the decision was kept
    await w.up_centre.ok("POST", f"/invitations/{invitation['id']}/withdraw")
    before = len(await audit_actions(server, "imaging.read"))
    for _ in range(2):
        refused = await metadata(reader, copy_uid)
        assert (refused.status, refused.code) == (403, "forbidden"), refused
    denied = (await audit_actions(server, "imaging.read"))[before:]
    assert [(e.actor_id, e.result) for e in denied] == [(reader.user_id, "denied")] * 2
