"""Issue 14 from the patient's side, in a phone-sized Chromium page (390 px wide): the patient
signs in and its waiting room shows a "远程会诊" card (the two institutions, the time, the state
in plain words) with a button into the MDT room; the button enters the room in the same tab.
The inviter asks the patient out for the doctors' discussion (R12, through the API): the room
page goes back to the waiting room, which says the doctors are talking among themselves and
offers no way in; the inviter lets it back in and the button returns (pushed, no reload), and
the patient enters again. The consultation up to its session is made through the API
(patient_consultation_setup.py); the patient's side is clicks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RoomPage, ns_run
from console_pages import empty_server
from test_accessibility_browser import SMALL_TARGETS_JS, _axe
from test_portal_browser import _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SETUP = Path(__file__).resolve().parent / "patient_consultation_setup.py"
WAIT_MS = 20_000
JOIN_MS = 40_000  # a room join on a loaded 2-core machine (camera, two peer connections)
PHONE = {"width": 390, "height": 844}

CARD = "#consult-card"
ENTER = f"{CARD} [data-action=enter-consultation]"
STATE_LINE = f"{CARD} .consult-state"


def _setup(ns: str, base_url: str, data_dir: Path) -> dict[str, Any]:
    ip = shutil.which("ip")
    assert ip is not None
    result = subprocess.run(
        [ip, "netns", "exec", ns, sys.executable, str(SETUP), base_url, str(data_dir)],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"API setup failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _inviter(ns: str, base_url: str, token: str, path: str) -> dict[str, Any]:
    """The inviter's call (its page has no step-out control yet): POST ``path`` with its token."""
    reply = ns_run(
        ns,
        "curl", "--silent", "--show-error", "--max-time", "10", "--request", "POST",
        "--header", f"Authorization: Bearer {token}",
        "--write-out", "\n%{http_code}", f"{base_url}/api/v1{path}",
        capture_output=True, check=False,
    )  # fmt: skip
    body, _, status = reply.stdout.rpartition("\n")
    assert status == "200", (status, body, reply.stderr)
    return dict(json.loads(body))


def _text(page: Any, selector: str, text: str) -> None:
    """Wait until the element shows ``text`` (pushed changes re-render the card)."""
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent ?? '').includes(text)",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


def _in_room(room: RoomPage, room_id: str) -> None:
    page = room.page
    page.wait_for_url(re.compile(rf"/room\?room={room_id}#token="), timeout=WAIT_MS)
    page.wait_for_function("() => window.__tc?.state === 'joined'", timeout=JOIN_MS)
    assert page.inner_text("#local-name") == "我（患者）"


def _accessible(page: Any) -> None:
    """axe finds nothing serious on the waiting room with the card; no target under 44 px (R43)."""
    assert _axe(page) == []
    assert page.evaluate(SMALL_TARGETS_JS) == []


def _fits(page: Any) -> None:
    """The card fits the phone's width and its button is a large target (>= 44 px)."""
    geometry = page.evaluate(
        """(sel) => {
          const b = document.querySelector(sel).getBoundingClientRect();
          const card = document.querySelector('#consult-card').getBoundingClientRect();
          return {width: document.documentElement.scrollWidth, button: [b.width, b.height],
                  right: Math.max(b.right, card.right)};
        }""",
        ENTER,
    )
    assert geometry["width"] <= PHONE["width"], geometry
    assert geometry["right"] <= PHONE["width"], geometry
    assert min(geometry["button"]) >= 44, geometry


def test_r12_the_patient_enters_the_room_from_waiting_and_waits_while_the_doctors_confer(
    netns: str, open_room: Callable[..., RoomPage], tmp_path: Path
) -> None:
    with empty_server(netns, tmp_path) as (base_url, data_dir):
        world = _setup(netns, base_url, data_dir)
        started = time.monotonic()
        cid, room_id = world["consultation_id"], world["room_id"]
        patient_id = world["patient"]["user_id"]

        # --- Signed in, the waiting room shows the consultation, its room open ----------------
        room = open_room("patient", "about:blank", viewport=PHONE)
        page = room.page
        _sign_in(room, base_url, world["patient"], None)
        page.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
        page.wait_for_selector(ENTER, timeout=WAIT_MS)
        assert page.inner_text(f"{CARD} h2") == "远程会诊"
        assert page.inner_text(f"{CARD} h3") == "专家会诊"
        facts = page.inner_text(f"{CARD} .consult-facts")
        assert world["down"] in facts and world["up"] in facts, facts
        assert "申请医院" in facts and "会诊医院" in facts and "时间" in facts, facts
        assert page.inner_text(STATE_LINE) == "会诊已开始，请点击“进入会诊室”。"
        assert page.inner_text(ENTER) == "进入会诊室"
        # no visit booked, but the status line does not say "nothing booked"
        _text(page, "#status", "您有一个远程会诊，见下方“远程会诊”")
        _fits(page)
        _accessible(page)
        page.click("#lang-toggle")
        _text(page, ENTER, "Enter the consultation room")
        assert page.inner_text(f"{CARD} h2") == "Remote consultation"
        assert "Consulting hospital" in page.inner_text(f"{CARD} .consult-facts")
        _fits(page)
        _accessible(page)
        page.click("#lang-toggle")
        _text(page, ENTER, "进入会诊室")
        page.screenshot(path=str(tmp_path / "waiting-consultation.png"))

        # --- Into the room, in this tab --------------------------------------------------------
        page.click(ENTER)
        _in_room(room, room_id)

        # --- Asked out for the doctors' discussion: back in the waiting room, told why ----------
        out = _inviter(
            netns,
            base_url,
            world["doctor_token"],
            f"/consultations/{cid}/participants/{patient_id}/step-out",
        )
        assert out["state"] == "waiting"
        page.wait_for_url(re.compile(r"/waiting\?left=stepped_out"), timeout=WAIT_MS)
        _text(page, STATE_LINE, "医生们正在讨论，请稍候")
        # read out first: the line that says why has the focus
        page.wait_for_function(
            "() => document.activeElement?.classList.contains('consult-state')", timeout=WAIT_MS
        )
        assert page.is_hidden(ENTER)
        assert world["down"] in page.inner_text(f"{CARD} .consult-facts")
        page.screenshot(path=str(tmp_path / "waiting-stepped-out.png"))
        _accessible(page)

        # --- Let back in: the button returns (pushed), and the patient enters again ------------
        back = _inviter(
            netns,
            base_url,
            world["doctor_token"],
            f"/consultations/{cid}/participants/{patient_id}/step-in",
        )
        assert back["state"] == "admitted"
        page.wait_for_selector(ENTER, timeout=WAIT_MS)
        assert page.inner_text(STATE_LINE) == "会诊已开始，请点击“进入会诊室”。"
        page.click(ENTER)
        _in_room(room, room_id)

        assert not [line for line in room.logs if line.startswith("pageerror")], room.logs
        took = time.monotonic() - started
        print(f"\npatient's way into the consultation room and back: {took:.1f} s")
