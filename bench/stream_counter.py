"""Subscriber-side RTP counting that never decodes: packets, sequence numbers, loss, arrivals.

Each receiver's packet handler is replaced (``intercept_receiver``) by a :class:`StreamCounter`,
so the load generator spends nothing on jitter buffers or decoders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from media import _aiortc_seam as seam


@dataclass(frozen=True)
class CounterSnapshot:
    packets: int
    bytes: int
    frames: int
    highest_seq: int  # extended over wraps; -1 before the first packet
    at_ns: int
    duplicates: int = 0  # packets whose sequence number had arrived already


class StreamCounter:
    """Counts one received stream (the first SSRC seen on its receiver)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.clock_rate = 90000 if kind == "video" else 48000
        self.ssrc: int | None = None
        self.packets = 0
        self.bytes = 0
        self.frames = 0  # packets with the marker bit: video frames (audio: talk spurts)
        self.highest_seq = -1
        self.duplicates = 0
        self._seen = bytearray(0x10000)  # by 16-bit sequence number: arrived since it was due
        self.first_arrival_ns: int | None = None
        self.last_arrival_ns: int | None = None
        self.jitter = 0.0  # RFC 3550 interarrival jitter, in RTP timestamp units
        self._last_transit: float | None = None

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        now = time.perf_counter_ns()
        if self.ssrc is None:
            if not packet.payload:
                # a padding-only probe (the server's RTX stream while the video is paused for
                # congestion) may come first: the stream counted is the media's
                return
            self.ssrc = packet.ssrc
            self.first_arrival_ns = now
            self.highest_seq = packet.sequence_number - 1
        elif packet.ssrc != self.ssrc:
            return  # a retransmission stream or a stray: not the media we count
        seq = packet.sequence_number
        delta = (seq - self.highest_seq) & 0xFFFF
        seen = self._seen
        if 0 < delta < 0x8000:  # newer (possibly across a wrap); else reordered or duplicate
            for skipped in range(self.highest_seq + 1, self.highest_seq + delta):
                seen[skipped & 0xFFFF] = 0  # due now, not arrived: a gap, unless it comes late
            self.highest_seq += delta
        elif seen[seq]:
            self.duplicates += 1  # a resend of what arrived: not counted again
            return
        seen[seq] = 1
        self.packets += 1
        self.bytes += len(packet.payload)
        if packet.marker:
            self.frames += 1
        self.last_arrival_ns = now
        transit = now * self.clock_rate / 1e9 - packet.timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d < self.clock_rate:  # skip a timestamp wrap
                self.jitter += (d - self.jitter) / 16
        self._last_transit = transit

    def snapshot(self) -> CounterSnapshot:
        return CounterSnapshot(
            self.packets,
            self.bytes,
            self.frames,
            self.highest_seq,
            time.perf_counter_ns(),
            self.duplicates,
        )


def count_receivers(pc: RTCPeerConnection) -> list[StreamCounter]:
    """Replace the packet handler of every receiver of ``pc`` with a fresh counter."""
    counters = []
    for transceiver in pc.getTransceivers():
        counter = StreamCounter(transceiver.kind)
        seam.intercept_receiver(transceiver.receiver, counter.on_rtp)
        counters.append(counter)
    return counters


def window_loss(start: CounterSnapshot, end: CounterSnapshot) -> tuple[int, int]:
    """(expected, lost) packets between two snapshots of one stream."""
    if start.highest_seq < 0:
        # Not flowing when the window opened. The bench waits for every stream first, so this
        # is only a guard; count nothing rather than guess.
        return 0, 0
    expected = end.highest_seq - start.highest_seq
    received = end.packets - start.packets
    return expected, max(0, expected - received)
