"""Two browsers, doctor and patient, meet in the consult room and see each other.

Real Debian Chromium with a fake camera, the real server, media over 127.0.0.1 inside a private
network namespace (see conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Fixtures and their types (Server, RoomPage) live in conftest.py; pytest injects them, so they
# are annotated as Any here rather than imported from a conftest module.
Server = Any
RoomPage = Any

# The timeout is a backstop for a hung browser or server; each wait below has its own deadline.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

JOIN_TIMEOUT_MS = 30_000  # CI runs about twice as slow as a quiet machine
FIRST_FRAME_LIMIT_S = 5.0
ROLE_LABELS = {"doctor": ("医生", "Doctor"), "patient": ("患者", "Patient")}
OTHER = {"doctor": "patient", "patient": "doctor"}

# Size of the remote video and the frames decoded for the very track it shows (inbound-rtp of the
# current subscribe connection), in one call.
REMOTE_VIDEO_JS = """
async () => {
  const tc = window.__tc;
  const video = document.querySelector("video[data-participant-id]");
  const track = video && video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
  let framesDecoded = 0;
  const pc = tc.pcs.subscribe;
  if (pc && track) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.trackIdentifier === track.id) {
        framesDecoded = s.framesDecoded || 0;
      }
    });
  }
  return {
    width: video ? video.videoWidth : 0,
    height: video ? video.videoHeight : 0,
    trackState: track ? track.readyState : null,
    participantId: video ? video.dataset.participantId : null,
    role: video ? video.dataset.role : null,
    framesDecoded,
    joined: tc.timings.joined,
    firstFrame: tc.timings.firstFrame,
  };
}
"""

# The selected ICE candidate pair of one peer connection, with both candidates' addresses.
SELECTED_PAIR_JS = """
async (which) => {
  const pc = window.__tc.pcs[which];
  if (!pc) return null;
  const stats = await pc.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  let pair = null;
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = byId.get(s.selectedCandidatePairId);
    }
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) pair = s;
    }
  }
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId) || {};
  const remote = byId.get(pair.remoteCandidateId) || {};
  return {
    state: pair.state,
    nominated: pair.nominated,
    local: local.address ?? local.ip,
    remote: remote.address ?? remote.ip,
    localType: local.candidateType,
    remoteType: remote.candidateType,
    protocol: local.protocol,
  };
}
"""


def _describe(room: RoomPage) -> str:
    return f"{room.role} page: __tc={room.tc()}\nconsole:\n" + "\n".join(room.logs[-40:])


def _wait_joined(room: RoomPage) -> None:
    try:
        room.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'joined'", timeout=JOIN_TIMEOUT_MS
        )
    except Exception as exc:
        pytest.fail(f"{room.role} did not join: {exc}\n{_describe(room)}")


def _wait_remote_video(room: RoomPage, deadline: float) -> dict[str, Any]:
    """Poll until the remote <video> has a size and the decoded frame count keeps rising."""
    last_frames = 0
    sample: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sample = room.page.evaluate(REMOTE_VIDEO_JS)
        frames = sample["framesDecoded"]
        if sample["width"] > 0 and last_frames > 0 and frames > last_frames:
            return sample
        last_frames = frames
        room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline
    pytest.fail(f"remote video did not play on the {room.role} page: {sample}\n{_describe(room)}")


def _wait_selected_pair(room: RoomPage, which: str, deadline: float) -> dict[str, Any]:
    pair = None
    while time.monotonic() < deadline:
        pair = room.page.evaluate(SELECTED_PAIR_JS, which)
        if pair and pair["state"] == "succeeded":
            return pair
        room.page.wait_for_timeout(100)
    pytest.fail(f"no selected candidate pair for {which} on the {room.role} page: {pair}")


def test_doctor_and_patient_see_each_other(
    teleconsult_server: Server,
    open_room: Callable[[str, str], RoomPage],
    tmp_path: Path,
) -> None:
    server = teleconsult_server
    rooms = {role: open_room(role, server.links[role]) for role in ("doctor", "patient")}
    for room in rooms.values():
        _wait_joined(room)
    # R33: the join token came in the link's fragment and is gone from the address bar (and so
    # from the history entry); the server never saw it in a URL
    for role, room in rooms.items():
        assert "#token=" in server.links[role]
        assert room.page.url == server.links[role].split("#", 1)[0], room.page.url

    # Each page joins on its own; its remote video must play within 5 s of its own join.
    samples: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S + 1.0
    for role, room in rooms.items():
        samples[role] = _wait_remote_video(room, deadline)

    join_to_frame_ms: dict[str, float] = {}
    for role, sample in samples.items():
        first = sample["firstFrame"].get(sample["participantId"])
        assert first is not None, f"{role}: no first-frame time recorded: {sample}"
        join_to_frame_ms[role] = first - sample["joined"]
        assert sample["role"] == OTHER[role], sample
    # The first page to join can only see a picture once the second has joined and published.
    both_joined = max(sample["joined"] for sample in samples.values())
    after_both = {
        role: sample["firstFrame"][sample["participantId"]] - both_joined
        for role, sample in samples.items()
    }
    print(
        "\njoin-to-first-frame (own join ack to first remote frame presented): "
        + ", ".join(f"{role} {ms:.0f} ms" for role, ms in join_to_frame_ms.items())
        + "; after both joined: "
        + ", ".join(f"{role} {ms:.0f} ms" for role, ms in after_both.items())
    )
    for role, ms in join_to_frame_ms.items():
        assert ms <= FIRST_FRAME_LIMIT_S * 1000, f"{role}: first frame {ms:.0f} ms after join"

    # Media stays on loopback: the selected pair of both connections is 127.0.0.1 <-> 127.0.0.1.
    for role, room in rooms.items():
        for which in ("publish", "subscribe"):
            pair = _wait_selected_pair(room, which, time.monotonic() + 2.0)
            assert (pair["local"], pair["remote"]) == ("127.0.0.1", "127.0.0.1"), (
                f"{role} {which}: {pair}"
            )

    # The remote tile names the other side's role, in Chinese by default.
    for role, room in rooms.items():
        other = OTHER[role]
        tile = room.page.locator(f".tile-remote[data-role={other}]")
        assert tile.locator(".tile-role").inner_text() == ROLE_LABELS[other][0]
        assert room.page.locator(f"video[data-role={other}][data-participant-id]").count() == 1
        room.page.screenshot(path=str(tmp_path / f"{role}.png"))
        # No ack came back with an error and nothing failed on the page.
        assert room.tc()["errors"] == [], _describe(room)
        assert room.page.locator("#error").is_hidden()

    # The English toggle switches visible labels and is remembered.
    doctor = rooms["doctor"].page
    leave = doctor.locator("#leave-button .btn-text")
    assert leave.inner_text() == "离开会诊"
    # R22: the room is recorded, and the page says so
    badge = doctor.locator("#recording-badge")
    assert badge.is_visible() and badge.inner_text().endswith("录制中")
    doctor.locator("#lang-toggle").click()
    assert leave.inner_text() == "Leave"
    assert badge.inner_text().endswith("Recording")
    assert doctor.locator(".tile-remote .tile-role").inner_text() == ROLE_LABELS["patient"][1]
    assert doctor.evaluate("document.documentElement.lang") == "en"
    assert doctor.evaluate("localStorage.getItem('teleconsult.lang')") == "en"
    doctor.screenshot(path=str(tmp_path / "doctor-en.png"))
    print(f"screenshots in {tmp_path}")

    # A reload (the address now without a token) rejoins: the tab kept the token it took
    rooms["patient"].page.reload(wait_until="domcontentloaded")
    _wait_joined(rooms["patient"])


def test_mute_and_leave_reach_the_other_page(
    teleconsult_server: Server,
    open_room: Callable[[str, str], RoomPage],
    tmp_path: Path,
) -> None:
    server = teleconsult_server
    doctor = open_room("doctor", server.links["doctor"])
    patient = open_room("patient", server.links["patient"])
    for room in (doctor, patient):
        _wait_joined(room)
    doctor.page.locator(".tile-remote[data-role=patient]").wait_for(timeout=5_000)

    # The patient mutes the microphone: the doctor's tile of the patient says so.
    patient.page.locator("#mic-button").click()
    assert (
        patient.page.evaluate(
            "() => window.__tc.pcs.publish.getSenders().find((s) => s.track?.kind === 'audio')"
            ".track.enabled"
        )
        is False
    )
    doctor.page.locator(".tile-remote[data-role=patient] .flag-audio").wait_for(timeout=5_000)
    doctor.page.screenshot(path=str(tmp_path / "doctor-patient-muted.png"))

    # The patient leaves: their page says so, and their tile disappears from the doctor's page.
    patient.page.locator("#leave-button").click()
    patient.page.wait_for_function("() => window.__tc.state === 'left'", timeout=5_000)
    assert patient.page.locator("#left-panel").is_visible()
    assert patient.page.evaluate("() => window.__tc.pcs.publish === null")
    patient.page.screenshot(path=str(tmp_path / "patient-left.png"))
    doctor.page.locator(".tile-remote").wait_for(state="detached", timeout=5_000)
    assert [p["role"] for p in doctor.tc()["participants"]] == ["doctor"]


def test_page_rejoins_after_a_connection_drop(
    teleconsult_server: Server,
    open_room: Callable[[str, str], RoomPage],
) -> None:
    server = teleconsult_server
    rooms = {role: open_room(role, server.links[role]) for role in ("doctor", "patient")}
    for room in rooms.values():
        _wait_joined(room)
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S + 1.0
    for room in rooms.values():
        _wait_remote_video(room, deadline)

    # The patient's signaling connection drops; socket.io reconnects and the page joins again.
    # Its media never stopped, so the join resumes with the same peer connections (the server
    # held the session for it: issue 16), and both sides go on seeing each other.
    patient = rooms["patient"].page
    patient.evaluate(
        "() => { window.__old = {...window.__tc.pcs}; window.__resumed = window.__tc.resumes.length;"
        " window.__tc.simulateDrop(); }"
    )
    patient.wait_for_function(
        "() => window.__tc.state === 'joined' && window.__tc.resumes.length > window.__resumed",
        timeout=10_000,
    )
    kept = patient.evaluate(
        "() => window.__tc.pcs.subscribe === window.__old.subscribe"
        " && window.__tc.pcs.publish === window.__old.publish"
        " && window.__tc.pcs.subscribe.connectionState"
    )
    assert kept == "connected", kept
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S + 1.0
    for room in rooms.values():
        sample = _wait_remote_video(room, deadline)
        assert sample["trackState"] == "live", sample
    logs = "\n".join(rooms["patient"].logs)
    assert "reconnecting" in logs, logs
    for room in rooms.values():
        assert [p["role"] for p in room.tc()["participants"]].count("patient") == 1


def test_the_same_link_opened_twice_takes_over(
    teleconsult_server: Server,
    open_room: Callable[[str, str], RoomPage],
) -> None:
    server = teleconsult_server
    first = open_room("doctor", server.links["doctor"])
    _wait_joined(first)
    second = open_room("doctor", server.links["doctor"])
    _wait_joined(second)
    # the older page is told why it was disconnected, in the page's language, and stays down
    first.page.wait_for_function("() => window.__tc.state === 'replaced'", timeout=5_000)
    message = first.page.locator("#left-panel").inner_text()
    assert "其他窗口" in message, message
    assert [p["role"] for p in second.tc()["participants"]] == ["doctor"]
    assert second.tc()["state"] == "joined"
