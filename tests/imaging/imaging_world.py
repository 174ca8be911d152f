"""Two institutions and their people for the imaging tests (see ``conftest.py``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from apiclient import Clinic, Person
from harness import Server
from people import booked_visit, verified_doctor


@dataclass
class World:
    """Institution A (doctor, other doctor, nurse, a patient's visit) and institution B."""

    server: Server
    clinic: Clinic
    doctor: Person
    other_doctor: Person
    nurse: Person
    patient: Person
    visit_id: str
    institution_b: str
    doctor_b: Person

    @property
    def dicomweb(self) -> str:
        return self.server.url + "/api/v1/dicomweb"

    @property
    def stow_url(self) -> str:
        return f"{self.dicomweb}/visits/{self.visit_id}"


async def make_world(server: Server) -> World:
    clinic = await Clinic.open(server)
    doctor = await verified_doctor(clinic)
    other = await verified_doctor(clinic, online=False, name="李医生")
    nurse = await clinic.person("nurse")
    booked = await booked_visit(clinic, doctor, nurse)
    institution_b = (
        await clinic.admin.ok("POST", "/institutions", {"name": "上级医院", "level": "tertiary"})
    )["id"]
    department_b = (
        await clinic.admin.ok(
            "POST", f"/institutions/{institution_b}/departments", {"name": "影像科"}
        )
    )["id"]
    home = clinic.institution_id, clinic.department_id
    clinic.institution_id, clinic.department_id = institution_b, department_b
    try:
        doctor_b = await clinic.person("doctor", name="赵医生")
    finally:
        clinic.institution_id, clinic.department_id = home
    return World(
        server=server,
        clinic=clinic,
        doctor=doctor,
        other_doctor=other,
        nurse=nurse,
        patient=booked.patient,
        visit_id=booked.visit["id"],
        institution_b=institution_b,
        doctor_b=doctor_b,
    )
