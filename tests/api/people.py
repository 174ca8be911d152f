"""Set-ups shared by the API tests: a verified doctor online, a patient with a prior diagnosis."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from apiclient import Clinic, Person

from consult.identifiers import id_check_char

CONDITION = "I10"


def new_id_number(birth: str = "19800101") -> str:
    """A valid resident ID number (random sequence, the right check character)."""
    first17 = "110105" + birth + f"{secrets.randbelow(1000):03d}"
    return first17 + id_check_char(first17)


def new_phone() -> str:
    return "139" + f"{secrets.randbelow(10**8):08d}"


async def verified_doctor(clinic: Clinic, *, online: bool = True, name: str = "王医生") -> Person:
    """A doctor account with a verified practitioner record (and online hours open)."""
    doctor = await clinic.person("doctor", name=name)
    await clinic.admin.ok(
        "POST",
        "/practitioners",
        {
            "user_id": doctor.user_id,
            "department_id": clinic.department_id,
            "licence_number": f"LIC-{secrets.token_hex(4)}",
            "title": "attending",
            "years_of_practice": 8,
            "specialty": "心血管内科",
        },
    )
    record = await clinic.admin.ok("POST", f"/practitioners/{doctor.user_id}/verify", {})
    assert record["verification"] == "verified"
    if online:
        assert (await doctor.ok("POST", "/me/online", {"online": True}))["online"] is True
    return doctor


@dataclass
class Booked:
    patient: Person
    patient_record: dict[str, Any]
    visit: dict[str, Any]


async def patient_with_diagnosis(clinic: Clinic, nurse: Person, name: str = "张某") -> Person:
    """A patient account with its own record and an offline diagnosis of CONDITION."""
    patient = await clinic.person("patient", name=name)
    record = await patient.ok(
        "POST",
        "/patients",
        {"name": name, "id_number": new_id_number(), "phone": new_phone()},
    )
    patient.extra["record"] = record
    await nurse.ok(
        "POST",
        f"/patients/{record['id']}/diagnoses",
        {
            "condition_code": CONDITION,
            "condition_name": "原发性高血压",
            "institution_name": "市第一人民医院",
            "diagnosed_on": "2025-03-01",
        },
    )
    return patient


async def booked_visit(clinic: Clinic, doctor: Person, nurse: Person) -> Booked:
    """A patient who booked a video follow-up in the doctor's online queue."""
    patient = await patient_with_diagnosis(clinic, nurse)
    record = patient.extra["record"]
    visit = await patient.ok(
        "POST",
        "/visits",
        {
            "patient_id": record["id"],
            "doctor_id": doctor.user_id,
            "mode": "video",
            "condition_code": CONDITION,
        },
    )
    assert visit["state"] == "booked"
    return Booked(patient, record, visit)


async def sign(patient: Person, visit_id: str, kind: str, step: str) -> dict[str, Any]:
    """Fetch the document the patient is shown and sign exactly that version."""
    document = await patient.ok("GET", f"/documents/{kind}")
    return await patient.ok(
        "POST",
        f"/visits/{visit_id}/{step}",
        {"version": document["version"], "digest": document["digest"]},
    )
