"""The consultation's session: opened by the requester or an accepted expert once R12 holds on
both sides, with its MDT room (:mod:`consult.consultations.room`)."""

from __future__ import annotations

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations import room
from consult.consultations.errors import (
    ConsultationNotFound,
    ExpertNotQualified,
    InviterNotQualified,
)
from consult.consultations.invitations import check_expert
from consult.consultations.loading import Loaded, has_accepted, load_consultation, move, refuse
from consult.consultations.machines import ConsultationEvent
from consult.consultations.models import Consultation, InvitationState
from consult.consultations.queries import get_consultation
from consult.consultations.views import ConsultationView
from consult.db import Database
from consult.errors import PermissionDenied, RoomNotFound
from consult.models import Practitioner, VerificationStatus


async def start_session(db: Database, actor: Actor, consultation_id: str) -> ConsultationView:
    """Open the consultation's session: the requester or an accepted expert (R12 checked: a
    verified requester, an accepted expert with 3+ years)."""
    action = "consultation.start"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"requester", "expert"})
        )
        if "expert" in loaded.sides and not has_accepted(loaded, actor.user_id):
            raise refuse(
                tx, actor, PermissionDenied("Accept the invitation first."), action, consultation_id
            )
        requester = await tx.session.get(Practitioner, loaded.row.requested_by)
        if requester is None or requester.verification != VerificationStatus.VERIFIED.value:
            raise refuse(tx, actor, InviterNotQualified(), action, consultation_id)
        qualified = False
        for invitation in loaded.invitations:
            if invitation.status == InvitationState.ACCEPTED.value:
                expert = await tx.session.get(Practitioner, invitation.expert_id)
                qualified = qualified or check_expert(expert, loaded.row) is None
        if not qualified:
            raise refuse(
                tx,
                actor,
                ExpertNotQualified("No accepted expert with 3+ years of practice."),
                action,
                consultation_id,
            )
        await move(tx, actor, loaded, ConsultationEvent.START)
        await _open_room(tx, actor, loaded)
    return await get_consultation(db, actor, consultation_id, audit=False)


async def _open_room(tx: AuditTx, actor: Actor, loaded: Loaded) -> None:
    """The consultation's MDT room (``consult.consultations.room``)."""
    await room.open_room(tx, actor, loaded.row, loaded.invitations)


async def room_id_of(db: Database, consultation_id: str) -> str:
    """The consultation's room id; whether the actor may enter is the room's policy
    (``consult.rooms.enter``: a participation, admitted, the room open)."""
    async with db.session() as session:
        row = await session.get(Consultation, consultation_id)
    if row is None:
        raise ConsultationNotFound()
    if row.room_id is None:
        raise RoomNotFound()
    return row.room_id
