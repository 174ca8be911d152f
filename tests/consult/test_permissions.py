"""R34: the role matrix over the one permission table, every refusal in the audit chain."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from consult import authorization
from consult.actor import Actor
from consult.audit_verify import verify_chain
from consult.authorization import authorize
from consult.db import Database
from consult.errors import PermissionDenied, TotpEnrolmentRequired
from consult.models import AuditEvent
from consult.permissions import (
    CLINICAL_PREFIXES,
    ENROLMENT_ACTIONS,
    PERMISSIONS,
    SOCKET_EVENT_ACTIONS,
    STAFF_ROLES,
    Role,
    allowed_roles,
    in_scope,
    is_allowed,
    require,
)
from consult.sqltypes import new_id

SELF_SERVICE = {
    "session.view",
    "session.sign_out",
    "account.change_password",
    "account.enrol_totp",
    "account.confirm_totp",
}
SIGNALING_EVENTS = {
    "join",
    "publish",
    "subscribe",
    "subscribe_answer",
    "ice_candidate",
    "mute",
    "leave",
}


def _actor(role: Role, *, enrolment_only: bool = False) -> Actor:
    return Actor(
        user_id=new_id(),
        role=role,
        session_id=new_id(),
        source_ip="203.0.113.5",
        department_ids=frozenset({"dep-a"}),
        institution_id="inst-a",
        enrolment_only=enrolment_only,
    )


async def _events_about(db: Database, object_id: str) -> list[AuditEvent]:
    async with db.session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == object_id).order_by(AuditEvent.seq)
        )
        return list(rows.all())


@pytest.mark.parametrize("role", list(Role))
async def test_r34_role_matrix_every_action(
    db: Database, role: Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every action of the table for one role: allowed or refused as it says; refusals audited."""
    # more actions than one actor's burst of audited refusals (then rate_limited): the table,
    # not the throttle, is under test here
    monkeypatch.setattr(authorization, "DENIALS_BURST", 10_000)
    actor = _actor(role)
    marker = new_id()
    refused: set[str] = set()
    for action in sorted(PERMISSIONS):
        if role in PERMISSIONS[action]:
            await authorize(db, actor, action, object_type="matrix", object_id=marker)
            require(actor, action)
            assert is_allowed(actor, action)
        else:
            with pytest.raises(PermissionDenied) as info:
                await authorize(db, actor, action, object_type="matrix", object_id=marker)
            assert info.value.code == "forbidden"
            assert not is_allowed(actor, action)
            refused.add(action)
    events = await _events_about(db, marker)
    assert {e.action for e in events} == refused
    assert len(events) == len(refused)
    for event in events:
        assert (event.result, event.actor_id, event.actor_role) == ("denied", actor.user_id, role)
        assert event.source_ip == "203.0.113.5"
        assert json.loads(event.details) == {"code": "forbidden"}
    assert (await verify_chain(db)).ok


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
async def test_r33_enrolment_only_sessions_may_only_enrol(
    db: Database, role: Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    # more actions than one actor's burst of audited refusals (then rate_limited): the table,
    # not the throttle, is under test here
    monkeypatch.setattr(authorization, "DENIALS_BURST", 10_000)
    actor = _actor(role, enrolment_only=True)
    marker = new_id()
    for action in sorted(PERMISSIONS):
        if action in ENROLMENT_ACTIONS:
            await authorize(db, actor, action, object_id=marker)
        else:
            with pytest.raises(TotpEnrolmentRequired):
                await authorize(db, actor, action, object_id=marker)
    events = await _events_about(db, marker)
    assert {e.action for e in events} == set(PERMISSIONS) - ENROLMENT_ACTIONS
    assert {json.loads(e.details)["code"] for e in events} == {"totp_enrolment_required"}


def test_r34_admin_auditor_regulator_see_no_clinical_data() -> None:
    for action, roles in PERMISSIONS.items():
        if action.startswith(CLINICAL_PREFIXES):
            assert not roles & {Role.ADMIN, Role.AUDITOR, Role.REGULATOR}, action


def test_r34_regulator_has_only_the_export_interface() -> None:
    allowed = {a for a, roles in PERMISSIONS.items() if Role.REGULATOR in roles}
    assert allowed == SELF_SERVICE | {a for a in PERMISSIONS if a.startswith("export.")}


def test_r34_auditor_is_read_only() -> None:
    allowed = {a for a, roles in PERMISSIONS.items() if Role.AUDITOR in roles}
    assert allowed == SELF_SERVICE | {"audit.view", "audit.verify", "report.view"}


def test_r34_only_admin_manages_accounts_and_nobody_else_exports() -> None:
    for action, roles in PERMISSIONS.items():
        if action.startswith(("account.", "institution.create", "department.create")):
            if action not in SELF_SERVICE:
                assert roles == {Role.ADMIN}, action
        if action.startswith("export."):
            assert roles == {Role.REGULATOR}, action


def test_r34_every_action_is_named_and_allowed_to_someone() -> None:
    for action, roles in PERMISSIONS.items():
        assert roles, action
        area, _, verb = action.partition(".")
        assert area and verb and action == action.lower(), action
    with pytest.raises(ValueError, match="unknown action"):
        allowed_roles("visit.teleport")


def test_r34_every_socket_event_names_an_action() -> None:
    assert SIGNALING_EVENTS <= set(SOCKET_EVENT_ACTIONS)
    assert set(SOCKET_EVENT_ACTIONS.values()) <= set(PERMISSIONS)


def test_r34_operator_and_nurse_scopes() -> None:
    operator, nurse, doctor = _actor(Role.OPERATOR), _actor(Role.NURSE), _actor(Role.DOCTOR)
    assert in_scope(operator, institution_id="inst-a", department_id="dep-a")
    assert not in_scope(operator, institution_id="inst-a", department_id="dep-b")
    assert not in_scope(operator, institution_id="inst-a", department_id=None)
    assert in_scope(nurse, institution_id="inst-a", department_id="dep-b")
    assert not in_scope(nurse, institution_id="inst-b", department_id="dep-a")
    assert in_scope(doctor, institution_id="inst-b", department_id=None)  # ownership elsewhere


def test_r34_the_command_line_acts_as_admin_without_an_account() -> None:
    system = Actor.system()
    assert system.is_system and system.role is Role.ADMIN and system.user_id is None
