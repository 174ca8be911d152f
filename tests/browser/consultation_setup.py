"""Prepare two institutions for the consultation pages, through the REST API, from inside the
test's network namespace (issue 14).

Run as ``python consultation_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``): a grassroots
clinic and a tertiary hospital, each with a consult centre; an agreement from the clinic to the
hospital; the clinic's doctor and a patient it registered; three experts with signing PINs.
Prints one JSON object: each account's signed-in session (``token``, ``me``, ...) for the page
to use, and the ids the test needs.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

from portal_setup import PASSWORD, TELECONSULT, Account, id_number

PIN = "246810"


def main(base_url: str, data_dir: str) -> None:
    suffix = secrets.token_hex(3)
    admin = Account(base_url, f"admin-{suffix}", "admin")
    subprocess.run(
        [str(TELECONSULT), "user", "add", "--data-dir", data_dir, "--role", "admin",
         "--username", admin.username, "--display-name", "管理员", "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip
    admin.sign_in()

    def institution(name: str, level: str) -> str:
        return str(admin.call("POST", "/institutions", {"name": name, "level": level})["id"])

    def department(institution_id: str, name: str) -> str:
        path = f"/institutions/{institution_id}/departments"
        return str(admin.call("POST", path, {"name": name})["id"])

    up, down = institution("省人民医院", "tertiary"), institution("青山镇卫生院", "grassroots")
    up_heart, up_centre = department(up, "心血管内科"), department(up, "远程医学中心")
    down_general, down_centre = department(down, "全科"), department(down, "远程会诊中心")
    admin.call("PUT", f"/institutions/{up}/consult-centre", {"department_id": up_centre})
    admin.call("PUT", f"/institutions/{down}/consult-centre", {"department_id": down_centre})
    admin.call(
        "POST", "/agreements", {"inviter_institution_id": down, "invitee_institution_id": up}
    )

    sessions: dict[str, Any] = {}

    def account(key: str, role: str, name: str, institution_id: str, department_id: str) -> Account:
        person = Account(base_url, f"{key}-{suffix}", role)
        body: dict[str, Any] = {
            "username": person.username,
            "display_name": name,
            "role": role,
            "password": PASSWORD,
            "institution_id": institution_id,
            "department_id": department_id,
        }
        if role == "operator":
            body["operator_department_ids"] = [department_id]
        person.user_id = admin.call("POST", "/accounts", body)["id"]
        person.sign_in()
        sessions[key] = {"token": person.token, "me": person.call("GET", "/me")}
        return person

    def practitioner(person: Account, department_id: str, title: str, years: int) -> None:
        admin.call(
            "POST",
            "/practitioners",
            {"user_id": person.user_id, "department_id": department_id,
             "licence_number": f"LIC-{secrets.token_hex(5)}", "title": title,
             "years_of_practice": years, "specialty": "心血管内科"},
        )  # fmt: skip
        admin.call("POST", f"/practitioners/{person.user_id}/verify", {})
        person.call("PUT", "/me/signing-pin", {"current_password": PASSWORD, "pin": PIN})

    doctor = account("doctor", "doctor", "李村医", down, down_general)
    practitioner(doctor, down_general, "resident", 4)
    account("down_centre", "operator", "基层中心", down, down_centre)
    account("up_centre", "operator", "上级中心", up, up_centre)
    nurse = Account(base_url, f"nurse-{suffix}", "nurse")
    nurse.user_id = admin.call(
        "POST",
        "/accounts",
        {"username": nurse.username, "display_name": "护士甲", "role": "nurse",
         "password": PASSWORD, "institution_id": down, "department_id": down_general},
    )["id"]  # fmt: skip
    nurse.sign_in()
    record = nurse.call("POST", "/patients", {"name": "赵某", "id_number": id_number()})
    experts = []
    for key, name, title in (
        ("e1", "张主任", "chief"),
        ("e2", "王教授", "associate_chief"),
        ("e3", "陈医生", "attending"),
    ):
        expert = account(key, "doctor", name, up, up_heart)
        practitioner(expert, up_heart, title, 9)
        experts.append(expert.user_id)
    junior = account("junior", "doctor", "新医生", up, up_heart)
    practitioner(junior, up_heart, "attending", 2)
    print(
        json.dumps(
            {
                "sessions": sessions,
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
