"""The consultation's MDT room (issue 14 item 4): a Room of kind consultation whose
Participations are the requester (inviter), the patient and the accepted experts (invitees)."""

from __future__ import annotations

from collections.abc import Sequence

from consult.actor import Actor
from consult.audit import AuditTx
from consult.consultations.models import Consultation, ConsultationInvitation


async def open_room(
    tx: AuditTx, actor: Actor, row: Consultation, invitations: Sequence[ConsultationInvitation]
) -> None:
    """Open (once) the consultation's room. Until rooms land, the room id is the consultation's."""
    if row.room_id is None:
        row.room_id = row.id
