"""Recordings encrypted at rest (R36): the composite on disk does not play without the session
key, the key on disk is wrapped by the configured key, and playback (whole file and Range
requests) decrypts as it streams."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess

from apiclient import Clinic
from harness import skip_or_fail
from people import booked_visit, verified_doctor

from consult.rooms import visit_room_id
from recording import RecordingStore
from recording.at_rest import HEADER_BYTES, MAGIC, encrypt_file, is_encrypted
from web.keys import DATABASE, RECORDER


async def test_r36_the_composite_is_stored_encrypted_and_played_back_decrypted(
    server, clinic: Clinic, tmp_path
):
    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg CLI (Debian package ffmpeg)")
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    visit_id = (await booked_visit(clinic, doctor, nurse)).visit["id"]
    store: RecordingStore = server.app[RECORDER].store
    room_id = await visit_room_id(server.app[DATABASE], visit_id)  # recordings are the room's
    assert room_id is not None
    recording = store.open_session(room_id)
    store.seal(recording)
    # the session key is stored wrapped only; the directory is the server's alone
    header = json.loads((recording.directory / "session.json").read_text())
    assert header["encryption"] == "sm4-ctr" and recording.data_key is not None
    assert recording.data_key.hex() not in json.dumps(header)
    assert stat.S_IMODE(recording.directory.stat().st_mode) == 0o700
    assert store.session_key(recording.directory) == recording.data_key

    plain = tmp_path / "plain.mp4"
    await asyncio.to_thread(
        subprocess.run,
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=1"),
            *("-c:v", "libx264", "-f", "mp4", str(plain)),
        ],
        check=True,
        timeout=60,
    )
    expected = plain.read_bytes()
    stored = recording.directory / "composite.mp4"
    encrypt_file(plain, stored, recording.data_key)  # as composite.build stores it
    raw = stored.read_bytes()
    assert is_encrypted(stored) and raw.startswith(MAGIC)
    assert b"ftyp" not in raw and expected[HEADER_BYTES:200] not in raw
    probe = await asyncio.to_thread(
        subprocess.run, ["ffprobe", "-v", "error", str(stored)], capture_output=True, check=False
    )
    assert probe.returncode != 0  # no playable media without the key

    path = f"/visits/{visit_id}/recordings/{recording.session}/composite"
    reply = await doctor.call("GET", path)
    assert reply.status == 200 and reply.raw == expected
    assert reply.headers["Content-Type"] == "video/mp4"
    assert reply.headers["Accept-Ranges"] == "bytes"
    for asked, want in (
        ("bytes=0-99", expected[:100]),
        ("bytes=1000-1499", expected[1000:1500]),
        ("bytes=-64", expected[-64:]),
        (f"bytes={len(expected) - 10}-", expected[-10:]),
    ):
        reply = await doctor.call("GET", path, headers={"Range": asked})
        assert reply.status == 206 and reply.raw == want, (asked, reply.status)
        assert reply.headers["Content-Range"].endswith(f"/{len(expected)}")
    reply = await doctor.call("GET", path, headers={"Range": f"bytes={len(expected) + 5}-"})
    assert reply.status == 416, reply
