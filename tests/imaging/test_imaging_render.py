"""Renderings: the PNG writer's files read back exactly; the render cache keeps its bound."""

from __future__ import annotations

import copy
import io
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
