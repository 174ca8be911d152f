"""``kill -9`` of the server mid-visit: closed segments stay intact and verifiable, the open
segment stays readable, and the next start seals what survived (R22)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from client import Participant, sees
from peers import wait_for
from recording_helpers import need_ffmpeg, plain_media, probe_stream, sessions

from recording import RecordingStore, verify_room


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update(
        TELECONSULT_DATA_DIR=str(data),
        TELECONSULT_PORT=str(port),
        TELECONSULT_ICE_ADDRESSES="127.0.0.1",
        TELECONSULT_RECORDING_SEGMENT_S="1",
        TELECONSULT_RECORDING_COMPOSITE="0",
    )
    return env


def _teleconsult() -> str:
    return str(Path(sys.executable).parent / "teleconsult")


async def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [_teleconsult(), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/room", timeout=1):
                return True
        except OSError:
            return False

    await wait_for(answers, timeout=30, interval=0.1, message="the server did not start")
    return process


async def _run(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, check=False, timeout=60
    )


def _segments_listed(track: Path) -> list[str]:
    lines = (track / "manifest.jsonl").read_text().splitlines()
    return [json.loads(x)["file"] for x in lines if '"type": "segment"' in x]


def _readable_frames(path: Path) -> int:
    return int(probe_stream(path)["nb_read_frames"])


async def test_kill_9_leaves_closed_segments_verifiable_and_the_open_one_readable_R22(
    tmp_path: Path,
) -> None:
    need_ffmpeg()
    data, port, log = tmp_path / "data", _free_port(), tmp_path / "server.log"
    env = _env(data, port)
    demo = await _run([_teleconsult(), "demo", "--json"], env)
    assert demo.returncode == 0, demo.stderr
    links = json.loads(demo.stdout)["links"]
    visit_id, room = json.loads(demo.stdout)["visit_id"], json.loads(demo.stdout)["room_id"]
    tokens = {role: link.split("token=")[1] for role, link in links.items()}
    process = await _start(env, port, log)
    url = f"http://127.0.0.1:{port}"
    doctor = Participant(url, tokens["doctor"], visit_id)
    patient = Participant(url, tokens["patient"], visit_id)
    try:
        for p in (doctor, patient):
            await p.connect()
            await p.join()
            await p.publish()
            await p.subscribe()
        await wait_for(lambda: sees(doctor, patient, 5) and sees(patient, doctor, 5), timeout=15)
        root = data / "recordings"
        (session,) = sessions(root, room)
        tracks = sorted((session / "tracks").iterdir())
        assert len(tracks) == 4
        await wait_for(
            lambda: all(len(_segments_listed(t)) >= 2 for t in tracks),
            timeout=20,
            message="segments were not closed",
        )
        await asyncio.sleep(0.5)  # into the middle of the next segment
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
    finally:
        for p in (doctor, patient):
            await p.close()
        if process.poll() is None:
            process.kill()
    store = RecordingStore(root)
    report = verify_room(store, room)
    # the session was never sealed, and nothing else is wrong: every closed segment verifies
    assert [p.code for p in report.problems] == ["unsealed"]
    listed_ok = sum(t["segments_ok"] for t in report.sessions[0]["tracks"])
    assert listed_ok == sum(len(_segments_listed(t)) for t in tracks) >= 8
    open_segments = [
        f
        for t in tracks
        for f in t.iterdir()
        if f.name != "manifest.jsonl" and f.name not in _segments_listed(t)
    ]
    assert open_segments, "no segment was open at the kill"
    reported_open = [f for t in report.sessions[0]["tracks"] for f in t["open_segments"]]
    assert sorted(reported_open) == sorted(f.name for f in open_segments)
    for path in open_segments:
        # the open segment plays up to the frames written before the kill
        # (decrypted with the session's key: segments are SM4-encrypted at rest, R36)
        assert _readable_frames(path) > 0, path.name
        with plain_media(path) as plain:
            done = await _run(["ffmpeg", "-v", "error", "-i", str(plain), "-f", "null", "-"])
        assert done.returncode == 0, done.stderr
    # the next start seals what survived, open segments as partial, into the audit chain
    process = await _start(env, port, log)
    try:
        report = verify_room(store, room)
        assert report.ok, report.describe()
        (figures,) = report.sessions
        assert figures["interrupted"] is True
        assert sum(t["partial_segments"] for t in figures["tracks"]) == len(open_segments)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    done = await _run([_teleconsult(), "recording", "verify", room, "--json"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
