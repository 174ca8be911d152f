"""Patients (R36, R37): records with SM4-encrypted ID number and phone, found by blind index.

Who may see a record: the patient's own account, the account of its guardian (for a child's
record, once staff have verified the relation), a doctor who has a visit with the patient,
nurses and operators. Admin, auditor and
regulator never (R34). Every view and every lookup is an audit event (R24); refusals too.
ID numbers and phones never reach logs or audit details.

Identity registration (issue 13 item 3): a patient who registers a number already on file, for
themselves or a ward, gets the same answer as for a new number (a record of their own, made in
the same steps); that record is *provisional* (no blind index) and an identity dispute goes to
staff (``consult.identity``), so existence is never disclosed to a patient. A ward a patient
registers is linked to them pending staff verification of the relation; staff registering a
ward verify it as they do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.crypto import FieldCipher
from consult.db import Database
from consult.errors import (
    IdentityDisputed,
    InvalidInput,
    PatientExists,
    PatientNotFound,
    PermissionDenied,
    UserNotFound,
)
from consult.identifiers import (
    age_on,
    birth_date_of,
    mask_id_number,
    mask_phone,
    normalize_id_number,
    normalize_phone,
)
from consult.models import (
    DiagnosisSource,
    DisputeState,
    IdentityDispute,
    Patient,
    PriorDiagnosis,
    User,
    Visit,
)
from consult.permissions import Role
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

ID_NUMBER_CONTEXT: Final = "patients.id_number"
PHONE_CONTEXT: Final = "patients.phone"
ICD10_PATTERN: Final = re.compile(r"^[A-Z]\d{2}(\.\d{1,4})?$")
RELATIONS: Final = frozenset({"parent", "grandparent", "spouse", "child", "sibling", "other"})


@dataclass(frozen=True)
class PatientView:
    """A decrypted patient record, for someone allowed to see it."""

    id: str
    user_id: str | None
    name: str
    id_number: str
    phone: str | None
    birth_date: date
    guardian_id: str | None
    guardian_relation: str | None
    guardian_verified: bool = False
    """Whether staff verified the guardian relation (only then the guardian acts for it)."""

    def age(self, on: date | None = None) -> int:
        """Age in whole years (today by default)."""
        return age_on(self.birth_date, on or date.today())

    @property
    def masked_id_number(self) -> str:
        """The ID number with its birth date hidden, for lists and screens (R37)."""
        return mask_id_number(self.id_number)

    @property
    def masked_phone(self) -> str | None:
        """The phone with its middle digits hidden."""
        return mask_phone(self.phone) if self.phone else None


@dataclass(frozen=True)
class DiagnosisView:
    """A prior diagnosis (R2)."""

    id: str
    patient_id: str
    condition_code: str
    condition_name: str
    institution_name: str
    diagnosed_on: date
    source: DiagnosisSource


def decrypt(cipher: FieldCipher, row: Patient) -> PatientView:
    """The readable form of a record (callers have checked access and audit the view)."""
    return PatientView(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        id_number=cipher.decrypt(row.id_number_enc, ID_NUMBER_CONTEXT),
        phone=cipher.decrypt(row.phone_enc, PHONE_CONTEXT) if row.phone_enc else None,
        birth_date=row.birth_date,
        guardian_id=row.guardian_id,
        guardian_relation=row.guardian_relation,
        guardian_verified=row.guardian_verified_at is not None,
    )


async def verified_guardian(session: AsyncSession, patient: Patient) -> Patient | None:
    """The guardian's record, once staff have verified the relation; else ``None``."""
    if patient.guardian_id is None or patient.guardian_verified_at is None:
        return None
    return await session.get(Patient, patient.guardian_id)


async def pending_guardian_of(session: AsyncSession, actor: Actor, patient: Patient) -> bool:
    """Whether ``actor`` registered as this record's guardian and awaits staff verification."""
    if actor.user_id is None or patient.guardian_id is None or patient.guardian_verified_at:
        return False
    guardian = await session.get(Patient, patient.guardian_id)
    return guardian is not None and guardian.user_id == actor.user_id


async def acts_for(session: AsyncSession, actor: Actor, patient: Patient) -> bool:
    """Whether a patient account speaks for this record: its own, or a ward's as its verified
    guardian."""
    if actor.role is not Role.PATIENT or actor.user_id is None:
        return False
    if patient.user_id == actor.user_id:
        return True
    guardian = await verified_guardian(session, patient)
    return guardian is not None and guardian.user_id == actor.user_id


async def may_view(session: AsyncSession, actor: Actor, patient: Patient) -> bool:
    """The access rule for a patient record (see the module docstring)."""
    if actor.role is Role.PATIENT:
        return await acts_for(session, actor, patient)
    if actor.role is Role.DOCTOR:
        has_visit = await session.scalar(
            select(
                exists().where(
                    Visit.doctor_id == actor.user_id, Visit.patient_record_id == patient.id
                )
            )
        )
        return bool(has_visit)
    return actor.role in {Role.NURSE, Role.OPERATOR}


async def load_visible(tx: AuditTx, actor: Actor, patient_id: str, action: str) -> Patient:
    """The record, or :class:`PatientNotFound` / an audited :class:`PermissionDenied`."""
    row = await tx.session.get(Patient, patient_id)
    if row is None:
        raise PatientNotFound()
    if not await may_view(tx.session, actor, row):
        raise tx.refuse(
            PermissionDenied("Not your patient."),
            actor=actor,
            action=action,
            object_type="patient",
            object_id=patient_id,
        )
    return row


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInput("The name must be 1-128 characters.")
    return name


async def register_patient(
    db: Database,
    actor: Actor,
    *,
    name: str,
    id_number: str,
    phone: str | None = None,
    birth_date: date | None = None,
    guardian_id: str | None = None,
    guardian_relation: str | None = None,
    user_id: str | None = None,
) -> PatientView:
    """Register a person (``patient.register``).

    A patient account registers itself (no ``guardian_id``; the record becomes its own), or a
    ward (``guardian_id`` = its own record; the ward has no account). Nurses and operators
    register anyone, optionally linking a patient account with ``user_id``. ``birth_date``, if
    given, must match the ID number. Raises :class:`InvalidIdNumber`, :class:`InvalidPhone`,
    :class:`InvalidInput`, :class:`PatientExists`, :class:`PatientNotFound` (guardian).

    A number already on file: :class:`PatientExists` for staff; for a patient, the same answer
    as for a new number, on a provisional record with an identity dispute for staff (see the
    module docstring). :class:`PatientExists` for a patient means only that their account has
    its own record already.
    """
    await authorize(db, actor, "patient.register", object_type="patient")
    name = _clean_name(name)
    id_number = normalize_id_number(id_number)
    phone = normalize_phone(phone) if phone else None
    embedded = birth_date_of(id_number)
    if birth_date is not None and birth_date != embedded:
        raise InvalidInput("The birth date does not match the ID number.")
    if guardian_relation is not None and guardian_relation not in RELATIONS:
        raise InvalidInput("Unknown guardian relation.")
    if (guardian_relation is None) != (guardian_id is None):
        raise InvalidInput("A guardian needs a relation, and a relation needs a guardian.")
    cipher = db.cipher
    by_patient = actor.role is Role.PATIENT
    if by_patient:
        if user_id is not None and user_id != actor.user_id:
            raise InvalidInput("Patients register themselves or their wards.")
        user_id = None if guardian_id is not None else actor.user_id
    now = utc_now()

    def new_row() -> Patient:
        return Patient(
            id=new_id(),
            user_id=user_id,
            name=name,
            id_number_enc=cipher.encrypt(id_number, ID_NUMBER_CONTEXT),
            id_number_index=cipher.blind_index(id_number, ID_NUMBER_CONTEXT),
            phone_enc=cipher.encrypt(phone, PHONE_CONTEXT) if phone else None,
            phone_index=cipher.blind_index(phone, PHONE_CONTEXT) if phone else None,
            birth_date=embedded,
            guardian_id=guardian_id,
            guardian_relation=guardian_relation,
            # staff register a ward with the family at the desk: that is the verification; a
            # patient's own registration of a ward waits for it
            guardian_verified_at=None if guardian_id is None or by_patient else now,
            guardian_verified_by=None if guardian_id is None or by_patient else actor.user_id,
            created_by=actor.user_id,
            created_at=now,
        )

    try:
        return await _register(db, actor, new_row(), guardian_id, user_id)
    except IntegrityError:  # a concurrent registration of the same person won the race
        if not by_patient:
            raise PatientExists() from None
    # the race lost by a patient ends as a dispute too: never a different answer
    return await _register(db, actor, new_row(), guardian_id, user_id)


async def _register(
    db: Database, actor: Actor, row: Patient, guardian_id: str | None, user_id: str | None
) -> PatientView:
    """The transaction of :func:`register_patient` (IntegrityError: a concurrent duplicate)."""
    index = row.id_number_index
    async with audited(db) as tx:
        session = tx.session
        if guardian_id is not None:
            guardian = await session.get(Patient, guardian_id)
            if guardian is None:
                raise PatientNotFound("The guardian is not registered.")
            if actor.role is Role.PATIENT and guardian.user_id != actor.user_id:
                raise tx.refuse(
                    PermissionDenied("You can register only your own wards."),
                    actor=actor,
                    action="patient.register",
                    object_type="patient",
                    object_id=guardian_id,
                )
        if user_id is not None:
            account = await session.get(User, user_id)
            if account is None or account.role != Role.PATIENT.value:
                raise UserNotFound("No patient account has this id.")
            if await session.scalar(select(Patient.id).where(Patient.user_id == user_id)):
                raise PatientExists("This account already has a patient record.")
        existing = await session.scalar(select(Patient.id).where(Patient.id_number_index == index))
        if existing is not None and actor.role is not Role.PATIENT:
            raise PatientExists()  # staff may know: they resolve disputes
        if existing is not None:
            row.id_number_index = None  # provisional: the dispute holds the claim
        session.add(row)
        await session.flush()
        await tx.record(
            "patient.register",
            actor=actor,
            object_type="patient",
            object_id=row.id,
            details={"ward": guardian_id is not None, "own": row.user_id == actor.user_id},
        )
        if existing is not None:
            dispute = IdentityDispute(
                id=new_id(),
                claim_patient_id=row.id,
                existing_patient_id=existing,
                claimant_user_id=actor.user_id,
                as_ward=guardian_id is not None,
                state=DisputeState.OPEN.value,
                created_at=row.created_at,
            )
            session.add(dispute)
            await tx.record(
                "identity.dispute_opened",
                actor=actor,
                object_type="identity_dispute",
                object_id=dispute.id,
                details={"claim": row.id, "existing": existing, "ward": dispute.as_ward},
            )
    return decrypt(db.cipher, row)


async def get_patient(db: Database, actor: Actor, patient_id: str) -> PatientView:
    """A decrypted record for someone allowed to see it (``patient.view``; audited)."""
    await authorize(db, actor, "patient.view", object_type="patient", object_id=patient_id)
    async with audited(db) as tx:
        row = await load_visible(tx, actor, patient_id, "patient.view")
        await tx.record("patient.view", actor=actor, object_type="patient", object_id=row.id)
    return decrypt(db.cipher, row)


async def find_patient_by_id_number(
    db: Database, actor: Actor, id_number: str
) -> PatientView | None:
    """Look a person up by ID number through the blind index (``patient.find``; audited).

    Raises :class:`InvalidIdNumber` for a malformed number; ``None`` when nobody matches.
    """
    await authorize(db, actor, "patient.find", object_type="patient")
    index = db.cipher.blind_index(normalize_id_number(id_number), ID_NUMBER_CONTEXT)
    async with audited(db) as tx:
        row = await tx.session.scalar(select(Patient).where(Patient.id_number_index == index))
        await tx.record(
            "patient.find",
            actor=actor,
            object_type="patient",
            object_id=row.id if row else None,
            details={"found": row is not None},
        )
    return decrypt(db.cipher, row) if row is not None else None


async def my_patients(db: Database, actor: Actor) -> list[PatientView]:
    """The records a patient account acts for: its own and its wards' (``patient.view``)."""
    await authorize(db, actor, "patient.view", object_type="patient")
    if actor.role is not Role.PATIENT:
        return []
    async with audited(db) as tx:
        own = await tx.session.scalar(select(Patient).where(Patient.user_id == actor.user_id))
        rows = [own] if own is not None else []
        if own is not None:
            rows += (
                await tx.session.scalars(
                    select(Patient).where(Patient.guardian_id == own.id).order_by(Patient.name)
                )
            ).all()
        for row in rows:
            await tx.record("patient.view", actor=actor, object_type="patient", object_id=row.id)
    return [decrypt(db.cipher, row) for row in rows]


async def record_prior_diagnosis(
    db: Database,
    actor: Actor,
    patient_id: str,
    *,
    condition_code: str,
    condition_name: str,
    institution_name: str,
    diagnosed_on: date,
    source: DiagnosisSource | str = DiagnosisSource.OFFLINE,
) -> DiagnosisView:
    """Record a diagnosis the patient holds (``patient.record_diagnosis``; R2).

    ``condition_code`` is ICD-10 (``I10``, ``E11.9``); a follow-up visit matches on its
    three-character category. Only ``offline`` diagnoses (a physical institution) open one.
    """
    await authorize(
        db, actor, "patient.record_diagnosis", object_type="patient", object_id=patient_id
    )
    code = (condition_code or "").strip().upper()
    if not ICD10_PATTERN.match(code):
        raise InvalidInput("The condition code must be ICD-10, like I10 or E11.9.")
    try:
        source = DiagnosisSource(source)
    except ValueError:
        raise InvalidInput("Unknown diagnosis source.") from None
    if diagnosed_on > date.today():
        raise InvalidInput("The diagnosis date is in the future.")
    condition_name = (condition_name or "").strip()
    institution_name = (institution_name or "").strip()
    if not (1 <= len(condition_name) <= 200 and 1 <= len(institution_name) <= 200):
        raise InvalidInput("The condition and institution names must be 1-200 characters.")
    async with audited(db) as tx:
        record = await load_visible(tx, actor, patient_id, "patient.record_diagnosis")
        if record.id_number_index is None:  # provisional: staff resolve the dispute first
            raise tx.refuse(
                IdentityDisputed(),
                actor=actor,
                action="patient.record_diagnosis",
                object_type="patient",
                object_id=patient_id,
            )
        row = PriorDiagnosis(
            id=new_id(),
            patient_id=patient_id,
            condition_code=code,
            condition_name=condition_name,
            institution_name=institution_name,
            diagnosed_on=diagnosed_on,
            source=source.value,
            recorded_by=actor.user_id,
            created_at=utc_now(),
        )
        tx.session.add(row)
        await tx.record(
            "patient.record_diagnosis",
            actor=actor,
            object_type="patient",
            object_id=patient_id,
            details={"diagnosis_id": row.id, "condition": code, "source": source.value},
        )
    return _diagnosis_view(row)


def _diagnosis_view(row: PriorDiagnosis) -> DiagnosisView:
    return DiagnosisView(
        id=row.id,
        patient_id=row.patient_id,
        condition_code=row.condition_code,
        condition_name=row.condition_name,
        institution_name=row.institution_name,
        diagnosed_on=row.diagnosed_on,
        source=DiagnosisSource(row.source),
    )


async def list_diagnoses(db: Database, actor: Actor, patient_id: str) -> list[DiagnosisView]:
    """A patient's prior diagnoses, newest first (``patient.view_diagnoses``; audited)."""
    await authorize(
        db, actor, "patient.view_diagnoses", object_type="patient", object_id=patient_id
    )
    async with audited(db) as tx:
        await load_visible(tx, actor, patient_id, "patient.view_diagnoses")
        rows = (
            await tx.session.scalars(
                select(PriorDiagnosis)
                .where(PriorDiagnosis.patient_id == patient_id)
                .order_by(PriorDiagnosis.diagnosed_on.desc())
            )
        ).all()
        await tx.record(
            "patient.view_diagnoses", actor=actor, object_type="patient", object_id=patient_id
        )
    return [_diagnosis_view(row) for row in rows]
