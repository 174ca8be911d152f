"""A consultation in session whose patient has an account, through the REST API, from inside the
test's network namespace (issue 14: the patient's way into the MDT room).

Run as ``python patient_consultation_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``): a
grassroots clinic and a tertiary hospital, each with a consult centre, an agreement from the
clinic to the hospital; the clinic's doctor, a nurse who registers the patient's record linked
to the patient's own account, an expert of the hospital. The request goes through submit,
approve, invite, accept and start. Prints one JSON object: the patient's username and password
(the page signs in), the doctor's and the expert's sessions (their /consult pages open the room),
the consultation, room and patient ids.
"""

from __future__ import annotations

import json
import sys

from institutions_setup import DOWN_NAME, UP_NAME, World
from portal_setup import id_number


def main(base_url: str, data_dir: str) -> None:
    world = World(base_url, data_dir)
    up, down = world.up, world.down
    up_heart, up_centre = world.up_heart, world.up_centre
    down_general, down_centre = world.down_general, world.down_centre
    account, practitioner = world.account, world.practitioner

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
                "sessions": {
                    "doctor": {"token": doctor.token, "me": doctor.call("GET", "/me")},
                    "expert": {"token": expert.token, "me": expert.call("GET", "/me")},
                },
                "consultation_id": cid,
                "room_id": started["room_id"],
                "down": DOWN_NAME,
                "up": UP_NAME,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
