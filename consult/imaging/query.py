"""QIDO-RS matching and the DICOM JSON model (PS3.18 F.2) for the subset viewers use.

Matching keys: the UIDs, ``Modality``/``ModalitiesInStudy``, ``PatientID``, ``AccessionNumber``,
``StudyDate`` (a date or a ``from-to`` range), by keyword or tag (``0020000D``); ``limit`` and
``offset``; ``includefield`` and ``fuzzymatching`` are accepted (every attribute the level has
is always returned). Values that identify the patient are read from the stored files, not kept
in the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from .errors import DicomRejected
from .models import ImagingInstance, ImagingStudy

STUDY_ATTRIBUTES: Final = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDescription",
)
SERIES_ATTRIBUTES: Final = ("Modality", "SeriesDescription", "SeriesNumber", "SeriesDate")
INSTANCE_ATTRIBUTES: Final = ("InstanceNumber", "Rows", "Columns", "NumberOfFrames")

CONTROL_KEYS: Final = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
MATCH_KEYS: Final = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "Modality",
        "ModalitiesInStudy",
        "PatientID",
        "AccessionNumber",
        "StudyDate",
        "PatientName",
    }
)
HEADER_MATCH_KEYS: Final = ("PatientID", "PatientName", "AccessionNumber", "StudyDate")
"""Study-level keys matched against the stored file's header (not kept in the database)."""
MAX_LIMIT: Final = 1000


class QueryInvalid(DicomRejected):
    """A QIDO-RS parameter this server does not match on, or a malformed value."""

    code = "qido_invalid"
    default_message = "A query parameter is not supported or malformed."


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS query."""

    match: Mapping[str, str]
    limit: int = MAX_LIMIT
    offset: int = 0


def parse_query(params: Sequence[tuple[str, str]]) -> Query:
    """From the URL's parameters; an unknown key or a bad number is :class:`QueryInvalid`."""
    match: dict[str, str] = {}
    limit, offset = MAX_LIMIT, 0
    for key, value in params:
        if key in CONTROL_KEYS:
            if key in ("limit", "offset"):
                if not value.isdigit() or len(value) > 9:
                    raise QueryInvalid(f"{key} must be a non-negative number.")
                if key == "limit":
                    limit = max(1, min(int(value), MAX_LIMIT))
                else:
                    offset = int(value)
            continue
        name = _keyword(key)
        if name is None or name not in MATCH_KEYS:
            raise QueryInvalid("A query parameter is not supported.")
        if len(value) > 128:
            raise QueryInvalid("A query value is too long.")
        match[name] = value
    return Query(match=match, limit=limit, offset=offset)


def _keyword(key: str) -> str | None:
    if len(key) == 8:
        try:
            return keyword_for_tag(int(key, 16)) or None
        except ValueError:
            pass
    return key if tag_for_keyword(key) is not None else None


def _matches(value: str, wanted: str, *, date: bool = False) -> bool:
    if date and "-" in wanted:
        low, _, high = wanted.partition("-")
        return bool(value) and (not low or value >= low) and (not high or value <= high)
    if "*" in wanted or "?" in wanted:
        import fnmatch

        return fnmatch.fnmatchcase(value, wanted)
    return any(value == w for w in wanted.split("\\"))


def read_header(path: Path) -> Dataset:
    """The stored file without its pixel data (blocking)."""
    return dcmread(path, stop_before_pixels=True)


def _element(ds: Dataset, keyword: str) -> DataElement | None:
    return ds.data_element(keyword) if keyword in ds else None


def _attrs(target: Dataset, source: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        element = _element(source, keyword)
        if element is not None:
            target.add(element)


@dataclass(frozen=True)
class StudyRows:
    """A study with its instances, in series and instance order."""

    study: ImagingStudy
    instances: list[ImagingInstance]


def study_answers(
    studies: Sequence[StudyRows],
    query: Query,
    header_of: Callable[[ImagingStudy, ImagingInstance], Dataset],
) -> list[dict[str, Any]]:
    """QIDO-RS ``/studies``: one DICOM JSON object per matching study (blocking: reads files)."""
    return [ds.to_json_dict() for ds in study_datasets(studies, query, header_of)]


def study_datasets(
    studies: Sequence[StudyRows],
    query: Query,
    header_of: Callable[[ImagingStudy, ImagingInstance], Dataset],
) -> list[Dataset]:
    """The matching studies, one dataset each (QIDO-RS and C-FIND; blocking: reads files)."""
    found = []
    for rows in studies:
        if not rows.instances:
            continue
        first = rows.instances[0]
        header = header_of(rows.study, first)
        modalities = sorted({i.modality for i in rows.instances})
        wanted_modality = query.match.get("ModalitiesInStudy") or query.match.get("Modality")
        if wanted_modality and not any(_matches(m, wanted_modality) for m in modalities):
            continue
        if not _match_header(header, query, HEADER_MATCH_KEYS):
            continue
        if "StudyInstanceUID" in query.match and not _matches(
            rows.study.study_uid, query.match["StudyInstanceUID"]
        ):
            continue
        if "SeriesInstanceUID" in query.match and not any(
            _matches(i.series_uid, query.match["SeriesInstanceUID"]) for i in rows.instances
        ):
            continue
        ds = Dataset()
        _attrs(ds, header, STUDY_ATTRIBUTES)
        ds.StudyInstanceUID = rows.study.study_uid
        ds.ModalitiesInStudy = modalities
        ds.NumberOfStudyRelatedSeries = len({i.series_uid for i in rows.instances})
        ds.NumberOfStudyRelatedInstances = len(rows.instances)
        found.append(ds)
    return found[query.offset : query.offset + query.limit]


def _match_header(header: Dataset, query: Query, keywords: Sequence[str]) -> bool:
    for keyword in keywords:
        if keyword in query.match:
            value = str(header.get(keyword, "") or "")
            if not _matches(value, query.match[keyword], date=keyword == "StudyDate"):
                return False
    return True


def series_answers(
    rows: StudyRows,
    query: Query,
    header_of: Callable[[ImagingStudy, ImagingInstance], Dataset],
) -> list[dict[str, Any]]:
    """QIDO-RS ``/studies/{study}/series``."""
    return [ds.to_json_dict() for ds in series_datasets(rows, query, header_of)]


def series_datasets(
    rows: StudyRows,
    query: Query,
    header_of: Callable[[ImagingStudy, ImagingInstance], Dataset],
) -> list[Dataset]:
    """A study's matching series, one dataset each (blocking: reads files)."""
    by_series: dict[str, list[ImagingInstance]] = defaultdict(list)
    for instance in rows.instances:
        by_series[instance.series_uid].append(instance)
    found = []
    for series_uid, instances in by_series.items():
        first = instances[0]
        if "SeriesInstanceUID" in query.match and not _matches(
            series_uid, query.match["SeriesInstanceUID"]
        ):
            continue
        if "Modality" in query.match and not _matches(first.modality, query.match["Modality"]):
            continue
        header = header_of(rows.study, first)
        ds = Dataset()
        _attrs(ds, header, SERIES_ATTRIBUTES)
        ds.StudyInstanceUID = rows.study.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = first.modality
        ds.NumberOfSeriesRelatedInstances = len(instances)
        found.append(ds)
    return found[query.offset : query.offset + query.limit]


def instance_answers(rows: StudyRows, query: Query, series_uid: str | None) -> list[dict[str, Any]]:
    """QIDO-RS ``/studies/{study}[/series/{series}]/instances`` (from the rows alone)."""
    return [ds.to_json_dict() for ds in instance_datasets(rows, query, series_uid)]


def instance_datasets(rows: StudyRows, query: Query, series_uid: str | None) -> list[Dataset]:
    """A study's (or a series') matching instances, one dataset each (from the rows alone)."""
    found = []
    for instance in rows.instances:
        if series_uid is not None and instance.series_uid != series_uid:
            continue
        if "SeriesInstanceUID" in query.match and not _matches(
            instance.series_uid, query.match["SeriesInstanceUID"]
        ):
            continue
        if "SOPInstanceUID" in query.match and not _matches(
            instance.sop_instance_uid, query.match["SOPInstanceUID"]
        ):
            continue
        if "SOPClassUID" in query.match and not _matches(
            instance.sop_class_uid, query.match["SOPClassUID"]
        ):
            continue
        ds = Dataset()
        ds.StudyInstanceUID = rows.study.study_uid
        ds.SeriesInstanceUID = instance.series_uid
        ds.SOPInstanceUID = instance.sop_instance_uid
        ds.SOPClassUID = instance.sop_class_uid
        ds.Modality = instance.modality
        if instance.instance_number is not None:
            ds.InstanceNumber = instance.instance_number
        if instance.rows is not None:
            ds.Rows, ds.Columns = instance.rows, instance.columns
        if instance.frames:
            ds.NumberOfFrames = instance.frames
        found.append(ds)
    return found[query.offset : query.offset + query.limit]


BULK_THRESHOLD: Final = 1024


def metadata_json(path: Path, bulk_uri: Callable[[int], str]) -> dict[str, Any]:
    """WADO-RS metadata of one stored instance: DICOM JSON with BulkDataURIs (blocking).

    Values over :data:`BULK_THRESHOLD` bytes (pixel data, waveform data, large OB/OW) become
    ``BulkDataURI``s, so the answer stays small; a viewer fetches frames separately.
    """
    ds = dcmread(path)

    def handler(element: DataElement) -> str:
        return bulk_uri(int(element.tag))

    result: dict[str, Any] = ds.to_json_dict(
        bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=handler
    )
    # The transfer syntax lives in the file meta; viewers want it with the dataset.
    if "TransferSyntaxUID" in ds.file_meta:
        result["00020010"] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
    return result
