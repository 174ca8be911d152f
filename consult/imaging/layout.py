"""Where a stored native instance's frames are, and how its grey frames are rendered, found once
at ingest and kept in its row (``imaging_instances.pixel_layout``).

A viewer's first rendering of an instance (a thumbnail, a weak client's frame) and its first
WADO-RS frame used to parse the stored file's header to find the pixel data's offset, the
pixel format, the rescale and the window: ~0.3 ms of pure Python a 512x512 CT header, under the
GIL that the event loop and the other renderings wait for, and more than half of a rendering's
own CPU once the pixels are read by offset and mapped through a table (:mod:`.render`). The
ingest parser has all of it in hand already (the whole dataset, and the pixel data's position
in the very bytes written to disk), so it writes it down here as a short JSON text, and the
retrieval reads the frame at its offset without opening the header.

The text is a cache of the file, never the truth: a row without it (an instance stored before
this column, until ``teleconsult imaging fill-layouts`` writes it, :mod:`.backfill`; a
compressed or colour one; one whose attributes the fast path does not cover) or with a text
this code does not read (another ``v``, numbers that cannot describe a file) renders through
the header as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from pydicom.dataset import Dataset

from .uids import NATIVE_SYNTAXES

VERSION: Final = 1


@dataclass(frozen=True)
class Grey:
    """What :func:`.render.render_png`'s native monochrome path needs of the header."""

    rows: int
    columns: int
    bits: int
    """Bits allocated: 8 or 16."""
    stored: int
    signed: bool
    monochrome1: bool
    rescale: tuple[float, float] | None
    """(slope, intercept), as pydicom's ``apply_modality_lut`` applies them; None: none."""
    window: tuple[float, float] | None
    """(center, width) of the instance's first window (:func:`first_window`)."""


@dataclass(frozen=True)
class PixelLayout:
    offset: int
    """Where the pixel data's value starts in the stored file."""
    frame_bytes: int
    """The bytes of one frame; frame n (1-based) is at ``offset + (n - 1) * frame_bytes``."""
    frames: int
    grey: Grey | None
    """None: the frames are read by offset, but rendering decodes through pydicom."""


def first_window(ds: Dataset) -> tuple[float, float] | None:
    """The instance's first VOI window (center, width), or None (none, or not usable)."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(
            center[0] if isinstance(center, Sequence) and not isinstance(center, str) else center
        )
        w = float(width[0] if isinstance(width, Sequence) and not isinstance(width, str) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 1 else None


def describe(
    ds: Dataset,
    syntax: str,
    offset: int | None,
    *,
    rows: int,
    columns: int,
    frames: int,
    frame_bytes: int,
) -> str | None:
    """The layout of a checked native instance (its pixel data's value at ``offset`` in the
    stored bytes), as the row keeps it; None for anything the layout does not cover."""
    if (
        syntax not in NATIVE_SYNTAXES
        or offset is None
        or offset < 0
        or frame_bytes <= 0
        or frames < 1
    ):
        return None
    text: dict[str, Any] = {
        "v": VERSION,
        "offset": offset,
        "frame_bytes": frame_bytes,
        "frames": frames,
    }
    grey = grey_of(ds, rows, columns)
    if grey is not None and frame_bytes == rows * columns * grey.bits // 8:
        text["grey"] = asdict(grey)
    return json.dumps(text, separators=(",", ":"))


def grey_of(ds: Dataset, rows: int, columns: int, *, lut_applied: bool = False) -> Grey | None:
    """What a native grey frame of ``ds`` renders with, or None for anything else (colour,
    bits other than 8 or 16, a modality LUT sequence; they are decoded through pydicom).
    ``lut_applied``: the caller applies the header's modality LUT itself (the header's
    path), so a LUT sequence is taken when a window fixes the output range."""
    try:
        photometric = str(ds.get("PhotometricInterpretation", ""))
        bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    window = first_window(ds)
    if (
        photometric not in ("MONOCHROME1", "MONOCHROME2")
        or samples != 1
        or bits not in (8, 16)
        or not 1 <= stored <= bits
    ):
        return None
    if "ModalityLUTSequence" in ds and not (lut_applied and window is not None):
        return None  # a LUT may not be monotonic: without a window, every pixel is needed
    rescale = None
    if "RescaleSlope" in ds and "RescaleIntercept" in ds and not lut_applied:
        try:  # pydicom's condition for rescaling, and its values
            rescale = (float(ds.RescaleSlope), float(ds.RescaleIntercept))
        except (TypeError, ValueError):
            return None  # present but empty or broken: left to pydicom's decoding
    return Grey(
        rows=rows,
        columns=columns,
        bits=bits,
        stored=stored,
        signed=signed,
        monochrome1=photometric == "MONOCHROME1",
        rescale=rescale,
        window=window,
    )


def read(text: str | None) -> PixelLayout | None:
    """The layout a row keeps, or None (none, another version, or not readable)."""
    if not text:
        return None
    try:
        found = json.loads(text)
        if found.get("v") != VERSION:
            return None
        grey = found.get("grey")
        layout = PixelLayout(
            offset=int(found["offset"]),
            frame_bytes=int(found["frame_bytes"]),
            frames=int(found["frames"]),
            grey=None
            if grey is None
            else Grey(
                rows=int(grey["rows"]),
                columns=int(grey["columns"]),
                bits=int(grey["bits"]),
                stored=int(grey["stored"]),
                signed=bool(grey["signed"]),
                monochrome1=bool(grey["monochrome1"]),
                rescale=None if grey["rescale"] is None else _pair(grey["rescale"]),
                window=None if grey["window"] is None else _pair(grey["window"]),
            ),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return layout if _sound(layout) else None


def _sound(layout: PixelLayout) -> bool:
    """Whether the numbers can describe a file's frames (a row's text is ours, but a reader
    never turns a wrong one into a read at a negative offset, a traceback)."""
    if layout.offset < 0 or layout.frame_bytes < 1 or layout.frames < 1:
        return False
    grey = layout.grey
    return grey is None or (
        grey.rows >= 1
        and grey.columns >= 1
        and grey.bits in (8, 16)
        and 1 <= grey.stored <= grey.bits
        and layout.frame_bytes == grey.rows * grey.columns * grey.bits // 8
    )


def _pair(values: Sequence[Any]) -> tuple[float, float]:
    first, second = values
    return float(first), float(second)
