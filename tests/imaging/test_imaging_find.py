"""Parsing a C-FIND identifier (R20): hostile or malformed identifiers get ``cfind_invalid``."""

from __future__ import annotations

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from consult.imaging.find import FindInvalid, parse_identifier

STUDY = "1.2.840.113619.2.1.1.1"


def _identifier(level: str | None, **keys: object) -> Dataset:
    ds = Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_matching_and_return_keys_are_told_apart() -> None:
    request = parse_identifier(
        _identifier(
            "STUDY", PatientID="P*", StudyInstanceUID="", PatientName="", StudyDescription="x"
        )
    )
    assert request.level == "STUDY" and dict(request.query.match) == {"PatientID": "P*"}
    # StudyDescription is no matching key: returned, not matched on
    assert {k.keyword for k in request.keys} == {
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "StudyDescription",
    }


def test_a_lone_star_matches_everything() -> None:
    assert parse_identifier(_identifier("STUDY", PatientID="*")).query.match == {}


@pytest.mark.parametrize(
    "identifier",
    [
        _identifier(None, PatientID="x"),
        _identifier("PATIENT", PatientID="x"),
        _identifier("SERIES", SeriesInstanceUID=""),
        _identifier("SERIES", StudyInstanceUID="1.2.*"),
        _identifier("SERIES", StudyInstanceUID=f"{STUDY}\\{STUDY}.2"),
        _identifier("IMAGE", StudyInstanceUID=STUDY),
        _identifier("STUDY", PatientID="x" * 200),
    ],
    ids=[
        "no level",
        "patient level",
        "series no study",
        "series wildcard study",
        "series two studies",
        "image no series",
        "value too long",
    ],
)
def test_bad_identifiers_are_refused_with_a_code(identifier: Dataset) -> None:
    with pytest.raises(FindInvalid) as raised:
        parse_identifier(identifier)
    assert raised.value.code == "cfind_invalid"


def test_a_malformed_element_is_refused_not_raised() -> None:
    ds = _identifier("STUDY")
    # a date element whose bytes are no date, and a sequence of garbage
    ds[Tag(0x0008, 0x0020)] = RawDataElement(
        Tag(0x0008, 0x0020), "DA", 3, b"\xff\x00\x01", 0, False, True
    )
    ds[Tag(0x0008, 0x1110)] = RawDataElement(
        Tag(0x0008, 0x1110), "SQ", 5, b"\xfe\xff\x00\xe0\x01", 0, False, True
    )
    try:
        request = parse_identifier(ds)
    except FindInvalid as exc:
        assert exc.code == "cfind_invalid"
    else:
        assert request.level == "STUDY"
