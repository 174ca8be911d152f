"""Builders for consult tests: an institution, accounts of every role, actors, patients.

Accounts are made through the real services (``create_user`` as the command line would);
a staff account's TOTP secret is set straight in the database unless a test enrols it itself.
Every name is fresh, so tests can share the run's PostgreSQL database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import update

from consult.accounts import create_user
from consult.actor import Actor
from consult.db import Database
from consult.models import User
from consult.organisation import create_department, create_institution
from consult.permissions import Role
from consult.sessions import TOTP_SECRET_CONTEXT, authenticate, sign_in
from consult.sqltypes import new_id, utc_now
from consult.totp import code_at, new_secret

PASSWORD = "Correct-Horse-42"
SYSTEM = Actor.system()


@dataclass(frozen=True)
class Org:
    """One institution with two departments."""

    institution_id: str
    department_id: str
    other_department_id: str


@dataclass(frozen=True)
class Person:
    """An account made for a test, with what it needs to sign in and act."""

    user_id: str
    username: str
    role: Role
    institution_id: str | None
    department_ids: frozenset[str] = field(default_factory=frozenset)
    totp_secret: str | None = None

    @property
    def actor(self) -> Actor:
        """An actor as ``authenticate`` would make it (no session row behind it)."""
        return Actor(
            user_id=self.user_id,
            role=self.role,
            session_id=new_id(),
            source_ip="192.0.2.10",
            department_ids=self.department_ids,
            institution_id=self.institution_id,
        )


async def make_org(db: Database) -> Org:
    institution = await create_institution(db, SYSTEM, f"医院-{new_id()[:6]}", "tertiary")
    first = await create_department(db, SYSTEM, institution.id, "心血管内科")
    second = await create_department(db, SYSTEM, institution.id, "儿科")
    return Org(institution.id, first.id, second.id)


async def make_person(
    db: Database,
    org: Org,
    role: Role,
    *,
    totp: bool = True,
    department_id: str | None = None,
) -> Person:
    """An account of ``role`` in ``org``; staff get a confirmed TOTP secret unless ``totp=False``.

    Operators are scoped to ``department_id`` (default: the org's first department).
    """
    username = f"{role.value}-{new_id()[:12]}"
    department = department_id or org.department_id
    in_institution = role in {Role.DOCTOR, Role.NURSE, Role.OPERATOR}
    view = await create_user(
        db,
        SYSTEM,
        username=username,
        display_name=f"测试{role.value}",
        role=role,
        password=PASSWORD,
        institution_id=org.institution_id if in_institution else None,
        department_id=department if role in {Role.DOCTOR, Role.NURSE} else None,
        operator_department_ids=[department] if role is Role.OPERATOR else (),
    )
    secret = None
    if totp and role is not Role.PATIENT:
        secret = new_secret()
        async with db.session() as session, session.begin():
            await session.execute(
                update(User)
                .where(User.id == view.id)
                .values(
                    totp_secret_enc=db.cipher.encrypt(secret, TOTP_SECRET_CONTEXT),
                    totp_confirmed_at=utc_now(),
                )
            )
    departments = frozenset({department}) if role is not Role.PATIENT and in_institution else None
    return Person(
        user_id=view.id,
        username=username,
        role=role,
        institution_id=view.institution_id,
        department_ids=departments or frozenset(),
        totp_secret=secret,
    )


async def signed_in(db: Database, person: Person, *, now: datetime | None = None) -> Actor:
    """Sign ``person`` in (with a TOTP code when it has one) and authenticate the token."""
    now = now or utc_now()
    code = code_at(person.totp_secret, now) if person.totp_secret else None
    result = await sign_in(db, person.username, PASSWORD, code, "192.0.2.10", now=now)
    return await authenticate(db, result.token, "192.0.2.10", now=now)


def id_number(birth: date, serial: int = 123) -> str:
    """A valid 18-character resident ID number born on ``birth`` (check character computed)."""
    body = f"110105{birth:%Y%m%d}{serial:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


_serials = iter(range(1, 10**6))


def fresh_id_number(birth: date) -> str:
    """A valid ID number not used before in this run (the serial varies, then the area)."""
    n = next(_serials)
    body = f"{110000 + n // 1000:06d}{birth:%Y%m%d}{n % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


async def make_doctor(
    db: Database, org: Org, *, verified: bool = True, online: bool = True, licence: str = ""
) -> Person:
    """A doctor account with a practitioner record, verified and online unless told otherwise."""
    from consult.practitioners import register_practitioner, set_online, verify_practitioner

    doctor = await make_person(db, org, Role.DOCTOR)
    await register_practitioner(
        db,
        SYSTEM,
        user_id=doctor.user_id,
        department_id=org.department_id,
        licence_number=licence or f"LIC-{doctor.user_id[:12]}",
        title="attending",
        years_of_practice=8,
        specialty="心血管内科",
    )
    if verified:
        await verify_practitioner(db, SYSTEM, doctor.user_id)
        if online:
            await set_online(db, doctor.actor, True)
    return doctor


@dataclass(frozen=True)
class Patienthood:
    """A patient account, its own record, and the staff who recorded its diagnosis."""

    person: Person
    record_id: str
    id_number: str
    phone: str


_phones = iter(range(10**6))


def fresh_phone() -> str:
    """A valid mobile number not used before in this run."""
    return f"139{next(_phones):08d}"


async def make_patient(
    db: Database,
    org: Org,
    *,
    birth: date = date(1980, 5, 17),
    condition: str | None = "I10",
) -> Patienthood:
    """A patient account with its own record and, by default, an offline diagnosis of I10."""
    from consult.patients import record_prior_diagnosis, register_patient

    person = await make_person(db, org, Role.PATIENT)
    number, phone = fresh_id_number(birth), fresh_phone()
    view = await register_patient(db, person.actor, name="张三", id_number=number, phone=phone)
    if condition is not None:
        nurse = await make_person(db, org, Role.NURSE)
        await record_prior_diagnosis(
            db,
            nurse.actor,
            view.id,
            condition_code=condition,
            condition_name="原发性高血压",
            institution_name="北京协和医院",
            diagnosed_on=date(2023, 3, 1),
        )
    return Patienthood(person, view.id, number, phone)
