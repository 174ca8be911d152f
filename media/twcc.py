"""Transport-wide congestion control: the header extension, the feedback, and both ends of it.

draft-holmer-rmcat-transport-wide-cc-extensions-01. Every RTP packet on a transport carries a
transport-wide sequence number (a header extension); the receiver reports, every 50-100 ms, when
each one arrived (RTCP transport feedback, PT 205 FMT 15); the sender compares that with when it
sent them and estimates the bandwidth itself (media/gcc.py), instead of waiting for the
receiver's REMB, which climbs slowly.

* Publisher leg (browser -> server): :class:`FeedbackRecorder` notes the arrival of each numbered
  packet and builds the feedback, so the browser's own send-side estimator drives its encoder.
* Subscriber leg (server -> browser): :class:`TransportWideSender` numbers what we forward and
  hands the browser's feedback to a :class:`~media.gcc.SendSideEstimator` (its compiled core,
  media/_gcc_core.pyx, keeps what was sent and matches the feedback to it), whose estimate
  picks the simulcast layer instead of REMB.

No aiortc here: media/_aiortc_seam.py wires these to aiortc's transports; the SDP helpers below
work on the text, as media/simulcast.py does.
"""

from __future__ import annotations

import random
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import _gcc_core
from .gcc import SendSideEstimator
from .rtp_writer import URI_TRANSPORT_CC

__all__ = ["URI_TRANSPORT_CC", "FeedbackRecorder", "TransportFeedback", "TransportWideSender"]
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
#: Receive deltas count in 250 us, the reference time in 64 ms.
DELTA_TICK_US = 250
REFERENCE_TICK_US = 64_000
#: The publisher's feedback goes out this often (libwebrtc: 50-250 ms, 100 by default).
FEEDBACK_INTERVAL_US = 50_000
#: One feedback packet reports at most this many sequence numbers.
MAX_STATUSES = 1000
#: The feedback counts as flowing while the last one is at most this old.
ACTIVE_FOR_US = 1_500_000

_HEAD = struct.Struct("!BBHIIHHI")  # common header, sender, media, base, count, ref|fb count
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")


# --- the feedback packet ----------------------------------------------------------------------


@dataclass(frozen=True)
class TransportFeedback:
    """One transport feedback: from ``base_sequence`` on, each packet's arrival in microseconds
    after ``reference_time`` x 64 ms (on the receiver's clock), None for one not received."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int  # 24 bits
    feedback_count: int  # 8 bits
    arrivals: tuple[int | None, ...]


def parse_feedback(data: bytes) -> TransportFeedback:
    """Parse one RTCP transport feedback packet (header included); ValueError if malformed
    (the compiled parser that :class:`TransportWideSender` runs on every feedback)."""
    return TransportFeedback(*_gcc_core.parse_feedback(data))


def build_feedback(feedback: TransportFeedback) -> bytes:
    """Serialize ``feedback``; arrivals are rounded down to 250 us. ValueError when two
    consecutive arrivals are further apart than a delta holds (about 8 s)."""
    symbols: list[int] = []
    deltas = bytearray()
    previous = 0
    for arrival in feedback.arrivals:
        if arrival is None:
            symbols.append(0)
            continue
        ticks = arrival // DELTA_TICK_US
        delta = ticks - previous
        previous = ticks
        if 0 <= delta <= 0xFF:
            symbols.append(1)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(2)
            deltas += delta.to_bytes(2, "big", signed=True)
        else:
            raise ValueError("an arrival delta does not fit")
    chunks = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        j = i
        while j < n and symbols[j] == symbols[i] and j - i < 0x1FFF:
            j += 1
        if j - i >= 7:
            chunks += ((symbols[i] << 13) | (j - i)).to_bytes(2, "big")
            i = j
            continue
        window = symbols[i : i + 14]
        if len(window) == 14 and max(window) <= 1:
            value = 0x8000
            for k, symbol in enumerate(window):
                value |= symbol << (13 - k)
            i += 14
        else:
            window = symbols[i : i + 7]
            value = 0xC000
            for k, symbol in enumerate(window):
                value |= symbol << (12 - 2 * k)
            i += 7
        chunks += value.to_bytes(2, "big")
    body = chunks + deltas
    padding = -len(body) % 4
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    first = 0x80 | FMT_TRANSPORT_CC | (0x20 if padding else 0)
    head = _HEAD.pack(
        first,
        RTCP_RTPFB,
        (_HEAD.size + len(body)) // 4 - 1,
        feedback.sender_ssrc & 0xFFFFFFFF,
        feedback.media_ssrc & 0xFFFFFFFF,
        feedback.base_sequence & 0xFFFF,
        len(feedback.arrivals),
        ((feedback.reference_time & 0xFFFFFF) << 8) | (feedback.feedback_count & 0xFF),
    )
    return head + bytes(body)


def split_compound(data: bytes) -> tuple[list[bytes], bytes]:
    """Split a (decrypted) compound RTCP packet into its transport feedback packets and the
    rest, unchanged. A packet whose length runs past the end goes into the rest (the rest's
    parser refuses it as it always did)."""
    feedback: list[bytes] = []
    rest: list[bytes] = []
    pos = 0
    while pos + 4 <= len(data):
        end = pos + 4 + ((data[pos + 2] << 8) | data[pos + 3]) * 4
        if end > len(data):
            break
        if data[pos + 1] == RTCP_RTPFB and data[pos] & 0x1F == FMT_TRANSPORT_CC:
            feedback.append(data[pos:end])
        else:
            rest.append(data[pos:end])
        pos = end
    if not feedback:
        return [], data
    return feedback, b"".join(rest) + data[pos:]


# --- the SDP ------------------------------------------------------------------------------------


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    head: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections


def _mid(lines: list[str]) -> str | None:
    return next((line[6:].strip() for line in lines if line.startswith("a=mid:")), None)


def transport_cc_ids(sdp: str) -> dict[str, int]:
    """mid -> the transport-wide sequence number's extension id, for the audio and video
    sections of ``sdp`` that negotiate transport-cc (the extension and the feedback)."""
    found: dict[str, int] = {}
    for lines in _sections(sdp)[1]:
        if not lines[0].startswith(("m=audio", "m=video")):
            continue
        mid = _mid(lines)
        ext_id = None
        for line in lines:
            match = _EXTMAP.match(line)
            if match and match.group(2) == URI_TRANSPORT_CC:
                ext_id = int(match.group(1))
        feedback = any(line.startswith("a=rtcp-fb:") and "transport-cc" in line for line in lines)
        if mid is not None and ext_id is not None and 1 <= ext_id <= 14 and feedback:
            found[mid] = ext_id
    return found


def offer_transport_cc(sdp: str) -> str:
    """Add transport-cc to the audio and video sections of our offer (aiortc offers none): the
    extension, with one id free in every section (they share it under BUNDLE), and
    ``a=rtcp-fb:<pt> transport-cc`` for each codec but RTX."""
    head, sections = _sections(sdp)
    used = {
        int(match.group(1))
        for lines in sections
        for line in lines
        if (match := _EXTMAP.match(line)) is not None
    }
    free = [i for i in range(1, 15) if i not in used]
    if not free:
        return sdp
    ext_id = free[-1] if 5 not in free else 5
    out = list(head)
    for lines in sections:
        if not lines[0].startswith(("m=audio", "m=video")) or any(
            URI_TRANSPORT_CC in line for line in lines
        ):
            out += lines
            continue
        rtx = {
            line.split(":", 1)[1].split()[0]
            for line in lines
            if line.startswith("a=rtpmap:") and "/rtx/" in line.lower()
        }
        payload_types = [pt for pt in lines[0].split()[3:] if pt not in rtx]
        added = False
        for line in lines:
            out.append(line)
            if line.startswith("a=mid:") and not added:
                out.append(f"a=extmap:{ext_id} {URI_TRANSPORT_CC}")
                added = True
            if line.startswith("a=rtcp-fb:") or line.startswith("a=rtpmap:"):
                pt = line.split(":", 1)[1].split()[0]
                if line.startswith("a=rtpmap:") and pt in payload_types:
                    out.append(f"a=rtcp-fb:{pt} transport-cc")
        if not added:
            out.append(f"a=extmap:{ext_id} {URI_TRANSPORT_CC}")
    return "\r\n".join(out) + "\r\n"


# --- publisher leg: the feedback we send ----------------------------------------------------


class FeedbackRecorder:
    """Arrival times of one transport's numbered packets, reported as transport feedback.

    ``record`` on each packet; ``take`` returns the feedback due (every
    :data:`FEEDBACK_INTERVAL_US`), covering every sequence number since the last one: a packet
    that arrives after its number was reported missing stays missing, as in libwebrtc.
    """

    __slots__ = (
        "_arrivals",
        "_count",
        "_highest",
        "_last_sent_us",
        "_next_base",
        "late",
        "media_ssrc",
        "sender_ssrc",
        "sent",
    )

    def __init__(self, sender_ssrc: int | None = None) -> None:
        self.sender_ssrc = sender_ssrc if sender_ssrc is not None else random.getrandbits(32)
        self.media_ssrc = 0
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival (us)
        self._highest: int | None = None  # unwrapped
        self._next_base: int | None = None
        self._count = 0
        self._last_sent_us = 0
        self.sent = 0
        self.late = 0

    def record(self, sequence: int, arrival_us: int, media_ssrc: int) -> None:
        highest = self._highest
        if highest is None:
            unwrapped = sequence
        else:
            unwrapped = highest + ((sequence - highest + 0x8000) & 0xFFFF) - 0x8000
        if self._next_base is not None and unwrapped < self._next_base:
            self.late += 1
            return
        if highest is None or unwrapped > highest:
            if highest is not None and unwrapped - highest > MAX_STATUSES * 8:
                # a jump (the sender restarted its numbering): start over from here
                self._arrivals.clear()
                self._next_base = None
            self._highest = unwrapped
        self._arrivals.setdefault(unwrapped, arrival_us)
        self.media_ssrc = media_ssrc

    def take(self, now_us: int, *, force: bool = False) -> list[bytes]:
        """The feedback packets due now (none before the interval has passed)."""
        if not self._arrivals or (not force and now_us - self._last_sent_us < FEEDBACK_INTERVAL_US):
            return []
        self._last_sent_us = now_us
        arrivals = self._arrivals
        highest = max(arrivals)
        base = self._next_base if self._next_base is not None else min(arrivals)
        base = max(base, highest - MAX_STATUSES * 8 + 1)
        packets: list[bytes] = []
        while base <= highest:
            stop = min(highest + 1, base + MAX_STATUSES)
            first = next((arrivals[s] for s in range(base, stop) if s in arrivals), None)
            if first is None:  # a gap of a thousand numbers: nothing to say about it
                base = stop
                continue
            reference = first // REFERENCE_TICK_US
            origin = reference * REFERENCE_TICK_US
            offsets: list[int | None] = []
            previous = 0
            for seq in range(base, stop):
                arrival = arrivals.get(seq)
                if arrival is not None:
                    ticks = (arrival - origin) // DELTA_TICK_US
                    if not -0x8000 <= ticks - previous <= 0x7FFF:
                        break  # cannot say it in this packet: the next one starts here
                    previous = ticks
                    offsets.append(arrival - origin)
                else:
                    offsets.append(None)
            packets.append(
                build_feedback(
                    TransportFeedback(
                        sender_ssrc=self.sender_ssrc,
                        media_ssrc=self.media_ssrc,
                        base_sequence=base & 0xFFFF,
                        reference_time=reference & 0xFFFFFF,
                        feedback_count=self._count & 0xFF,
                        arrivals=tuple(offsets),
                    )
                )
            )
            self._count += 1
            base += len(offsets)
        self._next_base = highest + 1
        arrivals.clear()
        self.sent += len(packets)
        return packets


# --- subscriber leg: what we sent, and what the browser says of it --------------------------


class TransportWideSender:
    """Numbers the packets sent on one transport and estimates its bandwidth from the
    receiver's feedback (one per subscribe transport: the estimate is the transport's). What
    was sent is kept by the estimator's compiled core, which matches the feedback to it.

    ``next_sequence()`` numbers a packet; ``sent(sequence, size, now_us=-1)`` notes it went out
    (now, by default). Both are the core's own, called for every packet sent: no Python
    between the Consumer and the core (a probe cluster, the rare case, calls back into
    :meth:`.SendSideEstimator.on_sent`)."""

    __slots__ = (
        "_core",
        "_last_feedback_us",
        "estimator",
        "feedback_received",
        "feedback_refused",
        "next_sequence",
        "sent",
    )

    next_sequence: Callable[[], int]
    sent: Callable[..., None]

    def __init__(self, estimator: SendSideEstimator | None = None) -> None:
        self.estimator = estimator or SendSideEstimator()
        core = self._core = self.estimator.core
        core.sequence = random.randint(0, 0xFFFF)
        self.next_sequence = core.next_sequence
        self.sent = core.sent
        self._last_feedback_us: int | None = None
        self.feedback_received = 0
        self.feedback_refused = 0

    @property
    def active(self) -> bool:
        """Feedback flows: the estimate is this transport's (else REMB is)."""
        last = self._last_feedback_us
        return last is not None and time.monotonic_ns() // 1000 - last < ACTIVE_FOR_US

    @property
    def estimate(self) -> int | None:
        return self.estimator.estimate if self.active else None

    def on_feedback(self, data: bytes, now_us: int | None = None) -> None:
        """Take one transport feedback packet from the receiver (malformed ones are counted)."""
        try:
            matched = self._core.feedback(data)
        except ValueError:
            self.feedback_refused += 1
            return
        if now_us is None:
            now_us = time.monotonic_ns() // 1000
        self.feedback_received += 1
        self._last_feedback_us = now_us
        if matched:
            self.estimator.judge(now_us)


def transport_sequence(data: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number of a serialized (or SRTP-protected: the header is
    not encrypted) RTP packet with one-byte header extensions; None if it carries none."""
    if len(data) < 12 or not data[0] & 0x10:
        return None
    start = 12 + (data[0] & 0x0F) * 4
    if len(data) < start + 4 or data[start] != 0xBE or data[start + 1] != 0xDE:
        return None
    pos = start + 4
    end = min(pos + ((data[start + 2] << 8) | data[start + 3]) * 4, len(data))
    while pos < end:
        byte = data[pos]
        if byte == 0:
            pos += 1
            continue
        length = (byte & 0x0F) + 1
        if byte >> 4 == ext_id:
            if length != 2 or pos + 3 > end:
                return None
            return (data[pos + 1] << 8) | data[pos + 2]
        pos += 1 + length
    return None


def sequence_numbers(packets: Iterable[bytes], ext_id: int) -> list[int | None]:
    """The transport-wide sequence numbers of serialized RTP packets: for tests and tools."""
    return [transport_sequence(data, ext_id) for data in packets]
