"""Recording across the room's life: media workers, a dying worker, mute and unmute."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from pathlib import Path

from client import start_call
from harness import start_server
from peers import wait_for
from recording_helpers import probe_stream, sealed_session

from recording import RecordingStore, verify_room


def _track_lines(session: Path, track: str) -> list[dict]:
    text = (session / "tracks" / track / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


async def test_rooms_on_a_media_worker_are_recorded_and_a_dead_worker_leaves_a_sealed_recording_R22(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, media_workers=1, recording_segment_s=1.0)
    try:
        visit = await server.visit()
        doctor, patient = await start_call(server.url, visit)
        root = server.config.recordings
        (session,) = [p for p in (root / visit.room_id).iterdir() if p.is_dir()]

        def closed_segments() -> int:
            tracks = list((session / "tracks").iterdir())
            return (
                min(
                    (
                        sum(1 for x in _track_lines(session, t.name) if x["type"] == "segment")
                        for t in tracks
                    ),
                    default=0,
                )
                if len(tracks) == 4
                else 0
            )

        # the worker process writes the segments (the tap is in web.media_worker)
        await wait_for(lambda: closed_segments() >= 2, timeout=20, message="no segments")
        (worker,) = server.media.workers
        os.kill(worker.pid, signal.SIGKILL)
        session_dir, manifest = await sealed_session(root, visit.room_id)
        assert session_dir == session
        assert manifest["interrupted"] is True
        assert len(manifest["tracks"]) == 4
        report = verify_room(RecordingStore(root), visit.room_id)
        assert report.ok, report.describe()
        events = [
            json.loads(x)["event"] for x in (session / "timeline.jsonl").read_text().splitlines()
        ]
        assert "room_lost" in events
        for p in (doctor, patient):
            await p.close()
    finally:
        await server.stop()


async def test_a_mute_is_a_pause_of_the_recording_not_a_loss(tmp_path: Path) -> None:
    server = await start_server(tmp_path, recording_segment_s=1.0)
    try:
        visit = await server.visit()
        doctor, patient = await start_call(server.url, visit)
        producers = {
            p.kind: p
            for room in server.media.rooms
            for p in room.router.producers
            if p.app_data.get("participant_id") == doctor.id
        }
        for kind in ("video", "audio"):
            assert (await doctor.call("mute", {"kind": kind, "muted": True}))["ok"]
        await asyncio.sleep(1.5)  # muted for a while, in real time
        for kind in ("video", "audio"):
            assert (await doctor.call("mute", {"kind": kind, "muted": False}))["ok"]
        # a second and a half of media after the unmute
        video = producers["video"]
        before = video.packets_received
        await wait_for(lambda: video.packets_received > before + 45, timeout=10)
        await doctor.close()
        await patient.close()
        session, _manifest = await sealed_session(server.config.recordings, visit.room_id)
        for kind, producer in producers.items():
            lines = _track_lines(session, producer.id)
            segments = [x for x in lines if x["type"] == "segment"]
            end = lines[-1]
            # nothing counted lost for the muted time, and recording went on after it
            assert sum(s["lost"] for s in segments) == 0, kind
            assert end["lost"] == 0, kind
            assert segments[-1]["last_pts_ms"] - segments[0]["first_pts_ms"] > 2500, kind
            gaps = [b["first_pts_ms"] - a["last_pts_ms"] for a, b in itertools.pairwise(segments)]
            assert max(gaps) >= 1000, (kind, gaps)  # the muted time is a pause in the timeline
        events = [json.loads(x) for x in (session / "timeline.jsonl").read_text().splitlines()]
        mutes = [(e["kind"], e["muted"]) for e in events if e["event"] == "muted"]
        assert mutes == [("video", True), ("audio", True), ("video", False), ("audio", False)]
    finally:
        await server.stop()


async def test_h264_is_recorded_into_matroska_untranscoded(tmp_path: Path) -> None:
    import shutil

    from aiortc import RTCRtpSender, RTCSessionDescription
    from client import Participant
    from peers import CounterTrack, client_pc

    if shutil.which("ffprobe") is None:
        from harness import skip_or_fail

        skip_or_fail("needs ffprobe (Debian package ffmpeg)")
    server = await start_server(tmp_path, recording_segment_s=1.0)
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    try:
        await doctor.connect()
        await doctor.join()
        pc = doctor.publish_pc = client_pc()
        transceiver = pc.addTransceiver(CounterTrack(), direction="sendonly")
        h264 = [
            c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"
        ]
        transceiver.setCodecPreferences(h264)
        await pc.setLocalDescription(await pc.createOffer())
        ack = await doctor.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
        assert ack["ok"], ack
        await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))
        (producer,) = [p for r in server.media.rooms for p in r.router.producers]
        assert producer.codec.mimeType == "video/H264"
        track_dir = server.config.recordings / visit.room_id
        await wait_for(
            lambda: len(list(track_dir.glob("*/tracks/*/*.mkv"))) >= 3,
            timeout=20,
            message="no H.264 segments",
        )
    finally:
        await doctor.close()
    session, _manifest = await sealed_session(server.config.recordings, visit.room_id)
    await server.stop()
    lines = _track_lines(session, producer.id)
    assert lines[0]["codec"] == "h264"
    for segment in (x for x in lines if x["type"] == "segment"):
        stream = probe_stream(session / "tracks" / producer.id / segment["file"])
        assert stream["codec_name"] == "h264"
        assert int(stream["nb_read_frames"]) == segment["frames"] > 0


def test_h264_dimensions_come_from_the_sequence_parameter_set() -> None:
    import fractions

    import av

    from recording.depacketize import h264_dimensions

    for width, height in ((320, 240), (318, 238), (1280, 720)):
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = fractions.Fraction(1, 30)
        frame = av.VideoFrame(width=width, height=height, format="yuv420p")
        frame.pts = 0
        data = b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])
        assert h264_dimensions(data) == (width, height)
    assert h264_dimensions(b"\x00\x00\x01\x67") is None  # a truncated SPS


async def test_a_room_whose_recording_cannot_be_written_still_opens_and_says_so(
    tmp_path: Path,
) -> None:
    from client import Participant

    recordings = tmp_path / "recordings"
    recordings.write_text("not a directory")  # any path the store cannot create below
    server = await start_server(tmp_path, recordings_dir=recordings)
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    try:
        await doctor.connect()
        ack = await doctor.join()
        assert ack["recording"] is False  # the page shows no recording badge
        await doctor.publish()
    finally:
        await doctor.close()
        await server.stop()


async def test_packets_lost_before_the_server_are_named_and_repaired_ones_recorded_R22(
    tmp_path: Path,
) -> None:
    """Every 20th packet of both of the doctor's tracks is dropped at the server's input for a
    while: video is NACKed and repaired (nothing lost in the recording); audio is not NACKed,
    so its recording names exactly the dropped sequence numbers as gaps."""
    server = await start_server(tmp_path, recording_segment_s=1.0)
    try:
        visit = await server.visit()
        doctor, patient = await start_call(server.url, visit)
        producers = {
            p.kind: p
            for room in server.media.rooms
            for p in room.router.producers
            if p.app_data.get("participant_id") == doctor.id
        }
        dtls = producers["video"]._receiver.transport  # one bundled transport for both
        original = dtls._handle_rtp_data
        dropped: dict[int, list[int]] = {}
        seen: dict[int, int] = {}
        payload_types = {p.codec.payloadType: p.kind for p in producers.values()}

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            payload_type = data[1] & 0x7F
            if payload_type in payload_types:
                seen[payload_type] = seen.get(payload_type, 0) + 1
                if seen[payload_type] % 20 == 0:
                    dropped.setdefault(payload_type, []).append(int.from_bytes(data[2:4], "big"))
                    return
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = lossy
        await wait_for(lambda: min((len(v) for v in dropped.values()), default=0) >= 6, timeout=15)
        dtls._handle_rtp_data = original
        video = producers["video"]
        await wait_for(
            lambda: video.packets_recovered >= len(dropped[video.codec.payloadType]), timeout=5
        )
        for p in (doctor, patient):
            await p.close()
        session, _manifest = await sealed_session(server.config.recordings, visit.room_id)
    finally:
        await server.stop()
    report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
    assert report.ok, report.describe()
    figures = {t["track"]: t for t in report.sessions[0]["tracks"]}
    audio = producers["audio"]
    audio_dropped = dropped[audio.codec.payloadType]
    named = sorted(
        seq % 65536 for first, last in figures[audio.id]["gaps"] for seq in range(first, last + 1)
    )
    assert named == sorted(audio_dropped)
    assert figures[audio.id]["lost_packets"] == len(audio_dropped)
    assert figures[video.id]["lost_packets"] == 0  # repaired by NACK before it was recorded
    for producer in producers.values():
        end = _track_lines(session, producer.id)[-1]
        recorded = figures[producer.id]["packets"] + end["skipped_packets"]
        # every packet the SFU took in is in the recording, and what never came is named
        assert recorded == producer.packets_received - end["duplicates"] - end["late"], (
            producer.kind
        )
