"""Helpers for recording tests (a plain module, not a conftest: `from conftest import` picks
whichever conftest pytest imported last): publish custom tracks, wait for a sealed session."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from client import Participant
from harness import skip_or_fail
from peers import client_pc, wait_for


async def publish_tracks(participant: Participant, *tracks: MediaStreamTrack) -> None:
    pc = participant.publish_pc = client_pc()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    ack = await participant.call("publish", {"type": "offer", "sdp": pc.localDescription.sdp})
    assert ack["ok"], ack
    await pc.setRemoteDescription(RTCSessionDescription(ack["sdp"], "answer"))


def sessions(root: Path, room: str) -> list[Path]:
    directory = root / room
    return sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []


async def sealed_session(root: Path, room: str, timeout: float = 20) -> tuple[Path, dict[str, Any]]:
    """The room's one session, once its manifest is written."""
    await wait_for(
        lambda: any((s / "manifest.json").exists() for s in sessions(root, room)),
        timeout=timeout,
        message="the recording was not sealed",
    )
    (session,) = sessions(root, room)
    return session, json.loads((session / "manifest.json").read_text())


def need_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        skip_or_fail("needs the ffmpeg CLI (Debian package ffmpeg)")


def session_key_of(path: Path) -> bytes | None:
    """The data key of the recording session holding ``path`` (a segment or composite), opened
    with the server's field key from its data directory, as the server does (R36)."""
    from consult.crypto import FieldCipher
    from recording import RecordingStore
    from web.recording_keys import key_wrapper

    session = next(p for p in path.parents if (p / "session.json").exists())
    key_file = next(p / "field.key" for p in session.parents if (p / "field.key").exists())
    store = RecordingStore(
        session.parent.parent, key_wrapper=key_wrapper(FieldCipher(key_file.read_text().strip()))
    )
    return store.session_key(session)


@contextlib.contextmanager
def plain_media(path: Path) -> Iterator[Path]:
    """``path`` itself when stored in the clear, else a decrypted copy (deleted afterwards)."""
    from recording.at_rest import decrypt_to, is_encrypted

    if not is_encrypted(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="tc-plain-") as scratch:
        target = Path(scratch) / path.name
        decrypt_to(path, target, session_key_of(path))
        yield target


def probe_stream(path: Path) -> dict[str, Any]:
    """ffprobe's view of a media file's first stream: ``codec_name`` and ``nb_read_frames``
    (every frame read), decrypted first when stored encrypted. Fails the test if ffprobe cannot
    read the file."""
    with plain_media(path) as plain:
        return _probe_stream(plain)


def _probe_stream(path: Path) -> dict[str, Any]:
    import subprocess

    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, f"ffprobe cannot read {path.name}: {done.stderr}"
    stream: dict[str, Any] = json.loads(done.stdout)["streams"][0]
    stream["nb_read_frames"] = int(stream["nb_read_frames"])
    return stream
