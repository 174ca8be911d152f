"""R33, R34: password policy, lockout, TOTP for staff, sessions, and admin account actions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from consult_world import PASSWORD, SYSTEM, Org, make_org, make_person, signed_in
from sqlalchemy import select, text

from consult.accounts import (
    change_password,
    confirm_totp,
    create_user,
    deactivate_user,
    enrol_totp,
    get_account,
    list_accounts,
    my_account,
    reset_password,
    reset_totp,
    unlock_user,
)
from consult.audit_verify import events_for, verify_chain
from consult.authorization import authorize
from consult.db import Database
from consult.errors import (
    AccountLocked,
    DepartmentNotFound,
    InvalidCredentials,
    InvalidInput,
    PermissionDenied,
    SessionExpired,
    SessionInvalid,
    TotpAlreadyEnrolled,
    TotpEnrolmentRequired,
    TotpInvalid,
    TotpNotEnrolled,
    UsernameTaken,
    WeakPassword,
)
from consult.models import AuditEvent, Session, User
from consult.password_policy import character_classes, check_password
from consult.permissions import STAFF_ROLES, Role
from consult.sessions import authenticate, sign_in, sign_out, token_digest
from consult.sqltypes import utc_now
from consult.totp import code_at

IP = "198.51.100.9"


@pytest.fixture
async def org(db: Database) -> Org:
    return await make_org(db)


async def _audit(db: Database, action: str, object_id: str | None = None) -> list[AuditEvent]:
    async with db.session() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        if object_id is not None:
            statement = statement.where(AuditEvent.object_id == object_id)
        return list((await session.scalars(statement.order_by(AuditEvent.seq))).all())


# --- Password policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["Abcdefghi1", "Abcdefghi!", "密码Kettle-Orbit-7", "Correct-Horse-42", "Xq7#mVr2!pLz"],
)
def test_r33_strong_passwords_pass(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize(
    "password",
    [
        "Abcdefg1!",
        "abcdefghijkl",
        "abcdefghi1",
        "ABCDEFGHI!",
        "1234567890!",
        "x" * 257,
        "",
        # issue 13: these met the class rule; a blocklist and pattern matcher (zxcvbn) refuse them
        "Password12",
        "P@ssw0rd2024",
        "Qwerty123456",
        " " * 10 + "aA1",
        "abcdefgh1!",
        "ABCDEFGH1!",
        "密码Password12",
        "1qaz2wsx3edC",
    ],
)
def test_r33_weak_passwords_fail(password: str) -> None:
    with pytest.raises(WeakPassword) as info:
        check_password(password)
    assert info.value.code == "weak_password"


def test_r33_password_may_not_contain_the_username() -> None:
    with pytest.raises(WeakPassword):
        check_password("Xdr.Wang-2024", username="dr.wang")


def test_r33_character_classes() -> None:
    assert character_classes("aA1!") == 4
    assert character_classes("张三abc") == 2  # caseless letters count as "other"


# --- Sign-in, lockout ---------------------------------------------------------------------


async def test_r33_patient_signs_in_and_the_token_authenticates(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    result = await sign_in(db, patient.username, PASSWORD, None, IP)
    assert result.role is Role.PATIENT and not result.totp_enrolment_required
    assert result.idle_timeout_s == 2 * 3600
    actor = await authenticate(db, result.token, IP)
    assert (actor.user_id, actor.role, actor.session_id) == (
        patient.user_id,
        Role.PATIENT,
        result.session_id,
    )
    assert actor.source_ip == IP and not actor.enrolment_only
    (event,) = await _audit(db, "session.sign_in", result.session_id)
    assert (event.result, event.actor_id, event.source_ip) == ("ok", patient.user_id, IP)


async def test_r33_token_is_stored_only_as_a_digest(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    result = await sign_in(db, patient.username, PASSWORD)
    async with db.session() as session:
        row = await session.get(Session, result.session_id)
        dump = " ".join(
            str(v) for v in (await session.execute(text("SELECT * FROM sessions"))).all()
        )
    assert row is not None and row.token_digest == token_digest(result.token)
    assert result.token not in dump


async def test_r33_lockout_after_five_failures_for_ten_minutes(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    t0 = utc_now()
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            await sign_in(db, patient.username, "Wrong-Password-1", None, IP, now=t0)
    with pytest.raises(AccountLocked) as info:  # the fifth failure locks
        await sign_in(db, patient.username, "Wrong-Password-1", None, IP, now=t0)
    assert info.value.code == "account_locked"
    # The right password does not help while locked, and attempts do not extend the lock.
    for minutes in (1, 5, 9.9):
        with pytest.raises(AccountLocked):
            await sign_in(db, patient.username, PASSWORD, now=t0 + timedelta(minutes=minutes))
    result = await sign_in(db, patient.username, PASSWORD, now=t0 + timedelta(minutes=10))
    assert result.user_id == patient.user_id
    failures = [e for e in await _audit(db, "session.sign_in") if e.actor_id == patient.user_id]
    reasons = [json.loads(e.details).get("reason") for e in failures]
    assert reasons == ["bad_password"] * 5 + ["locked"] * 3 + [None]
    assert [e.result for e in failures] == ["failed"] * 8 + ["ok"]
    (lock,) = await _audit(db, "account.lock", patient.user_id)
    assert json.loads(lock.details) == {"failures": 5, "minutes": 10}


async def test_r33_success_resets_the_failure_count(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    for _ in range(2):
        for _ in range(4):
            with pytest.raises(InvalidCredentials):
                await sign_in(db, patient.username, "Wrong-Password-1")
        await sign_in(db, patient.username, PASSWORD)


async def test_r33_unknown_and_inactive_accounts_are_vague_failures(db: Database, org: Org) -> None:
    with pytest.raises(InvalidCredentials):
        await sign_in(db, "nobody-here", PASSWORD, None, IP)
    unknown = [e for e in await _audit(db, "session.sign_in") if e.actor_id is None]
    assert unknown and json.loads(unknown[-1].details)["reason"] == "unknown_user"
    assert "nobody-here" not in unknown[-1].details  # a keyed reference, not the name
    patient = await make_person(db, org, Role.PATIENT)
    await deactivate_user(db, SYSTEM, patient.user_id)
    with pytest.raises(InvalidCredentials):
        await sign_in(db, patient.username, PASSWORD)


# --- TOTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
async def test_r33_staff_needs_a_totp_code(db: Database, org: Org, role: Role) -> None:
    staff = await make_person(db, org, role)
    assert staff.totp_secret is not None
    t0 = utc_now()
    with pytest.raises(InvalidCredentials):  # issue 13: a right password alone is not told apart
        await sign_in(db, staff.username, PASSWORD, None, now=t0)
    with pytest.raises(InvalidCredentials):
        await sign_in(db, staff.username, PASSWORD, "000000", now=t0)
    code = code_at(staff.totp_secret, t0)
    result = await sign_in(db, staff.username, PASSWORD, code, now=t0)
    assert not result.totp_enrolment_required and result.idle_timeout_s == 15 * 60
    with pytest.raises(InvalidCredentials):  # the same code again: a replay
        await sign_in(db, staff.username, PASSWORD, code, now=t0 + timedelta(seconds=5))
    later = t0 + timedelta(seconds=60)
    await sign_in(db, staff.username, PASSWORD, code_at(staff.totp_secret, later), now=later)


async def test_r33_wrong_totp_codes_count_towards_lockout(db: Database, org: Org) -> None:
    doctor = await make_person(db, org, Role.DOCTOR)
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            await sign_in(db, doctor.username, PASSWORD, "123456")
    with pytest.raises(AccountLocked):
        await sign_in(db, doctor.username, PASSWORD, "123456")


async def test_r33_staff_without_totp_may_only_enrol(db: Database, org: Org) -> None:
    doctor = await make_person(db, org, Role.DOCTOR, totp=False)
    t0 = utc_now()
    result = await sign_in(db, doctor.username, PASSWORD, None, IP, now=t0)
    assert result.totp_enrolment_required
    actor = await authenticate(db, result.token, IP, now=t0)
    assert actor.enrolment_only
    me = await my_account(db, actor)  # allowed while enrolling
    assert (me.id, me.role, me.totp_enrolled) == (doctor.user_id, Role.DOCTOR, False)
    with pytest.raises(TotpEnrolmentRequired) as info:
        await authorize(db, actor, "visit.admit", object_type="visit")
    assert info.value.code == "totp_enrolment_required"
    (denial,) = await _audit(db, "visit.admit")
    assert denial.actor_id == doctor.user_id and denial.result == "denied"
    with pytest.raises(TotpNotEnrolled):
        await confirm_totp(db, actor, "123456", now=t0)
    enrolment = await enrol_totp(db, actor)
    assert enrolment.provisioning_uri.startswith("otpauth://totp/")
    async with db.session() as session:
        user = await session.get(User, doctor.user_id)
    assert user is not None and user.totp_secret_enc is not None
    assert enrolment.secret not in user.totp_secret_enc  # SM4-encrypted at rest
    with pytest.raises(TotpInvalid):
        await confirm_totp(db, actor, "000000", now=t0)
    await confirm_totp(db, actor, code_at(enrolment.secret, t0), now=t0)
    upgraded = await authenticate(db, result.token, IP, now=t0)
    assert not upgraded.enrolment_only
    await authorize(db, upgraded, "visit.admit")
    with pytest.raises(TotpAlreadyEnrolled):
        await enrol_totp(db, upgraded)
    later = t0 + timedelta(minutes=1)
    with pytest.raises(InvalidCredentials):
        await sign_in(db, doctor.username, PASSWORD, None, now=later)
    await sign_in(db, doctor.username, PASSWORD, code_at(enrolment.secret, later), now=later)


async def test_r33_patients_without_totp_get_a_full_session(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    result = await sign_in(db, patient.username, PASSWORD)
    assert not (await authenticate(db, result.token)).enrolment_only


# --- Sessions ------------------------------------------------------------------------------


async def test_r33_staff_idle_timeout_is_fifteen_minutes(db: Database, org: Org) -> None:
    nurse = await make_person(db, org, Role.NURSE)
    t0 = utc_now()
    token = (
        await sign_in(db, nurse.username, PASSWORD, code_at(nurse.totp_secret or "", t0), now=t0)
    ).token
    await authenticate(db, token, now=t0 + timedelta(minutes=14))  # activity moves the clock
    await authenticate(db, token, now=t0 + timedelta(minutes=28))
    with pytest.raises(SessionExpired) as info:
        await authenticate(db, token, now=t0 + timedelta(minutes=43, seconds=1))
    assert info.value.code == "session_expired"
    with pytest.raises(SessionInvalid):  # expired sessions are revoked for good
        await authenticate(db, token, now=t0 + timedelta(minutes=29))
    (event,) = [e for e in await _audit(db, "session.expire") if e.actor_id == nurse.user_id]
    assert json.loads(event.details) == {"reason": "idle"}


async def test_r33_patient_idle_timeout_is_two_hours(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    t0 = utc_now()
    token = (await sign_in(db, patient.username, PASSWORD, now=t0)).token
    await authenticate(db, token, now=t0 + timedelta(minutes=119))
    with pytest.raises(SessionExpired):
        await authenticate(db, token, now=t0 + timedelta(minutes=239, seconds=1))


async def test_r33_absolute_lifetime_is_twelve_hours(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    t0 = utc_now()
    token = (await sign_in(db, patient.username, PASSWORD, now=t0)).token
    for hours in range(1, 12):
        await authenticate(db, token, now=t0 + timedelta(hours=hours))
    with pytest.raises(SessionExpired):
        await authenticate(db, token, now=t0 + timedelta(hours=12))
    (event,) = [e for e in await _audit(db, "session.expire") if e.actor_id == patient.user_id]
    assert json.loads(event.details) == {"reason": "absolute"}


async def test_r33_sign_out_revokes_and_sign_in_rotates(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    first = await sign_in(db, patient.username, PASSWORD)
    second = await sign_in(db, patient.username, PASSWORD)
    assert first.token != second.token
    with pytest.raises(SessionInvalid):  # a new sign-in ends the old session
        await authenticate(db, first.token)
    actor = await authenticate(db, second.token)
    await sign_out(db, actor)
    with pytest.raises(SessionInvalid) as info:
        await authenticate(db, second.token)
    assert info.value.code == "session_invalid"
    (event,) = await _audit(db, "session.sign_out", second.session_id)
    assert event.actor_id == patient.user_id


@pytest.mark.parametrize("token", [None, "", "x" * 300, "not-a-token", 42])
async def test_r33_garbage_tokens_are_invalid(db: Database, token: object) -> None:
    with pytest.raises(SessionInvalid):
        await authenticate(db, token)  # type: ignore[arg-type]


# --- Admin actions (R34) ---------------------------------------------------------------------


async def test_r34_admin_creates_accounts_and_it_is_audited(db: Database, org: Org) -> None:
    admin = await make_person(db, org, Role.ADMIN)
    view = await create_user(
        db,
        admin.actor,
        username=f"op-{admin.user_id[:8]}",
        display_name="运营",
        role="operator",
        password=PASSWORD,
        institution_id=org.institution_id,
        operator_department_ids=[org.department_id, org.other_department_id],
    )
    assert view.role is Role.OPERATOR
    assert view.department_ids == {org.department_id, org.other_department_id}
    (event,) = await _audit(db, "account.create", view.id)
    assert event.actor_id == admin.user_id
    assert json.loads(event.details)["role"] == "operator"
    assert (await get_account(db, admin.actor, view.id)).username == view.username
    assert view.id in {a.id for a in await list_accounts(db, admin.actor, role=Role.OPERATOR)}
    with pytest.raises(UsernameTaken):
        await create_user(
            db,
            admin.actor,
            username=view.username,
            display_name="x",
            role="patient",
            password=PASSWORD,
        )


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"role": "root"}, InvalidInput),
        ({"username": "a"}, InvalidInput),
        ({"username": "has space"}, InvalidInput),
        ({"display_name": " "}, InvalidInput),
        ({"password": "short"}, WeakPassword),
        ({"role": "operator"}, InvalidInput),  # no department scope
        ({"role": "doctor", "institution_id": None}, InvalidInput),
        ({"department_id": "nope"}, DepartmentNotFound),
    ],
)
async def test_r34_create_user_validates(
    db: Database, org: Org, values: dict[str, object], error: type[Exception]
) -> None:
    arguments: dict[str, object] = {
        "username": f"user-{org.institution_id[:8]}",
        "display_name": "x",
        "role": "nurse",
        "password": PASSWORD,
        "institution_id": org.institution_id,
    }
    arguments.update(values)
    with pytest.raises(error):
        await create_user(db, SYSTEM, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
async def test_r34_only_admin_creates_accounts(db: Database, org: Org, role: Role) -> None:
    someone = await make_person(db, org, role)
    with pytest.raises(PermissionDenied):
        await create_user(
            db, someone.actor, username="x-x-x", display_name="x", role="admin", password=PASSWORD
        )
    (event,) = [e for e in await _audit(db, "account.create") if e.actor_id == someone.user_id]
    assert event.result == "denied"


async def test_r34_deactivation_ends_sessions_and_sign_in(db: Database, org: Org) -> None:
    admin = await make_person(db, org, Role.ADMIN)
    nurse = await make_person(db, org, Role.NURSE)
    actor = await signed_in(db, nurse)
    token_holder = actor.session_id
    await deactivate_user(db, admin.actor, nurse.user_id)
    async with db.session() as session:
        row = await session.get(Session, token_holder)
    assert row is not None and row.revoked_at is not None
    with pytest.raises(InvalidCredentials):
        await signed_in(db, nurse)
    with pytest.raises(PermissionDenied):
        await deactivate_user(db, admin.actor, admin.user_id)  # not oneself
    assert [e.result for e in await _audit(db, "account.deactivate", nurse.user_id)] == ["ok"]


async def test_r34_unlock_reset_password_and_reset_totp(db: Database, org: Org) -> None:
    admin = await make_person(db, org, Role.ADMIN)
    doctor = await make_person(db, org, Role.DOCTOR)
    for _ in range(5):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            await sign_in(db, doctor.username, "Wrong-Password-1")
    await unlock_user(db, admin.actor, doctor.user_id)
    await signed_in(db, doctor)
    nurse = await make_person(db, org, Role.NURSE)
    await reset_password(db, admin.actor, nurse.user_id, "New-Password-77")
    with pytest.raises(InvalidCredentials):
        await sign_in(db, nurse.username, PASSWORD, "000000")
    await reset_totp(db, admin.actor, nurse.user_id)
    result = await sign_in(db, nurse.username, "New-Password-77")
    assert result.totp_enrolment_required
    await reset_totp(db, admin.actor, doctor.user_id)
    result = await sign_in(db, doctor.username, PASSWORD)
    assert result.totp_enrolment_required
    for action in ("account.unlock", "account.reset_totp"):
        assert len(await _audit(db, action, doctor.user_id)) == 1
    assert len(await _audit(db, "account.reset_password", nurse.user_id)) == 1


async def test_r33_change_password(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    other_session = await sign_in(db, patient.username, PASSWORD)
    actor = await authenticate(db, other_session.token)
    with pytest.raises(InvalidCredentials):
        await change_password(db, actor, "Not-The-Password-1", "Brand-New-Pass-9")
    with pytest.raises(WeakPassword):
        await change_password(db, actor, PASSWORD, "weak")
    with pytest.raises(WeakPassword):
        await change_password(db, actor, PASSWORD, PASSWORD)
    await change_password(db, actor, PASSWORD, "Brand-New-Pass-9")
    await authenticate(db, other_session.token)  # the acting session stays
    with pytest.raises(InvalidCredentials):
        await sign_in(db, patient.username, PASSWORD)
    await sign_in(db, patient.username, "Brand-New-Pass-9")
    results = [e.result for e in await _audit(db, "account.change_password", patient.user_id)]
    assert results == ["refused", "ok"]


async def test_r22_account_work_leaves_a_valid_chain(db: Database, org: Org) -> None:
    patient = await make_person(db, org, Role.PATIENT)
    await sign_in(db, patient.username, PASSWORD)
    assert await events_for(db, patient.user_id)
    assert (await verify_chain(db)).ok
