"""Sequence numbers and timestamps stay continuous for the subscriber across a pause, a mute
and a publisher's re-join: no gap it would take for loss, no jump the clock does not explain."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from peers import CounterTrack, Subscriber, ToneTrack, client_pc, wait_for

from media import MediaWorker
from media.room import RoomMedia


@dataclass
class Wire:
    """The RTP one subscriber's receiver got, per kind: (ssrc, seq, timestamp, arrival)."""

    packets: dict[str, list[tuple[int, int, int, float]]] = field(default_factory=dict)

    def watch(self, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            original = receiver._handle_rtp_packet
            log = self.packets.setdefault(transceiver.kind, [])
            primary = transceiver._codecs[0].payloadType  # RTX and others are not the stream

            async def handle(packet, arrival_time_ms, original=original, log=log, pt=primary):  # type: ignore[no-untyped-def]
                if packet.payload_type == pt:
                    log.append(
                        (packet.ssrc, packet.sequence_number, packet.timestamp, time.monotonic())
                    )
                await original(packet, arrival_time_ms)

            receiver._handle_rtp_packet = handle

    def count(self, kind: str) -> int:
        return len(self.packets.get(kind, []))


def assert_continuous(log, clock_rate: int, gap_from: float) -> None:
    """One SSRC; each sequence number one more than the last; across the pause that began at
    ``gap_from``, the timestamp advanced as the wall clock did."""
    assert len({p[0] for p in log}) == 1, "the SSRC changed"
    seqs = [p[1] for p in log]
    steps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)]
    assert set(steps) == {1}, f"sequence steps {sorted(set(steps))}"
    # the pause is the step after ``gap_from`` that the timestamp jumps most (a stall of a
    # loaded test process can make a longer arrival gap elsewhere, with a one-frame step); it
    # must be a real pause, and its timestamp step must match the time that passed
    after = [k for k in range(1, len(log)) if log[k - 1][3] >= gap_from - 0.2]
    i = max(after, key=lambda k: (log[k][2] - log[k - 1][2]) & 0xFFFFFFFF)
    wall = log[i][3] - log[i - 1][3]
    assert wall >= 0.4, f"no pause after {gap_from}: the timestamp never jumped"
    ticks = (log[i][2] - log[i - 1][2]) & 0xFFFFFFFF
    assert ticks / clock_rate == pytest.approx(wall, abs=0.15), (ticks / clock_rate, wall)


@pytest.fixture
async def room():
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    events: list[tuple[str, dict]] = []
    media = RoomMedia(worker.get_router("room"), lambda name, data: events.append((name, data)))
    yield media
    await media.close()
    await worker.close()


async def _publish(room: RoomMedia, participant: str) -> tuple[RTCPeerConnection, CounterTrack]:
    pc = client_pc()
    video = CounterTrack()
    pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await room.publish(participant, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, video


async def _subscribe(room: RoomMedia, participant: str) -> tuple[Subscriber, Wire]:
    subscriber = Subscriber(client_pc())
    await room.subscribe(participant)
    offer = await room.create_offer(participant)
    await subscriber.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    wire = Wire()
    wire.watch(subscriber.pc)
    await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
    await room.apply_answer(participant, subscriber.pc.localDescription.sdp)
    return subscriber, wire


async def test_pause_resume_and_mute_unmute_keep_numbering_continuous(room):
    publisher, _video = await _publish(room, "doctor")
    subscriber, wire = await _subscribe(room, "patient")
    try:
        await wait_for(lambda: wire.count("video") > 30 and wire.count("audio") > 30, timeout=10)
        video = next(
            c
            for p in room.router.producers
            for c in room.router.consumers_of(p)
            if c.kind == "video"
        )

        # a Consumer paused for a second (as for congestion), then resumed
        paused_at = time.monotonic()
        video.pause()
        n = wire.count("video")
        await wait_for(lambda: time.monotonic() - paused_at > 1.0, timeout=2)
        assert wire.count("video") <= n + 3  # at most what was already on the way
        video.resume()
        await wait_for(lambda: wire.count("video") > n + 30, timeout=5)
        assert_continuous(wire.packets["video"], 90000, paused_at)
        assert video.packets_sent > 0

        # the publisher mutes its microphone and camera for a second (the server keeps the mute)
        for kind in ("video", "audio"):
            wire.packets[kind].clear()
        await wait_for(lambda: wire.count("video") > 10 and wire.count("audio") > 10, timeout=5)
        muted_at = time.monotonic()
        await room.set_muted("doctor", "audio", True)
        await room.set_muted("doctor", "video", True)
        await wait_for(lambda: time.monotonic() - muted_at > 1.0, timeout=2)
        counts = wire.count("video"), wire.count("audio")
        await room.set_muted("doctor", "audio", False)
        await room.set_muted("doctor", "video", False)
        await wait_for(
            lambda: wire.count("video") > counts[0] + 30 and wire.count("audio") > counts[1] + 30,
            timeout=5,
        )
        assert_continuous(wire.packets["video"], 90000, muted_at)
        assert_continuous(wire.packets["audio"], 48000, muted_at)
        # and the picture decodes on after the pause: the painted counter keeps rising
        received = next(r for r in subscriber.by_mid.values() if r.kind == "video")
        assert received.counters[-1] > received.counters[0]
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_publisher_rejoin_continues_the_same_streams(room):
    publisher, _ = await _publish(room, "doctor")
    subscriber, wire = await _subscribe(room, "patient")
    second = None
    try:
        await wait_for(lambda: wire.count("video") > 30 and wire.count("audio") > 30, timeout=10)
        streams_before = sorted(room.router.dump()["consumers"])

        # the doctor's connection goes; the doctor comes back with a new one
        left_at = time.monotonic()
        await room.leave("doctor", returning=True)
        await publisher.close()
        await wait_for(lambda: time.monotonic() - left_at > 0.5, timeout=2)
        second, _ = await _publish(room, "doctor")
        n_video, n_audio = wire.count("video"), wire.count("audio")
        await wait_for(
            lambda: wire.count("video") > n_video + 30 and wire.count("audio") > n_audio + 30,
            timeout=10,
        )
        # the same Consumers carry the new tracks: no renegotiation, same SSRCs, no jump
        assert sorted(room.router.dump()["consumers"]) == streams_before
        assert not await room.needs_offer("patient")
        assert_continuous(wire.packets["video"], 90000, left_at)
        assert_continuous(wire.packets["audio"], 48000, left_at)
    finally:
        await subscriber.close()
        if second is not None:
            await second.close()
