"""RTP packets -> whole frames, in order, with the packets that never came counted as lost.

Packets are released in sequence order. A hole is waited for (a NACKed packet may still come
as a retransmission) until a packet behind it has waited ``hold_s``; then it is counted lost
and the frame it belonged to is written with what arrived (write what arrives, and say what is
missing). Nothing here decodes: a frame is the depacketized bytes of its packets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket


@dataclass
class Frame:
    timestamp: int  # extended (unwrapped) RTP timestamp
    payloads: list[bytes] = field(default_factory=list)
    first_seq: int = 0  # extended sequence numbers
    last_seq: int = 0
    packets: int = 0  # packets that arrived (a lost one is not counted here)
    complete: bool = True  # False when a packet of it was lost
    starts_keyframe: bool = False
    arrival: float = 0.0  # wall-clock arrival of its first packet


def unwrap(value: int, reference: int, bits: int) -> int:
    """The extended value nearest ``reference`` whose low ``bits`` are ``value``."""
    span = 1 << bits
    half = span >> 1
    candidate = (reference & ~(span - 1)) | value
    if candidate - reference > half:
        candidate -= span
    elif reference - candidate > half:
        candidate += span
    return candidate


class FrameAssembler:
    """Reorders one stream's packets and groups them into frames.

    ``on_frame(frame)`` is called for each frame in order. ``starts_keyframe(payload)`` says
    whether a packet's payload begins a keyframe; ``per_packet_frames``: every packet is a
    frame of its own (audio).
    """

    def __init__(
        self,
        on_frame: Callable[[Frame], None],
        *,
        depayload: Callable[[bytes], bytes],
        starts_keyframe: Callable[[bytes], bool],
        per_packet_frames: bool,
        hold_s: float,
        on_lost: Callable[[int, int], None] | None = None,
    ) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._depayload = depayload
        self._starts_keyframe = starts_keyframe
        self._per_packet = per_packet_frames
        self._hold_s = hold_s
        self._pending: dict[int, tuple[RtpPacket, float, float]] = {}  # seq -> (packet, mono, wall)
        self._next: int | None = None  # next extended sequence number to release
        self._highest = 0
        self._ts_reference: int | None = None
        self._frame: Frame | None = None
        self.packets = 0  # released into frames
        self.lost = 0
        self.duplicates = 0
        self.late = 0  # arrived after they were counted lost
        self.malformed = 0  # counted in ``packets``, their payload not written
        self.gaps: list[tuple[int, int]] = []  # lost ranges of extended sequence numbers

    def add(self, packet: RtpPacket, monotonic: float, wall: float) -> None:
        if self._next is None:
            if self._ts_reference is None:  # the first packet ever
                self._next = self._highest = packet.sequence_number
                self._ts_reference = packet.timestamp
            else:  # after a pause: numbering goes on from where it was
                self._next = self._highest = unwrap(packet.sequence_number, self._highest + 1, 16)
        seq = unwrap(packet.sequence_number, self._highest, 16)
        if seq < self._next:
            if any(first <= seq <= last for first, last in self.gaps[-64:]):
                self.late += 1  # given up on: it is counted lost already
            else:
                self.duplicates += 1  # a retransmission of a packet already written
            return
        if seq == self._next and not self._pending:  # in order, nothing held: the usual case
            self._take(seq, packet, monotonic, wall)
            self._next += 1
            self._highest = max(self._highest, seq)
            return
        if seq in self._pending:
            self.duplicates += 1
            return
        self._pending[seq] = (packet, monotonic, wall)
        self._highest = max(self._highest, seq)
        self.release(monotonic)

    def release(self, monotonic: float, *, flush: bool = False) -> None:
        """Release every packet that is in order; give up on holes older than the hold."""
        if self._next is None:
            return
        while self._pending:
            item = self._pending.pop(self._next, None)
            if item is None:
                oldest = min(t for _, t, _ in self._pending.values())
                if not flush and monotonic - oldest < self._hold_s:
                    return
                self._lose(min(self._pending))
                continue
            self._take(self._next, *item)
            self._next += 1
        if flush:
            self._finish_frame()

    def restart(self, monotonic: float) -> None:
        """Forwarding paused and goes on: what was held back is not lost, numbering starts
        again at the next packet (timestamps stay continuous)."""
        self.release(monotonic, flush=True)
        self._next = None

    def _lose(self, up_to: int) -> None:
        """Sequence numbers ``self._next .. up_to - 1`` never came."""
        assert self._next is not None
        count = up_to - self._next
        self.lost += count
        self.gaps.append((self._next, up_to - 1))
        if self._on_lost is not None:
            self._on_lost(self._next, up_to - 1)
        if self._frame is not None:
            self._frame.complete = False
        self._next = up_to

    def _take(self, seq: int, packet: RtpPacket, _monotonic: float, wall: float) -> None:
        assert self._ts_reference is not None
        timestamp = unwrap(packet.timestamp, self._ts_reference, 32)
        self._ts_reference = timestamp
        frame = self._frame
        if frame is not None and frame.timestamp != timestamp:
            self._finish_frame()
            frame = None
        if frame is None:
            frame = self._frame = Frame(timestamp, first_seq=seq, arrival=wall)
            frame.starts_keyframe = self._starts_keyframe(packet.payload)
            if self.gaps and self.gaps[-1][1] == seq - 1 and not self._per_packet:
                frame.complete = False  # its first packets may be the ones lost
        try:
            frame.payloads.append(self._depayload(packet.payload))
        except ValueError:  # a payload its codec cannot carry: counted, never fatal
            self.malformed += 1
            frame.complete = False
        frame.last_seq = seq
        frame.packets += 1
        self.packets += 1
        if self._per_packet or packet.marker:
            self._finish_frame()

    def _finish_frame(self) -> None:
        frame, self._frame = self._frame, None
        if frame is not None:
            self._on_frame(frame)
