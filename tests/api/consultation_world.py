"""Two institutions on one server for the consultation tests (issue 14): a grassroots clinic
that asks, a tertiary hospital that is asked, each with a consult centre; an agreement from the
first to the second; doctors, experts (one with under 3 years), operators, a patient."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from apiclient import Clinic, Person
from people import new_id_number, new_phone

PIN = "246810"


def at(clinic: Clinic, institution_id: str, department_id: str) -> Clinic:
    """The same admin and client, creating people in another institution and department."""
    view = Clinic(clinic.api, clinic.admin)
    view.institution_id = institution_id
    view.department_id = department_id
    return view


async def department(clinic: Clinic, institution_id: str, name: str) -> str:
    body = await clinic.admin.ok(
        "POST", f"/institutions/{institution_id}/departments", {"name": name}
    )
    return str(body["id"])


async def practitioner(
    place: Clinic, *, name: str, years: int = 8, title: str = "attending", pin: bool = True
) -> Person:
    doctor = await place.person("doctor", name=name)
    await place.admin.ok(
        "POST",
        "/practitioners",
        {
            "user_id": doctor.user_id,
            "department_id": place.department_id,
            "licence_number": f"LIC-{secrets.token_hex(5)}",
            "title": title,
            "years_of_practice": years,
            "specialty": "心血管内科",
        },
    )
    await place.admin.ok("POST", f"/practitioners/{doctor.user_id}/verify", {})
    if pin:
        await doctor.ok("PUT", "/me/signing-pin", {"current_password": doctor.password, "pin": PIN})
    return doctor


@dataclass
class World:
    clinic: Clinic
    down_id: str
    up_id: str
    down_centre: Person
    up_centre: Person
    doctor: Person
    nurse: Person
    patient_record: dict[str, Any]
    experts: list[Person]
    junior: Person
    extra: dict[str, Any] = field(default_factory=dict)

    def request(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "consultation",
            "patient_id": self.patient_record["id"],
            "target_institution_id": self.up_id,
            "reason": "胸痛反复发作，基层无法明确诊断",
            "purpose": "明确诊断并制定治疗方案",
            "specialty": "心血管内科",
            "min_title": "attending",
            "urgency": "routine",
            "description": "患者男，58 岁，活动后胸痛 3 个月",
            "history": "高血压 10 年，口服氨氯地平",
            "summary": "心电图：ST 段压低；肌钙蛋白阴性",
            "proposed_start": "2030-01-05T02:00:00+00:00",
            "proposed_end": "2030-01-05T03:00:00+00:00",
        }
        body.update(overrides)
        return body


async def two_institutions(clinic: Clinic, *, experts: int = 3) -> World:
    """``clinic`` is the tertiary hospital (its department: the experts'); a grassroots clinic
    is added; both get a consult centre; the clinic may invite the hospital."""
    admin = clinic.admin
    up_id = clinic.institution_id
    down = await admin.ok("POST", "/institutions", {"name": "青山镇卫生院", "level": "grassroots"})
    down_id = str(down["id"])
    down_general = await department(clinic, down_id, "全科")
    down_centre_dept = await department(clinic, down_id, "远程会诊中心")
    up_centre_dept = await department(clinic, up_id, "远程医学中心")
    await admin.ok(
        "PUT", f"/institutions/{down_id}/consult-centre", {"department_id": down_centre_dept}
    )
    await admin.ok(
        "PUT", f"/institutions/{up_id}/consult-centre", {"department_id": up_centre_dept}
    )
    await admin.ok(
        "POST", "/agreements", {"inviter_institution_id": down_id, "invitee_institution_id": up_id}
    )
    here = at(clinic, down_id, down_general)
    down_centre = await at(clinic, down_id, down_centre_dept).person("operator", name="基层中心")
    up_centre = await at(clinic, up_id, up_centre_dept).person("operator", name="上级中心")
    doctor = await practitioner(here, name="李村医", years=4, title="resident", pin=False)
    nurse = await here.person("nurse", name="护士甲")
    record = await nurse.ok(
        "POST",
        "/patients",
        {"name": "赵某", "id_number": new_id_number("19670304"), "phone": new_phone()},
    )
    names = ["张主任", "王教授", "陈医生", "刘医生"][:experts]
    titles = ["chief", "associate_chief", "attending", "attending"]
    expert_people = [
        await practitioner(clinic, name=n, years=8 + i, title=titles[i])
        for i, n in enumerate(names)
    ]
    junior = await practitioner(clinic, name="新医生", years=2, title="attending")
    return World(
        clinic=clinic,
        down_id=down_id,
        up_id=up_id,
        down_centre=down_centre,
        up_centre=up_centre,
        doctor=doctor,
        nurse=nurse,
        patient_record=record,
        experts=expert_people,
        junior=junior,
    )
