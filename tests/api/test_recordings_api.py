"""A visit's recordings through the REST API: recalled by its participants (R21), exported and
verified for the regulator (R22), refused and audited for anyone else."""

from __future__ import annotations

import os

from apiclient import Clinic
from people import booked_visit, verified_doctor
from sqlalchemy import select

from consult.models import AuditEvent
from consult.rooms import visit_room_id
from recording import RecordingStore
from web.keys import DATABASE, RECORDER, SIGNALING


async def _last_event(server, object_id: str) -> tuple[str, str]:
    async with server.app[DATABASE].session() as session:
        row = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.object_id == object_id)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        assert row is not None
        return row.action, row.result


async def test_recordings_are_listed_for_the_visit_and_exported_verified_R21_R22(
    server, clinic: Clinic
):
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    visit_id = booked.visit["id"]
    store: RecordingStore = server.app[RECORDER].store
    room_id = await visit_room_id(server.app[DATABASE], visit_id)  # recordings are the room's
    assert room_id is not None
    recording = store.open_session(room_id)
    recording.event("joined", {"participant_id": "p", "role": "doctor"})
    manifest = store.seal(recording)
    await server.app[SIGNALING].recording_sealed(room_id, manifest)  # as the room does

    listed = await doctor.ok("GET", f"/visits/{visit_id}/recordings")
    (session,) = listed["sessions"]
    assert session["session"] == recording.session and session["sealed"] is True
    # what the pages list it by, not its ids (issue 12): the visit's doctor and department,
    # the session's length and where it stands (this server builds no playback file)
    assert (listed["doctor_name"], listed["department_name"]) == ("王医生", "心血管内科")
    assert listed["visit_state"] == "booked"
    length = manifest["ended_at"] - manifest["started_at"]
    assert abs(session["duration_s"] - length) <= 0.1, (session, length)
    assert session["state"] == "sealed" and session["composite"] is False
    assert session["head"] == manifest["head"] and session["keep_until"] == manifest["keep_until"]
    assert await _last_event(server, visit_id) == ("visit.view", "ok")  # the recall is audited

    regulator = await clinic.person("regulator")
    export = await regulator.ok("GET", f"/exports/visits/{visit_id}/recordings")
    assert export["verified"] is True and export["problems"] == []
    assert export["sessions"][0]["head"] == manifest["head"]
    assert await _last_event(server, visit_id) == ("export.recordings", "ok")

    # a doctor who is not on this visit, and a patient of another visit: refused, audited
    stranger = await verified_doctor(clinic, name="李医生")
    reply = await stranger.call("GET", f"/visits/{visit_id}/recordings")
    assert reply.status in (403, 404), reply
    assert (await _last_event(server, visit_id))[1] in ("denied", "refused")
    reply = await doctor.call("GET", f"/exports/visits/{visit_id}/recordings")
    assert (reply.status, reply.code) == (403, "forbidden"), reply

    # an altered timeline is what the export then says
    timeline = recording.directory / "timeline.jsonl"
    os.chmod(timeline, 0o644)
    timeline.write_text(timeline.read_text().replace('"doctor"', '"nurse"'))
    export = await regulator.ok("GET", f"/exports/visits/{visit_id}/recordings")
    assert export["verified"] is False
    assert [p["code"] for p in export["problems"]] == ["timeline_altered"]


async def test_a_sessions_playback_file_streams_to_the_visits_participants_R21(
    server, clinic: Clinic, tmp_path
):
    import asyncio
    import shutil
    import subprocess

    from harness import skip_or_fail

    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg CLI (Debian package ffmpeg)")
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    visit_id = (await booked_visit(clinic, doctor, nurse)).visit["id"]
    store: RecordingStore = server.app[RECORDER].store
    recording = store.open_session(await visit_room_id(server.app[DATABASE], visit_id) or "")
    store.seal(recording)
    path = f"/visits/{visit_id}/recordings/{recording.session}/composite"
    reply = await doctor.call("GET", path)
    assert (reply.status, reply.code) == (404, "composite_not_ready"), reply
    await asyncio.to_thread(
        subprocess.run,
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=64x64:d=1",
            "-c:v",
            "libx264",
            "-f",
            "mp4",
            str(recording.directory / "composite.mp4"),
        ],
        check=True,
        timeout=60,
    )
    expected = (recording.directory / "composite.mp4").read_bytes()
    reply = await doctor.call("GET", path)
    assert reply.status == 200 and reply.raw == expected
    assert reply.headers["Content-Type"] == "video/mp4"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert await _last_event(server, visit_id) == ("recording.view", "ok")
    # a player seeks with Range requests
    reply = await doctor.call("GET", path, headers={"Range": "bytes=0-99"})
    assert reply.status == 206 and reply.raw == expected[:100]
    # no such session, a session that is not a name, a stranger
    reply = await doctor.call(
        "GET", f"/visits/{visit_id}/recordings/20200101T000000-abcdef/composite"
    )
    assert (reply.status, reply.code) == (404, "not_found"), reply
    reply = await doctor.call(
        "GET", f"/visits/{visit_id}/recordings/..%2F..%2Fsecret.key/composite"
    )
    assert reply.status == 404, reply
    stranger = await verified_doctor(clinic, name="李医生")
    reply = await stranger.call("GET", path)
    assert reply.status in (403, 404) and reply.raw != expected, reply
