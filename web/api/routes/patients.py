"""Patients (R36, R37): register, find by ID number, view, prior diagnoses (R2).

Responses carry the ID number and phone masked (``110105********002X``, ``138****8000``): the
API never hands out more than a screen needs. Lookup by ID number is a POST, so that the number
never appears in a URL (access logs, browser history).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from consult import patient_accounts, patients
from consult.models import DiagnosisSource
from consult.patients import DiagnosisView, PatientView

from ..call import Call
from ..fields import (
    BirthDate,
    Id,
    IdNumber,
    Input,
    Name,
    Output,
    Password,
    Phone,
    ShortText,
    Username,
)
from ..registry import api
from .accounts import Account, account_of

Relation = Literal["parent", "grandparent", "spouse", "child", "sibling", "other"]
Icd10 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][0-9]{2}(\.[0-9]{1,4})?$")]


class PatientCreate(Input):
    name: Name
    id_number: IdNumber
    phone: Phone | None = None
    birth_date: BirthDate | None = Field(
        default=None, description="If given, must match the ID number."
    )
    guardian_id: Id | None = Field(
        default=None, description="The guardian's patient record, for a ward without account."
    )
    guardian_relation: Relation | None = None
    user_id: Id | None = Field(
        default=None, description="Staff only: link an existing patient account."
    )


class Patient(Output):
    id: str
    user_id: str | None
    name: str
    id_number_masked: str
    phone_masked: str | None
    birth_date: date
    age: int
    guardian_id: str | None
    guardian_relation: str | None
    guardian_verified: bool = Field(
        description="Staff verified the guardian relation: only then the guardian acts for it."
    )


class PatientList(Output):
    patients: list[Patient]


class PatientFind(Input):
    id_number: IdNumber


class PatientFound(Output):
    patient: Patient | None


class PatientPath(Input):
    patient_id: Id


class PatientAccountCreate(Input):
    username: Username
    password: Password = Field(description="A first password to hand to the patient.")


class DiagnosisCreate(Input):
    condition_code: Icd10 = Field(description="ICD-10, like I10 or E11.9.")
    condition_name: ShortText
    institution_name: ShortText
    diagnosed_on: BirthDate
    source: DiagnosisSource = DiagnosisSource.OFFLINE


class Diagnosis(Output):
    id: str
    patient_id: str
    condition_code: str
    condition_name: str
    institution_name: str
    diagnosed_on: date
    source: DiagnosisSource


class DiagnosisList(Output):
    diagnoses: list[Diagnosis]


def patient_of(view: PatientView) -> Patient:
    return Patient(
        id=view.id,
        user_id=view.user_id,
        name=view.name,
        id_number_masked=view.masked_id_number,
        phone_masked=view.masked_phone,
        birth_date=view.birth_date,
        age=view.age(),
        guardian_id=view.guardian_id,
        guardian_relation=view.guardian_relation,
        guardian_verified=view.guardian_verified,
    )


def diagnosis_of(view: DiagnosisView) -> Diagnosis:
    return Diagnosis(
        id=view.id,
        patient_id=view.patient_id,
        condition_code=view.condition_code,
        condition_name=view.condition_name,
        institution_name=view.institution_name,
        diagnosed_on=view.diagnosed_on,
        source=view.source,
    )


@api.operation("POST", "/patients", action="patient.register", tag="patients", status=201)
async def register_patient(call: Call, body: PatientCreate) -> Patient:
    """Register a person: a patient account itself or its ward (the guardian link pending
    staff verification); staff anyone. A patient registering a number on file gets the same
    answer, on a provisional record, and staff an identity dispute (issue 13 item 3)."""
    view = await patients.register_patient(
        call.db,
        call.me,
        name=body.name,
        id_number=body.id_number,
        phone=body.phone,
        birth_date=body.birth_date,
        guardian_id=body.guardian_id,
        guardian_relation=body.guardian_relation,
        user_id=body.user_id,
    )
    return patient_of(view)


@api.operation("GET", "/patients", action="patient.view", tag="patients")
async def my_patients(call: Call) -> PatientList:
    """The records a patient account acts for: its own and its wards' (empty for staff)."""
    views = await patients.my_patients(call.db, call.me)
    return PatientList(patients=[patient_of(view) for view in views])


@api.operation("POST", "/patients/find", action="patient.find", tag="patients")
async def find_patient(call: Call, body: PatientFind) -> PatientFound:
    """Look a person up by ID number (blind index); ``patient`` is null when nobody matches."""
    view = await patients.find_patient_by_id_number(call.db, call.me, body.id_number)
    return PatientFound(patient=patient_of(view) if view is not None else None)


@api.operation("GET", "/patients/{patient_id}", action="patient.view", tag="patients")
async def get_patient(call: Call, path: PatientPath) -> Patient:
    """One patient record (the view is audited)."""
    return patient_of(await patients.get_patient(call.db, call.me, path.patient_id))


@api.operation(
    "POST",
    "/patients/{patient_id}/diagnoses",
    action="patient.record_diagnosis",
    tag="patients",
    status=201,
)
async def record_diagnosis(call: Call, path: PatientPath, body: DiagnosisCreate) -> Diagnosis:
    """Record a diagnosis the patient holds from a physical institution (R2)."""
    view = await patients.record_prior_diagnosis(
        call.db,
        call.me,
        path.patient_id,
        condition_code=body.condition_code,
        condition_name=body.condition_name,
        institution_name=body.institution_name,
        diagnosed_on=body.diagnosed_on,
        source=body.source,
    )
    return diagnosis_of(view)


@api.operation(
    "GET", "/patients/{patient_id}/diagnoses", action="patient.view_diagnoses", tag="patients"
)
async def list_diagnoses(call: Call, path: PatientPath) -> DiagnosisList:
    """The patient's prior diagnoses, newest first."""
    views = await patients.list_diagnoses(call.db, call.me, path.patient_id)
    return DiagnosisList(diagnoses=[diagnosis_of(view) for view in views])


@api.operation(
    "POST",
    "/patients/{patient_id}/account",
    action="patient.create_account",
    tag="patients",
    status=201,
)
async def create_patient_account(
    call: Call, path: PatientPath, body: PatientAccountCreate
) -> Account:
    """Give a registered patient (not a ward) its sign-in account, linked to the record."""
    view = await patient_accounts.create_patient_account(
        call.db, call.me, path.patient_id, username=body.username, password=body.password
    )
    return account_of(view)
