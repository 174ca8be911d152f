"""Reading the captions of a playback composite back: the frames' caption regions against the
expected texts drawn by ffmpeg with the same font, size and place on a black frame.

No OCR: the white text (over its dark band) is thresholded into a mask, and a region matches
the text whose reference mask differs from it in the fewest pixels.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import ffmpeg
import numpy as np

from recording import captions

WIDTH, HEIGHT = 1280, 720  # the composite's frame (recording.composite.ffmpeg_command)
FONT = captions.Font("", "")  # the sizes and places below read no font


@dataclass(frozen=True)
class Box:
    top: int
    bottom: int
    left: int
    right: int

    def of(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.top : self.bottom, self.left : self.right] > 128


def grid(cells: int) -> tuple[int, int, int]:
    """columns, tile width and height of the composite's grid of ``cells``."""
    columns = int(np.ceil(np.sqrt(cells)))
    rows = int(np.ceil(cells / columns))
    return columns, (WIDTH // columns) // 2 * 2, (HEIGHT // rows) // 2 * 2


def label_box(slot: int, cells: int) -> Box:
    """Where cell ``slot``'s label is drawn: the bottom band of its tile."""
    columns, tile_w, tile_h = grid(cells)
    x, y = (slot % columns) * tile_w, (slot // columns) * tile_h
    size = int(captions.label_options(FONT, 0, 0, tile_h)["fontsize"])
    return Box(y + tile_h - 2 * size, y + tile_h, x, x + tile_w)


def time_box() -> Box:
    size = int(captions.time_options(FONT, WIDTH, HEIGHT)["fontsize"])
    return Box(0, 2 * size, WIDTH // 2, WIDTH)


def frames_at(path: Path, times: list[float]) -> list[tuple[float, np.ndarray]]:
    """The first decoded frame at or after each of ``times`` (s), as (its time, gray pixels)."""
    wanted = sorted(times)
    found: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if not wanted:
                break
            if frame.time is not None and frame.time >= wanted[0]:
                found.append((float(frame.time), frame.to_ndarray(format="gray")))
                wanted.pop(0)
    assert not wanted, f"no frame at {wanted}"
    return found


def render(font: captions.Font, labels: list[str], clock: str) -> np.ndarray:
    """``labels`` (one per cell) and ``clock`` drawn as the composite draws them, on black."""
    columns, tile_w, tile_h = grid(len(labels))
    with tempfile.TemporaryDirectory(prefix="tc-captions-") as scratch:
        video = ffmpeg.input(f"color=c=black:s={WIDTH}x{HEIGHT}:r=1:d=1", f="lavfi")
        for slot, text in enumerate(labels):
            x, y = (slot % columns) * tile_w, (slot // columns) * tile_h
            file = captions.write_label(Path(scratch), slot, text)
            video = video.filter(
                "drawtext", textfile=str(file), **captions.label_options(font, x, y, tile_h)
            )
        clock_file = Path(scratch) / "clock.txt"
        clock_file.write_text(clock, encoding="utf-8")
        video = video.filter(
            "drawtext",
            textfile=str(clock_file),
            expansion="none",
            **captions.time_options(font, WIDTH, HEIGHT),
        )
        command = ffmpeg.compile(
            ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt="gray", vframes=1),
            overwrite_output=True,
        )
        raw = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(HEIGHT, WIDTH)


def mismatch(region: np.ndarray, reference: np.ndarray) -> int:
    """Pixels lit in one mask and not the other."""
    return int(np.count_nonzero(region ^ reference))


def agreement(region: np.ndarray, right: np.ndarray, wrong: np.ndarray) -> float:
    """Of the pixels where two candidate texts differ, the share ``region`` has as ``right``
    has them (1: reads as ``right``, 0: as ``wrong``): the few pixels of one changed digit
    decide, not the whole line's compression noise."""
    differ = right ^ wrong
    assert differ.any(), "the two candidates look the same"
    return float(np.count_nonzero(region[differ] == right[differ]) / np.count_nonzero(differ))
