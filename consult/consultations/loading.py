"""Loading a consultation with the acting user's sides, and the helpers every service shares:
who is told of a change (:func:`parties_of`), one move of the request's machine (:func:`move`),
an audited refusal (:func:`refuse`), and the encryption contexts of the stored texts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select

from consult.access import consultation_sides
from consult.actor import Actor
from consult.audit import AuditTx
from consult.consultations.errors import ConsultationNotFound
from consult.consultations.machines import CONSULTATION_MACHINE, ConsultationEvent
from consult.consultations.models import (
    Consultation,
    ConsultationInvitation,
    ConsultationState,
    ConsultCentre,
    CooperationAgreement,
    InvitationState,
)
from consult.errors import ConsultError, PermissionDenied
from consult.models import User, UserDepartment

UNSENT: Final = frozenset(
    {ConsultationState.DRAFT, ConsultationState.SUBMITTED, ConsultationState.APPROVED}
)
"""States in which the invited institution does not see the request yet."""
TEXT_CONTEXTS: Final = {
    "description": "consultations.description",
    "history": "consultations.history",
    "summary": "consultations.summary",
    "decision": "consultations.decision",
}
REPORT_CONTEXT: Final = "opinion_reports.content"


async def has_agreement(tx: AuditTx, inviter: str, invitee: str) -> bool:
    """Whether ``inviter`` may send requests to ``invitee`` (R15)."""
    found = await tx.session.scalar(
        select(CooperationAgreement.id).where(
            CooperationAgreement.inviter_institution_id == inviter,
            CooperationAgreement.invitee_institution_id == invitee,
        )
    )
    return found is not None


async def centre_of(session: Any, institution_id: str) -> str | None:
    """The department that is the institution's consult centre, if it has one."""
    row = await session.get(ConsultCentre, institution_id)
    return row.department_id if row is not None else None


@dataclass
class Loaded:
    """A consultation row with its invitations and the sides the acting user holds."""

    row: Consultation
    sides: frozenset[str]
    invitations: list[ConsultationInvitation]
    centre_operators: tuple[tuple[str, str], ...] = ()
    """``(side, user_id)`` of the operators of both centres, told of every change."""


async def _operators_of(session: Any, department_id: str | None) -> list[str]:
    if department_id is None:
        return []
    rows = await session.scalars(
        select(UserDepartment.user_id).where(UserDepartment.department_id == department_id)
    )
    return sorted(rows.all())


async def load_sides(tx: AuditTx, actor: Actor, row: Consultation) -> Loaded:
    """``row`` with its invitations and ``actor``'s sides (none: not its consultation)."""
    invitations = list(
        (
            await tx.session.scalars(
                select(ConsultationInvitation)
                .where(ConsultationInvitation.consultation_id == row.id)
                .order_by(ConsultationInvitation.created_at, ConsultationInvitation.id)
            )
        ).all()
    )
    inviter_centre = await centre_of(tx.session, row.institution_id)
    invitee_centre = await centre_of(tx.session, row.target_institution_id)
    sides = consultation_sides(
        actor,
        institution_id=row.institution_id,
        department_id=row.department_id,
        requested_by=row.requested_by,
        target_institution_id=row.target_institution_id,
        inviter_centre_department=inviter_centre,
        invitee_centre_department=invitee_centre,
        invited_expert_ids=frozenset(
            i.expert_id for i in invitations if i.status != InvitationState.WITHDRAWN.value
        ),
        sent=ConsultationState(row.status) not in UNSENT,
    )
    operators = [("inviter_centre", u) for u in await _operators_of(tx.session, inviter_centre)]
    if ConsultationState(row.status) not in UNSENT:  # the invited side hears once it is sent
        invitee_operators = await _operators_of(tx.session, invitee_centre)
        operators += [("invitee_centre", u) for u in invitee_operators]
    return Loaded(row, sides, invitations, tuple(operators))


async def load_consultation(
    tx: AuditTx,
    actor: Actor,
    consultation_id: str,
    action: str,
    needs: frozenset[str],
    *,
    lock: bool = True,
    denied: ConsultError | None = None,
) -> Loaded:
    """The consultation (locked for update unless ``lock`` is false) if ``actor`` holds one of
    the ``needs`` sides; else an audited refusal (``denied``, or ``forbidden``)."""
    row = await tx.session.get(Consultation, consultation_id, with_for_update=lock)
    if row is None:
        raise ConsultationNotFound()
    loaded = await load_sides(tx, actor, row)
    if not loaded.sides & needs:
        raise tx.refuse(
            denied or PermissionDenied("Not your consultation."),
            actor=actor,
            action=action,
            object_type="consultation",
            object_id=consultation_id,
        )
    return loaded


def parties_of(loaded: Loaded) -> tuple[tuple[str, str], ...]:
    """``(side, user_id)`` of everyone told of a change: the requester, the invited experts,
    the patient's account, the centres' operators."""
    row = loaded.row
    parties = [("requester", row.requested_by)]
    parties += [("expert", i.expert_id) for i in loaded.invitations]
    if row.patient_account_id:
        parties.append(("patient", row.patient_account_id))
    return (*parties, *loaded.centre_operators)


async def move(
    tx: AuditTx,
    actor: Actor,
    loaded: Loaded,
    event: ConsultationEvent,
    details: Mapping[str, Any] | None = None,
) -> None:
    """One transition of the request's machine, told to :func:`parties_of`."""
    await CONSULTATION_MACHINE.set_state(
        tx, actor, loaded.row, event, details, parties=parties_of(loaded)
    )


def refuse(
    tx: AuditTx, actor: Actor, error: ConsultError, action: str, object_id: str, **details: Any
) -> ConsultError:
    """``error`` after auditing the refused ``action`` on the consultation."""
    return tx.refuse(
        error,
        actor=actor,
        action=action,
        object_type="consultation",
        object_id=object_id,
        details=details or None,
    )


def has_accepted(loaded: Loaded, user_id: str | None) -> bool:
    """Whether ``user_id`` is an expert who accepted its invitation."""
    return any(
        i.expert_id == user_id and i.status == InvitationState.ACCEPTED.value
        for i in loaded.invitations
    )


async def names_of(session: Any, user_ids: list[str]) -> dict[str, str]:
    """Display names by user id."""
    if not user_ids:
        return {}
    rows = (
        await session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    ).all()
    return {row[0]: row[1] for row in rows}
