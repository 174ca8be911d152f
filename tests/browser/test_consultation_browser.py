"""Issue 14's whole flow in one run through the pages (/consult, the room, /waiting; zh-CN with the
English toggle), two institutions on one server: a grassroots doctor comes from its queue's
header link, drafts a request with a PDF attachment and submits it (R10, R16); its centre
approves; the hospital's centre cannot assign an expert with under 3 years (R12) and invites
two; one declines (a decline without a reason is refused) and the inviter sees the reason pushed
live (R11); one accepts; two more are added (MDT) and accept; the session starts and five pages
meet in its room (the inviter doctor and three experts from /consult, the patient from its
waiting room on a phone), the patient steps out for the doctors-only part and comes back
(mdt_room_pages.py); two experts co-sign the report with their PINs (R13, R27, R35); the
inviter records its decision; both institutions' centres see the archived report (R15). The
accounts are made through the API (consultation_setup.py); everything after is clicks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_types import RoomPage
from console_pages import WAIT_MS, api_setup, empty_server
from mdt_room_pages import TABS, five_in_the_room
from signing_ca import make_sm2_ca

SETUP = Path(__file__).resolve().parent / "consultation_setup.py"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SESSION_KEY = "teleconsult.session"


def _setup(ns: str, base_url: str, data_dir: Path) -> dict[str, Any]:
    return api_setup(ns, SETUP, base_url, data_dir)


def _page(
    open_room: Callable[..., RoomPage],
    base_url: str,
    session: dict[str, Any],
    url: str,
    ready: str = "ready:",
) -> Any:
    """A page signed in with ``session`` (made by the setup), at ``url``, once its state starts
    with ``ready``."""
    page = open_room(session["me"]["username"], "about:blank").page
    page.add_init_script(
        f"if (!sessionStorage.getItem({json.dumps(SESSION_KEY)}))"
        f" sessionStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(json.dumps(session))});"
    )
    page.goto(f"{base_url}{url}", wait_until="domcontentloaded")
    page.wait_for_function(
        "(ready) => (window.__portal?.state ?? '').startsWith(ready)", arg=ready, timeout=WAIT_MS
    )
    return page


def _state(page: Any, state: str) -> None:
    """Wait until the open consultation is in ``state`` (pushed or after an action)."""
    page.wait_for_function(
        "(state) => document.querySelector('#detail')?.dataset.state === state",
        arg=state,
        timeout=WAIT_MS,
    )


def _error(page: Any, text: str) -> None:
    page.wait_for_function(
        "(text) => { const e = document.querySelector('#error');"
        " return e && !e.hidden && e.textContent.includes(text); }",
        arg=text,
        timeout=WAIT_MS,
    )


def _no_error(page: Any) -> None:
    assert page.is_hidden("#error"), page.inner_text("#error")


def _ready(page: Any) -> None:
    """Wait until the page has read everything again after an action."""
    page.wait_for_function(
        "() => (window.__portal?.state ?? '').startsWith('ready:')", timeout=WAIT_MS
    )


def _click(page: Any, action: str, where: str = "#detail-actions") -> None:
    page.click(f"{where} [data-action={action}]")
    _ready(page)


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_r10_to_r15_the_whole_consultation_through_the_pages(
    netns: str,
    open_room: Callable[..., RoomPage],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = make_sm2_ca(tmp_path / "ca")
    monkeypatch.setenv("TELECONSULT_SIGNING_CA_CERT_FILE", str(ca.cert))
    monkeypatch.setenv("TELECONSULT_SIGNING_CA_KEY_FILE", str(ca.key))
    TABS.clear()
    try:
        _whole_consultation(open_room, netns, tmp_path)
    finally:
        for tab in TABS:  # shown by pytest when the test failed
            print(f"\n--- console of the {tab.role} page ---\n" + "\n".join(tab.logs[-60:]))


def _whole_consultation(open_room: Callable[..., RoomPage], netns: str, tmp_path: Path) -> None:
    with empty_server(netns, tmp_path) as (base_url, data_dir):
        world = _setup(netns, base_url, data_dir)
        s = world["sessions"]
        e1_id, e2_id, e3_id, e4_id = world["experts"]

        # --- The grassroots doctor comes from its queue's header; drafts, attaches a PDF, submits
        # (R10, R16) ---------------------------------------------------------------------------
        doctor = _page(open_room, base_url, s["doctor"], "/queue", ready="ready")
        doctor.click("#consult-link")
        doctor.wait_for_url(re.compile(r"/consult$"), timeout=WAIT_MS)
        _ready(doctor)
        assert doctor.inner_text("#list-mine h2") == "我的会诊申请"
        doctor.click("#new-request")
        doctor.wait_for_selector("#request-form:not([hidden])")
        doctor.fill("#rq-reason", "胸痛反复发作，基层无法明确诊断")
        doctor.fill("#rq-purpose", "明确诊断并制定治疗方案")
        doctor.fill("#rq-description", "患者男，58 岁，活动后胸痛 3 个月")
        doctor.fill("#rq-history", "高血压 10 年")
        doctor.fill("#rq-summary", "心电图 ST 段压低；肌钙蛋白阴性")
        doctor.fill("#rq-specialty", "心血管内科")
        doctor.click("#request-form [type=submit]")
        _state(doctor, "draft")
        cid = doctor.get_attribute("#detail", "data-id")
        assert "赵某" in doctor.inner_text("#detail-facts")
        pdf = tmp_path / "心电图.pdf"
        pdf.write_bytes(PDF)
        doctor.set_input_files("#attach-file", str(pdf))
        doctor.wait_for_function(
            "() => document.querySelector('#detail-attachments').textContent.includes('.pdf')",
            timeout=WAIT_MS,
        )
        _click(doctor, "submit")
        _state(doctor, "submitted")
        assert doctor.inner_text("#detail-state") == "待会诊中心审核"

        # --- Its consult centre approves: the request goes to the hospital ---------------------
        down_centre = _page(open_room, base_url, s["down_centre"], f"/consult?id={cid}")
        _state(down_centre, "submitted")
        _click(down_centre, "approve")
        _state(down_centre, "sent")
        _state(doctor, "sent")  # pushed to the doctor's page, no reload

        # --- The hospital's centre: no expert under 3 years (R12); two invited -----------------
        up_centre = _page(open_room, base_url, s["up_centre"], f"/consult?id={cid}")
        _state(up_centre, "sent")
        assert "赵某" not in up_centre.inner_text("#detail-facts")  # R37: no name outside
        up_centre.select_option("#assign-expert", s["junior"]["me"]["user_id"])
        _click(up_centre, "assign")
        _error(up_centre, "独立执业满 3 年")
        for expert in (e1_id, e2_id):
            up_centre.select_option("#assign-expert", expert)
            _click(up_centre, "assign")
            up_centre.wait_for_selector(f"#detail-invitations [data-expert='{expert}']")
        _no_error(up_centre)

        # --- One expert declines: a reason is required, and the inviter sees it (R11) ------------
        e1 = _page(open_room, base_url, s["e1"], f"/consult?id={cid}")
        e1.click("#detail-actions [data-form=decline] [type=submit]")
        _ready(e1)
        _error(e1, "拒绝会诊须填写原因")
        e1.fill("#reason-decline", "当日有手术安排")
        e1.click("#detail-actions [data-form=decline] [type=submit]")
        _ready(e1)
        doctor.wait_for_function(
            "() => document.querySelector('#detail-invitations .decline-reason')"
            "?.textContent.includes('当日有手术安排')",
            timeout=WAIT_MS,
        )

        # --- One accepts; two more are added (MDT) and accept ----------------------------------
        e2 = _page(open_room, base_url, s["e2"], f"/consult?id={cid}")
        _click(e2, "accept")
        _state(e2, "accepted")
        _state(doctor, "accepted")
        experts = {"e2": e2}
        for key, expert_id in (("e3", e3_id), ("e4", e4_id)):
            up_centre.select_option("#assign-expert", expert_id)
            _click(up_centre, "assign")
            experts[key] = _page(open_room, base_url, s[key], f"/consult?id={cid}")
            _click(experts[key], "accept")
            experts[key].wait_for_selector("#report-form")
        e3 = experts["e3"]
        for page in (down_centre, up_centre, e1):  # their part is done; fewer renderers
            page.close()

        # --- The session starts: five pages meet in its room, the patient steps out and back ---
        _click(doctor, "start")
        _state(doctor, "in_session")
        _state(e2, "in_session")
        names = {"doctor": "李村医", "patient": "赵某", "e2": "王教授", "e3": "陈医生"}
        names["e4"] = "刘医生"
        five_in_the_room(
            open_room, base_url, {"doctor": doctor} | experts, world["patient"], names, tmp_path
        )

        # --- Two experts co-sign with their PINs (R13, R27, R35) -------------------------------
        e2.fill("#report-findings", "运动试验阳性")
        e2.fill("#report-opinion", "稳定型心绞痛可能性大")
        e2.fill("#report-treatment_plan", "冠脉 CTA")
        _click(e2, "save-report", "#detail-reports")
        e2.wait_for_selector("#detail-reports [data-state=draft]")
        e2.fill("#sign-pin", "999999")
        _click(e2, "sign", "#detail-reports")
        _error(e2, "签名密码不正确")
        e2.fill("#sign-pin", world["pin"])
        _click(e2, "sign", "#detail-reports")
        e2.wait_for_selector("#detail-reports [data-state=signing]")
        e3.wait_for_selector("#detail-reports [data-state=signing]")  # pushed
        _ready(e3)
        e3.fill("#sign-pin", world["pin"])
        _click(e3, "sign", "#detail-reports")
        e3.wait_for_function(
            "() => document.querySelector('.signed-by')?.textContent.includes('陈医生')",
            timeout=WAIT_MS,
        )
        e2.wait_for_function(
            "() => document.querySelector('.signed-by')?.textContent.includes('陈医生')",
            timeout=WAIT_MS,
        )
        _click(e2, "issue", "#detail-reports")
        _state(e2, "reported")

        # --- The inviter decides; both institutions see the archived report (R13, R15) ----------
        down_centre = _page(open_room, base_url, s["down_centre"], f"/consult?id={cid}")
        up_centre = _page(open_room, base_url, s["up_centre"], f"/consult?id={cid}")
        _state(doctor, "reported")
        assert doctor.input_value("#report-opinion") == "稳定型心绞痛可能性大"
        assert doctor.get_attribute("#report-opinion", "readonly") is not None
        doctor.fill("#decision-text", "按会诊意见行冠脉 CTA，暂不转诊")
        _ready(doctor)
        doctor.click("#decision-form [type=submit]")
        _state(doctor, "decided")
        for page in (doctor, down_centre, up_centre, e2):
            _state(page, "decided")
            text = page.inner_text("#detail-reports")
            assert "已发出" in text and "王教授" in text and "陈医生" in text, text
        assert doctor.inner_text("#detail-state") == "已归档"
        doctor.click("#lang-toggle")
        assert doctor.inner_text("#detail-state") == "Archived"
        assert doctor.inner_text("#list-mine h2") == "My requests"
        for page in (doctor, down_centre, up_centre, e2, e3):
            errors = page.evaluate("() => window.__portal.errors.map((e) => e.code)")
            assert set(errors) <= {
                "expert_not_qualified",
                "decline_reason_required",
                "signing_pin_invalid",
            }, errors
