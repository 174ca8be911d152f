"""Synthetic aiortc peers for tests: publishers that paint a frame counter, receivers that read it.

The server must never decode; these clients may (a browser does too).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
)
from aiortc.mediastreams import MediaStreamError

WIDTH, HEIGHT = 320, 240
BITS = 16
VIDEO_CLOCK = 90000
FPS = 30


def paint_counter(n: int) -> np.ndarray:
    """A grey image whose 16 vertical bands spell ``n`` in binary (white = 1)."""
    img = np.full((HEIGHT, WIDTH), 16, dtype=np.uint8)
    band = WIDTH // BITS
    for bit in range(BITS):
        if n >> (BITS - 1 - bit) & 1:
            img[:, bit * band : (bit + 1) * band] = 235
    return img


def read_counter(frame: av.VideoFrame) -> int:
    """Read the number painted by :func:`paint_counter` from a decoded frame."""
    img = frame.to_ndarray(format="gray")
    h, w = img.shape
    band = w // BITS
    n = 0
    for bit in range(BITS):
        x0 = bit * band + band // 4
        x1 = (bit + 1) * band - band // 4
        value = float(img[h // 4 : 3 * h // 4, x0:x1].mean())
        n = (n << 1) | (1 if value > 128 else 0)
    return n


class CounterTrack(MediaStreamTrack):
    """Video at 30 fps; frame ``n`` carries ``n`` painted on it."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.count / FPS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing a real-time source, not waiting for a condition
        frame = av.VideoFrame.from_ndarray(paint_counter(self.count), format="gray")
        frame = frame.reformat(format="yuv420p")
        frame.pts = self.count * (VIDEO_CLOCK // FPS)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.count += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """Audio: a 440 Hz tone in 20 ms frames at 48 kHz."""

    kind = "audio"

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self.amplitude = amplitude  # change it while running to speak louder or softer
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._samples / 48000
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(960) + self._samples) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * self.amplitude).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


@dataclass
class Received:
    """What one subscriber got from one remote track."""

    kind: str
    frames: int = 0
    counters: list[int] = field(default_factory=list)
    first_frame_at: float | None = None


class Subscriber:
    """Reads every track it receives, recording painted counters and arrival times."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.by_mid: dict[str, Received] = {}
        self._tasks: list[asyncio.Task[None]] = []
        pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        received = Received(kind=track.kind)
        self.by_mid[str(mid)] = received
        self._tasks.append(asyncio.ensure_future(self._read(track, received)))

    async def _read(self, track: MediaStreamTrack, received: Received) -> None:
        try:
            while True:
                frame = await track.recv()
                received.frames += 1
                if received.first_frame_at is None:
                    received.first_frame_at = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    received.counters.append(read_counter(frame))
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


def client_pc(ice_servers: list[dict[str, Any]] | None = None) -> RTCPeerConnection:
    """A client peer that never reaches for a public STUN server, bundling as browsers do.

    (With aiortc's default bundle policy, a second m-line of a kind gets a transport that BUNDLE
    discards, and that track never plays.) ``ice_servers``: RTCIceServer dicts, e.g. the TURN
    servers a join ack names.
    """
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers or []
    ]
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


async def stall_loop(seconds: float) -> None:
    """Hold the running event loop for ``seconds`` with a blocking sleep in a callback, as a
    busy process does, and return once it ran (a fault injected on purpose)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def hold() -> None:
        time.sleep(seconds)
        done.set_result(None)

    loop.call_soon(hold)
    await done


async def wait_for(predicate, timeout: float, interval: float = 0.02, message: Any = "") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass. ``message`` may be a
    callable: it is called at the deadline, to say what the state was then."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = message() if callable(message) else message
            raise AssertionError(said or "condition not met in time")
        await asyncio.sleep(interval)
