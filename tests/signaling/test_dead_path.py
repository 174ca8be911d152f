"""Dead paths are noticed (issue 10, part 3): a participant whose UDP goes silent is told
(`media_lost`), the others see it `reconnecting`, and once it makes new connections on the same
socket media flows again, on the others' existing streams.

Here the path dies at the client: every datagram of its peer connections is dropped in both
directions at its UDP sockets (the only fake, at the narrowest seam). tests/browser/ does the
same to a real browser with nftables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from client import Participant, sees, server_sessions, start_call
from harness import Server, start_server
from peers import wait_for

from media.liveness import SILENCE_S

#: The issue's bound: the server says so within 2.5 s of the path going silent.
MEDIA_LOST_WITHIN_S = 2.5


def _udp_protocols(pc: Any) -> list[Any]:
    protocols = []
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        protocols += list(ice._connection._protocols)
    return list({id(p): p for p in protocols}.values())


def blackhole(pc: Any) -> None:
    """Drop every datagram ``pc`` sends or receives, as a cut network would."""
    for protocol in _udp_protocols(pc):
        protocol.datagram_received = lambda data, addr: None
        protocol.transport.sendto = lambda data, addr=None: None


class Watch:
    """What one participant hears about media: its own losses and the others' states."""

    def __init__(self, p: Participant) -> None:
        self.lost: list[tuple[float, dict[str, Any]]] = []
        self.states: list[tuple[float, dict[str, str]]] = []
        p.sio.on("media_lost", lambda data: self.lost.append((time.monotonic(), data)))
        p.sio.on(
            "participants",
            lambda data: self._participants(p, data),
        )

    def _participants(self, p: Participant, data: dict[str, Any]) -> None:
        p.participants = data["participants"]
        self.states.append(
            (time.monotonic(), {x["id"]: x.get("state") for x in data["participants"]})
        )

    def state_of(self, participant_id: str) -> str | None:
        return self.states[-1][1].get(participant_id) if self.states else None


async def restart_media(p: Participant) -> None:
    """What the page does on `media_lost`: new connections, same socket, no new join."""
    if p._answerer is not None:
        p._answerer.cancel()
        await asyncio.gather(p._answerer, return_exceptions=True)
    if p.sub is not None:
        await p.sub.close()
    if p.publish_pc is not None:
        await p.publish_pc.close()
    p.tracks.clear()
    await p.publish()
    await p.subscribe()


@pytest.fixture(params=[0, 1], ids=["in_process", "worker_process"])
async def placed(request, tmp_path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, media_workers=request.param)
    yield srv
    await srv.stop()


async def _room_dump(server: Server, visit_id: str) -> dict[str, Any]:
    pool = server.media
    if hasattr(pool, "worker"):
        return dict(await pool.rooms[0].dump())
    return dict(await pool._rooms[visit_id].dump())


async def test_a_silent_path_is_closed_told_and_rebuilt_on_the_same_socket(placed):
    server = placed
    visit = await server.visit()
    doctor, patient = await start_call(server.url, visit)
    watch = {p.id: Watch(p) for p in (doctor, patient)}
    try:
        # A mute is not a dead path: the server stops forwarding, the publisher keeps sending.
        for kind in ("audio", "video"):
            assert (await patient.call("mute", {"kind": kind, "muted": True}))["ok"]
        await asyncio.sleep(SILENCE_S + 1.0)  # asserting that nothing happens over this time
        assert watch[patient.id].lost == [] and watch[doctor.id].lost == []
        for kind in ("audio", "video"):
            assert (await patient.call("mute", {"kind": kind, "muted": False}))["ok"]

        doctor_video = doctor.received_from(patient.id, "video")
        assert doctor_video is not None
        cut_at = time.monotonic()
        blackhole(patient.publish_pc)
        assert patient.sub is not None
        blackhole(patient.sub.pc)

        await wait_for(lambda: watch[patient.id].lost, timeout=5, message="no media_lost")
        told_at, lost = watch[patient.id].lost[0]
        took = told_at - cut_at
        print(f"\nmedia_lost {took * 1000:.0f} ms after the cut: {lost}")
        assert took <= MEDIA_LOST_WITHIN_S, f"media_lost after {took:.2f} s"
        assert lost["reason"] == "silence" and lost["transport"] in ("publish", "subscribe")
        await wait_for(
            lambda: watch[doctor.id].state_of(patient.id) == "reconnecting",
            timeout=2,
            message=f"the doctor was not told: {watch[doctor.id].states}",
        )
        assert watch[doctor.id].lost == []  # the doctor's own path is fine

        frames_before = len(doctor_video.counters)
        rebuilt_at = time.monotonic()
        await restart_media(patient)
        await wait_for(
            lambda: len(doctor_video.counters) > frames_before + 10 and sees(patient, doctor, 10),
            timeout=20,
            message=lambda: (
                f"media did not come back: doctor saw {len(doctor_video.counters) - frames_before}"
                f" new frames; doctor {doctor.state()}, patient {patient.state()}, "
                f"server {server_sessions(server.signaling)}"
            ),
        )
        print(f"media back {(time.monotonic() - rebuilt_at) * 1000:.0f} ms after new connections")
        # the doctor's stream of the patient carried on: same stream, no renegotiation needed
        assert doctor.received_from(patient.id, "video") is doctor_video
        await wait_for(lambda: watch[doctor.id].state_of(patient.id) == "connected", timeout=3)
        dump = await _room_dump(server, visit.room_id)
        assert dump["publishers"] == sorted([doctor.id, patient.id])
        assert len(dump["transports"]) == 4  # the lost ones are closed and gone
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_the_page_may_restart_its_media_itself(server):
    """`restart_media`: the page saw its connection fail first; the server closes its side."""
    doctor, patient = await start_call(server.url, await server.visit())
    watch = {p.id: Watch(p) for p in (doctor, patient)}
    try:
        assert (await patient.call("restart_media", {}))["ok"]
        await wait_for(lambda: watch[doctor.id].state_of(patient.id) == "reconnecting", timeout=2)
        await restart_media(patient)
        await wait_for(lambda: watch[doctor.id].state_of(patient.id) == "connected", timeout=5)
        frames = len(doctor.received_from(patient.id, "video").counters)  # type: ignore[union-attr]
        await wait_for(
            lambda: len(doctor.received_from(patient.id, "video").counters) > frames + 10,  # type: ignore[union-attr]
            timeout=5,
        )
    finally:
        for p in (doctor, patient):
            await p.close()
