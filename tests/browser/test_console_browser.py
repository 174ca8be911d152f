"""From an empty server to a rated visit, through the pages alone (issue 12).

The first admin exists (`teleconsult user add`, as the README says) and nothing else. In
Debian Chromium, inside a private network namespace: the admin signs in, enrols TOTP by the QR
code, and creates an institution, a department, a doctor, an operator and a nurse, and the
doctor's practitioner record, verified; the doctor enrols by the QR code and goes online; the
operator enrols, opens a slot in the doctor's schedule, registers a patient with a sign-in
account and a prior diagnosis (R2) and books the slot; the nurse enrols and, with only the
patients and bookings tabs, finds the patient and the booking; the patient signs in, sees the
booking with its doctor, department and time, cannot check in before signing the consent (R5),
signs, checks in and is admitted by the doctor; both see each other's video; the doctor ends the
visit after confirming; the patient's page shows the visit's summary and the patient rates it
(R40), and the doctor's queue is pushed the rating (R41); the doctor's record of the patient
lists the visit's recording by time (Beijing), doctor, department, length and state. The
question to end the visit stays whole on the screen when the window is made smaller. No REST
call is made outside the pages. Each page is checked at 390 px and 1280 px wide (console_pages.check_layout).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from console_pages import (
    PASSWORD,
    WAIT_MS,
    check_layout,
    empty_server,
    in_view,
    sign_in_and_enrol,
)
from test_portal_browser import _wait_video

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RoomPage = Any
BEIJING = ZoneInfo("Asia/Shanghai")


def _id_number(birth: str = "19800101") -> str:
    """A valid resident ID number born on `birth` (YYYYMMDD)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    first17 = "110105" + birth + f"{secrets.randbelow(1000):03d}"
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def _notice(page: Any, text: str) -> None:
    """Wait for the console's success notice to say `text` (and fail on an error line)."""
    page.wait_for_function(
        """(text) => {
          const error = document.querySelector('#error');
          if (error && !error.hidden) throw new Error(error.textContent);
          const info = document.querySelector('#info');
          return info && !info.hidden && info.textContent.includes(text);
        }""",
        arg=text,
        timeout=WAIT_MS,
    )


def _tab(page: Any, tab: str) -> None:
    page.wait_for_function("() => window.__portal.state.startsWith('tab:')", timeout=WAIT_MS)
    page.click(f"#console-nav [data-tab={tab}]")
    page.wait_for_function(f"() => window.__portal.state === 'tab:{tab}'", timeout=WAIT_MS)


def test_empty_server_to_rated_visit_through_the_pages(
    netns: str, open_room: Callable[[str, str], RoomPage], tmp_path: Path
) -> None:
    shots = tmp_path
    # two network providers (the media still gathers on 127.0.0.1 alone): the network tab
    providers = (
        '[[providers]]\nname = "telecom"\naddress = "127.0.0.1"\n\n'
        '[[providers]]\nname = "unicom"\naddress = "127.0.0.2"\n'
    )
    with empty_server(netns, tmp_path, toml=providers) as (base_url, _data_dir):
        # --- The administrator ------------------------------------------------------------------
        admin_room = open_room("admin", "about:blank")
        admin = admin_room.page

        # An error shown on /signin follows the language toggle (it used to stay in Chinese).
        admin.goto(f"{base_url}/signin", wait_until="domcontentloaded")
        admin.fill("#username", "admin")
        admin.fill("#password", "Wrong-Password-1")
        admin.click("#signin-button")
        admin.wait_for_function("() => document.querySelector('#error').dataset.code")
        assert admin.inner_text("#error") == "错误：用户名、密码或动态验证码不正确。"
        admin.click("#lang-toggle")
        assert admin.inner_text("#error") == "Error: The username, password or code is wrong."
        admin.click("#lang-toggle")
        check_layout(admin, "signin", shots)

        sign_in_and_enrol(admin, base_url, "admin", PASSWORD, shots)
        admin.wait_for_url(re.compile(r"/console"), timeout=WAIT_MS)
        admin.wait_for_function("() => window.__portal.state === 'tab:organisation'")
        assert admin.inner_text("#institution-empty") != ""
        admin.fill("#institution-name", "仁济互联网医院")
        admin.select_option("#institution-level", "tertiary")
        admin.click("#institution-form [type=submit]")
        _notice(admin, "仁济互联网医院")
        admin.fill("#department-name", "心血管内科")
        admin.click("#department-form [type=submit]")
        _notice(admin, "心血管内科")
        assert "心血管内科" in admin.inner_text("#institution-list")
        check_layout(admin, "console-admin-organisation", shots)

        _tab(admin, "accounts")
        department_id = admin.evaluate(
            "() => [...window.__portal.console.departments.values()][0][0].id"
        )
        for role, name, username in (
            ("doctor", "王医生", "wang.doctor"),
            ("operator", "陈运营", "chen.operator"),
            ("nurse", "赵护士", "zhao.nurse"),
        ):
            admin.select_option("#account-role", role)
            admin.fill("#account-display-name", name)
            admin.fill("#account-username", username)
            admin.fill("#account-password", PASSWORD)
            if role == "doctor":
                admin.select_option("#account-department", department_id)
            else:
                admin.check(f"#account-scope input[value='{department_id}']")
            admin.click("#account-form [type=submit]")
            _notice(admin, username)
        rows = admin.locator("#account-list li")
        assert rows.count() == 4  # the admin, the doctor, the operator, the nurse

        # A nurse who leaves: a new password first, then deactivation; each asks first.
        admin.select_option("#account-role", "nurse")
        admin.fill("#account-display-name", "李护士")
        admin.fill("#account-username", "li.nurse")
        admin.fill("#account-password", PASSWORD)
        admin.click("#account-form [type=submit]")
        _notice(admin, "li.nurse")
        nurse_row = admin.locator("#account-list li[data-username='li.nurse']")
        nurse_row.locator("[data-action='accounts.reset_password']").click()
        nurse_row.locator("input[name=new_password]").fill("Another-Horse-43")
        nurse_row.locator("form [type=submit]").click()
        # the notice names the reset (the creation's notice also named 李护士)
        _notice(admin, "已重设密码：李护士")
        nurse_row.locator("[data-action='accounts.deactivate']").click()
        assert "李护士" in nurse_row.locator(".confirm").inner_text()
        nurse_row.locator("[data-action='common.confirm']").click()
        _notice(admin, "已停用账号")
        assert "已停用" in nurse_row.inner_text()
        assert nurse_row.locator("button").count() == 0
        check_layout(admin, "console-admin-accounts", shots)

        _tab(admin, "practitioners")
        admin.fill("#practitioner-licence", "110310000123456")
        admin.select_option("#practitioner-title", "attending")
        admin.fill("#practitioner-years", "8")
        admin.fill("#practitioner-specialty", "高血压")
        admin.click("#practitioner-form [type=submit]")
        _notice(admin, "王医生")
        pending = admin.locator("#practitioner-list li[data-verification=pending]")
        pending.locator("[data-action='prac.verify']").click()
        admin.locator("#practitioner-list li[data-verification=verified]").wait_for(timeout=WAIT_MS)
        check_layout(admin, "console-admin-practitioners", shots)
        admin.click("#lang-toggle")
        assert admin.inner_text("#console-nav [data-tab=accounts]") == "Accounts"
        assert "Verified" in admin.inner_text("#practitioner-list")
        check_layout(admin, "console-admin-practitioners-en", shots)
        # the network providers' health (R28, R31), in English and then in Chinese
        _tab(admin, "network")
        rows = admin.locator("#provider-list li")
        rows.first.wait_for(timeout=WAIT_MS)
        assert [
            (row.get_attribute("data-provider"), row.get_attribute("data-state"))
            for row in rows.all()
        ] == [("telecom", "unknown"), ("unicom", "unknown")]
        assert "Unknown (no path reported yet)" in rows.first.inner_text()
        assert admin.inner_text("#provider-last") == "No failover yet."
        admin.click("#lang-toggle")
        assert "未知" in rows.first.inner_text() and "0 次" in rows.first.inner_text()
        assert admin.inner_text("#provider-last") == "尚无线路切换。"
        check_layout(admin, "console-admin-network", shots)

        # --- The doctor: enrols by the QR code, goes online ---------------------------------
        doctor_room = open_room("doctor", "about:blank")
        doctor = doctor_room.page
        sign_in_and_enrol(doctor, base_url, "wang.doctor", PASSWORD)
        doctor.wait_for_url(re.compile(r"/queue"), timeout=WAIT_MS)
        doctor.wait_for_function("() => window.__portal.practitioner !== undefined")
        doctor.click("#online-toggle")
        doctor.wait_for_function("() => window.__portal.practitioner.online === true")

        # --- The operator: a slot, a patient with an account and a diagnosis, a booking -------
        operator_room = open_room("operator", "about:blank")
        operator = operator_room.page
        sign_in_and_enrol(operator, base_url, "chen.operator", PASSWORD)
        operator.wait_for_url(re.compile(r"/console"), timeout=WAIT_MS)
        _tab(operator, "schedule")
        tomorrow = (date.today() + timedelta(days=1)).isoformat()
        operator.fill("#slot-date", tomorrow)
        operator.fill("#slot-start", "09:00")
        operator.fill("#slot-end", "09:30")
        operator.fill("#slot-capacity", "3")
        operator.click("#slot-form [type=submit]")
        operator.locator("#slot-list li").wait_for(timeout=WAIT_MS)
        check_layout(operator, "console-operator-schedule", shots)

        _tab(operator, "patients")
        # identity checks (issue 13 item 3): nothing waits on an empty server
        operator.locator("#guardian-empty").wait_for(timeout=WAIT_MS)
        operator.locator("#dispute-empty").wait_for(timeout=WAIT_MS)
        assert operator.inner_text("#identity-card h2") == "身份核实"
        id_number = _id_number()
        operator.fill("#find-id-number", id_number)
        operator.click("#find-form [type=submit]")
        operator.locator("#find-none").wait_for(timeout=WAIT_MS)
        assert operator.input_value("#register-id-number") == id_number
        operator.fill("#register-name", "张某")
        operator.fill("#register-phone", "13900001111")
        operator.click("#register-form [type=submit]")
        _notice(operator, "张某")
        assert "110105********" in operator.inner_text("#patient-facts")
        assert id_number not in operator.content()
        assert operator.input_value("#find-id-number") == ""  # not left on the screen
        operator.fill("#patient-username", "zhang.patient")
        operator.fill("#patient-password", PASSWORD)
        operator.click("#patient-account-form [type=submit]")
        _notice(operator, "zhang.patient")
        operator.fill("#diagnosis-code", "I10")
        operator.fill("#diagnosis-name", "原发性高血压")
        operator.fill("#diagnosis-institution", "市第一人民医院")
        operator.fill("#diagnosis-date", "2025-03-01")
        operator.click("#diagnosis-form [type=submit]")
        operator.locator("#diagnosis-list li[data-code=I10]").wait_for(timeout=WAIT_MS)
        check_layout(operator, "console-operator-patient", shots)

        # --- The patient books the online queue from /waiting (nothing booked yet) ----------
        patient_room = open_room("patient", "about:blank")
        patient = patient_room.page
        patient.goto(f"{base_url}/signin", wait_until="domcontentloaded")
        patient.fill("#username", "zhang.patient")
        patient.fill("#password", PASSWORD)
        patient.click("#signin-button")
        patient.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
        patient.locator("#booking-when input[value=queue]").wait_for(timeout=WAIT_MS)
        assert patient.is_visible("#no-visit")
        check_layout(patient, "waiting-book", shots)
        patient.check("#booking-when input[value=queue]")
        patient.click("#booking-submit")
        patient.wait_for_function("() => window.__portal.visit?.state === 'booked'")
        assert patient.is_hidden("#book-card")
        queued_id = patient.evaluate("() => window.__portal.visit.id")
        assert "在线排队" in patient.inner_text("#visit-details")
        patient.wait_for_function(
            "() => document.querySelector('#consent-text').textContent.length > 20"
        )
        patient.check("#consent-agree")
        patient.click("#consent-sign")
        patient.wait_for_function("() => window.__portal.visit.consent_signed === true")
        patient.click("#check-in")
        patient.wait_for_function(
            "() => document.querySelector('#visit-details').textContent.includes('开始候诊')",
            timeout=WAIT_MS,
        )

        # The operator cannot book the same follow-up again (one open visit per doctor and
        # condition), is told so in words, cancels the queue booking (asked first) and books the
        # slot instead.
        slot = operator.locator("#booking-when input[type=radio]:not([value=queue])").first
        slot.wait_for(timeout=WAIT_MS)
        slot.check()
        operator.click("#booking-submit")
        operator.wait_for_function(
            "() => document.querySelector('#error').dataset.code === 'visit_exists'",
            timeout=WAIT_MS,
        )
        assert "已经有一个同一医生" in operator.inner_text("#error")
        _tab(operator, "bookings")
        queued = operator.locator(f"#booking-list li[data-visit-id='{queued_id}']")
        queued.wait_for(timeout=WAIT_MS)
        assert "张某 → 王医生" in queued.inner_text() and "在线排队" in queued.inner_text()
        check_layout(operator, "console-operator-bookings", shots, english=True)
        assert queued.get_attribute("data-state") == "waiting"
        queued.locator("[data-action='bookings.cancel']").click()
        queued.locator("[data-action='bookings.cancel_confirm']").click()
        operator.locator(
            f"#booking-list li[data-visit-id='{queued_id}'][data-state=cancelled]"
        ).wait_for(timeout=WAIT_MS)
        _tab(operator, "patients")
        operator.fill("#find-id-number", id_number)
        operator.click("#find-form [type=submit]")
        slot = operator.locator("#booking-when input[type=radio]:not([value=queue])").first
        slot.wait_for(timeout=WAIT_MS)
        slot.check()
        operator.click("#booking-submit")
        _notice(operator, "王医生")

        # A guardian's ward (a child of 3): registered from the guardian's card, no account of
        # its own (the guardian signs in for it).
        operator.click("#register-ward")
        assert "张某" in operator.inner_text("#register-ward-of")
        operator.fill("#register-name", "张小某")
        operator.fill("#register-id-number", _id_number(f"{date.today().year - 3}0101"))
        operator.select_option("#register-relation", "parent")
        operator.click("#register-form [type=submit]")
        _notice(operator, "张小某")
        assert operator.inner_text("#patient-name") == "张小某"
        assert "被监护人" in operator.inner_text("#patient-facts")
        assert operator.is_hidden("#patient-account-form")

        # --- The nurse at the desk: enrols, finds the patient, sees the booking -------------
        nurse_room = open_room("nurse", "about:blank")
        nurse = nurse_room.page
        sign_in_and_enrol(nurse, base_url, "zhao.nurse", PASSWORD)
        nurse.wait_for_url(re.compile(r"/console"), timeout=WAIT_MS)
        nurse.wait_for_function("() => window.__portal.state === 'tab:patients'", timeout=WAIT_MS)
        tabs = nurse.eval_on_selector_all(
            "#console-nav [data-tab]", "(tabs) => tabs.map((b) => b.dataset.tab)"
        )
        assert tabs == ["patients", "bookings"], tabs  # no accounts, schedules, practitioners
        nurse.fill("#find-id-number", id_number)
        nurse.click("#find-form [type=submit]")
        nurse.locator("#patient-card:not([hidden])").wait_for(timeout=WAIT_MS)
        assert nurse.inner_text("#patient-name") == "张某"
        assert nurse.is_hidden("#register-form")
        check_layout(nurse, "console-nurse-patient", shots)
        _tab(nurse, "bookings")
        booked = nurse.locator("#booking-list li[data-state=booked]")
        booked.wait_for(timeout=WAIT_MS)
        assert "张某 → 王医生" in booked.inner_text() and "09:00" in booked.inner_text()
        nurse.close()

        # --- The patient: sees the booking, consents, checks in, is admitted ----------------
        patient.wait_for_function(
            "() => window.__portal.visit.state === 'cancelled'", timeout=WAIT_MS
        )
        # A closed visit no longer says "waiting since".
        assert "开始候诊" not in patient.inner_text("#visit-details")
        assert patient.is_visible("#outcome-card")
        patient.reload(wait_until="domcontentloaded")
        patient.wait_for_function(
            f"() => window.__portal.visit && window.__portal.visit.id !== '{queued_id}'"
        )
        details = patient.inner_text("#visit-details")
        assert "王医生" in details and "心血管内科" in details and "09:00" in details, details
        assert patient.is_disabled("#check-in")
        assert patient.is_visible("#checkin-needs")
        patient.wait_for_function(
            "() => document.querySelector('#consent-text').textContent.length > 20"
        )
        check_layout(patient, "waiting-booked", shots)
        patient.check("#consent-agree")
        patient.click("#consent-sign")
        patient.wait_for_function("() => window.__portal.visit.consent_signed === true")
        assert patient.is_enabled("#check-in")
        patient.click("#check-in")
        patient.wait_for_function("() => window.__portal.visit.state === 'waiting'")
        patient.wait_for_function(
            "() => document.querySelector('#visit-details').textContent.includes('下一位就是您')",
            timeout=WAIT_MS,
        )
        check_layout(patient, "waiting-waiting", shots)

        # An error on /waiting follows the language toggle too (the page's own error line).
        patient.evaluate(
            """async () => {
              const { showError } = await import('/static/portal.js');
              const { ApiError } = await import('/static/api.js');
              showError(new ApiError(409, 'doctor_offline', 'The doctor is not online.'));
            }"""
        )
        assert patient.inner_text("#error") == "错误：医生目前不在线。"
        patient.click("#lang-toggle")
        assert patient.inner_text("#error") == "Error: The doctor is not online."
        patient.click("#lang-toggle")
        patient.evaluate("async () => (await import('/static/portal.js')).showError(null)")

        visit_id = patient.evaluate("() => window.__portal.visit.id")
        item = doctor.locator(f"li[data-visit-id='{visit_id}']")
        item.wait_for(timeout=WAIT_MS)
        assert item.locator(".who").inner_text() == "张某"
        # the doctor reads the state in staff words, not the patient's "please stay"
        assert item.locator(".meta").inner_text().startswith("候诊中 · "), item.inner_text()
        check_layout(doctor, "queue-waiting", shots, english=True)

        # The doctor reads the patient's record: prior diagnoses and the visits with this doctor.
        with doctor.context.expect_page() as opened:
            item.locator("[data-action=record]").click()
        record = opened.value
        record.locator("#record-diagnoses li[data-code=I10]").wait_for(timeout=WAIT_MS)
        assert record.inner_text("#record-name") == "张某"
        assert "市第一人民医院" in record.inner_text("#record-diagnoses")
        record.locator(f"#record-visits li[data-visit-id='{visit_id}']").wait_for(timeout=WAIT_MS)
        check_layout(record, "console-doctor-record", shots)
        record_url = record.url
        record.close()
        admitted = datetime.now(BEIJING)
        item.locator("[data-action=admit]").click()
        patient.wait_for_url(re.compile(r"/room\?visit="), timeout=WAIT_MS)
        patient.locator("video, #remote, main").first.wait_for(timeout=WAIT_MS)
        assert f"visit={visit_id}" in patient.url

        # The queue: "End visit" asks first and sits apart from the rest; an empty referral
        # reason is named (it used to read "unknown error").
        item.locator("[data-action=end]").wait_for(timeout=WAIT_MS)
        end_box = item.locator("[data-action=end]").bounding_box()
        back_box = item.locator("[data-action=send_back]").bounding_box()
        assert end_box is not None and back_box is not None
        below = end_box["y"] >= back_box["y"] + back_box["height"] - 1
        apart = end_box["x"] - (back_box["x"] + back_box["width"]) >= 24
        assert below or apart, (end_box, back_box)
        item.locator("[data-action=end]").click()
        assert item.locator(".end-confirm").is_visible()
        assert not item.locator("[data-action=end]").is_visible()
        check_layout(doctor, "queue-in-room", shots, english=True)
        item.locator("[data-action=end_cancel]").click()
        assert not item.locator(".end-confirm").is_visible()
        assert item.get_attribute("data-state") == "in_room"
        item.locator("[data-action=refer]").click()
        item.locator("[data-action=refer_confirm]").click()
        assert doctor.inner_text("#error") == "错误：请填写转诊原因。"
        assert item.get_attribute("data-state") == "in_room"
        item.locator("[data-action=refer_cancel]").click()

        # --- Both see each other; the doctor ends the visit after confirming ----------------
        deadline = time.monotonic() + 20
        patient_sees = _wait_video(patient, "patient", deadline)
        doctor_sees = _wait_video(doctor, "doctor", deadline)  # the room is in the queue page
        assert patient_sees["role"] == "doctor" and doctor_sees["role"] == "patient"
        check_layout(patient, "room-patient", shots, english=True)  # the call timer's line
        # The whole question, not only its button, at any window size: it used to be cut in
        # half by the visit's panel beside the video once the window was made smaller.
        question = item.locator(".end-confirm")
        doctor.set_viewport_size({"width": 1280, "height": 640})
        item.locator("[data-action=end]").click()
        assert in_view(question), "the question to end the visit is cut by the panel"
        doctor.set_viewport_size({"width": 1024, "height": 560})  # made smaller while it asks
        doctor.wait_for_function("() => window.innerHeight === 560")
        assert in_view(question), "the question is cut after the window shrank"
        doctor.set_viewport_size({"width": 1280, "height": 900})
        doctor.keyboard.press("Escape")  # answers "go on with the visit"
        assert question.is_hidden() and item.get_attribute("data-state") == "in_room"
        item.locator("[data-action=end]").click()
        confirm = item.locator("[data-action=end_confirm]")
        assert in_view(question) and in_view(confirm), "the question is out of view"
        confirm.click()
        item.wait_for(state="detached", timeout=WAIT_MS)
        patient.wait_for_url(re.compile(r"/waiting\?visit=.*left=ended"), timeout=WAIT_MS)
        # "the doctor ended the visit" is as wide as the cards below it (check_layout asserts
        # it at 390 and 1280 px with the rated page below; it used to be narrower)
        patient.locator("#left-notice[data-reason=ended]").wait_for(timeout=WAIT_MS)

        # --- The patient sees the summary of the visit and rates it -------------------------
        patient.wait_for_function(
            "() => window.__portal.visit && window.__portal.visit.state === 'ended'",
            timeout=WAIT_MS,
        )
        assert "开始候诊" not in patient.inner_text("#visit-details")  # not "waiting since"
        summary = "#visit-summary [data-field='summary.{}']"
        assert patient.inner_text(summary.format("doctor")) == "王医生"
        assert patient.inner_text(summary.format("department")) == "心血管内科"
        assert patient.inner_text(summary.format("duration")).endswith("分钟")
        # what the patient came back to read comes first, before the form to book again
        outcome_box = patient.locator("#outcome-card").bounding_box()
        book_box = patient.locator("#book-card").bounding_box()
        assert outcome_box is not None and book_box is not None
        assert outcome_box["y"] < book_box["y"], (outcome_box, book_box)
        patient.locator("#rating-stars label.star[data-value='5']").click()
        patient.fill("#rating-text", "很耐心")
        patient.click("#rating-submit")
        patient.wait_for_selector("#rating-done", state="visible", timeout=WAIT_MS)
        assert patient.inner_text("#rating-shown-stars") == "★★★★★"
        assert patient.is_visible("#left-notice")  # what check_layout measures below
        check_layout(patient, "waiting-rated", shots, english=True)
        # the doctor's queue, open all along, is pushed the rating (R41)
        doctor.locator(f"#ratings-list li[data-visit='{visit_id}']").wait_for(timeout=WAIT_MS)
        assert "很耐心" in doctor.inner_text("#ratings-list")
        # the waiting patients come first: ratings pile up and must not push them down
        list_box = doctor.locator("#queue").bounding_box()
        ratings_box = doctor.locator("#ratings-card").bounding_box()
        assert list_box is not None and ratings_box is not None
        assert list_box["y"] < ratings_box["y"], (list_box, ratings_box)
        check_layout(doctor, "queue-rated", shots)

        # The doctor's record of the patient lists the visit's recording by what a person knows
        # it by: when (Beijing time, whatever the browser's zone), the doctor, the department,
        # its length and where it stands; no ids.
        with doctor.context.expect_page() as opened:  # a tab of the signed-in session
            doctor.evaluate("(url) => window.open(url, '_blank')", record_url)
        record = opened.value
        recorded = record.locator(
            f"#record-visits li[data-visit-id='{visit_id}'] .recording-list li"
        )
        recorded.first.wait_for(timeout=WAIT_MS)
        text = recorded.first.inner_text()
        minutes = {
            (admitted + timedelta(minutes=m)).strftime("%Y/%m/%d %H:%M")
            for m in range(-1, int((datetime.now(BEIJING) - admitted).total_seconds() // 60) + 2)
        }
        assert any(f"{m}（北京时间）" in text for m in minutes), (text, minutes)
        assert "医生：王医生 · 心血管内科 · 时长 " in text, text
        assert recorded.first.get_attribute("data-state") in {"processing", "ready"}, text
        assert re.search(r"[0-9]{8}T[0-9]{6}|[0-9a-f]{32}", text) is None, text  # no ids
        record.screenshot(path=str(shots / "console-doctor-record-recording.png"))
        record.click("#lang-toggle")
        record.wait_for_function("() => document.documentElement.lang === 'en'")
        text = recorded.first.inner_text()
        assert "(Beijing time)" in text and "Doctor: 王医生" in text and "length" in text, text
        record.click("#lang-toggle")
        record.close()
        for room in (admin_room, doctor_room, operator_room, nurse_room, patient_room):
            assert not [line for line in room.logs if line.startswith("pageerror")], room.logs
