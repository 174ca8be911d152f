"""A remote imaging read through the pages (issue 14 item 6: R14, R19, R37): the grassroots doctor
drafts an imaging read on /consult, cannot submit it without an exam, picks the patient's CT
study from its institution's list and attaches it; its centre approves (the study leaves
de-identified); the hospital's centre invites an expert, who opens the exam from /consult in the
viewer (the copy: no patient name), accepts, writes the diagnostic report and signs it with the
PIN; the inviter decides, and the report shows the joint liability of both sides. The accounts,
the visit and the study are made through the API (diagnosis_setup.py); everything after is
clicks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from browser_types import RoomPage
from console_pages import WAIT_MS, api_setup, empty_server
from signing_ca import make_sm2_ca
from test_consultation_browser import _click, _error, _page, _ready, _state

SETUP = Path(__file__).resolve().parent / "diagnosis_setup.py"


def test_r14_r19_an_imaging_read_through_the_pages(
    netns: str,
    open_room: Callable[..., RoomPage],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = make_sm2_ca(tmp_path / "ca")
    monkeypatch.setenv("TELECONSULT_SIGNING_CA_CERT_FILE", str(ca.cert))
    monkeypatch.setenv("TELECONSULT_SIGNING_CA_KEY_FILE", str(ca.key))
    with empty_server(netns, tmp_path) as (base_url, data_dir):
        world = api_setup(netns, SETUP, base_url, data_dir)
        s = world["sessions"]

        # --- The doctor drafts an imaging read; no submit without an exam (R14, R19) ----------
        doctor = _page(open_room, base_url, s["doctor"], "/consult")
        doctor.click("#new-request")
        doctor.wait_for_selector("#request-form:not([hidden])")
        doctor.select_option("#rq-kind", "imaging")
        doctor.fill("#rq-reason", "体检发现肺结节，需上级医院阅片")
        doctor.fill("#rq-purpose", "明确结节性质")
        doctor.fill("#rq-description", "胸部 CT 平扫")
        doctor.fill("#rq-summary", "无症状")
        doctor.fill("#rq-specialty", "放射科")
        doctor.click("#request-form [type=submit]")
        _state(doctor, "draft")
        cid = doctor.get_attribute("#detail", "data-id")
        _click(doctor, "submit")
        _error(doctor, "远程诊断申请须附上至少一项检查")
        # the patient's CT study is offered; attached, it shows with its viewer link
        doctor.wait_for_selector("#exam-study option", state="attached")
        assert doctor.input_value("#exam-study") == world["study_uid"]
        _click(doctor, "attach-exam")
        doctor.wait_for_selector("#detail-attachments [data-exam] [data-action=open-exam]")
        assert "CT" in doctor.inner_text("#detail-attachments")
        _click(doctor, "submit")
        _state(doctor, "submitted")

        # --- Approved and sent: the study leaves de-identified (R37) ---------------------------
        down_centre = _page(open_room, base_url, s["down_centre"], f"/consult?id={cid}")
        _click(down_centre, "approve")
        _state(down_centre, "sent")
        up_centre = _page(open_room, base_url, s["up_centre"], f"/consult?id={cid}")
        up_centre.select_option("#assign-expert", world["expert"])
        _click(up_centre, "assign")

        # --- The expert opens the exam in the viewer: the copy, no patient name ----------------
        expert = _page(open_room, base_url, s["e1"], f"/consult?id={cid}")
        assert "赵某" not in expert.inner_text("#detail")
        shared = expert.get_attribute("#detail-attachments [data-exam]", "data-shared")
        assert shared == "true"
        with expert.context.expect_page(timeout=WAIT_MS) as opened:
            expert.click("#detail-attachments [data-action=open-exam]")
        viewer = opened.value
        viewer.wait_for_url(re.compile(r"/viewer\?study="), timeout=WAIT_MS)
        copy_uid = viewer.url.split("study=", 1)[1]
        assert copy_uid != world["study_uid"]
        viewer.wait_for_function(
            "() => window.__viewer?.loaded?.startsWith('image/')", timeout=WAIT_MS
        )
        assert world["marker"] not in viewer.content()
        assert viewer.is_hidden("#error"), viewer.inner_text("#error")
        viewer.close()

        # --- The expert accepts, writes and signs the diagnostic report (R27) ------------------
        _click(expert, "accept")
        _state(expert, "accepted")
        expert.fill("#report-examination", "胸部 CT 平扫")
        expert.fill("#report-findings", "右肺上叶磨玻璃结节约 8 mm")
        expert.fill("#report-opinion", "右肺上叶磨玻璃结节")
        expert.fill("#report-recommendation", "3 个月后复查")
        _click(expert, "save-report", "#detail-reports")
        expert.wait_for_selector("#detail-reports [data-state=draft]")
        expert.fill("#sign-pin", world["pin"])
        _click(expert, "sign", "#detail-reports")
        expert.wait_for_selector("#detail-reports [data-state=signing]")
        _click(expert, "issue", "#detail-reports")
        _state(expert, "reported")

        # --- The inviter decides: both sides' liability shows (R14) ----------------------------
        _state(doctor, "reported")
        doctor.fill("#decision-text", "同意诊断意见")
        _ready(doctor)
        doctor.click("#decision-form [type=submit]")
        _state(doctor, "decided")
        _state(expert, "decided")
        for page in (doctor, expert):
            text = page.inner_text("#detail-reports .liability")
            assert "李村医" in text and "张主任" in text and "邀请方已确认" in text, text
        doctor.click("#lang-toggle")
        assert "Joint liability" in doctor.inner_text("#detail-reports .liability")
