"""The one access policy: may this actor do this action on this target?

Two tables and the relationships, in one place:

1. the role table (:data:`consult.permissions.PERMISSIONS`): which account roles may *attempt*
   an action at all (R34), and what a join token or a TOTP-enrolment session is limited to;
2. the room-role table (:data:`ROOM_ROLE_ACTIONS`): which room roles may do a room action
   (only the doctor controls the room; an observer neither publishes nor chats);
3. the relationships: a visit's own doctor, its patient-side account or a guardian taking part
   in its room; a nurse within its institution, an operator within its departments; for a room,
   the actor's participation in *that* room (a join token is bound to its room), admitted for
   what needs admission, and the room still open.

:func:`decide` answers for a loaded target without touching the database; :func:`check` loads
the actor's participation, decides, and records a refusal in the audit chain. Every service
check of a visit or a room goes through :func:`check` (``visit_flow``, ``chat``, ``rooms``);
socket events through :func:`authorize_event`; REST routes through the dispatcher's role-table
check and then the service's :func:`check`. ``tests/api/test_access_everywhere.py`` enumerates
every REST route and socket event and fails on one that bypasses this module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consult.actor import Actor
from consult.audit import AuditTx, append
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    ConsultError,
    NotAdmitted,
    NotAParticipant,
    PermissionDenied,
    VisitClosed,
)
from consult.models import (
    AuditResult,
    Participation,
    ParticipationState,
    Room,
    RoomRole,
    Visit,
)
from consult.permissions import Role, in_scope, require

R = RoomRole
_EVERY_ROOM_ROLE: Final = frozenset(RoomRole)
_SPEAKERS: Final = _EVERY_ROOM_ROLE - {R.OBSERVER}
_HOSTS: Final = frozenset({R.DOCTOR, R.INVITER})

ROOM_ROLE_ACTIONS: Final[Mapping[str, frozenset[RoomRole]]] = {
    "room.join": _EVERY_ROOM_ROLE,
    "room.publish": _SPEAKERS,
    "room.subscribe": _EVERY_ROOM_ROLE,
    "room.signal": _EVERY_ROOM_ROLE,
    "room.mute": _SPEAKERS,
    "room.leave": _EVERY_ROOM_ROLE,
    "room.chat": _SPEAKERS,
    "room.review": _EVERY_ROOM_ROLE,  # follow the room's shared image review
    "room.viewer_sync": frozenset({R.DOCTOR, R.INVITER, R.INVITEE}),
    "room.control": _HOSTS,
    "room.invite": _HOSTS,
    "room.admit": _HOSTS,
    "room.view": _EVERY_ROOM_ROLE,
    "chat.read": _EVERY_ROOM_ROLE,
    "chat.upload_image": _SPEAKERS,
    "chat.view_image": _EVERY_ROOM_ROLE,
    "chat.export": _EVERY_ROOM_ROLE,
}
"""Room action -> the room roles that may do it (on top of the role table)."""

NEEDS_ADMISSION: Final = frozenset({"room.join", "room.publish", "room.chat", "chat.upload_image"})
"""Room actions a waiting participant may not do yet (R6: the doctor admits)."""

HOST_ROLES: Final = frozenset({R.DOCTOR, R.INVITER})
"""Room roles that are admitted by being who they are (the room's host), never from waiting."""


@dataclass(frozen=True)
class Decision:
    """One answer of the policy, kept for tests that check every route asked (see below)."""

    action: str
    target_type: str
    target_id: str | None
    allowed: bool


_decisions: contextvars.ContextVar[list[Decision] | None] = contextvars.ContextVar(
    "access_decisions", default=None
)


def _note(action: str, target_type: str, target_id: str | None, allowed: bool) -> None:
    log = _decisions.get()
    if log is not None:
        log.append(Decision(action, target_type, target_id, allowed))


def observe() -> list[Decision]:
    """Start noting this task's decisions (and those of tasks it starts); returns the list.

    For the test that proves every route and socket event asks the policy; costs one
    context-variable lookup per decision otherwise.
    """
    log: list[Decision] = []
    _decisions.set(log)
    return log


# --- Deciding on a loaded target -------------------------------------------------------------


VISIT_SIDE_ACTIONS: Final[Mapping[str, frozenset[str]]] = {
    "rating.submit": frozenset({"patient"}),
    "rating.edit": frozenset({"patient"}),
    "rating.reply": frozenset({"doctor"}),
}
"""Visit action -> the sides of the visit that may do it (on top of the role table); an action
not listed is open to every side (:func:`visit_side`). R40: only the patient side rates a visit,
only its doctor replies; a nurse or an operator in scope may read a rating, never write one."""


def visit_side(actor: Actor, visit: Visit, participation: Participation | None) -> str | None:
    """Which side of the visit ``actor`` is on: ``doctor``, ``patient`` or ``staff``; ``None``
    for no relationship (the relationship rule for a visit: its record, its state changes, its
    documents, its rating).

    Its doctor; its patient-side account, or a guardian of its room (taking part in it, or, once
    the visit closed and everyone left the room, having been in it: the guardian of a minor
    reads the finished visit and rates it on the child's behalf, R40; one rating per visit); a
    nurse of its institution or an operator of its department (``staff``). ``participation`` is
    the actor's in the visit's room (or ``None``). A join token's actor acts on its own room's
    visit only. Companions and interpreters take part in the room but do not act on the visit's
    record.
    """
    if actor.room_id is not None and (
        participation is None or participation.room_id != actor.room_id
    ):
        return None
    # taken out of a room that goes on: not any more; the room closed with the visit: still
    guardian = (
        participation is not None
        and participation.room_role == R.GUARDIAN
        and (participation.state != ParticipationState.LEFT or visit.closed_at is not None)
    )
    if actor.role is Role.DOCTOR:
        return "doctor" if visit.doctor_id == actor.user_id else None
    if actor.role is Role.PATIENT:
        own = visit.patient_id == actor.user_id or guardian
        return "patient" if own else None
    if actor.role in {Role.NURSE, Role.OPERATOR} and in_scope(
        actor, institution_id=visit.institution_id, department_id=visit.department_id
    ):
        return "staff"
    return None


def may_act_on_visit(actor: Actor, visit: Visit, participation: Participation | None) -> bool:
    """Whether ``actor`` has any relationship to the visit (:func:`visit_side`)."""
    return visit_side(actor, visit, participation) is not None


def room_refusal(
    actor: Actor, action: str, room: Room, participation: Participation | None
) -> ConsultError | None:
    """Why ``actor`` may not do the room ``action`` in ``room`` now, or ``None``.

    Not a participant of this room (none, gone, or a join token for another room; also a
    participation held in another room role than the token says) -> ``not_a_participant``;
    a room role the room-role table refuses -> ``forbidden``; the room closed ->
    ``visit_closed``; waiting for what needs admission -> ``not_admitted``.
    """
    if actor.room_id is not None and actor.room_id != room.id:
        return NotAParticipant("The join token is for another room.")
    if (
        participation is None
        or participation.room_id != room.id
        or participation.user_id != actor.user_id
        # taken out of a room that goes on; once the room closed, its people may still read
        or (participation.state == ParticipationState.LEFT and room.closed_at is None)
    ):
        return NotAParticipant()
    if actor.room_role is not None and actor.room_role != participation.room_role:
        return NotAParticipant("The join token names another room role.")
    allowed = ROOM_ROLE_ACTIONS.get(action)
    if allowed is None or RoomRole(participation.room_role) not in allowed:
        return PermissionDenied("Your role in this room does not allow it.")
    if action in NEEDS_ADMISSION:
        if room.closed_at is not None:
            return VisitClosed()
        if participation.state != ParticipationState.ADMITTED:
            return NotAdmitted()
    return None


def decide(
    actor: Actor,
    action: str,
    target: Visit | Room,
    participation: Participation | None,
) -> ConsultError | None:
    """The whole answer for a loaded target: the role table, then the relationships."""
    try:
        require(actor, action)
    except PermissionDenied as exc:
        error: ConsultError | None = exc
    else:
        if isinstance(target, Room):
            error = room_refusal(actor, action, target, participation)
        else:
            side = visit_side(actor, target, participation)
            sides = VISIT_SIDE_ACTIONS.get(action)
            if side is None:
                error = PermissionDenied("Not your visit.")
            elif sides is not None and side not in sides:
                error = PermissionDenied("Not for your side of the visit.")
            else:
                error = None
    _note(action, _type_of(target), target.id, error is None)
    return error


def _type_of(target: Visit | Room) -> str:
    return "room" if isinstance(target, Room) else "visit"


# --- Checking, with the database and the audit chain --------------------------------------------


async def participation_of(
    session: AsyncSession, room_id: str | None, user_id: str | None
) -> Participation | None:
    """``user_id``'s participation in ``room_id``, or ``None``."""
    if room_id is None or user_id is None:
        return None
    return await session.scalar(
        select(Participation).where(
            Participation.room_id == room_id, Participation.user_id == user_id
        )
    )


async def visit_room_id(session: AsyncSession, visit_id: str) -> str | None:
    """The id of a visit's room."""
    return await session.scalar(
        select(Room.id).where(Room.subject_type == "visit", Room.subject_id == visit_id)
    )


async def check(
    tx: AuditTx, actor: Actor, action: str, target: Visit | Room
) -> Participation | None:
    """Decide, and raise the refusal recorded in the audit chain (after rollback).

    Returns the actor's participation in the target's room (``None`` for staff acting on a
    visit by scope).
    """
    if isinstance(target, Room):
        room_id: str | None = target.id
    else:
        room_id = await visit_room_id(tx.session, target.id)
    participation = await participation_of(tx.session, room_id, actor.user_id)
    error = decide(actor, action, target, participation)
    if error is not None:
        raise tx.refuse(
            error,
            actor=actor,
            action=action,
            object_type=_type_of(target),
            object_id=target.id,
            details={"room_role": participation.room_role} if participation else None,
        )
    return participation


async def authorize_event(db: Database, actor: Actor, action: str, room_id: str) -> None:
    """A socket event of a join token's actor in its room: the role table (a refusal audited),
    the token's room and the room-role table. Admission and the room's state were checked when
    the socket joined; a later change reaches the socket as a domain event (it is evicted)."""
    await authorize(db, actor, action, object_type="room", object_id=room_id)
    error: ConsultError | None = None
    if actor.room_id != room_id:
        error = NotAParticipant("The join token is for another room.")
    else:
        allowed = ROOM_ROLE_ACTIONS.get(action)
        if allowed is None or actor.room_role not in allowed:
            error = PermissionDenied("Your role in this room does not allow it.")
    _note(action, "room", room_id, error is None)
    if error is not None:
        await append(
            db,
            action,
            actor=actor,
            object_type="room",
            object_id=room_id,
            result=AuditResult.DENIED,
            details={"code": error.code, "room_role": actor.room_role},
        )
        raise error


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
    if actor.user_id is None or actor.room_id is not None:
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
