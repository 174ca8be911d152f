"""An 8-bit PNG writer for renderings: one filter for every row, zlib at its fastest level.

Pillow's PNG writer (filtering row by row in C, then zlib) took ~5 ms for a 512x512 CT
rendering at compress_level 1, more than decoding and windowing together. A medical image's
rows change little from one to the next, so the "Up" filter alone (each byte minus the byte
above it, PNG spec 9.2), computed for the whole image at once with numpy, then zlib level 1,
gives a file of the same size (+5%) in ~2 ms. Any PNG decoder reads it (each row names its
filter).

The deflate stream is zlib-ng's (a maintained drop-in for zlib, the same format): at level 1 it
compressed a filtered 512x512 CT rendering in 0.15 ms against zlib's 0.77 ms (files ~13%
larger, 27.9 against 24.6 KB; ``tests/imaging/test_imaging_render.py`` decodes its output
with Pillow).
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np
from zlib_ng import zlib_ng

SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
FILTER_UP: Final = 2
GREY: Final = 0
RGB: Final = 2


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(pixels: np.ndarray, *, level: int = 1) -> bytes:
    """``pixels`` (uint8, rows x columns grey or rows x columns x 3 RGB) as a PNG file."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("a PNG is written from uint8 grey (h, w) or RGB (h, w, 3) pixels")
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError("RGB pixels have three samples")
    height, width = pixels.shape[:2]
    colour = GREY if pixels.ndim == 2 else RGB
    flat = np.ascontiguousarray(pixels).reshape(height, -1)
    rows = np.empty((height, flat.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = FILTER_UP
    rows[0, 1:] = flat[0]  # the row above the first is zeros
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps: mod 256
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"".join(
        (
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib_ng.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )
