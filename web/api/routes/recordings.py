"""A visit's recordings (R21: audio and video belong to the record and can be recalled; R23)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import StringConstraints

from consult import audit, rooms, visit_flow
from consult.crypto import FieldCipher
from consult.errors import VisitNotFound
from consult.visit_details import visit_details
from recording import RecordingStore
from recording.at_rest import is_encrypted, open_plain, plain_size
from recording.composite import COMPOSITE
from recording.errors import RecordingError

from ...keys import RECORDER
from ...recording_audit import verify_recordings
from ...recording_keys import key_wrapper
from ..call import Call
from ..errors import ApiError
from ..fields import Id, Input, Output
from ..registry import BinaryResponse, api
from .visits import VisitPath


class SessionPath(Input):
    visit_id: Id
    session: Annotated[str, StringConstraints(pattern=r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$")]


class Track(Output):
    track: str
    participant_id: str | None
    kind: str | None
    codec: str | None
    segments: int
    packets: int
    lost: int


class RecordingSession(Output):
    session: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    """From its start to its end (sealed sessions)."""
    state: str
    """``recording`` (still open), ``processing`` (sealed, the playback file being built),
    ``ready`` (it plays), ``no_video`` (a text-only visit: its record is the timeline),
    ``sealed`` (no playback file is built on this server)."""
    keep_until: str
    sealed: bool
    interrupted: bool | None
    head: str | None
    tracks: list[Track]
    composite: bool


class RecordingList(Output):
    """A visit's recordings with what a person lists them by (the page shows no ids)."""

    visit_id: str
    visit_state: str
    doctor_name: str
    department_name: str | None
    sessions: list[RecordingSession]


class RecordingExport(Output):
    visit_id: str
    sessions: list[RecordingSession]
    verified: bool
    problems: list[dict[str, Any]]
    figures: list[dict[str, Any]]
    checkpoint: dict[str, Any] | None
    """The newest signed checkpoint the recordings and the chain were checked against."""


async def _room(call: Call, visit_id: str) -> str:
    """The id of the visit's room: its recordings are kept under it."""
    room_id = await rooms.visit_room_id(call.db, visit_id)
    if room_id is None:
        raise VisitNotFound()
    return room_id


def _store(call: Call) -> RecordingStore:
    recorder = call.request.app[RECORDER]
    if recorder is not None:
        return recorder.store
    cipher = FieldCipher(call.config.field_secret())
    return RecordingStore(call.config.recordings, key_wrapper=key_wrapper(cipher))


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(float(seconds), UTC)


def _state(info: Any, composite: dict[str, Any] | None, builds: bool) -> str:
    """Where a session stands, for the list (:attr:`RecordingSession.state`)."""
    if not info.sealed:
        return "recording"
    if composite is not None:
        return "ready" if composite.get("file") else "no_video"
    return "processing" if builds else "sealed"


def _sessions(store: RecordingStore, visit_id: str, builds: bool = True) -> list[RecordingSession]:
    found = []
    for info in store.sessions(visit_id):
        manifest: dict[str, Any] = {}
        composite: dict[str, Any] | None = None
        if info.sealed:
            manifest = json.loads((info.directory / "manifest.json").read_text())
        with contextlib.suppress(OSError, ValueError):
            composite = json.loads((Path(info.directory) / "composite.json").read_text())
        ended = manifest.get("ended_at")
        found.append(
            RecordingSession(
                session=info.session,
                started_at=_when(info.started_at) or datetime.now(UTC),
                ended_at=_when(ended),
                duration_s=round(float(ended) - info.started_at, 1) if ended else None,
                state=_state(info, composite, builds),
                keep_until=info.keep_until,
                sealed=info.sealed,
                interrupted=manifest.get("interrupted"),
                head=manifest.get("head"),
                tracks=[
                    Track(
                        track=t["track"],
                        participant_id=t.get("participant_id"),
                        kind=t.get("kind"),
                        codec=t.get("codec"),
                        segments=int(t.get("segments", 0)),
                        packets=int(t.get("packets", 0)),
                        lost=int(t.get("lost", 0)),
                    )
                    for t in manifest.get("tracks", [])
                ],
                composite=(Path(info.directory) / "composite.json").exists(),
            )
        )
    return found


@api.operation("GET", "/visits/{visit_id}/recordings", action="visit.view", tag="recordings")
async def list_recordings(call: Call, path: VisitPath) -> RecordingList:
    """The visit's recording sessions, for those who may see the visit (the view is audited)."""
    visit = await visit_flow.get_visit_view(call.db, call.me, path.visit_id)
    details = await visit_details(call.db, path.visit_id)
    loop = asyncio.get_running_loop()
    room_id = await _room(call, path.visit_id)
    builds = call.config.recording_composite
    sessions = await loop.run_in_executor(None, _sessions, _store(call), room_id, builds)
    return RecordingList(
        visit_id=path.visit_id,
        visit_state=visit.state.value,
        doctor_name=details.doctor_name if details else "",
        department_name=details.department_name if details else None,
        sessions=sessions,
    )


@api.operation(
    "GET", "/exports/visits/{visit_id}/recordings", action="export.recordings", tag="recordings"
)
async def export_recordings(call: Call, path: VisitPath) -> RecordingExport:
    """For the regulator: the visit's recordings, every digest recomputed, and checked both
    ways against the audit chain and the signed checkpoints (R22, R24-R26; audited)."""
    store = _store(call)
    loop = asyncio.get_running_loop()
    room_id = await _room(call, path.visit_id)
    sessions = await loop.run_in_executor(None, _sessions, store, room_id)
    result = await verify_recordings(call.db, store, call.config, room_id)
    await audit.append(
        call.db,
        "export.recordings",
        actor=call.me,
        object_type="visit",
        object_id=path.visit_id,
        details={"sessions": len(sessions), "verified": result["ok"]},
    )
    return RecordingExport(
        visit_id=path.visit_id,
        sessions=sessions,
        verified=result["ok"],
        problems=result["problems"],
        figures=result["sessions"],
        checkpoint=result["checkpoint"],
    )


@api.operation(
    "GET",
    "/visits/{visit_id}/recordings/{session}/composite",
    action="visit.view",
    tag="recordings",
    produces=("video/mp4",),
)
async def get_composite(call: Call, path: SessionPath) -> BinaryResponse:
    """A session's playback file (MP4), for those who may see the visit (audited, R21, R24)."""
    await visit_flow.get_visit_view(call.db, call.me, path.visit_id)
    try:
        info = _store(call).session(await _room(call, path.visit_id), path.session)
    except RecordingError:
        raise ApiError(404, "not_found", "No such recording.") from None
    file = Path(info.directory) / COMPOSITE
    if not file.is_file():
        raise ApiError(404, "composite_not_ready", "The playback file is not built yet.")
    await audit.append(
        call.db,
        "recording.view",
        actor=call.me,
        object_type="visit",
        object_id=path.visit_id,
        details={"session": path.session},
    )
    name = f"{path.visit_id}-{path.session}.mp4"
    if not is_encrypted(file):  # a composite from before encryption at rest
        return BinaryResponse(b"", "video/mp4", name, path=file)
    key = await asyncio.to_thread(_store(call).session_key, Path(info.directory))
    return BinaryResponse(
        b"",
        "video/mp4",
        name,
        opener=lambda: open_plain(file, key),
        size=plain_size(file),
    )
