"""axe-core on every page, in Chinese and English, at 390 and 1280 px (issue 12, R43).

The landing page, sign-in, the patient's waiting room (device check), the doctor's queue, the
staff console and the consult room (both sides in), each checked by axe-core (npm, injected from
node_modules) with zero serious or critical violations allowed; every visible button at least
44 x 44 px; and with the text at 200 % (the root font size doubled, at 1280 px) no page scrolls
sideways.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_portal_browser import _setup, _sign_in, _totp

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

WAIT_MS = 20_000
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = ({"width": 390, "height": 844}, {"width": 1280, "height": 900})

RUN_AXE_JS = """
async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: " + (n.failureSummary || "").slice(0, 160)) }));
}
"""


# Visible buttons (and links styled as buttons) smaller than 44 x 44 px.
SMALL_TARGETS_JS = """
() => [...document.querySelectorAll("button, .btn, input[type=submit], .chat-btn")]
  .filter((el) => el.offsetParent !== null && getComputedStyle(el).visibility !== "hidden")
  .map((el) => [el.id || el.className || el.tagName, el.getBoundingClientRect()])
  .filter(([, r]) => r.width > 0 && (r.width < 44 || r.height < 44))
  .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`)
"""

# Text at 200 %: the root font size doubled (the pages size everything in rem).
TEXT_200_JS = """
() => {
  const root = document.documentElement;
  const base = parseFloat(getComputedStyle(root).fontSize);
  root.style.fontSize = `${base * 2}px`;
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
    const out = { base, scrollWidth: root.scrollWidth, width: window.innerWidth };
    root.style.fontSize = "";
    resolve(out);
  })));
}
"""


def _axe(page: Any) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # evaluated through the DevTools protocol: the pages' CSP refuses inline <script> tags
        page.evaluate(AXE.read_text())
        assert page.evaluate("() => typeof window.axe === 'object'")
    return page.evaluate(RUN_AXE_JS)


def _check_page(
    page: Any,
    name: str,
    ready: str,
    found: dict[str, Any],
    shots: Path,
    langs: tuple[str, ...] = ("zh-CN", "en"),
) -> None:
    """axe in both languages at both widths; violations go into ``found`` by page/lang/width.
    ``langs=("zh-CN",)``: a page written in both languages at once (the landing page)."""
    for lang in langs:
        page.evaluate(f"() => localStorage.setItem('teleconsult.lang', '{lang}')")
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function(ready, timeout=WAIT_MS)
        assert page.evaluate("() => document.documentElement.lang") == lang
        for size in SIZES:
            page.set_viewport_size(size)
            page.wait_for_timeout(200)  # one layout pass after the resize
            violations = _axe(page)
            if violations:
                found[f"{name} {lang} {size['width']}"] = violations
            small = page.evaluate(SMALL_TARGETS_JS)
            if small:
                found[f"{name} {lang} {size['width']} targets under 44 px"] = small
            page.screenshot(path=str(shots / f"{name}-{lang}-{size['width']}.png"))
            if size["width"] == 1280 and lang == "zh-CN":
                text = page.evaluate(TEXT_200_JS)
                if text["scrollWidth"] > text["width"] + 1:
                    found[f"{name} text at 200 % scrolls sideways"] = text


def test_r43_every_page_has_no_serious_or_critical_axe_violation(
    teleconsult_server: Server,
    open_room: Callable[..., RoomPage],
    tmp_path: Path,
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core missing at {AXE}: run npm install (package.json pins it)")
    server = teleconsult_server
    info = _setup(server, tmp_path / "data")
    found: dict[str, Any] = {}
    shots = tmp_path / "shots"
    shots.mkdir()

    landing = open_room("visitor", f"{server.base_url}/").page
    _check_page(
        landing, "landing", "() => document.querySelector('h1') !== null", found, shots, ("zh-CN",)
    )

    signin = open_room("visitor", f"{server.base_url}/signin").page
    _check_page(
        signin, "signin", "() => document.querySelector('#signin-button') !== null", found, shots
    )

    patient = open_room("patient", "about:blank")
    _sign_in(patient, server.base_url, info["patient"], None)
    patient.page.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
    _check_page(
        patient.page,
        "waiting",
        "() => window.__portal && window.__portal.visit && document.querySelector('#consent-text').textContent.length > 20",
        found,
        shots,
    )

    doctor = open_room("doctor", "about:blank")
    _sign_in(doctor, server.base_url, info["doctor"], _totp(info["doctor"]))
    doctor.page.wait_for_url(re.compile(r"/queue"), timeout=WAIT_MS)
    _check_page(
        doctor.page,
        "queue",
        "() => window.__portal && window.__portal.state === 'ready'",
        found,
        shots,
    )

    admin = open_room("admin", "about:blank")
    _sign_in(admin, server.base_url, info["admin"], _totp(info["admin"]))
    admin.page.wait_for_url(re.compile(r"/console"), timeout=WAIT_MS)
    _check_page(
        admin.page,
        "console",
        "() => window.__portal && window.__portal.state.startsWith('tab:')",
        found,
        shots,
    )

    # The room with both sides in (the demo visit's links).
    room_doctor = open_room("room-doctor", server.links["doctor"])
    room_patient = open_room("room-patient", server.links["patient"])
    for room in (room_doctor, room_patient):
        room.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'joined'", timeout=WAIT_MS
        )
    joined = "() => window.__tc && window.__tc.state === 'joined' && document.querySelector('.tile-remote') !== null"
    _check_page(room_patient.page, "room", joined, found, shots)

    print(f"\nscreenshots in {shots}")
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)
