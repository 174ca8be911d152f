"""A two-page Chromium call over two network providers, cut one and then the other (R28, R31;
issue 16's acceptance, in the default run).

`teleconsult serve` runs in the server namespace of tests/provider_rig.py with an address on
each provider; both pages run in the client namespace. Each page publishes on a connection per
provider (the hot standby, docs/providers.md); each subscribe connection has a path per
provider that the server's path monitor watches. Provider A is blackholed in the router, then
restored, then B (media fails back onto A): on both pages video frames decoded and audio packets
received (the subscribe connection's inbound statistics) must resume within issue 16's targets
(video 1.5 s, audio 0.6 s, the maxima) without any page rebuilding its connections.

Then the doctor's page is served through A and A is cut again: its signaling moves to B's URL
(issue 16 item 3) and joins as the same participant, carrying on with its media (the same
peer connections, media within the same targets on both pages meanwhile); the chat sent
meanwhile arrives once.
"""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from failover_trace import TRACE_JS, breakdown, server_switches, summarize
from provider_rig import ProviderRig, provider_rig

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

FRAMES_JS = """
async () => {
  const pc = window.__tc && window.__tc.pcs.subscribe;
  let frames = 0;
  if (pc) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
  }
  return frames;
}
"""

#: Starts sampling, in the page, the subscribe connection's inbound statistics every 30 ms:
#: video frames decoded and audio packets received, with the page's clock (seconds). In the page
#: so that a busy test process's round trips do not stretch what is measured.
SAMPLER_JS = """
() => {
  clearInterval(window.__inboundTimer);
  window.__inbound = [];
  const pc = window.__tc.pcs.subscribe;
  window.__inboundTimer = setInterval(async () => {
    const got = { video: 0, audio: 0 };
    (await pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") got.video += s.framesDecoded || 0;
      else got.audio += s.packetsReceived || 0;
    });
    const self = window.__tc.quality.self;
    window.__inbound.push([performance.now() / 1000, got.video, got.audio, self && self.level]);
  }, 30);
  return performance.now() / 1000;
}
"""

#: Stops sampling; returns the samples.
SAMPLES_JS = "() => { clearInterval(window.__inboundTimer); return window.__inbound; }"


@pytest.fixture
def rig(browser_prerequisites: None) -> Iterator[ProviderRig]:
    # "m" carries signaling only (no ICE address there): the pages' socket stays up, so what is
    # measured first is the media's failover alone (then the doctor's page moves onto A)
    with provider_rig(("a", "b", "m")) as made:
        yield made


@pytest.fixture
def server_toml(rig: ProviderRig) -> str:
    """Each provider with its signaling URL (the page reconnects through another one)."""
    return "".join(
        f'[[providers]]\nname = "{name}"\naddress = "{address}"\n'
        f'signaling_url = "http://{address}:{{port}}"\n\n'
        for name, address in rig.server_addresses.items()
    )


@pytest.fixture
def netns(rig: ProviderRig) -> str:
    """The server's namespace is the rig's (overrides conftest's fresh one)."""
    return rig.server_ns


@pytest.fixture
def server_listen(rig: ProviderRig) -> tuple[str, list[str]]:
    return "0.0.0.0", [rig.server_addresses["a"], rig.server_addresses["b"]]


#: Issue 16's targets (one cut): media in both directions back within these (seconds).
VIDEO_MAX_S = 1.5
AUDIO_MAX_S = 0.6
#: Above this load per core the machine, not the failover, sets the pace (two Chromium pages
#: decoding each other on a shared 2-core machine): the default run then allows twice the target,
#: and says so; the scenario's figures for the note come from a quiet machine.
BUSY_LOAD_PER_CORE = 2.0


def _limit(kind: str) -> float:
    """The longest stall a cut may cause for ``kind`` on this machine now."""
    target = VIDEO_MAX_S if kind == "video" else AUDIO_MAX_S
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > BUSY_LOAD_PER_CORE:
        print(f"load {load:.1f} per core: a stall up to {2 * target:.1f} s passes for {kind}")
        return 2 * target
    return target


#: How long both pages are watched after a cut (media must have been back for a while).
WINDOW_S = 4.0


def _longest_stall(points: list[tuple[float, int]]) -> float:
    """The longest time between two changes of a counter (or to the end)."""
    longest, changed_at, last = 0.0, None, None
    for t, count in points:
        if count != last:
            if changed_at is not None:
                longest = max(longest, t - changed_at)
            changed_at, last = t, count
    if changed_at is not None and points:
        longest = max(longest, points[-1][0] - changed_at)
    return longest


def _frames(room: RoomPage) -> int:
    return int(room.page.evaluate(FRAMES_JS))


def _both_lanes_heard(rooms: tuple[RoomPage, ...], timeout_s: float) -> None:
    """Wait until each page hears the server on both of its publish connections (a change of
    the counts after a first non-zero read: a connection just built reads 0 once, which is no
    answer of the server's)."""
    deadline = time.monotonic() + timeout_s
    for room in rooms:
        while True:
            lanes = room.page.evaluate("() => window.__tc.lanes()")
            heard = lanes and lanes["heard"] == [True, True] and max(lanes["heardMsAgo"]) < 300
            if heard:
                break
            assert time.monotonic() < deadline, (room.role, lanes)
            room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline


def _origin(url: str) -> str:
    return "/".join(url.split("/")[:3])


def test_a_chromium_call_survives_provider_cuts_and_its_signaling_moves_R28_R31(
    rig: ProviderRig, teleconsult_server: Server, open_room_in: Any
) -> None:
    on = {
        name: {
            role: url.replace("127.0.0.1", address)
            for role, url in teleconsult_server.links.items()
        }
        for name, address in rig.server_addresses.items()
    }
    # both pages signal through M (which stays up) while the media's providers are cut; the
    # doctor's page is later served through A, whose cut then moves its signaling
    doctor = open_room_in(
        rig.client_ns, "doctor", on["m"]["doctor"], also_secure=(_origin(on["a"]["doctor"]),)
    )
    patient = open_room_in(rig.client_ns, "patient", on["m"]["patient"])
    rooms = (doctor, patient)
    _video_on(rooms, 30, 40)
    _both_lanes_heard(rooms, 10)

    # 1. media: cut A, restore it, cut B (fails back onto A), restore it
    measured = []
    for provider in ("a", "b"):
        for room in rooms:
            room.page.evaluate(SAMPLER_JS)
        doctor.page.wait_for_timeout(300)  # samples from before the cut
        rig.cut(provider)
        doctor.page.wait_for_timeout(WINDOW_S * 1000)  # the window the pages sample
        samples = {room.role: room.page.evaluate(SAMPLES_JS) for room in rooms}
        stalls = {
            (role, kind): round(_longest_stall([(p[0], p[column]) for p in points]), 2)
            for role, points in samples.items()
            for kind, column in (("video", 1), ("audio", 2))
        }
        # each page's camera is on the other provider's connection now, and the page's own
        # signal (call-quality.js) is read from that connection, not the cut one: "good" or
        # "poor" over the last 1.5 s, never "lost"
        carried = {
            room.role: room.page.evaluate("() => window.__tc.lanes().active") for room in rooms
        }
        read_from = {
            room.role: room.page.evaluate("() => window.__tc.lanes().measured") for room in rooms
        }
        levels = {
            role: sorted({str(p[3]) for p in points if p[0] > points[-1][0] - 1.5})
            for role, points in samples.items()
        }
        print(f"provider {provider} cut: own signal over the last 1.5 s:", levels)
        measured.append((provider, stalls, carried))
        assert read_from == carried, (provider, read_from, carried)
        assert all("lost" not in seen for seen in levels.values()), (provider, levels)
        print(f"provider {provider} cut: longest stall per page and kind (s):", stalls)
        rig.restore(provider)
        _both_lanes_heard(rooms, 15)  # the cut provider's connections answer again
    lanes = {room.role: room.page.evaluate("() => window.__tc.lanes()") for room in rooms}
    for provider, stalls, carried in measured:
        for (role, kind), stall in stalls.items():
            assert stall <= _limit(kind), (provider, role, kind, stalls, lanes)
        assert set(carried.values()) == {1 if provider == "a" else 0}, (provider, carried, lanes)
    for room in rooms:  # no page rebuilt its connections: the standby carried the call
        assert room.page.evaluate("() => window.__tc.mediaRestarts.length") == 0, room.role

    # 2. signaling: the doctor's page through A; A cut: it resumes through B's URL with its
    # media carried on (no new connections), and the media keeps flowing meanwhile
    doctor.page.goto(on["a"]["doctor"], wait_until="commit")
    doctor.page.wait_for_function("() => window.__tc && window.__tc.state === 'joined'")
    _video_on((doctor,), 30, 30)
    _both_lanes_heard(rooms, 15)
    before = doctor.page.evaluate("() => window.__tc.self")
    patient.page.fill("#chat-input", "before the cut")
    patient.page.click("#chat-send")
    doctor.page.wait_for_function("() => window.__chat.lastSeq >= 1", timeout=10_000)
    seen = doctor.page.evaluate("() => window.__chat.lastSeq")
    doctor.page.evaluate("() => { window.__pcs = { ...window.__tc.pcs }; }")
    for room in rooms:
        room.page.evaluate(SAMPLER_JS)
    doctor.page.wait_for_timeout(300)  # samples from before the cut

    cut_at = time.monotonic()
    rig.cut("a")
    patient.page.fill("#chat-input", "during the gap")
    patient.page.click("#chat-send")
    doctor.page.wait_for_function(
        "() => window.__tc.signaling().failovers.length > 0 && window.__tc.resumes.length > 0"
        " && window.__tc.state === 'joined'",
        timeout=20_000,
    )
    resumed_s = time.monotonic() - cut_at
    doctor.page.wait_for_timeout(1000)  # the media after the resume is sampled too
    samples = {room.role: room.page.evaluate(SAMPLES_JS) for room in rooms}
    stalls = {
        (role, kind): round(_longest_stall([(p[0], p[column]) for p in points]), 2)
        for role, points in samples.items()
        for kind, column in (("video", 1), ("audio", 2))
    }
    print(
        f"signaling through A cut: the doctor's page resumed through B after {resumed_s:.1f} s;"
        " longest stall per page and kind (s):",
        stalls,
    )
    signaling = doctor.page.evaluate("() => window.__tc.signaling()")
    failover = signaling["failovers"][0]
    assert (failover["from"], failover["to"]) == (
        _origin(on["a"]["doctor"]),
        _origin(on["b"]["doctor"]),
    )
    assert failover["reason"] == "silent" and signaling["url"] == failover["to"]
    after = doctor.page.evaluate("() => window.__tc.self")
    assert (after["id"], after["role"]) == (before["id"], before["role"])  # the same participant
    # the media was carried on: the same connections, none rebuilt, within the media targets
    kept = doctor.page.evaluate(
        "() => window.__tc.mediaRestarts.length === 0 && ['publish', 'standby', 'subscribe']"
        ".every((k) => window.__tc.pcs[k] === window.__pcs[k])"
    )
    assert kept, doctor.page.evaluate("() => window.__tc.mediaRestarts")
    for (role, kind), stall in stalls.items():
        assert stall <= _limit(kind), (role, kind, stalls)
    doctor.page.wait_for_function(f"() => window.__chat.lastSeq >= {seen + 1}", timeout=10_000)
    received = doctor.page.evaluate("() => [...window.__chat.received]")
    assert received.count(seen + 1) == 1, received  # the message of the gap once
    roster = patient.page.evaluate("() => window.__tc.participants.map((p) => p.id)")
    assert roster.count(before["id"]) == 1, roster
    rig.restore("a")


#: The UDP ports of one of the page's connections (its host candidates): a cut of them alone
#: takes one direction of the call's media off a provider.
PORTS_JS = """
async (name) => {
  const pc = window.__tc.pcs[name];
  const ports = new Set();
  if (pc) {
    (await pc.getStats()).forEach((s) => {
      const host = s.type === "local-candidate" && s.candidateType === "host";
      if (host && s.protocol === "udp" && s.port) ports.add(s.port);
    });
  }
  return [...ports];
}
"""

#: The server address the page's subscribe connection receives the most from (the path the
#: server sends on now; its audio copies on the other one are small beside the video).
RECEIVING_FROM_JS = """
async () => {
  const pc = window.__tc.pcs.subscribe;
  const read = async () => {
    const bytes = {};
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== "candidate-pair") return;
      const remote = stats.get(s.remoteCandidateId);
      if (remote) bytes[remote.address] = (bytes[remote.address] || 0) + (s.bytesReceived || 0);
    });
    return bytes;
  };
  const before = await read();
  await new Promise((resolve) => setTimeout(resolve, 600));
  let best = null;
  let most = -1;
  for (const [address, n] of Object.entries(await read())) {
    if (n - (before[address] || 0) > most) [best, most] = [address, n - (before[address] || 0)];
  }
  return best;
}
"""


def _cut_all(rig: ProviderRig, cuts: dict[str, tuple[int, ...]]) -> None:
    for provider, ports in cuts.items():
        rig.cut(provider, ports)


def _stalls_after(
    rooms: tuple[RoomPage, ...], cut: Callable[[], None], server_log: Path | None = None
) -> tuple[dict[tuple[str, str], float], dict[str, dict[str, float | None]]]:
    """Each page's longest stall per kind in the window after ``cut()``, and where each page's
    video stall went (failover_trace.breakdown, by the receiving page's role)."""
    for room in rooms:
        room.page.evaluate(TRACE_JS)
    rooms[0].page.wait_for_timeout(300)  # samples from before the cut
    cut_at = time.time()
    cut()
    rooms[0].page.wait_for_timeout(WINDOW_S * 1000)  # the window the pages sample
    samples = {room.role: room.page.evaluate(SAMPLES_JS) for room in rooms}
    stalls = {
        (role, kind): _longest_stall([(p[0], p[column]) for p in points])
        for role, points in samples.items()
        for kind, column in (("video", 1), ("audio", 2))
    }
    switches = [] if server_log is None else server_switches(server_log, cut_at)
    parts = {
        room.role: breakdown(
            samples[room.role],
            next(samples[other.role] for other in rooms if other is not room),
            cut_at,
            switches,
        )
        for room in rooms
    }
    return stalls, parts


@pytest.mark.scenario
@pytest.mark.timeout(900)
def test_gap_per_direction_over_ten_cuts_R28_R31(
    rig: ProviderRig, teleconsult_server: Server, open_room_in: Any
) -> None:
    """Issue 16's figures for Chromium, each direction apart: ten cuts of the path the server
    sends to both pages on (their subscribe connections' ports on that provider alone: server
    to page), ten of the connections their cameras are on (page to server), ten of the whole
    provider; p50 and max of each page's longest stall per kind."""
    rooms = _call_on_the_rig(rig, teleconsult_server, open_room_in)
    doctor = rooms[0]
    provider_at = {address: name for name, address in rig.server_addresses.items()}
    lanes = ("a", "b")  # a page's publish connection on path p is on the p-th provider

    def receive_side() -> dict[str, list[int]]:
        cuts: dict[str, list[int]] = {}
        for room in rooms:
            provider = provider_at[room.page.evaluate(RECEIVING_FROM_JS)]
            cuts.setdefault(provider, []).extend(room.page.evaluate(PORTS_JS, "subscribe"))
        return cuts

    def send_side() -> dict[str, list[int]]:
        cuts: dict[str, list[int]] = {}
        for room in rooms:
            active = room.page.evaluate("() => window.__tc.lanes().active")
            name = "publish" if active == 0 else "standby"
            cuts.setdefault(lanes[active], []).extend(room.page.evaluate(PORTS_JS, name))
        return cuts

    def whole() -> dict[str, list[int]]:
        active = doctor.page.evaluate("() => window.__tc.lanes().active")
        return {lanes[active]: []}

    gaps: dict[tuple[str, str], list[float]] = {}
    traced: dict[str, list[dict[str, float | None]]] = {}
    for _ in range(10):
        for direction, targets in (
            ("server to page", receive_side),
            ("page to server", send_side),
            ("both", whole),
        ):
            cuts = targets()
            load = os.getloadavg()[0]
            stalls, parts = _stalls_after(
                rooms,
                functools.partial(_cut_all, rig, {p: tuple(v) for p, v in cuts.items()}),
                teleconsult_server.stderr_path,
            )
            for role, part in parts.items():
                traced.setdefault(direction, []).append(part)
                print(f"  {direction}, {role} receiving (load {load:.1f}):", part)
            for provider in cuts:
                rig.restore(provider)
            for (_role, kind), stall in stalls.items():
                gaps.setdefault((direction, kind), []).append(stall)
            print(
                f"{direction} ({cuts}):",
                {f"{r} {k}": round(v, 2) for (r, k), v in stalls.items()},
            )
            _both_lanes_heard(rooms, 15)
    summary = {
        f"{direction} {kind}": (round(statistics.median(v) * 1000), round(max(v) * 1000))
        for (direction, kind), v in gaps.items()
    }
    print("longest stall per page, p50/max over 10 cuts each (ms):", summary)
    for direction, rows in traced.items():
        print(f"video stall parts, {direction}, ms after the cut, p50/max/n:", summarize(rows))
    for room in rooms:  # no page rebuilt its connections
        restarts = room.page.evaluate("() => window.__tc.mediaRestarts")
        assert restarts == [], (room.role, restarts, room.logs[-40:])
    for (direction, kind), values in gaps.items():
        limit = VIDEO_MAX_S if kind == "video" else AUDIO_MAX_S
        assert max(values) <= limit, (direction, kind, summary)


def _call_on_the_rig(
    rig: ProviderRig, server: Server, open_room_in: Any
) -> tuple[RoomPage, RoomPage]:
    """The doctor's and the patient's pages in the rig's client namespace, through the server's
    address on the management network, video on both sides and both publish lanes heard."""
    pages = {
        role: url.replace("127.0.0.1", rig.server_addresses["m"])
        for role, url in server.links.items()
    }
    rooms = (
        open_room_in(rig.client_ns, "doctor", pages["doctor"]),
        open_room_in(rig.client_ns, "patient", pages["patient"]),
    )
    _video_on(rooms, 30, 40)
    _both_lanes_heard(rooms, 10)
    return rooms


def _video_on(rooms: tuple[RoomPage, ...], frames: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for room in rooms:
        while _frames(room) < frames:
            assert time.monotonic() < deadline, f"no video on the {room.role} page"
            room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline


#: Starts sampling, in the page, each second: [wall s, video frames decoded, audio packets
#: received] of its subscribe connection (a long cut is judged second by second).
PER_SECOND_JS = """
() => {
  clearInterval(window.__perSecondTimer);
  window.__perSecond = [];
  window.__perSecondTimer = setInterval(async () => {
    const got = { video: 0, audio: 0 };
    (await window.__tc.pcs.subscribe.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") got.video += s.framesDecoded || 0;
      else got.audio += s.packetsReceived || 0;
    });
    window.__perSecond.push([Date.now() / 1000, got.video, got.audio]);
  }, 1000);
}
"""

#: A cut longer than Chrome's ICE consent (30 s without an answer fails a candidate pair).
LONG_CUT_S = 40.0
#: A second of a healthy call: at least this many video frames decoded and audio packets
#: received (the camera sends 30 fps, Opus 50 packets a second; a loaded machine decodes less).
MIN_FRAMES_PER_S = 5
MIN_AUDIO_PER_S = 25


def _dead_seconds(points: list[list[float]], since: float) -> list[tuple[str, float, int, int]]:
    """The seconds after ``since`` in which video or audio fell under a healthy call's rate."""
    dead = []
    for before, after in itertools.pairwise(points):
        if before[0] < since:
            continue
        frames, audio = after[1] - before[1], after[2] - before[2]
        if frames < MIN_FRAMES_PER_S or audio < MIN_AUDIO_PER_S:
            dead.append((f"+{before[0] - since:.0f} s", after[0] - before[0], frames, audio))
    return dead


@pytest.mark.scenario
@pytest.mark.timeout(300)
def test_a_cut_longer_than_ice_consent_keeps_the_call_on_the_other_provider_R28_R31(
    rig: ProviderRig, teleconsult_server: Server, open_room_in: Any
) -> None:
    """Provider A blackholed for 40 s, past Chrome's 30 s ICE consent: media resumes on B
    within issue 16's targets and stays up every second of the cut (no `media_lost`, no
    rebuilt media, no reload: the dead lane's connection fails after ~30 s and is built again
    in the background, the page never starts over); after A is restored the rebuilt connection
    is the standby, the call stays healthy, and a cut of B fails back onto A."""
    rooms = _call_on_the_rig(rig, teleconsult_server, open_room_in)
    doctor = rooms[0]
    for room in rooms:
        assert room.page.evaluate("() => window.__tc.lanes().active") == 0, room.role  # on A
        room.page.evaluate("() => { window.__sameDocument = true; }")  # gone on a reload
        room.page.evaluate(PER_SECOND_JS)

    # 1. A cut for 40 s: back on B within the targets (sampled finely for the first seconds)
    marks: list[float] = []

    def cut_a() -> None:
        marks.append(time.time())
        rig.cut("a")

    stalls, _parts = _stalls_after(rooms, cut_a)
    cut_at = marks[0]
    print("long cut of A, longest stall per page and kind (s):", stalls)
    for (role, kind), stall in stalls.items():
        assert stall <= _limit(kind), (role, kind, stalls)
    # then second by second for the rest of the cut (polled: a page that rebuilt its media or
    # reloaded fails at once, not after the 40 s)
    while time.time() < cut_at + LONG_CUT_S:
        for room in rooms:
            state = room.page.evaluate(
                "() => [window.__sameDocument === true, window.__tc.mediaRestarts.length,"
                " window.__tc.lanes().active]"
            )
            assert state == [True, 0, 1], (room.role, state, room.logs[-30:])
        doctor.page.wait_for_timeout(1000)  # a poll a second, bounded by the cut's length
    lanes = {room.role: room.page.evaluate("() => window.__tc.lanes()") for room in rooms}
    print(f"after {LONG_CUT_S:.0f} s of A cut, the lanes:", lanes)
    rig.restore("a")
    restored_at = time.time()

    # 2. A back: its connection is built again and heard (the standby); the call stays healthy
    deadline = time.monotonic() + 20
    for room in rooms:
        while True:
            lanes = room.page.evaluate("() => window.__tc.lanes()")
            if lanes["states"] == ["connected", "connected"]:
                break
            assert time.monotonic() < deadline, (room.role, lanes)
            room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline
    _both_lanes_heard(rooms, 10)
    rebuilt_s = time.time() - restored_at
    doctor.page.wait_for_timeout(5000)  # seconds of a healthy call after the restore
    per_second = {room.role: room.page.evaluate("() => window.__perSecond") for room in rooms}
    dead = {
        role: _dead_seconds(points, cut_at + 2 * VIDEO_MAX_S) for role, points in per_second.items()
    }
    print(
        f"A's connection built again and heard {rebuilt_s:.1f} s after the restore; seconds under rate:",
        dead,
    )
    assert dead == {room.role: [] for room in rooms}, dead
    seconds = {role: len(points) for role, points in per_second.items()}
    assert min(seconds.values()) >= LONG_CUT_S, seconds  # the sampler ran through the cut

    # 3. B cut: the cameras fail back onto A's rebuilt connection within the targets
    stalls, _parts = _stalls_after(rooms, functools.partial(rig.cut, "b"))
    print("then B cut, longest stall per page and kind (s):", stalls)
    carried = {room.role: room.page.evaluate("() => window.__tc.lanes().active") for room in rooms}
    rig.restore("b")
    for (role, kind), stall in stalls.items():
        assert stall <= _limit(kind), (role, kind, stalls)
    assert set(carried.values()) == {0}, carried
    for room in rooms:
        state = room.page.evaluate(
            "() => [window.__sameDocument === true, window.__tc.mediaRestarts]"
        )
        assert state == [True, []], (room.role, state, room.logs[-30:])
        assert not any("media lost" in line for line in room.logs), room.role
