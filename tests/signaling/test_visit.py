"""A doctor and a patient hold a video visit through the SFU (aiortc clients, real sockets)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from client import pair
from harness import start_server
from peers import wait_for
from probes import codec_probe, server_endpoints


def strictly_increasing(values: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


async def test_doctor_and_patient_exchange_audio_and_video_without_transcoding(server):
    with codec_probe() as probe:
        visit = await server.visit()
        doctor, patient = pair(server.url, visit)
        joined_at = {}
        try:
            for p in (doctor, patient):
                await p.connect()
                await p.join()
                joined_at[p.id] = time.monotonic()
                await p.publish()
                await p.subscribe()
            pairs = ((doctor, patient), (patient, doctor))

            def enough() -> bool:
                for receiver, sender in pairs:
                    video = receiver.received_from(sender.id, "video")
                    audio = receiver.received_from(sender.id, "audio")
                    if video is None or audio is None:
                        return False
                    if len(video.counters) < 60 or audio.frames < 100:
                        return False
                return True

            await wait_for(enough, timeout=20, message="media did not flow both ways")
            receivers, senders = server_endpoints(server.media)

            for receiver, sender in pairs:
                video = receiver.received_from(sender.id, "video")
                assert video is not None and video.first_frame_at is not None
                # the frames carry the publisher's painted counter, in order
                assert strictly_increasing(video.counters), video.counters
                assert video.counters[-1] < sender.video.count
                # at most a handful of frames missed on loopback
                assert len(video.counters) >= (video.counters[-1] - video.counters[0]) * 0.9
                first_frame = video.first_frame_at - joined_at[receiver.id]
                print(f"join-to-first-frame ({receiver.id[:8]}): {first_frame:.3f} s")
            # participants see each other with name and role
            roles = sorted(p["role"] for p in doctor.participants)
            assert roles == ["doctor", "patient"]
        finally:
            for p in (doctor, patient):
                await p.close()

    # the server created no decoder and no encoder; the clients did (so the probe works)
    assert len(receivers) >= 4 and len(senders) >= 4
    assert probe.decoders_of(receivers) == 0
    assert probe.encoders_of(senders) == 0
    assert len(probe.decoder_queues) >= 4
    assert len(probe.encoder_senders) >= 4


@pytest.fixture
async def unrecorded_server(tmp_path):
    """A server whose rooms are not recorded: a room's recorder asks for a keyframe at each
    segment, and this scenario is about a publisher that nobody asked."""
    srv = await start_server(tmp_path, recording=False)
    yield srv
    await srv.stop()


async def test_late_joiner_sees_a_picture_within_one_second(unrecorded_server):
    """The publisher sends a keyframe only when asked (its encoder's keyframe interval is 100 s,
    like a browser's); a participant joining 10 s later must still see a picture within 1 s."""
    server = unrecorded_server
    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        await doctor.connect()
        await doctor.join()
        await doctor.publish()
        sender = next(t.sender for t in doctor.publish_pc.getTransceivers() if t.kind == "video")
        asked = []
        real_send_keyframe = sender._send_keyframe

        def send_keyframe() -> None:
            asked.append(time.monotonic())
            real_send_keyframe()

        sender._send_keyframe = send_keyframe
        await wait_for(lambda: doctor.video.count > 0, timeout=5)
        started = time.monotonic()
        # the scenario: the patient arrives 10 s after the doctor started sending
        await asyncio.sleep(10)
        assert not asked, "the publisher was asked for a keyframe with nobody watching"

        await patient.connect()
        await patient.join()
        subscribed_at = time.monotonic()
        await patient.subscribe()
        await wait_for(
            lambda: (r := patient.received_from(doctor.id, "video")) is not None and r.counters,
            timeout=5,
            message="no picture for the late joiner",
        )
        video = patient.received_from(doctor.id, "video")
        delay = video.first_frame_at - subscribed_at
        print(f"late joiner: first decoded picture {delay:.3f} s after subscribing")
        assert delay < 1.0
        # it is a live picture, not one from the start of the stream
        assert video.counters[0] >= (subscribed_at - started) * 30 * 0.8
        # and it exists because the keyframe request reached the publisher
        assert asked and asked[0] >= subscribed_at
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_client_candidates_can_trickle_after_the_offer(server):
    """The publisher sends its offer without candidates, then trickles them; media flows."""
    from aiortc import RTCSessionDescription
    from peers import CounterTrack, client_pc

    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        await doctor.connect()
        await doctor.join()
        pc = doctor.publish_pc = client_pc()
        doctor.video = CounterTrack()
        pc.addTransceiver(doctor.video, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        lines = pc.localDescription.sdp.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        assert candidates
        bare = "\r\n".join(
            line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        ack = await doctor.call("publish", {"type": "offer", "sdp": bare + "\r\n"})
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
        for candidate in candidates:
            ack = await doctor.call(
                "ice_candidate",
                {
                    "target": "publish",
                    "candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0},
                },
            )
            assert ack["ok"], ack
        ack = await doctor.call("ice_candidate", {"target": "publish", "candidate": None})
        assert ack["ok"], ack

        await patient.connect()
        await patient.join()
        await patient.subscribe()
        await wait_for(
            lambda: (
                (r := patient.received_from(doctor.id, "video")) is not None
                and len(r.counters) > 10
            ),
            timeout=10,
            message="no media after trickled candidates",
        )
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_a_track_the_publisher_stops_is_renegotiated_away(server):
    from aiortc import RTCSessionDescription

    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        for p in (doctor, patient):
            await p.connect()
            await p.join()
        await doctor.publish()
        await patient.subscribe()
        await wait_for(
            lambda: (
                (r := patient.received_from(doctor.id, "video")) is not None and len(r.counters) > 5
            ),
            timeout=10,
        )
        answered = patient.offers_answered
        # the doctor turns the camera off for good: its transceiver stops sending
        pc = doctor.publish_pc
        video = next(t for t in pc.getTransceivers() if t.kind == "video")
        video.direction = "inactive"
        await pc.setLocalDescription(await pc.createOffer())
        ack = await doctor.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))

        await wait_for(lambda: patient.offers_answered > answered, timeout=5)
        kinds = {t["kind"] for t in patient.tracks.values() if t["active"]}
        assert kinds == {"audio"}
        producers = server.media.worker.routers[0].producers
        assert [p.kind for p in producers] == ["audio"]
        assert patient.received_from(doctor.id, "audio") is not None
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_a_keyframe_request_the_publisher_ignores_is_asked_again(unrecorded_server):
    """An encoder may skip a keyframe request (browsers ignore one that comes within ~300 ms of
    their last keyframe) or the request may be lost: a waiting subscriber asks again."""
    server = unrecorded_server
    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        await doctor.connect()
        await doctor.join()
        await doctor.publish()
        sender = next(t.sender for t in doctor.publish_pc.getTransceivers() if t.kind == "video")
        asked: list[float] = []
        real_send_keyframe = sender._send_keyframe

        def send_keyframe() -> None:
            asked.append(time.monotonic())
            if len(asked) > 2:  # the first two requests are ignored
                real_send_keyframe()

        sender._send_keyframe = send_keyframe
        await wait_for(lambda: doctor.video.count > 30, timeout=5)
        await patient.connect()
        await patient.join()
        subscribed_at = time.monotonic()
        await patient.subscribe()
        await wait_for(
            lambda: (r := patient.received_from(doctor.id, "video")) is not None and r.counters,
            timeout=5,
            message="no picture after an ignored keyframe request",
        )
        video = patient.received_from(doctor.id, "video")
        assert len(asked) >= 3
        assert video.first_frame_at - subscribed_at < 3.0
    finally:
        for p in (doctor, patient):
            await p.close()
