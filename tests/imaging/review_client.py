"""A socket that takes part in a room's review as the viewer page does (docs/review.md)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import socketio


class Viewer:
    """A socket that follows (or presents) the room's review as a viewer page does; it keeps
    every message it was sent (``received``), to show what it never saw."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.views: list[tuple[float, dict[str, Any]]] = []
        self.states: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.received: list[Any] = []

        def on_view(d: dict[str, Any]) -> None:
            self.views.append((time.perf_counter(), d))
            self.received.append(d)

        def keep(into: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
            def on(d: dict[str, Any]) -> None:
                into.append(d)
                self.received.append(d)

            return on

        self.sio.on("review_view", on_view)
        self.sio.on("review_state", keep(self.states))
        self.sio.on("review_annotations", keep(self.annotations))

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5
        )

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, data, timeout=10)
        self.received.append(ack)
        return ack

    async def close(self) -> None:
        await self.sio.disconnect()


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def relay_bound_ms() -> float:
    """What a relay p95 on loopback is held to: 50 ms (the target is 5 ms on a quiet machine),
    500 ms when other work overloads the machine (more than two runnable tasks per core: the
    sockets then wait for a CPU, not for the relay; measured at load 34 on 2 cores: 111 ms)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return 50.0 if load <= 2 * cores else 500.0
