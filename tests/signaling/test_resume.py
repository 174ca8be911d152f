"""A page whose socket went silent while its media went on joins again on a new socket and
carries on with that media (R28, R31; issue 16 item 3; docs/providers.md "Signaling survives
too").

On loopback: the old socket stays open but unheard (as behind a blackholed provider), the new
one joins with the previous join ack's ``resume_key``. The participant's connections are the
same ones afterwards (no rebuild), the subscribe offer the old socket swallowed is sent again
on the new one, and the old socket's eventual close changes nothing. A join with a key that is
not the page's carries on with nothing: the media is rebuilt as on any other join. A socket that closed
cleanly (its close reached the server) keeps its media as long for a resume, unless the
participant left.
"""

from __future__ import annotations

import time
from typing import Any

from client import Participant, sees, server_sessions, start_call
from peers import wait_for

from signaling import server as signaling_server


def _transports(server: Any, room_id: str, participant_id: str) -> dict[str, Any]:
    """The participant's Transports in the (in-process) room media, by role."""
    room = server.signaling.rooms.find(room_id)
    assert room is not None and room.media is not None
    media = room.media
    found = {
        "publish": media._publish.get(participant_id),
        "subscribe": media._subscribe.get(participant_id),
    }
    return {role: t for role, t in found.items() if t is not None}


async def test_a_new_socket_with_the_resume_key_carries_on_with_the_media_R28(server):
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    patient = Participant(server.url, visit.tokens["patient"], visit.visit_id)
    await doctor.connect()
    first = await doctor.join()
    assert first["resumed"] is False and first["resume_key"]
    await doctor.publish()
    await doctor.subscribe()  # nothing to receive yet: the patient's offer comes later
    # from here the doctor's socket is silent both ways, as behind a cut provider: what the
    # server sends it is lost (the patient's tracks' offer among it)
    swallowed: list[dict[str, Any]] = []
    doctor.sio.on("subscribe_offer", swallowed.append)
    old_sid = doctor.sio.get_sid()

    await patient.connect()
    await patient.join()
    await patient.publish()
    await patient.subscribe()
    await wait_for(lambda: sees(patient, doctor, 5), timeout=15)
    await wait_for(lambda: swallowed, timeout=10)  # the offer went to the silent socket
    before = _transports(server, visit.room_id, doctor.id)
    assert set(before) == {"publish", "subscribe"}

    second = await doctor.resume(server.url, keep_media=True, abort_old=False)
    assert second["resumed"] is True
    assert second["participant"]["id"] == first["participant"]["id"]
    assert second["resume_key"] != first["resume_key"]
    # the same connections on the server (nothing closed, nothing new) ...
    after = _transports(server, visit.room_id, doctor.id)
    assert {r: t.id for r, t in after.items()} == {r: t.id for r, t in before.items()}
    assert not any(t.closed for t in after.values())
    # ... the swallowed offer came again on the new socket and was answered: the doctor sees
    # the patient on the subscribe connection it had, and the patient still sees the doctor
    await wait_for(
        lambda: sees(doctor, patient, 5),
        timeout=15,
        message=lambda: f"doctor {doctor.state()}, server {server_sessions(server.signaling)}",
    )
    frames = len(patient.received_from(doctor.id, "video").counters)
    await wait_for(lambda: sees(patient, doctor, frames + 5), timeout=10)
    room = server.signaling.rooms.find(visit.room_id)
    assert [s.sid for s in room.sessions.values() if s.participant_id == doctor.id] == [
        doctor.sio.get_sid()
    ]
    assert old_sid not in server.signaling.sessions
    await wait_for(lambda: [p["id"] for p in patient.participants].count(doctor.id) == 1, 5)

    # the old socket closes at last (its provider is back): nothing happens to the media
    silent = doctor._silent.pop()
    await silent.disconnect()
    frames = len(doctor.received_from(patient.id, "video").counters)
    await wait_for(lambda: sees(doctor, patient, frames + 10), timeout=10)
    assert {r: t.id for r, t in _transports(server, visit.room_id, doctor.id).items()} == {
        r: t.id for r, t in before.items()
    }
    for p in (doctor, patient):
        await p.close()


async def test_a_resume_with_another_key_rebuilds_the_media(server):
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    await doctor.connect()
    await doctor.join()
    await doctor.publish()
    before = _transports(server, visit.room_id, doctor.id)["publish"]
    told: list[dict[str, Any]] = []
    doctor.sio.on("room_closed", told.append)

    doctor.resume_key = "not-this-pages-key"  # another window with the same link, or a guess
    second = await doctor.resume(server.url, keep_media=True, abort_old=False)
    assert second["resumed"] is False
    # the old socket was replaced as on any join: told, its media closed
    await wait_for(lambda: told == [{"reason": "replaced"}], timeout=5)
    await wait_for(lambda: before.closed, timeout=5)
    assert "publish" not in _transports(server, visit.room_id, doctor.id)
    await doctor.close()


async def test_a_clean_close_keeps_the_media_for_a_resume_R28(server):
    """The page closed its socket before the new one joined (it moved to another provider's
    URL and closed the old one first, or a proxy restarted): the close reaches the server at
    once, and still the media waits for the resume instead of being torn down and rebuilt."""
    doctor, patient = await start_call(server.url, await server.visit())
    room_id = server.signaling.rooms.live()[0].room_id
    before = _transports(server, room_id, doctor.id)
    assert set(before) == {"publish", "subscribe"}
    old_sid = doctor.sio.get_sid()
    try:
        await doctor.sio.disconnect()  # a clean close: the server hears it
        await wait_for(lambda: old_sid in server.signaling._holds, timeout=5)
        # meanwhile the media goes on both ways, and the doctor is still in the room
        seen = len(patient.received_from(doctor.id, "video").counters)
        heard = len(doctor.received_from(patient.id, "video").counters)
        await wait_for(
            lambda: sees(patient, doctor, seen + 10) and sees(doctor, patient, heard + 10),
            timeout=10,
        )
        assert sorted(p["role"] for p in patient.participants) == ["doctor", "patient"]
        assert not any(t.closed for t in before.values())

        second = await doctor.resume(server.url, keep_media=True, abort_old=False)
        assert second["resumed"] is True
        after = _transports(server, room_id, doctor.id)
        assert {r: t.id for r, t in after.items()} == {r: t.id for r, t in before.items()}
        assert not any(t.closed for t in after.values())
        assert old_sid not in server.signaling.sessions and old_sid not in server.signaling._holds
        room = server.signaling.rooms.find(room_id)
        assert [s.sid for s in room.sessions.values() if s.participant_id == doctor.id] == [
            doctor.sio.get_sid()
        ]
        heard = len(doctor.received_from(patient.id, "video").counters)
        await wait_for(lambda: sees(doctor, patient, heard + 10), timeout=10)
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_a_closed_socket_nobody_resumes_loses_its_media_after_the_hold(server, monkeypatch):
    monkeypatch.setattr(signaling_server, "RESUME_HOLD_S", 1.5)
    doctor, patient = await start_call(server.url, await server.visit())
    room_id = server.signaling.rooms.live()[0].room_id
    before = _transports(server, room_id, doctor.id)
    try:
        closed_at = time.monotonic()
        await doctor.sio.disconnect()
        await wait_for(lambda: all(t.closed for t in before.values()), timeout=10)
        assert time.monotonic() - closed_at >= 1.5
        await wait_for(lambda: [p["role"] for p in patient.participants] == ["patient"], timeout=5)
        assert server.signaling._holds == {}
        assert doctor.id not in [s.participant_id for s in server.signaling.sessions.values()]
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_a_leave_ends_the_media_at_once(server):
    """An explicit leave (the page's leave button, or its pagehide) is no drop: nothing is
    held for a resume."""
    doctor, patient = await start_call(server.url, await server.visit())
    room_id = server.signaling.rooms.live()[0].room_id
    before = _transports(server, room_id, doctor.id)
    old_sid = doctor.sio.get_sid()
    try:
        assert (await doctor.call("leave", {}))["ok"]
        await doctor.sio.disconnect()
        assert all(t.closed for t in before.values())
        await wait_for(lambda: old_sid not in server.signaling.sessions, timeout=5)
        assert old_sid not in server.signaling._holds
        await wait_for(lambda: [p["role"] for p in patient.participants] == ["patient"], timeout=5)
    finally:
        for p in (doctor, patient):
            await p.close()


async def test_a_closed_tab_is_not_held_for_long(server):
    """A tab closing takes its socket (no leave: a reload must rejoin on the same streams) and
    its peer connections with it: the hold ends when the media goes, long before its 20 s."""
    doctor, patient = await start_call(server.url, await server.visit())
    try:
        closed_at = time.monotonic()
        await doctor.sio.disconnect()
        for pc in (doctor.publish_pc, doctor.sub.pc if doctor.sub else None):
            if pc is not None:
                await pc.close()
        await wait_for(
            lambda: [p["role"] for p in patient.participants] == ["patient"],
            timeout=signaling_server.RESUME_HOLD_S / 2,
        )
        print(f"closed tab out of the roster after {time.monotonic() - closed_at:.1f} s")
        assert server.signaling._holds == {}
    finally:
        for p in (doctor, patient):
            await p.close()
