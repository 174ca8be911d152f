"""A call whose publisher moves onto its other provider's connection is recorded whole: the
recording verifies and its timeline names the gap (R22, R28, R31; issue 16 items 2 and 4).

An aiortc doctor plays the page with a connection per provider (127.0.0.1 is provider A's
address, 127.0.0.2 provider B's): microphone on both, camera on A's; A's connection goes
silent, the camera moves to B's (docs/providers.md, "Hot standby").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from client import Participant
from harness import start_server
from peers import CounterTrack, ToneTrack, wait_for
from recording_helpers import sealed_session

from media.room import LANE_SILENCE_S
from recording import RecordingStore, verify_room
from turn import NetworkProvider

pytestmark = pytest.mark.timeout(90)


async def _lane(doctor: Participant, path: int, camera: CounterTrack | None) -> RTCPeerConnection:
    pc = doctor.make_pc([])
    pc.addTransceiver(camera if camera is not None else "video", direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    ack = await doctor.call(
        "publish", {"type": "offer", "sdp": pc.localDescription.sdp, "path": path}
    )
    assert ack["ok"], ack
    await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
    return pc


def _sender(pc: RTCPeerConnection, kind: str):  # type: ignore[no-untyped-def]
    return next(t.sender for t in pc.getTransceivers() if t.kind == kind)


async def test_a_publisher_moving_to_its_other_provider_is_recorded_and_named_R22_R28(
    tmp_path: Path,
) -> None:
    providers = (NetworkProvider("a", "127.0.0.1"), NetworkProvider("b", "127.0.0.2"))
    server = await start_server(tmp_path, ice_addresses=(), providers=providers)
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    patient = Participant(server.url, visit.tokens["patient"], visit.visit_id)
    lanes: list[RTCPeerConnection] = []
    try:
        await doctor.connect()
        assert (await doctor.join())["media_paths"] == 2
        await patient.connect()
        await patient.join()
        camera = CounterTrack()
        lanes = [await _lane(doctor, 0, camera), await _lane(doctor, 1, None)]
        await patient.subscribe()

        def got(kind: str) -> int:
            received = patient.received_from(doctor.id, kind)
            return 0 if received is None else received.frames

        await wait_for(lambda: got("video") > 20 and got("audio") > 50, timeout=20)
        # A goes silent: the audio moves by itself, the camera as the page moves it
        _sender(lanes[0], "audio").replaceTrack(None)
        _sender(lanes[1], "video").replaceTrack(camera)
        _sender(lanes[0], "video").replaceTrack(None)
        counted = got("video"), got("audio")
        moved_at = time.monotonic()
        await wait_for(
            lambda: got("video") > counted[0] + 20 and got("audio") > counted[1] + 50, timeout=10
        )
        assert time.monotonic() - moved_at < 5
    finally:
        for participant in (doctor, patient):
            await participant.close()
        for pc in lanes:
            await pc.close()
    session, _manifest = await sealed_session(server.config.recordings, visit.room_id)
    await server.stop()

    events = [json.loads(line) for line in (session / "timeline.jsonl").read_text().splitlines()]
    gaps = [e for e in events if e["event"] == "path_failover"]
    assert [(g["transport"], g["from_provider"], g["to_provider"]) for g in gaps] == [
        ("publish", "a", "b")
    ], gaps
    assert (
        gaps[0]["participant_id"] == doctor.id and LANE_SILENCE_S * 1000 <= gaps[0]["gap_ms"] < 1500
    )
    report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
    assert report.ok, report
