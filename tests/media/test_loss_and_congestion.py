"""Loss on the publisher's leg is repaired upstream; a slow or stalled subscriber costs only
itself."""

from __future__ import annotations

import contextlib
import itertools
import time

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from peers import Subscriber, wait_for
from test_continuity import Wire, _publish, _subscribe

from media import MediaWorker
from media.room import RoomMedia


async def _room():
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    return worker, RoomMedia(worker.get_router("room"), lambda *_: None)


async def test_loss_on_the_publisher_leg_is_nacked_upstream_and_repaired():
    worker, room = await _room()
    publisher, _ = await _publish(room, "doctor")
    subscriber, wire = await _subscribe(room, "patient")
    try:
        await wait_for(lambda: wire.count("video") > 10, timeout=10)
        producer = next(p for p in room.router.producers if p.kind == "video")
        # drop every 20th video packet (5 %) as it reaches the server, before SRTP is undone
        dtls = producer._receiver.transport
        original = dtls._handle_rtp_data
        dropped: list[int] = []
        seen = [0]

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            payload_type = data[1] & 0x7F
            if payload_type == producer.codec.payloadType:
                seen[0] += 1
                if seen[0] % 20 == 0:
                    dropped.append(int.from_bytes(data[2:4], "big"))
                    return
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = lossy
        start = wire.count("video")
        await wait_for(lambda: len(dropped) >= 10, timeout=10)
        dtls._handle_rtp_data = original
        await wait_for(lambda: producer.packets_recovered >= len(dropped), timeout=5)
        assert producer.nacks_sent >= len(dropped)
        # the subscriber got every packet of the lossy stretch, the repaired ones late
        seqs = [p[1] for p in wire.packets["video"][start:]]
        first, last = seqs[0], seqs[-1]
        expected = {(first + i) & 0xFFFF for i in range((last - first) & 0xFFFF)}
        assert expected <= set(seqs), f"missing {sorted(expected - set(seqs))[:10]}"
    finally:
        await subscriber.close()
        await publisher.close()
        await room.close()
        await worker.close()


def _video_rate(wire: Wire, since: float) -> int:
    return sum(1 for p in wire.packets.get("video", []) if p[3] >= since)


async def test_a_congested_or_stalled_subscriber_does_not_slow_the_others():
    worker, room = await _room()
    publisher, _ = await _publish(room, "doctor")
    slow, slow_wire = await _subscribe(room, "patient")
    fine, fine_wire = await _subscribe(room, "nurse")
    try:
        await wait_for(
            lambda: slow_wire.count("video") > 30 and fine_wire.count("video") > 30, timeout=10
        )
        producer = next(p for p in room.router.producers if p.kind == "video")
        await wait_for(lambda: producer.bitrate > 0, timeout=3)
        t0 = time.monotonic()
        await wait_for(lambda: time.monotonic() - t0 > 1.0, timeout=2)
        baseline = _video_rate(fine_wire, t0)

        # the slow subscriber says, again and again, that it can take a tenth of the stream: its
        # video stops (probes go on), its audio goes on
        # (its own estimator, which would report loopback's bandwidth, is silenced)
        receiver = next(t.receiver for t in slow.pc.getTransceivers() if t.kind == "video")
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        ssrc = next(iter(receiver._RTCRtpReceiver__remote_streams))
        slow_consumer = next(
            c
            for c in room.router.consumers_of(producer)
            if c.app_data["transport_id"] == room._subscribe["patient"].id
        )
        deadline = time.monotonic() + 15
        while not slow_consumer.congested:
            assert time.monotonic() < deadline, "the slow subscriber's video never stopped"
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=1,
                media_ssrc=0,
                fci=pack_remb_fci(max(producer.bitrate // 10, 1000), [ssrc]),
            )
            await receiver._send_rtcp(remb)
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: slow_consumer.congested, timeout=0.3)
        paused_at = time.monotonic()
        audio_before = slow_wire.count("audio")
        # ... and a third stops reading its socket altogether (a stalled machine)
        stalled_sub, stalled_wire = await _subscribe(room, "stalled")
        await wait_for(lambda: stalled_wire.count("video") > 10, timeout=10)
        for protocol in _protocols(stalled_sub):
            protocol.transport.pause_reading()
        t1 = time.monotonic()
        await wait_for(lambda: time.monotonic() - t1 > 1.0, timeout=2)
        during = _video_rate(fine_wire, t1)
        assert during >= baseline * 0.85, (baseline, during)
        assert _video_rate(slow_wire, paused_at + 0.2) == 0
        assert slow_wire.count("audio") > audio_before + 20

        # the slow subscriber's estimate recovers: video comes back, numbering continuous
        await receiver._send_rtcp(
            RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(50_000_000, [ssrc])
            )
        )
        n = slow_wire.count("video")
        await wait_for(lambda: slow_wire.count("video") > n + 20, timeout=5)
        seqs = [p[1] for p in slow_wire.packets["video"]]
        assert {(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)} == {1}
        for protocol in _protocols(stalled_sub):
            protocol.transport.resume_reading()
        await stalled_sub.close()
    finally:
        for s in (slow, fine):
            await s.close()
        await publisher.close()
        await room.close()
        await worker.close()


def _protocols(subscriber: Subscriber) -> list:
    """The UDP protocols under a client's ICE connection."""
    transport = subscriber.pc.getTransceivers()[0].receiver.transport.transport
    return list(transport._connection._protocols)
