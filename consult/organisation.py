"""Institutions and departments: created by admin (or the command line), listed for booking."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import InstitutionNotFound, InvalidInput
from consult.models import Department, Institution, InstitutionLevel
from consult.sqltypes import new_id


@dataclass(frozen=True)
class InstitutionView:
    """An institution as clients see it."""

    id: str
    name: str
    level: InstitutionLevel


@dataclass(frozen=True)
class DepartmentView:
    """A department as clients see it."""

    id: str
    institution_id: str
    name: str


def _name(value: str) -> str:
    value = (value or "").strip()
    if not 1 <= len(value) <= 200:
        raise InvalidInput("A name must be 1-200 characters.")
    return value


async def create_institution(
    db: Database, actor: Actor, name: str, level: InstitutionLevel | str
) -> InstitutionView:
    """Create an institution (``institution.create``: admin)."""
    await authorize(db, actor, "institution.create", object_type="institution")
    try:
        level = InstitutionLevel(level)
    except ValueError:
        raise InvalidInput("Unknown institution level.") from None
    row = Institution(id=new_id(), name=_name(name), level=level.value)
    async with audited(db) as tx:
        tx.session.add(row)
        await tx.record(
            "institution.create",
            actor=actor,
            object_type="institution",
            object_id=row.id,
            details={"level": level.value},
        )
    return InstitutionView(row.id, row.name, level)


async def create_department(
    db: Database, actor: Actor, institution_id: str, name: str
) -> DepartmentView:
    """Create a department of an institution (``department.create``: admin)."""
    await authorize(db, actor, "department.create", object_type="department")
    row = Department(id=new_id(), institution_id=institution_id, name=_name(name))
    async with audited(db) as tx:
        if await tx.session.get(Institution, institution_id) is None:
            raise InstitutionNotFound()
        tx.session.add(row)
        await tx.record(
            "department.create", actor=actor, object_type="department", object_id=row.id
        )
    return DepartmentView(row.id, row.institution_id, row.name)


async def list_institutions(db: Database, actor: Actor) -> list[InstitutionView]:
    """All institutions by name (``institution.list``)."""
    await authorize(db, actor, "institution.list", object_type="institution")
    async with db.session() as session:
        rows = (await session.scalars(select(Institution).order_by(Institution.name))).all()
    return [InstitutionView(r.id, r.name, InstitutionLevel(r.level)) for r in rows]


async def list_departments(db: Database, actor: Actor, institution_id: str) -> list[DepartmentView]:
    """The departments of one institution by name (``department.list``)."""
    await authorize(db, actor, "department.list", object_type="department")
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(Department)
                .where(Department.institution_id == institution_id)
                .order_by(Department.name)
            )
        ).all()
    return [DepartmentView(r.id, r.institution_id, r.name) for r in rows]
