"""Prepare two institutions for the consultation pages, through the REST API, from inside the
test's network namespace (issue 14).

Run as ``python consultation_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``): a grassroots
clinic and a tertiary hospital, each with a consult centre; an agreement from the clinic to the
hospital; the clinic's doctor and a patient it registered, linked to the patient's own account
(its page signs in with a password and enters the room from its waiting room); four experts with
signing PINs and one with under 3 years of practice. Prints one JSON object: each clinician's
signed-in session (``token``, ``me``, ...) for the page to use, the patient's credentials, and
the ids the test needs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from institutions_setup import World
from portal_setup import PASSWORD, Account, id_number

PIN = "246810"


def main(base_url: str, data_dir: str) -> None:
    world = World(base_url, data_dir)
    up, down = world.up, world.down
    sessions: dict[str, Any] = {}

    def account(key: str, role: str, name: str, institution_id: str, department_id: str) -> Account:
        person = world.account(key, role, name, (institution_id, department_id))
        sessions[key] = {"token": person.token, "me": person.call("GET", "/me")}
        return person

    def practitioner(person: Account, department_id: str, title: str, years: int) -> None:
        world.practitioner(person, department_id, title, years)
        person.call("PUT", "/me/signing-pin", {"current_password": PASSWORD, "pin": PIN})

    doctor = account("doctor", "doctor", "李村医", down, world.down_general)
    practitioner(doctor, world.down_general, "resident", 4)
    account("down_centre", "operator", "基层中心", down, world.down_centre)
    account("up_centre", "operator", "上级中心", up, world.up_centre)
    nurse = world.account("nurse", "nurse", "护士甲", (down, world.down_general))
    patient = world.account("patient", "patient", "赵某", None)
    record = nurse.call(
        "POST",
        "/patients",
        {"name": "赵某", "id_number": id_number("19580911"), "user_id": patient.user_id},
    )
    patient.call("DELETE", "/session")  # the patient's page signs in afresh
    experts = []
    for key, name, title in (
        ("e1", "张主任", "chief"),
        ("e2", "王教授", "associate_chief"),
        ("e3", "陈医生", "attending"),
        ("e4", "刘医生", "attending"),
    ):
        expert = account(key, "doctor", name, up, world.up_heart)
        practitioner(expert, world.up_heart, title, 9)
        experts.append(expert.user_id)
    junior = account("junior", "doctor", "新医生", up, world.up_heart)
    practitioner(junior, world.up_heart, "attending", 2)
    print(
        json.dumps(
            {
                "sessions": sessions,
                "patient": patient.describe(),
                "patient_record_id": record["id"],
                "up": up,
                "down": down,
                "experts": experts,
                "pin": PIN,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
