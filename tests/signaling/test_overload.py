"""Overload refuses instead of dropping (issue 10, part 4): a media worker whose event loop lags
takes no new room and no new participant (`server_busy`), while the calls it carries keep their
media; once the loop keeps up again, the refused join goes through.

Both placements: the in-process SFU (media_workers=0; a CPU hog on the server's own loop) and a
worker process (media_workers=1; the worker is stopped with SIGSTOP for 250 ms of every 750 ms,
which its loop sees as lag).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from client import Participant, start_call
from harness import Server, start_server
from peers import wait_for


def _frames(a: Participant, b: Participant, kind: str = "video") -> int:
    """Frames the two have received of each other (the smaller count of the two directions)."""
    received = [x.received_from(y.id, kind) for x, y in ((a, b), (b, a))]
    return min(r.frames if r is not None else 0 for r in received)


class Hog:
    """Blocks the test's (and the in-process server's) loop 250 ms out of every 600 ms."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            time.sleep(0.25)  # noqa: ASYNC251 - the point: a blocking call on the loop
            await asyncio.sleep(0.35)

    async def stop(self) -> None:
        self._stop.set()
        await self._task


class Stopper:
    """Stops the worker process 250 ms out of every 750 ms (from a thread)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            os.kill(self._pid, signal.SIGSTOP)
            self._stop.wait(0.25)
            os.kill(self._pid, signal.SIGCONT)
            self._stop.wait(0.5)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        os.kill(self._pid, signal.SIGCONT)


@pytest.fixture(params=[0, 1], ids=["in_process", "worker_process"])
async def placed(request, tmp_path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, media_workers=request.param, media_busy_lag_ms=200)
    yield srv
    await srv.stop()


async def _busy(server: Server) -> bool:
    pool = server.media
    if hasattr(pool, "worker"):
        return bool(pool.worker.busy)
    return bool(await pool.workers[0].call("busy"))


async def _poll(check: Callable[[], Awaitable[bool]], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.1)


async def test_a_lagging_worker_refuses_new_joins_and_keeps_its_calls(placed):
    server = placed
    call_a = await start_call(server.url, await server.visit())
    visit_b = await server.visit()
    doctor_b = Participant(server.url, visit_b.tokens["doctor"], visit_b.visit_id)
    patient_b = Participant(server.url, visit_b.tokens["patient"], visit_b.visit_id)
    visit_c = await server.visit()
    doctor_c = Participant(server.url, visit_c.tokens["doctor"], visit_c.visit_id)
    everyone = [*call_a, doctor_b, patient_b, doctor_c]
    load: Hog | Stopper | None = None
    try:
        for p in (doctor_b, patient_b, doctor_c):
            await p.connect()
        await doctor_b.join()  # room B is open before the overload, with one participant

        load = Hog() if hasattr(server.media, "worker") else Stopper(server.media.workers[0].pid)
        started = time.monotonic()
        await _poll(lambda: _busy(server), timeout=10, message="the worker never got busy")
        print(f"\nbusy {time.monotonic() - started:.1f} s after the load started")

        # a new participant in an open room, and a new room, are refused
        ack = await patient_b.call("join", {"visit": visit_b.visit_id})
        assert not ack["ok"] and ack["error"]["code"] == "server_busy", ack
        ack = await doctor_c.call("join", {"visit": visit_c.visit_id})
        assert not ack["ok"] and ack["error"]["code"] == "server_busy", ack
        assert server.signaling.rooms.find(visit_c.room_id) is None

        # The call in progress keeps its media all along: its audio (50 packets a second each
        # way) keeps coming. (Its video may pause: bursts after each stall read as congestion
        # to the REMB-based pause in media/consumer.py, which is not this test's subject.)
        before = _frames(*call_a, "audio")
        video_before = _frames(*call_a)
        await wait_for(
            lambda: _frames(*call_a, "audio") > before + 100,
            timeout=15,
            message=f"the call lost its media under load: {before} -> {_frames(*call_a, 'audio')}",
        )
        print(
            f"audio frames of the call in progress while busy: {before} -> "
            f"{_frames(*call_a, 'audio')}; video {video_before} -> {_frames(*call_a)}"
        )
        assert await _busy(server), "the load ended too early for this test to mean anything"

        await load.stop()
        load = None
        # the refused joins go through once the loop keeps up again (as the page retries)
        await _poll(lambda: _not(_busy(server)), timeout=10, message="busy for good")
        await patient_b.join()
        await doctor_c.join()
    finally:
        if load is not None:
            await load.stop()
        for p in everyone:
            await p.close()


async def _not(value: Awaitable[bool]) -> bool:
    return not await value
