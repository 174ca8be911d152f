"""MediaWorker: the Routers of one process."""

from __future__ import annotations

from typing import Any

from .errors import ClosedError
from .loop_lag import THRESHOLD_S, LoopLagMonitor
from .memory import HeapTrimmer
from .router import Router


class MediaWorker:
    """Creates and closes the Routers of the rooms this process carries.

    ``ice_addresses`` are the local addresses each Transport gathers candidates on (production:
    one per network provider, and with more than one each Transport watches its paths and moves
    off a dead one, media/paths.py; tests: 127.0.0.1); empty means aioice's default, every
    interface but loopback. Nothing process-wide: each Transport is given them.
    ``ice_servers`` are the STUN/TURN servers the server itself uses (default none).
    ``busy_lag_s``: loop lag past which new rooms and participants are refused (0: never).
    """

    def __init__(
        self,
        *,
        ice_addresses: list[str] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        busy_lag_s: float = THRESHOLD_S,
    ) -> None:
        self._ice_addresses = list(ice_addresses or [])
        self._ice_servers = list(ice_servers or [])
        self._routers: dict[str, Router] = {}
        self._closed = False
        self._trimmer: HeapTrimmer | None = None  # started with the first room
        self.load = LoopLagMonitor(threshold_s=busy_lag_s, describe=self._figures)

    def _figures(self) -> dict[str, int]:
        return {
            "rooms": len(self._routers),
            "transports": sum(len(r.dump()["transports"]) for r in self._routers.values()),
        }

    @property
    def busy(self) -> bool:
        """The loop lags: refuse new rooms and participants (media/loop_lag.py)."""
        return self.load.busy

    def start(self) -> None:
        """Start measuring the loop (needs the running loop)."""
        self.load.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def routers(self) -> list[Router]:
        return list(self._routers.values())

    def get_router(self, room_id: str) -> Router:
        """The room's Router, created on first use."""
        if self._closed:
            raise ClosedError("the media worker is closed")
        if self._trimmer is None:
            self._trimmer = HeapTrimmer()
        self.load.start()
        router = self._routers.get(room_id)
        if router is None or router.closed:
            router = Router(
                room_id, ice_servers=self._ice_servers, ice_addresses=self._ice_addresses
            )
            self._routers[room_id] = router
        return router

    async def close_router(self, room_id: str) -> None:
        router = self._routers.pop(room_id, None)
        if router is not None:
            await router.close()

    async def close(self) -> None:
        """Close every Router. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.load.close()
        for router in tuple(self._routers.values()):
            await router.close()
        self._routers.clear()
        if self._trimmer is not None:
            await self._trimmer.close()
