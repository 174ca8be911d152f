"""Images shared in a room: checked from their bytes, re-encoded without metadata, thumbnailed.

- The type comes from the bytes' signature (JPEG, PNG, WebP), never from a file name or a
  declared content type; Pillow then opens the data with that one format only.
- Limits: :data:`MAX_IMAGE_BYTES` on the file, :data:`MAX_PIXELS` on width x height, checked on the
  header *before* any pixel is decoded, so a decompression bomb (a small file claiming a huge
  image) is refused with ``image_too_many_pixels`` without allocating it.
- Re-encoding drops every metadata block (EXIF with its GPS position, XMP, comments) after
  applying the EXIF orientation, so the picture still stands the right way up. The colour
  profile is kept (it says nothing about the patient).
- A thumbnail of at most :data:`THUMB_SIZE` pixels per side.

:func:`process` is CPU work: callers run it in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps

from consult.errors import (
    ImageTooLarge,
    ImageTooManyPixels,
    ImageTypeUnsupported,
    ImageUnreadable,
)

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
MAX_SIDE: Final = 16_384
THUMB_SIZE: Final = 320

_CONTENT_TYPES: Final = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def sniff(data: bytes) -> str | None:
    """The Pillow format name of ``data`` from its leading bytes, or ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class ProcessedImage:
    """A clean image and its thumbnail, ready to encrypt and store."""

    content_type: str
    data: bytes
    width: int
    height: int
    thumb_content_type: str
    thumb: bytes


def process(data: bytes) -> ProcessedImage:
    """Check, clean and thumbnail an uploaded image; raises the ``image_*`` consult errors."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge()
    fmt = sniff(data)
    if fmt is None:
        raise ImageTypeUnsupported()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise ImageTooManyPixels()
            image.load()
            clean = _clean(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooManyPixels() from None
        except (OSError, SyntaxError, ValueError, EOFError):
            # Pillow's errors for damaged or truncated data
            raise ImageUnreadable() from None
    icc = image.info.get("icc_profile")
    out = io.BytesIO()
    if fmt == "JPEG":
        if clean.mode not in ("RGB", "L"):
            clean = clean.convert("RGB")
        clean.save(out, "JPEG", quality=90, icc_profile=icc)
    elif fmt == "PNG":
        clean.save(out, "PNG", optimize=False, icc_profile=icc)
    else:
        clean.save(out, "WEBP", quality=90, icc_profile=icc)
    thumb_type, thumb = _thumbnail(clean)
    return ProcessedImage(
        content_type=_CONTENT_TYPES[fmt],
        data=out.getvalue(),
        width=clean.width,
        height=clean.height,
        thumb_content_type=thumb_type,
        thumb=thumb,
    )


def _clean(image: Image.Image) -> Image.Image:
    """The pixels, turned upright, with no metadata left (a copy with an empty ``info``)."""
    upright = ImageOps.exif_transpose(image)
    if upright.mode == "P":  # its transparency lives in ``info``: make it part of the pixels
        clean = upright.convert("RGBA")
    elif upright.mode not in ("L", "LA", "RGB", "RGBA"):
        clean = upright.convert("RGBA" if "A" in upright.mode else "RGB")
    else:
        clean = upright.copy() if upright is image else upright
    clean.info = {}
    return clean


def _thumbnail(image: Image.Image) -> tuple[str, bytes]:
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    out = io.BytesIO()
    if thumb.mode in ("RGBA", "LA"):
        thumb.save(out, "PNG")
        return "image/png", out.getvalue()
    thumb.convert("RGB").save(out, "JPEG", quality=80)
    return "image/jpeg", out.getvalue()
