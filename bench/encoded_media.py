"""Pre-encoded media for load generation: encode a short clip once, then loop its packets.

aiortc's senders pack an ``av.Packet`` without encoding it, so a publisher that yields packets
costs the load generator almost nothing. The clip is encoded with a single keyframe (the first
frame); looping it makes a keyframe every clip length. Timestamps keep advancing across loops.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz


@dataclass(frozen=True)
class EncodedClip:
    """The encoded packets of a clip, in order, and their spacing."""

    kind: str
    packets: tuple[bytes, ...]
    ticks_per_packet: int  # in 1/clock_rate
    clock_rate: int

    @property
    def seconds(self) -> float:
        return len(self.packets) * self.ticks_per_packet / self.clock_rate

    @property
    def bitrate(self) -> float:
        """Average bits per second of the clip."""
        return sum(len(p) for p in self.packets) * 8 / self.seconds


def _video_picture(n: int, width: int, height: int, texture: np.ndarray) -> av.VideoFrame:
    """A textured picture that pans, with a moving bright box: motion an encoder must code."""
    y = np.roll(texture, shift=(n * 2, n * 3), axis=(0, 1))[:height, :width].copy()
    x0 = (n * 7) % (width - 80)
    y0 = (n * 5) % (height - 80)
    y[y0 : y0 + 80, x0 : x0 + 80] = 235
    u = np.full((height // 2, width // 2), 128 + (n % 60) - 30, dtype=np.uint8)
    v = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v), strict=True):
        # planes may be padded: copy row by row through the line size
        buffer = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        buffer[: data.shape[0], : data.shape[1]] = data
    return frame


def encode_vp8(
    seconds: float = 5.0,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate: int = 1_000_000,
) -> EncodedClip:
    """Encode ``seconds`` of synthetic VP8 with libvpx: one keyframe, then inter frames only."""
    frames = round(seconds * fps)
    rng = np.random.default_rng(7)
    coarse = rng.integers(40, 200, size=(height // 8 + 8, width // 8 + 8), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((8, 8), dtype=np.uint8))  # blocks, so it compresses
    texture = texture + rng.integers(0, 12, size=texture.shape, dtype=np.uint8)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = frames + 1  # the clip's only keyframe is its first frame
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "4",
        "lag-in-frames": "0",  # no alt-ref frames: one packet per frame, in order
        "auto-alt-ref": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    packets: list[bytes] = []
    for n in range(frames):
        picture = _video_picture(n, width, height, texture)
        picture.pts = n
        picture.time_base = codec.time_base
        packets.extend(bytes(p) for p in codec.encode(picture))
    packets.extend(bytes(p) for p in codec.encode(None))
    return EncodedClip("video", tuple(packets), VIDEO_CLOCK // fps, VIDEO_CLOCK)


def encode_opus(seconds: float = 5.0, bitrate: int = 32000) -> EncodedClip:
    """Encode ``seconds`` of a tone with a little noise as 20 ms Opus packets."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, AUDIO_CLOCK)
    rng = np.random.default_rng(11)
    packets: list[bytes] = []
    for i in range(round(seconds * AUDIO_CLOCK / OPUS_FRAME_SAMPLES)):
        t = (np.arange(OPUS_FRAME_SAMPLES) + i * OPUS_FRAME_SAMPLES) / AUDIO_CLOCK
        pcm = np.sin(2 * np.pi * 440 * t) * 6000 + rng.normal(0, 300, OPUS_FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(
            pcm.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = i * OPUS_FRAME_SAMPLES
        packets.extend(bytes(p) for p in codec.encode(frame))
    return EncodedClip("audio", tuple(packets), OPUS_FRAME_SAMPLES, AUDIO_CLOCK)


class EncodedTrack(MediaStreamTrack):
    """Yields a clip's packets in real time, looping, with timestamps that keep advancing."""

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._time_base = fractions.Fraction(1, clip.clock_rate)
        self._count = 0
        self._start: float | None = None

    @property
    def sent(self) -> int:
        """Packets (frames) yielded so far."""
        return self._count

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        clip = self._clip
        due = self._start + self._count * clip.ticks_per_packet / clip.clock_rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing a real-time source
        packet = av.Packet(clip.packets[self._count % len(clip.packets)])
        packet.pts = self._count * clip.ticks_per_packet
        packet.time_base = self._time_base
        self._count += 1
        return packet
