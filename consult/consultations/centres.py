"""Cooperation agreements and consult centres (R15): which institution may invite which, and which
department's operators approve and assign an institution's requests."""

from __future__ import annotations

from sqlalchemy import or_, select

from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.consultations.models import ConsultCentre, CooperationAgreement
from consult.consultations.views import AgreementView
from consult.db import Database
from consult.errors import DepartmentNotFound, InstitutionNotFound, InvalidInput
from consult.models import Department, Institution
from consult.sqltypes import utc_now


async def create_agreement(
    db: Database, actor: Actor, *, inviter_institution_id: str, invitee_institution_id: str
) -> AgreementView:
    """Let the first institution invite the second (one way; make two for both ways)."""
    await authorize(db, actor, "agreement.create", object_type="agreement")
    if inviter_institution_id == invitee_institution_id:
        raise InvalidInput("An institution needs no agreement with itself.")
    async with audited(db) as tx:
        for institution_id in (inviter_institution_id, invitee_institution_id):
            if await tx.session.get(Institution, institution_id) is None:
                raise InstitutionNotFound()
        row = await tx.session.scalar(
            select(CooperationAgreement).where(
                CooperationAgreement.inviter_institution_id == inviter_institution_id,
                CooperationAgreement.invitee_institution_id == invitee_institution_id,
            )
        )
        if row is None:
            row = CooperationAgreement(
                inviter_institution_id=inviter_institution_id,
                invitee_institution_id=invitee_institution_id,
                created_by=actor.user_id,
                created_at=utc_now(),
            )
            tx.session.add(row)
            await tx.session.flush()
            await tx.record(
                "agreement.create",
                actor=actor,
                object_type="agreement",
                object_id=row.id,
                details={"inviter": inviter_institution_id, "invitee": invitee_institution_id},
            )
        return AgreementView(
            row.id, row.inviter_institution_id, row.invitee_institution_id, row.created_at
        )


async def list_agreements(db: Database, actor: Actor) -> list[AgreementView]:
    await authorize(db, actor, "agreement.list", object_type="agreement")
    async with db.session() as session:
        query = select(CooperationAgreement).order_by(CooperationAgreement.created_at)
        if actor.role.value != "admin":
            query = query.where(
                or_(
                    CooperationAgreement.inviter_institution_id == actor.institution_id,
                    CooperationAgreement.invitee_institution_id == actor.institution_id,
                )
            )
        rows = (await session.scalars(query)).all()
    return [
        AgreementView(r.id, r.inviter_institution_id, r.invitee_institution_id, r.created_at)
        for r in rows
    ]


async def set_centre(db: Database, actor: Actor, institution_id: str, department_id: str) -> None:
    """Name the department whose operators are the institution's consult centre."""
    await authorize(db, actor, "centre.set", object_type="institution", object_id=institution_id)
    async with audited(db) as tx:
        department = await tx.session.get(Department, department_id)
        if department is None or department.institution_id != institution_id:
            raise DepartmentNotFound()
        row = await tx.session.get(ConsultCentre, institution_id)
        if row is None:
            tx.session.add(
                ConsultCentre(institution_id=institution_id, department_id=department_id)
            )
        else:
            row.department_id = department_id
        await tx.record(
            "centre.set",
            actor=actor,
            object_type="institution",
            object_id=institution_id,
            details={"department_id": department_id},
        )
