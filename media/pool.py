"""Media pools: where rooms' media live. In this process, or spread over worker processes.

Both kinds hand out rooms with the room API (:class:`media.room_api.RoomApi`: every method async,
arguments and results plain data), so the signaling layer does not know which it has.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .errors import ClosedError, ServerBusy
from .graph import TapFactory
from .loop_lag import THRESHOLD_S
from .room import EventSink, RoomMedia
from .room_api import RoomApi
from .worker import MediaWorker

logger = logging.getLogger(__name__)


class MediaPool(Protocol):
    @property
    def closed(self) -> bool: ...

    async def start(self) -> None: ...
    async def check_capacity(self) -> None:
        """Raise ``ServerBusy`` when no worker would take a new room now."""
        ...

    async def open_room(
        self, room_id: str, on_event: EventSink, tap_options: dict[str, Any] | None = None
    ) -> RoomApi:
        """Open (or return the open) room ``room_id``; ``tap_options`` go to the pool's taps."""
        ...

    async def close_room(self, room_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalMediaPool:
    """Every room's Router in this process: the embedded default."""

    def __init__(
        self,
        *,
        ice_addresses: list[str] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        tap_factory: TapFactory | None = None,
        busy_lag_s: float = THRESHOLD_S,
    ) -> None:
        self.worker = MediaWorker(
            ice_addresses=ice_addresses, ice_servers=ice_servers, busy_lag_s=busy_lag_s
        )
        self._tap_factory = tap_factory
        self._rooms: dict[str, RoomMedia] = {}

    @property
    def closed(self) -> bool:
        return self.worker.closed

    async def start(self) -> None:
        """The Routers live in this process; only the loop-lag measure starts."""
        self.worker.start()

    async def check_capacity(self) -> None:
        if self.worker.busy:
            self.worker.load.refusals += 1
            logger.warning(
                "new room refused: the event loop lags (max %.0f ms in the last window)",
                self.worker.load.last_window_max_s * 1000,
            )
            raise ServerBusy("the media server is busy; try again shortly")

    @property
    def rooms(self) -> list[RoomMedia]:
        return list(self._rooms.values())

    async def open_room(
        self, room_id: str, on_event: EventSink, tap_options: dict[str, Any] | None = None
    ) -> RoomMedia:
        if self.worker.closed:
            raise ClosedError("the media pool is closed")
        room = self._rooms.get(room_id)
        if room is None or room.closed:
            await self.check_capacity()
            room = RoomMedia(
                self.worker.get_router(room_id),
                on_event,
                tap_factory=self._tap_factory,
                tap_options=tap_options,
                busy=self._refuse_participant,
            )
            self._rooms[room_id] = room
        return room

    def _refuse_participant(self) -> bool:
        if not self.worker.busy:
            return False
        self.worker.load.refusals += 1
        logger.warning(
            "new participant refused: the event loop lags (max %.0f ms in the last window)",
            self.worker.load.last_window_max_s * 1000,
        )
        return True

    async def close_room(self, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is not None:
            await room.close()
        await self.worker.close_router(room_id)

    async def close(self) -> None:
        for room in tuple(self._rooms.values()):
            await room.close()
        self._rooms.clear()
        await self.worker.close()
