"""Leaving and shutting down leave no Router, Transport, Producer, Consumer, task or thread."""

from __future__ import annotations

import asyncio
import threading

from client import Participant, server_sessions, start_call
from peers import wait_for

from media import open_objects


async def _call(server):
    return await start_call(server.url, await server.visit())


def _other_tasks() -> list[asyncio.Task]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


def _decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


def _opened_since(before: dict[str, int]) -> dict[str, int]:
    """Objects open now that were not before this test (an earlier test's failure may hold its
    own server's objects in ``sys.last_traceback``; they are not this server's)."""
    now = open_objects()
    return {k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)}


async def test_everyone_leaves_then_shutdown_leaves_nothing(server):
    before = open_objects()
    doctor, patient = await _call(server)
    assert open_objects().get("Producer") == 4

    assert (await doctor.call("leave", {}))["ok"]
    # the patient is told, and its subscribe connection renegotiates the doctor's tracks away
    await wait_for(lambda: [p["role"] for p in patient.participants] == ["patient"], timeout=5)
    await wait_for(
        lambda: patient.tracks and not any(t["active"] for t in patient.tracks.values()),
        timeout=15,
        message=lambda: (
            f"the doctor's tracks were not renegotiated away: patient {patient.state()}, "
            f"server {server_sessions(server.signaling)}"
        ),
    )
    router = server.media.worker.routers[0]
    assert all(p.app_data["participant_id"] == patient.id for p in router.producers)
    assert router.dump()["consumers"] == {}

    assert (await patient.call("leave", {}))["ok"]
    assert server.media.worker.routers == []
    assert len(server.signaling.rooms) == 0
    assert router.closed and router.dump()["transports"] == []

    for p in (doctor, patient):
        await p.close()
    await server.stop()
    assert _opened_since(before) == {}
    await wait_for(lambda: not _other_tasks(), timeout=5, message=f"tasks left: {_other_tasks()}")
    await wait_for(lambda: not _decoder_threads(), timeout=5)


async def test_shutdown_during_a_call_closes_peers_then_sockets(server):
    before = open_objects()
    doctor, patient = await _call(server)
    closed_events: list[dict] = []
    doctor.sio.on("room_closed", closed_events.append)

    await server.stop()
    assert _opened_since(before) == {}
    assert server.media.closed
    assert closed_events == [{"reason": "server_shutdown"}]
    await wait_for(lambda: not doctor.sio.connected and not patient.sio.connected, timeout=5)

    for p in (doctor, patient):
        await p.close()
    await wait_for(lambda: not _other_tasks(), timeout=5, message=f"tasks left: {_other_tasks()}")


async def test_a_second_socket_of_the_same_participant_takes_over(server):
    doctor, patient = await _call(server)
    closed_events: list[dict] = []
    doctor.sio.on("room_closed", closed_events.append)
    again = Participant(server.url, doctor.token, doctor.visit_id)
    try:
        await again.connect()
        await again.join()
        await wait_for(lambda: closed_events == [{"reason": "replaced"}], timeout=5)
        await wait_for(lambda: not doctor.sio.connected, timeout=5)
        await again.publish()
        await wait_for(
            lambda: (
                (r := patient.received_from(again.id, "video")) is not None and len(r.counters) > 5
            ),
            timeout=10,
            message="the patient does not see the doctor's new socket",
        )
        assert sorted(p["role"] for p in patient.participants) == ["doctor", "patient"]
        assert len(server.signaling.sessions) == 2
    finally:
        for p in (doctor, patient, again):
            await p.close()
