"""Liveness (issue 10, part 3) at the room level: ICE consent that expires is a lost path too.

Consent freshness (RFC 7675) is checked every ~5 s and expires after 6 failures (30 s); here aioice
is told to check every 0.2 s and give up after 2, and the silence rule is set aside, so that the
consent path alone is what notices the dead client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCSessionDescription
from peers import CounterTrack, ToneTrack, client_pc, wait_for

from media import MediaWorker, _ice_seam
from media.room import RoomMedia


def _blackhole(pc: Any) -> None:
    """Drop every datagram ``pc`` sends or receives, as a cut network would."""
    for transceiver in pc.getTransceivers():
        for protocol in transceiver.receiver.transport.transport._connection._protocols:
            protocol.datagram_received = lambda data, addr: None
            protocol.transport.sendto = lambda data, addr=None: None


async def test_expired_ice_consent_is_a_lost_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 2)
    # consent as media/_ice_seam.py checks it: expired when no check was answered for this long
    monkeypatch.setattr(_ice_seam, "CONSENT_EXPIRY_S", 0.6)
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    events: list[tuple[str, dict[str, Any]]] = []
    room = RoomMedia(
        worker.get_router("room"), lambda name, data: events.append((name, data)), silence_s=60
    )
    pc = client_pc()
    try:
        pc.addTransceiver(CounterTrack(), direction="sendonly")
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await room.publish("doctor", pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: room.router.producers and pc.connectionState == "connected", 10)
        transport = room._publish["doctor"]
        await wait_for(lambda: transport.datagrams_received > 20, timeout=5)

        _blackhole(pc)
        await wait_for(lambda: any(e[0] == "media_lost" for e in events), timeout=10)
        lost = next(data for name, data in events if name == "media_lost")
        assert lost["participant_id"] == "doctor" and lost["role"] == "publish"
        # aiortc 1.16 closes the whole peer connection when aioice ends the ICE connection
        # for expired consent, so it reads as "connection_closed" (ICE "failed" comes later)
        assert lost["reason"] in ("ice_failed", "connection_closed"), lost
        # the lost Transport is closed and out of the room; the doctor may publish again
        await wait_for(lambda: transport.closed, timeout=5)
        assert (await room.dump())["publishers"] == []
        assert room.knows("doctor")
    finally:
        await pc.close()
        await room.close()
        await worker.close()


@dataclass
class _Publishing:
    """What the watch reads of a connected publish Transport carrying one Producer."""

    id: str = "t1"
    role: str = "publish"
    closed: bool = False
    connection_state: str = "connected"
    paths: None = None
    datagrams_received: int = 10
    producers: list[SimpleNamespace] = field(
        default_factory=lambda: [SimpleNamespace(closed=False)]
    )


def test_a_stalled_event_loop_is_not_the_peers_silence() -> None:
    """R1: a check that runs late (the server's loop was busy, a close took long) does not take
    the unread time for silence: the datagrams of that time wait in the socket buffer."""
    from media.liveness import LivenessWatch

    transport = _Publishing()
    lost: list[Any] = []
    watch = LivenessWatch(lambda: [transport], lambda t, why: lost.append(why), silence_s=2.0)
    watch.check(100.0)
    watch.check(100.25)
    watch.check(103.0)  # 2.5 s late: the loop stalled; nothing read, nothing is lost
    assert lost == []
    watch.check(103.25)
    transport.datagrams_received += 5  # the buffered datagrams are read after the stall
    watch.check(103.5)
    assert lost == []
    for step in range(1, 9):  # then a real silence, checked on time
        watch.check(103.5 + 0.25 * step)
    assert [why.reason for why in lost] == ["silence"]
    assert lost[0].silent_s >= 2.0


def test_after_our_path_moved_the_peer_has_time_to_move_its_own_R31() -> None:
    """Our path monitor moved a connection off a cut provider: the peer (Chrome: ~2.5 s) still
    sends on the dead path for a while, and nothing but the moved path answers now, so the
    connection gets the failover grace instead of being closed as silent (seen in the rig: a
    page's subscribe connection closed 2.1 s after the cut)."""
    import time as clock

    from media.liveness import FAILOVER_GRACE_S, expected_silence
    from media.paths import PathMonitor, Switch

    monitor = PathMonitor(lambda: None)
    transport = _Publishing(paths=monitor)  # type: ignore[arg-type]
    assert expected_silence(transport, silence_s=2.0) == 2.0  # type: ignore[arg-type]
    monitor.switches.append(Switch("10.0.0.1", "10.0.1.1", 0.4, clock.time()))
    assert expected_silence(transport, silence_s=2.0) == 2.0 + FAILOVER_GRACE_S  # type: ignore[arg-type]
    monitor.switches[-1] = Switch("10.0.0.1", "10.0.1.1", 0.4, clock.time() - 60)
    assert expected_silence(transport, silence_s=2.0) == 2.0  # type: ignore[arg-type]
