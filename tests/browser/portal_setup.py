"""Prepare a visit through the REST API, from inside the test's network namespace.

Run as ``python portal_setup.py BASE_URL DATA_DIR [--guardian]`` (by ``ip netns exec``): the first admin
comes from the command line (``teleconsult user add``), everything else through the
API, TOTP codes from pyotp with the secrets the API returned. Prints one JSON object: the
accounts (with passwords and TOTP secrets), the visit id and the last TOTP step each account
used (the server accepts a step once).

With ``--guardian`` the visit is a child's (R4): a child of 4 with its own account (a family
tablet) books it, and a guardian with another account is linked to the child's record, the link
verified (written in the database: no route links a record that has its own account, and staff
verify links). The JSON then names ``child`` and ``guardian`` instead of ``patient``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from consult.totp import INTERVAL_S, code_for_step, next_usable_step

PASSWORD = "Correct-Horse-42"
TELECONSULT = Path(sys.executable).parent / "teleconsult"


def id_number(born: str = "19800101") -> str:
    """A valid resident ID number born on ``born`` (YYYYMMDD; random sequence, right check
    character)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    first17 = "110105" + born + f"{secrets.randbelow(1000):03d}"
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


class Account:
    def __init__(self, base_url: str, username: str, role: str) -> None:
        self.base_url = base_url
        self.username = username
        self.role = role
        self.token = ""
        self.user_id = ""
        self.secret: str | None = None
        self.last_step = -1

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}/api/v1{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path} as {self.role}: {exc.code} {exc.read()!r}") from None
        return json.loads(raw) if raw else None

    def code(self) -> str:
        assert self.secret is not None
        while (step := next_usable_step(time.time(), self.last_step)) is None:
            time.sleep(INTERVAL_S - time.time() % INTERVAL_S + 0.05)
        self.last_step = step
        return code_for_step(self.secret, step)

    def sign_in(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        if self.secret:
            body["totp_code"] = self.code()
        result = self.call("POST", "/session", body)
        self.token = result["token"]
        self.user_id = result["me"]["user_id"]
        if result["totp_enrolment_required"]:
            enrolment = self.call("POST", "/me/totp")
            self.secret = enrolment["secret"]
            self.call("POST", "/me/totp/confirm", {"code": self.code()})

    def describe(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "password": PASSWORD,
            "user_id": self.user_id,
            "totp_secret": self.secret,
            "last_step": self.last_step,
        }


def link_guardian(data_dir: str, ward_id: str, guardian_id: str) -> None:
    """The verified guardian link of a ward that has its own account (as staff would leave it)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(Path(data_dir) / "teleconsult.db") as db:
        db.execute(
            "UPDATE patients SET guardian_id = ?, guardian_relation = 'parent',"
            " guardian_verified_at = ? WHERE id = ?",
            (guardian_id, now, ward_id),
        )


def main(base_url: str, data_dir: str, guardian: bool = False) -> None:
    suffix = secrets.token_hex(3)
    admin = Account(base_url, f"admin-{suffix}", "admin")
    subprocess.run(
        [
            str(TELECONSULT),
            "user",
            "add",
            "--data-dir",
            data_dir,
            "--role",
            "admin",
            "--username",
            admin.username,
            "--display-name",
            "管理员",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    admin.sign_in()
    institution = admin.call(
        "POST", "/institutions", {"name": "示范互联网医院", "level": "tertiary"}
    )
    department = admin.call(
        "POST", f"/institutions/{institution['id']}/departments", {"name": "心血管内科"}
    )
    people = {}
    cast = [("doctor", "doctor", "王医生"), ("nurse", "nurse", "李护士")]
    if guardian:
        cast += [("patient", "child", "小李"), ("patient", "guardian", "家长 李某")]
    else:
        cast += [("patient", "patient", "张某")]
    for role, key, name in cast:
        account = Account(base_url, f"{key}-{suffix}", role)
        body: dict[str, Any] = {
            "username": account.username,
            "display_name": name,
            "role": role,
            "password": PASSWORD,
        }
        if role != "patient":
            body |= {"institution_id": institution["id"], "department_id": department["id"]}
        account.user_id = admin.call("POST", "/accounts", body)["id"]
        account.sign_in()
        people[key] = account
    doctor, nurse = people["doctor"], people["nurse"]
    patient = people["child" if guardian else "patient"]
    admin.call(
        "POST",
        "/practitioners",
        {
            "user_id": doctor.user_id,
            "department_id": department["id"],
            "licence_number": f"LIC-{suffix}",
            "title": "attending",
            "years_of_practice": 8,
            "specialty": "心血管内科",
        },
    )
    admin.call("POST", f"/practitioners/{doctor.user_id}/verify", {"approve": True})
    doctor.call("POST", "/me/online", {"online": True})
    if guardian:
        adult = people["guardian"].call(
            "POST", "/patients", {"name": "李某", "id_number": id_number()}
        )
        born = date.today().replace(year=date.today().year - 4).strftime("%Y%m%d")
        record = patient.call("POST", "/patients", {"name": "小李", "id_number": id_number(born)})
        link_guardian(data_dir, record["id"], adult["id"])
    else:
        record = patient.call("POST", "/patients", {"name": "张某", "id_number": id_number()})
    nurse.call(
        "POST",
        f"/patients/{record['id']}/diagnoses",
        {
            "condition_code": "I10",
            "condition_name": "原发性高血压",
            "institution_name": "市第一人民医院",
            "diagnosed_on": "2025-03-01",
        },
    )
    visit = patient.call(
        "POST",
        "/visits",
        {
            "patient_id": record["id"],
            "doctor_id": doctor.user_id,
            "mode": "video",
            "condition_code": "I10",
        },
    )
    # The browser signs in afresh: these sessions end here.
    for account in (*people.values(), admin):
        account.call("DELETE", "/session")
    described = {key: account.describe() for key, account in people.items() if key != "nurse"}
    print(json.dumps({"visit_id": visit["id"], **described, "admin": admin.describe()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], guardian="--guardian" in sys.argv[3:])
