"""ProcessMediaPool: rooms spread over N media worker processes (N = cores by default).

Each room lives on one worker; the main process reaches it over a Unix socket (media/rpc.py).
When a worker dies, only its rooms end: each gets a "room_lost" event, and a new worker takes the
dead one's place for rooms opened later.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from .errors import BadSdp, ClosedError, InvalidState, MediaError, ServerBusy
from .loop_lag import THRESHOLD_S
from .room import EventSink
from .room_api import RoomApi, room_methods
from .rpc import ProtocolError, encode_message, read_message

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 30.0

_ERRORS: dict[str, type[MediaError]] = {
    BadSdp.code: BadSdp,
    InvalidState.code: InvalidState,
    ClosedError.code: ClosedError,
    ServerBusy.code: ServerBusy,
}


class WorkerLost(MediaError):
    code = "worker_lost"


def _error(payload: dict[str, Any]) -> MediaError:
    cls = _ERRORS.get(str(payload.get("code")), MediaError)
    exc = cls(str(payload.get("message", "")))
    if cls is MediaError:
        exc.code = str(payload.get("code", "media_error"))
    return exc


class WorkerProcess:
    """One media worker process and the channel to it."""

    def __init__(
        self,
        index: int,
        *,
        ice_addresses: list[str],
        ice_servers: list[dict[str, Any]],
        on_lost: Any,
        module: str = "media.worker_process",
        busy_lag_s: float = THRESHOLD_S,
    ) -> None:
        self.index = index
        self._busy_lag_s = busy_lag_s
        self._module = module
        self._ice_addresses = ice_addresses
        self._ice_servers = ice_servers
        self._on_lost = on_lost
        self._dir = tempfile.TemporaryDirectory(prefix="tc-media-")
        self._socket = str(Path(self._dir.name) / "worker.sock")
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.rooms: dict[str, EventSink] = {}
        self.alive = False
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        command = [sys.executable, "-m", self._module, "--socket", self._socket]
        for address in self._ice_addresses:
            command += ["--ice-address", address]
        command += ["--ice-servers", json.dumps(self._ice_servers)]
        command += ["--busy-lag-ms", str(round(self._busy_lag_s * 1000))]
        command += ["--log-level", logging.getLevelName(logging.getLogger().level)]
        self._process = await asyncio.create_subprocess_exec(*command)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.returncode is not None:
                raise MediaError(f"media worker {self.index} exited at start")
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(self._socket)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise MediaError(f"media worker {self.index} did not start") from None
                await asyncio.sleep(0.02)  # polling the socket until the worker listens
        self._read_task = asyncio.get_running_loop().create_task(self._read())
        self.alive = True
        logger.info("media worker %d started (pid %s)", self.index, self.pid)

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                message = await read_message(self._reader)
                if message is None:
                    break
                if "event" in message:
                    sink = self.rooms.get(str(message.get("room")))
                    if sink is not None:
                        sink(str(message["event"]), dict(message.get("data") or {}))
                    continue
                future = self._pending.pop(int(message.get("id", 0)), None)
                if future is None or future.done():
                    continue
                if "error" in message:
                    future.set_exception(_error(message["error"]))
                else:
                    future.set_result(message.get("result"))
        except (ProtocolError, ValueError, ConnectionError) as exc:
            logger.error("media worker %d: broken channel: %s", self.index, exc)
        finally:
            self._lost()

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerLost(f"media worker {self.index} is gone"))
        self._pending.clear()
        if not self._closing:
            logger.error("media worker %d (pid %s) was lost", self.index, self.pid)
            self._on_lost(self)

    async def call(self, method: str, **args: Any) -> Any:
        if not self.alive or self._writer is None:
            raise WorkerLost(f"media worker {self.index} is gone")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode_message({"id": request_id, "method": method, "args": args}))
        try:
            await self._writer.drain()
            return await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            self._pending.pop(request_id, None)
            raise WorkerLost(f"media worker {self.index} does not answer") from None

    async def close(self) -> None:
        """End the channel; the worker closes its rooms and exits (killed if it lingers)."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._read_task is not None:
            self._read_task.cancel()
            await asyncio.gather(self._read_task, return_exceptions=True)
        self.alive = False
        self._dir.cleanup()


class RemoteRoom:
    """A room on a worker process: the room API (media/room_api.py) over the channel.

    Its methods are made from the declaration (:func:`remote_room_class`), each sending its
    arguments to the worker, which calls the room's :class:`media.room.RoomMedia`; a method
    declared there is reachable here with nothing else to write.
    """

    def __init__(self, room_id: str, worker: WorkerProcess) -> None:
        self.id = room_id
        self.worker = worker

    async def _call(self, method: str, **args: Any) -> Any:
        return await self.worker.call(method, room=self.id, **args)


def _remote_method(name: str, signature: inspect.Signature, doc: str | None) -> Any:
    async def method(self: RemoteRoom, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)  # a wrong call fails here, not remotely
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        return await self._call(name, **arguments)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


@functools.cache
def remote_room_class(api: type[RoomApi] = RoomApi) -> type[RemoteRoom]:
    """The proxy class of ``api`` (the room API, or a protocol extending it)."""
    namespace = {
        name: _remote_method(name, signature, getattr(api, name).__doc__)
        for name, signature in room_methods(api).items()
    }
    return type(f"Remote{api.__name__}", (RemoteRoom,), namespace)


def _as_api(room: RemoteRoom) -> RoomApi:
    # its methods are made from the declaration at run time, which a type checker cannot see
    return cast(RoomApi, room)


class ProcessMediaPool:
    """N worker processes; each room is placed on the worker with the fewest rooms."""

    def __init__(
        self,
        workers: int = 0,
        *,
        ice_addresses: list[str] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        worker_module: str = "media.worker_process",
        busy_lag_s: float = THRESHOLD_S,
        api: type[RoomApi] = RoomApi,
    ) -> None:
        """``worker_module``: what ``python -m`` runs as a worker; a composing package may
        name its own wrapper of :func:`media.worker_process.main` (to add taps, or methods to
        the room API: ``api``, a protocol extending it, which that worker serves too)."""
        self._room_class = remote_room_class(api)
        self.size = workers or os.cpu_count() or 1
        self._worker_module = worker_module
        self._busy_lag_s = busy_lag_s
        self._ice_addresses = list(ice_addresses or [])
        self._ice_servers = list(ice_servers or [])
        self.workers: list[WorkerProcess] = []
        self._rooms: dict[str, RemoteRoom] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _new_worker(self, index: int) -> WorkerProcess:
        return WorkerProcess(
            index,
            ice_addresses=self._ice_addresses,
            ice_servers=self._ice_servers,
            on_lost=self._worker_lost,
            module=self._worker_module,
            busy_lag_s=self._busy_lag_s,
        )

    async def start(self) -> None:
        self.workers = [self._new_worker(i) for i in range(self.size)]
        await asyncio.gather(*(w.start() for w in self.workers))

    async def check_capacity(self) -> None:
        """Raise ``ServerBusy`` when every live worker's loop lags (a new room would fail)."""
        alive = [w for w in self.workers if w.alive]
        for worker in alive:
            try:
                if not await worker.call("busy"):
                    return
            except WorkerLost:
                continue
        if alive:
            raise ServerBusy("every media worker is busy; try again shortly")

    def placement(self) -> dict[str, int]:
        """Room id -> index of the worker it lives on."""
        return {room_id: room.worker.index for room_id, room in self._rooms.items()}

    async def open_room(
        self, room_id: str, on_event: EventSink, tap_options: dict[str, Any] | None = None
    ) -> RoomApi:
        if self._closed:
            raise ClosedError("the media pool is closed")
        room = self._rooms.get(room_id)
        if room is not None and room.worker.alive:
            return _as_api(room)
        alive = [w for w in self.workers if w.alive]
        if not alive and self._tasks:
            # every worker is gone and replacements are starting: wait for them
            await asyncio.wait(set(self._tasks), timeout=START_TIMEOUT_S)
            alive = [w for w in self.workers if w.alive]
        if not alive:
            raise WorkerLost("no media worker is running")
        # the worker with the fewest rooms first; a busy one (its loop lags) refuses, and the
        # next is asked; when all refuse, so does the pool
        for worker in sorted(alive, key=lambda w: (len(w.rooms), w.index)):
            worker.rooms[room_id] = on_event
            try:
                await worker.call("open_room", room=room_id, tap_options=tap_options)
            except ServerBusy:
                worker.rooms.pop(room_id, None)
                continue
            except BaseException:
                worker.rooms.pop(room_id, None)
                raise
            room = self._rooms[room_id] = self._room_class(room_id, worker)
            return _as_api(room)
        raise ServerBusy("every media worker is busy; try again shortly")

    async def close_room(self, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is None:
            return
        room.worker.rooms.pop(room_id, None)
        if room.worker.alive:
            try:
                await room.worker.call("close_room", room=room_id)
            except WorkerLost:
                pass

    def _worker_lost(self, worker: WorkerProcess) -> None:
        sinks = dict(worker.rooms)
        worker.rooms.clear()
        for room_id in sinks:
            self._rooms.pop(room_id, None)
        for room_id, sink in sinks.items():
            sink("room_lost", {"reason": "media_worker_failed", "room": room_id})
        if not self._closed:
            task = asyncio.get_running_loop().create_task(self._replace(worker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _replace(self, lost: WorkerProcess) -> None:
        await lost.close()
        replacement = self._new_worker(lost.index)
        try:
            await replacement.start()
        except MediaError:
            logger.exception("media worker %d could not be restarted", lost.index)
            return
        if self._closed:
            await replacement.close()
            return
        self.workers[self.workers.index(lost)] = replacement

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._rooms.clear()
        await asyncio.gather(*(w.close() for w in self.workers))
