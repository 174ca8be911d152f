"""The File Meta Information of a received dataset, encoded without pydicom (PS3.10 7.1).

A C-STORE brings a dataset without its file meta header; the SCP writes one in front of the
bytes it received. pydicom's ``write_file_meta_info`` builds data elements, validates and
encodes them generically: ~0.7 ms of the receiving thread's GIL time an instance, as much as
the ingest's whole transaction. The header of a received instance always holds the same seven
elements, so they are encoded here directly, byte for byte as pydicom writes them (the test
compares); anything unusual is left to pydicom.
"""

from __future__ import annotations

import struct
from typing import Final

_VERSION: Final = b"\x00\x01"
_MAX_SHORT: Final = 0xFFFF


def _short(element: int, vr: bytes, value: bytes) -> bytes:
    """An explicit VR little endian element with a 2-byte length (UL, UI, SH)."""
    if len(value) > _MAX_SHORT:
        raise ValueError("a value too long for its VR")
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _text(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b" " if len(data) % 2 else data


def encode_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """The group 0002 elements (group length first, explicit VR little endian), as
    ``pydicom.filewriter.write_file_meta_info(enforce_standard=True)`` writes pynetdicom's
    ``create_file_meta(...)``. ``ValueError`` for a value that is not ASCII or too long (the
    caller may then use pydicom, which refuses it its own way)."""
    if not all((sop_class_uid, sop_instance_uid, transfer_syntax, implementation_uid)):
        raise ValueError("a required file meta element is empty")
    body = b"".join(
        (
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, len(_VERSION)) + _VERSION,
            _short(0x0002, b"UI", _uid(sop_class_uid)),
            _short(0x0003, b"UI", _uid(sop_instance_uid)),
            _short(0x0010, b"UI", _uid(transfer_syntax)),
            _short(0x0012, b"UI", _uid(implementation_uid)),
            _short(0x0013, b"SH", _text(implementation_version)) if implementation_version else b"",
        )
    )
    return _short(0x0000, b"UL", struct.pack("<I", len(body))) + body
