"""Images made in the test with Pillow: a photo with GPS EXIF, a decompression bomb, a fake JPEG."""

from __future__ import annotations

import io
import os
import zlib
from functools import lru_cache

from PIL import ExifTags, Image

GPS_LATITUDE = (39.0, 54.0, 27.12)


def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()


def png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 255, 200)).save(out, "PNG")
    return out.getvalue()


def jpeg_with_gps(width: int = 80, height: int = 40) -> bytes:
    """A JPEG whose EXIF holds a GPS position, a camera model and orientation 6 (turn 90°)."""
    image = Image.new("RGB", (width, height), (10, 200, 10))
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "TestPhone 1"
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (116.0, 23.0, 29.64)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    return data


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


@lru_cache(maxsize=1)
def png_bomb(side: int = 20_000) -> bytes:
    """A small PNG that claims ``side`` x ``side`` grey pixels (400 megapixels), all zero.

    Its compressed rows are a few hundred kilobytes; decoded, they would take ``side**2`` bytes.
    """
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def fake_jpeg_executable() -> bytes:
    """What a file named photo.jpg may really be: an ELF executable."""
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x90" * 512


def oversized_jpeg() -> bytes:
    """A real JPEG over 10 MiB (random noise does not compress)."""
    noise = Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3))
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=100, subsampling=0)
    data = out.getvalue()
    assert len(data) > 10 * 1024 * 1024, len(data)
    return data
