"""The relationship rules of access, in one place, beside the role table.

:mod:`consult.permissions` says which roles may *attempt* an action; this module says whether an
actor may do it *on this visit*: its participation (the visit's doctor, its patient account) or,
for staff, its scope (a nurse within its institution, an operator within its departments). A
join token's actor is bound to its visit. Every visit check of the services goes through here:
``visit_flow`` (acting on a visit, entering its room), ``visits`` (a join token on connect) and
``chat`` (the room's chat).
"""

from __future__ import annotations

from consult.actor import Actor
from consult.models import Visit
from consult.permissions import Role, in_scope

ROOM_ROLES = ("doctor", "patient")
"""The roles a visit's room knows, each held by one account of the visit."""


def room_role(visit: Visit, user_id: str | None) -> str | None:
    """The room role ``user_id`` holds in ``visit`` (``doctor``, ``patient``), or ``None``."""
    if user_id is None:
        return None
    if visit.doctor_id == user_id:
        return "doctor"
    if visit.patient_id == user_id:
        return "patient"
    return None


def holds_room_role(visit: Visit, user_id: str | None, role: str) -> bool:
    """Whether ``user_id`` is the visit's participant in ``role``."""
    holder = {"doctor": visit.doctor_id, "patient": visit.patient_id}.get(role)
    return user_id is not None and holder == user_id


def is_participant(actor: Actor, visit: Visit) -> bool:
    """Whether ``actor`` takes part in ``visit`` in its own role (a join token: on its visit)."""
    if actor.room_visit_id is not None and actor.room_visit_id != visit.id:
        return False
    return holds_room_role(visit, actor.user_id, actor.role.value)


def may_act_on_visit(actor: Actor, visit: Visit) -> bool:
    """Whether ``actor`` may act on ``visit``: a participant, or staff whose scope holds it."""
    if actor.role in {Role.PATIENT, Role.DOCTOR}:
        return is_participant(actor, visit)
    if actor.role in {Role.NURSE, Role.OPERATOR}:
        return in_scope(
            actor, institution_id=visit.institution_id, department_id=visit.department_id
        )
    return False


# --- Remote consultation (issue 14): inviter's institution, invitee, department scope ------------


def consultation_sides(
    actor: Actor,
    *,
    institution_id: str,
    department_id: str | None,
    requested_by: str,
    target_institution_id: str,
    inviter_centre_department: str | None,
    invitee_centre_department: str | None,
    invited_expert_ids: frozenset[str],
    sent: bool,
) -> frozenset[str]:
    """The sides ``actor`` holds on a consultation: a subset of ``requester``, ``inviter``
    (a doctor of the requesting department), ``inviter_centre``, ``invitee_centre``, ``expert``.

    The invitee side sees the request only once it is sent; an expert only once invited.
    Nobody else (admin, auditor, patients, other institutions) holds a side.
    """
    sides: set[str] = set()
    if actor.user_id is None or actor.room_visit_id is not None:
        return frozenset()
    if actor.role is Role.DOCTOR:
        if actor.user_id == requested_by:
            sides.add("requester")
        if (
            actor.institution_id == institution_id
            and department_id is not None
            and department_id in actor.department_ids
        ):
            sides.add("inviter")
        if sent and actor.user_id in invited_expert_ids:
            sides.add("expert")
    elif actor.role is Role.OPERATOR:
        if (
            inviter_centre_department is not None
            and actor.institution_id == institution_id
            and inviter_centre_department in actor.department_ids
        ):
            sides.add("inviter_centre")
        if (
            sent
            and invitee_centre_department is not None
            and actor.institution_id == target_institution_id
            and invitee_centre_department in actor.department_ids
        ):
            sides.add("invitee_centre")
    return frozenset(sides)


INVITER_SIDES = frozenset({"requester", "inviter", "inviter_centre"})
INVITEE_SIDES = frozenset({"expert", "invitee_centre"})
