"""12-lead ECG from a DICOM waveform (R19): calibrated leads and the device's measurements."""

from __future__ import annotations

import aiohttp
import numpy as np
from dicom_data import series_from
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
    assert "RITMO SINUSALE" in body["statements"]
    assert any(p["name"] == "QRS Onset" and p["samples"] == [460] for p in body["fiducials"])
    events = await imaging_events(world.server.app)
    assert any(e.action == "imaging.retrieve" and '"ecg"' in e.details for e in events)
