"""Synthetic publishers for lip-sync checks: a flash and a beep at the same instants."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

FPS = 30
RATE = 48000
WIDTH, HEIGHT = 320, 240
#: A flash (white picture) and a beep (1 kHz) start together every PERIOD_S, lasting PULSE_S.
PERIOD_S = 2.0
PULSE_S = 0.1


class Epoch:
    """The instant both tracks count from, fixed by whichever is read first."""

    def __init__(self) -> None:
        self.start: float | None = None

    def now(self) -> float:
        if self.start is None:
            self.start = time.monotonic()
        return self.start


def _in_pulse(t: float) -> bool:
    return t >= PERIOD_S and (t % PERIOD_S) < PULSE_S - 1e-9


class FlashTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, epoch: Epoch, *, flashes: bool = True) -> None:
        super().__init__()
        self._epoch = epoch
        self._flashes = flashes
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        start = self._epoch.now()
        t = self._count / FPS
        delay = start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing a real-time source
        level = 235 if self._flashes and _in_pulse(t) else 16
        frame = av.VideoFrame.from_ndarray(
            np.full((HEIGHT, WIDTH), level, np.uint8), format="gray"
        ).reformat(format="yuv420p")
        frame.pts = self._count * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


class BeepTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, epoch: Epoch) -> None:
        super().__init__()
        self._epoch = epoch
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        start = self._epoch.now()
        delay = start + self._samples / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(960) + self._samples) / RATE
        pulse = np.array([_in_pulse(x) for x in t])
        pcm = np.where(pulse, np.sin(2 * np.pi * 1000 * t) * 16000, 0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, RATE)
        self._samples += 960
        return frame


def flash_onsets(path: str) -> list[float]:
    """Times (s) at which the composite's picture turns bright."""
    onsets, bright = [], False
    with av.open(path) as container:
        for frame in container.decode(video=0):
            # the picture between the captions (the time above, the names in the tiles' bottom
            # bands): their white text is always there
            picture = frame.to_ndarray(format="gray")
            band = picture.shape[0] // 8
            level = float(picture[band:-band].max())
            now_bright = level > 128
            if now_bright and not bright:
                onsets.append(float(frame.time))
            bright = now_bright
    return onsets


def beep_onsets(path: str) -> list[float]:
    """Times (s) at which the composite's sound starts after silence (1 ms resolution)."""
    chunks = []
    start: float | None = None
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            if start is None:
                start = float(frame.time)
            chunks.append(np.abs(frame.to_ndarray()).max(axis=0))
    assert start is not None
    envelope = np.concatenate(chunks)
    rate = RATE
    window = rate // 1000
    blocks = envelope[: len(envelope) // window * window].reshape(-1, window).max(axis=1)
    loud = blocks > 0.05 * float(blocks.max() or 1)
    onsets, previous_end = [], -1.0
    for i in np.flatnonzero(loud):
        t = start + i / 1000
        if t - previous_end > 0.5:
            onsets.append(t)
        previous_end = t
    return onsets
