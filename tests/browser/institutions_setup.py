"""Two institutions for the consultation pages' setup scripts (consultation_setup.py,
patient_consultation_setup.py), through the REST API: the first admin (``teleconsult user add``),
a grassroots clinic and a tertiary hospital, each with a consult centre, and an agreement from the
clinic to the hospital; then accounts and verified practitioner records on demand."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

from portal_setup import PASSWORD, TELECONSULT, Account

UP_NAME = "省人民医院"
DOWN_NAME = "青山镇卫生院"


class World:
    def __init__(self, base_url: str, data_dir: str) -> None:
        self.base_url = base_url
        self.suffix = secrets.token_hex(3)
        admin = self.admin = Account(base_url, f"admin-{self.suffix}", "admin")
        subprocess.run(
            [str(TELECONSULT), "user", "add", "--data-dir", data_dir, "--role", "admin",
             "--username", admin.username, "--display-name", "管理员", "--password-stdin"],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True,
        )  # fmt: skip
        admin.sign_in()
        self.up = self._institution(UP_NAME, "tertiary")
        self.down = self._institution(DOWN_NAME, "grassroots")
        self.up_heart = self._department(self.up, "心血管内科")
        self.up_centre = self._department(self.up, "远程医学中心")
        self.down_general = self._department(self.down, "全科")
        self.down_centre = self._department(self.down, "远程会诊中心")
        for institution, centre in ((self.up, self.up_centre), (self.down, self.down_centre)):
            admin.call(
                "PUT", f"/institutions/{institution}/consult-centre", {"department_id": centre}
            )
        admin.call(
            "POST",
            "/agreements",
            {"inviter_institution_id": self.down, "invitee_institution_id": self.up},
        )

    def _institution(self, name: str, level: str) -> str:
        return str(self.admin.call("POST", "/institutions", {"name": name, "level": level})["id"])

    def _department(self, institution_id: str, name: str) -> str:
        path = f"/institutions/{institution_id}/departments"
        return str(self.admin.call("POST", path, {"name": name})["id"])

    def account(self, key: str, role: str, name: str, place: tuple[str, str] | None) -> Account:
        """A signed-in account; ``place``: its (institution, department), none for a patient."""
        person = Account(self.base_url, f"{key}-{self.suffix}", role)
        body: dict[str, Any] = {
            "username": person.username,
            "display_name": name,
            "role": role,
            "password": PASSWORD,
        }
        if place is not None:
            body |= {"institution_id": place[0], "department_id": place[1]}
            if role == "operator":
                body["operator_department_ids"] = [place[1]]
        person.user_id = self.admin.call("POST", "/accounts", body)["id"]
        person.sign_in()
        return person

    def practitioner(self, person: Account, department_id: str, title: str, years: int) -> None:
        """A verified practitioner record of ``person``."""
        self.admin.call(
            "POST",
            "/practitioners",
            {"user_id": person.user_id, "department_id": department_id,
             "licence_number": f"LIC-{secrets.token_hex(5)}", "title": title,
             "years_of_practice": years, "specialty": "心血管内科"},
        )  # fmt: skip
        self.admin.call("POST", f"/practitioners/{person.user_id}/verify", {})
