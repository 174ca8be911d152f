"""Renderings: the PNG writer's files read back exactly; the render cache keeps its bound."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from dicom_data import local_file
from PIL import Image
from pydicom import dcmread

from consult.imaging.png import encode_png
from consult.imaging.render import _native_grey, render_decoded, render_png
from consult.imaging.render_cache import RenderCache


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (512, 512), (64, 48, 3)])
def test_png_reads_back_pixel_exact(shape: tuple[int, ...]) -> None:
    """Every byte value, rows that differ by more than 127 (the Up filter wraps mod 256), grey
    and RGB: Pillow decodes exactly the pixels written."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_png(pixels)))
    assert image.mode == ("L" if len(shape) == 2 else "RGB")
    assert np.array_equal(np.asarray(image), pixels)


def test_png_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))


def test_rendering_of_a_ct_is_windowed_grey() -> None:
    """CT_small: an 8-bit grey PNG of the frame's size, using the whole grey range."""
    path = local_file("CT_small.dcm")
    image = Image.open(io.BytesIO(render_png(path, 1)))
    grey = np.asarray(image)
    assert image.mode == "L" and grey.shape == (128, 128)
    assert grey.min() == 0 and grey.max() == 255


def test_render_cache_keeps_its_bound_least_recently_used_first_out() -> None:
    cache = RenderCache(max_bytes=100)
    cache.put(("s", "a", 1), b"a" * 40)
    cache.put(("s", "b", 1), b"b" * 40)
    assert cache.get(("s", "a", 1)) == b"a" * 40  # a is now the most recently used
    cache.put(("s", "c", 1), b"c" * 40)  # 120 > 100: b goes, not a
    assert cache.get(("s", "b", 1)) is None
    assert cache.get(("s", "a", 1)) is not None and cache.get(("s", "c", 1)) is not None
    assert cache.bytes == 80 <= cache.max_bytes
    cache.put(("s", "a", 1), b"A" * 10)  # replaced: its old size is given back
    assert cache.bytes == 50 and cache.get(("s", "a", 1)) == b"A" * 10
    cache.put(("s", "huge", 1), b"h" * 101)  # larger than the whole bound: not kept
    assert cache.get(("s", "huge", 1)) is None and cache.bytes == 50
    assert (cache.hits, cache.misses) == (4, 2)


@pytest.mark.parametrize(
    "name", ["SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"]
)
def test_colour_renderings_show_the_colours_of_the_original(name: str) -> None:
    """A YBR_FULL_422 JPEG, an RLE and a lossless JPEG copy of SC_rgb render to its colours
    (pydicom already gives RGB: converting YBR again turned them wrong)."""
    reference = np.asarray(Image.open(io.BytesIO(render_png(local_file("SC_rgb.dcm"), 1))))
    image = Image.open(io.BytesIO(render_png(local_file(name), 1)))
    assert image.mode == "RGB"
    assert np.abs(np.asarray(image).astype(int) - reference).mean() < 5


def test_a_jpeg_2000_colour_instance_renders() -> None:
    """YBR_RCT (JPEG 2000 lossless colour): rendered as RGB, not refused with a 500."""
    image = Image.open(io.BytesIO(render_png(local_file("US1_J2KR.dcm"), 1)))
    assert image.mode == "RGB" and image.size == (640, 480)


def _native_monochrome_files() -> list[Path]:
    """Every native monochrome test file installed (pydicom's and pydicom-data's)."""
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent / "test_files", local_file("693_UNCI.dcm").parent]
    found = []
    for path in sorted(p for root in roots for p in root.glob("*.dcm")):
        try:
            if _native_grey(path, 1) is not None:
                found.append(path)
        except Exception:  # files the store would refuse (no file meta ...)
            continue
    return found


def test_the_native_fast_path_renders_the_same_bytes_as_decoding() -> None:
    """Every native monochrome instance installed (signed with fewer stored bits, MONOCHROME1,
    8-bit, rescaled, windowed or not, multi-frame): the PNG read by offset and mapped through a
    per-value table is byte for byte the PNG of pydicom's decoding and the float pipeline."""
    files = _native_monochrome_files()
    names = {path.name for path in files}
    assert {
        "693_UNCI.dcm",
        "RG1_UNCI.dcm",
        "vlut_04.dcm",
        "emri_small.dcm",
        "MR2_UNCI.dcm",
    } <= names
    for path in files:
        frames = int(dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
        for number in sorted({1, 2, frames} & set(range(1, frames + 1))):
            assert render_png(path, number) == render_decoded(path, number), (path.name, number)
    assert _native_grey(local_file("SC_rgb.dcm"), 1) is None  # colour: the decoding path
    assert _native_grey(local_file("MR_small_RLE.dcm"), 1) is None  # compressed: likewise


def test_a_header_longer_than_the_first_read_renders_from_the_file(tmp_path: Path) -> None:
    """read_header parses the first HEAD_BYTES of the file at once; a header longer than that
    (here a 100 KB private value before the pixels), or one cut inside an element at that
    length, is read from the file: the same pixel offset, the same PNG as decoding."""
    from pydicom.tag import Tag

    from consult.imaging.render import HEAD_BYTES, native_layout, read_header

    source = dcmread(local_file("CT_small.dcm"))
    for padding in (100_000, HEAD_BYTES - 600):  # past the read; cut inside the element
        ds = copy.deepcopy(source)
        ds.private_block(0x0009, "TELECONSULT TEST", create=True).add_new(
            0x01, "OB", b"\0" * padding
        )
        path = tmp_path / f"long-{padding}.dcm"
        ds.save_as(path, enforce_file_format=True)
        header = read_header(path)
        assert Tag(0x0009, 0x1001) in header
        offset, size = native_layout(path)
        assert offset > HEAD_BYTES - 600 and size == ds.Rows * ds.Columns * 2
        assert path.read_bytes()[offset : offset + size] == ds.PixelData
        assert render_png(path, 1) == render_decoded(path, 1)


def _accepted_native_monochrome() -> list[tuple[Path, str]]:
    """Every native monochrome test file the store accepts, with the layout its parse wrote."""
    from consult.imaging.errors import DicomRejected
    from consult.imaging.parse import parse_file

    found = []
    for path in _native_monochrome_files():
        try:
            parsed = parse_file(path, max_bytes=1 << 30)
        except DicomRejected:
            continue
        assert parsed.pixel_layout is not None, path.name
        found.append((path, parsed.pixel_layout))
    return found


def test_the_layout_written_at_ingest_renders_the_same_bytes_without_the_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The layout the ingest parser keeps in the row (offset, frame size, bits, sign,
    photometric, rescale, window) renders every accepted native monochrome instance byte for
    byte as decoding does, and serves the same frames, without parsing the header at all."""
    from consult.imaging import render
    from consult.imaging.layout import read

    files = _accepted_native_monochrome()
    assert {"693_UNCI.dcm", "RG1_UNCI.dcm", "emri_small.dcm", "MR2_UNCI.dcm"} <= {
        path.name for path, _ in files
    }
    expected = {}
    for path, layout in files:
        known = read(layout)
        assert known is not None and known.grey is not None, path.name
        for number in sorted({1, 2, known.frames} & set(range(1, known.frames + 1))):
            expected[(path, number)] = (
                render_decoded(path, number),
                render.frames_as_stored(path, "1.2.840.10008.1.2.1", [number], known.frames),
            )

    def no_header(path: Path) -> None:
        raise AssertionError(f"{path.name}: the header was parsed")

    monkeypatch.setattr(render, "read_header", no_header)
    monkeypatch.setattr(render, "load", no_header)
    for (path, number), (png, frame) in expected.items():
        layout = dict(files)[path]
        assert render_png(path, number, layout) == png, (path.name, number)
        assert render.frames_as_stored(path, "1.2.840.10008.1.2.1", [number], 0, layout) == frame


def test_a_layout_this_code_cannot_read_falls_back_to_the_header() -> None:
    """Another version, a broken text, or a frame number past the layout's frames: the
    header's path answers as it would without a layout (the row's text is a cache, never the
    truth)."""
    from consult.imaging.errors import FrameNotRenderable
    from consult.imaging.layout import read

    path, layout = next(p for p in _accepted_native_monochrome() if p[0].name == "693_UNCI.dcm")
    png = render_decoded(path, 1)
    other_version = layout.replace('"v":1', '"v":99')
    assert read(other_version) is None and read("{") is None and read('{"v":1}') is None
    known = json.loads(layout)
    unsound = [
        json.dumps({**known, "offset": -4}),  # a read at a negative offset: EINVAL, a 500
        json.dumps({**known, "frames": 0}),
        json.dumps({**known, "grey": {**known["grey"], "bits": 12}}),
        json.dumps({**known, "grey": {**known["grey"], "rows": 256}}),  # not the frame's size
    ]
    assert all(read(text) is None for text in unsound)
    for text in (other_version, "{", '{"v":1}', "[]", "null", None, *unsound):
        assert render_png(path, 1, text) == png, text
    with pytest.raises(FrameNotRenderable):
        render_png(path, 2, layout)  # one frame: nothing is read past it


def test_the_layout_of_received_bytes_is_the_layout_of_the_file_they_make(
    tmp_path: Path,
) -> None:
    """The C-STORE path parses the Part 10 header and the received dataset in memory while
    writing the same bytes: the offsets it keeps are those of the file on disk. Compressed
    and colour instances keep no grey parameters (or no layout at all)."""
    from consult.imaging.layout import read
    from consult.imaging.parse import parse_file, parse_parts

    for name in ("693_UNCI.dcm", "CT_small.dcm", "MR_small.dcm"):
        data = local_file(name).read_bytes()
        from_file = parse_file(local_file(name), max_bytes=1 << 30).pixel_layout
        split = 132 + 200  # anywhere: inside the file meta here
        assert parse_parts(data[:split], data[split:]).pixel_layout == from_file, name
        known = read(from_file)
        assert known is not None
        frame = data[known.offset : known.offset + known.frame_bytes]
        assert frame == dcmread(local_file(name)).PixelData[: known.frame_bytes], name
    assert parse_file(local_file("MR_small_RLE.dcm"), max_bytes=1 << 30).pixel_layout is None
    colour = read(parse_file(local_file("SC_rgb.dcm"), max_bytes=1 << 30).pixel_layout)
    assert colour is not None and colour.grey is None
