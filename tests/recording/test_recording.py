"""Every visit is recorded, completely and verifiably (R22, R23)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from client import start_call
from harness import Server, start_server
from recording_helpers import need_ffmpeg, plain_media, probe_stream, sealed_session

from consult.audit_verify import events_for, verify_chain
from recording import MIN_RETENTION_DAYS, RecordingStore, verify_room
from recording.at_rest import is_encrypted
from web.keys import DATABASE


def _frames_in(stored: Path) -> tuple[int, str]:
    """Frames ffprobe reads from one segment file on its own (decrypted), and its first frame's
    type."""
    with plain_media(stored) as path:
        return _frames_in_plain(path)


def _frames_in_plain(path: Path) -> tuple[int, str]:
    frames = probe_stream(path)["nb_read_frames"]
    first = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "0",
            "-show_entries",
            "frame=pict_type,key_frame",
            "-read_intervals",
            "%+#1",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = json.loads(first)["frames"][0].get("key_frame")
    return frames, str(key)


async def _record_visit(server: Server, seconds: float) -> tuple[str, list[Any]]:
    """A two-participant visit of about ``seconds``; returns the visit id and its Producers."""
    visit = await server.visit()
    doctor, patient = await start_call(server.url, visit)
    producers = [p for room in server.media.rooms for p in room.router.producers]
    try:
        await asyncio.sleep(seconds)  # the call runs in real time for this long
    finally:
        await doctor.close()
        await patient.close()
    return visit.room_id, producers


def _track_lines(session: Path, track: str) -> list[dict[str, Any]]:
    text = (session / "tracks" / track / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


async def test_a_visit_is_recorded_packet_for_packet_R22(tmp_path: Path) -> None:
    need_ffmpeg()
    server = await start_server(tmp_path, recording_segment_s=1.0)
    try:
        room, producers = await _record_visit(server, 4.0)
        session, manifest = await sealed_session(server.config.recordings, room)
        assert {t["track"] for t in manifest["tracks"]} == {p.id for p in producers}
        assert len(producers) == 4  # audio and video of two participants
        for producer in producers:
            lines = _track_lines(session, producer.id)
            end = lines[-1]
            assert end["type"] == "end" and end["dropped"] == 0 and end["failed"] is None
            segments = [line for line in lines if line["type"] == "segment"]
            assert len(segments) >= 3, producer.kind
            recorded = sum(s["packets"] for s in segments)
            lost = sum(s["lost"] for s in segments)
            # every packet the SFU took in for this track is in the recording, or named lost
            received = producer.packets_received - end["duplicates"] - end["late"]
            assert recorded + end["skipped_packets"] + lost == received, producer.kind
            assert lost == 0 and end["skipped_packets"] == 0  # loopback: nothing lost
            for segment in segments:
                # each segment plays on its own, video from a keyframe
                stored = session / "tracks" / producer.id / segment["file"]
                # R36: SM4 at rest, no Matroska/EBML magic on disk; played back decrypted
                assert is_encrypted(stored) and b"\x1a\x45\xdf\xa3" not in stored.read_bytes()
                frames, first_key = _frames_in(stored)
                assert frames == segment["frames"], (producer.kind, segment["file"])
                assert first_key == "1"
                assert segment["first_seq"] <= segment["last_seq"]
            # consecutive segments continue each other's sequence numbers
            for before, after in itertools.pairwise(segments):
                assert after["first_seq"] == before["last_seq"] + 1
            assert any(s["sender_reports"] for s in segments)  # wall-clock time from RTCP SRs
        report = verify_room(RecordingStore(server.config.recordings), room)
        assert report.ok, report.describe()
        # R23: kept at least three years
        started = datetime.fromtimestamp(manifest["started_at"]).date()
        assert date.fromisoformat(manifest["keep_until"]) >= started + timedelta(days=3 * 365)
        # R22: the sealed head is in the audit chain, and the chain holds
        db = server.app[DATABASE]
        # the head enters the chain just after the manifest reaches the disk
        for _attempt in range(100):  # up to 5 s
            sealed = [e for e in await events_for(db, room) if e.action == "recording.sealed"]
            if sealed:
                break
            await asyncio.sleep(0.05)
        assert len(sealed) == 1
        assert json.loads(sealed[0].details)["head"] == manifest["head"]
        assert (await verify_chain(db)).ok
        # the timeline names the room's events, and the manifest names the timeline
        events = [
            json.loads(x)["event"] for x in (session / "timeline.jsonl").read_text().splitlines()
        ]
        assert events[0] == "recording_started" and events[-1] == "recording_stopped"
        assert events.count("joined") == 2 and events.count("left") == 2
        assert manifest["timeline"]["file"] == "timeline.jsonl"
        assert manifest["timeline"]["events"] == len(events)
    finally:
        await server.stop()


def _teleconsult(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "teleconsult"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def _problems(data_dir: Path, room: str) -> set[tuple[str, str | None]]:
    report = verify_room(RecordingStore(data_dir / "recordings"), room)
    return {(p.code, p.segment) for p in report.problems}


async def test_verify_names_an_altered_a_missing_and_swapped_segments_R22(tmp_path: Path) -> None:
    server = await start_server(tmp_path, recording_segment_s=1.0)
    try:
        room, producers = await _record_visit(server, 5.0)
        session, manifest = await sealed_session(server.config.recordings, room)
    finally:
        await server.stop()
    data = server.config.data_dir
    video = next(p.id for p in producers if p.kind == "video")
    assert _problems(data, room) == set()
    # the command: figures, and exit 0 when everything verifies (against the audit chain too)
    done = _teleconsult("recording", "verify", room, "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["sessions"][0]["head"] == manifest["head"]
    track = next(t for t in result["sessions"][0]["tracks"] if t["track"] == video)
    assert track["segments_ok"] == track["segments"] >= 4
    assert track["lost_packets"] == 0 and track["gaps"] == []

    def tampered(name: str) -> tuple[Path, Path]:
        copy = tmp_path / name
        shutil.copytree(data, copy)
        track_dir = copy / "recordings" / room / session.name / "tracks" / video
        for path in track_dir.iterdir():
            os.chmod(path, 0o644)
        return copy, track_dir

    # one changed byte
    copy, track_dir = tampered("altered")
    segment = track_dir / "000002.webm"
    blob = bytearray(segment.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    segment.write_bytes(bytes(blob))
    assert _problems(copy, room) == {("segment_altered", "000002.webm")}
    done = _teleconsult("recording", "verify", room, "--data-dir", str(copy))
    assert (
        done.returncode == 1 and "segment_altered" in done.stdout and "000002.webm" in done.stdout
    )
    # a deleted segment
    copy, track_dir = tampered("deleted")
    (track_dir / "000003.webm").unlink()
    assert _problems(copy, room) == {("segment_missing", "000003.webm")}
    # two swapped segments
    copy, track_dir = tampered("swapped")
    a, b = track_dir / "000002.webm", track_dir / "000004.webm"
    swap = track_dir / "swap"
    a.rename(swap), b.rename(a), swap.rename(b)
    assert _problems(copy, room) == {
        ("segment_reordered", "000002.webm"),
        ("segment_reordered", "000004.webm"),
    }
    # a segment and its manifest line both removed: the chain breaks
    copy, track_dir = tampered("erased")
    (track_dir / "000003.webm").unlink()
    lines = (track_dir / "manifest.jsonl").read_text().splitlines()
    kept = [line for line in lines if '"file": "000003.webm"' not in line]
    (track_dir / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    assert ("manifest_altered", None) in _problems(copy, room)
    # a file slipped in
    copy, track_dir = tampered("extra")
    shutil.copy(track_dir / "000001.webm", track_dir / "000099.webm")
    assert _problems(copy, room) == {("segment_extra", "000099.webm")}


def test_recordings_are_kept_at_least_three_years_R23(tmp_path: Path) -> None:
    import pytest

    from recording.errors import RetentionError

    with pytest.raises(ValueError):
        RecordingStore(tmp_path, retention_days=MIN_RETENTION_DAYS - 1)
    store = RecordingStore(tmp_path)
    recording = store.open_session("room-1")
    store.seal(recording)
    (info,) = store.sessions("room-1")
    assert date.fromisoformat(info.keep_until) >= date.today() + timedelta(days=3 * 365)
    # nothing removes it earlier: not a purge, not a removal
    assert store.purge() == []
    a_day_before = (date.fromisoformat(info.keep_until) - timedelta(days=1)).isoformat()
    assert store.purge(today=a_day_before) == []
    with pytest.raises(RetentionError):
        store.remove(info)
    assert info.directory.exists()
    # on its keep-until date it is still kept; the day after it may go
    assert store.purge(today=info.keep_until) == []
    the_day_after = (date.fromisoformat(info.keep_until) + timedelta(days=1)).isoformat()
    assert [i.session for i in store.purge(today=the_day_after)] == [info.session]
    assert not info.directory.exists()
    # configuration cannot ask for less either
    from web.config import load_config

    with pytest.raises(ValueError):
        load_config(environ={"TELECONSULT_RECORDING_RETENTION_DAYS": "365"})


def test_recording_names_are_never_paths(tmp_path: Path) -> None:
    import pytest

    from recording.errors import BadName

    store = RecordingStore(tmp_path / "recordings")
    for name in ("../etc", "a/b", "", ".hidden", "x" * 200, "..", "a\x00b"):
        with pytest.raises(BadName):
            store.open_session(name)
        with pytest.raises(BadName):
            store.sessions(name)
    assert not (tmp_path / "etc").exists()
