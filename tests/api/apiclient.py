"""A small client of the REST API for tests, and people with signed-in sessions.

``Clinic.open(server)`` bootstraps the first admin the way a fresh install does (the command
line's system actor creates it; it signs in, enrols TOTP and confirms), then creates accounts
through the API. TOTP codes come from pyotp with the secret the API returned at enrolment.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from consult import accounts
from consult.actor import Actor
from consult.totp import INTERVAL_S, code_for_step, next_usable_step
from web.keys import DATABASE

PASSWORD = "Correct-Horse-42"


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes = b""  # the body's bytes as they came
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class Api:
    """HTTP calls to ``/api/v1`` of one server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": sent, "params": params}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, f"{self.base_url}/api/v1{path}", **kwargs) as r:
            raw_body = await r.read()
            try:
                text = raw_body.decode()
            except UnicodeDecodeError:  # an image: keep the bytes
                return Reply(r.status, raw_body, raw_body, dict(r.headers))
            try:
                data: Any = await r.json(content_type=None) if text else None
            except ValueError:
                data = text
            return Reply(r.status, data, raw_body, dict(r.headers))


@dataclass
class Totp:
    """An authenticator app: hands out each time step's code once (the server refuses replays)."""

    secret: str
    last_step: int = -1

    async def code(self) -> str:
        step = next_usable_step(time.time(), self.last_step)
        if step is None:  # the window is spent: the next step is usable once it begins
            await asyncio.sleep(INTERVAL_S - time.time() % INTERVAL_S + 0.05)
            step = self.last_step + 1
        self.last_step = step
        return code_for_step(self.secret, step)


@dataclass
class Person:
    """An account with its password, its authenticator and its current bearer token."""

    api: Api
    username: str
    role: str
    user_id: str = ""
    password: str = PASSWORD
    totp: Totp | None = None
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.api.call(method, path, body, token=self.token, **kwargs)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """Call and insist on a 2xx; return the body."""
        reply = await self.call(method, path, body, **kwargs)
        assert 200 <= reply.status < 300, f"{method} {path} as {self.role}: {reply}"
        return reply.body

    async def sign_in(self) -> Reply:
        body: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.totp is not None:
            body["totp_code"] = await self.totp.code()
        reply = await self.api.call("POST", "/session", body)
        if reply.status == 201:
            self.token = reply.body["token"]
            self.user_id = reply.body["me"]["user_id"]
        return reply

    async def enrol(self) -> None:
        """Sign in (an enrolment-only session for staff), enrol TOTP and confirm it."""
        reply = await self.sign_in()
        assert reply.status == 201, reply
        if self.role == "patient":
            return
        assert reply.body["totp_enrolment_required"] is True, reply
        enrolment = await self.ok("POST", "/me/totp")
        assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
        self.totp = Totp(enrolment["secret"])
        me = await self.ok("POST", "/me/totp/confirm", {"code": await self.totp.code()})
        assert me["enrolment_only"] is False


class Clinic:
    """An institution with a department, an admin, and whoever the test adds."""

    def __init__(self, api: Api, admin: Person) -> None:
        self.api = api
        self.admin = admin
        self.institution_id = ""
        self.department_id = ""

    @classmethod
    async def open(cls, server: Any) -> Clinic:
        api = Api(server.url)
        admin = Person(api, f"admin-{secrets.token_hex(3)}", "admin")
        await accounts.create_user(
            server.app[DATABASE],
            Actor.system(),
            username=admin.username,
            display_name="管理员",
            role="admin",
            password=admin.password,
        )
        await admin.enrol()
        clinic = cls(api, admin)
        institution = await admin.ok(
            "POST", "/institutions", {"name": "示范互联网医院", "level": "tertiary"}
        )
        clinic.institution_id = institution["id"]
        department = await admin.ok(
            "POST",
            f"/institutions/{clinic.institution_id}/departments",
            {"name": "心血管内科"},
        )
        clinic.department_id = department["id"]
        return clinic

    async def person(self, role: str, *, enrol: bool = True, name: str | None = None) -> Person:
        """A new account of ``role`` created by the admin; signed in (TOTP confirmed) if asked."""
        person = Person(self.api, f"{role}-{secrets.token_hex(4)}", role)
        body: dict[str, Any] = {
            "username": person.username,
            "display_name": name or f"{role} {person.username[-4:]}",
            "role": role,
            "password": person.password,
        }
        if role in ("doctor", "nurse", "operator"):
            body["institution_id"] = self.institution_id
            body["department_id"] = self.department_id
        if role == "operator":
            body["operator_department_ids"] = [self.department_id]
        account = await self.admin.ok("POST", "/accounts", body)
        person.user_id = account["id"]
        if enrol:
            await person.enrol()
        return person

    async def close(self) -> None:
        await self.api.close()
