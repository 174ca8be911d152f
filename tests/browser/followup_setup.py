"""A consultation whose report is issued and whose patient has an account, through the REST API,
from inside the test's network namespace (issue 14 item 7: referral and interpretation, R17,
R18). The server needs a signing CA (the test sets it in the environment).

Run as ``python followup_setup.py BASE_URL DATA_DIR``: the two institutions of
institutions_setup.py; the clinic's doctor, a nurse who registers the patient's record linked to
the patient's own account, an expert of the hospital with a signing PIN, both centres' operators.
The request goes through submit, approve, invite and accept; the expert writes, signs and issues
the report. Prints one JSON object: the patient's username and password, the sessions of the
doctor, the expert and the hospital's centre, and the consultation's id.
"""

from __future__ import annotations

import json
import sys

from institutions_setup import DOWN_NAME, UP_NAME, World
from portal_setup import PASSWORD, id_number

PIN = "246810"


def main(base_url: str, data_dir: str) -> None:
    world = World(base_url, data_dir)
    up, down = world.up, world.down
    account, practitioner = world.account, world.practitioner

    doctor = account("doctor", "doctor", "李村医", (down, world.down_general))
    practitioner(doctor, world.down_general, "resident", 4)
    down_ops = account("down_centre", "operator", "基层中心", (down, world.down_centre))
    up_ops = account("up_centre", "operator", "上级中心", (up, world.up_centre))
    nurse = account("nurse", "nurse", "护士甲", (down, world.down_general))
    expert = account("expert", "doctor", "张主任", (up, world.up_heart))
    practitioner(expert, world.up_heart, "chief", 9)
    expert.call("PUT", "/me/signing-pin", {"current_password": PASSWORD, "pin": PIN})
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
         "summary": "心电图：ST 段压低"},
    )  # fmt: skip
    cid = consultation["id"]
    doctor.call("POST", f"/consultations/{cid}/submit")
    down_ops.call("POST", f"/consultations/{cid}/approve")
    invitation = up_ops.call(
        "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
    )
    expert.call("POST", f"/invitations/{invitation['id']}/accept")
    report = expert.call(
        "PUT",
        f"/consultations/{cid}/report",
        {"findings": "冠脉 CTA：前降支近段狭窄约 80%", "opinion": "冠心病，稳定型心绞痛",
         "treatment_plan": "建议介入评估", "referral_advice": "转上级医院心内科"},
    )  # fmt: skip
    expert.call("POST", f"/reports/{report['id']}/sign", {"pin": PIN})
    expert.call("POST", f"/reports/{report['id']}/issue")
    patient.call("DELETE", "/session")  # the patient's page signs in afresh
    print(
        json.dumps(
            {
                "patient": patient.describe(),
                "sessions": {
                    who.username.split("-")[0]: {"token": who.token, "me": who.call("GET", "/me")}
                    for who in (doctor, expert, up_ops)
                },
                "consultation_id": cid,
                "down": DOWN_NAME,
                "up": UP_NAME,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
