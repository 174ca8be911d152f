"""The one access policy (consult/access.py): role table, room-role table and relationships.

Pure decisions on loaded rows: a visit's own doctor and patient side, staff scope (another
department, another institution), participation in *this* room (none, another room's, gone),
admission, a closed room, and a join token bound to its room and room role.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consult import permissions
from consult.access import ROOM_ROLE_ACTIONS, VISIT_SIDE_ACTIONS, decide
from consult.actor import Actor
from consult.models import Participation, Room, RoomRole, Visit
from consult.permissions import SOCKET_EVENT_ACTIONS, Role

D, P, G, OTHER = "d" * 32, "p" * 32, "g" * 32, "o" * 32
INST, DEPT = "i" * 32, "k" * 32
VISIT = Visit(
    id="v" * 32,
    doctor_id=D,
    patient_id=P,
    institution_id=INST,
    department_id=DEPT,
    status="in_room",
)
ROOM = Room(id="r" * 32, kind="visit", subject_type="visit", subject_id=VISIT.id)
OTHER_ROOM = Room(id="x" * 32, kind="visit", subject_type="visit", subject_id="w" * 32)


def _in(room: Room, user: str, role: str, state: str = "admitted") -> Participation:
    return Participation(room_id=room.id, user_id=user, room_role=role, state=state)


def _code(actor: Actor, action: str, target: Visit | Room, row: Participation | None) -> str:
    error = decide(actor, action, target, row)
    return "ok" if error is None else error.code


def test_the_visits_own_people_act_on_it() -> None:
    doctor, patient = Actor(user_id=D, role=Role.DOCTOR), Actor(user_id=P, role=Role.PATIENT)
    assert _code(doctor, "visit.view", VISIT, _in(ROOM, D, "doctor")) == "ok"
    assert _code(patient, "visit.view", VISIT, _in(ROOM, P, "patient")) == "ok"
    # a guardian taking part in the room acts on the ward's visit; a companion does not
    guardian = Actor(user_id=G, role=Role.PATIENT)
    assert _code(guardian, "visit.view", VISIT, _in(ROOM, G, "guardian")) == "ok"
    assert _code(guardian, "visit.view", VISIT, _in(ROOM, G, "companion")) == "forbidden"
    assert _code(guardian, "visit.view", VISIT, _in(ROOM, G, "guardian", "left")) == "forbidden"
    # not a participant; a doctor of another visit; the patient claiming the doctor's actions
    assert _code(Actor(user_id=OTHER, role=Role.PATIENT), "visit.view", VISIT, None) == "forbidden"
    assert _code(Actor(user_id=OTHER, role=Role.DOCTOR), "visit.view", VISIT, None) == "forbidden"
    assert _code(patient, "visit.admit", VISIT, _in(ROOM, P, "patient")) == "forbidden"


def test_r40_only_the_patient_side_rates_and_only_the_doctor_replies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doctor, patient = Actor(user_id=D, role=Role.DOCTOR), Actor(user_id=P, role=Role.PATIENT)
    nurse = Actor(user_id=OTHER, role=Role.NURSE, institution_id=INST)
    guardian = Actor(user_id=G, role=Role.PATIENT)
    assert _code(patient, "rating.submit", VISIT, None) == "ok"
    assert _code(guardian, "rating.submit", VISIT, _in(ROOM, G, "guardian")) == "ok"
    assert _code(guardian, "rating.submit", VISIT, _in(ROOM, G, "companion")) == "forbidden"
    assert _code(doctor, "rating.reply", VISIT, None) == "ok"
    assert _code(Actor(user_id=OTHER, role=Role.DOCTOR), "rating.reply", VISIT, None) == (
        "forbidden"
    )
    for person in (doctor, patient, nurse):
        assert _code(person, "rating.view", VISIT, None) == "ok"
    # the sides table holds even if the role table let everyone in care try
    every = frozenset({Role.PATIENT, Role.DOCTOR, Role.NURSE, Role.OPERATOR})
    table = {**permissions.PERMISSIONS, **{a: every for a in VISIT_SIDE_ACTIONS}}
    monkeypatch.setattr(permissions, "PERMISSIONS", table)
    assert _code(nurse, "rating.submit", VISIT, None) == "forbidden"
    assert _code(doctor, "rating.edit", VISIT, None) == "forbidden"
    assert _code(patient, "rating.reply", VISIT, None) == "forbidden"
    assert _code(nurse, "rating.reply", VISIT, None) == "forbidden"


def test_staff_act_within_their_institution_and_departments() -> None:
    nurse = Actor(user_id=OTHER, role=Role.NURSE, institution_id=INST)
    far_nurse = Actor(user_id=OTHER, role=Role.NURSE, institution_id="j" * 32)
    operator = Actor(user_id=OTHER, role=Role.OPERATOR, department_ids=frozenset({DEPT}))
    other_dept = Actor(user_id=OTHER, role=Role.OPERATOR, department_ids=frozenset({"m" * 32}))
    assert _code(nurse, "visit.view", VISIT, None) == "ok"
    assert _code(far_nurse, "visit.view", VISIT, None) == "forbidden"  # another institution
    assert _code(operator, "visit.view", VISIT, None) == "ok"
    assert _code(other_dept, "visit.view", VISIT, None) == "forbidden"  # another department
    # admin, auditor, regulator act on no visit (the role table: no clinical data)
    for role in (Role.ADMIN, Role.AUDITOR, Role.REGULATOR):
        assert _code(Actor(user_id=OTHER, role=role), "visit.view", VISIT, None) == "forbidden"
    # staff are not the room's participants
    assert _code(nurse, "room.join", ROOM, None) == "forbidden"  # the table: nurses join nothing


def test_a_room_needs_a_participation_in_that_room() -> None:
    patient = Actor(user_id=P, role=Role.PATIENT)
    assert _code(patient, "room.join", ROOM, _in(ROOM, P, "patient")) == "ok"
    assert _code(patient, "room.join", ROOM, None) == "not_a_participant"
    # a participant of another room
    assert _code(patient, "room.join", ROOM, _in(OTHER_ROOM, P, "patient")) == "not_a_participant"
    # taken out of a room that goes on
    assert _code(patient, "room.join", ROOM, _in(ROOM, P, "patient", "left")) == (
        "not_a_participant"
    )
    # waiting: may not enter nor speak, may read
    waiting = _in(ROOM, P, "patient", "waiting")
    assert _code(patient, "room.join", ROOM, waiting) == "not_admitted"
    assert _code(patient, "room.chat", ROOM, waiting) == "not_admitted"
    assert _code(patient, "chat.read", ROOM, waiting) == "ok"


def test_a_closed_room_is_read_but_not_entered() -> None:
    closed = Room(
        id=ROOM.id,
        kind="visit",
        subject_type="visit",
        subject_id=VISIT.id,
        closed_at=datetime.now(UTC),
    )
    patient = Actor(user_id=P, role=Role.PATIENT)
    row = _in(closed, P, "patient", "left")
    assert _code(patient, "room.join", closed, row) == "visit_closed"
    assert _code(patient, "chat.export", closed, row) == "ok"


def test_a_join_token_is_bound_to_its_room_and_room_role() -> None:
    token = Actor(user_id=P, role=Role.PATIENT, room_id=ROOM.id, room_role="patient")
    assert _code(token, "room.chat", ROOM, _in(ROOM, P, "patient")) == "ok"
    assert _code(token, "room.chat", OTHER_ROOM, _in(OTHER_ROOM, P, "patient")) == (
        "not_a_participant"
    )
    as_guardian = Actor(user_id=P, role=Role.PATIENT, room_id=ROOM.id, room_role="guardian")
    assert _code(as_guardian, "room.chat", ROOM, _in(ROOM, P, "patient")) == "not_a_participant"
    # a token is for the room: not for the visit's other routes
    assert _code(token, "visit.view", VISIT, _in(ROOM, P, "patient")) == "forbidden"


@pytest.mark.parametrize(
    ("room_role", "action", "expected"),
    [
        ("doctor", "room.control", "ok"),
        ("patient", "room.control", "forbidden"),
        ("guardian", "room.chat", "ok"),
        ("interpreter", "room.publish", "ok"),
        ("companion", "room.viewer_sync", "forbidden"),
        ("observer", "room.chat", "forbidden"),
        ("observer", "room.subscribe", "ok"),
    ],
)
def test_the_room_role_table(room_role: str, action: str, expected: str) -> None:
    user_role = Role.DOCTOR if room_role in {"doctor", "observer"} else Role.PATIENT
    actor = Actor(user_id=OTHER, role=user_role, room_id=ROOM.id, room_role=room_role)
    if action in {"room.control", "room.viewer_sync"} and user_role is Role.PATIENT:
        expected = "forbidden"  # the role table already refuses a patient account
    assert _code(actor, action, ROOM, _in(ROOM, OTHER, room_role)) == expected


def test_every_socket_action_is_in_the_room_role_table() -> None:
    assert set(SOCKET_EVENT_ACTIONS.values()) <= set(ROOM_ROLE_ACTIONS)
    assert all(RoomRole.DOCTOR in roles for roles in ROOM_ROLE_ACTIONS.values())
