"""The relationship rules (consult/access.py): participation, scope and a join token's binding."""

from __future__ import annotations

from consult.access import holds_room_role, is_participant, may_act_on_visit, room_role
from consult.actor import Actor
from consult.models import Visit
from consult.permissions import Role

D, P, OTHER = "d" * 32, "p" * 32, "o" * 32
VISIT = Visit(
    id="v" * 32,
    doctor_id=D,
    patient_id=P,
    institution_id="i" * 32,
    department_id="k" * 32,
    status="in_room",
)


def test_room_roles_of_a_visit():
    assert (room_role(VISIT, D), room_role(VISIT, P), room_role(VISIT, OTHER)) == (
        "doctor",
        "patient",
        None,
    )
    assert holds_room_role(VISIT, D, "doctor") and not holds_room_role(VISIT, D, "patient")
    assert not holds_room_role(VISIT, None, "doctor") and not holds_room_role(VISIT, P, "admin")


def test_participants_act_on_their_visit_only():
    assert may_act_on_visit(Actor(user_id=D, role=Role.DOCTOR), VISIT)
    assert may_act_on_visit(Actor(user_id=P, role=Role.PATIENT), VISIT)
    # a participant of another room, or in the wrong role
    assert not may_act_on_visit(Actor(user_id=OTHER, role=Role.DOCTOR), VISIT)
    assert not may_act_on_visit(Actor(user_id=OTHER, role=Role.PATIENT), VISIT)
    assert not may_act_on_visit(Actor(user_id=P, role=Role.DOCTOR), VISIT)


def test_a_join_token_is_bound_to_its_visit():
    mine = Actor(user_id=P, role=Role.PATIENT, room_visit_id=VISIT.id)
    other_room = Actor(user_id=P, role=Role.PATIENT, room_visit_id="x" * 32)
    assert is_participant(mine, VISIT) and not is_participant(other_room, VISIT)


def test_staff_act_within_their_scope():
    nurse = Actor(user_id=OTHER, role=Role.NURSE, institution_id=VISIT.institution_id)
    far_nurse = Actor(user_id=OTHER, role=Role.NURSE, institution_id="j" * 32)
    operator = Actor(
        user_id=OTHER, role=Role.OPERATOR, department_ids=frozenset({VISIT.department_id})
    )
    near_operator = Actor(user_id=OTHER, role=Role.OPERATOR, department_ids=frozenset({"m" * 32}))
    assert may_act_on_visit(nurse, VISIT) and not may_act_on_visit(far_nurse, VISIT)
    assert may_act_on_visit(operator, VISIT) and not may_act_on_visit(near_operator, VISIT)
    # staff are never the room's participants; admin, auditor, regulator act on no visit
    assert not is_participant(nurse, VISIT)
    for role in (Role.ADMIN, Role.AUDITOR, Role.REGULATOR):
        assert not may_act_on_visit(Actor(user_id=OTHER, role=role), VISIT)
