"""Review together in a consultation's room (MDT; issue 15 build 6, R14, R37, R24): the
inviter's side reads the original study, the invited experts their institution's de-identified
copy, whose UIDs differ; one shared view reaches everyone in the UIDs of what each reads
(``consult.imaging.copies``, ``signaling.review``). Real sockets on a real server."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apiclient import Clinic, Person
from consultation_world import World as ConsultationWorld
from consultation_world import two_institutions
from dicom_data import series_from
from harness import Server, start_server
from imaging_helpers import imaging_events
from review_client import Viewer, relay_bound_ms, wait_until
from sqlalchemy import update

from consult.consultations.models import Consultation
from consult.imaging.store import Destination
from web.keys import DATABASE, IMAGING


@dataclass
class Mdt:
    server: Server
    world: ConsultationWorld
    patient: Person
    consultation_id: str
    original: list[Any]  # the CT series as the inviter's institution holds it
    copy_uid: str

    @property
    def dicomweb(self) -> str:
        return self.server.url + "/api/v1/dicomweb"

    async def token(self, person: Person) -> str:
        reply = await person.ok("POST", f"/consultations/{self.consultation_id}/join-token")
        return str(reply["token"])


async def _store(server: Server, institution_id: str, record_id: str, count: int) -> list[Any]:
    """A CT series of the patient as a modality of ``institution_id`` sends it."""
    store = server.app[IMAGING]
    series = series_from("CT_small.dcm", count)
    for ds in series:
        ds.PatientID = record_id
        incoming = store.new_incoming()
        ds.save_as(incoming, enforce_file_format=True)
        await store.ingest(
            incoming,
            Destination(institution_id=institution_id, source="cstore", calling_ae="CT_ROOM_1"),
            None,
        )
    return series


@pytest.fixture
async def mdt(tmp_path: Path) -> AsyncIterator[Mdt]:
    """An imaging read from the grassroots clinic to the hospital, sent (so shared as a copy),
    two experts invited and accepted, the patient's account in it, the room started."""
    server = await start_server(tmp_path)
    clinic = await Clinic.open(server)
    try:
        w = await two_institutions(clinic, experts=2)
        patient = await w.clinic.person("patient", name="赵某")
        series = await _store(server, w.down_id, w.patient_record["id"], 3)
        cid = (await w.doctor.ok("POST", "/consultations", w.request(kind="imaging")))["id"]
        async with server.app[DATABASE].session() as session, session.begin():
            await session.execute(
                update(Consultation)
                .where(Consultation.id == cid)
                .values(patient_account_id=patient.user_id)
            )
        exam = await w.doctor.ok(
            "POST", f"/consultations/{cid}/exams", {"study_uid": series[0].StudyInstanceUID}
        )
        await w.doctor.ok("POST", f"/consultations/{cid}/submit")
        await w.down_centre.ok("POST", f"/consultations/{cid}/approve")
        for expert in w.experts:
            invitation = await w.up_centre.ok(
                "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
            )
            await expert.ok("POST", f"/invitations/{invitation['id']}/accept")
        await w.doctor.ok("POST", f"/consultations/{cid}/start")
        link = await w.experts[0].ok("GET", f"/consultations/{cid}/exams/{exam['id']}")
        yield Mdt(server, w, patient, cid, series, link["study_uid"])
    finally:
        await clinic.close()
        await server.stop()


async def _qido(dicomweb: str, token: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(dicomweb + path, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, (await r.json(content_type=None)) if r.status == 200 else None


def _uids(answer: list[dict[str, Any]], tag: str) -> list[str]:
    return [item[tag]["Value"][0] for item in answer]


async def _copy_uids(m: Mdt, token: str) -> dict[int, tuple[str, str]]:
    """The copy as an expert's viewer reads it: instance number -> (series, SOP instance)."""
    status, found = await _qido(m.dicomweb, token, f"/studies/{m.copy_uid}/instances")
    assert status == 200
    return {
        item["00200013"]["Value"][0]: (item["0020000E"]["Value"][0], item["00080018"]["Value"][0])
        for item in found
    }


def _view(instance: str, index: int) -> dict[str, Any]:
    return {
        "view": {
            "instance": instance,
            "index": index,
            "camera": {
                "focal_point": [0.0, 0.0, float(index)],
                "position": [0.0, 0.0, 500.0],
                "view_up": [0.0, -1.0, 0.0],
                "parallel_scale": 100.0,
            },
        }
    }


async def test_r14_r37_an_mdt_room_reviews_one_study_each_side_in_its_own_uids(
    mdt: Mdt,
) -> None:
    """The inviter shares the original series: both experts follow in their copy's UIDs (the
    study, series and each image as their own QIDO names them), the patient in the original's;
    views and measurements naming an image reach each side in its UIDs; the presenter role
    goes to an expert, whose copy UIDs reach the inviter's side as the original's; an expert
    joining late lands on the view in its UIDs. No expert's socket ever carries an original UID
    (R37); each side's join token reads its own holding and is refused the other's (403,
    audited); an expert cannot share a study of another consultation."""
    m = mdt
    w = m.world
    original = m.original
    study = original[0].StudyInstanceUID
    series = original[0].SeriesInstanceUID
    inviter_token = await m.token(w.doctor)
    expert_tokens = [await m.token(e) for e in w.experts]
    inviter = Viewer(m.server.url, inviter_token)
    patient = Viewer(m.server.url, await m.token(m.patient))
    expert = Viewer(m.server.url, expert_tokens[0])
    late = Viewer(m.server.url, expert_tokens[1])
    copy_of = await _copy_uids(m, expert_tokens[0])
    assert set(copy_of) == {1, 2, 3}
    copy_series = copy_of[1][0]
    original_uids = {study, series} | {ds.SOPInstanceUID for ds in original}
    assert not original_uids & ({u for pair in copy_of.values() for u in pair} | {m.copy_uid})
    try:
        for v in (inviter, patient, expert):
            await v.connect()
            ack = await v.call("review_join")
            assert ack["ok"] and ack["state"]["subject"] is None, ack
        members = {x["id"]: x["presents"] for x in ack["state"]["members"]}
        assert members == {
            w.doctor.user_id: True,
            m.patient.user_id: False,
            w.experts[0].user_id: True,
        }

        ack = await inviter.call(
            "review_share", {"kind": "image", "study": study, "series": series}
        )
        assert ack["ok"], ack
        assert ack["state"]["subject"]["study"] == study
        await wait_until(lambda: bool(expert.states) and bool(patient.states))
        assert expert.states[-1]["subject"] == {
            "kind": "image",
            "study": m.copy_uid,
            "series": copy_series,
            "instance": None,
        }
        assert patient.states[-1]["subject"]["study"] == study
        assert patient.states[-1]["subject"]["series"] == series

        # a view naming the second image: each side gets its own UID for it
        assert (await inviter.call("review_view", _view(original[1].SOPInstanceUID, 1)))["ok"]
        await wait_until(lambda: bool(expert.views) and bool(patient.views))
        assert expert.views[-1][1]["view"]["instance"] == copy_of[2][1]
        assert patient.views[-1][1]["view"]["instance"] == original[1].SOPInstanceUID
        assert expert.views[-1][1]["view"]["camera"]["focal_point"] == [0.0, 0.0, 1.0]
        # a change without a UID goes out once, the same to everybody
        assert (
            await inviter.call("review_view", {"view": {"voi": {"lower": -100, "upper": 300}}})
        )["ok"]
        await wait_until(lambda: len(expert.views) == 2 and len(patient.views) == 2)
        assert expert.views[-1][1]["view"] == patient.views[-1][1]["view"]
        marks = [
            {
                "uid": "len-1",
                "tool": "Length",
                "instance": original[2].SOPInstanceUID,
                "frame": 1,
                "points": [[0.0, 0.0, 1.0], [30.0, 40.0, 1.0]],
            }
        ]
        assert (await inviter.call("review_annotations", {"annotations": marks}))["ok"]
        await wait_until(lambda: bool(expert.annotations) and bool(patient.annotations))
        assert expert.annotations[-1]["annotations"][0]["instance"] == copy_of[3][1]
        assert patient.annotations[-1]["annotations"] == marks
        # the relay with a translation per holding: 60 views naming an image, each side in order
        before, sent = len(expert.views), {}
        for index in range(60):
            sent[index] = time.perf_counter()
            view = _view(original[index % 3].SOPInstanceUID, index)
            assert (await inviter.call("review_view", view))["ok"]
        await wait_until(lambda: len(expert.views) == before + 60)
        got = expert.views[before:]
        assert [d["view"]["index"] for _, d in got] == list(range(60))
        assert {d["view"]["instance"] for _, d in got} == {pair[1] for pair in copy_of.values()}
        latencies = sorted((t - sent[d["view"]["index"]]) * 1000 for t, d in got)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"translated relay: p50 {statistics.median(latencies):.2f} ms, p95 {p95:.2f} ms")
        assert p95 <= relay_bound_ms()
        ack = await inviter.call("review_handover", {"to": m.patient.user_id})
        assert ack["error"]["code"] == "forbidden"  # only a doctor presents

        # the presenter role goes to the expert, who drives in its copy's UIDs
        ack = await inviter.call("review_handover", {"to": w.experts[0].user_id})
        assert ack["ok"], ack
        await wait_until(lambda: expert.states[-1]["presenter"] == w.experts[0].user_id)
        views_before = len(inviter.views)
        ack = await expert.call("review_view", _view(copy_of[3][1], 2))
        assert ack["ok"], ack
        await wait_until(lambda: len(inviter.views) > views_before)
        assert inviter.views[-1][1]["view"]["instance"] == original[2].SOPInstanceUID
        assert patient.views[-1][1]["view"]["instance"] == original[2].SOPInstanceUID
        ack = await expert.call("review_view", _view(original[0].SOPInstanceUID, 0))
        assert ack["error"]["code"] == "bad_request"  # not a UID of its holding
        expert_marks = [{**marks[0], "uid": "len-2", "instance": copy_of[1][1]}]
        assert (await expert.call("review_annotations", {"annotations": expert_marks}))["ok"]
        await wait_until(
            lambda: (
                bool(inviter.annotations)
                and inviter.annotations[-1]["annotations"][0]["uid"] == "len-2"
            )
        )
        assert inviter.annotations[-1]["annotations"][0]["instance"] == original[0].SOPInstanceUID

        # the second expert joins late: the current view, in its institution's copy
        await late.connect()
        ack = await late.call("review_join")
        state = ack["state"]
        assert state["subject"]["study"] == m.copy_uid
        assert state["view"]["instance"] == copy_of[3][1] and state["view"]["index"] == 2
        assert state["annotations"][0]["instance"] == copy_of[1][1]
        assert state["presenter"] == w.experts[0].user_id

        # an expert cannot share what this consultation did not send it (R37, R24)
        elsewhere = await _store(m.server, w.up_id, "someone-else", 1)
        for uid in (elsewhere[0].StudyInstanceUID, study):
            ack = await expert.call("review_share", {"study": uid})
            assert ack["error"]["code"] in ("forbidden", "study_not_found"), ack
        assert ack["error"]["code"] == "forbidden"
    finally:
        for v in (inviter, patient, expert, late):
            await v.close()

    # R37: nothing an expert's socket carried names the original
    for v in (expert, late):
        text = json.dumps(v.received)
        assert not [uid for uid in original_uids if uid in text]
        assert m.copy_uid in text
    # each side's join token reads its holding, and is refused the other's (audited)
    assert (await _qido(m.dicomweb, expert_tokens[0], f"/studies/{study}/series"))[0] == 403
    assert (await _qido(m.dicomweb, inviter_token, f"/studies/{m.copy_uid}/series"))[0] == 403
    status, found = await _qido(m.dicomweb, inviter_token, "/studies")
    assert status == 200 and _uids(found, "0020000D") == [study]
    status, found = await _qido(m.dicomweb, expert_tokens[1], "/studies")
    assert status == 200 and _uids(found, "0020000D") == [m.copy_uid]
    # someone outside the room: no join token, and its own session reads neither holding
    outsider = w.junior
    refused = await outsider.call("POST", f"/consultations/{m.consultation_id}/join-token")
    assert refused.status in (403, 404), refused
    for uid in (study, m.copy_uid):
        assert (await _qido(m.dicomweb, outsider.token, f"/studies/{uid}/series"))[0] == 403
    events = await imaging_events(m.server.app)
    denied = {(e.actor_id, e.result) for e in events if e.action == "imaging.read"}
    assert (w.experts[0].user_id, "denied") in denied
    assert (w.doctor.user_id, "denied") in denied
    assert (outsider.user_id, "denied") in denied
