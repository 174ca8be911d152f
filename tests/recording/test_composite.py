"""The playback composite: lip sync within 40 ms, duration within 1 % (R22, R23)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

from client import pair
from harness import start_server
from peers import wait_for
from recording_helpers import need_ffmpeg, plain_media, publish_tracks, sealed_session
from sync_tracks import PERIOD_S, BeepTrack, Epoch, FlashTrack, beep_onsets, flash_onsets

from recording.at_rest import is_encrypted


def _probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


async def test_composite_keeps_lip_sync_and_the_session_length_R22(tmp_path: Path) -> None:
    need_ffmpeg()
    server = await start_server(tmp_path, recording_segment_s=2.0, recording_composite=True)
    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        began = time.monotonic()
        for p in (doctor, patient):
            await p.connect()
            await p.join()
        epoch = Epoch()
        await publish_tracks(doctor, FlashTrack(epoch), BeepTrack(epoch))
        # a second tile that never flashes, and no sound
        await publish_tracks(patient, FlashTrack(Epoch(), flashes=False))
        await wait_for(lambda: epoch.start is not None, timeout=10)
        assert epoch.start is not None
        # three flash+beep pulses, then a little more
        remaining = epoch.start + 3 * PERIOD_S + 1.5 - time.monotonic()
        await asyncio.sleep(remaining)  # the publishers run in real time for this long
    finally:
        for p in (doctor, patient):
            await p.close()
    ended = time.monotonic()
    try:
        session, manifest = await sealed_session(server.config.recordings, visit.room_id)
        await wait_for(
            lambda: (session / "composite.json").exists(),
            timeout=120,
            interval=0.2,
            message="the composite was not built",
        )
        stored = session / "composite.mp4"
        assert is_encrypted(stored)  # SM4 at rest (R36): nothing plays without the key
        with plain_media(stored) as composite:
            flashes = flash_onsets(str(composite))
            beeps = beep_onsets(str(composite))
            assert len(flashes) == 3, flashes
            assert len(beeps) == 3, beeps
            skews = [abs(f - b) for f, b in zip(flashes, beeps, strict=True)]
            print(f"composite lip-sync skews (ms): {[round(s * 1000, 1) for s in skews]}")
            assert max(skews) <= 0.040, skews
            session_s = manifest["ended_at"] - manifest["started_at"]
            duration = _probe_duration(composite)
            assert abs(duration - session_s) <= 0.01 * session_s, (duration, session_s)
        # and the session the manifest names is the one the test ran
        assert abs(session_s - (ended - began)) <= 0.05 * (ended - began) + 0.5
        # the originals are untouched: the manifest still verifies
        from recording import RecordingStore, verify_room

        report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
        assert report.ok, report.describe()
    finally:
        await server.stop()
