"""What the playback composite writes over its picture: each tile's participant (role and the
name the room showed) and the wall-clock time in Beijing time, in a Chinese font.

The font is found through fontconfig (``fc-match``), the library ffmpeg's ``drawtext`` resolves
it with, and must cover Simplified Chinese: without one every name would be drawn as boxes, so
the composite is then built without captions and says why (``captions: "no_cjk_font"`` in
``composite.json``; Debian package fonts-noto-cjk).

Names never appear on a command line or in ffmpeg's messages (which reach the server log): each
label is written to a file in the build's private scratch directory and drawn with
``textfile`` and no text expansion, so whatever a display name holds is drawn as it is.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Beijing time (Asia/Shanghai): UTC+8 all year, no daylight saving since 1991.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
#: How the composite writes the time (strftime), then a word saying which clock it is.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_SUFFIX = " 北京时间"
#: A label is cut to this many characters (a tile is a few hundred pixels wide).
LABEL_CHARS = 24
#: The fontconfig pattern of the font asked for: a sans-serif face for Simplified Chinese.
FONT_PATTERN = "sans-serif:lang=zh-cn"
FC_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Font:
    """A fontconfig face that covers Simplified Chinese."""

    family: str  # what drawtext's ``font`` asks fontconfig for (it picks the face in a .ttc)
    file: str


@functools.cache
def find_cjk_font() -> Font | None:
    """The best sans-serif face for zh-CN that fontconfig knows, or ``None`` when none covers
    Chinese (fontconfig then answers with a Latin face) or fontconfig is not installed."""
    if shutil.which("fc-match") is None:
        logger.warning("fontconfig (fc-match) is missing: composites get no names or time")
        return None
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{family[0]}\n%{file}\n%{lang}", FONT_PATTERN],
            capture_output=True,
            text=True,
            timeout=FC_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        logger.warning("fc-match failed: composites get no names or time", exc_info=True)
        return None
    family, _, rest = out.partition("\n")
    file, _, langs = rest.partition("\n")
    if "zh-cn" not in langs.split("|") or not family or not file:
        logger.warning(
            "no Chinese font (fonts-noto-cjk): composites get no names or time",
            extra={"font": file},
        )
        return None
    return Font(family=family, file=file)


def clean_label(text: str) -> str:
    """One line of at most :data:`LABEL_CHARS` printable characters."""
    printable = "".join(
        " " if unicodedata.category(c)[0] in "CZ" else c for c in unicodedata.normalize("NFC", text)
    )
    words = " ".join(printable.split())
    return words if len(words) <= LABEL_CHARS else words[: LABEL_CHARS - 1] + "…"


def time_text(epoch_s: float) -> str:
    """drawtext's text for the wall-clock time of each frame: the frame's time from the start
    of the composite plus ``epoch_s`` (the session's start, shifted to Beijing time), written
    with :data:`TIME_FORMAT` (``%{pts:gmtime:...}``, colons escaped for the expansion)."""
    shifted = epoch_s + BEIJING.utcoffset(None).total_seconds()
    return "%{pts:gmtime:" + f"{shifted:.3f}:" + TIME_FORMAT.replace(":", "\\:") + "}" + TIME_SUFFIX


def time_options(font: Font, width: int, height: int) -> dict[str, Any]:
    """Where and how the time is drawn: the frame's top right corner, on a dark band."""
    size = max(14, height // 30)
    return _on_band(font, size) | {"x": f"w-tw-{size // 2}", "y": size // 2}


def label_options(font: Font, x: int, y: int, tile_h: int) -> dict[str, Any]:
    """Where and how a tile's label is drawn: its bottom left corner, on a dark band."""
    size = max(16, tile_h // 20)
    return _on_band(font, size) | {
        "expansion": "none",
        "x": x + size // 2,
        "y": f"{y + tile_h - size // 2}-th",
    }


def _on_band(font: Font, size: int) -> dict[str, Any]:
    """drawtext's options for white text of ``size`` px on a dark band."""
    return {
        "font": font.family,
        "fontsize": size,
        "fontcolor": "white",
        "box": 1,
        "boxcolor": "black@0.6",
        "boxborderw": size // 4,
    }


def shown_while(spans: Iterable[tuple[float, float]]) -> str:
    """drawtext's ``enable`` expression: true within any of ``spans`` (seconds)."""
    return "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in spans) or "0"


def write_label(scratch: Path, slot: int, text: str) -> Path:
    """The label of grid cell ``slot`` as a file in the private scratch directory."""
    path = scratch / f"label-{slot}.txt"
    path.write_text(clean_label(text), encoding="utf-8")
    return path
