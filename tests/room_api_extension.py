"""A media worker whose room API declares one method more than media.room_api.RoomApi.

Run as ``python -m room_api_extension`` (with this directory on PYTHONPATH) by
tests/signaling/test_workers.py: the method is declared and implemented here, and nothing else
is written for it to be callable across the worker channel.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from media.room import RoomMedia
from media.room_api import RoomApi
from media.worker_process import main


class EchoRoomApi(RoomApi, Protocol):
    async def echo(self, participant_id: str, text: str = "") -> dict[str, Any]:
        """Say who answered: the room, the participant, the text, the worker's pid."""
        ...


async def _echo(self: RoomMedia, participant_id: str, text: str = "") -> dict[str, Any]:
    return {"room": self.id, "participant_id": participant_id, "text": text, "pid": os.getpid()}


if __name__ == "__main__":
    RoomMedia.echo = _echo  # type: ignore[attr-defined]
    main(api=EchoRoomApi)
