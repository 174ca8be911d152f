"""The SFU core without signaling: aiortc peers on loopback talk to a Router directly."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from peers import CounterTrack, Subscriber, ToneTrack, client_pc, wait_for

from media import KEYFRAME_WINDOW_S, ClosedError, MediaWorker, Producer, Router, open_objects


@dataclass
class Call:
    worker: MediaWorker
    router: Router
    publisher: RTCPeerConnection
    video: Producer
    subscriber: Subscriber
    keyframe_requests: list[float]


@pytest.fixture
async def call():
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    router = worker.get_router("room")
    publisher = client_pc()
    publisher.addTransceiver(CounterTrack(), direction="sendonly")
    publisher.addTransceiver(ToneTrack(), direction="sendonly")
    keyframe_requests: list[float] = []
    sender = publisher.getTransceivers()[0].sender
    real = sender._send_keyframe

    def counted() -> None:
        keyframe_requests.append(time.monotonic())
        real()

    sender._send_keyframe = counted
    await publisher.setLocalDescription(await publisher.createOffer())
    result = await router.publish(
        router.create_transport("publish"), publisher.localDescription.sdp
    )
    await publisher.setRemoteDescription(RTCSessionDescription(result.answer_sdp, "answer"))
    video = next(p for p in result.added if p.kind == "video")

    transport = router.create_transport("subscribe")
    for producer in result.added:
        router.consume(transport, producer)
    subscriber = Subscriber(client_pc())
    await subscriber.pc.setRemoteDescription(
        RTCSessionDescription(await transport.create_offer(), "offer")
    )
    await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
    await transport.apply_answer(subscriber.pc.localDescription.sdp)
    await wait_for(
        lambda: any(len(r.counters) > 10 for r in subscriber.by_mid.values()), timeout=10
    )
    yield Call(worker, router, publisher, video, subscriber, keyframe_requests)
    await subscriber.close()
    await publisher.close()
    await worker.close()


async def test_keyframe_requests_are_coalesced_per_window(call):
    await wait_for(lambda: call.video.keyframe_requests_sent >= 1, timeout=2)
    # let the window of the subscription's own request pass
    await wait_for(
        lambda: time.monotonic() - call.video.layers[0]._last_keyframe_request > KEYFRAME_WINDOW_S,
        timeout=2,
    )
    sent = call.video.keyframe_requests_sent
    at_publisher = len(call.keyframe_requests)
    for _ in range(20):
        call.video.request_keyframe()
    assert call.video.keyframe_requests_sent == sent + 1  # one goes at once
    first = call.video.layers[0]._last_keyframe_request
    for _ in range(20):
        call.video.request_keyframe()
    assert call.video.keyframe_requests_sent == sent + 1  # the rest wait for the window
    await wait_for(lambda: call.video.keyframe_requests_sent == sent + 2, timeout=2)
    second = call.video.layers[0]._last_keyframe_request
    assert second - first >= KEYFRAME_WINDOW_S * 0.95
    # forty requests made two PLIs, and both reached the publisher
    await wait_for(lambda: len(call.keyframe_requests) == at_publisher + 2, timeout=2)
    await wait_for(lambda: time.monotonic() - second > KEYFRAME_WINDOW_S * 1.5, timeout=2)
    assert call.video.keyframe_requests_sent == sent + 2


async def test_subscriber_pli_reaches_the_publisher(call):
    receiver = next(t.receiver for t in call.subscriber.pc.getTransceivers() if t.kind == "video")
    ssrc = next(iter(receiver._RTCRtpReceiver__remote_streams))
    await wait_for(
        lambda: time.monotonic() - call.video.layers[0]._last_keyframe_request > KEYFRAME_WINDOW_S,
        timeout=2,
    )
    before = len(call.keyframe_requests)
    await receiver._send_rtcp_pli(ssrc)
    await wait_for(lambda: len(call.keyframe_requests) > before, timeout=2)
    consumer = call.router.consumers_of(call.video)[0]
    assert consumer.keyframe_requests_received >= 1


async def test_subscriber_nack_is_answered_from_history(call):
    receiver = next(t.receiver for t in call.subscriber.pc.getTransceivers() if t.kind == "video")
    ssrc, stats = next(iter(receiver._RTCRtpReceiver__remote_streams.items()))
    consumer = call.router.consumers_of(call.video)[0]
    recent = [(stats.max_seq - i) & 0xFFFF for i in range(1, 4)]
    too_old = (stats.max_seq - 5000) & 0xFFFF
    await receiver._send_rtcp_nack(ssrc, sorted(recent))
    await receiver._send_rtcp_nack(ssrc, [too_old])
    await wait_for(lambda: consumer.packets_resent >= 3, timeout=2)
    assert consumer.packets_resent == 3


async def test_close_cascades_and_closed_objects_refuse_use(call):
    consumer = call.router.consumers_of(call.video)[0]
    await call.video.close()
    assert consumer.closed and call.router.consumers_of(call.video) == []
    assert call.video.id not in call.router.dump()["producers"]
    transport = call.router.create_transport("subscribe")
    with pytest.raises(ClosedError):
        transport.consume(call.video)
    await call.router.close()
    assert call.router.dump() == {
        "id": "room",
        "closed": True,
        "transports": [],
        "producers": {},
        "consumers": {},
    }
    with pytest.raises(ClosedError):
        call.router.create_transport("publish")
    await call.worker.close()
    assert open_objects() == {}


async def test_h264_when_the_publisher_offers_only_that():
    from aiortc import RTCRtpSender

    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    router = worker.get_router("h264")
    publisher = client_pc()
    transceiver = publisher.addTransceiver(CounterTrack(), direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    subscriber = Subscriber(client_pc())
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        assert "VP8" not in publisher.localDescription.sdp
        result = await router.publish(
            router.create_transport("publish"), publisher.localDescription.sdp
        )
        await publisher.setRemoteDescription(RTCSessionDescription(result.answer_sdp, "answer"))
        (producer,) = result.added
        assert producer.codec.mimeType == "video/H264"

        transport = router.create_transport("subscribe")
        router.consume(transport, producer)
        offer = await transport.create_offer()
        assert "H264/90000" in offer and "VP8/90000" not in offer
        await subscriber.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
        await transport.apply_answer(subscriber.pc.localDescription.sdp)
        await wait_for(
            lambda: any(len(r.counters) > 10 for r in subscriber.by_mid.values()), timeout=10
        )
        (received,) = subscriber.by_mid.values()
        assert all(b > a for a, b in zip(received.counters, received.counters[1:], strict=False))
    finally:
        await subscriber.close()
        await publisher.close()
        await worker.close()


async def test_one_subscriber_receives_every_track_of_two_publishers():
    """Two audio and two video tracks on one subscribe connection all flow (one BUNDLE)."""
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    router = worker.get_router("three")
    publishers = []
    subscriber = Subscriber(client_pc())
    try:
        producers = []
        for _ in range(2):
            pc = client_pc()
            publishers.append(pc)
            pc.addTransceiver(ToneTrack(), direction="sendonly")  # audio first, then video
            pc.addTransceiver(CounterTrack(), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            result = await router.publish(
                router.create_transport("publish"), pc.localDescription.sdp
            )
            await pc.setRemoteDescription(RTCSessionDescription(result.answer_sdp, "answer"))
            producers += result.added
        transport = router.create_transport("subscribe")
        consumers = [router.consume(transport, p) for p in producers]
        await subscriber.pc.setRemoteDescription(
            RTCSessionDescription(await transport.create_offer(), "offer")
        )
        await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
        await transport.apply_answer(subscriber.pc.localDescription.sdp)
        await wait_for(
            lambda: (
                len(subscriber.by_mid) == 4
                and all(r.frames > 20 for r in subscriber.by_mid.values())
            ),
            timeout=10,
            message="not every track flows",
        )
        assert all(c.packets_sent > 20 for c in consumers)
        assert sorted(r.kind for r in subscriber.by_mid.values()) == [
            "audio",
            "audio",
            "video",
            "video",
        ]
    finally:
        await subscriber.close()
        for pc in publishers:
            await pc.close()
        await worker.close()


async def test_the_worker_trims_the_heap_and_stops_doing_so_when_closed():
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    worker.get_router("any")
    trimmer = worker._trimmer
    assert trimmer is not None and trimmer.active  # glibc on Debian
    await worker.close()
    assert not trimmer.active
