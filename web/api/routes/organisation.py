"""Institutions and their departments: admin creates them; care roles list them for booking."""

from __future__ import annotations

from consult import organisation
from consult.models import InstitutionLevel

from ..call import Call
from ..fields import Id, Input, Output, ShortText
from ..registry import api


class InstitutionCreate(Input):
    name: ShortText
    level: InstitutionLevel


class Institution(Output):
    id: str
    name: str
    level: InstitutionLevel


class InstitutionList(Output):
    institutions: list[Institution]


class DepartmentCreate(Input):
    name: ShortText


class Department(Output):
    id: str
    institution_id: str
    name: str


class DepartmentList(Output):
    departments: list[Department]


class InstitutionPath(Input):
    institution_id: Id


@api.operation("POST", "/institutions", action="institution.create", tag="organisation", status=201)
async def create_institution(call: Call, body: InstitutionCreate) -> Institution:
    """Create an institution."""
    view = await organisation.create_institution(call.db, call.me, body.name, body.level)
    return Institution(id=view.id, name=view.name, level=view.level)


@api.operation("GET", "/institutions", action="institution.list", tag="organisation")
async def list_institutions(call: Call) -> InstitutionList:
    """Every institution, by name."""
    views = await organisation.list_institutions(call.db, call.me)
    return InstitutionList(
        institutions=[Institution(id=v.id, name=v.name, level=v.level) for v in views]
    )


@api.operation(
    "POST",
    "/institutions/{institution_id}/departments",
    action="department.create",
    tag="organisation",
    status=201,
)
async def create_department(
    call: Call, path: InstitutionPath, body: DepartmentCreate
) -> Department:
    """Create a department of the institution."""
    view = await organisation.create_department(call.db, call.me, path.institution_id, body.name)
    return Department(id=view.id, institution_id=view.institution_id, name=view.name)


@api.operation(
    "GET",
    "/institutions/{institution_id}/departments",
    action="department.list",
    tag="organisation",
)
async def list_departments(call: Call, path: InstitutionPath) -> DepartmentList:
    """The institution's departments, by name."""
    views = await organisation.list_departments(call.db, call.me, path.institution_id)
    return DepartmentList(
        departments=[
            Department(id=v.id, institution_id=v.institution_id, name=v.name) for v in views
        ]
    )
