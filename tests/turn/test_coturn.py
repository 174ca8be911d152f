"""coturn with the configuration `teleconsult turn config` writes, in network namespaces.

The rig: a server namespace (the media server and its coturn on 10.77.0.1) and a client namespace
(10.77.0.2) joined by a veth pair; nftables in the client namespace drops every UDP datagram to the
server except those to coturn's port, as a hospital or mobile firewall might. Every address lives
inside namespaces this test creates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from coturn_rig import coturn, wait_for_port
from harness import skip_or_fail

from turn import TurnProvider, mint_credential

TESTS = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "turn_probe.py"
BIN = Path(sys.executable).parent
SERVER_IP = "10.77.0.1"
CLIENT_IP = "10.77.0.2"
TURN_PORT = 3478
SECRET = secrets.token_urlsafe(32)

#: Relays that must be refused (R37 spirit: the TURN server is no way into the hospital's
#: network or the cloud metadata service).
FORBIDDEN_PEERS = [
    "127.0.0.1:9",
    "0.0.0.0:9",
    "[::1]:9",
    "[::ffff:127.0.0.1]:9",
    "169.254.169.254:80",
    "10.1.2.3:9",
    "172.16.5.5:9",
    "192.168.1.1:9",
    "224.0.0.1:9",
    "239.255.255.250:1900",
]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        skip_or_fail(f"{tool} is not installed")
    assert path is not None
    return path


@dataclass
class Rig:
    server_ns: str
    client_ns: str
    tmp: Path

    def client(self, *argv: str, timeout: float = 60) -> dict[str, Any]:
        """Run the probe in the client namespace; its JSON answer."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.getcwd()])}
        result = subprocess.run(
            ["ip", "netns", "exec", self.client_ns, sys.executable, str(PROBE), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True)


def _kill_all(ns: str) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    if os.geteuid() != 0:
        skip_or_fail("the TURN rig needs root for network namespaces")
    for tool in ("ip", "nft", "ss", "turnserver"):
        _need(tool)
    suffix = secrets.token_hex(3)
    server_ns, client_ns = f"tcts-{suffix}", f"tctc-{suffix}"
    _ip("netns", "add", server_ns)
    _ip("netns", "add", client_ns)
    stack = ExitStack()
    try:
        for ns in (server_ns, client_ns):
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip(
            "link", "add", "tcs0", "netns", server_ns, "type", "veth",
            "peer", "name", "tcc0", "netns", client_ns,
        )  # fmt: skip
        _ip("-n", server_ns, "addr", "add", f"{SERVER_IP}/24", "dev", "tcs0")
        _ip("-n", client_ns, "addr", "add", f"{CLIENT_IP}/24", "dev", "tcc0")
        _ip("-n", server_ns, "link", "set", "tcs0", "up")
        _ip("-n", client_ns, "link", "set", "tcc0", "up")
        # The client's firewall: UDP to the server only on coturn's port.
        rules = (
            "table inet tcfw {\n chain out {\n  type filter hook output priority 0;\n"
            f"  ip daddr {SERVER_IP} udp dport != {TURN_PORT} drop\n }}\n}}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", client_ns, "nft", "-f", "-"], input=rules.encode(), check=True
        )

        provider = TurnProvider(
            name="provider-a",
            host=SERVER_IP,
            listening_ip=SERVER_IP,
            port=TURN_PORT,
            min_port=50000,
            max_port=50200,
            allowed_peer_ips=(SERVER_IP,),
        )
        stack.enter_context(coturn(server_ns, provider, SECRET, tmp_path))
        yield Rig(server_ns, client_ns, tmp_path)
    finally:
        stack.close()
        for ns in (server_ns, client_ns):
            _kill_all(ns)
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_a_minted_credential_allocates_and_an_expired_one_is_refused(rig: Rig):
    good = mint_credential(SECRET, "participant-1", 600)
    allocated = rig.client("allocate", SERVER_IP, str(TURN_PORT), good.username, good.password)
    assert allocated["ok"], allocated
    assert allocated["relayed"][0] == SERVER_IP

    expired = mint_credential(SECRET, "participant-1", 600, now=time.time() - 3600)
    refused = rig.client("allocate", SERVER_IP, str(TURN_PORT), expired.username, expired.password)
    assert refused == {"ok": False, "error": 401}

    forged = mint_credential("another secret of at least thirty-two bytes", "p", 600)
    refused = rig.client("allocate", SERVER_IP, str(TURN_PORT), forged.username, forged.password)
    assert refused == {"ok": False, "error": 401}


def test_relays_to_private_loopback_metadata_and_multicast_peers_are_refused(rig: Rig):
    credential = mint_credential(SECRET, "participant-2", 600)
    answer = rig.client(
        "permit",
        SERVER_IP,
        str(TURN_PORT),
        credential.username,
        credential.password,
        f"{SERVER_IP}:40000",  # the media server's own address: the one allowed exception
        *FORBIDDEN_PEERS,
    )
    peers = answer["peers"]
    assert peers[f"{SERVER_IP}:40000"] == "ok"
    refused = {peer: peers[peer] for peer in FORBIDDEN_PEERS}
    # 403 Forbidden for a denied address; 443 (address family mismatch) for IPv6 peers of an
    # IPv4 allocation: either way no relay exists.
    assert all(code in (403, 443) for code in refused.values()), refused


def test_a_client_whose_udp_to_the_server_is_blocked_calls_through_turn(rig: Rig):
    """R28/R31: the join ack hands out TURN per provider; the call runs over a relay."""
    port = 20000 + secrets.randbelow(20000)
    data_dir = rig.tmp / "data"
    config = rig.tmp / "teleconsult.toml"
    config.write_text(
        f'turn_secret = "{SECRET}"\n'
        "[[turn_providers]]\n"
        'name = "provider-a"\n'
        f'host = "{SERVER_IP}"\n'
        f'listening_ip = "{SERVER_IP}"\n'
        f"port = {TURN_PORT}\n"
        f'allowed_peer_ips = ["{SERVER_IP}"]\n'
    )
    teleconsult = str(BIN / "teleconsult")
    base_url = f"http://{SERVER_IP}:{port}"
    demo = subprocess.run(
        [teleconsult, "demo", "--data-dir", str(data_dir), "--base-url", base_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(demo.stdout.strip().splitlines()[-1])
    tokens = {
        role: link.split("token=", 1)[1].split("&", 1)[0] for role, link in info["links"].items()
    }
    log = (rig.tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        ["ip", "netns", "exec", rig.server_ns, teleconsult, "serve", "--config", str(config),
         "--host", SERVER_IP, "--port", str(port), "--data-dir", str(data_dir),
         "--ice-address", SERVER_IP],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(rig.server_ns, port, "tcp", time.monotonic() + 30, server)
        result = rig.client(
            "call", base_url, info["visit_id"], tokens["doctor"], tokens["patient"], timeout=90
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    turn = [s for s in result["ice_servers"] if s["urls"][0].startswith("turn:")]
    assert turn and turn[0]["urls"] == [f"turn:{SERVER_IP}:{TURN_PORT}?transport=udp"]
    expiry, _, participant = turn[0]["username"].partition(":")
    assert int(expiry) > time.time() and participant
    # every connection (2 publish, 2 subscribe) runs over a relay candidate of ours
    assert result["pairs"] and all(pair and pair[0] == "relay" for pair in result["pairs"]), result
    assert result["frames"]["doctor_sees_patient"] > 10, result
    assert result["frames"]["patient_sees_doctor"] > 10, result
