"""An MDT consultation in session, through the REST API, from inside the test's network namespace
(issue 14, R12: several invitees): five people for its room.

Run as ``python mdt_room_setup.py BASE_URL DATA_DIR`` (by ``ip netns exec``): a grassroots clinic
and a tertiary hospital, each with a consult centre, an agreement from the clinic to the hospital
(institutions_setup.py); the clinic's doctor, a nurse who registers the patient's record linked to
the patient's own account, three experts of the hospital. The request goes through submit,
approve, three invitations (each accepted) and start. Prints one JSON object: the patient's
username and password (its page signs in), the doctor's and the experts' sessions (their /consult
pages open the room), the consultation and room ids and everyone's display name.
"""

from __future__ import annotations

import json
import sys

from institutions_setup import DOWN_NAME, UP_NAME, World
from portal_setup import id_number

EXPERTS = (
    ("e1", "张主任", "chief"),
    ("e2", "王教授", "associate_chief"),
    ("e3", "陈医生", "attending"),
)


def main(base_url: str, data_dir: str) -> None:
    world = World(base_url, data_dir)
    up, down = world.up, world.down
    account, practitioner = world.account, world.practitioner

    doctor = account("doctor", "doctor", "李村医", (down, world.down_general))
    practitioner(doctor, world.down_general, "resident", 4)
    down_ops = account("down_centre", "operator", "基层中心", (down, world.down_centre))
    up_ops = account("up_centre", "operator", "上级中心", (up, world.up_centre))
    nurse = account("nurse", "nurse", "护士甲", (down, world.down_general))
    experts = {}
    for key, name, title in EXPERTS:
        experts[key] = account(key, "doctor", name, (up, world.up_heart))
        practitioner(experts[key], world.up_heart, title, 9)
    patient = account("patient", "patient", "赵某", None)
    record = nurse.call(
        "POST",
        "/patients",
        {"name": "赵某", "id_number": id_number("19580911"), "user_id": patient.user_id},
    )

    consultation = doctor.call(
        "POST",
        "/consultations",
        {"kind": "consultation", "patient_id": record["id"], "target_institution_id": up,
         "reason": "冠脉多支病变，需多学科讨论", "purpose": "确定介入或外科治疗方案",
         "specialty": "心血管内科", "min_title": "attending", "urgency": "routine",
         "description": "活动后胸痛 6 个月", "history": "糖尿病 8 年",
         "summary": "冠脉 CTA：三支病变", "proposed_start": "2030-01-05T02:00:00+00:00",
         "proposed_end": "2030-01-05T03:00:00+00:00"},
    )  # fmt: skip
    cid = consultation["id"]
    doctor.call("POST", f"/consultations/{cid}/submit")
    down_ops.call("POST", f"/consultations/{cid}/approve")
    for expert in experts.values():
        invitation = up_ops.call(
            "POST", f"/consultations/{cid}/invitations", {"expert_id": expert.user_id}
        )
        expert.call("POST", f"/invitations/{invitation['id']}/accept")
    started = doctor.call("POST", f"/consultations/{cid}/start")
    # The patient's page signs in afresh: its session here ends.
    patient.call("DELETE", "/session")
    sessions = {
        key: {"token": person.token, "me": person.call("GET", "/me")}
        for key, person in (("doctor", doctor), *experts.items())
    }
    print(
        json.dumps(
            {
                "patient": patient.describe(),
                "patient_id": patient.user_id,
                "sessions": sessions,
                "names": {"doctor": "李村医", "patient": "赵某"}
                | {key: name for key, name, _ in EXPERTS},
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
