"""The SFU core without signaling: aiortc peers on loopback talk to a Router directly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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


async def _past_the_first_window(call: Call) -> None:
    """Once the subscription's own keyframe request went, and its window has passed."""
    await wait_for(lambda: call.video.keyframe_requests_sent >= 1, timeout=2)
    await wait_for(
        lambda: time.monotonic() - call.video.layers[0]._last_keyframe_request > KEYFRAME_WINDOW_S,
        timeout=2,
    )


async def test_keyframe_requests_are_coalesced_per_window(call):
    await _past_the_first_window(call)
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


async def test_a_keyframe_asked_now_goes_at_once_inside_the_window_R28(call):
    """After a network path switch the request goes at once (the one just before went the dead
    way); the request waiting for the window is then not sent again."""
    await _past_the_first_window(call)
    sent = call.video.keyframe_requests_sent
    at_publisher = len(call.keyframe_requests)
    call.video.request_keyframe()
    call.video.request_keyframe()  # inside the window: waits for its end
    assert call.video.keyframe_requests_sent == sent + 1
    call.video.request_keyframe(now=True)
    assert call.video.keyframe_requests_sent == sent + 2  # at once, the window notwithstanding
    await wait_for(lambda: len(call.keyframe_requests) == at_publisher + 2, timeout=2)
    last = call.video.layers[0]._last_keyframe_request
    await wait_for(lambda: time.monotonic() - last > KEYFRAME_WINDOW_S * 1.5, timeout=2)
    assert call.video.keyframe_requests_sent == sent + 2  # the waiting one was taken by it


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
        "sinks": {},
    }
    with pytest.raises(ClosedError):
        call.router.create_transport("publish")
    await call.worker.close()
    assert open_objects() == {}


class CountingSink:
    """A sink of the media graph as recording/ makes one (media.graph.Sink)."""

    layers = (0,)
    estimate = None

    def __init__(self, sink_id: str) -> None:
        self.id = sink_id
        self.packets = 0
        self.reports: list[tuple[int, int]] = []
        self.resumed = 0
        self.closed = False

    async def on_rtp(self, packet: Any, layer: int, ntp: int, send_time: bytes) -> None:
        self.packets += 1

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.reports.append((ntp_timestamp, rtp_timestamp))

    def on_resume(self) -> None:
        self.resumed += 1

    async def close(self) -> None:
        self.closed = True


async def test_the_router_holds_the_graph_and_sinks_close_with_their_producer(call):
    """The Router holds ``producer -> sinks`` and ``sink -> producer``; a Consumer and a
    recorder are sinks alike: fed while attached, told of resumes, closed with the Producer."""
    router, video = call.router, call.video
    consumer = router.consumers_of(video)[0]
    await wait_for(lambda: video.sender_report is not None, timeout=5)
    tap = CountingSink("tap")
    router.attach(video, tap)
    assert tap.reports == [video.sender_report]  # the last one, at once
    dump = router.dump()
    assert dump["producers"][video.id] == sorted([consumer.id, "tap"])
    assert dump["consumers"][consumer.id] == video.id and dump["sinks"] == {"tap": video.id}
    assert router.producer_of(tap) is video and router.producer_of(consumer) is video
    assert router.sinks_of(video) == [consumer, tap] and video.sinks == (consumer, tap)
    await wait_for(lambda: tap.packets > 10, timeout=5)
    video.pause()
    video.resume()
    assert tap.resumed == 1

    # detached, it gets nothing more while the Consumer goes on
    assert router.detach(tap) is video
    assert router.dump()["sinks"] == {} and video.sinks == (consumer,)
    held, sent = tap.packets, consumer.packets_sent
    await wait_for(lambda: consumer.packets_sent > sent + 10, timeout=5)
    assert tap.packets == held and not tap.closed

    # attached again, it closes with its Producer, and the graph forgets both
    router.attach(video, tap)
    await video.close()
    assert tap.closed and consumer.closed
    dump = router.dump()
    assert video.id not in dump["producers"] and video.id not in dump["consumers"].values()
    assert dump["sinks"] == {}
    assert router.producer_of(tap) is None
    with pytest.raises(ClosedError):
        router.attach(video, CountingSink("late"))


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
