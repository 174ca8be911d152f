"""Malformed DICOM is refused with a stable code; nothing crashes (the ingest parser, STOW-RS).

The fuzz test mutates real files (flipped bytes, cut tails, rewritten lengths) and asserts that
the parser either accepts or refuses with a :class:`DicomRejected` code, within a time bound.
Any input that ever broke it is kept in ``corpus/`` and replayed here.
"""

from __future__ import annotations

import io
import itertools
import struct
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from dicom_data import aecg_document, local_file, part10, series_from
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from consult.imaging.errors import DicomRejected
from consult.imaging.parse import (
    NUMBER_SIZES,
    TEXT_VRS,
    _Joined,
    parse_bytes,
    parse_parts,
    well_formed_numbers,
)
from web.keys import IMAGING

CORPUS = Path(__file__).resolve().parent / "corpus"
CODES = {
    "dicom_malformed",
    "dicom_missing_attribute",
    "dicom_invalid_uid",
    "dicom_unsupported_transfer_syntax",
    "dicom_pixel_data_invalid",
    "dicom_too_large",
}


def local_ecg() -> Any:
    from pydicom import dcmread

    return dcmread(local_file("waveform_ecg.dcm"))


def _valid() -> bytes:
    return part10(series_from("MR_small.dcm", 1)[0])


def _set_length(data: bytes, tag: bytes, vr: bytes, length: int) -> bytes:
    """Rewrite the length of the first explicit-VR element ``tag``."""
    at = data.index(tag + vr)
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return data[: at + 8] + struct.pack("<I", length) + data[at + 12 :]
    return data[: at + 6] + struct.pack("<H", length) + data[at + 8 :]


def malformed_cases() -> dict[str, tuple[bytes, str]]:
    valid = _valid()
    pixel_tag = b"\xe0\x7f\x10\x00"
    name_tag = b"\x10\x00\x10\x00"
    path_like = series_from("MR_small.dcm", 1)[0]
    path_like.SOPInstanceUID = "../../../etc/passwd"
    path_like.file_meta.MediaStorageSOPInstanceUID = "../../../etc/passwd"
    no_study = series_from("MR_small.dcm", 1)[0]
    del no_study.StudyInstanceUID
    short_pixels = series_from("MR_small.dcm", 1)[0]
    short_pixels.Rows = short_pixels.Rows + 10
    return {
        "not dicom": (b"GET /etc/passwd HTTP/1.0\r\n\r\n" * 8, "dicom_malformed"),
        "preamble only": (b"\x00" * 128 + b"DICM", "dicom_missing_attribute"),
        # Cut between elements: what is left parses, and lacks the UIDs.
        "truncated header": (valid[:300], "dicom_missing_attribute"),
        "truncated pixels": (valid[: len(valid) - 1000], "dicom_malformed"),
        "huge pixel length": (_set_length(valid, pixel_tag, b"OW", 0xFFFFFFF0), "dicom_malformed"),
        "wrong name length": (_set_length(valid, name_tag, b"PN", 0xFFF0), "dicom_malformed"),
        "path-like uid": (part10(path_like), "dicom_invalid_uid"),
        "no study uid": (part10(no_study), "dicom_missing_attribute"),
        "pixels shorter than rows x columns": (part10(short_pixels), "dicom_pixel_data_invalid"),
    }


@pytest.mark.parametrize("name", sorted(malformed_cases()))
def test_parser_refuses_with_a_stable_code(name: str) -> None:
    data, code = malformed_cases()[name]
    with pytest.raises(DicomRejected) as caught:
        parse_bytes(data)
    assert caught.value.code == code, name


def _read_back(data: bytes) -> None:
    """Convert every element of ``data`` as a later reader of the stored file does (DICOMweb
    metadata, a rendering): the parser accepts only what that never fails on."""
    for element in dcmread(BytesIO(data)).iterall():
        _ = element.value


def test_corpus_inputs_never_crash_the_parser() -> None:
    """Regression inputs: every file in corpus/ is accepted or refused with a known code, and
    what is accepted reads back."""
    files = sorted(CORPUS.glob("*.bin"))
    assert files, "the corpus holds at least the seed inputs"
    for path in files:
        try:
            parse_bytes(path.read_bytes())
        except DicomRejected as exc:
            assert exc.code in CODES, (path.name, exc.code)
        else:
            _read_back(path.read_bytes())


def _outcome(parse: Any) -> str:
    try:
        return parse().sop_instance_uid  # type: ignore[no-any-return]
    except DicomRejected as exc:
        return exc.code


def test_a_file_parsed_in_pieces_is_accepted_or_refused_as_whole() -> None:
    """The C-STORE path parses its file meta and the received dataset as two buffers
    (:func:`parse_parts`, no joined copy): every malformed case and corpus input gets the same
    answer as in one piece, wherever it is cut."""
    inputs = [data for data, _ in malformed_cases().values()]
    inputs += [path.read_bytes() for path in sorted(CORPUS.glob("*.bin"))]
    inputs.append(part10(series_from("CT_small.dcm", 1)[0]))
    for data in inputs:
        whole = _outcome(lambda data=data: parse_bytes(data))
        for cut in sorted({0, 1, 128, 132, 133, 200, len(data) // 2, len(data) - 1, len(data)}):
            if 0 <= cut <= len(data):
                pieces = _outcome(
                    lambda data=data, cut=cut: parse_parts(data[:cut], memoryview(data)[cut:])
                )
                assert pieces == whole, (cut, whole, pieces)
    with pytest.raises(DicomRejected) as caught:
        parse_parts(b"x" * 10, b"y" * 10, max_bytes=15)
    assert caught.value.code == "dicom_too_large"


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=3),
    reads=st.lists(st.integers(min_value=-1, max_value=2000), min_size=1, max_size=8),
    buffer_size=st.sampled_from([1, 7, 64, 1024]),
)
def test_pieces_read_back_as_the_bytes_they_hold(
    data: bytes, cuts: list[int], reads: list[int], buffer_size: int
) -> None:
    """The received buffers read through a ``BufferedReader`` (as pydicom reads them), in any
    sizes, small reads from its buffer and large ones copied straight into the result, give
    the bytes one after the other, wherever the buffers are cut."""
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    parts = [memoryview(data)[a:b] for a, b in itertools.pairwise(bounds)]
    stream = io.BufferedReader(_Joined(tuple(parts)), buffer_size)
    got = b"".join(stream.read(size) for size in reads)
    expected = data[: min(len(data), sum(len(data) if n < 0 else n for n in reads))]
    assert got == expected


#: A native and an encapsulated (RLE) instance to mutate.
_BASES = (_valid(), part10(series_from("MR_small_RLE.dcm", 1)[0]))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "length", "insert"]))
        # Most of the structure is in the first kilobytes: aim there more often.
        limit = min(len(data) - 1, draw(st.sampled_from([400, 1500, len(data) - 1])))
        if limit <= 0:
            break
        at = draw(st.integers(0, limit))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "length":
            data[at : at + 4] = struct.pack(
                "<I",
                draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF])),
            )
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(
    max_examples=300,
    deadline=2000,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_fuzz_the_ingest_parser(data: bytes) -> None:
    """Any mutation: accepted or refused with a stable code, never another exception; and
    every element of what is accepted converts when a later reader (DICOMweb metadata, a
    rendering) reads the file again."""
    started = time.monotonic()
    try:
        parse_bytes(data)
    except DicomRejected as exc:
        assert exc.code in CODES
    except BaseException:
        CORPUS.mkdir(exist_ok=True)
        (CORPUS / f"crash-{int(time.time() * 1000)}.bin").write_bytes(data)
        raise
    else:
        try:
            _read_back(data)
        except BaseException:
            CORPUS.mkdir(exist_ok=True)
            (CORPUS / f"unreadable-{int(time.time() * 1000)}.bin").write_bytes(data)
            raise
    assert time.monotonic() - started < 2.0


CHARACTER_SETS = [
    None,
    "ISO_IR 192",
    "GB18030",
    "GBK",
    "ISO_IR 100",
    "ISO 2022 IR 87",
    "ISO 2022 IR 58",
    "\\ISO 2022 IR 149",
    "not a character set",
]


@settings(max_examples=400, deadline=None)
@given(
    vr=st.sampled_from(sorted(TEXT_VRS)),
    value=st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=32).map(lambda b: b"\x1b$B" + b),  # an ISO 2022 escape
        st.binary(max_size=32).map(lambda b: b"\x1b$)A" + b),
    ),
    charset=st.sampled_from(CHARACTER_SETS),
)
def test_text_elements_the_parser_does_not_convert_always_convert(
    vr: str, value: bytes, charset: str | None
) -> None:
    """The parser checks the lengths of text elements (TEXT_VRS) but does not convert them:
    with pydicom's reading not set to RAISE, their conversion falls back to Latin-1 and
    replacement characters and cannot fail, whatever the bytes and character set. A pydicom
    that raised here would let a dataset in that a later reader fails on."""
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    tag = Tag(0x0009, 0x1010)  # private: any VR the element declares is taken as it is
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)  # type: ignore[assignment]
    element = ds[tag]
    assert isinstance(element.value, (str, MultiValue)), element.value
    _ = str(element)


@settings(max_examples=300, deadline=None)
@given(vr=st.sampled_from(sorted(NUMBER_SIZES)), value=st.binary(max_size=40))
def test_numbers_the_parser_checks_by_length_fail_to_convert_exactly_on_length(
    vr: str, value: bytes
) -> None:
    """The parser does not convert fixed-size binary numbers (NUMBER_SIZES): it refuses a
    length that is not a multiple of the size, as their conversion would; any other bytes
    convert. A pydicom that raised (or stopped raising) otherwise would let a dataset in that a
    later reader fails on."""
    ds = Dataset()
    tag = Tag(0x0009, 0x1010)
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)  # type: ignore[assignment]
    if len(value) % NUMBER_SIZES[vr]:
        with pytest.raises(Exception):  # noqa: B017 - pydicom's BytesLengthException
            _ = ds[tag]
    else:
        element = ds[tag]
        _ = str(element)


_NUMBER_TEXT = st.lists(
    st.one_of(
        st.from_regex(rb"\A *[+-]?[0-9]{0,14}\.?[0-9]{0,14}(?:[eE][+-]?[0-9]{0,4})? *\Z"),
        st.binary(max_size=20),
    ),
    min_size=1,
    max_size=3,
).map(b"\\".join)


@settings(max_examples=600, deadline=None)
@given(vr=st.sampled_from(["DS", "IS"]), value=_NUMBER_TEXT)
def test_numbers_the_parser_does_not_convert_always_convert(vr: str, value: bytes) -> None:
    """The parser does not convert DS and IS values in the standard's form
    (``well_formed_numbers``): pydicom converts every such value, to numbers. A pydicom that
    raised here would let a dataset in that a later reader fails on; anything else is converted
    by the parser, as before."""
    if not well_formed_numbers(value, vr):
        return
    ds = Dataset()
    tag = Tag(0x0009, 0x1010)
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)  # type: ignore[assignment]
    element = ds[tag]
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    assert all(v is None or v == "" or float(v) == float(v) for v in values), values
    _ = str(element)


def test_a_number_of_the_wrong_length_is_refused() -> None:
    """A US element of three bytes: refused with a stable code, not stored."""
    ds = series_from("MR_small.dcm", 1)[0]
    data = part10(ds)
    rows = b"\x28\x00\x10\x00US"  # (0028,0010) Rows, explicit VR little endian
    at = data.index(rows)
    broken = (
        data[: at + 6] + struct.pack("<H", 3) + data[at + 8 : at + 10] + b"\x00" + data[at + 10 :]
    )
    with pytest.raises(DicomRejected) as refused:
        parse_bytes(broken, max_bytes=len(broken) + 1)
    assert refused.value.code == "dicom_malformed"


async def test_stow_refuses_malformed_parts_and_keeps_the_good_ones(world: World) -> None:
    """Over STOW-RS: each bad part is a FailedSOPSequence item with its code (in TextValue),
    the good one is stored, the refusals are audited, and nothing lands outside the store."""
    from dicomweb_client.api import DICOMwebClient

    cases = malformed_cases()
    good = series_from("CT_small.dcm", 1)[0]
    http = DICOMwebClient(
        url=world.stow_url, headers={"Authorization": f"Bearer {world.doctor.token}"}
    )
    bodies = [data for data, _ in cases.values()] + [part10(good)]
    boundary = "b0undary"
    payload = (
        b"".join(
            b"--"
            + boundary.encode()
            + b"\r\nContent-Type: application/dicom\r\n\r\n"
            + body
            + b"\r\n"
            for body in bodies
        )
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )

    def post() -> tuple[int, object]:
        response = http._session.post(
            world.stow_url + "/studies",
            data=payload,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
        return response.status_code, response.json()

    status, answer = await off_loop(post)
    assert status == 202
    assert isinstance(answer, dict)
    failed = answer["00081198"]["Value"]
    assert sorted(item["0040A160"]["Value"][0] for item in failed) == sorted(
        code for _, code in cases.values()
    )
    assert len(answer["00081199"]["Value"]) == 1
    events = await imaging_events(world.server.app)
    assert sum(1 for e in events if e.action == "imaging.store" and e.result == "refused") == len(
        cases
    )
    store = world.server.app[IMAGING]
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert all(p.parent.parent == store.studies for p in files), files
    assert len(files) == 1
    reader = client(world.dicomweb, world.doctor)
    assert len(await off_loop(reader.search_for_studies)) == 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(data=st.data())
def test_an_aecg_fuzzed_is_stored_or_refused_with_a_code(data: st.DataObject) -> None:
    """HL7 aECG documents (a small one made from waveform_ecg.dcm: 40 samples a lead) with
    flipped bytes, cut tails and insertions are converted or refused with a stable code
    (``consult.imaging.aecg``), never another exception."""
    from consult.imaging.aecg import convert

    document = bytearray(aecg_document(local_ecg(), document_id="1.2.3.4", samples=40))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(document) - 1))
        if kind == "flip":
            document[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del document[at:]
            if not document:
                document = bytearray(b"<")
        else:
            document[at:at] = data.draw(st.sampled_from([b"<", b"&", b"\x00", b"]]>", b"<!--"]))
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.xml", Path(scratch) / "out.dcm"
        source.write_bytes(bytes(document))
        try:
            convert(source, target, "record")
        except DicomRejected as exc:
            assert exc.code in {"aecg_malformed", "aecg_uncalibrated", "aecg_too_large"}
        else:
            parse_bytes(target.read_bytes())  # what it wrote is a DICOM the store accepts
