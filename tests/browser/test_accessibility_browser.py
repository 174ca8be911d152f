"""axe-core on every page, in Chinese and English, at 390 and 1280 px (issue 12, R43).

The landing page, sign-in, the patient's waiting room (device check), the doctor's queue, the
staff console (its landing, the operator's schedule, patient registration and a patient's card
with the booking form), the consult room (both sides in), /consult (the worklist, the request
form, a consultation's detail) and the image viewer with a CT series open, each checked by
axe-core (npm, injected from node_modules) with zero serious or critical violations allowed;
every visible button at least 44 x 44 px; and with the text at 200 % (the root font size
doubled, at 1280 px) no page scrolls sideways. The waiting and queue pages' main regions match
the kept layout references (references/waiting-*.json, queue-*.json; regenerate with
TELECONSULT_UPDATE_REFERENCES=1). /consult links back to the doctor's queue and the operator's
console.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from console_pages import SMALL_TARGETS_JS
from portal_setup import id_number
from room_layout import check_reference, page_regions
from test_consultation_browser import SESSION_KEY
from test_consultation_browser import _setup as _consultation_setup
from test_portal_browser import _setup, _sign_in, _totp
from test_viewer_browser import VIEWER_BUNDLE, _seed, _viewer_url

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

WAIT_MS = 20_000
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = ({"width": 390, "height": 844}, {"width": 1280, "height": 900})

PHONE_VIEWER_JS = """
() => {
  const picture = document.querySelector('#viewport').getBoundingClientRect();
  const studies = document.querySelector('.study-list').getBoundingClientRect();
  const tools = [...document.querySelectorAll('#image-panel .toolbar .btn')];
  const tallest = Math.max(...tools.map((b) => b.getBoundingClientRect().height));
  return picture.width >= 0.85 * window.innerWidth && Math.abs(picture.width - picture.height) <= 2
    && studies.top >= picture.bottom && tallest <= 60;
}
"""

RUN_AXE_JS = """
async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: " + (n.failureSummary || "").slice(0, 160)) }));
}
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


# A nurse account made by the signed-in admin's page (through the API, with its session).
NEW_NURSE_JS = """
async () => {
  const { token } = JSON.parse(sessionStorage.getItem("teleconsult.session"));
  const call = async (method, path, body) => {
    const response = await fetch(`/api/v1${path}`, { method, body: body && JSON.stringify(body),
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };
  const { institutions } = await call("GET", "/institutions");
  for (const institution of institutions) {
    const { departments } = await call("GET", `/institutions/${institution.id}/departments`);
    if (departments.length === 0) continue;
    const account = { username: `enrolling-${Date.now()}`, password: "Correct-Horse-42" };
    await call("POST", "/accounts", { ...account, display_name: "周护士", role: "nurse",
      institution_id: institution.id, department_id: departments[0].id });
    return account;
  }
  throw new Error("no institution with a department");
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
    prepare: Callable[[Any], None] | None = None,
    reference: bool = False,
) -> None:
    """axe in both languages at both widths; violations go into ``found`` by page/lang/width.
    ``langs=("zh-CN",)``: a page written in both languages at once (the landing page).
    ``prepare(page)``: opens what is checked (a form, a tab) after each reload.
    ``reference``: in Chinese at both widths, the page's main regions are compared with the kept
    references ``references/<name>-<width>.json`` (see room_layout.check_reference)."""
    for lang in langs:
        page.evaluate(f"() => localStorage.setItem('teleconsult.lang', '{lang}')")
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function(ready, timeout=WAIT_MS)
        assert page.evaluate("() => document.documentElement.lang") == lang
        if prepare is not None:
            prepare(page)
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
            if reference and lang == "zh-CN":
                try:
                    check_reference(page, f"{name}-{size['width']}", page_regions(page), shots)
                except AssertionError as moved:
                    found[f"{name} {size['width']} layout"] = str(moved)
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
        "() => window.__portal && window.__portal.visit && window.__portal.reminders && document.querySelector('#consent-text').textContent.length > 20",
        found,
        shots,
        reference=True,
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
        reference=True,
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

    # The first sign-in of a new staff account: TOTP enrolment (the QR code, the key behind
    # "cannot scan?"), a step of /signin (there is no /enrol page).
    nurse = admin.page.evaluate(NEW_NURSE_JS)
    enrolling = open_room("enrolling", f"{server.base_url}/signin").page

    def open_enrolment(page: Any) -> None:
        page.fill("#username", nurse["username"])
        page.fill("#password", nurse["password"])
        page.click("#signin-button")
        page.click("#enrol-start", timeout=WAIT_MS)
        page.locator("#totp-qr-image").wait_for(timeout=WAIT_MS)
        page.click("#enrol summary")

    _check_page(
        enrolling,
        "signin-enrol",
        "() => document.querySelector('#signin-button') !== null",
        found,
        shots,
        prepare=open_enrolment,
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

    _check_consultation_pages(server, open_room, found, shots)

    # The image and ECG viewer with a CT series open (the demo visit's doctor link).
    if not VIEWER_BUNDLE.is_file():
        pytest.fail("the viewer bundle is missing: run `node scripts/build-viewer.mjs`")
    seeded = _seed(tmp_path / "data", server.visit_id)
    viewer = open_room("viewer", _viewer_url(server.links["doctor"])).page

    def open_series(page: Any) -> None:
        page.click(f'.series-item[data-series="{seeded["series"]}"]')
        page.wait_for_function(
            "() => window.__viewer.loaded && document.querySelector('#viewport canvas')",
            timeout=WAIT_MS,
        )

    _check_page(
        viewer,
        "viewer",
        "() => window.__viewer && window.__viewer.ready && document.querySelector('.series-item')",
        found,
        shots,
        prepare=open_series,
    )

    # on a phone the picture comes first and as wide as the screen, square, the studies under
    # it, and no tool's name breaks a character to a line (side by side, the list left the
    # tools a column one character wide)
    viewer.set_viewport_size(SIZES[0])
    viewer.wait_for_function(PHONE_VIEWER_JS, timeout=WAIT_MS)

    print(f"\nscreenshots in {shots}")
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)


def _signed_in(
    open_room: Callable[..., RoomPage], base_url: str, session: dict[str, Any], url: str
) -> Any:
    """A page signed in with a session made by consultation_setup.py, at ``url``."""
    page = open_room(session["me"]["username"], "about:blank").page
    page.add_init_script(
        f"if (!sessionStorage.getItem({json.dumps(SESSION_KEY)}))"
        f" sessionStorage.setItem({json.dumps(SESSION_KEY)}, {json.dumps(json.dumps(session))});"
    )
    page.goto(f"{base_url}{url}", wait_until="domcontentloaded")
    return page


def _check_consultation_pages(
    server: Server, open_room: Callable[..., RoomPage], found: dict[str, Any], shots: Path
) -> None:
    """/consult (worklist, the request form, a consultation's detail) and the operator's
    console with its schedule, patient registration and booking form opened."""
    world = _consultation_setup(
        server.ns, server.base_url, Path(server.stdout_path).parent / "data"
    )
    s = world["sessions"]
    consult_ready = "() => (window.__portal?.state ?? '').startsWith('ready:')"

    doctor = _signed_in(open_room, server.base_url, s["doctor"], "/consult")
    doctor.wait_for_function(consult_ready, timeout=WAIT_MS)

    def open_request(page: Any) -> None:
        # the request form opens below the worklists: one check covers both
        page.click("#new-request")
        page.wait_for_selector("#request-form:not([hidden])", timeout=WAIT_MS)
        assert page.is_visible("#worklists")

    _check_page(doctor, "consult-request", consult_ready, found, shots, prepare=open_request)
    # the way back: a doctor's queue (the page is in English after the check)
    assert doctor.get_attribute("#back-link", "href") == "/queue"
    assert doctor.inner_text("#back-link") == "Back to the queue"
    doctor.fill("#rq-reason", "胸痛反复发作")
    doctor.fill("#rq-purpose", "明确诊断")
    doctor.fill("#rq-description", "活动后胸痛 3 个月")
    doctor.fill("#rq-summary", "心电图 ST 段压低")
    doctor.fill("#rq-specialty", "心血管内科")
    doctor.click("#request-form [type=submit]")
    doctor.wait_for_function(
        "() => document.querySelector('#detail')?.dataset.state === 'draft'", timeout=WAIT_MS
    )
    cid = doctor.get_attribute("#detail", "data-id")
    doctor.goto(f"{server.base_url}/consult?id={cid}", wait_until="domcontentloaded")
    detail_ready = (
        "() => (window.__portal?.state ?? '').startsWith('ready:')"
        " && document.querySelector('#detail')?.dataset.state === 'draft'"
    )
    _check_page(doctor, "consult-detail", detail_ready, found, shots)

    operator = _signed_in(open_room, server.base_url, s["down_centre"], "/console")
    console_ready = "() => (window.__portal?.state ?? '').startsWith('tab:')"

    def tab(page: Any, name: str) -> None:
        page.click(f"#console-nav [data-tab={name}]")
        page.wait_for_function(f"() => window.__portal.state === 'tab:{name}'", timeout=WAIT_MS)

    _check_page(
        operator, "console-schedule", console_ready, found, shots,
        prepare=lambda page: tab(page, "schedule"),
    )  # fmt: skip

    def open_registration(page: Any) -> None:
        tab(page, "patients")
        page.fill("#find-id-number", id_number())
        page.click("#find-form [type=submit]")
        page.wait_for_selector("#register-form:not([hidden])", timeout=WAIT_MS)

    _check_page(
        operator, "console-register", console_ready, found, shots, prepare=open_registration
    )
    patient_id_number = id_number()

    def open_patient(page: Any) -> None:
        tab(page, "patients")
        page.fill("#find-id-number", patient_id_number)
        page.click("#find-form [type=submit]")
        page.wait_for_selector("#register-form:not([hidden]), #patient-card:not([hidden])")
        if page.is_visible("#register-form"):
            page.fill("#register-name", "周某")
            page.click("#register-form [type=submit]")
        page.wait_for_selector("#patient-card:not([hidden]) #booking-form", timeout=WAIT_MS)

    _check_page(operator, "console-booking", console_ready, found, shots, prepare=open_patient)

    # the operator's way back from /consult is the console
    operator.goto(f"{server.base_url}/consult", wait_until="domcontentloaded")
    operator.wait_for_function(consult_ready, timeout=WAIT_MS)
    assert operator.get_attribute("#back-link", "href") == "/console"
    assert operator.inner_text("#back-link") == "Back to the console"
    operator.click("#lang-toggle")
    assert operator.inner_text("#back-link") == "返回工作台"
    operator.click("#back-link")
    operator.wait_for_url(re.compile(r"/console"), timeout=WAIT_MS)
