"""The role matrix: every role against every REST route, on SQLite and on PostgreSQL.

For each route the permission table (``consult.permissions.PERMISSIONS``) says which roles may
attempt its action. A role it refuses gets 403 ``forbidden`` and the refusal is the newest
event of the audit chain (action, account, role, ``denied``); a role it allows gets past the
check (whatever the dummy input then earns: 404, 409, 422 or success). A staff session that
has not enrolled TOTP may only enrol (403 ``totp_enrolment_required``, audited), and without a
token every route but the public ones answers 401. The chain verifies at the end.
"""

from __future__ import annotations

import secrets
from typing import Any

from apiclient import Clinic, Person, Reply
from harness import Server
from sqlalchemy import select

from consult.audit_verify import verify_chain
from consult.models import AuditEvent
from consult.permissions import ENROLMENT_ACTIONS, PERMISSIONS, Role
from web.api import api
from web.api.registry import Operation
from web.keys import DATABASE

#: Actions of the permission table that no REST route names: socket events of the consult room
#: (checked by signaling), and interfaces of later issues (reports, the regulator's export).
NOT_REST = {
    "room.publish",
    "room.subscribe",
    "room.signal",
    "room.mute",
    "room.leave",
    "room.chat",
    "room.viewer_sync",
    "room.review",
    "room.control",
    "room.view",  # consult.rooms.get_room: for the consultation rooms' routes to come
    "room.admit",  # the room-role side of letting one person in (the route's action: visit.admit)
    "report.view",
    "export.visits",
    "account.update",  # consult has no service for it yet
    # DICOMweb: plain aiohttp routes outside the JSON registry (multipart bodies and answers);
    # tests/imaging/test_imaging_access.py checks who is refused.
    "imaging.read",
    "imaging.store",
}

REFUSED_CODES = {"forbidden", "totp_enrolment_required"}


def _path(op: Operation) -> str:
    """The route's path with a fresh, well-formed id (or a document kind) for every parameter."""
    path = op.path
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end]
        value = "risk_notice" if name == "kind" else secrets.token_hex(16)
        path = path[:start] + value + path[end + 1 :]
    return path


async def _request(person: Person, op: Operation) -> Reply:
    return await person.call(op.method, _path(op), {} if op.body is not None else None)


async def _head(server: Server) -> AuditEvent:
    async with server.app[DATABASE].session() as session:
        row = await session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert row is not None
    return row


def _protected() -> list[Operation]:
    return [op for op in api.operations if not op.public]


def test_every_route_names_an_action_of_the_permission_table():
    named = {op.action for op in _protected()}
    assert named <= set(PERMISSIONS), named - set(PERMISSIONS)
    assert set(PERMISSIONS) - named == NOT_REST, (set(PERMISSIONS) - named) ^ NOT_REST
    # public: sign-in, health, and the enrolment link (its secret is the credential, R34)
    public = {op.operation_id for op in api.operations if op.public}
    assert public == {"sign_in", "health", "redeem_enrolment_link"}


async def _matrix(server: Server) -> dict[str, Any]:
    clinic = await Clinic.open(server)
    try:
        people = {Role.ADMIN: clinic.admin}
        for role in Role:
            if role is not Role.ADMIN:
                people[role] = await clinic.person(role.value)
        outcome: dict[str, Any] = {"allowed": 0, "refused": 0}
        for role, person in people.items():
            refused_here = 0
            for op in _protected():
                assert op.action is not None
                if refused_here == 90:
                    # one account's refusals past 100 are throttled (consult.authorization.DENIALS_BURST):
                    # the admin too, refused on over 100 routes since the follow-up, exam and
                    # reminder routes came
                    person, refused_here = await clinic.person(role.value), 0
                reply = await _request(person, op)
                where = f"{role.value} {op.method} {op.path} ({op.action})"
                if role in PERMISSIONS[op.action]:
                    assert reply.status not in (401, 403) or reply.code not in (
                        REFUSED_CODES | {"session_invalid"}
                    ), f"{where} was refused: {reply}"
                    assert reply.status < 500, f"{where}: {reply}"
                    outcome["allowed"] += 1
                    if op.operation_id == "sign_out":
                        assert (await person.sign_in()).status == 201
                else:
                    assert (reply.status, reply.code) == (403, "forbidden"), f"{where}: {reply}"
                    head = await _head(server)
                    assert (head.action, head.actor_id, head.actor_role, head.result) == (
                        op.action,
                        person.user_id,
                        role.value,
                        "denied",
                    ), where
                    outcome["refused"] += 1
                    refused_here += 1

        # A staff session without TOTP may only enrol (R33); each refusal is audited.
        # A new account every 50 routes: one account's refusals past 100 are throttled
        # (rate_limited, consult.authorization.DENIALS_BURST), and there are more routes than that.
        refusable = [op for op in _protected() if op.action not in ENROLMENT_ACTIONS]
        for index, op in enumerate(refusable):
            assert op.action is not None
            if index % 50 == 0:
                newcomer = await clinic.person("doctor", enrol=False)
                signed = await newcomer.sign_in()
                assert signed.body["totp_enrolment_required"] is True
            reply = await _request(newcomer, op)
            assert (reply.status, reply.code) == (403, "totp_enrolment_required"), (op, reply)
            head = await _head(server)
            assert (head.action, head.actor_id, head.result) == (
                op.action,
                newcomer.user_id,
                "denied",
            )

        # No token, a forged token: 401 everywhere but the public routes.
        stranger = Person(clinic.api, "nobody", "patient", token="")
        forger = Person(clinic.api, "forger", "patient", token=secrets.token_urlsafe(32))
        for op in _protected():
            assert (await clinic.api.call(op.method, _path(op))).status == 401, op
            reply = await _request(forger, op)
            assert (reply.status, reply.code) == (401, "session_invalid"), (op, reply)
        del stranger

        report = await verify_chain(server.app[DATABASE])
        assert report.ok, report.text()
        outcome["events"] = report.checked
        return outcome
    finally:
        await clinic.close()


async def test_role_matrix(any_server: Server):
    outcome = await _matrix(any_server)
    roles, routes = len(Role), len(_protected())
    assert outcome["allowed"] + outcome["refused"] == roles * routes
    assert outcome["refused"] > 0 and outcome["allowed"] > 0
    print(f"\nrole matrix: {roles} roles x {routes} routes: {outcome}")
