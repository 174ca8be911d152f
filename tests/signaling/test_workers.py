"""Rooms on media worker processes: two rooms on two workers; a killed worker ends only its rooms."""

from __future__ import annotations

import os
import signal

import pytest
from client import Participant
from harness import start_server
from peers import wait_for


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
        assert placement[first.visit_id] != placement[second.visit_id]
        for w in pool.workers:
            assert w.pid != os.getpid()

        closed = {p.id + p.visit_id: [] for p in everyone}
        for p in everyone:
            p.sio.on("room_closed", closed[p.id + p.visit_id].append)
        doomed = pool.workers[placement[first.visit_id]]
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
