"""Calls that survive a busy machine and a poor network (R1: visits run as video).

Three calls with real Chromium pages publishing simulcast camera video:
- both cores busy (two busy loops) for a minute: neither side's video freezes for over a second
  and at least 15 frames a second are decoded;
- the patient's downlink squeezed to 300 kbit/s (tbf on a veth between two namespaces) for 20 s,
  then freed: audio keeps flowing, video keeps moving (a lower layer), and within 10 s of the
  lift its frame rate and resolution are back to 90 % of before;
- a call of three where only the patient's downlink is squeezed: the family member beside the
  doctor keeps the top layer whenever the doctor's page sends it (Chrome stops its top layer
  when short of CPU; the server then forwards the best layer sent) and its frame rate (of what
  the doctor's encoder made), the patient keeps the doctor's video moving on the lower one.

They run in the default run. The three-page room was a scenario while the family member, on a
free link, dipped to the lower layer 7 times in 15 s in the suite: the browsers, short of CPU,
stamped arrivals late, and the transport-cc estimator took that for a queue and cut every
subscribe transport of the room at the same moment. Overuse now cuts only when the link confirms
it (media/gcc.py); the patient's picture also froze while the stopped family video was resent
into the squeezed link and came back to overflow it every few seconds (docs/media.md). A squeeze of two subscribers' link, the three-page room, puts
the doctor's video first (signaling's video priority): the family member's video stops for the
patient, the doctor's keeps the lower layer (100 kbit/s: two Opus streams and it leave a
300 kbit/s link room for retransmissions). On a machine already loaded before a test starts
(above BUSY_LOAD_PER_CORE) the allowances double and the test says so; the figures for the
issue's targets come from a quiet machine. Runs of 2026-12-03 (load per core in brackets):
busy minute 19.4/19.7 fps, no freeze (2.6); squeeze: 16.9 fps squeezed, back 2.6 s after the
lift (4.3); three pages: the patient got the doctor at 14.5 and 16.1 fps with no freeze after
the switch-down (3-5), 0.9 fps at load 6+. Runs of 2026-12-04, the three pages beside
test_accessibility_browser.py in a loop and other sessions' work (4.4-7.8 load per core before
each): the family member never left the top layer while the doctor's page sent it, at 13-20
fps; the patient 13-19 fps on the lower layer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Fixtures and their types live in conftest.py; pytest injects them (see test_room_browser.py).
Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

JOIN_TIMEOUT_MS = 30_000  # CI runs about twice as slow as a quiet machine

#: Above this load per core, taken before a test adds its own (busy loops, pages), other work
#: on the machine (the suite's other worker, other sessions) sets the pace of the pages'
#: encoders and decoders, not the server: the test then allows twice the freeze and two thirds
#: of the frame rate, and says so. On a machine to itself the targets hold as they are.
BUSY_LOAD_PER_CORE = 2.0


def _machine_busy() -> bool:
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > BUSY_LOAD_PER_CORE:
        print(f"\nload {load:.1f} per core before the test: the loaded machine's allowances apply")
        return True
    return False


# Every second: the remote video's decoded frames and size, and the remote audio's samples.
SAMPLER_JS = """
() => {
  if (window.__sampler) return;
  window.__samples = [];
  const sample = async () => {
    const pc = window.__tc.pcs.subscribe;
    const video = document.querySelector("video[data-participant-id]");
    const track = video && video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
    const row = { t: performance.now(), wall: Date.now(), frames: null, width: 0, height: 0, audio: null,
                  paused: document.querySelector(".tile-remote")?.dataset.videoPaused ?? null };
    if (pc && track) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video" && s.trackIdentifier === track.id) {
          row.frames = s.framesDecoded || 0;
          row.detail = [s.framesReceived, s.framesDropped, s.packetsLost, s.nackCount,
                        s.pliCount, s.keyFramesDecoded, s.packetsReceived, s.bytesReceived];
          row.width = s.frameWidth || 0;
          row.height = s.frameHeight || 0;
        } else if (s.kind === "audio") {
          row.audio = (row.audio || 0) + (s.totalSamplesReceived || 0);
        }
      });
    }
    // what this page's own camera encoder produced (all layers' frames of the top one)
    const pub = window.__tc.pcs.publish;
    if (pub) {
      const stats = await pub.getStats();
      let sent = 0;
      row.uplink = { bwe: null, layers: [] };
      stats.forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video") {
          sent = Math.max(sent, s.framesEncoded || 0);
          row.uplink.layers.push([s.rid ?? "", s.frameHeight ?? 0, s.qualityLimitationReason,
                                  s.framesEncoded ?? 0]);
        }
        if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate)
          row.uplink.bwe = s.availableOutgoingBitrate;
      });
      row.sent = sent;
    }
    window.__samples.push(row);
  };
  window.__sampler = setInterval(sample, 1000);
}
"""


def _wait_playing(room: RoomPage, timeout_s: float = 20.0) -> None:
    try:
        room.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'joined'", timeout=JOIN_TIMEOUT_MS
        )
        room.page.wait_for_function(
            "() => { const v = document.querySelector('video[data-participant-id]');"
            " return v && v.videoWidth > 0; }",
            timeout=timeout_s * 1000,
        )
    except Exception as exc:
        states = room.page.evaluate(
            "() => Object.fromEntries(Object.entries(window.__tc?.pcs ?? {}).map(([k, pc]) =>"
            " [k, pc && [pc.connectionState, pc.iceConnectionState, pc.iceGatheringState,"
            " (pc.localDescription?.sdp ?? '').split('\\n').filter(l => l.includes('candidate'))]]))"
        )
        pytest.fail(f"{room.role}: no remote video: {exc}\n{states}\n" + "\n".join(room.logs[-30:]))


def _samples(room: RoomPage) -> list[dict[str, Any]]:
    return list(room.page.evaluate("() => window.__samples || []"))


def _freezes(rows: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """(time, frames) of each sample where no new frame came since the sample before (about a
    second earlier): a freeze of more than a second."""
    out = []
    for a, b in itertools.pairwise(rows):
        if a["frames"] is not None and b["frames"] is not None and b["frames"] <= a["frames"]:
            out.append((round(b["t"] / 1000, 1), b["frames"]))
    return out


def _rate(rows: list[dict[str, Any]], key: str) -> float:
    rows = [r for r in rows if r.get(key) is not None]
    if len(rows) < 2:
        return 0.0
    return (rows[-1][key] - rows[0][key]) / ((rows[-1]["t"] - rows[0]["t"]) / 1000)


def _encoded_between(rows: list[dict[str, Any]], start_wall: float, end_wall: float) -> int:
    """Frames the page of ``rows`` encoded between two wall-clock times (ms)."""
    before = [r["sent"] for r in rows if r.get("sent") is not None and r["wall"] <= start_wall]
    after = [r["sent"] for r in rows if r.get("sent") is not None and r["wall"] >= end_wall]
    if not before or not after:
        return 0
    return int(after[0] - before[-1])


#: The page's simulcast layers, lowest first (web/static/media-session.js).
RIDS = ("q", "h", "f")


def _top_frames(
    rows: list[dict[str, Any]], start_wall: float, end_wall: float
) -> list[tuple[float, int]]:
    """(wall time, frames encoded) of the top simulcast layer of the page of ``rows``
    (SAMPLER_JS), from the last second before ``start_wall`` to ``end_wall`` (ms)."""

    def top(row: dict[str, Any]) -> int | None:
        layers = [
            layer for layer in (row.get("uplink") or {}).get("layers", []) if layer[0] in RIDS
        ]
        if not layers:
            return None
        return int(max(layers, key=lambda layer: RIDS.index(layer[0]))[3])

    return [
        (row["wall"], count)
        for row in rows
        if start_wall - 1000 <= row["wall"] <= end_wall and (count := top(row)) is not None
    ]


def _top_layer_sent(rows: list[dict[str, Any]], start_wall: float, end_wall: float) -> bool:
    """Whether the page of ``rows`` encoded frames of its top simulcast layer in every second
    between two wall-clock times (ms). Chrome stops its top layer when its CPU is short; the
    server then forwards the best layer still sent (docs/media.md)."""
    frames = _top_frames(rows, start_wall, end_wall)
    return len(frames) >= 2 and all(b[1] > a[1] for a, b in itertools.pairwise(frames))


def _top_layer_fps(rows: list[dict[str, Any]], start_wall: float, end_wall: float) -> float:
    """Frames a second the page of ``rows`` encoded on its top layer between two wall times
    (Chrome short of CPU drops frames of its top layer alone: the lower ones' rate is more)."""
    frames = _top_frames(rows, start_wall, end_wall)
    if len(frames) < 2 or frames[-1][0] <= frames[0][0]:
        return 0.0
    return (frames[-1][1] - frames[0][1]) / ((frames[-1][0] - frames[0][0]) / 1000)


def _freeze_context(rows: list[dict[str, Any]], log: str) -> str:
    """What a failure should say: the receiver's inbound video figures (frames received, dropped,
    packets lost, NACKs, PLIs, keyframes decoded, packets, bytes) from two samples before the first
    freeze on, and the server's media lines (layers, pauses, keyframes, estimates)."""
    first = next(
        (i for i, (a, b) in enumerate(itertools.pairwise(rows)) if b["frames"] == a["frames"]), 0
    )
    detail = [
        (round(r["t"] / 1000, 1), r["frames"], r.get("detail"), r.get("paused"))
        for r in rows[max(0, first - 2) : first + 8]
    ]
    media = [
        line
        for line in log.splitlines()
        if any(
            word in line for word in ("layer", "paused", "resumed", "keyframe", "estimate", "WARN")
        )
    ]
    return f"inbound video around the freeze: {detail}\nserver media log (last 40): {media[-40:]}"


def _fps(rows: list[dict[str, Any]]) -> float:
    rows = [r for r in rows if r["frames"] is not None]
    if len(rows) < 2:
        return 0.0
    return (rows[-1]["frames"] - rows[0]["frames"]) / ((rows[-1]["t"] - rows[0]["t"]) / 1000)


@contextlib.contextmanager
def busy_loops(count: int = 2) -> Iterator[None]:
    """``count`` busy loops at normal priority (both cores busy); stopped by their pids."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_r1_a_minute_on_a_busy_machine_never_freezes(
    teleconsult_server: Server, open_room: Callable[[str, str], RoomPage]
) -> None:
    server = teleconsult_server
    busy = _machine_busy()
    with busy_loops(2):
        rooms = [open_room(role, server.links[role]) for role in ("doctor", "patient")]
        for room in rooms:
            _wait_playing(room)
        for room in rooms:
            room.page.evaluate(SAMPLER_JS)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            rooms[0].page.wait_for_timeout(1000)  # the call runs; the pages sample themselves
        results = {room.role: _samples(room) for room in rooms}
    report = {
        role: {
            "fps": round(_fps(rows), 1),
            "freezes": _freezes(rows),
            "sizes": sorted({(r["width"], r["height"]) for r in rows}),
            "samples": len(rows),
        }
        for role, rows in results.items()
    }
    # a receiver's freeze the sender's encoder explains (it produced nothing then either: the
    # whole browser was starved, which the server cannot help) is told apart from one where
    # frames were encoded and not delivered
    other = {"doctor": "patient", "patient": "doctor"}
    for role, rows in results.items():
        sender = results[other[role]]
        report[role]["sender_fps"] = round(_rate(sender, "sent"), 1)
        report[role]["undelivered_freezes"] = [
            (round(a["t"] / 1000, 1), encoded)
            for a, b in itertools.pairwise(rows)
            if a["frames"] is not None
            and b["frames"] is not None
            and b["frames"] <= a["frames"]
            and (encoded := _encoded_between(sender, a["wall"], b["wall"])) >= 5
        ]
    print(f"\nbusy machine, 60 s: {report}")
    log = server.stdout_path.read_text(errors="replace") + server.stderr_path.read_text(
        errors="replace"
    )
    for role, figures in report.items():
        assert figures["samples"] >= 50, report
        # no freeze over a second (two on a loaded machine: no two freezes in a row) while the
        # other side's encoder was producing frames
        freezes = figures["undelivered_freezes"]
        if busy:
            times = [t for t, _ in freezes]
            freezes = [(a, b) for a, b in itertools.pairwise(times) if b - a < 1.5]
        assert freezes == [], f"{role} froze: {report}\n{_freeze_context(results[role], log)}"
        # what was encoded was delivered: at least 15 fps, or 90 % of what the starved sender made
        floor = min(15, 0.9 * figures["sender_fps"]) * (2 / 3 if busy else 1)
        assert figures["fps"] >= floor, f"{role}: {report}"
    if not busy:
        assert "video paused for a congested subscriber" not in log


# --- a constrained downlink -------------------------------------------------------------------


def _window(rows: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in rows if start <= r["t"] <= end]


def _tc(*argv: str) -> None:
    subprocess.run([shutil.which("ip") or "ip", *argv], check=True, capture_output=True)


def test_r1_a_squeezed_downlink_lowers_the_picture_and_recovers(
    two_namespaces: Any, veth_server: Server, open_room_in: Callable[[str, str, str], RoomPage]
) -> None:
    server_ns, patient_ns, link = (
        two_namespaces.server,
        two_namespaces.client,
        two_namespaces.device,
    )
    served = veth_server
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    busy = _machine_busy()
    doctor = open_room_in(server_ns, "doctor", served.links["doctor"])
    patient = open_room_in(patient_ns, "patient", served.links["patient"])
    for room in (doctor, patient):
        _wait_playing(room)
    patient.page.evaluate(SAMPLER_JS)
    doctor.page.evaluate(SAMPLER_JS)  # for what the doctor's encoder produced
    now_js = "() => performance.now()"
    # the unconstrained call reaches the camera's full size (the top layer) ...
    try:
        patient.page.wait_for_function(
            "() => document.querySelector('video[data-participant-id]').videoWidth >= 640",
            timeout=20_000,
        )
    except Exception:
        pytest.fail(
            f"the top layer never reached the patient: {_samples(patient)[-3:]}"
            f" doctor's uplink: {[r.get('uplink') for r in _samples(doctor)[-3:]]}"
        )
    # ... and 6 s of it are the reference
    before_from = patient.page.evaluate(now_js)
    patient.page.wait_for_timeout(6000)
    squeeze_at = patient.page.evaluate(now_js)
    before = _window(_samples(patient), before_from, squeeze_at)
    ref_fps = _fps(before)
    ref_pixels = max(r["width"] * r["height"] for r in before)
    # the server's side of the patient's link carries at most 300 kbit/s
    _tc("netns", "exec", server_ns, "tc", "qdisc", "add", "dev", link, "root",
        "tbf", "rate", "300kbit", "burst", "16kb", "latency", "200ms")  # fmt: skip
    patient.page.wait_for_timeout(20_000)
    _tc("netns", "exec", server_ns, "tc", "qdisc", "del", "dev", link, "root")
    lift_at = patient.page.evaluate(now_js)

    def recovered(after: list[dict[str, Any]], i: int) -> bool:
        window = after[i : i + 4]
        return (
            len(window) == 4
            and _fps(window) >= 0.9 * ref_fps
            and min(r["width"] * r["height"] for r in window) >= 0.9 * ref_pixels
        )

    # sampled until back (at most 15 s: the target is 10 s, the rest says by how much it missed;
    # 22 s on a loaded machine)
    while True:
        patient.page.wait_for_timeout(1000)
        rows = _samples(patient)
        after = [r for r in rows if r["t"] >= lift_at]
        back = next(
            (after[i]["t"] - lift_at for i in range(len(after)) if recovered(after, i)), None
        )
        if back is not None or rows[-1]["t"] - lift_at >= (22_000 if busy else 15_000):
            break
    sender = _samples(doctor)
    during = _window(rows, squeeze_at, lift_at)
    report = {
        "fps_before": round(ref_fps, 1),
        "size_before": sorted({(r["width"], r["height"]) for r in before}),
        "fps_squeezed": round(_fps(during), 1),
        "sizes_squeezed": sorted({(r["width"], r["height"]) for r in during}),
        "freezes_squeezed": _freezes(during),
        "back_after_ms": back,
        "fps_after": round(_fps(after[-6:]), 1),
        "size_after": sorted({(r["width"], r["height"]) for r in after[-6:]}),
    }
    print(f"\n300 kbit/s downlink for 20 s: {report}")
    log = served.stdout_path.read_text(errors="replace") + served.stderr_path.read_text(
        errors="replace"
    )
    for line in log.splitlines():
        if "transport-cc" in line or ": layer " in line or "video paused" in line:
            print(line[:200])
    for r in rows:
        print(round(r["t"] / 1000, 1), r["frames"], r["width"], r.get("detail"))
    # audio never stopped: samples grew every second of the squeeze
    audio = [r["audio"] for r in during if r["audio"] is not None]
    assert len(audio) >= 15 and all(b > a for a, b in itertools.pairwise(audio)), audio
    # video kept moving: no two seconds without a new frame while the doctor's encoder made some
    stalls = [
        (round(a["t"] / 1000, 1), encoded)
        for a, b in zip(during, during[2:], strict=False)
        if a["frames"] is not None
        and b["frames"] is not None
        and b["frames"] <= a["frames"]
        and (encoded := _encoded_between(sender, a["wall"], b["wall"])) >= 10
    ]
    report["undelivered_stalls"] = stalls
    print(f"undelivered 2 s stalls while squeezed: {stalls}")
    if busy:  # two 2 s stalls in a row: a stall over 3 s
        times = [t for t, _ in stalls]
        stalls = [(a, b) for a, b in itertools.pairwise(times) if b - a < 1.5]
    assert not stalls, f"video froze for over 2 s: {report}"
    assert back is not None and back <= (20_000 if busy else 10_000), f"not back in time: {report}"


# --- three pages: one constrained subscriber among two ----------------------------------------

# Every second: per remote tile (by its role), the frames decoded of the track it shows and its size.
TILE_SAMPLER_JS = """
() => {
  if (window.__tileSampler) return;
  window.__tileSamples = [];
  window.__tileSampler = setInterval(async () => {
    const pc = window.__tc && window.__tc.pcs.subscribe;
    if (!pc) return;
    const inbound = new Map();
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound.set(s.trackIdentifier, s);
    });
    const row = { t: performance.now(), wall: Date.now(), tiles: {} };
    document.querySelectorAll("video[data-participant-id]").forEach((video) => {
      const track = video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
      const s = track ? inbound.get(track.id) : null;
      if (s) row.tiles[video.dataset.role] = [s.framesDecoded || 0, s.frameWidth || 0, s.frameHeight || 0,
        [s.framesReceived, s.packetsLost, s.nackCount, s.pliCount, s.keyFramesDecoded, s.bytesReceived]];
    });
    window.__tileSamples.push(row);
  }, 1000);
}
"""


def _tile_rows(room: RoomPage, role: str, start: float, end: float) -> list[dict[str, Any]]:
    """``role``'s tile as ``_samples`` rows (t, frames, width, height) between two page times."""
    rows = room.page.evaluate("() => window.__tileSamples || []")
    return [
        {
            "t": r["t"],
            "wall": r["wall"],
            "frames": tile[0],
            "width": tile[1],
            "height": tile[2],
            "detail": tile[3],
        }
        for r in rows
        if start <= r["t"] <= end and (tile := r["tiles"].get(role)) is not None
    ]


@pytest.mark.parametrize("demo_args", [("--companion",)])
def test_r1_a_constrained_subscriber_leaves_the_top_layer_to_the_other(
    two_namespaces: Any, veth_server: Server, open_room_in: Callable[..., RoomPage]
) -> None:
    """A call of three (the doctor, the patient, a family member beside the patient): the doctor
    publishes simulcast; the family member's page is on the server's side of the link, the
    patient's behind a veth squeezed to 300 kbit/s for 20 s. The patient keeps the doctor's
    video on the lower layer (the doctor's video comes first on a poor link, the family member's
    stops) and it keeps moving; the family member keeps the doctor's top layer at its frame rate."""
    server_ns, patient_ns, link = (
        two_namespaces.server,
        two_namespaces.client,
        two_namespaces.device,
    )
    served = veth_server
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    busy = _machine_busy()
    assert set(served.links) == {"doctor", "patient", "companion"}
    doctor = open_room_in(server_ns, "doctor", served.links["doctor"])
    companion = open_room_in(server_ns, "companion", served.links["companion"])
    patient = open_room_in(patient_ns, "patient", served.links["patient"])
    top = (
        "() => { const v = document.querySelector('video[data-participant-id][data-role=doctor]');"
        " return v && v.videoWidth >= 640; }"
    )
    for room in (doctor, companion, patient):
        room.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'joined'",
            # a lagging server refuses new participants (server_busy) and the page retries
            # after 3.5, 5, 9, 12 s: the third page on a loaded machine took over 30 s
            timeout=JOIN_TIMEOUT_MS * (2 if busy else 1),
        )
    doctor.page.evaluate(SAMPLER_JS)  # what the doctor's encoder made, per layer
    for room in (companion, patient):
        try:
            room.page.wait_for_function(top, timeout=45_000 if busy else 30_000)
        except Exception:
            pytest.fail(
                f"{room.role} never got the doctor's top layer:\n" + "\n".join(room.logs[-20:])
            )
        room.page.evaluate(TILE_SAMPLER_JS)
    now_js = "() => performance.now()"
    begin = {room.role: room.page.evaluate(now_js) for room in (companion, patient)}
    patient.page.wait_for_timeout(6000)
    squeeze = {room.role: room.page.evaluate(now_js) for room in (companion, patient)}
    _tc("netns", "exec", server_ns, "tc", "qdisc", "add", "dev", link, "root",
        "tbf", "rate", "300kbit", "burst", "16kb", "latency", "200ms")  # fmt: skip
    try:
        patient.page.wait_for_timeout(20_000)
    finally:
        _tc("netns", "exec", server_ns, "tc", "qdisc", "del", "dev", link, "root")
    lift = {room.role: room.page.evaluate(now_js) for room in (companion, patient)}
    # the doctor's sampler has a row past the lift: every second judged has its encoder's count
    doctor.page.wait_for_function(
        "(w) => (window.__samples || []).some((r) => r.wall >= w)",
        arg=doctor.page.evaluate("() => Date.now()"),
        timeout=10_000,
    )
    report: dict[str, Any] = {}
    sender = _samples(doctor)
    for room in (companion, patient):
        before = _tile_rows(room, "doctor", begin[room.role], squeeze[room.role])
        # the squeeze's first 5 s are the switch down: judged from then on
        during = _tile_rows(room, "doctor", squeeze[room.role] + 5000, lift[room.role])
        encoded = {
            name: _encoded_between(sender, rows[0]["wall"], rows[-1]["wall"])
            / max((rows[-1]["wall"] - rows[0]["wall"]) / 1000, 1)
            for name, rows in (("before", before), ("during", during))
            if rows
        }
        top_fps = _top_layer_fps(sender, during[0]["wall"], during[-1]["wall"]) if during else 0
        report[room.role] = {
            "sender_fps": {name: round(fps, 1) for name, fps in encoded.items()},
            "sender_top_fps": round(top_fps, 1),
            # samples on the lower layer though the doctor's page sent the top one all through
            # the 3 s before (it takes the server 1.5 s to see a layer stop, and a keyframe)
            "lower_while_top_sent": [
                round(r["t"] / 1000, 1)
                for r in during
                if r["width"] < 640 and _top_layer_sent(sender, r["wall"] - 3000, r["wall"])
            ],
            # freezes while the doctor's encoder made frames (5 in that second; a starved
            # encoder's pause the server cannot help)
            "undelivered_freezes": [
                round(b["t"] / 1000, 1)
                for a, b in itertools.pairwise(during)
                if b["frames"] <= a["frames"]
                and _encoded_between(sender, a["wall"], b["wall"]) >= 5
            ],
            "fps_before": round(_fps(before), 1),
            "fps_squeezed": round(_fps(during), 1),
            "sizes_squeezed": sorted({(r["width"], r["height"]) for r in during}),
            "freezes_squeezed": _freezes(during),
            "lower_at": [round(r["t"] / 1000, 1) for r in during if r["width"] < 640],
        }
    print(f"\nthree pages, the patient's downlink at 300 kbit/s: {report}")
    for room in (companion, patient):
        for row in _tile_rows(room, "doctor", squeeze[room.role] - 2000, lift[room.role]):
            print(f"{room.role} <- doctor", round(row["t"] / 1000, 1), row["frames"], row["detail"])
    log = served.stdout_path.read_text(errors="replace") + served.stderr_path.read_text(
        errors="replace"
    )
    for line in log.splitlines():
        if "transport-cc" in line or ": layer " in line or "video paused" in line:
            print(line[:200])
    family, squeezed = report["companion"], report["patient"]
    # the family member kept the top layer whenever the doctor's page sent it (a starved
    # browser's late arrival stamps used to cut its estimate: media/gcc.py), and its frame rate
    # (of the frames the doctor's encoder made on its top layer) the whole time. On a loaded machine,
    # two seconds: past ~6 load per core its own page reads its socket 300-400 ms late for
    # seconds on end, which no sender can tell from a queue in the network
    if busy:
        assert len(family["lower_while_top_sent"]) <= 2, report
    else:
        assert family["sizes_squeezed"] == [(640, 480)], report
    floor = min(family["fps_before"], family["sender_top_fps"] or 1e9)
    assert family["fps_squeezed"] >= 0.8 * floor, report
    assert family["undelivered_freezes"] == [], report
    # the patient was moved to the lower layer and its picture kept moving
    assert (320, 240) in squeezed["sizes_squeezed"], report
    assert squeezed["fps_squeezed"] >= (5 if busy else 10), report
    assert len(squeezed["freezes_squeezed"]) <= (2 if busy else 0), report
