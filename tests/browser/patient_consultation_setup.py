"""A consultation in session whose patient has an account, through the REST API, from inside the
test's network namespace (issue 14: the patient's way into the MDT room).

Run as ``python patient_consultation_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``): a
grassroots clinic and a tertiary hospital, each with a consult centre, an agreement from the
clinic to the hospital; the clinic's doctor, a nurse who registers the patient's record linked
to the patient's own account, an expert of the hospital. The request goes through submit,
approve, invite, accept and start. Prints one JSON object: the patient's username and password
(the page signs in), the doctor's bearer token (the test steps the patient out and back with
it), the consultation, room and patient ids.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

from portal_setup import PASSWORD, TELECONSULT, Account, id_number


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

    def account(key: str, role: str, name: str, place: tuple[str, str] | None) -> Account:
        person = Account(base_url, f"{key}-{suffix}", role)
        body: dict[str, Any] = {
            "username": person.username,
            "display_name": name,
            "role": role,
            "password": PASSWORD,
        }
        if place is not None:
            body |= {"institution_id": place[0], "department_id": place[1]}
        if role == "operator" and place is not None:
            body["operator_department_ids"] = [place[1]]
        person.user_id = admin.call("POST", "/accounts", body)["id"]
        person.sign_in()
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

    doctor = account("doctor", "doctor", "李村医", (down, down_general))
    practitioner(doctor, down_general, "resident", 4)
    down_ops = account("down_centre", "operator", "基层中心", (down, down_centre))
    up_ops = account("up_centre", "operator", "上级中心", (up, up_centre))
    nurse = account("nurse", "nurse", "护士甲", (down, down_general))
    expert = account("expert", "doctor", "张主任", (up, up_heart))
    practitioner(expert, up_heart, "chief", 9)
    patient = account("patient", "patient", "赵某", None)
    record = nurse.call(
        "POST",
        "/patients",
        {"name": "赵某", "id_number": id_number("19670304"), "user_id": patient.user_id},
    )

    consultation = doctor.call(
        "POST",
        "/consultations",
        {"kind": "consultation", "patient_id": record["id"], "target_institution_id": up,
         "reason": "胸痛反复发作，基层无法明确诊断", "purpose": "明确诊断并制定治疗方案",
         "specialty": "心血管内科", "min_title": "attending", "urgency": "routine",
         "description": "活动后胸痛 3 个月", "history": "高血压 10 年",
         "summary": "心电图：ST 段压低", "proposed_start": "2030-01-05T02:00:00+00:00",
         "proposed_end": "2030-01-05T03:00:00+00:00"},
    )  # fmt: skip
    cid = consultation["id"]
    doctor.call("POST", f"/consultations/{cid}/submit")
    down_ops.call("POST", f"/consultations/{cid}/approve")
    invitation = up_ops.call(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    expert.call("POST", f"/invitations/{invitation['id']}/accept")
    started = doctor.call("POST", f"/consultations/{cid}/start")
    # The patient's page signs in afresh: its session here ends.
    patient.call("DELETE", "/session")
    print(
        json.dumps(
            {
                "patient": patient.describe(),
                "doctor_token": doctor.token,
                "consultation_id": cid,
                "room_id": started["room_id"],
                "down": "青山镇卫生院",
                "up": "省人民医院",
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
