"""The consultation's MDT room (issue 14 item 4): a :class:`~consult.models.Room` of kind
``consultation`` (``consult.rooms``, docs/rooms.md) whose participations are the requester
(``inviter``), the patient when it has an account (``patient``, on the inviter's side) and every
accepted expert (``invitee``). The signaling room keyed by the room id carries the meeting; the
join token comes from ``POST /api/v1/consultations/{id}/join-token``."""

from __future__ import annotations

from collections.abc import Sequence

from consult import rooms
from consult.actor import Actor
from consult.audit import AuditTx
from consult.consultations.models import (
    Consultation,
    ConsultationInvitation,
    InvitationState,
)
from consult.models import ParticipationState, Room, RoomKind, RoomRole

SUBJECT: str = "consultation"


async def open_room(
    tx: AuditTx, actor: Actor, row: Consultation, invitations: Sequence[ConsultationInvitation]
) -> Room:
    """Open (once) the consultation's room with its participations; sets ``row.room_id``."""
    room = await rooms.room_of(tx.session, SUBJECT, row.id)
    if room is None:
        room = await rooms.open_room(
            tx.session,
            kind=RoomKind.CONSULTATION,
            subject_type=SUBJECT,
            subject_id=row.id,
            institution_id=row.institution_id,
        )
    row.room_id = room.id
    await rooms.add_participant(
        tx.session,
        room,
        row.requested_by,
        RoomRole.INVITER,
        ParticipationState.ADMITTED,
        institution_id=row.institution_id,
    )
    if row.patient_account_id:
        await rooms.add_participant(
            tx.session,
            room,
            row.patient_account_id,
            RoomRole.PATIENT,
            ParticipationState.ADMITTED,
            institution_id=row.institution_id,
            invited_by=row.requested_by,
        )
    for invitation in invitations:
        if invitation.status == InvitationState.ACCEPTED.value:
            await add_expert(tx, row, invitation)
    await tx.record(
        "consultation.open_room",
        actor=actor,
        object_type="consultation",
        object_id=row.id,
        details={"room_id": room.id},
    )
    return room


async def add_expert(tx: AuditTx, row: Consultation, invitation: ConsultationInvitation) -> None:
    """An expert who accepted takes part in the open room as an invitee (MDT: several)."""
    if row.room_id is None:
        return
    room = await tx.session.get(Room, row.room_id)
    if room is None or room.closed_at is not None:
        return
    await rooms.add_participant(
        tx.session,
        room,
        invitation.expert_id,
        RoomRole.INVITEE,
        ParticipationState.ADMITTED,
        institution_id=invitation.institution_id,
        invited_by=row.requested_by,
    )
