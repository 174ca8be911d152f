"""The server under test, in its own process so that its CPU time and memory can be read alone.

    .venv/bin/python bench/sfu_server.py --engine ours|relay [--no-latency] [--address 127.0.0.1]

Prints ``PORT <n>`` once its control channel listens on --address, then serves (until
/shutdown, SIGTERM, SIGINT, or end of file on stdin, so it never outlives the bench):

    POST /publish     {"sdp": offer}          -> {"answer": sdp, "producers": [{"id", "kind"}]}
    POST /subscribe   {"producers": [ids]}    -> {"id": subscription, "offer": sdp, "mids"?}
    POST /answer      {"id": subscription, "sdp": answer} -> {}
    POST /unsubscribe {"id": subscription}    close that subscription's peer connection
    POST /mark        start of the measurement window: latency samples are reset
    POST /record      {"producers": [ids], "dir": path}  record them (ours only: recording/)
    POST /record_stop close the recorders -> {"recorders", "dropped"}
    GET  /stats       -> {"forwarded_packets", "latency": {...}, "producers"?: {...}, ...}
    GET  /memory      -> glibc's heap: {"in_use_mb", "free_mb", "mmapped_mb"} ({} if not glibc)
    POST /shutdown    close every peer connection and exit

ICE gathers on --address only (default 127.0.0.1) and no STUN/TURN server is used. Driven by
bench/sfu_forwarding.py and bench/publisher_loss.py (which runs it in a network namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from latency import LatencyRecorder
from proc_stats import heap_usage

from media import _aiortc_seam as seam


class Engine(Protocol):
    name: str
    latency: LatencyRecorder | None

    async def publish(self, offer_sdp: str) -> tuple[str, list[dict[str, str]]]: ...
    async def subscribe(self, producer_ids: list[str]) -> tuple[str, str]: ...
    async def answer(self, subscription_id: str, answer_sdp: str) -> None: ...
    async def unsubscribe(self, subscription_id: str) -> None: ...
    def forwarded_packets(self) -> int: ...
    async def close(self) -> None: ...


def make_engine(name: str, latency: LatencyRecorder | None, address: str) -> Engine:
    if name == "ours":
        from engine_ours import OursEngine

        return OursEngine(latency, ice_address=address)
    from engine_relay import RelayEngine

    return RelayEngine(latency)


def control_app(engine: Engine, stop: asyncio.Event) -> web.Application:
    async def publish(request: web.Request) -> web.Response:
        body = await request.json()
        answer, producers = await engine.publish(body["sdp"])
        return web.json_response({"answer": answer, "producers": producers})

    async def subscribe(request: web.Request) -> web.Response:
        body = await request.json()
        subscription_id, offer = await engine.subscribe(body["producers"])
        reply: dict[str, Any] = {"id": subscription_id, "offer": offer}
        mids = getattr(engine, "subscription_mids", None)
        if mids is not None:
            reply["mids"] = mids(subscription_id)  # mid -> producer id
        return web.json_response(reply)

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        await engine.answer(body["id"], body["sdp"])
        return web.json_response({})

    async def unsubscribe(request: web.Request) -> web.Response:
        body = await request.json()
        await engine.unsubscribe(body["id"])
        return web.json_response({})

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        await engine.record(body["producers"], body["dir"])  # type: ignore[attr-defined]
        return web.json_response({})

    async def stop_recording(request: web.Request) -> web.Response:
        return web.json_response(await engine.stop_recording())  # type: ignore[attr-defined]

    async def mark(request: web.Request) -> web.Response:
        if engine.latency is not None:
            engine.latency.reset()
        if hasattr(engine, "unmatched_frames"):
            engine.unmatched_frames = 0
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        figures: dict[str, Any] = {"forwarded_packets": engine.forwarded_packets()}
        if engine.latency is not None:
            figures["latency"] = engine.latency.summary()
        unmatched = getattr(engine, "unmatched_frames", None)
        if unmatched is not None:
            figures["unmatched_frames"] = unmatched
        for name in ("producer_stats", "consumer_stats"):  # ours only
            read = getattr(engine, name, None)
            if read is not None:
                figures[name.removesuffix("_stats") + "s"] = read()
        return web.json_response(figures)

    async def memory(request: web.Request) -> web.Response:
        return web.json_response(heap_usage() or {})

    async def shutdown(request: web.Request) -> web.Response:
        stop.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/answer", answer)
    app.router.add_post("/unsubscribe", unsubscribe)
    app.router.add_post("/mark", mark)
    app.router.add_post("/record", record)  # ours only
    app.router.add_post("/record_stop", stop_recording)
    app.router.add_get("/stats", stats)
    app.router.add_get("/memory", memory)
    app.router.add_post("/shutdown", shutdown)
    return app


async def stop_when_parent_goes(stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file: the bench closed it, or died."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def serve(engine_name: str, measure_latency: bool, address: str) -> None:
    seam.restrict_host_addresses([address])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(stop_when_parent_goes(stop))
    engine = make_engine(engine_name, LatencyRecorder() if measure_latency else None, address)
    runner = web.AppRunner(control_app(engine, stop), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address, 0)
        await site.start()
        print(f"PORT {runner.addresses[0][1]}", flush=True)
        # Nobody reads our stdout after the port: anything else goes to stderr, so a full pipe
        # can never block this process.
        sys.stdout = sys.stderr
        await stop.wait()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await engine.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("ours", "relay"), required=True)
    parser.add_argument("--no-latency", action="store_true", help="skip latency instrumentation")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="the one local address for ICE and the control channel (default 127.0.0.1)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"[{args.engine} server] %(message)s")
    asyncio.run(serve(args.engine, not args.no_latency, args.address))


if __name__ == "__main__":
    main()
