"""Identity registration by staff (issue 13 item 3): guardian relations and disputed ID numbers.

- A ward a patient account registers is linked to it *pending*: the guardian cannot act for the
  ward (view it, book for it, join its visits) until a nurse or an operator has seen proof of the
  relation and verified it here, or refused it (the link is removed).
- A patient who registers an ID number already on file gets a provisional record and is told
  nothing (``consult.patients``); the dispute comes here. Staff compare documents and decide:
  ``merge`` (the claimant is the person, or its guardian: the record on file becomes theirs, the
  provisional one goes) or ``reject`` (a typo or another person: the provisional record goes).

Every list and decision is audited; ID numbers appear masked only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.crypto import FieldCipher
from consult.db import Database
from consult.errors import (
    DisputeClosed,
    DisputeNotFound,
    GuardianNotPending,
    PatientNotFound,
)
from consult.models import DisputeState, IdentityDispute, Patient, User
from consult.patients import PatientView, decrypt
from consult.sqltypes import utc_now

Decision = Literal["merge", "reject"]
LIST_LIMIT = 200


@dataclass(frozen=True)
class DisputeView:
    """An identity dispute as staff see it: who claims, what they registered, what is on file."""

    id: str
    state: DisputeState
    as_ward: bool
    created_at: datetime
    claimant_user_id: str
    claimant_name: str
    claim: PatientView | None
    """The claimant's provisional record (gone once resolved)."""
    existing: PatientView


@dataclass(frozen=True)
class PendingGuardian:
    """A ward whose guardian link waits for staff, with the guardian's record."""

    ward: PatientView
    guardian: PatientView


async def open_disputes(db: Database, actor: Actor) -> list[DisputeView]:
    """The open disputes, oldest first (``patient.resolve_identity``; each record shown is an
    audited view)."""
    await authorize(db, actor, "patient.resolve_identity", object_type="identity_dispute")
    async with audited(db) as tx:
        rows = (
            await tx.session.scalars(
                select(IdentityDispute)
                .where(IdentityDispute.state == DisputeState.OPEN.value)
                .order_by(IdentityDispute.created_at)
                .limit(LIST_LIMIT)
            )
        ).all()
        return [await _view(tx, actor, row, db.cipher) for row in rows]


async def resolve_dispute(
    db: Database, actor: Actor, dispute_id: str, decision: Decision
) -> DisputeView:
    """Decide a dispute (``patient.resolve_identity``; audited ``identity.dispute_resolved``)."""
    await authorize(
        db, actor, "patient.resolve_identity", object_type="identity_dispute", object_id=dispute_id
    )
    async with audited(db) as tx:
        session = tx.session
        dispute = await session.get(IdentityDispute, dispute_id, with_for_update=True)
        if dispute is None:
            raise DisputeNotFound()
        if dispute.state != DisputeState.OPEN.value or dispute.claim_patient_id is None:
            raise DisputeClosed()
        claim = await session.get(Patient, dispute.claim_patient_id, with_for_update=True)
        existing = await session.get(Patient, dispute.existing_patient_id, with_for_update=True)
        if claim is None or existing is None:
            raise PatientNotFound()
        now = utc_now()
        details: dict[str, object] = {"decision": decision, "ward": dispute.as_ward}
        # wards registered under a provisional record of one's own follow the decision
        follow: dict[str, object]
        if decision == "merge":
            if dispute.as_ward:
                existing.guardian_id = claim.guardian_id
                existing.guardian_relation = claim.guardian_relation
                existing.guardian_verified_at = now  # staff saw the proof to decide
                existing.guardian_verified_by = actor.user_id
            else:
                details["previous_account"] = existing.user_id
                claim.user_id = None
                await session.flush()  # one record per account: free it first
                existing.user_id = dispute.claimant_user_id
            follow = {"guardian_id": existing.id}
        else:
            follow = {
                "guardian_id": None,
                "guardian_relation": None,
                "guardian_verified_at": None,
                "guardian_verified_by": None,
            }
        await session.execute(
            update(Patient).where(Patient.guardian_id == claim.id).values(**follow)
        )
        dispute.claim_patient_id = None
        dispute.state = (
            DisputeState.MERGED.value if decision == "merge" else DisputeState.REJECTED.value
        )
        dispute.resolved_by = actor.user_id
        dispute.resolved_at = now
        await session.flush()
        # a provisional record has nothing attached: no diagnosis is recorded on it (refused,
        # identity_disputed), so no visit, study or consultation can refer to it
        await session.delete(claim)
        await tx.record(
            "identity.dispute_resolved",
            actor=actor,
            object_type="identity_dispute",
            object_id=dispute.id,
            details={**details, "claim": claim.id, "existing": existing.id},
        )
        return await _view(tx, actor, dispute, db.cipher)


async def pending_guardians(db: Database, actor: Actor) -> list[PendingGuardian]:
    """Wards whose guardian link waits for verification, oldest first
    (``patient.verify_guardian``; each record shown is an audited view)."""
    await authorize(db, actor, "patient.verify_guardian", object_type="patient")
    async with audited(db) as tx:
        wards = (
            await tx.session.scalars(
                select(Patient)
                .where(Patient.guardian_id.is_not(None), Patient.guardian_verified_at.is_(None))
                .order_by(Patient.created_at)
                .limit(LIST_LIMIT)
            )
        ).all()
        found: list[PendingGuardian] = []
        for ward in wards:
            guardian = await tx.session.get(Patient, ward.guardian_id)
            if guardian is None:
                continue
            for row in (ward, guardian):
                await tx.record(
                    "patient.view", actor=actor, object_type="patient", object_id=row.id
                )
            found.append(PendingGuardian(decrypt(db.cipher, ward), decrypt(db.cipher, guardian)))
        return found


async def decide_guardian(
    db: Database, actor: Actor, ward_id: str, *, verified: bool
) -> PatientView:
    """Verify a ward's pending guardian link, or refuse it (the link is removed)
    (``patient.verify_guardian``; audited ``patient.guardian_verified`` / ``_refused``)."""
    await authorize(db, actor, "patient.verify_guardian", object_type="patient", object_id=ward_id)
    async with audited(db) as tx:
        ward = await tx.session.get(Patient, ward_id, with_for_update=True)
        if ward is None:
            raise PatientNotFound()
        if ward.guardian_id is None or ward.guardian_verified_at is not None:
            raise GuardianNotPending()
        guardian_id = ward.guardian_id
        if verified:
            ward.guardian_verified_at = utc_now()
            ward.guardian_verified_by = actor.user_id
        else:
            ward.guardian_id = None
            ward.guardian_relation = None
        await tx.record(
            "patient.guardian_verified" if verified else "patient.guardian_refused",
            actor=actor,
            object_type="patient",
            object_id=ward.id,
            details={"guardian": guardian_id},
        )
    return decrypt(db.cipher, ward)


async def _view(
    tx: AuditTx, actor: Actor, dispute: IdentityDispute, cipher: FieldCipher
) -> DisputeView:
    session = tx.session
    existing = await session.get(Patient, dispute.existing_patient_id)
    claim = (
        await session.get(Patient, dispute.claim_patient_id) if dispute.claim_patient_id else None
    )
    claimant = await session.get(User, dispute.claimant_user_id)
    if existing is None or claimant is None:
        raise PatientNotFound()
    for row in (existing, claim):
        if row is not None:
            await tx.record("patient.view", actor=actor, object_type="patient", object_id=row.id)
    return DisputeView(
        id=dispute.id,
        state=DisputeState(dispute.state),
        as_ward=dispute.as_ward,
        created_at=dispute.created_at,
        claimant_user_id=claimant.id,
        claimant_name=claimant.display_name,
        claim=decrypt(cipher, claim) if claim is not None else None,
        existing=decrypt(cipher, existing),
    )
