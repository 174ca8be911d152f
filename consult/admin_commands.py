"""What ``teleconsult`` admin commands call: each returns printable text and an exit status.

The command line acts as :meth:`Actor.system` (it holds the server's configuration, hence the
database already); every change it makes is audited with no account id and source ``cli``.
``web/cli.py`` parses arguments, opens :class:`Database` with the configured ``field_key``,
awaits one of these, prints the text and exits with the status.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from consult.accounts import count_admins, create_user
from consult.actor import Actor
from consult.checkpoints import CheckpointRefused, write_checkpoint
from consult.db import Database
from consult.errors import ConsultError
from consult.integrity import verify_integrity
from consult.models import InstitutionLevel
from consult.organisation import create_department, create_institution
from consult.permissions import Role
from consult.practitioners import register_practitioner, verify_practitioner
from consult.trust import SM2Key, SM2PublicKey, TimestampAuthority

CommandResult = tuple[str, int]
"""(text to print, process exit status)."""


def _failed(exc: ConsultError) -> CommandResult:
    return f"error: {exc.code}: {exc.message}", 2


async def audit_verify(
    db: Database,
    checkpoint_file: Path | None = None,
    public_key: SM2PublicKey | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
) -> CommandResult:
    """``teleconsult audit verify``: 0 and a summary when the chain holds, 1 and the problems.

    With a checkpoint file and the key that signed it, the chain is checked against every
    checkpoint (a cut tail or a recomputed chain is named); the chat record is cross-checked
    with the chain either way (:func:`consult.integrity.verify_integrity`).
    """
    report = await verify_integrity(db, checkpoint_file, public_key, tsa_roots)
    return report.text(), report.exit_status


async def audit_checkpoint(
    db: Database, checkpoint_file: Path, key: SM2Key, tsa: TimestampAuthority | None = None
) -> CommandResult:
    """``teleconsult audit checkpoint``: sign the current heads into the checkpoint file now."""
    try:
        record = await write_checkpoint(db, checkpoint_file, key, tsa, force=True)
    except CheckpointRefused as exc:
        return f"error: {exc.code}: {exc}", 1
    assert record is not None
    body = record["body"]
    stamped = (
        "timestamped"
        if record.get("tst")
        else f"not timestamped ({record.get('tsa_error', 'no authority')})"
    )
    return (
        f"checkpoint {body['n']} at seq {body['audit']['seq']} digest {body['audit']['digest']}, "
        f"{len(body['recordings'])} recording head(s), signed, {stamped}: {checkpoint_file}",
        0,
    )


async def add_institution(db: Database, name: str, level: str) -> CommandResult:
    """``teleconsult institution add NAME --level tertiary|secondary|grassroots``."""
    try:
        view = await create_institution(db, Actor.system(), name, InstitutionLevel(level))
    except ValueError:
        return f"error: level must be one of {', '.join(InstitutionLevel)}", 2
    except ConsultError as exc:
        return _failed(exc)
    return f"institution {view.id} {view.level.value}", 0


async def add_department(db: Database, institution_id: str, name: str) -> CommandResult:
    """``teleconsult department add INSTITUTION_ID NAME``."""
    try:
        view = await create_department(db, Actor.system(), institution_id, name)
    except ConsultError as exc:
        return _failed(exc)
    return f"department {view.id}", 0


async def add_user(
    db: Database,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str | None,
    institution_id: str | None = None,
    department_id: str | None = None,
    operator_department_ids: Iterable[str] = (),
) -> CommandResult:
    """``teleconsult user add``: any role, including the first admin.

    Staff accounts must enrol TOTP at their first sign-in (they get an enrolment-only session).
    """
    try:
        view = await create_user(
            db,
            Actor.system(),
            username=username,
            display_name=display_name,
            role=role,
            password=password,
            institution_id=institution_id,
            department_id=department_id,
            operator_department_ids=operator_department_ids,
        )
    except ConsultError as exc:
        return _failed(exc)
    note = " (enrol TOTP at first sign-in)" if view.role is not Role.PATIENT else ""
    return f"user {view.id} {view.username} {view.role.value}{note}", 0


async def add_practitioner(
    db: Database,
    *,
    user_id: str,
    department_id: str,
    licence_number: str,
    title: str,
    years_of_practice: int,
    specialty: str,
    verified: bool = False,
) -> CommandResult:
    """``teleconsult practitioner add``: the doctor's record, optionally verified at once."""
    try:
        await register_practitioner(
            db,
            Actor.system(),
            user_id=user_id,
            department_id=department_id,
            licence_number=licence_number,
            title=title,
            years_of_practice=years_of_practice,
            specialty=specialty,
        )
        if verified:
            await verify_practitioner(db, Actor.system(), user_id)
    except ConsultError as exc:
        return _failed(exc)
    return f"practitioner {user_id} {'verified' if verified else 'pending'}", 0


async def needs_first_admin(db: Database) -> bool:
    """Whether no active admin account exists yet (the server may print a hint at start)."""
    return await count_admins(db) == 0


async def fill_imaging_layouts(db: Database, studies: Path) -> CommandResult:
    """``teleconsult imaging fill-layouts``: the pixel layout of each native instance stored
    before the rows kept it (:mod:`consult.imaging.backfill`)."""
    from consult.imaging.backfill import fill_layouts

    done = await fill_layouts(db, studies)
    text = f"filled the pixel layout of {done.filled} instance(s)"
    if done.unreadable:
        text += f"; {done.unreadable} could not be read (they are served through their header)"
    return text, 0
