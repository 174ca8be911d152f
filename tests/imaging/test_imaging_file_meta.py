"""The file meta header the SCP writes in front of a received dataset is byte for byte the one
pydicom writes for pynetdicom's file meta (R20)."""

from __future__ import annotations

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import create_file_meta

from consult.imaging.file_meta import encode_file_meta


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax", "version"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1", None),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", "1.2.840.10008.1.2", "ODD"),
        ("1.2.840.10008.5.1.4.1.1.7", "2.25." + "9" * 59, "1.2.840.10008.1.2.4.90", "EVEN"),
    ],
)
def test_the_file_meta_header_is_what_pydicom_writes(
    sop_class: str, sop_instance: str, syntax: str, version: str | None
) -> None:
    version = version or str(PYNETDICOM_IMPLEMENTATION_VERSION)
    expected = DicomBytesIO()
    meta = create_file_meta(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax=syntax,
        implementation_version=version,
    )
    write_file_meta_info(expected, meta, enforce_standard=True)
    got = encode_file_meta(
        sop_class, sop_instance, syntax, str(PYNETDICOM_IMPLEMENTATION_UID), version
    )
    assert got == expected.getvalue()


def test_what_it_cannot_encode_is_left_to_pydicom() -> None:
    with pytest.raises(ValueError):
        encode_file_meta("1.2", "", "1.2.840.10008.1.2", "1.2.3", "X")
    with pytest.raises(ValueError):
        encode_file_meta("1.2", "1.2.\u00e9", "1.2.840.10008.1.2", "1.2.3", "X")
    with pytest.raises(ValueError):
        encode_file_meta("1.2", "1" * 70_000, "1.2.840.10008.1.2", "1.2.3", "X")
