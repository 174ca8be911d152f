"""Sharing a study with a doctor of another institution: a de-identified copy (R14, R37).

The original never leaves its institution. The visit's doctor shares it; the copy is made once
per recipient (a second share returns the first copy), its UIDs remapped under a key of its
own, and the recipient (and nurses of its institution) read only the copy.

A remote diagnosis request (``consult.consultations``) shares its exams with the invited
institution as a whole (:func:`copy_for_institution`): a copy without a recipient, which the
experts invited to that request read (``access``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select

from consult.actor import Actor
from consult.authorization import authorize
from consult.errors import Conflict, InvalidInput
from consult.models import User
from consult.permissions import Role

from .access import readable_study
from .deidentify import deidentify, uid_mapper
from .errors import StudyNotLinked
from .models import ImagingInstance, ImagingStudy
from .parse import ParsedInstance, parse_file
from .store import ImagingStore


class RecipientInvalid(InvalidInput):
    """The recipient is not an active doctor of another institution."""

    code = "recipient_invalid"
    default_message = "Share with an active doctor of another institution."


class ShareOfCopy(Conflict):
    """A de-identified copy is not shared on."""

    code = "study_is_a_copy"
    default_message = "A shared copy cannot be shared again."


@dataclass(frozen=True)
class ShareResult:
    study_uid: str
    copy_study_uid: str
    institution_id: str
    recipient_id: str
    instances: int
    burned_in_flagged: int
    created: bool


def _copy_files(
    store: ImagingStore, study_id: str, instances: list[ImagingInstance], key: bytes
) -> tuple[str, list[tuple[ParsedInstance, Path, str]], int]:
    """De-identify every instance into ``incoming/`` (blocking); the copy's study UID and each
    copy with the id of the instance it was made from."""
    remap = uid_mapper(key)
    files: list[tuple[ParsedInstance, Path, str]] = []
    flagged = 0
    copy_uid = ""
    try:
        for instance in instances:
            ds = dcmread(store.path_of(study_id, instance.id))
            flagged += deidentify(ds, remap)
            target = store.new_incoming()
            ds.save_as(target, enforce_file_format=True)
            parsed = parse_file(target, max_bytes=store.max_instance_bytes)
            copy_uid = parsed.study_uid
            files.append((parsed, target, instance.id))
    except BaseException:
        for _, path, _ in files:
            path.unlink(missing_ok=True)
        raise
    return copy_uid, files, flagged


async def share_study(
    store: ImagingStore, actor: Actor, study_uid: str, recipient_id: str
) -> ShareResult:
    """Share the study (by its Study Instance UID) with ``recipient_id``, a doctor elsewhere."""
    db = store.db
    await authorize(db, actor, "imaging.share", object_type="imaging_study")
    study = await readable_study(db, actor, study_uid, "share")
    if study.deidentified:
        raise ShareOfCopy()
    if study.visit_id is None:
        raise StudyNotLinked()
    async with db.session() as session:
        recipient = await session.get(User, recipient_id)
        if (
            recipient is None
            or not recipient.is_active
            or recipient.role != Role.DOCTOR.value
            or recipient.institution_id in (None, study.institution_id)
        ):
            raise RecipientInvalid()
        existing = (
            await session.scalars(
                select(ImagingStudy).where(
                    ImagingStudy.source_study_id == study.id,
                    ImagingStudy.recipient_id == recipient_id,
                )
            )
        ).first()
        instances = list(
            (
                await session.scalars(
                    select(ImagingInstance)
                    .where(ImagingInstance.study_id == (existing or study).id)
                    .order_by(ImagingInstance.series_uid, ImagingInstance.instance_number)
                )
            ).all()
        )
    assert recipient.institution_id is not None
    if existing is not None:
        return ShareResult(
            study_uid=study.study_uid,
            copy_study_uid=existing.study_uid,
            institution_id=existing.institution_id,
            recipient_id=recipient_id,
            instances=len(instances),
            burned_in_flagged=sum(1 for i in instances if i.burned_in == "YES"),
            created=False,
        )
    key = secrets.token_bytes(32)
    copy_uid, files, flagged = await store.run(_copy_files, store, study.id, instances, key)
    await store.add_copy(study, copy_uid, recipient.institution_id, recipient_id, files, actor)
    return ShareResult(
        study_uid=study.study_uid,
        copy_study_uid=copy_uid,
        institution_id=recipient.institution_id,
        recipient_id=recipient_id,
        instances=len(files),
        burned_in_flagged=flagged,
        created=True,
    )


async def copy_for_institution(
    store: ImagingStore, actor: Actor, study_id: str, institution_id: str
) -> ImagingStudy:
    """A de-identified copy of the study (our row id) for ``institution_id``, with no named
    recipient: who reads it is decided by ``access`` (the invited experts of the request that
    shared it). The caller has checked that the study may leave; audited as ``imaging.share``."""
    db = store.db
    async with db.session() as session:
        study = await session.get(ImagingStudy, study_id)
        if study is None or study.deidentified or study.institution_id == institution_id:
            raise ShareOfCopy()
        instances = list(
            (
                await session.scalars(
                    select(ImagingInstance)
                    .where(ImagingInstance.study_id == study.id)
                    .order_by(ImagingInstance.series_uid, ImagingInstance.instance_number)
                )
            ).all()
        )
    key = secrets.token_bytes(32)
    copy_uid, files, _ = await store.run(_copy_files, store, study.id, instances, key)
    return await store.add_copy(study, copy_uid, institution_id, None, files, actor)
