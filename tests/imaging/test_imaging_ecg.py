"""12-lead ECG from a DICOM waveform (R19): calibrated leads and the device's measurements."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import numpy as np
from dicom_data import aecg_document, series_from
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from pydicom.waveforms.numpy_handler import multiplex_array

from consult.imaging.ecg import lead_name

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_lead_names() -> None:
    assert lead_name("Lead I (Einthoven)") == "I"
    assert lead_name("Lead aVR") == "aVR"
    assert lead_name("Lead V6") == "V6"


async def test_ecg_json_has_calibrated_leads_and_the_device_measurements(world: World) -> None:
    """pydicom's waveform_ecg.dcm over STOW-RS: 12 leads at 1000 Hz in mV (1.25 uV per unit),
    RR 982, PR 161, QRS 75, QT 368, QTc 370 ms as the device stored them; the read is audited and
    another doctor is refused."""
    ds = series_from("waveform_ecg.dcm", 1)[0]
    await off_loop(client(world.stow_url, world.doctor).store_instances, [ds])
    url = (
        f"{world.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/ecg"
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {world.doctor.token}"}) as r:
            assert r.status == 200 and r.content_type == "application/json"
            body = await r.json()
        async with http.get(
            url, headers={"Authorization": f"Bearer {world.other_doctor.token}"}
        ) as r:
            assert r.status == 403
    rhythm = body["groups"][0]
    assert rhythm["label"] == "RHYTHM"
    assert rhythm["sampling_frequency_hz"] == 1000.0 and rhythm["samples"] == 10000
    assert [lead["name"] for lead in rhythm["leads"]] == LEADS
    raw = multiplex_array(ds, 0, as_raw=True)
    for number, lead in enumerate(rhythm["leads"]):
        assert lead["units"] == "mV" and lead["mv_per_unit"] == 0.00125
        assert np.allclose(lead["values"], raw[:, number] * 0.00125, atol=1e-5)
    measured = {m["name"]: m["value"] for m in body["measurements"]}
    assert {k: measured[k] for k in ("RR Interval", "PR Interval", "QRS Duration")} == {
        "RR Interval": 982.0,
        "PR Interval": 161.0,
        "QRS Duration": 75.0,
    }
    assert measured["QT Interval"] == 368.0 and measured["QTc Interval"] == 370.0
    # each with its concept's code, which the viewer names in its own language
    coded = {m["code"]: m["value"] for m in body["measurements"]}
    assert coded["SCPECG:5.13.5-7"] == 161.0 and coded["SCPECG:5.10.3-13"] == 52.0
    assert "RITMO SINUSALE" in body["statements"]
    assert any(p["name"] == "QRS Onset" and p["samples"] == [460] for p in body["fiducials"])
    events = await imaging_events(world.server.app)
    assert any(e.action == "imaging.retrieve" and '"ecg"' in e.details for e in events)


async def test_r19_r20_an_hl7_aecg_joins_the_visit_as_the_same_ecg_view(world: World) -> None:
    """An HL7 aECG document (synthesised from waveform_ecg.dcm's samples) posted to a visit is
    stored as a DICOM ECG waveform (ecgdatakit parses it): the viewer's ECG JSON has the 12
    leads with exactly the DICOM's calibrated values, the document's measurements and
    statement; the same document again is the same instance; malformed, entity-laden,
    uncalibrated, wrongly typed documents and a patient's token are refused with stable codes,
    nothing crashes, no patient name is taken from the document."""
    source = series_from("waveform_ecg.dcm", 1)[0]
    url = f"{world.dicomweb}/visits/{world.visit_id}/aecg"
    document = aecg_document(source, document_id=str(uuid.uuid4()))

    async def post(body: bytes, person: Any = None, kind: str = "application/xml") -> Any:
        headers = {"Authorization": f"Bearer {(person or world.doctor).token}"}
        headers["Content-Type"] = kind
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers=headers) as r:
                return r.status, await r.json(content_type=None)

    status, body = await post(document)
    assert status == 201, body
    assert body["leads"] == LEADS and body["samples"] == 10000
    assert body["sampling_frequency_hz"] == 1000.0 and body["duplicate"] is False
    status, again = await post(document)
    assert status == 200 and again["duplicate"] is True
    assert again["sop_instance_uid"] == body["sop_instance_uid"]

    ecg_url = (
        f"{world.dicomweb}/studies/{body['study_uid']}/series/{body['series_uid']}"
        f"/instances/{body['sop_instance_uid']}/ecg"
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(
            ecg_url, headers={"Authorization": f"Bearer {world.doctor.token}"}
        ) as r:
            assert r.status == 200
            ecg = await r.json()
    rhythm = ecg["groups"][0]
    assert rhythm["sampling_frequency_hz"] == 1000.0 and rhythm["label"] == "RHYTHM"
    assert [lead["name"] for lead in rhythm["leads"]] == LEADS
    raw = multiplex_array(source, 0, as_raw=True)
    for number, lead in enumerate(rhythm["leads"]):
        assert lead["mv_per_unit"] == 0.00125
        assert np.allclose(lead["values"], raw[:, number] * 0.00125, atol=1e-9)
    measured = {m["name"]: m["value"] for m in ecg["measurements"]}
    assert {k: measured[k] for k in ("RR Interval", "PR Interval", "QRS Duration")} == {
        "RR Interval": 982.0,
        "PR Interval": 161.0,
        "QRS Duration": 75.0,
    }
    assert measured["QT Interval"] == 368.0 and measured["QTc Interval"] == 370.0
    assert ecg["statements"] == ["RITMO SINUSALE"]
    stored = await off_loop(
        client(world.dicomweb, world.doctor).retrieve_instance,
        body["study_uid"],
        body["series_uid"],
        body["sop_instance_uid"],
    )
    assert stored.Modality == "ECG" and str(stored.PatientName) == ""

    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE AnnotatedECG [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><AnnotatedECG>&b;</AnnotatedECG>'
    )
    refusals = [
        (document[: len(document) // 2], "aecg_malformed", 422),
        (bomb, "aecg_malformed", 422),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>", "aecg_malformed", 422),
        (b"\x00\xff not xml", "aecg_malformed", 422),
        (
            aecg_document(source, document_id=str(uuid.uuid4()), scale_unit="mmHg"),
            "aecg_uncalibrated",
            422,
        ),
    ]
    for payload, code, expected in refusals:
        status, answer = await post(payload)
        assert (status, answer["error"]["code"]) == (expected, code), (payload[:80], answer)
    status, answer = await post(document, kind="application/json")
    assert status == 415
    status, answer = await post(document, person=world.patient)
    assert status == 403
