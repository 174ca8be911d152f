"""A request sent to the hospital and one expert invited, through the REST API, from inside the
test's network namespace (issue 14, R11: the inviter's reminders on /consult).

Run as ``python reminders_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``). Prints one JSON
object: the inviting doctor's and the expert's sessions, the consultation and invitation ids.
The test has the expert decline from the page's browser, so the reminder is made, and pushed,
while the doctor's page is open.
"""

from __future__ import annotations

import json
import sys

from institutions_setup import World
from portal_setup import id_number


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
    patient = account("patient", "patient", "赵某", None)
    record = nurse.call("POST", "/patients", {"name": "赵某", "id_number": id_number("19670304")})
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
    patient.call("DELETE", "/session")  # the page signs in afresh
    print(
        json.dumps(
            {
                "patient": patient.describe(),
                "doctor": {"token": doctor.token, "me": doctor.call("GET", "/me")},
                "expert_token": expert.token,
                "consultation_id": cid,
                "invitation_id": invitation["id"],
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
