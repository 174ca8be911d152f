"""Reminders on the pages (issue 14, R11): the inviting doctor's /consult page shows the
reminders button in its top bar; when the invited expert declines, the reminder is made by the
server's reminder task (every second here) and pushed: the button says one unread without a
reload, the list says what happened (zh-CN, then English), and marking it read clears the count;
the requester then schedules the session from the consultation's page.
The patient's /waiting page (phone-sized) has the same button and an empty list, fits, and
passes axe. The request up to its
invitation is made through the API (reminders_setup.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_types import RoomPage
from console_pages import LAYOUT_JS, SMALL_TARGETS_JS, api_setup, empty_server
from test_accessibility_browser import _axe
from test_portal_browser import _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SETUP = Path(__file__).resolve().parent / "reminders_setup.py"
WAIT_MS = 20_000
SESSION_KEY = "teleconsult.session"
TOGGLE = "#reminders-toggle"
LIST = "#reminders-list"

DECLINE_JS = """async ([token, id]) => (await fetch(`/api/v1/invitations/${id}/decline`, {
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: JSON.stringify({ reason: "当日有手术" }),
})).status"""


def _text(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.innerText.includes(t)", arg=[selector, text],
        timeout=WAIT_MS,
    )  # fmt: skip


def test_r11_a_decline_reaches_the_inviters_reminders_live_and_is_marked_read(
    netns: str,
    open_room: Callable[..., RoomPage],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELECONSULT_REMINDER_INTERVAL_S", "1")
    with empty_server(netns, tmp_path) as (base_url, data_dir):
        world = api_setup(netns, SETUP, base_url, data_dir)
        doctor = open_room("doctor", "about:blank")
        page = doctor.page
        session = world["doctor"]
        page.add_init_script(
            f"if (!sessionStorage.getItem({json.dumps(SESSION_KEY)}))"
            f" sessionStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(json.dumps(session))});"
        )
        page.goto(f"{base_url}/consult", wait_until="domcontentloaded")
        page.wait_for_selector(f'{TOGGLE}[data-unread="0"]', timeout=WAIT_MS)
        assert page.inner_text(TOGGLE) == "提醒"

        # The expert declines (from this browser, with the expert's token): pushed, no reload.
        status = page.evaluate(DECLINE_JS, [world["expert_token"], world["invitation_id"]])
        assert status == 204 or status == 200, status
        page.wait_for_selector(f'{TOGGLE}[data-unread="1"]', timeout=WAIT_MS)
        assert page.inner_text(TOGGLE) == "提醒（1 条未读）"
        page.click(TOGGLE)
        _text(page, LIST, "受邀专家已拒绝会诊邀请")
        item = page.locator(f'{LIST} li[data-kind="invitation_declined"]')
        assert item.get_attribute("data-read") == "false"
        page.click("#lang-toggle")
        _text(page, LIST, "An invited expert declined")
        assert page.inner_text(TOGGLE) == "Reminders (1 unread)"
        page.click(f"{LIST} [data-action=reminder-read]")
        page.wait_for_selector(f'{TOGGLE}[data-unread="0"]', timeout=WAIT_MS)
        assert page.inner_text(TOGGLE) == "Reminders"
        assert item.get_attribute("data-read") == "true"
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector(f'{LIST} li[data-read="true"]', state="attached", timeout=WAIT_MS)
        assert page.get_attribute(TOGGLE, "data-unread") == "0"
        # The requester schedules the session from the consultation (English kept).
        page.goto(
            f"{base_url}/consult?id={world['consultation_id']}", wait_until="domcontentloaded"
        )
        page.wait_for_selector("#schedule-form", timeout=WAIT_MS)
        page.fill("#schedule-time", "2031-03-01T10:00")
        page.click("#detail-actions [data-action=schedule]")
        _text(page, "#detail-facts", "Scheduled time")
        errors = [line for line in doctor.logs if "pageerror" in line]
        assert not errors, errors

        # The patient's waiting room has the same button; nothing to remind it of.
        patient = open_room("patient", "about:blank", viewport={"width": 390, "height": 844})
        _sign_in(patient, base_url, world["patient"], None)
        patient.page.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
        patient.page.wait_for_selector(f'{TOGGLE}[data-unread="0"]', timeout=WAIT_MS)
        assert patient.page.inner_text(TOGGLE) == "提醒"
        patient.page.click(TOGGLE)
        _text(patient.page, LIST, "暂无提醒")
        # on a phone: the top bar still fits, nothing serious for axe, no target under 44 px
        assert patient.page.evaluate("() => document.documentElement.scrollWidth") <= 390
        # the bell without its label: the title keeps one line and the top bar two rows (the
        # title, the name and the language; then the bell and sign-out: portal.css)
        layout = patient.page.evaluate(LAYOUT_JS)
        assert layout["titleLines"] == 1 and layout["topbarRows"] <= 2, layout
        bell = patient.page.locator(TOGGLE).bounding_box()
        assert bell is not None and bell["width"] < 120, bell  # the label is hidden on a phone
        assert _axe(patient.page) == []
        assert patient.page.evaluate(SMALL_TARGETS_JS) == []
