"""Practitioners (R9, R35): register and verify (admin, operator), list and view, a doctor's
online hours and signing PIN."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from consult import practitioners
from consult.models import Title, VerificationStatus
from consult.practitioners import PractitionerView

from ..call import Call
from ..fields import Id, Input, Name, Output, Password, Pin, Storable
from ..registry import api

Licence = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{6,64}$")]
Purpose = Annotated[str, StringConstraints(min_length=1, max_length=100), Storable]


class PractitionerCreate(Input):
    user_id: Id = Field(description="The doctor account.")
    department_id: Id
    licence_number: Licence
    title: Title
    years_of_practice: int = Field(ge=0, le=70)
    specialty: Name


class Practitioner(Output):
    user_id: str
    display_name: str
    institution_id: str
    department_id: str
    licence_number: str
    title: Title
    years_of_practice: int
    specialty: str
    verification: VerificationStatus
    verified_at: datetime | None
    online: bool
    has_signing_pin: bool


class PractitionerList(Output):
    practitioners: list[Practitioner]


class PractitionerQuery(Input):
    institution_id: Id | None = None
    department_id: Id | None = None
    verified_only: bool = True
    online_only: bool = False


class PractitionerPath(Input):
    user_id: Id


class Verify(Input):
    approve: bool = Field(default=True, description="false records a rejection.")


class Online(Input):
    online: bool


class SigningPin(Input):
    current_password: Password = Field(description="The account password confirms the change.")
    pin: Pin


class PinCheck(Input):
    pin: Pin
    purpose: Purpose = Field(description="What is about to be signed, e.g. report:<id>.")


def practitioner_of(view: PractitionerView) -> Practitioner:
    return Practitioner(
        user_id=view.user_id,
        display_name=view.display_name,
        institution_id=view.institution_id,
        department_id=view.department_id,
        licence_number=view.licence_number,
        title=view.title,
        years_of_practice=view.years_of_practice,
        specialty=view.specialty,
        verification=view.verification,
        verified_at=view.verified_at,
        online=view.online,
        has_signing_pin=view.has_signing_pin,
    )


@api.operation(
    "POST", "/practitioners", action="practitioner.create", tag="practitioners", status=201
)
async def register_practitioner(call: Call, body: PractitionerCreate) -> Practitioner:
    """Give a doctor account its professional record, pending verification."""
    view = await practitioners.register_practitioner(
        call.db,
        call.me,
        user_id=body.user_id,
        department_id=body.department_id,
        licence_number=body.licence_number,
        title=body.title,
        years_of_practice=body.years_of_practice,
        specialty=body.specialty,
    )
    return practitioner_of(view)


@api.operation("GET", "/practitioners", action="practitioner.list", tag="practitioners")
async def list_practitioners(call: Call, query: PractitionerQuery) -> PractitionerList:
    """Practitioners to choose from (verified ones unless told otherwise)."""
    views = await practitioners.list_practitioners(
        call.db,
        call.me,
        institution_id=query.institution_id,
        department_id=query.department_id,
        verified_only=query.verified_only,
        online_only=query.online_only,
    )
    return PractitionerList(practitioners=[practitioner_of(view) for view in views])


@api.operation("GET", "/practitioners/{user_id}", action="practitioner.view", tag="practitioners")
async def get_practitioner(call: Call, path: PractitionerPath) -> Practitioner:
    """One practitioner's record."""
    return practitioner_of(await practitioners.get_practitioner(call.db, call.me, path.user_id))


@api.operation(
    "POST", "/practitioners/{user_id}/verify", action="practitioner.verify", tag="practitioners"
)
async def verify_practitioner(call: Call, path: PractitionerPath, body: Verify) -> Practitioner:
    """Record the real-name and licence check: verified, or rejected."""
    view = await practitioners.verify_practitioner(
        call.db, call.me, path.user_id, approve=body.approve
    )
    return practitioner_of(view)


@api.operation("POST", "/me/online", action="practitioner.go_online", tag="practitioners")
async def set_online(call: Call, body: Online) -> Practitioner:
    """Open or close the doctor's online hours (only a verified doctor can open them)."""
    await practitioners.set_online(call.db, call.me, body.online)
    assert call.me.user_id is not None
    return practitioner_of(await practitioners.get_practitioner(call.db, call.me, call.me.user_id))


@api.operation("PUT", "/me/signing-pin", action="practitioner.set_pin", tag="practitioners")
async def set_signing_pin(call: Call, body: SigningPin) -> None:
    """Set or change one's own signing PIN (6-12 digits), confirmed with the password."""
    await practitioners.set_signing_pin(call.db, call.me, body.current_password, body.pin)


@api.operation(
    "POST", "/me/signing-pin/check", action="practitioner.check_pin", tag="practitioners"
)
async def check_signing_pin(call: Call, body: PinCheck) -> None:
    """Check the signing PIN before signing something (five failures lock signing)."""
    await practitioners.verify_signing_pin(call.db, call.me, body.pin, purpose=body.purpose)
