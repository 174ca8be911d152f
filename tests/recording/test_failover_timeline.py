"""A call through the whole server survives a provider cut; provider health and the recording
say so (R28, R31, R22; issue 16 items 2, 4 and 6).

The server (the whole application, two providers configured) runs in the server namespace of
tests/provider_rig.py, the doctor and the patient (aiortc, with the path monitor an aiortc
client runs) in the client namespace. The provider their media uses is blackholed in the router.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection
from client import Participant
from harness import start_server
from peers import client_pc, wait_for
from provider_rig import NamespaceLoop, count_media_packets, provider_rig
from recording_helpers import sealed_session

from media.paths import PathMonitor, monitor_peer_connection, use_addresses
from recording import RecordingStore, verify_room
from turn import NetworkProvider


def _watched(
    address: str, monitors: list[PathMonitor], arrivals: dict[str, list[float]]
) -> Callable[..., RTCPeerConnection]:
    def make(ice_servers: list[dict[str, Any]] | None = None) -> RTCPeerConnection:
        pc = client_pc(ice_servers)
        use_addresses(pc, [address])
        count_media_packets(pc, arrivals)
        monitor = monitor_peer_connection(pc)
        monitor.start()
        monitors.append(monitor)
        return pc

    return make


def _counts(got: dict[str, dict[str, list[float]]], since: float) -> dict[str, int]:
    return {
        f"{who} {kind}": sum(1 for t in times if t > since)
        for who, kinds in got.items()
        for kind, times in kinds.items()
    }


def _flowing(got: dict[str, dict[str, list[float]]], since: float) -> bool:
    """Audio and video reach both participants (each has more than 20 packets of each since)."""
    counts = _counts(got, since)
    return len(counts) == 4 and all(n > 20 for n in counts.values())


def _gap(times: list[float], cut_at: float) -> float:
    window = [t for t in times if t > cut_at - 1.0]
    return max((b - a for a, b in itertools.pairwise(window)), default=99.0)


def test_a_provider_cut_is_a_failover_in_provider_health_and_on_the_recording_timeline(
    tmp_path: Path,
) -> None:
    with provider_rig() as rig:
        server_loop = NamespaceLoop(rig.server_ns)
        client_loop = NamespaceLoop(rig.client_ns)
        monitors: list[PathMonitor] = []
        # media packets each participant receives, by kind (both see one another's)
        got: dict[str, dict[str, list[float]]] = {"doctor": {}, "patient": {}}
        try:
            providers = tuple(
                NetworkProvider(name, address) for name, address in rig.server_addresses.items()
            )
            server = server_loop.run(
                start_server(tmp_path, host="0.0.0.0", ice_addresses=(), providers=providers)
            )
            port = server.url.rsplit(":", 1)[1]
            visit = server_loop.run(server.visit())
            url = f"http://{rig.server_addresses['a']}:{port}"
            doctor = Participant(url, visit.tokens["doctor"], visit.visit_id)
            patient = Participant(url, visit.tokens["patient"], visit.visit_id)

            async def start() -> None:
                for p, name in ((doctor, "doctor"), (patient, "patient")):
                    p.make_pc = _watched(rig.client_address, monitors, got[name])
                    await p.connect()
                    await p.join()
                for p in (doctor, patient):
                    await p.publish()
                    await p.subscribe()
                await wait_for(lambda: _flowing(got, 0.0), timeout=40)

            client_loop.run(start(), timeout=60)
            health = server.signaling.providers
            assert {p["name"]: p["state"] for p in health.snapshot()} != {}

            # the provider the doctor's media goes over now
            used = client_loop.call(lambda: monitors[0].selected())[2]
            cut = next(name for name, a in rig.server_addresses.items() if a == used)
            other = next(name for name in rig.server_addresses if name != cut)
            cut_at = time.monotonic()
            rig.cut(cut)
            deadline = cut_at + 10
            while True:
                states = server_loop.call(
                    lambda: {p["name"]: p["state"] for p in health.snapshot()}
                )
                if _flowing(got, cut_at + 1.0) and states[cut] == "down":
                    break
                assert time.monotonic() < deadline, (states, _counts(got, cut_at))
                time.sleep(0.05)
            gaps = {
                f"{who} {kind}": _gap(times, cut_at)
                for who, kinds in got.items()
                for kind, times in kinds.items()
            }
            assert all(gap < 1.5 for gap in gaps.values()), gaps
            assert states[other] == "up"
            last = server_loop.call(lambda: health.last_failover)
            assert last is not None and (last.from_provider, last.to_provider) == (cut, other)
            assert 0 < last.gap_ms < 1500

            rig.restore(cut)
            deadline = time.monotonic() + 10
            while server_loop.call(lambda: health.snapshot())[0]["state"] != "up" or (
                server_loop.call(lambda: health.snapshot())[1]["state"] != "up"
            ):
                assert time.monotonic() < deadline, "the restored provider stayed down"
                time.sleep(0.05)

            async def leave() -> None:
                for p in (doctor, patient):
                    await p.close()

            client_loop.run(leave())
            session, _manifest = server_loop.run(
                sealed_session(server.config.recordings, visit.room_id)
            )
            server_loop.run(server.stop())
        finally:
            client_loop.close()
            server_loop.close()

    events = [json.loads(line) for line in (session / "timeline.jsonl").read_text().splitlines()]
    gaps = [e for e in events if e["event"] == "path_failover"]
    # each Transport that was on the cut provider moved (each picks its path itself: of the four,
    # the doctor's publish Transport, whose provider was cut, at least)
    assert 1 <= len(gaps) <= 4, gaps
    for gap in gaps:
        data = gap
        assert (data["from_provider"], data["to_provider"]) == (cut, other)
        assert 0 < data["gap_ms"] < 1500 and data["transport"] in ("publish", "subscribe")
        assert data["participant_id"]
    report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
    assert report.ok, report
