"""A Chromium page whose UDP to the media server is blocked calls through coturn (R28, R31;
issue 16's TURN acceptance, docs/turn.md).

tests/provider_rig.py with one provider: `teleconsult serve` and coturn (configured by
`teleconsult turn`'s code) in the server namespace, the doctor's page in the client namespace,
whose firewall lets UDP to the server through to coturn's port only, as a hospital's might. The
join ack hands the page a TURN credential; its connections run over relay candidates and the
patient's page (in the server namespace) sees the doctor's video through them.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coturn_rig import coturn
from provider_rig import ProviderRig, provider_rig

from turn import TurnProvider

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SECRET = secrets.token_urlsafe(32)
TURN_PORT = 3478

#: The local candidate type of each of the page's connected peer connections' selected pair.
SELECTED_JS = """
async () => {
  const types = {};
  for (const [name, pc] of Object.entries(window.__tc.pcs)) {
    if (!pc || pc.connectionState !== "connected") continue;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== "transport" || !s.selectedCandidatePairId) return;
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      types[name] = local ? local.candidateType : null;
    });
  }
  return types;
}
"""

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


@pytest.fixture
def rig(browser_prerequisites: None, tmp_path: Path) -> Iterator[ProviderRig]:
    with provider_rig(("a",)) as made:
        address = made.server_addresses["a"]
        # the client's firewall: UDP to the server only to coturn's port
        rules = (
            "table inet tcfw {\n chain out {\n  type filter hook output priority 0;\n"
            f"  ip daddr {address} udp dport != {TURN_PORT} drop\n }}\n}}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", made.client_ns, "nft", "-f", "-"],
            input=rules.encode(),
            check=True,
        )
        provider = TurnProvider(
            name="a",
            host=address,
            listening_ip=address,
            port=TURN_PORT,
            min_port=50000,
            max_port=50200,
            allowed_peer_ips=(address,),
        )
        turn_dir = tmp_path / "turn"
        turn_dir.mkdir()
        with coturn(made.server_ns, provider, SECRET, turn_dir):
            yield made


@pytest.fixture
def netns(rig: ProviderRig) -> str:
    """The server's namespace is the rig's (overrides conftest's fresh one)."""
    return rig.server_ns


@pytest.fixture
def server_listen(rig: ProviderRig) -> tuple[str, list[str]]:
    return "0.0.0.0", [rig.server_addresses["a"]]


@pytest.fixture
def server_toml(rig: ProviderRig) -> str:
    address = rig.server_addresses["a"]
    return (
        f'turn_secret = "{SECRET}"\n'
        "[[turn_providers]]\n"
        'name = "a"\n'
        f'host = "{address}"\n'
        f'listening_ip = "{address}"\n'
        f"port = {TURN_PORT}\n"
        f'allowed_peer_ips = ["{address}"]\n'
    )


def test_a_chromium_page_behind_blocked_udp_calls_through_coturn_R28(
    rig: ProviderRig, teleconsult_server: Any, open_room_in: Any
) -> None:
    address = rig.server_addresses["a"]
    links = {r: u.replace("127.0.0.1", address) for r, u in teleconsult_server.links.items()}
    doctor = open_room_in(rig.client_ns, "doctor", links["doctor"])
    patient = open_room_in(rig.server_ns, "patient", links["patient"])
    deadline = time.monotonic() + 40
    while (frames := patient.page.evaluate(FRAMES_JS)) < 30 or doctor.page.evaluate(FRAMES_JS) < 30:
        assert time.monotonic() < deadline, ("no video through the relay", frames, doctor.logs)
        patient.page.wait_for_timeout(100)  # poll interval, bounded by the deadline
    # the page was handed this server's TURN with a credential of its own ...
    servers = doctor.page.evaluate("() => window.__tc.iceServers")
    turn = [s for s in servers if s["urls"][0].startswith("turn:")]
    assert turn and turn[0]["urls"][0] == f"turn:{address}:{TURN_PORT}?transport=udp", servers
    expiry, _, participant = turn[0]["username"].partition(":")
    assert int(expiry) > time.time() and participant == doctor.page.evaluate(
        "() => window.__tc.self.id"
    )
    # ... and every connection it made runs over a relay candidate
    selected = doctor.page.evaluate(SELECTED_JS)
    assert set(selected) == {"publish", "subscribe"}, selected
    assert set(selected.values()) == {"relay"}, selected
