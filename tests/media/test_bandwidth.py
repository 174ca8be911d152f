"""A subscriber's estimate steers what it gets, never a dead stop (R1: visits run as video).

Each subscriber gets the simulcast layer its estimate (REMB) carries, switching on keyframes with
numbering continuous; video that must stop keeps being probed and comes back when the estimate
recovers; the publisher is told (REMB upstream) what its subscribers can take.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import pytest
from aiortc import RTCSessionDescription
from aiortc.clock import current_ms
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci
from peers import Subscriber, client_pc, wait_for
from test_continuity import _publish, _subscribe

from media import MediaWorker
from media import _aiortc_seam as seam
from media.keyframes import vp8_keyframe_start
from media.room import RoomMedia
from media.simulcast import URI_REPAIRED_RID, URI_RID


@pytest.fixture
async def room():  # type: ignore[no-untyped-def]
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    media = RoomMedia(worker.get_router("room"), lambda *_: None)
    yield media
    await media.close()
    await worker.close()


def _video_receiver(subscriber: Subscriber):  # type: ignore[no-untyped-def]
    return next(t.receiver for t in subscriber.pc.getTransceivers() if t.kind == "video")


async def _send_remb(subscriber: Subscriber, bitrate: int) -> None:
    receiver = _video_receiver(subscriber)
    ssrcs = list(receiver._RTCRtpReceiver__remote_streams) or sorted(
        getattr(subscriber, "video_ssrcs", ())
    )
    await receiver._send_rtcp(
        RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs))
    )


async def _poll(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` for up to ``seconds``; whether it came true."""
    try:
        await wait_for(predicate, timeout=seconds)
    except AssertionError:
        return False
    return True


async def _hold_estimate(subscriber: Subscriber, bitrate: int, until, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Report ``bitrate`` as the subscriber's estimate (as a browser does, about every 300 ms)
    until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not met in time"
        await _send_remb(subscriber, bitrate)
        await _poll(until, 0.3)


async def test_r1_stopped_video_is_probed_and_resumes_when_the_estimate_recovers(room):
    """The issue's freeze: video stopped for a low estimate must bring the estimate back."""
    publisher, _ = await _publish(room, "doctor")
    subscriber, wire = await _subscribe(room, "patient")
    try:
        await wait_for(lambda: wire.count("video") > 30, timeout=10)
        producer = next(p for p in room.router.producers if p.kind == "video")
        consumer = room.router.consumers_of(producer)[0]
        events: list[bool] = []
        consumer.on_congestion(lambda _c, paused: events.append(paused))
        receiver = _video_receiver(subscriber)
        # the subscriber's network collapses: its estimator says almost nothing gets through
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        await _hold_estimate(subscriber, 5_000, lambda: consumer.congested, timeout=15)
        assert events == [True]
        video_at_pause = wire.count("video")
        audio_at_pause = wire.count("audio")
        # the network is back; the receiver estimates from what it receives (only probes now)
        receiver._RTCRtpReceiver__remote_bitrate_estimator = RemoteBitrateEstimator()
        frames = subscriber.by_mid[consumer.mid].frames
        await wait_for(lambda: not consumer.congested, timeout=25)
        assert consumer.probe_packets_sent > 0
        assert events == [True, False]
        # video again, decodable (it restarted on a keyframe), numbering continuous
        await wait_for(lambda: subscriber.by_mid[consumer.mid].frames > frames + 10, timeout=10)
        assert wire.count("video") > video_at_pause
        assert wire.count("audio") > audio_at_pause + 50  # audio never stopped
        seqs = [p[1] for p in wire.packets["video"]]
        assert {(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)} == {1}
    finally:
        await subscriber.close()
        await publisher.close()


async def test_r1_publisher_is_told_its_subscribers_estimate(room):
    """One stream: the REMB upstream follows the lowest subscriber estimate (quality drops,
    the picture keeps moving)."""
    publisher, _ = await _publish(room, "doctor")
    subscriber, wire = await _subscribe(room, "patient")
    try:
        await wait_for(lambda: wire.count("video") > 30, timeout=10)
        producer = next(p for p in room.router.producers if p.kind == "video")
        sender = next(t.sender for t in publisher.getTransceivers() if t.kind == "video")
        _video_receiver(subscriber)._RTCRtpReceiver__remote_bitrate_estimator = None
        await _hold_estimate(subscriber, 300_000, lambda: producer.remb_sent == 300_000, 10)
        # aiortc's sender hands the REMB to its encoder
        await wait_for(lambda: sender._RTCRtpSender__encoder.target_bitrate == 300_000, 5)
    finally:
        await subscriber.close()
        await publisher.close()


# --- simulcast, from a synthetic publisher ---------------------------------------------------

RIDS = ("l", "m", "h")
#: packets of 1000 bytes per frame per layer at 30 fps: about 240 kbit/s, 480k, 960k
PACKETS_PER_FRAME = (1, 2, 4)


def _simulcast_offer(sdp: str) -> str:
    """Make an aiortc offer look like Chrome's with three send encodings."""
    out = []
    for line in sdp.splitlines():
        out.append(line)
        if line.startswith("a=mid:") and "m=video" in "\n".join(out[-20:]):
            out.append(f"a=extmap:10 {URI_RID}")
            out.append(f"a=extmap:11 {URI_REPAIRED_RID}")
            out.extend(f"a=rid:{rid} send" for rid in RIDS)
            out.append("a=simulcast:send " + ";".join(RIDS))
    return "\r\n".join(out) + "\r\n"


@dataclass
class Source:
    """Three VP8-looking layers at 30 fps; a layer sends a keyframe when it is asked for one."""

    producer: object
    ssrcs: tuple[int, ...] = (1111, 2222, 3333)
    asked: list[int] = field(default_factory=list)
    stopped: bool = False
    #: each layer's sequence number grows by this per packet (a long call in seconds)
    step: int = 1
    #: layers the encoder has stopped (as Chrome does with its top one when short of CPU)
    silent: set[int] = field(default_factory=set)
    #: layers that lose every tenth packet on the way to the server
    lossy: set[int] = field(default_factory=set)

    async def run(self) -> None:
        producer = self.producer
        seq = [100, 20000, 40000]
        frame = 0
        start = time.monotonic()
        keyframe = [True, True, True]
        while not self.stopped:
            for layer, ssrc in enumerate(self.ssrcs):
                if layer in self.silent:
                    continue
                if ssrc in self.asked:
                    keyframe[layer] = True
                    self.asked.remove(ssrc)
                # each layer counts its own picture ids and TL0PICIDX, as an encoder does
                picture = (frame + layer * 10_000) & 0x7FFF
                tl0 = (frame + layer * 70) & 0xFF
                for k in range(PACKETS_PER_FRAME[layer]):
                    first = 0x90 if k == 0 else 0x80  # X, and S on a frame's first packet
                    descriptor = bytes([first, 0xC0, 0x80 | picture >> 8, picture & 0xFF, tl0])
                    header = descriptor + bytes([0x00 if keyframe[layer] else 0x01, layer])
                    packet = RtpPacket(
                        payload_type=producer._payload_type,  # type: ignore[attr-defined]
                        sequence_number=seq[layer] & 0xFFFF,
                        timestamp=(frame * 3000 + layer * 1_000_000) & 0xFFFFFFFF,
                        ssrc=ssrc,
                        marker=int(k == PACKETS_PER_FRAME[layer] - 1),
                        payload=header + bytes(993),
                    )
                    packet.extensions.rtp_stream_id = RIDS[layer]
                    seq[layer] += self.step
                    if layer in self.lossy and seq[layer] // self.step % 10 == 0:
                        continue
                    # arrival times on aiortc's clock (wall-clock ms since 1900), as in a call
                    await producer._on_rtp(packet, current_ms())  # type: ignore[attr-defined]
                keyframe[layer] = False
            frame += 1
            delay = start + frame / 30 - time.monotonic()
            await asyncio.sleep(max(delay, 0))  # pacing a real-time source


class Recorder:
    """What one subscriber's video receiver got: (seq, timestamp, layer, keyframe, arrival,
    picture id, TL0PICIDX, first packet of a frame)."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.log: list[tuple[int, int, int, bool, float, int, int, bool]] = []
        receiver = _video_receiver(subscriber)
        pt = next(t for t in subscriber.pc.getTransceivers() if t.kind == "video")._codecs[0]
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        subscriber.video_ssrcs = set()  # type: ignore[attr-defined]

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            if packet.payload_type == pt.payloadType:
                subscriber.video_ssrcs.add(packet.ssrc)  # type: ignore[attr-defined]
                self.log.append(
                    (
                        packet.sequence_number,
                        packet.timestamp,
                        packet.payload[6],
                        vp8_keyframe_start(packet.payload),
                        time.monotonic(),
                        (packet.payload[2] & 0x7F) << 8 | packet.payload[3],
                        packet.payload[4],
                        bool(packet.payload[0] & 0x10),
                    )
                )
            # never decoded: the payload is not a picture

        receiver._handle_rtp_packet = handle

    def switches(self) -> list[tuple[int, int, bool]]:
        """(from layer, to layer, whether the first packet of the new layer is a keyframe)."""
        return [(a[2], b[2], b[3]) for a, b in itertools.pairwise(self.log) if a[2] != b[2]]


async def _subscribe_recorded(room: RoomMedia, participant: str) -> tuple[Subscriber, Recorder]:
    subscriber = Subscriber(client_pc())
    await room.subscribe(participant)
    offer = await room.create_offer(participant)
    await subscriber.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    recorder = Recorder(subscriber)
    await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
    await room.apply_answer(participant, subscriber.pc.localDescription.sdp)
    return subscriber, recorder


@pytest.fixture
async def simulcast(room, monkeypatch):  # type: ignore[no-untyped-def]
    publisher = client_pc()
    publisher.addTransceiver(seam.IdleTrack("video"), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await room.publish("doctor", _simulcast_offer(publisher.localDescription.sdp))
    assert "a=simulcast:recv l;m;h" in answer
    assert all(f"a=rid:{rid} recv" in answer for rid in RIDS)
    assert URI_RID in answer
    await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    producer = next(p for p in room.router.producers if p.kind == "video")
    assert [layer.rid for layer in producer.layers] == list(RIDS)
    source = Source(producer)
    original = seam.send_pli

    async def send_pli(receiver, ssrc):  # type: ignore[no-untyped-def]
        source.asked.append(ssrc)
        await original(receiver, ssrc)

    monkeypatch.setattr(seam, "send_pli", send_pli)
    task = asyncio.ensure_future(source.run())
    yield room, producer, source
    source.stopped = True
    await task
    await publisher.close()


async def test_r1_simulcast_layer_follows_the_estimate_with_continuous_numbering(simulcast):
    room, producer, _source = simulcast
    subscriber, recorder = await _subscribe_recorded(room, "patient")
    try:
        await wait_for(lambda: len(recorder.log) > 30, timeout=10)
        consumer = room.router.consumers_of(producer)[0]
        # no estimate yet: the best layer, once the layers' rates are known
        await wait_for(lambda: consumer.layer == 2, timeout=5)
        for bitrate, layer in ((450_000, 1), (120_000, 0), (5_000_000, 2)):
            await _hold_estimate(subscriber, bitrate, lambda want=layer: consumer.layer == want, 10)
            n = len(recorder.log)
            await wait_for(lambda n=n: len(recorder.log) > n + 20, timeout=5)
            assert {entry[2] for entry in recorder.log[-15:]} == {layer}
        assert recorder.switches() == [(0, 2, True), (2, 1, True), (1, 0, True), (0, 2, True)]
        # each switch asked that layer's SSRC for a keyframe
        assert producer.keyframe_requests_sent >= 4
        # numbering continuous; across each switch the timestamp moved as the clock did
        log = recorder.log
        assert {(b[0] - a[0]) & 0xFFFF for a, b in itertools.pairwise(log)} == {1}
        for a, b in itertools.pairwise(log):
            ticks = (b[1] - a[1]) & 0xFFFFFFFF
            assert ticks < 0x80000000, "the timestamp went back"
            if a[2] != b[2]:
                assert ticks / 90000 == pytest.approx(b[4] - a[4], abs=0.1)
        # picture ids and TL0PICIDX go on by one per frame across the switches (a receiver
        # drops a frame whose picture id is not newer than the last one it decoded)
        starts = [entry for entry in log if entry[7]]
        assert {(b[5] - a[5]) & 0x7FFF for a, b in itertools.pairwise(starts)} == {1}
        assert {(b[6] - a[6]) & 0xFF for a, b in itertools.pairwise(starts)} == {1}
        # a simulcast publisher is not capped by its subscribers (each takes its layer); the
        # synthetic one sends no abs-send-time, so there is no uplink estimate either
        assert producer.remb_sent is None
    finally:
        await subscriber.close()


async def test_r1_only_the_layers_a_subscriber_takes_are_nacked(simulcast, monkeypatch):
    """R1: a simulcast layer nobody takes costs only its reception; its losses are not asked
    for again (the retransmission would go nowhere). Once a subscriber switches to it, they
    are, and not the whole gap while nobody took it."""
    room, producer, source = simulcast
    nacked: list[tuple[int, list[int]]] = []

    async def send_nack(layer, lost):  # type: ignore[no-untyped-def]
        nacked.append((layer.index, list(lost)))

    monkeypatch.setattr(producer, "_send_nack", send_nack)
    source.lossy = {0, 2}
    subscriber, _recorder = await _subscribe_recorded(room, "patient")
    try:
        consumer = room.router.consumers_of(producer)[0]
        await wait_for(lambda: consumer.layer == 2 and consumer.target_layer == 2, timeout=10)
        nacked.clear()
        await wait_for(lambda: len(nacked) >= 3, timeout=10)
        assert {index for index, _ in nacked} == {2}
        await _hold_estimate(subscriber, 120_000, lambda: consumer.layer == 0, 10)
        switched = len(nacked)
        await wait_for(lambda: any(index == 0 for index, _ in nacked[switched:]), timeout=10)
        # a NACK lists what went missing since: a tenth of the packets, not the gap (a
        # generator that had stopped at the gap's start would list the last 128 numbers)
        assert max(len(lost) for index, lost in nacked if index == 0) <= 20
    finally:
        await subscriber.close()


async def test_r1_a_constrained_subscriber_does_not_take_the_top_layer_from_another(simulcast):
    """Three parties at the media layer (a visit's room admits two pages): one publisher, two
    subscribers; the one on a poor network gets the low layer, the other keeps the top one."""
    room, producer, _source = simulcast
    fine, fine_log = await _subscribe_recorded(room, "patient")
    poor, poor_log = await _subscribe_recorded(room, "companion")
    try:
        await wait_for(lambda: len(fine_log.log) > 30 and len(poor_log.log) > 30, timeout=10)
        by_subscriber = {c.app_data["transport_id"]: c for c in room.router.consumers_of(producer)}
        fine_c = by_subscriber[room._subscribe["patient"].id]
        poor_c = by_subscriber[room._subscribe["companion"].id]

        def settled() -> bool:
            return (
                fine_c.remb_bitrate == 5_000_000
                and poor_c.remb_bitrate == 350_000
                and fine_c.layer == 2
                and poor_c.layer == 0
                and poor_c.target_layer == 0
            )

        deadline = time.monotonic() + 10
        while not settled():
            assert time.monotonic() < deadline, (fine_c.layer, poor_c.layer)
            await _send_remb(fine, 5_000_000)
            await _send_remb(poor, 350_000)
            await _poll(settled, 0.3)
        n, m = len(fine_log.log), len(poor_log.log)
        await wait_for(lambda: len(fine_log.log) > n + 40 and len(poor_log.log) > m + 10, 5)
        assert {e[2] for e in fine_log.log[-30:]} == {2}
        assert {e[2] for e in poor_log.log[-8:]} == {0}
        assert not poor_c.congested  # a lower layer, never a stop
        # the poor one is probed towards the next layer, so its estimate can grow
        await wait_for(lambda: poor_c.probe_packets_sent > 0, timeout=5)
        assert fine_c.probe_packets_sent == 0
    finally:
        await fine.close()
        await poor.close()


async def test_r1_a_subscribers_keyframe_request_asks_for_the_layer_it_gets(simulcast, monkeypatch):
    """A subscriber's PLI is about the layer it receives: asking another layer's publisher
    encoder left a subscriber on the top layer frozen for good after a loss."""
    room, producer, _source = simulcast
    subscriber, recorder = await _subscribe_recorded(room, "patient")
    asked: list[int] = []
    patched = seam.send_pli

    async def send_pli(receiver, ssrc):  # type: ignore[no-untyped-def]
        asked.append(ssrc)
        await patched(receiver, ssrc)

    monkeypatch.setattr(seam, "send_pli", send_pli)
    try:
        consumer = room.router.consumers_of(producer)[0]
        await wait_for(lambda: consumer.layer == 2 and len(recorder.log) > 30, timeout=10)
        top = producer.layers[2].ssrc
        media_ssrc = next(iter(subscriber.video_ssrcs))  # type: ignore[attr-defined]
        asked.clear()
        await _video_receiver(subscriber)._send_rtcp_pli(media_ssrc)
        # a request inside a layer's keyframe window is sent when the window ends
        await wait_for(lambda: top in asked, timeout=2)
        assert set(asked) == {top}
    finally:
        await subscriber.close()


async def test_r1_a_long_call_keeps_forwarding_past_half_the_sequence_space(simulcast):
    """A stream forwarded without a re-base for over 32,768 packets (about 8 minutes of VGA
    video, 11 of audio) goes on: the check that drops packets from before a re-base once took
    every packet past half the 16-bit space for an old one, and dropped the next half."""
    room, producer, source = simulcast
    subscriber, recorder = await _subscribe_recorded(room, "patient")
    try:
        consumer = room.router.consumers_of(producer)[0]
        await wait_for(lambda: consumer.layer == 2 and len(recorder.log) > 30, timeout=10)
        switches = consumer.layer_switches
        # 120 packets a second on the top layer, each 300 numbers on: the 16-bit space in ~2 s
        source.step = 300
        start = len(recorder.log)
        # the subscriber reports (REMB) as a browser does, else its silence ends the transport
        await _hold_estimate(subscriber, 5_000_000, lambda: len(recorder.log) >= start + 600, 15)
        run = recorder.log[start : start + 600]
        assert consumer.layer_switches == switches  # no re-base hid it
        assert {entry[2] for entry in run} == {2}
        # every packet of the run arrived, in order: the Consumer keeps the source's steps, so
        # a packet dropped as "from before the re-base" shows as a step of 600 or more (a
        # bound on the time between packets failed once on a busy machine; it passed on its rerun)
        assert {(b[0] - a[0]) & 0xFFFF for a, b in itertools.pairwise(run)} == {300}
    finally:
        await subscriber.close()


async def test_r1_a_layer_the_publisher_stops_is_left_for_one_it_sends(simulcast):
    """Chrome stops its top simulcast layer for tens of seconds when its CPU is short (38 s in
    the busy-machine browser scenario, where the doctor's picture froze that long). A
    subscriber on that layer moves to the next one still sent, on its keyframe, within 3 s, and
    back up when the layer returns. No recorder takes the lowest layer here, so nothing but the
    stopped layer was forwarded to the subscriber's Consumer."""
    room, producer, source = simulcast
    subscriber, recorder = await _subscribe_recorded(room, "patient")
    try:
        consumer = room.router.consumers_of(producer)[0]
        await wait_for(lambda: consumer.layer == 2 and len(recorder.log) > 30, timeout=10)
        source.silent.add(2)
        stopped = time.monotonic()
        await _hold_estimate(subscriber, 5_000_000, lambda: consumer.layer == 1, 6)
        n = len(recorder.log)
        await _hold_estimate(subscriber, 5_000_000, lambda: len(recorder.log) > n + 30, 5)
        moved = next(entry[4] for entry in recorder.log if entry[4] > stopped and entry[2] == 1)
        assert moved - stopped < 3.0, f"the subscriber waited {moved - stopped:.1f} s"
        assert {entry[2] for entry in recorder.log[-20:]} == {1}
        source.silent.discard(2)
        await _hold_estimate(subscriber, 5_000_000, lambda: consumer.layer == 2, 10)
        n = len(recorder.log)
        await _hold_estimate(subscriber, 5_000_000, lambda: len(recorder.log) > n + 30, 5)
        assert recorder.switches()[-2:] == [(2, 1, True), (1, 2, True)]
        log = recorder.log
        assert {(b[0] - a[0]) & 0xFFFF for a, b in itertools.pairwise(log)} == {1}
    finally:
        await subscriber.close()
