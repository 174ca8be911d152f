"""C-FIND in the Study Root information model (PS3.4 C.6.2), answered like QIDO-RS (R20, R24).

A modality or PACS whose calling AE title is bound to an institution (``dicom_peers``) asks what
that institution holds, at the study, series or image level, with the hierarchical keys: a
series query names its study, an image query its study and series. The matching keys are the
QIDO-RS ones (:data:`~.query.MATCH_KEYS`); every other key in the identifier is a return key,
answered with the stored value or empty. Each answer holds the requested keys only, so no more
of a patient's data leaves than was asked for, and every query is in the audit chain (its keys,
never their values, and the studies it returned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import select

from consult.audit import append

from .errors import DicomRejected
from .models import ImagingStudy
from .query import (
    MATCH_KEYS,
    Query,
    StudyRows,
    instance_datasets,
    series_datasets,
    study_datasets,
)
from .store import ImagingStore
from .uids import valid_uid

LEVELS: Final = ("STUDY", "SERIES", "IMAGE")
MAX_VALUE: Final = 128


class FindInvalid(DicomRejected):
    """An identifier this SCP cannot answer: a bad level, a missing hierarchical key."""

    code = "cfind_invalid"
    default_message = "The C-FIND identifier is not a valid Study Root query."


@dataclass(frozen=True)
class ReturnKey:
    tag: int
    vr: str
    keyword: str


@dataclass(frozen=True)
class FindRequest:
    """A parsed C-FIND identifier."""

    level: str
    query: Query
    study_uid: str | None
    series_uid: str | None
    keys: tuple[ReturnKey, ...]


def _text(value: object) -> str:
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _single_uid(match: dict[str, str], keyword: str, level: str) -> str:
    uid = match.get(keyword, "")
    if not valid_uid(uid):
        raise FindInvalid(f"A {level} query names one {keyword}.")
    return uid


def parse_identifier(identifier: Dataset) -> FindRequest:
    """Read the identifier (blocking: pydicom decodes values as they are read)."""
    try:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in LEVELS:
            raise FindInvalid("QueryRetrieveLevel must be STUDY, SERIES or IMAGE.")
        match: dict[str, str] = {}
        keys: list[ReturnKey] = []
        for element in identifier:
            keyword = element.keyword
            if not keyword or keyword == "QueryRetrieveLevel" or element.tag.is_private:
                continue
            keys.append(ReturnKey(int(element.tag), element.VR, keyword))
            if keyword not in MATCH_KEYS or element.VR == "SQ" or element.value in (None, ""):
                continue
            text = _text(element.value).strip()
            if len(text) > MAX_VALUE:
                raise FindInvalid("A matching key's value is too long.")
            if text and text != "*":  # '*' alone matches everything, as an empty value does
                match[keyword] = text
    except DicomRejected:
        raise
    except Exception as exc:  # a malformed identifier: pydicom raises many kinds
        raise FindInvalid() from exc
    study_uid = _single_uid(match, "StudyInstanceUID", level) if level != "STUDY" else None
    series_uid = _single_uid(match, "SeriesInstanceUID", level) if level == "IMAGE" else None
    return FindRequest(level, Query(match=match), study_uid, series_uid, tuple(keys))


def _reply(found: Dataset, request: FindRequest) -> Dataset:
    out = Dataset()
    out.QueryRetrieveLevel = request.level
    for key in request.keys:
        element = found.data_element(key.keyword) if key.keyword in found else None
        out.add(element if element is not None else DataElement(key.tag, key.vr, None))
    return out


async def find(
    store: ImagingStore, institution_id: str, calling_ae: str, identifier: Dataset
) -> list[Dataset]:
    """The answers to one C-FIND from ``calling_ae`` over ``institution_id``'s studies."""
    request = await store.run(parse_identifier, identifier)
    async with store.db.session() as session:
        select_studies = select(ImagingStudy).where(ImagingStudy.institution_id == institution_id)
        if request.study_uid is not None:
            select_studies = select_studies.where(ImagingStudy.study_uid == request.study_uid)
        studies = (await session.scalars(select_studies.order_by(ImagingStudy.created_at))).all()
    rows = [await store.rows(study) for study in studies]
    answers = await store.run(_answer, rows, request, store)
    matched = [study.id for study in studies if study.study_uid in {uid for uid, _ in answers}]
    await append(
        store.db,
        "imaging.retrieve",
        actor=None,
        actor_role="modality",
        source_ip=calling_ae,
        object_type="institution",
        object_id=institution_id,
        details={
            "what": "cfind",
            "level": request.level,
            "keys": sorted(request.query.match),
            "studies": matched,
            "answers": len(answers),
        },
    )
    return [ds for _, ds in answers]


def _answer(
    rows: Sequence[StudyRows], request: FindRequest, store: ImagingStore
) -> list[tuple[str, Dataset]]:
    """(study UID, reply) for each match (blocking: reads the stored headers)."""
    if request.level == "STUDY":
        found = study_datasets(rows, request.query, store.header)
    elif not rows:
        found = []
    elif request.level == "SERIES":
        found = series_datasets(rows[0], request.query, store.header)
    else:
        found = instance_datasets(rows[0], request.query, request.series_uid)
    return [(str(ds.StudyInstanceUID), _reply(ds, request)) for ds in found]
