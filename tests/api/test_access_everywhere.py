"""Every REST route and every socket event resolves access through the one policy (issue 11).

REST: every route that names a visit, a room or a chat image is called by an account whose role
the table allows but who has no relationship to the object (a patient or a doctor of another
visit); each must answer 403 *and* the policy (``consult.access.decide``) must have refused that
very object. A new route naming such an object that checks ownership on its own, or not at
all, fails here. Routes naming no object are checked by the role table in the dispatcher: their
action must be in it. Sockets: every event handler of the signaling server, sent by a joined
participant, must reach ``consult.access.authorize_event`` with its action.
"""

from __future__ import annotations

from typing import Any

import pytest
from apiclient import Clinic
from chat_images import jpeg
from client import Participant
from people import booked_visit, sign, verified_doctor

from consult import access
from consult.permissions import PERMISSIONS, SOCKET_EVENT_ACTIONS
from consult.rooms import visit_room_id
from web.api import api
from web.keys import DATABASE, SIGNALING

#: Routes naming a visit that only the table decides, and why.
TABLE_ONLY = {
    # the regulator's export (R22): the regulator has no relationship to any visit; it reads all
    ("GET", "/exports/visits/{visit_id}/recordings"): "regulator export, table only",
}

BODIES: dict[str, Any] = {
    "/visits/{visit_id}/consent": {"version": "x", "digest": "0" * 64},
    "/visits/{visit_id}/refusal": {"version": "x", "digest": "0" * 64},
    "/visits/{visit_id}/check-in": {},
    "/visits/{visit_id}/refer": {"reason": "线下检查"},
    "/visits/{visit_id}/invitations": {"room_role": "companion", "label": "家属"},
    "/visits/{visit_id}/rating": {"stars": 5},
    "/visits/{visit_id}/rating/reply": {"text": "谢谢"},
}

DOCTOR_ONLY_ACTIONS = {
    "visit.admit",
    "visit.send_back",
    "visit.end",
    "visit.refer",
    "room.invite",
    "rating.reply",
}


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    """Every decision of the policy while the test runs: (action, target id, allowed)."""
    log: list[tuple[str, str, bool]] = []
    real_decide, real_event = access.decide, access.authorize_event

    def decide(actor, action, target, participation):  # type: ignore[no-untyped-def]
        error = real_decide(actor, action, target, participation)
        log.append((action, target.id, error is None))
        return error

    async def authorize_event(db, actor, action, room_id):  # type: ignore[no-untyped-def]
        try:
            await real_event(db, actor, action, room_id)
        except Exception:
            log.append((action, room_id, False))
            raise
        log.append((action, room_id, True))

    monkeypatch.setattr(access, "decide", decide)
    monkeypatch.setattr(access, "authorize_event", authorize_event)
    return log


def test_every_route_names_an_action_of_the_table() -> None:
    for op in api.operations:
        assert op.public or op.action in PERMISSIONS, (op.method, op.path)


async def test_every_object_route_asks_the_policy(
    server, clinic: Clinic, decisions: list[tuple[str, str, bool]]
) -> None:
    doctor = await verified_doctor(clinic)
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    patient, visit_id = booked.patient, booked.visit["id"]
    await sign(patient, visit_id, "risk_notice", "consent")
    await patient.ok("POST", f"/visits/{visit_id}/check-in", {})
    await doctor.ok("POST", f"/visits/{visit_id}/admit")
    image = await patient.ok("POST", f"/visits/{visit_id}/chat/images", raw=jpeg())
    room_id = await visit_room_id(server.app[DATABASE], visit_id)
    other_patient = await clinic.person("patient")  # a participant of no room of this visit
    other_doctor = await verified_doctor(clinic, name="李医生")

    checked = 0
    for op in api.operations:
        params = ("{visit_id}", "{image_id}", "{room_id}")
        if not any(p in op.path for p in params) or (op.method, op.path) in TABLE_ONLY:
            continue
        path = (
            op.path.replace("{visit_id}", visit_id)
            .replace("{image_id}", image["id"])
            .replace("{room_id}", str(room_id))
            .replace("{session}", "20261201T120000-abcdef")
            .replace("{user_id}", patient.user_id)
        )
        outsider = other_doctor if op.action in DOCTOR_ONLY_ACTIONS else other_patient
        decisions.clear()
        if op.raw_body:
            reply = await outsider.call(op.method, path, raw=jpeg())
        else:
            reply = await outsider.call(op.method, path, BODIES.get(op.path))
        assert reply.status == 403, (op.method, op.path, reply)
        asked = {(target, allowed) for _action, target, allowed in decisions}
        assert (visit_id, False) in asked or (room_id, False) in asked, (op.path, decisions)
        checked += 1
    assert checked >= 18  # the visit, its documents, its transitions, its room and chat


async def test_every_socket_event_asks_the_policy(
    server, decisions: list[tuple[str, str, bool]]
) -> None:
    visit = await server.visit()
    patient = Participant(server.url, visit.tokens["patient"], visit.visit_id)
    handlers = server.app[SIGNALING]._handlers
    assert set(handlers) <= set(SOCKET_EVENT_ACTIONS)  # every handler names its action
    try:
        await patient.connect()
        await patient.join()
        for event in sorted(handlers, key=lambda name: name == "leave"):  # leave last
            decisions.clear()
            await patient.call(event, {})
            assert (SOCKET_EVENT_ACTIONS[event], visit.room_id) in {
                (action, target) for action, target, _ in decisions
            }, event
    finally:
        await patient.close()


async def test_no_socket_handler_goes_around_the_dispatcher(server) -> None:
    """Every event of the room namespace reaches the server through its one dispatcher (``*``,
    which asks ``authorize_event`` before any handler above runs); the portal pages' namespace
    has only its connect (the session, then the role table's ``session.view``) and ``touch``
    (the session again). A handler registered on its own, in any namespace, fails here."""
    sio = server.app[SIGNALING].sio
    registered = {namespace: set(handlers) for namespace, handlers in sio.handlers.items()}
    assert registered == {
        "/": {"connect", "disconnect", "*"},
        "/updates": {"connect", "disconnect", "touch"},
    }, registered
