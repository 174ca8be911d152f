"""The ingest parser: bytes of a DICOM Part 10 file in, a checked instance or a refusal out.

Everything a sender controls is suspect: lengths may be wrong, truncated or huge, values may
look like paths. The parser reads the whole dataset eagerly (every element, every nested
sequence) inside one guard, so that a malformed file is refused here with a stable code and
never fails later in a query or a viewer. No value read here is ever used to build a path.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Final

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from .errors import DicomInvalidUid as InvalidUid
from .errors import (
    DicomMalformed,
    DicomMissingAttribute,
    DicomPixelDataInvalid,
    DicomRejected,
    DicomTooLarge,
    DicomUnsupportedSyntax,
)
from .layout import describe
from .uids import (
    ACCEPTED_SYNTAXES,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_SYNTAXES,
    valid_uid,
)

__all__ = ["ACCEPTED_SYNTAXES", "NATIVE_SYNTAXES", "ParsedInstance", "parse_bytes", "valid_uid"]

# Keep pydicom's own checks lenient while reading: the parser decides what to refuse, with its
# own codes, instead of letting a warning turn into an exception deep inside a query.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

UNDEFINED_LENGTH: Final = 0xFFFFFFFF
BINARY_VRS: Final = frozenset({"OB", "OW", "OD", "OF", "OL", "OV"})
TEXT_VRS: Final = frozenset(
    {"AE", "AS", "CS", "UI", "UR", "LO", "SH", "UC", "LT", "ST", "UT"}
    | ({"DA", "DT", "TM"} if not pydicom_config.datetime_conversion else set())
)
"""VRs whose conversion cannot fail while reading is not ``RAISE``: their bytes are decoded
as Latin-1, or in the dataset's character sets with Latin-1 and replacement characters to
fall back on (pydicom's ``decode_bytes``); DA, DT and TM stay text unless pydicom is told to
convert dates. ``tests/imaging/test_imaging_malformed.py`` holds pydicom to that with any
bytes in any character set. Person names (PN) and numbers (IS: ``1e400``) can fail."""
NUMBER_SIZES: Final = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
"""Fixed-size binary numbers: their conversion (``struct.unpack``) fails exactly when the length
is not a multiple of the size (pydicom's ``BytesLengthException``), so the length is checked
instead (``tests/imaging/test_imaging_malformed.py`` holds pydicom to that)."""
DECIMAL_FORMS: Final = {
    # a decimal or integer string as the standard writes it (PS3.5 6.2: at most 16 or 12
    # characters, space padded), the exponent at most two digits so that the value is finite
    "DS": (re.compile(rb" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})? *"), 16),
    "IS": (re.compile(rb" *[+-]?[0-9]{1,12} *"), 12),
}
"""Number strings whose every value has these forms (and at most that many characters)
convert (``tests/imaging/test_imaging_malformed.py`` holds pydicom to that), so they are not
converted here; anything else (empty values in a list, NUL padding, ``1e400``, ...) is
converted, and refused if that fails."""
MAX_FRAMES: Final = 10_000
MAX_DIMENSION: Final = 65_535


@dataclass(frozen=True)
class ParsedInstance:
    """A dataset the store accepts, with what its rows need (``dataset`` None when parsed in a
    worker process: :func:`parse_file_summary`)."""

    dataset: Dataset | None
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    series_number: int | None
    instance_number: int | None
    frames: int
    rows: int | None
    columns: int | None
    burned_in: str
    accession_number: str
    patient_id: str
    pixel_layout: str | None = None
    """Where the frames are in the stored bytes and how a grey one renders (:mod:`.layout`)."""


def parse_file(path: Path, *, max_bytes: int) -> ParsedInstance:
    """Parse and check the Part 10 file at ``path`` (see :func:`parse_stream`)."""
    if path.stat().st_size > max_bytes:
        raise DicomTooLarge()
    with path.open("rb") as f:
        return parse_stream(f)


def parse_file_summary(path: Path, max_bytes: int) -> ParsedInstance:
    """:func:`parse_file` without the dataset: what a worker process sends back (a path in,
    a few UIDs and numbers out; see :mod:`.workers`)."""
    return replace(parse_file(path, max_bytes=max_bytes), dataset=None)


def parse_bytes(data: bytes, *, max_bytes: int = 1 << 30) -> ParsedInstance:
    """Parse and check a Part 10 file held in memory."""
    if len(data) > max_bytes:
        raise DicomTooLarge()
    return parse_stream(BytesIO(data))


def parse_parts(*parts: bytes | memoryview, max_bytes: int = 1 << 30) -> ParsedInstance:
    """Parse and check a Part 10 file held in memory in pieces (a header and the received
    dataset), without joining them into one copy."""
    joined = _Joined(parts)
    if joined.size > max_bytes:
        raise DicomTooLarge()
    return parse_stream(io.BufferedReader(joined, 1 << 16))


class _Joined(io.RawIOBase):
    """A read-only, seekable stream over byte buffers one after the other."""

    name = "<received>"  # pydicom names the dataset after its stream

    def __init__(self, parts: tuple[bytes | memoryview, ...]) -> None:
        super().__init__()
        self._parts = [memoryview(part).cast("B") for part in parts]
        self._starts: list[int] = []
        total = 0
        for part in self._parts:
            self._starts.append(total)
            total += len(part)
        self.size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _views(self, size: int | None) -> list[memoryview]:
        """Views of the next ``size`` bytes (all that is left: None or negative), one a part
        they cross; the position moves past them."""
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        views = []
        for start, part in zip(self._starts, self._parts, strict=True):
            if self._pos >= end:
                break
            stop = start + len(part)
            if self._pos < stop:
                views.append(part[self._pos - start : end - start])
                self._pos = min(stop, end)
        return views

    def read(self, size: int | None = -1) -> bytes:
        views = self._views(size)
        return views[0].tobytes() if len(views) == 1 else b"".join(views)

    def readinto(self, buffer: Any) -> int:
        # copied straight from the received buffers (a BufferedReader reads a value larger
        # than its buffer, the pixel data, into the bytes it returns: one copy, not two)
        target = memoryview(buffer).cast("B")
        done = 0
        for view in self._views(len(target)):
            target[done : done + len(view)] = view
            done += len(view)
        return done


def parse_stream(f: BinaryIO) -> ParsedInstance:
    """Read the whole dataset and check it; :class:`DicomRejected` (a stable code) if refused."""
    try:
        ds = dcmread(f, force=False)
        # the pixel data's position in the bytes read (those stored): before _touch converts
        # the element (an implicit VR one), which forgets it
        raw = ds.get_item(0x7FE00010)
        pixel_offset = raw.value_tell if isinstance(raw, RawDataElement) else None
        _touch(ds)
    except DicomRejected:
        raise
    except InvalidDicomError:
        raise DicomMalformed("The data is not a DICOM Part 10 file.") from None
    except RecursionError:
        raise DicomMalformed("The dataset nests too deeply.") from None
    except (MemoryError, OverflowError):
        raise DicomTooLarge() from None
    except Exception:  # pydicom raises many types for broken data: all mean "malformed"
        raise DicomMalformed() from None
    try:
        return _check(ds, pixel_offset)
    except DicomRejected:
        raise
    except Exception:
        raise DicomMalformed() from None


def _touch(ds: Dataset, depth: int = 0) -> None:
    """Convert every element now (pydicom converts raw elements lazily, on first access)."""
    if depth > 16:
        raise DicomMalformed("The dataset nests too deeply.")
    for raw in ds.elements():  # before conversion: pydicom reads a short value without error
        if isinstance(raw, RawDataElement):
            if (
                raw.value is not None
                and raw.length != UNDEFINED_LENGTH
                and len(raw.value) != raw.length
            ):
                raise DicomMalformed("An element is shorter than its declared length.")
            if raw.length != UNDEFINED_LENGTH:
                vr = raw.VR
                if vr in BINARY_VRS or vr in TEXT_VRS:
                    # bytes stay bytes, and text always decodes: nothing to check by converting
                    # it (~60 % of a CT header's elements, half the parse: it ran under the GIL
                    # that the association and the transaction of the instance wait for)
                    continue
                if vr in DECIMAL_FORMS and well_formed_numbers(raw.value, vr or ""):
                    continue
                size = NUMBER_SIZES.get(vr)  # type: ignore[arg-type]
                if size is not None:
                    if raw.length % size:
                        raise DicomMalformed("A number's length is not a multiple of its size.")
                    continue
        element = ds[raw.tag]
        if element.VR == "SQ":
            for item in element.value:
                _touch(item, depth + 1)
    if depth == 0:
        for element in ds.file_meta:
            _ = element.value


def well_formed_numbers(value: bytes | None, vr: str) -> bool:
    """Whether every number in the DS or IS ``value`` has the standard's form
    (:data:`DECIMAL_FORMS`); an empty value holds none, and passes."""
    if not value:
        return True
    if not isinstance(value, bytes):  # not as read from a file: let pydicom convert it
        return False
    form, longest = DECIMAL_FORMS[vr]
    for part in value.split(b"\\"):
        if len(part) > longest or form.fullmatch(part) is None:
            return False
    return True


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    text = str(value)
    if len(text) > limit or "\x00" in text:
        raise DicomMalformed(f"{keyword} is too long or holds NUL.")
    return text


def _uid(ds: Dataset, keyword: str, *, meta: bool = False) -> str:
    source = ds.file_meta if meta else ds
    value = source.get(keyword)
    if value is None or str(value) == "":
        raise DicomMissingAttribute(f"{keyword} is missing.")
    text = str(value)
    if not valid_uid(text):
        raise InvalidUid(f"{keyword} is not a valid UID.")
    return text


def _int(ds: Dataset, keyword: str, low: int = 0, high: int = 2**31 - 1) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DicomMalformed(f"{keyword} is not a number.") from None
    if not low <= number <= high:
        raise DicomMalformed(f"{keyword} is out of range.")
    return number


def _check(ds: Dataset, pixel_offset: int | None = None) -> ParsedInstance:
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        raise DicomMissingAttribute("The file meta information has no transfer syntax.")
    syntax = _uid(ds, "TransferSyntaxUID", meta=True)
    if syntax not in ACCEPTED_SYNTAXES:
        raise DicomUnsupportedSyntax()
    study_uid = _uid(ds, "StudyInstanceUID")
    series_uid = _uid(ds, "SeriesInstanceUID")
    sop_uid = _uid(ds, "SOPInstanceUID")
    sop_class = _uid(ds, "SOPClassUID")
    meta_sop = ds.file_meta.get("MediaStorageSOPInstanceUID")
    if meta_sop is not None and str(meta_sop) not in ("", sop_uid):
        raise DicomMalformed("The file meta information names another instance.")
    rows = _int(ds, "Rows", 1, MAX_DIMENSION)
    columns = _int(ds, "Columns", 1, MAX_DIMENSION)
    frames = 0
    layout = None
    if "PixelData" in ds:
        if rows is None or columns is None:
            raise DicomMissingAttribute("Pixel data without Rows and Columns.")
        frames = _int(ds, "NumberOfFrames", 1, MAX_FRAMES) or 1
        _check_pixel_data(ds, UID(syntax), rows, columns, frames)
        if syntax in NATIVE_SYNTAXES:
            layout = describe(
                ds,
                syntax,
                pixel_offset,
                rows=rows,
                columns=columns,
                frames=frames,
                frame_bytes=native_frame_size(ds, rows, columns),
            )
    burned = _text(ds, "BurnedInAnnotation", 16).upper()
    return ParsedInstance(
        dataset=ds,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax=syntax,
        modality=_text(ds, "Modality", 16) or "OT",
        series_number=_int(ds, "SeriesNumber", -(2**31), 2**31 - 1),
        instance_number=_int(ds, "InstanceNumber", -(2**31), 2**31 - 1),
        frames=frames,
        rows=rows,
        columns=columns,
        burned_in=burned if burned in ("YES", "NO") else "",
        accession_number=_text(ds, "AccessionNumber", 64),
        patient_id=_text(ds, "PatientID", 64),
        pixel_layout=layout,
    )


def native_frame_size(ds: Dataset, rows: int, columns: int) -> int:
    """Bytes of one uncompressed frame (bit-packed 1-bit frames rounded up)."""
    samples = _int(ds, "SamplesPerPixel", 1, 4) or 1
    bits = _int(ds, "BitsAllocated", 1, 64)
    if bits is None:
        raise DicomMissingAttribute("Pixel data without BitsAllocated.")
    if bits != 1 and bits % 8:
        raise DicomPixelDataInvalid("BitsAllocated is not a whole number of bytes.")
    pixels = rows * columns * samples
    return (pixels + 7) // 8 if bits == 1 else pixels * bits // 8


def _check_pixel_data(ds: Dataset, syntax: UID, rows: int, columns: int, frames: int) -> None:
    data = ds.PixelData
    if not isinstance(data, bytes | bytearray):
        raise DicomPixelDataInvalid()
    if syntax in NATIVE_SYNTAXES:
        expected = native_frame_size(ds, rows, columns) * frames
        if len(data) not in (expected, expected + 1):  # + the pad byte of an odd length
            raise DicomPixelDataInvalid()
        return
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return  # pydicom inflated it while reading; the native check above does not apply
    try:
        found = sum(1 for _ in encoded_frames(ds, frames))
    except Exception:
        raise DicomPixelDataInvalid("The encapsulated pixel data is broken.") from None
    if found < frames:
        raise DicomPixelDataInvalid("Fewer encapsulated frames than Number of Frames.")


def encoded_frames(ds: Dataset, frames: int) -> Iterator[bytes]:
    """The encapsulated frames of a compressed instance, as stored (no decoding)."""
    return generate_frames(ds.PixelData, number_of_frames=frames)


def frame_bytes(ds: Dataset, syntax: str, index: int, frames: int) -> bytes:
    """Frame ``index`` (0-based) as stored: a slice of native data, or its encoded bytes."""
    if syntax in NATIVE_SYNTAXES or syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        rows, columns = int(ds.Rows), int(ds.Columns)
        size = native_frame_size(ds, rows, columns)
        return bytes(ds.PixelData[index * size : (index + 1) * size])
    for i, frame in enumerate(encoded_frames(ds, frames)):
        if i == index:
            return frame
    raise IndexError(index)
