"""Bad input gets a stable error code; the room, and the media of the others, keep working."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest
import socketio
from client import Participant, start_call
from peers import wait_for

from consult.tokens import issue_join_token

MALFORMED_SDP = [
    "garbage",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",  # no media section
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=mid:0\r\na=rtpmap:96 VP8/90000\r\n",  # no ICE credentials, no fingerprint
    "v=0\r\n" + "a=" + "x" * 200 + "\r\n",
]


async def refused(url: str, token: Any) -> dict[str, Any]:
    """Connect with ``token``; return the error the server refused the connection with."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    await sio.disconnect()
    assert errors, "no connect_error payload"
    data: dict[str, Any] = errors[0]["data"]
    return data


@pytest.fixture
async def call_in_progress(server):
    """A doctor and a patient with media flowing both ways."""
    visit = await server.visit()
    doctor, patient = await start_call(server.url, visit, frames=10)
    yield visit, doctor, patient
    for p in (doctor, patient):
        await p.close()


async def test_token_errors_refuse_the_connection(server):
    visit = await server.visit()
    secret = server.config.secret()
    ids = {"room_id": visit.room_id, "role": "doctor"}
    doctor_id = _claims(visit.tokens["doctor"])["sub"]

    expired = issue_join_token(secret, user_id=doctor_id, ttl_s=60, now=time.time() - 3600, **ids)
    forged = issue_join_token("another-secret-" + "x" * 32, user_id=doctor_id, **ids)
    unknown_room = issue_join_token(secret, room_id="f" * 32, user_id=doctor_id, role="doctor")
    tampered = visit.tokens["doctor"][:-4] + (
        "AAAA" if not visit.tokens["doctor"].endswith("AAAA") else "BBBB"
    )

    assert (await refused(server.url, None))["code"] == "token_missing"
    assert (await refused(server.url, expired))["code"] == "token_expired"
    assert (await refused(server.url, forged))["code"] == "token_invalid"
    assert (await refused(server.url, tampered))["code"] == "token_invalid"
    assert (await refused(server.url, "not.a.token"))["code"] == "token_invalid"
    assert (await refused(server.url, {"nested": 1}))["code"] == "token_invalid"
    assert (await refused(server.url, unknown_room))["code"] == "room_not_found"
    # a patient's token cannot be turned into a doctor's
    patient_id = _claims(visit.tokens["patient"])["sub"]
    wrong_role = issue_join_token(secret, user_id=patient_id, **ids)
    assert (await refused(server.url, wrong_role))["code"] == "not_a_participant"
    assert server.signaling.sessions == {}


def _claims(token: str) -> dict[str, Any]:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


async def test_bad_events_get_codes_and_media_never_stops(server, call_in_progress):
    visit, doctor, patient = call_in_progress
    before = {
        (a.id, b.id): len(a.received_from(b.id, "video").counters)
        for a, b in ((doctor, patient), (patient, doctor))
    }

    async def code(event: str, data: Any = None) -> str:
        ack = await patient.call(event, data)
        assert ack["ok"] is False, ack
        assert set(ack["error"]) == {"code", "message"}
        assert "Traceback" not in ack["error"]["message"]
        return str(ack["error"]["code"])

    # malformed SDP on a live publish connection
    for sdp in MALFORMED_SDP:
        assert await code("publish", {"type": "offer", "sdp": sdp}) == "bad_sdp"
    # an SDP with only a codec nobody supports
    unsupported = re.sub(
        r"a=rtpmap:(\d+) [^/\r\n]+/", r"a=rtpmap:\1 XYZ/", patient.publish_pc.localDescription.sdp
    )
    assert await code("publish", {"type": "offer", "sdp": unsupported}) == "bad_sdp"
    # wrong shapes
    assert await code("publish", "not an object") == "bad_request"
    assert await code("publish", {"type": "answer", "sdp": "v=0"}) == "bad_request"
    assert await code("mute", {"kind": "screen", "muted": True}) == "bad_request"
    assert await code("mute", {"kind": "audio", "muted": "yes"}) == "bad_request"
    assert await code("ice_candidate", {"target": "elsewhere", "candidate": None}) == "bad_request"
    assert (
        await code(
            "ice_candidate",
            {"target": "publish", "candidate": {"candidate": "nonsense", "sdpMid": "0"}},
        )
        == "bad_sdp"
    )
    # oversized
    assert await code("publish", {"type": "offer", "sdp": "v=0\r\n" + "a" * 100_000}) == (
        "message_too_large"
    )
    # events in the wrong order
    assert await code("join", {"visit": visit.visit_id}) == "already_joined"
    assert await code("subscribe", {}) == "invalid_state"
    assert await code("subscribe_answer", {"revision": 99, "type": "answer", "sdp": "v=0"}) in (
        "invalid_state",
        "stale_answer",
    )
    assert await code("no_such_event", {}) == "unknown_event"

    # a second socket of another visit: events before join, and a join of the wrong visit
    other = await server.visit()
    stranger = Participant(server.url, other.tokens["doctor"], other.visit_id)
    await stranger.connect()
    try:
        ack = await stranger.call("publish", {"type": "offer", "sdp": "v=0"})
        assert ack["error"]["code"] == "not_joined"
        ack = await stranger.call(
            "subscribe_answer", {"revision": 1, "type": "answer", "sdp": "v=0"}
        )
        assert ack["error"]["code"] == "not_joined"
        ack = await stranger.call("join", {"visit": visit.visit_id})
        assert ack["error"]["code"] == "visit_mismatch"
        ack = await stranger.call("join", {"visit": ""})
        assert ack["error"]["code"] == "bad_request"
    finally:
        await stranger.close()

    # the media of the call never stopped: both directions keep delivering fresh frames
    await wait_for(
        lambda: all(
            len(a.received_from(b.id, "video").counters) > before[(a.id, b.id)] + 30
            for a, b in ((doctor, patient), (patient, doctor))
        ),
        timeout=10,
        message="media stopped after bad input",
    )
    for a, b in ((doctor, patient), (patient, doctor)):
        counters = a.received_from(b.id, "video").counters
        assert all(y > x for x, y in itertools.pairwise(counters))
    # and the room still works: a mute goes through and reaches the other side
    assert (await patient.call("mute", {"kind": "audio", "muted": True}))["ok"]
    await wait_for(
        lambda: any(p["id"] == patient.id and p["audio_muted"] for p in doctor.participants),
        timeout=5,
    )


async def test_a_patient_sent_back_to_the_waiting_room_cannot_connect(server):
    """R6: the patient enters the room only while admitted; the refusal has its code."""
    from consult.actor import Actor
    from consult.permissions import Role
    from consult.visit_flow import send_back
    from web.keys import DATABASE

    visit = await server.visit()
    doctor_id = _claims(visit.tokens["doctor"])["sub"]
    await send_back(
        server.app[DATABASE], Actor(user_id=doctor_id, role=Role.DOCTOR), visit.visit_id
    )
    assert (await refused(server.url, visit.tokens["patient"]))["code"] == "not_admitted"
    # the doctor may still enter the room of the visit
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    try:
        await doctor.connect()
        await doctor.join()
    finally:
        await doctor.close()
