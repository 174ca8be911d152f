"""A media worker process: Routers for the rooms placed on it, driven over a Unix socket.

Started by :class:`media.remote.ProcessMediaPool` as
``python -m media.worker_process --socket PATH [--ice-address A ...] [--ice-servers JSON]``.
It serves one connection (its parent's) and exits when that connection ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from typing import Any

from .errors import MediaError
from .graph import TapFactory
from .loop_lag import THRESHOLD_S, freeze_startup_heap
from .pool import LocalMediaPool
from .room import RoomMedia
from .room_api import RoomApi, room_methods
from .rpc import ProtocolError, encode_message, read_message
from .tracking import open_objects

logger = logging.getLogger(__name__)


class WorkerServer:
    """Executes the parent's requests against this process's rooms.

    The requests a room answers are the methods of the room API's declaration (``api``:
    :class:`media.room_api.RoomApi`, or a protocol extending it).
    """

    def __init__(self, pool: LocalMediaPool, api: type[RoomApi] = RoomApi) -> None:
        self._pool = pool
        self._methods = room_methods(api)
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode_message(message))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:  # one parent only
            writer.close()
            return
        self._writer = writer
        try:
            while True:
                message = await read_message(reader)
                if message is None:
                    break
                task = asyncio.get_running_loop().create_task(self._execute(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except ConnectionError:
            logger.info("the parent closed the channel")
        except (ProtocolError, ValueError) as exc:
            logger.error("bad message from the parent: %s", exc)
        finally:
            for task in tuple(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._pool.close()
            writer.close()
            self.done.set()

    async def _execute(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            result = await self._dispatch(str(message.get("method")), message.get("args") or {})
            reply: dict[str, Any] = {"id": request_id, "result": result}
        except MediaError as exc:
            reply = {"id": request_id, "error": {"code": exc.code, "message": str(exc)}}
        except Exception as exc:
            logger.exception("media worker request failed")
            reply = {
                "id": request_id,
                "error": {"code": "internal_error", "message": type(exc).__name__},
            }
        self._send(reply)
        if self._writer is not None:
            await self._writer.drain()

    async def _dispatch(self, method: str, args: dict[str, Any]) -> Any:
        if method == "ping":
            return {"pid": os.getpid()}
        if method == "open_objects":
            return open_objects()
        if method == "busy":
            return self._pool.worker.busy
        room_id = str(args.pop("room", ""))
        if method == "open_room":

            def on_event(name: str, data: dict[str, Any]) -> None:
                self._send({"event": name, "room": room_id, "data": data})

            await self._pool.open_room(room_id, on_event, args.get("tap_options"))
            return None
        if method == "close_room":
            await self._pool.close_room(room_id)
            return None
        signature = self._methods.get(method)
        if signature is not None:
            room = self._room(room_id)
            try:
                signature.bind(room, **args)
            except TypeError as exc:
                raise MediaError(f"{method}: {exc}") from None
            return await getattr(room, method)(**args)
        raise MediaError(f"unknown method {method!r}")

    def _room(self, room_id: str) -> RoomMedia:
        for room in self._pool.rooms:
            if room.id == room_id:
                return room
        raise MediaError(f"room {room_id!r} is not on this worker")


async def serve(
    socket_path: str,
    ice_addresses: list[str],
    ice_servers: list[Any],
    tap_factory: TapFactory | None = None,
    busy_lag_s: float = THRESHOLD_S,
    api: type[RoomApi] = RoomApi,
) -> None:
    pool = LocalMediaPool(
        ice_addresses=ice_addresses,
        ice_servers=ice_servers,
        tap_factory=tap_factory,
        busy_lag_s=busy_lag_s,
    )
    await pool.start()
    freeze_startup_heap()
    worker = WorkerServer(pool, api)
    server = await asyncio.start_unix_server(worker.handle, path=socket_path)
    os.chmod(socket_path, 0o600)
    async with server:
        await worker.done.wait()


def main(tap_factory: TapFactory | None = None, api: type[RoomApi] = RoomApi) -> None:
    """The worker's entry point; a composing package may wrap it to add ``tap_factory``, or
    methods to the room API (``api``: a protocol extending it; RoomMedia implements them)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ice-address", action="append", default=[])
    parser.add_argument("--ice-servers", default="[]", help="JSON list of RTCIceServer dicts")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--busy-lag-ms", type=int, default=round(THRESHOLD_S * 1000), help="0: never refuse"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s media-worker[{os.getpid()}] %(name)s: %(message)s",
    )
    asyncio.run(
        serve(
            args.socket,
            args.ice_address,
            json.loads(args.ice_servers),
            tap_factory,
            busy_lag_s=args.busy_lag_ms / 1000,
            api=api,
        )
    )


if __name__ == "__main__":
    main()
