"""Frames and renderings of stored instances (blocking; callers run them off the event loop).

A frame is served as stored (native bytes, or the encoded codestream of a compressed syntax),
or decoded to native little-endian bytes when the client asks for that. A rendering applies the
modality LUT (rescale) and the VOI window (the instance's first window, else the frame's range)
and writes an 8-bit PNG (:mod:`.png`: one row filter, zlib-ng level 1, ~1 ms for 512x512).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from .errors import FrameNotRenderable, StudyNotFound
from .layout import Grey, first_window, grey_of
from .layout import read as read_layout
from .parse import frame_bytes, native_frame_size
from .png import encode_png
from .uids import NATIVE_SYNTAXES

HEAD_BYTES = 64 * 1024
"""What :func:`read_header` reads at once: a CT or MR header is 2-20 KB."""


def read_header(path: Path) -> Dataset:
    """The dataset at ``path`` with values over 1 KiB left unread (the pixel data's offset
    kept), parsed from its first :data:`HEAD_BYTES` read with one ``pread``: pydicom reading
    the file itself made ~140 ``lseek`` calls a 512x512 CT header, each letting go of the GIL,
    so that with the event loop and other renderings waiting for it each one was a switch
    between threads. A header longer than that is read from the file."""
    try:
        with path.open("rb") as f:
            head = os.pread(f.fileno(), HEAD_BYTES, 0)
    except FileNotFoundError:
        raise StudyNotFound() from None
    if len(head) == HEAD_BYTES:
        try:
            ds = dcmread(BytesIO(head), defer_size=1024)
            raw = ds.get_item(0x7FE00010, keep_deferred=True)
            if isinstance(raw, RawDataElement) and raw.value_tell is not None:
                return ds
        except Exception:  # cut inside an element: the whole file says what it is
            pass
    try:
        return dcmread(BytesIO(head) if len(head) < HEAD_BYTES else path, defer_size=1024)
    except FileNotFoundError:
        raise StudyNotFound() from None


def load(path: Path) -> Dataset:
    try:
        return dcmread(path)
    except FileNotFoundError:
        raise StudyNotFound() from None


def frames_as_stored(
    path: Path, syntax: str, numbers: Sequence[int], frames: int, layout: str | None = None
) -> list[bytes]:
    """Frames (1-based numbers) exactly as stored; ``layout``: the row's
    (:mod:`.layout`), which spares parsing the header."""
    if syntax in NATIVE_SYNTAXES:
        known = read_layout(layout)
        offset, size = (
            (known.offset, known.frame_bytes) if known is not None else native_layout(path)
        )
        try:
            with path.open("rb") as f:
                return [os.pread(f.fileno(), size, offset + (n - 1) * size) for n in numbers]
        except FileNotFoundError:
            raise StudyNotFound() from None
    ds = load(path)
    return [frame_bytes(ds, syntax, n - 1, frames) for n in numbers]


@functools.lru_cache(maxsize=4096)
def native_layout(path: Path) -> tuple[int, int]:
    """Where a stored native instance's pixel data starts in its file and the bytes of one
    frame: a frame is then one read, without parsing the file again. Kept by path: a stored
    file is never rewritten (a new one gets a new id), and the parser checked the length."""
    ds = read_header(path)
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        raise FrameNotRenderable()
    return raw.value_tell, native_frame_size(ds, int(ds.Rows), int(ds.Columns))


def frames_native(path: Path, numbers: Sequence[int]) -> list[bytes]:
    """Frames decoded to native little-endian bytes (for a client that cannot decode)."""
    ds = load(path)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax in NATIVE_SYNTAXES:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return [frame_bytes(ds, syntax, n - 1, frames) for n in numbers]
    out = []
    for n in numbers:
        try:
            array = pixel_array(ds, index=n - 1)
        except Exception:
            raise FrameNotRenderable() from None
        out.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return out


def render_png(path: Path, number: int, layout: str | None = None) -> bytes:
    """Frame ``number`` (1-based) as an 8-bit PNG: grey or RGB. ``layout``: the instance row's
    (:mod:`.layout`): a native grey frame is then rendered without parsing the header."""
    known = read_layout(layout)
    if known is not None and known.grey is not None and 1 <= number <= known.frames:
        fast = _grey_pixels(path, number, known.offset, known.grey, known.grey.rescale)
    else:
        fast = _native_grey(path, number)
    if fast is not None:
        return encode_png(fast)
    return render_decoded(path, number)


def render_decoded(path: Path, number: int) -> bytes:
    """:func:`render_png` through pydicom's decoding, for any syntax and photometric."""
    ds = load(path)
    try:
        array = pixel_array(ds, index=number - 1)
    except Exception:
        raise FrameNotRenderable() from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if array.ndim == 3 and array.shape[-1] == 3:
        # already RGB: pixel_array converts YBR_FULL(_422) itself (as_rgb), and the JPEG 2000
        # decoder undoes YBR_RCT/YBR_ICT; converting again turned colours wrong (and RCT/ICT
        # raised NotImplementedError, a 500)
        return encode_png(_to_uint8(array.astype(np.float32), None))
    if array.ndim != 2:
        raise FrameNotRenderable()
    values = apply_modality_lut(array, ds).astype(np.float32, copy=False)
    grey = _to_uint8(values, first_window(ds))
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return encode_png(grey)


def _native_grey(path: Path, number: int) -> np.ndarray | None:
    """The grey pixels of a native monochrome frame, as :func:`render_png`'s general path
    makes them, or None for anything else (that path then renders it).

    The general path parses the whole file (~2 ms for 512x512 CT), decodes the frame, applies
    the modality LUT in float64 and windows in float32 (~1.5 ms more). Here the header is read
    without the pixel data (:func:`read_header`; an instance row's layout spares even that:
    :mod:`.layout`), the frame is one ``pread`` at its offset, and since both steps act on
    each pixel alone, they are computed once per stored value between the frame's least and
    greatest (at most 65,536 values, a few thousand for CT) and looked up: the same bytes (the
    tests compare), ~2x less CPU."""
    ds = read_header(path)
    try:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if syntax not in NATIVE_SYNTAXES or not 1 <= number <= frames:
        return None
    grey = grey_of(ds, rows, columns, lut_applied=True)  # the same rules as the rows' layout
    if grey is None:
        return None
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        return None
    return _grey_pixels(path, number, raw.value_tell, grey, ds)


def _grey_pixels(
    path: Path, number: int, offset: int, grey: Grey, modality: Dataset | tuple[float, float] | None
) -> np.ndarray | None:
    """Frame ``number`` of the native grey pixel data at ``offset`` in ``path``, windowed to
    8 bits; ``modality``: the header (pydicom applies its modality LUT or rescale), or the
    (slope, intercept) it names, or None (neither). None if the file is shorter than that."""
    bits, signed = grey.bits, grey.signed
    size = grey.rows * grey.columns * bits // 8
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StudyNotFound() from None
    try:
        data = os.pread(fd, size, offset + (number - 1) * size)
    finally:
        os.close(fd)
    if len(data) != size:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    pixels: np.ndarray = np.frombuffer(data, dtype=dtype).reshape(grey.rows, grey.columns)
    if signed and grey.stored < bits:  # sign-extend from the stored bits (as pydicom does)
        shift = bits - grey.stored
        pixels = (pixels << shift) >> shift
    low, high = int(pixels.min()), int(pixels.max())
    domain = np.arange(low, high + 1, dtype=pixels.dtype)
    if isinstance(modality, Dataset):
        values = apply_modality_lut(domain, modality).astype(np.float32, copy=False)
    elif modality is not None:  # what apply_modality_lut computes for a rescale
        slope, intercept = modality
        rescaled = domain.astype(np.float64) * slope
        rescaled += intercept
        values = rescaled.astype(np.float32, copy=False)
    else:
        values = domain.astype(np.float32, copy=False)
    if grey.window is None:  # the frame's range: rescale is monotonic, its ends are the ends
        window_range = (float(min(values[0], values[-1])), float(max(values[0], values[-1])))
        lut = _to_uint8_range(values, *window_range)
    else:
        lut = _to_uint8(values, grey.window)
    if grey.monochrome1:
        lut = 255 - lut
    unsigned: np.ndarray = pixels.view(np.uint8 if bits == 8 else np.uint16)
    index = unsigned - unsigned.dtype.type(low & (0xFF if bits == 8 else 0xFFFF))  # mod 2^bits
    return np.take(lut, index)


def _to_uint8_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """:func:`_to_uint8` without a window, for a range found elsewhere."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * np.float32(255.0 / (high - low))
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def _to_uint8(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is not None:
        center, width = window
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * np.float32(255.0 / (high - low))  # float32 throughout
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
