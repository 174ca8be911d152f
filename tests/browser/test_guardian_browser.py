"""A visit of three in three Chromium pages (issue 11): doctor, a child under 6 and its guardian.

R4: the child (4, its own account on a family tablet) signs the consent and checks in; the
guardian, on its own account, sees the ward's visit in its waiting room; the doctor's admit is
refused in the queue page with a readable message until the guardian has checked in too (the
queue is pushed the guardian's arrival and says so). Then
all three are in the room and each page decodes the two others' video and receives their audio,
over 127.0.0.1. The aiortc version is tests/api/test_three_party_visit.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_portal_browser import WAIT_MS, _setup, _sign_in, _totp
from test_room_browser import _wait_selected_pair

Server = Any
RoomPage = Any

# the timeout counts the server's start too: a server and three pages on 2 busy cores
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ROLE_TEXT = {"doctor": "医生", "patient": "患者", "guardian": "监护人"}
NAMES = {"doctor": "王医生", "patient": "小李", "guardian": "家长 李某"}

# Every remote tile of the page: its role and name as shown, the video's size, the frames decoded
# of the very track it shows and the audio packets received of its <audio> track (inbound-rtp of
# the subscribe connection).
REMOTE_MEDIA_JS = """
async () => {
  const tc = window.__tc;
  const pc = tc && tc.pcs.subscribe;
  const inbound = new Map();
  if (pc) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") inbound.set(s.trackIdentifier, s);
    });
  }
  const track = (el, kind) =>
    el && el.srcObject ? el.srcObject.getTracks().find((t) => t.kind === kind) : null;
  return [...document.querySelectorAll("article.tile-remote")].map((tile) => {
    const video = tile.querySelector("video");
    const vt = track(video, "video");
    const at = track(tile.querySelector("audio"), "audio");
    const v = vt ? inbound.get(vt.id) : null;
    const a = at ? inbound.get(at.id) : null;
    return {
      role: tile.dataset.role,
      roleText: tile.querySelector(".tile-role").textContent,
      name: tile.querySelector(".tile-name").textContent,
      width: video ? video.videoWidth : 0,
      frames: v ? v.framesDecoded || 0 : 0,
      packets: a ? a.packetsReceived || 0 : 0,
    };
  });
}
"""


def _wait_media(room: RoomPage, others: set[str], deadline: float) -> list[dict[str, Any]]:
    """Poll until the page shows exactly the tiles of ``others`` and, for each, the decoded
    frames and the audio packets received keep rising (a later sample above a first one)."""
    first: dict[str, dict[str, Any]] | None = None
    tiles: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tiles = room.page.evaluate(REMOTE_MEDIA_JS)
        by_role = {tile["role"]: tile for tile in tiles}
        playing = (
            len(tiles) == len(others)
            and set(by_role) == others
            and all(t["width"] > 0 and t["frames"] > 0 and t["packets"] > 0 for t in tiles)
        )
        if playing and first is None:
            first = by_role
        elif playing and first is not None:
            if all(
                by_role[r]["frames"] > first[r]["frames"]
                and by_role[r]["packets"] > first[r]["packets"]
                for r in others
            ):
                return tiles
        time.sleep(0.2)  # poll interval, bounded by the deadline
    pytest.fail(f"the {room.role} page did not play everyone's media: {tiles}\n{room.logs[-30:]}")


def _waiting_page(room: RoomPage, base_url: str, account: dict[str, Any], visit_id: str) -> Any:
    _sign_in(room, base_url, account, None)
    page = room.page
    page.wait_for_url(re.compile(r"/waiting"), timeout=WAIT_MS)
    page.wait_for_function(
        f"() => window.__portal.visit && window.__portal.visit.id === '{visit_id}'",
        timeout=WAIT_MS,
    )
    return page


def test_r4_three_pages_see_and_hear_each_other_once_the_guardian_checked_in(
    teleconsult_server: Server,
    open_room: Callable[[str, str], RoomPage],
    tmp_path: Path,
) -> None:
    server = teleconsult_server
    info = _setup(server, tmp_path / "data", "--guardian")
    visit_id = info["visit_id"]
    started = time.monotonic()

    # The child's page (the tablet): consent, check-in, waiting.
    child = open_room("patient", "about:blank")
    page = _waiting_page(child, server.base_url, info["child"], visit_id)
    page.wait_for_function("() => document.querySelector('#consent-text').textContent.length > 20")
    page.check("#consent-agree")
    page.click("#consent-sign")
    page.wait_for_function("() => window.__portal.visit.consent_signed")
    page.click("#check-in")
    page.wait_for_function("() => window.__portal.visit.state === 'waiting'", timeout=WAIT_MS)

    # The guardian's page shows the ward's visit, already waiting, and still offers its own
    # check-in (the doctor waits for it).
    guardian = open_room("guardian", "about:blank")
    gpage = _waiting_page(guardian, server.base_url, info["guardian"], visit_id)
    assert "就诊人：小李（您是监护人）" in gpage.inner_text("#visit-details")
    assert gpage.is_visible("#check-in") and gpage.is_enabled("#check-in")
    assert gpage.inner_text("#checkin-text").startswith("您是小李的监护人")

    # The doctor: the admit is refused in the page, said in words (R4), not as a code.
    doctor = open_room("doctor", "about:blank")
    _sign_in(doctor, server.base_url, info["doctor"], _totp(info["doctor"]))
    queue = doctor.page
    queue.wait_for_url(re.compile(r"/queue"), timeout=WAIT_MS)
    item = queue.locator(f"li[data-visit-id='{visit_id}']")
    item.wait_for(timeout=WAIT_MS)
    assert item.locator(".who").inner_text() == "小李"
    item.locator("[data-action=admit]").click()
    queue.wait_for_selector("#error", state="visible", timeout=WAIT_MS)
    assert queue.get_attribute("#error", "data-code") == "guardian_required"
    assert queue.inner_text("#error") == "错误：6 岁以下儿童就诊需要监护人陪同。"
    assert item.get_attribute("data-state") == "waiting"
    assert queue.evaluate("window.__portal.roomVisitId") is None

    # The guardian checks in; now the doctor admits, and both waiting pages move to the room.
    gpage.click("#check-in")
    gpage.wait_for_function("() => window.__portal.visit.guardian_present", timeout=WAIT_MS)
    assert gpage.is_hidden("#check-in")
    assert gpage.inner_text("#checkin-text").startswith("您正在候诊")
    # the doctor's queue is pushed the arrival (no click, no polling): the item says so
    item.locator(".meta", has_text="监护人已到").wait_for(timeout=WAIT_MS)
    item.locator("[data-action=admit]").click()
    queue.wait_for_function(f"() => window.__portal.roomVisitId === '{visit_id}'", timeout=WAIT_MS)
    assert queue.is_hidden("#error")
    for waiting in (page, gpage):
        waiting.wait_for_url(re.compile(r"/room\?visit="), timeout=WAIT_MS)

    # Everyone sees and hears everyone: two remote tiles per page, each decoding video and
    # receiving audio, labelled with the person's name and room role in Chinese.
    rooms = {"doctor": doctor, "patient": child, "guardian": guardian}
    deadline = time.monotonic() + 45  # a loaded server may refuse a join (server_busy): retried
    for role, room in rooms.items():
        others = set(rooms) - {role}
        tiles = _wait_media(room, others, deadline)
        assert {(t["role"], t["roleText"], t["name"]) for t in tiles} == {
            (r, ROLE_TEXT[r], NAMES[r]) for r in others
        }, tiles
        assert room.page.inner_text("#local-name") == f"我（{ROLE_TEXT[role]}）"
    # Media stays on loopback: the selected pair of every connection is 127.0.0.1 both ends.
    for role, room in rooms.items():
        for which in ("publish", "subscribe"):
            pair = _wait_selected_pair(room, which, time.monotonic() + 5.0)
            assert (pair["local"], pair["remote"]) == ("127.0.0.1", "127.0.0.1"), (role, pair)
    for room in rooms.values():
        assert not [line for line in room.logs if line.startswith("pageerror")], room.logs
    gpage.screenshot(path=str(tmp_path / "guardian-in-room.png"))
    print(f"\nthree-party visit, sign-in to everyone's media: {time.monotonic() - started:.1f} s")
