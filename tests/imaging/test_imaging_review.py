"""Review together (issue 15, build 6; R14, R19, R24): one shared view across a room's
participants over the signaling socket (signaling/review.py, docs/review.md). Real sockets on a
real server; the pixels themselves are read over DICOMweb with the room's join token."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from typing import Any

import aiohttp
import highdicom as hd
import pytest
import requests
from apiclient import Person
from dicom_data import series_from
from dicomweb_client.api import DICOMwebClient
from harness import skip_or_fail
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from people import booked_visit, sign
from pydicom.uid import generate_uid
from review_client import Viewer, relay_bound_ms, wait_until
from sqlalchemy import select

from consult.models import AuditEvent
from web.keys import DATABASE


async def _in_room(world: World) -> None:
    await sign(world.patient, world.visit_id, "risk_notice", "consent")
    await world.patient.ok("POST", f"/visits/{world.visit_id}/check-in", {})
    await world.doctor.ok("POST", f"/visits/{world.visit_id}/admit")


async def _token(person: Person, visit_id: str) -> str:
    return str((await person.ok("POST", f"/visits/{visit_id}/join-token"))["token"])


async def _store_ct(world: World, count: int = 3, patient_name: str | None = None) -> Any:
    series = series_from("CT_small.dcm", count)
    for ds in series:
        ds.PatientName = patient_name or ds.PatientName
    await off_loop(client(world.stow_url, world.doctor).store_instances, series)
    return series


def _view(index: int, sent_at: float | None = None) -> dict[str, Any]:
    return {
        "view": {
            "index": index,
            "camera": {
                "focal_point": [1.5, -2.0, float(index)],
                "position": [1.5, -2.0, 500.0 + index],
                "view_up": [0.0, -1.0, 0.0],
                "parallel_scale": 120.0 - index,
            },
            "voi": {"lower": -160.0 + index, "upper": 240.0},
            "pointer": [10.0, 20.0, float(index)],
        },
        "sent_at": sent_at,
    }


async def test_r14_followers_follow_the_presenter_and_a_late_joiner_lands_on_the_view(
    world: World,
) -> None:
    """The doctor shares a CT series; the patient's viewer gets every view in order (relay p95
    on loopback printed; the issue's target is 5 ms on a quiet machine, asserted here at 50 ms
    for a loaded one); measurements replace the last set; a viewer that joins late gets the
    current view, subject and measurements in its join ack; everything fetched with the join
    token over DICOMweb reads the room's study."""
    await _in_room(world)
    series = await _store_ct(world)
    study, series_uid = series[0].StudyInstanceUID, series[0].SeriesInstanceUID
    presenter = Viewer(world.server.url, await _token(world.doctor, world.visit_id))
    patient_token = await _token(world.patient, world.visit_id)
    follower = Viewer(world.server.url, patient_token)
    late = Viewer(world.server.url, patient_token)
    try:
        for v in (presenter, follower):
            await v.connect()
            ack = await v.call("review_join")
            assert ack["ok"] and ack["state"]["presenter"] is None, ack
        ack = await presenter.call(
            "review_share", {"kind": "image", "study": study, "series": series_uid}
        )
        assert ack["ok"], ack
        await wait_until(lambda: bool(follower.states))
        assert follower.states[-1]["presenter"] == world.doctor.user_id
        assert follower.states[-1]["subject"]["series"] == series_uid

        sent: dict[int, float] = {}
        for index in range(60):
            sent[index] = time.perf_counter()
            ack = await presenter.call("review_view", _view(index, time.time() * 1000))
            assert ack["ok"], ack
        await wait_until(lambda: len(follower.views) == 60)
        got = [d["view"]["index"] for _, d in follower.views]
        assert got == list(range(60))  # in order, none lost
        latencies = sorted((t - sent[d["view"]["index"]]) * 1000 for t, d in follower.views)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"review relay: p50 {statistics.median(latencies):.2f} ms, p95 {p95:.2f} ms")
        assert p95 <= relay_bound_ms()
        assert presenter.views == []  # the presenter is not sent its own view

        marks = [
            {
                "uid": "m1",
                "tool": "Length",
                "instance": series[1].SOPInstanceUID,
                "frame": 1,
                "points": [[0.0, 0.0, 1.0], [30.0, 40.0, 1.0]],
            }
        ]
        ack = await presenter.call("review_annotations", {"annotations": marks})
        assert ack["ok"], ack
        await wait_until(lambda: bool(follower.annotations))
        assert follower.annotations[-1]["annotations"] == marks

        await late.connect()
        started = time.perf_counter()
        ack = await late.call("review_join")
        joined_ms = (time.perf_counter() - started) * 1000
        print(f"late joiner state in {joined_ms:.1f} ms")
        assert ack["ok"] and joined_ms <= 100.0
        state = ack["state"]
        assert state["subject"]["study"] == study and state["view"]["index"] == 59
        assert state["view"]["camera"]["parallel_scale"] == 61.0
        assert state["view"]["voi"] == {"lower": -101.0, "upper": 240.0}
        assert state["annotations"] == marks
        assert {m["id"] for m in state["members"]} == {world.doctor.user_id, world.patient.user_id}

        # the follower reads the shared study with the room's join token (QIDO, audited)
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{world.dicomweb}/studies/{study}/series",
                headers={"Authorization": f"Bearer {patient_token}"},
            ) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Content-Type"] == "application/dicom+json"
    finally:
        for v in (presenter, follower, late):
            await v.close()


async def test_r24_the_review_refuses_followers_driving_and_studies_of_other_visits(
    world: World,
) -> None:
    """A patient cannot share (permission table, audited) nor drive the view (not_presenter);
    a study of another visit of the same doctor is refused in this room (403, audited) and its
    pixels are refused to this room's join token; malformed views get bad_request; the
    presenter leaving leaves the view where it was with nobody presenting."""
    await _in_room(world)
    series = await _store_ct(world, 1)
    other = await booked_visit(world.clinic, world.doctor, world.nurse)
    elsewhere = series_from("CT_small.dcm", 1)
    await off_loop(
        client(f"{world.dicomweb}/visits/{other.visit['id']}", world.doctor).store_instances,
        elsewhere,
    )
    doctor_token = await _token(world.doctor, world.visit_id)
    presenter = Viewer(world.server.url, doctor_token)
    follower = Viewer(world.server.url, await _token(world.patient, world.visit_id))
    try:
        for v in (presenter, follower):
            await v.connect()
        ack = await presenter.call("review_view", _view(1))
        assert ack["error"]["code"] == "not_in_review"
        for v in (presenter, follower):
            assert (await v.call("review_join"))["ok"]
        study = series[0].StudyInstanceUID
        ack = await follower.call("review_share", {"study": study})
        assert ack["error"]["code"] == "forbidden"
        ack = await presenter.call("review_view", _view(1))
        assert ack["error"]["code"] == "not_presenter"
        ack = await presenter.call("review_share", {"study": elsewhere[0].StudyInstanceUID})
        assert ack["error"]["code"] == "forbidden"
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{world.dicomweb}/studies/{elsewhere[0].StudyInstanceUID}/series",
                headers={"Authorization": f"Bearer {doctor_token}"},
            ) as r:
                assert r.status == 403
        assert (await presenter.call("review_share", {"study": study}))["ok"]
        assert (await follower.call("review_view", _view(2)))["error"]["code"] == "forbidden"
        bad_views = [
            {"view": {"voi": {"lower": 10, "upper": 5}}},
            {"view": {"camera": {"focal_point": [0, 0], "position": [0, 0, 1]}}},
            {"view": {"index": -1}},
            {"view": {"pointer": [float("inf"), 0, 0]}},
            {"view": {"ecg": {"speed": 33}}},
            {"view": "slice 3"},
        ]
        for bad in bad_views:
            ack = await presenter.call("review_view", bad)
            assert ack["error"]["code"] == "bad_request", (bad, ack)
        ack = await presenter.call(
            "review_handover", {"to": world.patient.user_id}
        )  # only a doctor presents
        assert ack["error"]["code"] == "forbidden"
        assert (await presenter.call("review_view", _view(7)))["ok"]
        await presenter.close()
        await wait_until(lambda: any(s["presenter"] is None for s in follower.states))
        assert follower.states[-1]["view"]["index"] == 7
    finally:
        await presenter.close()
        await follower.close()
    async with world.server.app[DATABASE].session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action.in_(("room.review", "room.viewer_sync", "imaging.read"))
                )
            )
        ).all()
    denied = [(e.action, e.actor_id) for e in rows if e.result == "denied"]
    assert ("room.viewer_sync", world.patient.user_id) in denied
    assert ("imaging.read", world.doctor.user_id) in denied
    assert any(e.action == "room.review" and '"share"' in e.details for e in rows)


def _on_image(ds: Any, column: float, row: float, off_plane: float = 0.0) -> list[float]:
    """World mm of pixel (column, row)'s centre on ``ds`` (as Cornerstone3D's handles are)."""
    origin = [float(v) for v in ds.ImagePositionPatient]
    spacing = float(ds.PixelSpacing[0])
    return [origin[0] + column * spacing, origin[1] + row * spacing, origin[2] + off_plane]


async def test_r20_r24_the_presenter_saves_the_measurements_as_sr_and_gsps_into_the_study(
    world: World, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """``review_save`` stores a TID 1500 SR and a GSPS (highdicom) into the shared study: they
    parse, reference the measured SOP instances, carry the figures (mm, degrees, mm2, HU) and
    the presenter's window; QIDO/WADO serve them to the room and the visit's doctor, another
    doctor gets 403 (audited); malformed saves get stable codes, a follower is refused; the
    patient's name is in no log line or warning (highdicom warns with a one-part name)."""
    await _in_room(world)
    series = await _store_ct(world, patient_name="ZHANGSAN")
    study, series_uid = series[0].StudyInstanceUID, series[0].SeriesInstanceUID
    image, other_image = series[1], series[2]
    patient_token = await _token(world.patient, world.visit_id)
    presenter = Viewer(world.server.url, await _token(world.doctor, world.visit_id))
    follower = Viewer(world.server.url, patient_token)
    length = {
        "uid": "len-1",
        "tool": "Length",
        "instance": image.SOPInstanceUID,
        "frame": 1,
        "points": [_on_image(image, 10, 10), _on_image(image, 40, 50)],
    }
    marks = [
        length,
        {
            "uid": "ang-1",
            "tool": "Angle",
            "instance": image.SOPInstanceUID,
            "points": [
                _on_image(image, 10, 10),
                _on_image(image, 40, 10),
                _on_image(image, 40, 50),
            ],
        },
        {
            "uid": "roi-1",
            "tool": "RectangleROI",
            "instance": other_image.SOPInstanceUID,
            "points": [
                _on_image(other_image, c, r) for c, r in ((20, 30), (60, 30), (20, 50), (60, 50))
            ],
        },
        {
            "uid": "probe-1",
            "tool": "Probe",
            "instance": image.SOPInstanceUID,
            "points": [_on_image(image, 64, 70)],
        },
    ]
    try:
        for v in (presenter, follower):
            await v.connect()
            assert (await v.call("review_join"))["ok"]
        share = {"kind": "image", "study": study, "series": series_uid}
        assert (await presenter.call("review_share", share))["ok"]
        assert (
            await presenter.call("review_view", {"view": {"voi": {"lower": -160, "upper": 240}}})
        )["ok"]
        malformed: list[tuple[Any, str]] = [
            ({}, "nothing_to_save"),
            ("save", "bad_request"),
            ({"label": "x"}, "bad_request"),
            ({"annotations": [{**length, "tool": "Freehand"}]}, "bad_request"),
            ({"annotations": [{**length, "instance": generate_uid()}]}, "instance_not_found"),
            (
                {"annotations": [{**length, "points": [_on_image(image, 1, 1, 40.0)] * 2}]},
                "annotation_not_measurable",
            ),
            (
                {
                    "annotations": [
                        {**length, "points": [_on_image(image, 1, 1), _on_image(image, 900, 1)]}
                    ]
                },
                "annotation_not_measurable",
            ),
        ]
        point = _on_image(image, 5, 5)
        malformed.append(
            (
                {"annotations": [{**length, "tool": "EllipticalROI", "points": [point] * 4}]},
                "annotation_not_measurable",
            )
        )
        for payload, code in malformed:
            ack = await presenter.call("review_save", payload)
            assert not ack["ok"] and ack["error"]["code"] == code, (payload, ack)
        ack = await follower.call("review_save", {"annotations": marks})
        assert ack["error"]["code"] == "forbidden"
        ack = await presenter.call("review_save", {"annotations": marks})
        assert ack["ok"], ack
        saved = ack["saved"]
        assert saved["study_uid"] == study and saved["measurements"] == 4
        await wait_until(lambda: bool(follower.annotations))  # the saved set reached the room too
        assert follower.annotations[-1]["annotations"][0]["uid"] == "len-1"
    finally:
        for v in (presenter, follower):
            await v.close()

    # the room's viewer (join token) finds and reads them over QIDO and WADO
    room = DICOMwebClient(url=world.dicomweb, headers={"Authorization": f"Bearer {patient_token}"})
    found = await off_loop(room.search_for_series, study)
    modalities = {s["00080060"]["Value"][0] for s in found}
    assert {"CT", "SR", "PR"} <= modalities
    sr_ds = await off_loop(room.retrieve_instance, study, saved["sr_series"], saved["sr"])
    pr_uid = saved["presentation_states"][0]
    pr_ds = await off_loop(
        client(world.dicomweb, world.doctor).retrieve_instance, study, saved["gsps_series"], pr_uid
    )

    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_ds)
    assert sr.SOPInstanceUID == saved["sr"] and sr.SOPInstanceUID.startswith("2.25.")
    assert sr.StudyInstanceUID == study and sr.PatientID == image.PatientID
    groups = {g.tracking_identifier: g for g in sr.content.get_planar_roi_measurement_groups()}
    assert set(groups) == {"Length len-1", "Angle ang-1", "RectangleROI roi-1", "Probe probe-1"}
    spacing = float(image.PixelSpacing[0])

    def figures(key: str) -> dict[str, tuple[float, str]]:
        return {
            m.name.meaning: (float(m.value), m.unit.value) for m in groups[key].get_measurements()
        }

    def referenced(key: str) -> str:
        source = groups[key].roi.ContentSequence[0]  # the region's SELECTED FROM image
        return str(source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)

    assert figures("Length len-1")["Length"] == pytest.approx((spacing * 50, "mm"))
    assert figures("Angle ang-1")["Angle"] == pytest.approx((90.0, "deg"))
    hu = other_image.pixel_array.astype(float) * float(other_image.RescaleSlope) + float(
        other_image.RescaleIntercept
    )
    roi = figures("RectangleROI roi-1")
    assert roi["Area"] == pytest.approx((40 * spacing * 20 * spacing, "mm2"))
    assert roi["Mean"] == pytest.approx((hu[30:51, 20:61].mean(), "[hnsf'U]"))
    probe_hu = float(image.pixel_array[70, 64]) * float(image.RescaleSlope) + float(
        image.RescaleIntercept
    )
    assert figures("Probe probe-1")["Attenuation Coefficient"] == pytest.approx(
        (probe_hu, "[hnsf'U]")
    )
    assert referenced("RectangleROI roi-1") == other_image.SOPInstanceUID
    assert referenced("Length len-1") == image.SOPInstanceUID
    line = groups["Length len-1"].roi
    assert line.GraphicType == "POLYLINE" and list(line.GraphicData) == pytest.approx(
        [10.5, 10.5, 40.5, 50.5]
    )

    assert pr_ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1" and pr_ds.StudyInstanceUID == study
    voi = pr_ds.SoftcopyVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (40.0, 400.0)
    shown = {
        i.ReferencedSOPInstanceUID
        for i in pr_ds.ReferencedSeriesSequence[0].ReferencedImageSequence
    }
    assert shown == {s.SOPInstanceUID for s in series}  # the window applies to the whole series
    drawn = {
        a.ReferencedImageSequence[0].ReferencedSOPInstanceUID: a
        for a in pr_ds.GraphicAnnotationSequence
    }
    assert set(drawn) == {image.SOPInstanceUID, other_image.SOPInstanceUID}
    assert len(drawn[image.SOPInstanceUID].GraphicObjectSequence) == 3
    assert "mm" in drawn[image.SOPInstanceUID].TextObjectSequence[0].UnformattedTextValue

    # another doctor of the same institution: 403 on QIDO and WADO, audited
    outsider = client(world.dicomweb, world.other_doctor)
    for attempt in (
        lambda: outsider.search_for_series(study),
        lambda: outsider.retrieve_instance(study, saved["sr_series"], saved["sr"]),
    ):
        with pytest.raises(requests.HTTPError) as refused:
            await off_loop(attempt)
        assert refused.value.response.status_code == 403
    assert sr.PatientName == "ZHANGSAN"  # the study's patient, as the images have it
    assert not [r for r in caplog.records if "ZHANGSAN" in r.getMessage()]
    assert not [w for w in recwarn if "ZHANGSAN" in str(w.message)]
    events = await imaging_events(world.server.app)
    stored = [e for e in events if e.action == "imaging.store" and '"review"' in e.details]
    assert len(stored) == 2 and all(e.actor_id == world.doctor.user_id for e in stored)
    assert any(
        e.action == "imaging.read"
        and e.result == "denied"
        and e.actor_id == world.other_doctor.user_id
        for e in events
    )
    async with world.server.app[DATABASE].session() as session:
        review_events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "room.review"))
        ).all()
    assert any('"save"' in e.details and saved["sr"] in e.details for e in review_events)


def _content(items: Any) -> list[Any]:
    """Every content item of an SR tree, depth first."""
    out = []
    for item in items:
        out.append(item)
        out += _content(item.get("ContentSequence", []))
    return out


async def test_r19_r21_the_presenter_saves_the_ecg_calipers_as_sr_measurements(
    world: World, tmp_path: Any
) -> None:
    """``review_save`` on a shared ECG stores its calipers as a TID 1500 SR in the study: RR,
    PR, QRS and QT in ms at one-sample resolution (pydicom's waveform_ecg.dcm on its device's
    fiducial points gives the device's RR 982, PR 161, QRS 75, QT 368 ms), each inferred from a
    TCOORD of the caliper's samples selected from the WAVEFORM, with HR and QTc (Bazett and
    Fridericia) as the viewer computes them; the room reads it back over WADO, DCMTK reads the
    document whole; bad saves get stable codes."""
    await _in_room(world)
    ecg = series_from("waveform_ecg.dcm", 1)[0]
    await off_loop(client(world.stow_url, world.doctor).store_instances, [ecg])
    study, series_uid, instance = ecg.StudyInstanceUID, ecg.SeriesInstanceUID, ecg.SOPInstanceUID
    patient_token = await _token(world.patient, world.visit_id)
    presenter = Viewer(world.server.url, await _token(world.doctor, world.visit_id))
    follower = Viewer(world.server.url, patient_token)
    # the device's fiducial points (rhythm group, samples): QRS onset 460, P onset 299, ...
    calipers = [
        {"kind": "RR", "group": 0, "from": 460, "to": 1442},
        {"kind": "PR", "group": 0, "from": 299, "to": 460},
        {"kind": "QRS", "group": 0, "from": 460, "to": 535},
        {"kind": "QT", "group": 0, "from": 460, "to": 828},
        {"kind": "free", "group": 0, "from": 10, "to": 20},
    ]
    try:
        for v in (presenter, follower):
            await v.connect()
            assert (await v.call("review_join"))["ok"]
        share = {"kind": "ecg", "study": study, "series": series_uid, "instance": instance}
        assert (await presenter.call("review_share", share))["ok"]
        for payload, code in [
            ({"calipers": [calipers[-1]]}, "nothing_to_save"),
            ({"calipers": [{**calipers[0], "to": 10_000}]}, "annotation_not_measurable"),
            ({"calipers": [{**calipers[0], "group": 5}]}, "annotation_not_measurable"),
            ({"calipers": [{**calipers[0], "kind": "ST"}]}, "bad_request"),
            ({"annotations": []}, "bad_request"),
        ]:
            ack = await presenter.call("review_save", payload)
            assert not ack["ok"] and ack["error"]["code"] == code, (payload, ack)
        assert (await follower.call("review_save", {"calipers": calipers}))["error"][
            "code"
        ] == "forbidden"
        ack = await presenter.call("review_save", {"calipers": calipers})
        assert ack["ok"], ack
        saved = ack["saved"]
        assert saved["study_uid"] == study and saved["measurements"] == 7
        assert saved["presentation_states"] == []
        # the calipers saved are the shared view's: the follower has them too
        await wait_until(lambda: any("ecg" in d["view"] for _, d in follower.views))
        shown = [d["view"]["ecg"] for _, d in follower.views if "ecg" in d["view"]][-1]
        assert shown["calipers"] == calipers
    finally:
        for v in (presenter, follower):
            await v.close()

    room = DICOMwebClient(url=world.dicomweb, headers={"Authorization": f"Bearer {patient_token}"})
    sr = await off_loop(room.retrieve_instance, study, saved["sr_series"], saved["sr"])
    assert sr.Modality == "SR" and sr.StudyInstanceUID == study
    items = _content(sr.ContentSequence)
    numbers = {}
    for item in items:
        if item.ValueType != "NUM":
            continue
        name = item.ConceptNameCodeSequence[0]
        method = [
            c.ConceptCodeSequence[0].CodeMeaning
            for c in item.get("ContentSequence", [])
            if c.ValueType == "CODE"
        ]
        key = f"{name.CodeMeaning}{' ' + method[0] if method else ''}"
        value = item.MeasuredValueSequence[0]
        numbers[key] = (
            float(value.NumericValue),
            value.MeasurementUnitsCodeSequence[0].CodeValue,
            name.CodingSchemeDesignator,
        )
    assert numbers["RR Interval"] == (982.0, "ms", "SCPECG")
    assert numbers["PR Interval"] == (161.0, "ms", "SCPECG")
    assert numbers["QRS Duration"] == (75.0, "ms", "SCPECG")
    assert numbers["QT Interval"] == (368.0, "ms", "SCPECG")
    assert numbers["Heart rate"] == (pytest.approx(60000 / 982), "/min", "LN")
    assert numbers["QTc Interval Bazett formula"][0] == pytest.approx(368 / (0.982**0.5))
    assert numbers["QTc Interval Fridericia formula"][0] == pytest.approx(368 / (0.982 ** (1 / 3)))
    # each interval inferred from the caliper's samples (1-based) on the shared waveform
    rr = next(
        i
        for i in items
        if i.ValueType == "NUM" and "RR" in i.ConceptNameCodeSequence[0].CodeMeaning
    )
    (tcoord,) = rr.ContentSequence
    assert tcoord.RelationshipType == "INFERRED FROM" and tcoord.ValueType == "TCOORD"
    assert tcoord.TemporalRangeType == "SEGMENT" and list(tcoord.ReferencedSamplePositions) == [
        461,
        1443,
    ]
    (waveform,) = tcoord.ContentSequence
    assert (waveform.RelationshipType, waveform.ValueType) == ("SELECTED FROM", "WAVEFORM")
    assert waveform.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == instance
    assert sum(1 for i in items if i.ValueType == "TCOORD") == 4
    if shutil.which("dsrdump") is None:
        skip_or_fail("DCMTK dsrdump is missing (apt-get install dcmtk)")
    path = tmp_path / "ecg-sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    done = await asyncio.create_subprocess_exec(
        "dsrdump",
        "-Ee",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0 and b"E:" not in err, err
    assert b"selected from WAVEFORM" in out


async def test_r20_r24_the_doctor_of_a_visit_room_uploads_with_the_rooms_join_token(
    world: World,
) -> None:
    """The room's viewer uploads with the room's join token (STOW-RS): the visit's doctor into
    this room's visit only; the patient's token, and the doctor's into another visit, are
    refused (403) and audited; what was stored is the room's to read."""
    await _in_room(world)
    other = await booked_visit(world.clinic, world.doctor, world.nurse)
    doctor_token = await _token(world.doctor, world.visit_id)
    patient_token = await _token(world.patient, world.visit_id)

    def stow(token: str, visit_id: str) -> DICOMwebClient:
        return DICOMwebClient(
            url=f"{world.dicomweb}/visits/{visit_id}",
            headers={"Authorization": f"Bearer {token}"},
        )

    series = series_from("CT_small.dcm", 2)
    await off_loop(stow(doctor_token, world.visit_id).store_instances, series)
    for token, visit_id in ((patient_token, world.visit_id), (doctor_token, other.visit["id"])):
        with pytest.raises(requests.HTTPError) as refused:
            await off_loop(stow(token, visit_id).store_instances, series_from("CT_small.dcm", 1))
        assert refused.value.response.status_code == 403
    room = DICOMwebClient(url=world.dicomweb, headers={"Authorization": f"Bearer {patient_token}"})
    found = await off_loop(room.search_for_instances, series[0].StudyInstanceUID)
    assert len(found) == 2
    events = await imaging_events(world.server.app)
    stored = [e for e in events if e.action == "imaging.store" and e.result == "ok"]
    assert len(stored) == 2 and {e.actor_id for e in stored} == {world.doctor.user_id}
    denied = {e.actor_id for e in events if e.action == "imaging.store" and e.result == "denied"}
    assert denied == {world.patient.user_id, world.doctor.user_id}
