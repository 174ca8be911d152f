"""A page whose socket went silent while its media went on joins again on a new socket and
carries on with that media (R28, R31; issue 16 item 3; docs/providers.md "Signaling survives
too").

On loopback: the old socket stays open but unheard (as behind a blackholed provider), the new
one joins with the previous join ack's ``resume_key``. The participant's connections are the
same ones afterwards (no rebuild), the subscribe offer the old socket swallowed is sent again
on the new one, and the old socket's eventual close changes nothing. A join with a key that is
not the page's carries on with nothing: the media is rebuilt as on any other join.
"""

from __future__ import annotations

from typing import Any

from client import Participant, sees, server_sessions
from peers import wait_for


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
