"""Prepare a remote imaging read for the consultation pages (issue 14 item 6, R14, R19), through
the REST API from inside the test's network namespace.

Run as ``python diagnosis_setup.py BASE_URL DATA_DIR``: the two institutions of
``institutions_setup``; the clinic's doctor (online), a patient with an account who booked a
video visit with it, and a CT study (pydicom's CT_small.dcm) its doctor stored on that visit over
STOW-RS; the hospital's centre and one expert with a signing PIN. Prints one JSON object: the
signed-in sessions and the ids the test needs.
"""

from __future__ import annotations

import copy
import io
import json
import secrets
import sys
import urllib.request
from typing import Any

from institutions_setup import World
from portal_setup import PASSWORD, id_number
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

PIN = "246810"
BOUNDARY = "diagnosis-setup-boundary"


def _ct_small(patient_name: str) -> tuple[bytes, str]:
    found = get_testdata_file("CT_small.dcm", download=False)
    assert found is not None, "pydicom's CT_small.dcm is not installed"
    ds = copy.deepcopy(dcmread(str(found)))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = patient_name
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), str(ds.StudyInstanceUID)


def _stow(base_url: str, token: str, visit_id: str, part: bytes) -> None:
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base_url}/api/v1/dicomweb/visits/{visit_id}/studies", data=body, method="POST"
    )
    request.add_header(
        "Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    )
    request.add_header("Accept", "application/dicom+json")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status


def main(base_url: str, data_dir: str) -> None:
    world = World(base_url, data_dir)
    up, down = world.up, world.down
    sessions: dict[str, Any] = {}

    def account(key: str, role: str, name: str, place: tuple[str, str] | None) -> Any:
        person = world.account(key, role, name, place)
        sessions[key] = {"token": person.token, "me": person.call("GET", "/me")}
        return person

    doctor = account("doctor", "doctor", "李村医", (down, world.down_general))
    world.practitioner(doctor, world.down_general, "resident", 4)
    doctor.call("PUT", "/me/signing-pin", {"current_password": PASSWORD, "pin": PIN})
    doctor.call("POST", "/me/online", {"online": True})
    account("down_centre", "operator", "基层中心", (down, world.down_centre))
    account("up_centre", "operator", "上级中心", (up, world.up_centre))
    nurse = world.account("nurse", "nurse", "护士甲", (down, world.down_general))
    expert = account("e1", "doctor", "张主任", (up, world.up_heart))
    world.practitioner(expert, world.up_heart, "chief", 9)
    expert.call("PUT", "/me/signing-pin", {"current_password": PASSWORD, "pin": PIN})
    patient = world.account("patient", "patient", "赵某", None)
    record = nurse.call(
        "POST", "/patients", {"name": "赵某", "id_number": id_number(), "user_id": patient.user_id}
    )
    nurse.call(
        "POST",
        f"/patients/{record['id']}/diagnoses",
        {"condition_code": "I10", "condition_name": "原发性高血压",
         "institution_name": "青山镇卫生院", "diagnosed_on": "2025-03-01"},
    )  # fmt: skip
    visit = patient.call(
        "POST",
        "/visits",
        {"patient_id": record["id"], "doctor_id": doctor.user_id, "mode": "video",
         "condition_code": "I10"},
    )  # fmt: skip
    marker = f"ZHAO^{secrets.token_hex(3).upper()}"
    part, study_uid = _ct_small(marker)
    _stow(base_url, doctor.token, visit["id"], part)
    print(
        json.dumps(
            {
                "sessions": sessions,
                "patient_record_id": record["id"],
                "study_uid": study_uid,
                "marker": marker,
                "up": up,
                "down": down,
                "expert": expert.user_id,
                "pin": PIN,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
