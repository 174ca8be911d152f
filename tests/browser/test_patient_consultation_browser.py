"""Issue 14 from the patient's side and the inviter's room page (R12): the patient, in a
phone-sized Chromium page (390 px wide), signs in and its waiting room shows a "远程会诊" card (the
two institutions, the time, the state in plain words) with a button into the MDT room, which it
enters in the same tab. The inviter and an expert open the room from their /consult pages (a new
tab). Only the inviter has the "请患者暂离" control; a refusal of the API shows its message in both
languages. Confirmed, the patient's room page goes back to the waiting room, which says the
doctors are talking among themselves and offers no way in; the inviter's and the expert's pages
show the doctors-only banner (the inviter's again after a reload: it is the server's), the
inviter brings the patient back, the button returns on /waiting (pushed, no reload) and the
patient is in the room again. The host's room is photographed at 390 and 1280 px in both
languages. The consultation up to its session is made through the API
(patient_consultation_setup.py); the rest is clicks.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_types import RoomPage
from console_pages import SMALL_TARGETS_JS, api_setup, empty_server
from test_accessibility_browser import _axe
from test_portal_browser import _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SETUP = Path(__file__).resolve().parent / "patient_consultation_setup.py"
WAIT_MS = 20_000
JOIN_MS = 40_000  # a room join on a loaded 2-core machine (camera, two peer connections)
PHONE = {"width": 390, "height": 844}

SESSION_KEY = "teleconsult.session"
STEP_OUT = "#step-out-button"
CONFIRM = "#step-out-confirm"
BRING_BACK = "#bring-back-button"
BANNER_ZH = "医生内部讨论中：患者方已暂时离开"
BANNER_EN = "Doctors only: the patient's side has stepped out"

CARD = "#consult-card"
ENTER = f"{CARD} [data-action=enter-consultation]"
STATE_LINE = f"{CARD} .consult-state"


def _setup(ns: str, base_url: str, data_dir: Path) -> dict[str, Any]:
    return api_setup(ns, SETUP, base_url, data_dir)


def _room_from_consult(
    open_room: Callable[..., RoomPage], base_url: str, session: dict[str, Any], cid: str
) -> RoomPage:
    """A clinician's /consult page (signed in with ``session``) opens the consultation's room in
    a new tab, as a click does: that tab is the returned room page, once joined."""
    consult = open_room(session["me"]["username"], "about:blank")
    page = consult.page
    page.add_init_script(
        f"if (!sessionStorage.getItem({json.dumps(SESSION_KEY)}))"
        f" sessionStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(json.dumps(session))});"
    )
    page.goto(f"{base_url}/consult?id={cid}", wait_until="domcontentloaded")
    page.wait_for_selector("#detail-actions [data-action=room]", timeout=WAIT_MS)
    with page.context.expect_page(timeout=WAIT_MS) as opened:
        page.click("#detail-actions [data-action=room]")
    tab = opened.value
    room = RoomPage(role=f"{session['me']['username']} room", page=tab)
    tab.on("console", lambda msg: room.logs.append(f"{msg.type}: {msg.text}"))
    tab.on("pageerror", lambda exc: room.logs.append(f"pageerror: {exc}"))
    tab.wait_for_function("() => window.__tc?.state === 'joined'", timeout=JOIN_MS)
    return room


def _sees(page: Any, role: str, present: bool = True) -> None:
    """Wait until the page has (or no longer has) a tile of ``role``."""
    page.wait_for_function(
        "([role, present]) => Boolean(document.querySelector("
        "`#tiles .tile-remote[data-role=${role}]`)) === present",
        arg=[role, present],
        timeout=JOIN_MS,
    )


def _banner(page: Any, text: str) -> None:
    page.wait_for_function(
        "(text) => { const b = document.querySelector('#doctors-only');"
        " return b && !b.hidden && b.textContent.includes(text); }",
        arg=text,
        timeout=WAIT_MS,
    )


def _lang(page: Any, lang: str) -> None:
    if page.evaluate("() => document.documentElement.lang") != lang:
        # a click of the script's: an open modal dialog keeps the pointer from the top bar
        page.evaluate("() => document.getElementById('lang-toggle').click()")
        page.wait_for_function("(l) => document.documentElement.lang === l", arg=lang)


def _shots(page: Any, path: Path, name: str) -> None:
    """The host's room at a phone's and a desktop's width, in both languages; nothing wider than
    the window, and no target under 44 px (R43)."""
    for lang in ("zh-CN", "en"):
        _lang(page, lang)
        for width, height in ((390, 844), (1280, 900)):
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
            wide = page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= width, (name, lang, width, wide)
            assert page.evaluate(SMALL_TARGETS_JS) == [], (name, lang, width)
            page.screenshot(path=str(path / f"{name}-{lang}-{width}.png"))
    _lang(page, "zh-CN")


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


def test_r12_the_inviter_asks_the_patient_out_from_its_room_page_and_brings_it_back(
    netns: str, open_room: Callable[..., RoomPage], tmp_path: Path
) -> None:
    with empty_server(netns, tmp_path) as (base_url, data_dir):
        world = _setup(netns, base_url, data_dir)
        started = time.monotonic()
        cid, room_id = world["consultation_id"], world["room_id"]

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

        # --- Into the room, in this tab; the inviter and the expert from their /consult pages ----
        page.click(ENTER)
        _in_room(room, room_id)
        host = _room_from_consult(open_room, base_url, world["sessions"]["doctor"], cid).page
        expert = _room_from_consult(open_room, base_url, world["sessions"]["expert"], cid).page
        for who in (host, expert):
            _sees(who, "patient")
        assert host.inner_text("#local-name") == "我（申请方医生）"
        # the host's control only: nobody else sees it (the API refuses them too)
        host.wait_for_selector(STEP_OUT, state="visible", timeout=WAIT_MS)
        assert host.inner_text(STEP_OUT) == "请患者暂离"
        assert expert.is_hidden(STEP_OUT) and page.is_hidden(STEP_OUT)
        assert host.is_hidden("#doctors-only") and expert.is_hidden("#doctors-only")

        # --- A refusal shows the API's message, in both languages -----------------------------
        refusal = {"error": {"code": "forbidden", "message": "You may not do this."}}
        host.route(
            "**/participants/*/step-out",
            lambda route: route.fulfill(status=403, json=refusal),
            times=1,
        )
        host.click(STEP_OUT)
        host.wait_for_selector("#step-out-dialog[open]", timeout=WAIT_MS)
        assert "医生内部讨论" in host.inner_text("#step-out-dialog")
        _shots(host, tmp_path, "host-confirm")
        host.click(CONFIRM)
        host.wait_for_function(
            "() => { const e = document.querySelector('#error');"
            " return !e.hidden && e.dataset.code === 'forbidden'; }",
            timeout=WAIT_MS,
        )
        assert host.inner_text("#error") == "错误：您没有执行此操作的权限。"
        _lang(host, "en")
        assert host.inner_text("#error") == "Error: You may not do this."
        _lang(host, "zh-CN")
        assert page.url.endswith(f"/room?room={room_id}"), page.url  # nobody moved

        # --- The inviter asks the patient's side out: back in the waiting room, told why --------
        _shots(host, tmp_path, "host-room")
        asked = time.monotonic()
        host.click(STEP_OUT)
        host.wait_for_selector("#step-out-dialog[open]", timeout=WAIT_MS)
        host.click(CONFIRM)
        page.wait_for_url(re.compile(r"/waiting\?left=stepped_out"), timeout=WAIT_MS)
        print(f"\nthe patient's page left {time.monotonic() - asked:.1f} s after the click")
        assert host.is_hidden("#error")
        _text(page, STATE_LINE, "医生们正在讨论，请稍候")
        # read out first: the line that says why has the focus
        page.wait_for_function(
            "() => document.activeElement?.classList.contains('consult-state')", timeout=WAIT_MS
        )
        assert page.is_hidden(ENTER)
        assert world["down"] in page.inner_text(f"{CARD} .consult-facts")
        page.screenshot(path=str(tmp_path / "waiting-stepped-out.png"))
        _accessible(page)

        # --- The clinicians' pages say so (from the server): the host may bring it back ---------
        for who in (host, expert):
            _banner(who, BANNER_ZH)
            _sees(who, "patient", present=False)
        assert host.inner_text(BRING_BACK) == "请患者回来"
        assert expert.is_hidden(BRING_BACK) and host.is_hidden(STEP_OUT)
        host.wait_for_function("(sel) => document.activeElement?.matches(sel)", arg=BRING_BACK)
        _lang(expert, "en")
        _banner(expert, BANNER_EN)
        _lang(expert, "zh-CN")
        # the host's page opened again knows it too: it is the server's, not the page's memory
        host.reload(wait_until="domcontentloaded")
        host.wait_for_function("() => window.__tc?.state === 'joined'", timeout=JOIN_MS)
        _banner(host, BANNER_ZH)
        _shots(host, tmp_path, "host-doctors-only")
        assert _axe(host) == []

        # --- Brought back: the button returns on /waiting (pushed), and the patient enters -----
        host.click(BRING_BACK)
        page.wait_for_selector(ENTER, timeout=WAIT_MS)
        for who in (host, expert):
            who.wait_for_selector("#doctors-only", state="hidden", timeout=WAIT_MS)
        host.wait_for_selector(STEP_OUT, state="visible", timeout=WAIT_MS)
        assert page.inner_text(STATE_LINE) == "会诊已开始，请点击“进入会诊室”。"
        page.click(ENTER)
        _in_room(room, room_id)
        for who in (host, expert):
            _sees(who, "patient")
        assert host.is_hidden("#error")

        assert not [line for line in room.logs if line.startswith("pageerror")], room.logs
        took = time.monotonic() - started
        print(f"\nthe patient asked out from the inviter's page and back: {took:.1f} s")
