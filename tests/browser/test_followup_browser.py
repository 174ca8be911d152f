"""Issue 14 item 7 through the pages (R17, R18): after the report, the requesting doctor refers
the patient from /consult ("转诊"); the hospital's consult centre finds it in its "待处理的转诊"
inbox (pushed) and accepts it with a note; the patient's waiting room shows the referral and the
answer (pushed), and the patient asks for the report to be explained ("申请报告解读"); the expert
finds the question in its "待我解读的报告" inbox (pushed) and answers in writing; the patient
reads the answer without a reload, in Chinese and in English. The consultation up to its issued
report is made through the API (followup_setup.py); the rest is clicks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_types import RoomPage
from console_pages import WAIT_MS, api_setup, empty_server
from signing_ca import make_sm2_ca
from test_consultation_browser import _no_error, _page
from test_portal_browser import _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SETUP = Path(__file__).resolve().parent / "followup_setup.py"
CARD = "#followup-card"


def _text(page: Any, selector: str, text: str) -> None:
    """Wait until the element shows ``text`` (pushes re-render)."""
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent ?? '').includes(text)",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


def test_r17_r18_referral_and_interpretation_through_the_pages(
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
        s, cid = world["sessions"], world["consultation_id"]

        # --- R17: the doctor refers from the consultation's page ----------------------------------
        doctor = _page(open_room, base_url, s["doctor"], f"/consult?id={cid}", "ready:reported")
        doctor.wait_for_selector("#referral-form", timeout=WAIT_MS)
        assert doctor.inner_text("#referral-form [data-action=refer]") == "转诊"
        centre = _page(open_room, base_url, s["up_centre"], "/consult")
        assert "待处理的转诊" in centre.inner_text("#list-referral_inbox h2")
        doctor.select_option("#referral-department", label="心血管内科")
        doctor.fill("#referral-reason", "冠脉狭窄 80%，需介入治疗")
        doctor.click("#referral-form [data-action=refer]")
        doctor.wait_for_selector("#detail-referrals [data-state=requested]", timeout=WAIT_MS)
        assert doctor.is_hidden("#referral-form")  # one waits at a time
        _no_error(doctor)

        # --- The hospital's centre: pushed into its inbox; it accepts with a note ----------------
        item = "#list-referral_inbox [data-state=requested]"
        centre.wait_for_selector(item, timeout=WAIT_MS)
        assert "冠脉狭窄 80%，需介入治疗" in centre.inner_text(item)
        assert "心血管内科" in centre.inner_text(item)
        centre.fill(f"{item} input[id^=referral-note]", "请携带既往检查资料到心内科门诊")
        centre.click(f"{item} [data-action=accept-referral]")
        centre.wait_for_selector(item, state="detached", timeout=WAIT_MS)
        _no_error(centre)
        doctor.wait_for_selector("#detail-referrals [data-state=accepted]", timeout=WAIT_MS)
        _text(doctor, "#detail-referrals", "已接收")

        # --- The patient's waiting room: the referral and its answer; it asks a question --------
        patient_room = open_room("patient", "about:blank")
        patient = patient_room.page
        _sign_in(patient_room, base_url, world["patient"], None)
        patient.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
        patient.wait_for_selector(f"{CARD} [data-state=accepted]", timeout=WAIT_MS)
        assert patient.inner_text(f"{CARD} h2") == "转诊与报告解读"
        referral = patient.inner_text(f"{CARD} [data-referral]")
        assert "对方医院已接收转诊。" in referral and "请携带既往检查资料到心内科门诊" in referral
        ask = f"{CARD} [data-ask='{cid}']"
        patient.fill(f"{ask} textarea", "“前降支近段狭窄约 80%”严重吗？")
        patient.click(f"{ask} [data-action=ask-interpretation]")
        patient.wait_for_selector(
            f"{CARD} [data-interpretation][data-state=asked]", timeout=WAIT_MS
        )
        _text(patient, f"{CARD} [data-interpretation]", "正在等待专家解读")

        # --- The expert: pushed into its inbox; it answers in writing -----------------------------
        expert = _page(open_room, base_url, s["expert"], "/consult")
        inbox = "#list-interpretation_inbox [data-state=asked]"
        expert.wait_for_selector(inbox, timeout=WAIT_MS)
        assert "前降支近段狭窄约 80%" in expert.inner_text(inbox)
        assert "赵某" not in expert.inner_text("#list-interpretation_inbox")  # R37
        answer = "狭窄 80% 属于重度，建议尽快到心内科评估是否需要支架。"
        expert.fill(f"{inbox} textarea", answer)
        # a re-render (a push, here the language toggled there and back) keeps what is typed
        expert.click("#lang-toggle")
        _text(expert, "#list-interpretation_inbox h2", "Reports to interpret")
        expert.click("#lang-toggle")
        _text(expert, "#list-interpretation_inbox h2", "待我解读的报告")
        assert expert.input_value(f"{inbox} textarea") == answer
        expert.click(f"{inbox} [data-action=answer-interpretation]")
        expert.wait_for_selector(inbox, state="detached", timeout=WAIT_MS)
        _no_error(expert)

        # --- The patient reads the answer (pushed), in both languages ----------------------------
        done = f"{CARD} [data-interpretation][data-state=answered]"
        patient.wait_for_selector(done, timeout=WAIT_MS)
        assert "张主任：狭窄 80% 属于重度" in patient.inner_text(done)
        patient.screenshot(path=str(tmp_path / "waiting-followups-zh.png"))
        patient.click("#lang-toggle")
        _text(patient, f"{CARD} h2", "Referrals and report interpretation")
        _text(patient, f"{CARD} [data-referral]", "The receiving hospital accepted the referral.")
        _text(patient, done, "The specialist has answered.")
        patient.screenshot(path=str(tmp_path / "waiting-followups-en.png"))
        for page in (doctor, centre, expert, patient):
            _no_error(page)
