"""A two-page Chromium call over two network providers, one cut (R28, R31; issue 16).

`teleconsult serve` runs in the server namespace of tests/provider_rig.py with an address on
each provider (so each Transport watches a path per provider, docs/providers.md); both pages
run in the client namespace. The provider the doctor's subscribe connection uses is
blackholed in the router. Measured from the pages' inbound statistics (frames decoded).

The second test cuts the provider a page's signaling goes through (issue 16 item 3): the page
moves to the next provider's signaling URL and joins again as the same participant; the chat
sent meanwhile arrives once.

A scenario (`-m scenario`): the first measures what the browser does with one ICE session per
connection. The server's direction moves within about half a second (its path monitor); Chrome
moves its own sending path by itself (about 2.5 s, research note) or gives up on its ICE session
(the page then rebuilds its connections), and every stream here goes client -> server ->
client. Asserted: video comes back on both pages after each cut (and after the second cut, onto
the restored provider); the stalls are printed. The hot-standby connection per participant that
would bring a browser under a second is not built.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from provider_rig import ProviderRig, provider_rig

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.scenario, pytest.mark.timeout(150)]

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

SELECTED_REMOTE_JS = """
async (which) => {
  const pc = window.__tc && window.__tc.pcs[which];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  return pair ? (stats.get(pair.remoteCandidateId) || {}).address || null : null;
}
"""


@pytest.fixture
def rig(browser_prerequisites: None) -> Iterator[ProviderRig]:
    # "m" carries signaling only (no ICE address there): the pages' socket stays up, so what is
    # measured is the media's failover alone (the second test cuts a page's signaling)
    with provider_rig(("a", "b", "m")) as made:
        yield made


@pytest.fixture
def signaling_urls() -> bool:
    """Whether the server is configured with each provider's signaling URL (a test that cuts a
    page's signaling sets it; the media measurement runs as before, with none)."""
    return False


@pytest.fixture
def server_toml(rig: ProviderRig, signaling_urls: bool) -> str:
    """Each provider with its signaling URL (the page reconnects through another one)."""
    if not signaling_urls:
        return ""
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


#: How long both pages are watched after a cut; video must be back on both before it ends.
#: Measured (loaded 2-core machine): 1.4-2.1 s of stall when Chrome keeps its ICE session and
#: moves its sending path; 6-9 s when Chrome's ICE gives up on it and the page rebuilds its
#: connections (media restart). Issue 16's target (video max 1.5 s) needs the hot standby.
WINDOW_S = 15.0


def _longest_stall(points: list[tuple[float, int]]) -> float:
    """The longest time between two changes of the decoded-frame count (or to the end)."""
    longest, changed_at, last = 0.0, None, None
    for t, frames in points:
        if frames != last:
            if changed_at is not None:
                longest = max(longest, t - changed_at)
            changed_at, last = t, frames
    if changed_at is not None and points:
        longest = max(longest, points[-1][0] - changed_at)
    return longest


def _frames(room: RoomPage) -> int:
    return int(room.page.evaluate(FRAMES_JS))


def test_a_chromium_call_survives_a_provider_cut(
    rig: ProviderRig, teleconsult_server: Server, open_room_in: Any
) -> None:
    address = rig.server_addresses["m"]
    links = {
        role: url.replace("127.0.0.1", address) for role, url in teleconsult_server.links.items()
    }
    doctor = open_room_in(rig.client_ns, "doctor", links["doctor"])
    patient = open_room_in(rig.client_ns, "patient", links["patient"])
    rooms = (doctor, patient)
    deadline = time.monotonic() + 40
    for room in rooms:
        while _frames(room) < 30:
            assert time.monotonic() < deadline, f"no video on the {room.role} page"
            room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline
    remote = None
    while remote is None:
        assert time.monotonic() < deadline, "no selected pair"
        remote = doctor.page.evaluate(SELECTED_REMOTE_JS, "subscribe")
        doctor.page.wait_for_timeout(100)
    cut = next(name for name, a in rig.server_addresses.items() if a == remote)

    other = "b" if cut == "a" else "a"
    for provider in (cut, other):  # the second cut fails back onto the restored provider
        samples: dict[str, list[tuple[float, int]]] = {r.role: [] for r in rooms}
        cut_at = time.monotonic()
        rig.cut(provider)
        # sample both pages' decoded frames for a window that outlasts any recovery measured
        while time.monotonic() < cut_at + WINDOW_S:
            for room in rooms:
                samples[room.role].append((time.monotonic() - cut_at, _frames(room)))
            time.sleep(0.05)
        stalls = {role: _longest_stall(points) for role, points in samples.items()}
        print(f"provider {provider} cut: longest video stall per page (s):", stalls)
        for role, points in samples.items():
            late = [frames for t, frames in points if t > WINDOW_S - 1.0]
            assert late and late[-1] > late[0], (role, stalls, points[-10:])
        rig.restore(provider)


def _origin(url: str) -> str:
    return "/".join(url.split("/")[:3])


@pytest.mark.parametrize("signaling_urls", [True])
def test_a_chromium_page_resumes_signaling_through_the_other_provider(
    rig: ProviderRig, teleconsult_server: Server, open_room_in: Any
) -> None:
    on = {
        name: {
            role: url.replace("127.0.0.1", address)
            for role, url in teleconsult_server.links.items()
        }
        for name, address in rig.server_addresses.items()
    }
    # the doctor's page is served through A, the patient's through M (which stays up)
    doctor = open_room_in(
        rig.client_ns, "doctor", on["a"]["doctor"], also_secure=(_origin(on["m"]["patient"]),)
    )
    patient = open_room_in(rig.client_ns, "patient", on["m"]["patient"])
    deadline = time.monotonic() + 40
    for room in (doctor, patient):
        while _frames(room) < 30:
            assert time.monotonic() < deadline, f"no video on the {room.role} page"
            room.page.wait_for_timeout(100)  # poll interval, bounded by the deadline
    before = doctor.page.evaluate("() => window.__tc.self")
    patient.page.fill("#chat-input", "before the cut")
    patient.page.click("#chat-send")
    doctor.page.wait_for_function("() => window.__chat.messages.length === 1", timeout=10_000)

    cut_at = time.monotonic()
    rig.cut("a")
    patient.page.fill("#chat-input", "during the gap")
    patient.page.click("#chat-send")
    doctor.page.wait_for_function(
        "() => window.__tc.signaling().failovers.length > 0 && window.__tc.state === 'joined'",
        timeout=20_000,
    )
    resumed_s = time.monotonic() - cut_at
    signaling = doctor.page.evaluate("() => window.__tc.signaling()")
    failover = signaling["failovers"][0]
    assert (failover["from"], failover["to"]) == (
        _origin(on["a"]["doctor"]),
        _origin(on["b"]["doctor"]),
    )
    assert failover["reason"] == "silent" and signaling["url"] == failover["to"]
    after = doctor.page.evaluate("() => window.__tc.self")
    assert (after["id"], after["role"]) == (before["id"], before["role"])  # the same participant
    doctor.page.wait_for_function("() => window.__chat.messages.length === 2", timeout=10_000)
    received = doctor.page.evaluate("() => [...window.__chat.received]")
    assert received.count(2) == 1, received  # the message of the gap once
    # the patient sees the doctor once, and the doctor's video again (media rebuilt)
    roster = patient.page.evaluate("() => window.__tc.participants.map((p) => p.id)")
    assert roster.count(before["id"]) == 1, roster
    frames = _frames(patient)
    deadline = time.monotonic() + 20
    while _frames(patient) < frames + 30:
        assert time.monotonic() < deadline, "no video from the doctor after the resume"
        patient.page.wait_for_timeout(100)
    print(f"signaling through A cut: the doctor's page joined through B after {resumed_s:.1f} s")
    rig.restore("a")
