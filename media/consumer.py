"""Consumer: one Producer forwarded to one subscriber, packet by packet, never transcoded."""

from __future__ import annotations

import logging
import random
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unpack_remb_fci,
    wrap_rtx,
)

from . import _aiortc_seam as seam
from .keyframes import keyframe_start
from .rtp_writer import RtpWriter
from .tracking import track

if TYPE_CHECKING:
    from .producer import Producer

logger = logging.getLogger(__name__)

#: Packets kept per video Consumer to answer the subscriber's NACKs (about 1.5 s at 1 Mbps).
HISTORY_SIZE = 512
#: While a video Consumer waits for a keyframe, it asks the publisher again this often.
KEYFRAME_RETRY_S = 1.0
#: Video pauses when the subscriber's estimate (REMB) falls below this share of the stream's
#: bitrate, and resumes when it is back above the second share.
CONGESTED_BELOW = 0.8
UNCONGESTED_ABOVE = 1.1


def codecs_match(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
    """Whether two negotiated codecs carry the same bitstream (H.264 needs the same profile)."""
    if a.mimeType.lower() != b.mimeType.lower() or a.clockRate != b.clockRate:
        return False
    if a.mimeType.lower() == "video/h264":
        keys = ("packetization-mode", "profile-level-id")
        pa = {k: str(a.parameters.get(k, "")).lower() for k in keys}
        pb = {k: str(b.parameters.get(k, "")).lower() for k in keys}
        return pa == pb
    return True


def _older(a: int, b: int) -> bool:
    """Sequence number ``a`` comes before ``b`` (16-bit, with wrap)."""
    return a != b and ((b - a) & 0xFFFF) < 0x8000


class Consumer:
    """Rewrites SSRC, sequence number, timestamp, payload type and header extensions per packet.

    Sequence numbers and timestamps are offsets of the Producer's. Whenever forwarding starts
    again (first packet, resume after a pause, mute or congestion, a new Producer after the
    publisher re-joined), the offsets are re-based so that the subscriber sees the next sequence
    number and a timestamp advanced by the wall-clock time that passed: never a jump it would
    take for loss. Video resumes only on a keyframe. Video packets are kept to answer NACKs.
    """

    def __init__(
        self,
        producer: Producer,
        transceiver: RTCRtpTransceiver,
        app_data: dict[str, Any] | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.producer = producer
        self.kind = producer.kind
        self.app_data: dict[str, Any] = dict(app_data or {})
        self._transceiver = transceiver
        self._sender = transceiver.sender
        self._closed = False
        self._writer: RtpWriter | None = None
        self._rtx_payload_type: int | None = None
        self._ssrc = seam.sender_ssrc(self._sender)
        self._rtx_ssrc = seam.sender_rtx_ssrc(self._sender)
        self._rtx_seq = random.randint(0, 0x7FFF)
        self._mid: str | None = None
        # the subscriber's extension ids (filled in when the sender starts), for RTX resends
        self._extensions = seam.sender_extensions_map(self._sender)
        # re-basing
        self._rebase = True
        self._seq_delta = 0
        self._ts_delta = 0
        self._base_in_seq = 0
        self._last_out_seq: int | None = None
        self._last_out_ts = 0
        self._last_out_at = 0.0
        self._keyframe_asked_at: float | None = None  # monotonic time of our last ask
        # pausing
        self._paused = False
        self._congested = False
        self._history: list[bytes | None] | None = (
            [None] * HISTORY_SIZE if self.kind == "video" else None
        )
        self.packets_sent = 0
        self.packets_resent = 0
        self.keyframe_requests_received = 0
        self.remb_bitrate: int | None = None
        self._on_close: list[Any] = []
        seam.intercept_sender_rtcp(self._sender, self._on_rtcp)
        producer._add_consumer(self)
        track(self)

    # --- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def mid(self) -> str | None:
        return self._transceiver.mid

    @property
    def transport_id(self) -> str:
        return str(self.app_data.get("transport_id", ""))

    @property
    def ready(self) -> bool:
        """The subscriber accepted this stream: packets go out."""
        return self._writer is not None

    @property
    def paused(self) -> bool:
        """Not forwarding: paused, congested, or its Producer is paused."""
        return self._paused or self._congested or self.producer.paused

    @property
    def congested(self) -> bool:
        return self._congested

    def _negotiated(self) -> bool:
        """Bind to what the subscriber accepted; False if it accepted no matching codec."""
        codecs = seam.negotiated_codecs(self._transceiver)
        for codec in codecs:
            if codec.payloadType is not None and codecs_match(codec, self.producer.codec):
                self._rtx_payload_type = next(
                    (
                        c.payloadType
                        for c in codecs
                        if c.mimeType.lower().endswith("/rtx")
                        and c.parameters.get("apt") == codec.payloadType
                    ),
                    None,
                )
                self._mid = seam.sender_mid(self._sender) or self._transceiver.mid
                self._writer = RtpWriter(
                    ssrc=self._ssrc,
                    payload_type=codec.payloadType,
                    extension_ids=seam.negotiated_extension_ids(self._transceiver),
                    mid=self._mid,
                )
                return True
        self._writer = None
        return False

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._resumed()

    def _resumed(self) -> None:
        """Forwarding may start again: re-base on the next packet (a keyframe, for video)."""
        self._rebase = True
        self._keyframe_asked_at = None
        self.request_keyframe()

    def switch_producer(self, producer: Producer) -> None:
        """Carry ``producer`` (the same participant's track after a re-join) on this stream."""
        if producer is self.producer:
            return
        self.producer._remove_consumer(self)
        self.producer = producer
        producer._add_consumer(self)
        self._resumed()

    # --- hot path ----------------------------------------------------------------------------

    async def _forward(self, packet: RtpPacket, ntp: int, send_time: bytes) -> None:
        """Send ``packet`` on to the subscriber; ``ntp``/``send_time``: now, computed once per
        incoming packet by the Producer."""
        writer = self._writer
        if writer is None or self._paused or self._congested:
            return
        if self._rebase:
            if not self._start(packet):
                return
        elif _older(packet.sequence_number, self._base_in_seq):
            return  # from before the re-base: its number is taken
        seq = (packet.sequence_number + self._seq_delta) & 0xFFFF
        ts = (packet.timestamp + self._ts_delta) & 0xFFFFFFFF
        data = writer.write(
            sequence_number=seq,
            timestamp=ts,
            marker=packet.marker,
            payload=packet.payload,
            padding_size=packet.padding_size,
            send_time=send_time,
            audio_level=packet.extensions.audio_level,
        )
        if self._history is not None:
            self._history[seq % HISTORY_SIZE] = data
        if self._last_out_seq is None or _older(self._last_out_seq, seq):
            self._last_out_seq = seq
            self._last_out_ts = ts
            self._last_out_at = time.monotonic()
        try:
            await seam.send_rtp(self._sender, data)
        except ConnectionError:
            return
        seam.note_sent(self._sender, ts, len(packet.payload), ntp)
        self.packets_sent += 1

    def _start(self, packet: RtpPacket) -> bool:
        """Re-base the offsets on ``packet``; False while a video stream waits for a keyframe."""
        if self.kind == "video" and not keyframe_start(
            self.producer.codec.mimeType, packet.payload
        ):
            now = time.monotonic()
            asked = self._keyframe_asked_at
            if asked is None or now - asked >= KEYFRAME_RETRY_S:
                # ask again while none comes: a request can be lost, or ignored by an encoder
                # that made a keyframe a moment ago (browsers skip requests within ~300 ms)
                self._keyframe_asked_at = now
                self.producer.request_keyframe()
            return False
        if self._last_out_seq is None:
            out_seq = random.randint(0, 0x7FFF)
            out_ts = random.getrandbits(32)
        else:
            out_seq = (self._last_out_seq + 1) & 0xFFFF
            elapsed = time.monotonic() - self._last_out_at
            out_ts = self._last_out_ts + max(1, int(elapsed * self.producer.codec.clockRate))
        self._seq_delta = (out_seq - packet.sequence_number) & 0xFFFF
        self._ts_delta = (out_ts - packet.timestamp) & 0xFFFFFFFF
        self._base_in_seq = packet.sequence_number
        self._rebase = False
        return True

    # --- feedback from the subscriber --------------------------------------------------------

    async def _on_rtcp(self, packet: Any) -> None:
        if self._closed:
            return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            await self._resend(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframe_requests_received += 1
            self.producer.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):  # a count the FCI does not hold (tests/fuzz)
                return
            if self._ssrc in ssrcs:
                self.remb_bitrate = bitrate
                self._check_congestion()

    def _check_congestion(self) -> None:
        """Pause video the subscriber cannot take (audio always goes), resume when it can."""
        if self.kind != "video" or self.remb_bitrate is None:
            return
        needed = self.producer.bitrate
        if not needed:
            return
        if not self._congested and self.remb_bitrate < needed * CONGESTED_BELOW:
            self._congested = True
            logger.info("video paused for a congested subscriber", extra={"consumer_id": self.id})
        elif self._congested and self.remb_bitrate >= needed * UNCONGESTED_ABOVE:
            self._congested = False
            logger.info("video resumed", extra={"consumer_id": self.id})
            self._resumed()

    async def _resend(self, lost: list[int]) -> None:
        if self._history is None:
            return
        for seq in lost:
            data = self._history[seq % HISTORY_SIZE]
            # the sequence number sits in bytes 2-3 of the RTP header
            if data is None or int.from_bytes(data[2:4], "big") != seq:
                continue
            if self._rtx_payload_type is not None:
                original = RtpPacket.parse(data, self._extensions)
                rtx = wrap_rtx(
                    original,
                    payload_type=self._rtx_payload_type,
                    sequence_number=self._rtx_seq,
                    ssrc=self._rtx_ssrc,
                )
                rtx.extensions = original.extensions
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                data = rtx.serialize(self._extensions)
            try:
                await seam.send_rtp(self._sender, data)
            except ConnectionError:
                return
            self.packets_resent += 1

    def on_close(self, callback: Any) -> None:
        """Call ``callback(self)`` once when this Consumer closes."""
        self._on_close.append(callback)

    def request_keyframe(self) -> None:
        self.producer.request_keyframe()

    # --- close -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Detach from the Producer; the Transport owns the transceiver. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer = None
        self._history = None
        self.producer._remove_consumer(self)
        for callback in self._on_close:
            callback(self)
        self._on_close.clear()
        logger.debug("consumer closed", extra={"consumer_id": self.id})
