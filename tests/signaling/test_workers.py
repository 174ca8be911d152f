"""Rooms on media worker processes: two rooms on two workers; a killed worker ends only its rooms."""

from __future__ import annotations

import inspect
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from client import Participant
from harness import start_server
from peers import wait_for

from media.errors import MediaError
from media.pool import LocalMediaPool
from media.remote import ProcessMediaPool
from media.room import RoomMedia
from media.room_api import RoomApi, room_methods

TESTS_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
async def two_worker_server(tmp_path):
    srv = await start_server(tmp_path, media_workers=2)
    yield srv
    await srv.stop()


async def _visit_with_media(server):
    visit = await server.visit()
    people = [
        Participant(server.url, visit.tokens[role], visit.visit_id)
        for role in ("doctor", "patient")
    ]
    for p in people:
        await p.connect()
        await p.join()
        await p.publish()
        await p.subscribe()
    return visit, people


def _frames(people) -> list[int]:
    a, b = people
    return [
        len(r.counters) if (r := x.received_from(y.id, "video")) is not None else 0
        for x, y in ((a, b), (b, a))
    ]


async def test_rooms_run_on_two_workers_and_a_killed_worker_ends_only_its_rooms(
    two_worker_server,
):
    server = two_worker_server
    pool = server.media
    assert len(pool.workers) == 2 and len({w.pid for w in pool.workers}) == 2
    first, first_people = await _visit_with_media(server)
    second, second_people = await _visit_with_media(server)
    everyone = first_people + second_people
    try:
        await wait_for(
            lambda: min(_frames(first_people) + _frames(second_people)) > 10,
            timeout=20,
            message="media did not flow in both rooms",
        )
        placement = pool.placement()
        assert placement[first.room_id] != placement[second.room_id]
        for w in pool.workers:
            assert w.pid != os.getpid()

        closed = {p.id + p.visit_id: [] for p in everyone}
        for p in everyone:
            p.sio.on("room_closed", closed[p.id + p.visit_id].append)
        doomed = pool.workers[placement[first.room_id]]
        os.kill(doomed.pid, signal.SIGKILL)

        # the first room's participants are told, clearly
        await wait_for(
            lambda: all(closed[p.id + p.visit_id] for p in first_people),
            timeout=10,
            message="no room_closed after the worker died",
        )
        for p in first_people:
            assert closed[p.id + p.visit_id] == [{"reason": "media_worker_failed"}]
        # the second room never noticed: its media keeps flowing, and nobody told it anything
        before = _frames(second_people)
        await wait_for(
            lambda: all(n > b + 30 for n, b in zip(_frames(second_people), before, strict=True)),
            timeout=10,
            message="the other worker's room stopped",
        )
        assert all(not closed[p.id + p.visit_id] for p in second_people)

        # a replacement worker comes up, and the first room can meet again
        await wait_for(lambda: all(w.alive for w in pool.workers), timeout=20)
        assert doomed.pid not in {w.pid for w in pool.workers}
        for p in first_people:
            await p.close()
        again = [Participant(server.url, p.token, p.visit_id) for p in first_people]
        everyone += again
        for p in again:
            await p.connect()
            await p.join()
            await p.publish()
            await p.subscribe()
        await wait_for(lambda: min(_frames(again)) > 10, timeout=20)
    finally:
        for p in everyone:
            await p.close()


# --- the room API, declared once (media/room_api.py) ------------------------------------------

#: An argument for each parameter name of the room API: a method whose parameter is missing here
#: fails the test below until one is added (so every declared method is called).
SAMPLE_ARGUMENTS: dict[str, Any] = {
    "participant_id": "nobody",
    "offer_sdp": "v=0\r\n",
    "answer_sdp": "v=0\r\n",
    "target": "publish",
    "candidate": None,
    "kind": "audio",
    "muted": True,
    "returning": False,
    "path": None,
    "priority": 2,
}


async def _outcome(call: Any) -> tuple[str, str]:
    try:
        result = await call
    except MediaError as exc:
        return ("error", exc.code)
    return ("ok", type(result).__name__)


async def test_every_method_of_the_room_api_reaches_a_room_on_a_worker():
    """Each method the declaration names, called on a room on a worker process (through the
    RemoteRoom made from the declaration), does what it does on a room in this process."""
    methods = room_methods()
    assert {"publish", "subscribe", "leave", "datagram_stats", "dump"} <= set(methods)
    for name, signature in methods.items():
        implemented = inspect.signature(getattr(RoomMedia, name))
        assert [(p.name, p.kind, p.default) for p in implemented.parameters.values()] == [
            (p.name, p.kind, p.default) for p in signature.parameters.values()
        ], f"RoomMedia.{name} differs from its declaration"
        missing = set(signature.parameters) - {"self"} - set(SAMPLE_ARGUMENTS)
        assert not missing, f"add a sample argument for {name}({', '.join(sorted(missing))})"

    local = LocalMediaPool(ice_addresses=["127.0.0.1"])
    remote = ProcessMediaPool(1, ice_addresses=["127.0.0.1"])
    await local.start()
    await remote.start()
    try:
        here = await local.open_room("r", lambda *_: None)
        there = await remote.open_room("r", lambda *_: None)
        assert isinstance(there, RoomApi) and there.id == "r"
        outcomes = []
        for name, signature in methods.items():
            args = {p: SAMPLE_ARGUMENTS[p] for p in signature.parameters if p != "self"}
            expected = await _outcome(getattr(here, name)(**args))
            got = await _outcome(getattr(there, name)(**args))
            assert got == expected, name
            outcomes.append((name, *got))
        # the calls did something, the same on both sides: a bad SDP is refused as such
        assert ("publish", "error", "bad_sdp") in outcomes
        assert ("dump", "ok", "dict") in outcomes
        assert (await there.dump())["id"] == "r"
    finally:
        await remote.close()
        await local.close()


async def test_a_method_added_to_the_declaration_is_reachable_across_the_worker_channel(
    monkeypatch,
):
    """tests/room_api_extension.py declares one more method (and RoomMedia implements it) in a
    worker of its own; the parent's proxy of that declaration calls it, nothing else written."""
    from room_api_extension import EchoRoomApi

    tests_dir = str(TESTS_DIR)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    )
    pool = ProcessMediaPool(
        1, ice_addresses=["127.0.0.1"], worker_module="room_api_extension", api=EchoRoomApi
    )
    await pool.start()
    try:
        room = await pool.open_room("r", lambda *_: None)
        assert "echo" in room_methods(EchoRoomApi) and "echo" not in room_methods()
        answer = await room.echo("doctor", text="hello")  # type: ignore[attr-defined]
        assert answer == {
            "room": "r",
            "participant_id": "doctor",
            "text": "hello",
            "pid": pool.workers[0].pid,
        }
        assert answer["pid"] != os.getpid()
        # the declared methods are still there
        assert (await room.dump())["publishers"] == []
    finally:
        await pool.close()
