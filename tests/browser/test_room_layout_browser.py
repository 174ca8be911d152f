"""The consult room laid out for its users (issue 12, R43).

- At 1280x900 (doctor) and 390x844 (patient) the remote video is on the first screen, the control
  bar covers neither a name label nor the chat input, its buttons are at least 44 px: asserted
  from element geometry; the main regions' boxes match the kept references in references/
  (room-doctor-1280x900.json, room-patient-390x844.json; regenerate with
  TELECONSULT_UPDATE_REFERENCES=1, see room_layout.py), and screenshots are saved in the test's
  tmp_path for a person to look at.
- On the 390 px phone the control buttons' labels, Chinese and English, wrap onto at most two
  lines and never one character per line.
- A bad room link never turns the camera on.
- The pressed (muted) camera/microphone button stays dark with white text under the pointer.
- Camera off by choice reads as a choice, not as a broken device.
- Any number of remote participants get a tile each, labelled with name and room role.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from room_layout import ROOM_REGIONS, check_control_labels, check_reference, check_room_layout

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WAIT_MS = 15_000

PLAYING_JS = """
async () => {
  const video = document.querySelector(".tile-remote video");
  const pc = window.__tc && window.__tc.pcs.subscribe;
  let frames = 0;
  if (pc && video && video.srcObject) {
    const track = video.srcObject.getVideoTracks()[0];
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && track && s.trackIdentifier === track.id) {
        frames = s.framesDecoded || 0;
      }
    });
  }
  return { width: video ? video.videoWidth : 0, frames };
}
"""

# Counts getUserMedia calls before any page script runs.
COUNT_GUM_JS = """
window.__gum = 0;
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => { window.__gum += 1; return original(c); };
"""


def _wait_playing(room: RoomPage, deadline: float) -> None:
    last = -1
    sample: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sample = room.page.evaluate(PLAYING_JS)
        if sample["width"] > 0 and sample["frames"] > last > 0:
            return
        last = sample["frames"]
        room.page.wait_for_timeout(150)  # poll interval, bounded by the deadline
    pytest.fail(f"no remote video on the {room.role} page: {sample}\n" + "\n".join(room.logs[-30:]))


def test_r43_the_room_fits_the_doctors_and_the_patients_screen(
    teleconsult_server: Server,
    open_room: Callable[..., RoomPage],
    tmp_path: Path,
) -> None:
    server = teleconsult_server
    doctor = open_room("doctor", server.links["doctor"], viewport={"width": 1280, "height": 900})
    patient = open_room("patient", server.links["patient"], viewport={"width": 390, "height": 844})
    deadline = time.monotonic() + 25
    for room in (doctor, patient):
        room.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'joined'", timeout=WAIT_MS
        )
    for room in (doctor, patient):
        _wait_playing(room, deadline)

    g = check_room_layout(doctor.page, min_video_width=480)
    print(f"\ndoctor 1280x900: remote video {g['remoteVideos'][0]}")
    g = check_room_layout(patient.page, min_video_width=340)
    print(f"patient 390x844: remote video {g['remoteVideos'][0]}")
    # one's own picture is a small picture-in-picture, not a second full tile
    assert g["local"]["width"] < g["remoteVideos"][0]["width"] / 2, g
    check_reference(doctor.page, "room-doctor-1280x900", ROOM_REGIONS, tmp_path)
    check_reference(patient.page, "room-patient-390x844", ROOM_REGIONS, tmp_path)

    # The doctor opens the visit's images and ECGs from the room (review together, issue 15):
    # a link to the viewer with the room's join token in the fragment; not on the patient's.
    link = doctor.page.locator("#viewer-link")
    assert link.is_visible() and link.inner_text().strip() == "影像与心电图"
    href = link.get_attribute("href") or ""
    assert re.fullmatch(rf"/viewer\?visit={server.visit_id}#token=[\w.%-]+", href), href
    assert patient.page.locator("#viewer-link").is_hidden()
    viewer = open_room("doctor viewer", server.base_url + href)
    viewer.page.wait_for_function("() => window.__viewer && window.__viewer.ready", timeout=WAIT_MS)
    assert viewer.page.evaluate("() => window.__viewer.errors") == []
    assert viewer.page.locator("#upload").is_visible()  # the visit's doctor may upload
    viewer.page.close()

    # The phone's control bar: no label broken up, in Chinese and in English.
    labels = check_control_labels(patient.page)
    print(f"control labels at 390 px: {[label['lines'] for label in labels]}")
    assert any("麦克风" in label["text"] for label in labels), labels
    patient.page.evaluate("async () => (await import('/static/i18n.js')).setLanguage('en')")
    patient.page.wait_for_function(
        "() => document.querySelector('#leave-button').textContent.includes('Leave')",
        timeout=WAIT_MS,
    )
    labels = check_control_labels(patient.page)
    print(f"control labels at 390 px in English: {[label['lines'] for label in labels]}")
    doctor.page.evaluate("async () => (await import('/static/i18n.js')).setLanguage('en')")
    assert doctor.page.locator("#viewer-link").inner_text().strip() == "Images & ECGs"
    doctor.page.evaluate("async () => (await import('/static/i18n.js')).setLanguage('zh-CN')")
    patient.page.screenshot(path=str(tmp_path / "room-patient-390x844-en.png"))
    patient.page.evaluate("async () => (await import('/static/i18n.js')).setLanguage('zh-CN')")
    patient.page.wait_for_function(
        "() => document.querySelector('#leave-button').textContent.includes('离开')",
        timeout=WAIT_MS,
    )

    # Typing in the chat keeps the video where it is (the page does not scroll it away).
    before = doctor.page.evaluate(
        "() => document.querySelector('.tile-remote video').getBoundingClientRect().top"
    )
    doctor.page.fill("#chat-input", "您好，请把血压计放在旁边")
    doctor.page.keyboard.press("Enter")
    doctor.page.locator("#chat-list .chat-item").first.wait_for(timeout=WAIT_MS)
    after = doctor.page.evaluate(
        "() => document.querySelector('.tile-remote video').getBoundingClientRect().top"
    )
    assert abs(after - before) < 1, (before, after)

    # The self-view can be hidden and shown again; full screen is offered.
    doctor.page.click("#selfview-button")
    assert doctor.page.locator("#local-tile").is_hidden()
    doctor.page.click("#selfview-button")
    assert doctor.page.locator("#local-tile").is_visible()
    assert doctor.page.locator("#fullscreen-button").is_visible()

    # Camera off by choice: the self-view says so, not "no camera" (a broken device).
    patient.page.click("#cam-button")
    placeholder = patient.page.locator("#local-placeholder")
    assert placeholder.get_attribute("data-reason") == "local.camera_off"
    assert "您已关闭摄像头" in placeholder.inner_text()
    patient.page.screenshot(path=str(tmp_path / "room-patient-camera-off.png"))
    print(f"screenshots in {tmp_path}")


def test_a_bad_room_link_never_turns_the_camera_on(
    teleconsult_server: Server, open_room: Callable[..., RoomPage]
) -> None:
    server = teleconsult_server
    room = open_room("patient", "about:blank")
    room.page.add_init_script(COUNT_GUM_JS)
    good = server.links["patient"]
    room.page.goto(good.replace("token=", "token=x"), wait_until="domcontentloaded")
    room.page.wait_for_function(
        "() => window.__tc && window.__tc.state === 'error'", timeout=WAIT_MS
    )
    assert room.page.get_attribute("#error", "data-code") in {"token_invalid", "unauthenticated"}
    assert room.page.evaluate("() => window.__gum") == 0
    # the good link does ask (so the counter works); from a blank page, since the two links
    # differ only in their fragment (where the token is) and would not load the page again
    room.page.goto("about:blank")
    room.page.goto(good, wait_until="domcontentloaded")
    room.page.wait_for_function(
        "() => window.__tc && window.__tc.state === 'joined'", timeout=WAIT_MS
    )
    assert room.page.evaluate("() => window.__gum") >= 1


def test_the_pressed_button_keeps_its_colour_under_the_pointer(
    teleconsult_server: Server, open_room: Callable[..., RoomPage]
) -> None:
    room = open_room("doctor", teleconsult_server.links["doctor"])
    page = room.page
    page.wait_for_function("() => window.__tc && window.__tc.state === 'joined'", timeout=WAIT_MS)
    page.click("#mic-button")
    assert page.get_attribute("#mic-button", "aria-pressed") == "true"
    page.hover("#mic-button")
    colours = page.evaluate(
        "() => { const s = getComputedStyle(document.querySelector('#mic-button'));"
        " return [s.backgroundColor, s.color]; }"
    )
    assert colours == ["rgb(138, 61, 0)", "rgb(255, 255, 255)"], colours


TILES_JS = """
async (people) => {
  const { TileGrid } = await import("/static/tiles.js");
  const box = document.createElement("section");
  document.body.append(box);
  const grid = new TileGrid(box);
  grid.update(people);
  const first = [...box.querySelectorAll(".tile-remote")].map((t) => [
    t.dataset.participantId, t.querySelector(".tile-name").textContent,
    t.querySelector(".tile-role").textContent]);
  grid.update(people.slice(1));  // one leaves: only their tile goes
  return { first, count: box.dataset.count, after: [...box.querySelectorAll(".tile-remote")].map((t) => t.dataset.participantId) };
}
"""


def test_any_number_of_remote_participants_get_a_labelled_tile(
    teleconsult_server: Server, open_room: Callable[..., RoomPage]
) -> None:
    room = open_room("patient", f"{teleconsult_server.base_url}/signin")
    room.page.wait_for_load_state("domcontentloaded")
    people = [
        {"id": "d1", "name": "王医生", "role": "doctor"},
        {"id": "p1", "name": "张某", "role": "patient"},
        {
            "id": "g1",
            "name": "张某某",
            "role": "patient",
            "room_role": "guardian",
            "label": "张某某（母亲）",
        },
        {"id": "i1", "name": "李翻译", "role": "interpreter"},
    ]
    result = room.page.evaluate(TILES_JS, people)
    assert result["first"] == [
        ["d1", "王医生", "医生"],
        ["p1", "张某", "患者"],
        ["g1", "张某某（母亲）", "监护人"],
        ["i1", "李翻译", "翻译"],
    ]
    assert result["after"] == ["p1", "g1", "i1"]
