"""The playback composite: lip sync within 40 ms, duration within 1 % (R22, R23); each tile
says who it is and the picture the time in Beijing time (issue 12)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import caption_frames
from client import pair
from harness import skip_or_fail, start_server
from peers import wait_for
from recording_helpers import need_ffmpeg, plain_media, publish_tracks, sealed_session
from sync_tracks import PERIOD_S, BeepTrack, Epoch, FlashTrack, beep_onsets, flash_onsets

from consult.visits import DEMO_DOCTOR_NAME, DEMO_PATIENT_NAME
from recording import captions
from recording.at_rest import is_encrypted
from recording.composite import plan

SHANGHAI = ZoneInfo("Asia/Shanghai")


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
    font = captions.find_cjk_font()
    if font is None:
        skip_or_fail("needs a Chinese font (fonts-noto-cjk: scripts/setup --test)")
    assert font is not None
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
            await p.leave()  # ended as a page ends it: the recording ends with the call
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
            info = json.loads((session / "composite.json").read_text())
            assert info["captions"] == {"font": font.file, "labels": 2}, info
            names = {doctor.id: f"医生 {DEMO_DOCTOR_NAME}", patient.id: f"患者 {DEMO_PATIENT_NAME}"}
            layout = plan(session)
            _check_captions(
                composite, font, [names[p] for p in layout.slots], layout.started_at, session_s
            )
        # and the session the manifest names is the one the test ran
        assert abs(session_s - (ended - began)) <= 0.05 * (ended - began) + 0.5
        # the originals are untouched: the manifest still verifies
        from recording import RecordingStore, verify_room

        report = verify_room(RecordingStore(server.config.recordings), visit.room_id)
        assert report.ok, report.describe()
    finally:
        await server.stop()


def _check_captions(
    composite: Path, font: captions.Font, labels: list[str], started_at: float, length_s: float
) -> None:
    """Each tile's label and the time read back from two frames two seconds apart, against
    the texts drawn alone: the right names, and the time in Beijing to the second (not UTC)."""
    times = []
    t = 0.5
    while len(times) < 2 and t < length_s - 0.5:
        if 0.25 <= (started_at + t) % 1 <= 0.75:  # far from a change of second
            times.append(t)
            t += 2.0
        else:
            t += 0.05
    assert len(times) == 2, (started_at, length_s)
    frames = caption_frames.frames_at(composite, times)

    def clock(at: float, zone: ZoneInfo | None = SHANGHAI) -> str:
        moment = datetime.fromtimestamp(started_at + at, zone or ZoneInfo("UTC"))
        return moment.strftime("%Y-%m-%d %H:%M:%S") + " 北京时间"

    clock_box = caption_frames.time_box()
    lit = []
    for (at, frame), other in zip(frames, reversed(frames), strict=True):
        right = caption_frames.render(font, labels, clock(at))
        for slot in range(len(labels)):
            box = caption_frames.label_box(slot, len(labels))
            shown, expected = box.of(frame), box.of(right)
            assert expected.sum() > 100 and shown.sum() > 100, f"no label in tile {slot}"
            off = caption_frames.mismatch(shown, expected)
            print(f"composite label {slot}: {off} of {int(expected.sum())} lit pixels off")
            assert off <= 0.2 * expected.sum(), (slot, off, int(expected.sum()))
        shown = clock_box.of(frame)
        lit.append(shown)
        wrong = {
            "two seconds off": caption_frames.render(font, labels, clock(other[0])),
            "UTC": caption_frames.render(font, labels, clock(at, None)),
        }
        for name, picture in wrong.items():
            share = caption_frames.agreement(shown, clock_box.of(right), clock_box.of(picture))
            print(f"composite time at {at:.2f} s: reads {share:.0%} as expected against {name}")
            assert share >= 0.75, f"the time reads as {name} ({share:.0%} as expected)"
    assert caption_frames.mismatch(lit[0], lit[1]) > 0  # the time moves
