"""Identity registration (issue 13 item 3; R33, R34, R36): a patient is never told that an ID
number is on file (the same answer either way, the dispute goes to staff), staff resolve
disputes, and a guardian acts for a ward only once staff verified the relation."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta

import pytest
from consult_world import Org, fresh_id_number, make_org, make_patient, make_person
from sqlalchemy import select

from consult.db import Database
from consult.errors import (
    DisputeClosed,
    GuardianNotPending,
    IdentityDisputed,
    PatientExists,
    PermissionDenied,
)
from consult.identity import decide_guardian, open_disputes, pending_guardians, resolve_dispute
from consult.models import AuditEvent, DisputeState, Patient
from consult.patients import (
    get_patient,
    my_patients,
    record_prior_diagnosis,
    register_patient,
)
from consult.permissions import Role

BIRTH = date(1979, 4, 5)


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


def _shape(view: object) -> dict[str, object]:
    """What a patient is answered, with the values that differ per person left out."""
    fields = asdict(view)  # type: ignore[call-overload]
    return {
        k: (type(v).__name__ if k in {"id", "user_id", "name", "id_number"} else v)
        for k, v in fields.items()
    }


async def _diagnosis(db: Database, actor, record_id: str) -> None:  # type: ignore[no-untyped-def]
    await record_prior_diagnosis(
        db,
        actor,
        record_id,
        condition_code="I10",
        condition_name="原发性高血压",
        institution_name="市医院",
        diagnosed_on=date(2024, 1, 2),
    )


async def test_r33_a_patient_is_never_told_a_number_is_on_file_and_staff_resolve_it(
    db: Database, org: Org
) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    on_file = fresh_id_number(BIRTH)
    desk = await register_patient(db, nurse.actor, name="王五", id_number=on_file)
    # staff may be told: they resolve disputes
    with pytest.raises(PatientExists):
        await register_patient(db, nurse.actor, name="王五", id_number=on_file)

    claimant = await make_person(db, org, Role.PATIENT)
    newcomer = await make_person(db, org, Role.PATIENT)
    claimed = await register_patient(db, claimant.actor, name="王五", id_number=on_file)
    fresh = await register_patient(
        db, newcomer.actor, name="赵六", id_number=fresh_id_number(BIRTH)
    )
    # the same answer: the caller's own record, same fields, same kinds of values
    assert _shape(claimed) == _shape(fresh)
    assert claimed.user_id == claimant.user_id and claimed.id != desk.id
    assert [p.id for p in await my_patients(db, claimant.actor)] == [claimed.id]
    assert (await get_patient(db, claimant.actor, claimed.id)).id_number == on_file

    # the record on file is untouched; the claim is provisional, and staff see the dispute
    async with db.session() as session:
        assert (await session.get(Patient, desk.id)).user_id is None  # type: ignore[union-attr]
        assert (await session.get(Patient, claimed.id)).id_number_index is None  # type: ignore[union-attr]
    (dispute,) = await open_disputes(db, nurse.actor)
    assert (dispute.claimant_user_id, dispute.as_ward, dispute.state) == (
        claimant.user_id,
        False,
        DisputeState.OPEN,
    )
    assert dispute.claim is not None and dispute.claim.id == claimed.id
    assert dispute.existing.id == desk.id
    # nothing clinical happens on a provisional record until staff decide
    with pytest.raises(IdentityDisputed):
        await _diagnosis(db, nurse.actor, claimed.id)
    # the patient cannot see or decide disputes (R34)
    with pytest.raises(PermissionDenied):
        await open_disputes(db, claimant.actor)

    # staff compared documents: the claimant is the person on file
    resolved = await resolve_dispute(db, nurse.actor, dispute.id, "merge")
    assert resolved.state is DisputeState.MERGED and resolved.claim is None
    assert resolved.existing.user_id == claimant.user_id
    assert [p.id for p in await my_patients(db, claimant.actor)] == [desk.id]
    async with db.session() as session:
        assert await session.get(Patient, claimed.id) is None  # the provisional record is gone
    await _diagnosis(db, nurse.actor, desk.id)
    with pytest.raises(DisputeClosed):
        await resolve_dispute(db, nurse.actor, dispute.id, "reject")
    assert await open_disputes(db, nurse.actor) == []

    async with db.session() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action.like("identity.%")))
        ).all()
    assert [e.action for e in events] == ["identity.dispute_opened", "identity.dispute_resolved"]
    for event in events:
        assert on_file not in event.details


async def test_r33_a_ward_claim_on_file_is_a_dispute_too_and_a_rejection_removes_it(
    db: Database, org: Org
) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    child_number = fresh_id_number(date.today() - timedelta(days=4 * 365))
    await register_patient(db, nurse.actor, name="小明", id_number=child_number)
    parent = await make_patient(db, org)
    ward = await register_patient(
        db,
        parent.person.actor,
        name="小明",
        id_number=child_number,
        guardian_id=parent.record_id,
        guardian_relation="parent",
    )
    assert ward.guardian_id == parent.record_id and not ward.guardian_verified
    (dispute,) = await open_disputes(db, nurse.actor)
    assert dispute.as_ward
    await resolve_dispute(db, nurse.actor, dispute.id, "reject")
    assert [p.id for p in await my_patients(db, parent.person.actor)] == [parent.record_id]


async def test_r33_a_guardian_acts_for_a_ward_only_once_staff_verified_the_relation(
    db: Database, org: Org
) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    parent = await make_patient(db, org)
    ward = await register_patient(
        db,
        parent.person.actor,
        name="小红",
        id_number=fresh_id_number(date.today() - timedelta(days=3 * 365)),
        guardian_id=parent.record_id,
        guardian_relation="parent",
    )
    assert not ward.guardian_verified
    # listed as the parent's (pending), but not theirs to act for yet
    assert {p.id for p in await my_patients(db, parent.person.actor)} == {
        parent.record_id,
        ward.id,
    }
    with pytest.raises(PermissionDenied):
        await get_patient(db, parent.person.actor, ward.id)
    with pytest.raises(PermissionDenied):  # the guardian cannot verify itself (R34)
        await decide_guardian(db, parent.person.actor, ward.id, verified=True)
    (pending,) = await pending_guardians(db, nurse.actor)
    assert (pending.ward.id, pending.guardian.id) == (ward.id, parent.record_id)

    verified = await decide_guardian(db, nurse.actor, ward.id, verified=True)
    assert verified.guardian_verified
    assert (await get_patient(db, parent.person.actor, ward.id)).name == "小红"
    assert await pending_guardians(db, nurse.actor) == []
    with pytest.raises(GuardianNotPending):
        await decide_guardian(db, nurse.actor, ward.id, verified=False)

    # a refused relation removes the link; staff registering a ward verify it as they do
    other = await register_patient(
        db,
        parent.person.actor,
        name="小刚",
        id_number=fresh_id_number(date.today() - timedelta(days=2 * 365)),
        guardian_id=parent.record_id,
        guardian_relation="other",
    )
    refused = await decide_guardian(db, nurse.actor, other.id, verified=False)
    assert refused.guardian_id is None
    with pytest.raises(PermissionDenied):
        await get_patient(db, parent.person.actor, other.id)
    at_desk = await register_patient(
        db,
        nurse.actor,
        name="小强",
        id_number=fresh_id_number(date.today() - timedelta(days=1 * 365)),
        guardian_id=parent.record_id,
        guardian_relation="parent",
    )
    assert at_desk.guardian_verified
    assert (await get_patient(db, parent.person.actor, at_desk.id)).name == "小强"
