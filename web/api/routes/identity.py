"""Identity registration by staff (issue 13 item 3): verify a guardian relation, resolve an
identity dispute. Nurses and operators at the desk, documents in hand (``consult.identity``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from consult import identity
from consult.identity import DisputeView, PendingGuardian
from consult.models import DisputeState

from ..call import Call
from ..fields import Id, Input, Output
from ..registry import api
from .patients import Patient, patient_of


class Dispute(Output):
    id: str
    state: DisputeState
    as_ward: bool
    created_at: datetime
    claimant_user_id: str
    claimant_name: str
    claim: Patient | None
    existing: Patient


class DisputeList(Output):
    disputes: list[Dispute]


class DisputePath(Input):
    dispute_id: Id


class DisputeDecision(Input):
    decision: Literal["merge", "reject"]


class WardPath(Input):
    patient_id: Id


class GuardianDecision(Input):
    decision: Literal["verify", "refuse"]


class GuardianLink(Output):
    ward: Patient
    guardian: Patient


class GuardianLinkList(Output):
    links: list[GuardianLink]


def dispute_of(view: DisputeView) -> Dispute:
    return Dispute(
        id=view.id,
        state=view.state,
        as_ward=view.as_ward,
        created_at=view.created_at,
        claimant_user_id=view.claimant_user_id,
        claimant_name=view.claimant_name,
        claim=patient_of(view.claim) if view.claim is not None else None,
        existing=patient_of(view.existing),
    )


def link_of(pending: PendingGuardian) -> GuardianLink:
    return GuardianLink(ward=patient_of(pending.ward), guardian=patient_of(pending.guardian))


@api.operation("GET", "/identity-disputes", action="patient.resolve_identity", tag="patients")
async def list_disputes(call: Call) -> DisputeList:
    """Open identity disputes: a patient registered an ID number already on file."""
    views = await identity.open_disputes(call.db, call.me)
    return DisputeList(disputes=[dispute_of(v) for v in views])


@api.operation(
    "POST",
    "/identity-disputes/{dispute_id}/resolve",
    action="patient.resolve_identity",
    tag="patients",
)
async def resolve_dispute(call: Call, path: DisputePath, body: DisputeDecision) -> Dispute:
    """``merge``: the claimant is the person (or its guardian), the record on file becomes
    theirs; ``reject``: the claim is wrong. Either way the provisional record goes."""
    view = await identity.resolve_dispute(call.db, call.me, path.dispute_id, body.decision)
    return dispute_of(view)


@api.operation("GET", "/guardian-links/pending", action="patient.verify_guardian", tag="patients")
async def pending_guardian_links(call: Call) -> GuardianLinkList:
    """Wards a patient account registered, waiting for staff to verify the relation."""
    return GuardianLinkList(
        links=[link_of(p) for p in await identity.pending_guardians(call.db, call.me)]
    )


@api.operation(
    "POST",
    "/patients/{patient_id}/guardian",
    action="patient.verify_guardian",
    tag="patients",
)
async def decide_guardian(call: Call, path: WardPath, body: GuardianDecision) -> Patient:
    """Verify the ward's pending guardian relation (proof seen), or refuse it (the link goes)."""
    view = await identity.decide_guardian(
        call.db, call.me, path.patient_id, verified=body.decision == "verify"
    )
    return patient_of(view)
