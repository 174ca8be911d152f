"""UIDs and transfer syntaxes as plain strings: what the routes need without loading pydicom.

(pydicom and numpy take a second or more to import; the server imports them on first use.)
"""

from __future__ import annotations

import re
from typing import Final

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"

NATIVE_SYNTAXES: Final = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN})
"""Uncompressed transfer syntaxes: frames are slices of the pixel data."""

FRAME_MEDIA_TYPES: Final = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
"""PS3.18 Table 8.7.3-2: the media type of a frame in a compressed transfer syntax."""

ACCEPTED_SYNTAXES: Final = (
    NATIVE_SYNTAXES | {DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN} | frozenset(FRAME_MEDIA_TYPES)
)
"""What the store accepts: native, deflated, JPEG baseline/extended/lossless (and SV1),
JPEG-LS, JPEG 2000 (lossless and lossy), RLE. Compressed syntaxes are decoded (for rendering)
by permissively licensed plugins only: pylibjpeg-openjpeg (JPEG 2000), pylibjpeg-rle,
python-gdcm (JPEG, JPEG-LS); never the GPL pylibjpeg-libjpeg."""

_UID: Final = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def valid_uid(value: object) -> bool:
    """A UID as PS3.5 9.1 has it: digit components without leading zeros, dots, <= 64 chars."""
    return isinstance(value, str) and 0 < len(value) <= 64 and _UID.match(value) is not None
