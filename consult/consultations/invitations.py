"""Invitations of experts (R11, R12): the invited centre assigns qualified experts (3+ years, the
title asked), each accepts or declines with a reason, and an unanswered one expires."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from consult.access import INVITEE_SIDES
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations import room
from consult.consultations.errors import (
    AlreadyInvited,
    DeclineReasonRequired,
    ExpertElsewhere,
    ExpertNotQualified,
    InvitationExpired,
    InvitationNotFound,
)
from consult.consultations.loading import (
    Loaded,
    load_consultation,
    move,
    names_of,
    parties_of,
    refuse,
)
from consult.consultations.machines import (
    CONSULTATION_MACHINE,
    INVITATION_MACHINE,
    ConsultationEvent,
    InvitationEvent,
)
from consult.consultations.models import (
    Consultation,
    ConsultationInvitation,
    ConsultationState,
    InvitationState,
    Urgency,
)
from consult.consultations.views import InvitationView, invitation_view
from consult.db import Database
from consult.errors import ConsultError, InvalidTransition, PermissionDenied
from consult.events import StateChanged, publish
from consult.models import Practitioner, Title, VerificationStatus
from consult.sqltypes import utc_now

MIN_EXPERT_YEARS: Final = 3
"""R12: the invitee side has a physician with 3+ years of independent practice."""
TITLE_RANK: Final = {
    Title.RESIDENT: 0,
    Title.ATTENDING: 1,
    Title.ASSOCIATE_CHIEF: 2,
    Title.CHIEF: 3,
}
RESPOND_WITHIN: Final = {Urgency.ROUTINE: timedelta(hours=24), Urgency.URGENT: timedelta(hours=2)}
"""R11: how long an invited expert has to answer, by urgency (unless the centre says)."""


def check_expert(practitioner: Practitioner | None, row: Consultation) -> ConsultError | None:
    """Why ``practitioner`` may not be an expert of ``row`` (R12), or ``None``."""
    if practitioner is None or practitioner.verification != VerificationStatus.VERIFIED.value:
        return ExpertNotQualified("The expert's practice is not verified.")
    if practitioner.institution_id != row.target_institution_id:
        return ExpertElsewhere()
    if practitioner.years_of_practice < MIN_EXPERT_YEARS:
        return ExpertNotQualified(
            f"The expert has {practitioner.years_of_practice} years of practice; "
            f"{MIN_EXPERT_YEARS} or more are required (R12)."
        )
    if TITLE_RANK[Title(practitioner.title)] < TITLE_RANK[Title(row.min_title)]:
        return ExpertNotQualified("The expert's title is below the title asked.")
    return None


async def assign_expert(
    db: Database,
    actor: Actor,
    consultation_id: str,
    expert_id: str,
    *,
    respond_within: timedelta | None = None,
    now: datetime | None = None,
) -> InvitationView:
    """The invited institution's centre invites one of its experts (several for an MDT)."""
    action = "consultation.assign"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    now = now or utc_now()
    async with audited(db) as tx:
        loaded = await load_consultation(
            tx, actor, consultation_id, action, frozenset({"invitee_centre"})
        )
        row = loaded.row
        if row.status not in {
            ConsultationState.SENT.value,
            ConsultationState.ACCEPTED.value,
            ConsultationState.IN_SESSION.value,
        }:
            error = CONSULTATION_MACHINE.closed_error() if row.closed_at else InvalidTransition()
            raise refuse(tx, actor, error, action, consultation_id, state=row.status)
        if any(i.expert_id == expert_id for i in loaded.invitations):
            raise AlreadyInvited()
        practitioner = await tx.session.get(Practitioner, expert_id)
        problem = check_expert(practitioner, row)
        if problem is not None:
            raise refuse(tx, actor, problem, action, consultation_id, expert_id=expert_id)
        within = respond_within or RESPOND_WITHIN[Urgency(row.urgency)]
        invitation = ConsultationInvitation(
            consultation_id=row.id,
            institution_id=row.target_institution_id,
            expert_id=expert_id,
            assigned_by=actor.user_id,
            status=InvitationState.INVITED.value,
            respond_by=now + within,
            created_at=now,
        )
        tx.session.add(invitation)
        await tx.session.flush()
        loaded.invitations.append(invitation)
        await tx.record(
            action,
            actor=actor,
            object_type="consultation",
            object_id=row.id,
            details={"invitation_id": invitation.id, "expert_id": expert_id},
        )
        publish(
            tx,
            StateChanged(
                "invitation",
                invitation.id,
                "",
                "invited",
                "assign",
                actor.user_id,
                parties_of(loaded),
            ),
        )
        names = await names_of(tx.session, [expert_id])
        return invitation_view(invitation, names)


async def _load_invitation(
    tx: AuditTx, actor: Actor, invitation_id: str, action: str
) -> tuple[ConsultationInvitation, Loaded]:
    invitation = await tx.session.get(ConsultationInvitation, invitation_id, with_for_update=True)
    if invitation is None:
        raise InvitationNotFound()
    loaded = await load_consultation(tx, actor, invitation.consultation_id, action, INVITEE_SIDES)
    if (
        action.startswith("invitation.")
        and action != "invitation.withdraw"
        and invitation.expert_id != actor.user_id
    ):
        raise tx.refuse(
            PermissionDenied("Not your invitation."),
            actor=actor,
            action=action,
            object_type="invitation",
            object_id=invitation_id,
        )
    return invitation, loaded


async def accept_invitation(
    db: Database, actor: Actor, invitation_id: str, *, now: datetime | None = None
) -> None:
    """The expert accepts; the first acceptance moves the request to ``accepted`` (R11)."""
    action = "invitation.accept"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    now = now or utc_now()
    expired = False
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if invitation.status == InvitationState.INVITED.value and invitation.respond_by <= now:
            await INVITATION_MACHINE.set_state(
                tx, actor, invitation, InvitationEvent.EXPIRE, parties=parties_of(loaded)
            )
            expired = True
        else:
            await INVITATION_MACHINE.set_state(
                tx, actor, invitation, InvitationEvent.ACCEPT, parties=parties_of(loaded)
            )
            invitation.responded_at = now
            await room.add_expert(tx, loaded.row, invitation)
            if loaded.row.status == ConsultationState.SENT.value:
                await move(
                    tx, actor, loaded, ConsultationEvent.ACCEPT, {"invitation_id": invitation_id}
                )
    if expired:
        raise InvitationExpired()


async def decline_invitation(
    db: Database, actor: Actor, invitation_id: str, reason: str, *, now: datetime | None = None
) -> None:
    """The expert declines with its reason (R11); the inviter sees the reason."""
    action = "invitation.decline"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    now = now or utc_now()
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if not reason.strip():
            raise tx.refuse(
                DeclineReasonRequired(),
                actor=actor,
                action=action,
                object_type="invitation",
                object_id=invitation_id,
            )
        invitation.decline_reason = reason.strip()
        invitation.responded_at = now
        await INVITATION_MACHINE.set_state(
            tx,
            actor,
            invitation,
            InvitationEvent.DECLINE,
            {"reason": reason.strip()[:200]},
            parties=parties_of(loaded),
        )


async def withdraw_invitation(db: Database, actor: Actor, invitation_id: str) -> None:
    """The invited institution's centre takes an invitation back."""
    action = "invitation.withdraw"
    await authorize(db, actor, action, object_type="invitation", object_id=invitation_id)
    async with audited(db) as tx:
        invitation, loaded = await _load_invitation(tx, actor, invitation_id, action)
        if "invitee_centre" not in loaded.sides:
            raise tx.refuse(
                PermissionDenied(),
                actor=actor,
                action=action,
                object_type="invitation",
                object_id=invitation_id,
            )
        await INVITATION_MACHINE.set_state(
            tx, actor, invitation, InvitationEvent.WITHDRAW, parties=parties_of(loaded)
        )


async def expire_overdue(db: Database, *, now: datetime | None = None) -> int:
    """Expire every invitation past its deadline (R11); returns how many. Run periodically."""
    now = now or utc_now()
    system = Actor.system("expiry")
    async with db.session() as session:
        ids = (
            await session.scalars(
                select(ConsultationInvitation.id).where(
                    ConsultationInvitation.status == InvitationState.INVITED.value,
                    ConsultationInvitation.respond_by <= now,
                )
            )
        ).all()
    count = 0
    for invitation_id in ids:
        async with audited(db) as tx:
            invitation = await tx.session.get(
                ConsultationInvitation, invitation_id, with_for_update=True
            )
            if invitation is None or invitation.status != InvitationState.INVITED.value:
                continue
            consultation = await tx.session.get(Consultation, invitation.consultation_id)
            assert consultation is not None
            parties = (("requester", consultation.requested_by), ("expert", invitation.expert_id))
            await INVITATION_MACHINE.set_state(
                tx, system, invitation, InvitationEvent.EXPIRE, parties=parties
            )
            count += 1
    return count
