"""A sign-in account for a registered patient, made at the desk by a nurse or an operator.

A hospital registers the person and hands over a username and a first password, so that the
patient can sign in at ``/waiting`` without an administrator. Only a ``patient`` account can be
made this way (``patient.create_account``), only for a record that has none, and the new account
is linked to the record in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select

from consult import passwords
from consult.accounts import USERNAME_PATTERN, AccountView
from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import InvalidInput, PatientExists, PatientNotFound, UsernameTaken
from consult.models import Patient, User
from consult.password_policy import check_password
from consult.permissions import Role
from consult.sqltypes import new_id, utc_now


async def create_patient_account(
    db: Database, actor: Actor, patient_id: str, *, username: str, password: str
) -> AccountView:
    """Make the record's sign-in account (``patient.create_account``; audited).

    Raises :class:`InvalidInput`, :class:`WeakPassword`, :class:`UsernameTaken`,
    :class:`PatientNotFound`, and :class:`PatientExists` when the record has an account already
    or is a ward (a ward's guardian signs in for it).
    """
    await authorize(
        db, actor, "patient.create_account", object_type="patient", object_id=patient_id
    )
    if not isinstance(username, str) or not USERNAME_PATTERN.match(username):
        raise InvalidInput("Usernames are 3-64 letters, digits, '.', '_', '@' or '-'.")
    check_password(password, username=username)
    password_hash = await passwords.hash_async(password)
    async with audited(db) as tx:
        session = tx.session
        record = await session.get(Patient, patient_id, with_for_update=True)
        if record is None:
            raise PatientNotFound()
        if record.user_id is not None:
            raise PatientExists("This patient already has an account.")
        if record.guardian_id is not None:
            raise PatientExists("A ward signs in through its guardian's account.")
        if await session.scalar(select(User.id).where(User.username == username)):
            raise UsernameTaken()
        user = User(
            id=new_id(),
            username=username,
            display_name=record.name,
            role=Role.PATIENT.value,
            password_hash=password_hash,
            password_changed_at=utc_now(),
        )
        session.add(user)
        await session.flush()
        record.user_id = user.id
        await tx.record(
            "patient.create_account",
            actor=actor,
            object_type="patient",
            object_id=patient_id,
            details={"user_id": user.id},
        )
    return AccountView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role.PATIENT,
        institution_id=None,
        department_id=None,
        department_ids=frozenset(),
        is_active=True,
        locked_until=None,
        totp_enrolled=False,
        created_at=user.created_at,
    )
