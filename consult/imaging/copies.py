"""A study and its de-identified copies: which one a reader holds, and their UIDs for each other.

A study shared with another institution leaves as a copy whose UIDs are a keyed hash of the
original's (``share``, R37): no reader can go from one to the other. The server keeps the pairs
(each copy instance's ``source_instance_id``), so that a review shared in a consultation's room
(MDT: the inviter's side reads the original, the invited experts their institution's copy)
shows every participant the same series and image in its own UIDs (``signaling.review``).

A :class:`Holding` is one of them (the original or a copy) with its UIDs for the original's:
the review keeps its state in the original's UIDs and names them to each participant in the
holding that participant reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from consult.db import Database

from .errors import CopyNotMapped
from .models import ImagingInstance, ImagingStudy


@dataclass(frozen=True)
class Holding:
    """One holding of a study: the original (no translation) or a copy and its UIDs."""

    study: ImagingStudy
    original_uid: str
    """The original's Study Instance UID."""
    to_local: dict[str, str] = field(default_factory=dict)
    """Original UID (study, series, SOP instance) -> this copy's; empty for the original."""
    to_original: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.study.id

    @property
    def is_original(self) -> bool:
        return not self.study.deidentified

    def local(self, uid: str | None) -> str | None:
        """The UID this holding has for the original's ``uid`` (None for None; an unknown UID
        stays as it is only in the original)."""
        if uid is None or self.is_original:
            return uid
        return self.to_local.get(uid)

    def original(self, uid: str | None) -> str | None:
        """The original's UID for this holding's ``uid`` (None when it names nothing here)."""
        if uid is None or self.is_original:
            return uid
        return self.to_original.get(uid)


async def family(db: Database, study: ImagingStudy) -> list[ImagingStudy]:
    """The original of ``study`` (itself, or the study it was copied from) first, then every
    copy of that original, oldest first."""
    root_id = study.source_study_id or study.id
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(ImagingStudy)
                .where(or_(ImagingStudy.id == root_id, ImagingStudy.source_study_id == root_id))
                .order_by(ImagingStudy.created_at, ImagingStudy.id)
            )
        ).all()
    return sorted(rows, key=lambda s: s.id != root_id)


async def holding(db: Database, study: ImagingStudy, original: ImagingStudy) -> Holding:
    """``study`` (``original`` itself or one of its copies) with its UIDs for the original's.

    Raises :class:`CopyNotMapped` for a copy made before its instances named their originals.
    """
    if not study.deidentified:
        return Holding(study=study, original_uid=study.study_uid)
    source = aliased(ImagingInstance)
    async with db.session() as session:
        rows = (
            await session.execute(
                select(
                    ImagingInstance.series_uid,
                    ImagingInstance.sop_instance_uid,
                    ImagingInstance.source_instance_id,
                    source.series_uid,
                    source.sop_instance_uid,
                )
                .outerjoin(source, source.id == ImagingInstance.source_instance_id)
                .where(ImagingInstance.study_id == study.id)
            )
        ).all()
    to_local = {original.study_uid: study.study_uid}
    for series, instance, source_id, source_series, source_instance in rows:
        if source_id is None or source_series is None:
            raise CopyNotMapped()
        to_local[source_series] = series
        to_local[source_instance] = instance
    return Holding(
        study=study,
        original_uid=original.study_uid,
        to_local=to_local,
        to_original={v: k for k, v in to_local.items()},
    )


__all__ = ["Holding", "family", "holding"]
