"""What the signaling layer holds: open a room's recording, seal it, queue its composite."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from .composite import CompositeJobs
from .session import RecordingStore, SessionRecording


class Recorder:
    def __init__(self, store: RecordingStore, composites: CompositeJobs | None = None) -> None:
        self.store = store
        self.composites = composites

    async def open(self, room: str) -> SessionRecording:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.open_session, room)

    async def seal(
        self, recording: SessionRecording, *, interrupted: bool = False
    ) -> dict[str, Any]:
        """Seal ``recording`` (after its media closed) and queue its playback composite."""
        loop = asyncio.get_running_loop()
        seal = functools.partial(self.store.seal, recording, interrupted=interrupted)
        manifest = await loop.run_in_executor(None, seal)
        if self.composites is not None:
            self.composites.submit(recording.directory)
        return manifest
