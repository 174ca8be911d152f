"""Consumer: one Producer forwarded to one subscriber, packet by packet, never transcoded."""

from __future__ import annotations

import logging
import random
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
)

from . import _aiortc_seam as seam
from .tracking import track

if TYPE_CHECKING:
    from .producer import Producer

logger = logging.getLogger(__name__)

#: Packets kept per video Consumer to answer the subscriber's NACKs (about 1.5 s at 1 Mbps).
HISTORY_SIZE = 512


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


class Consumer:
    """Rewrites SSRC, sequence number, timestamp, payload type and header extensions per packet.

    Sequence numbers and timestamps are offset, not renumbered, so they stay continuous for as
    long as the Producer's do. Video packets are kept in a short history to answer NACKs.
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
        self._ready = False
        self._payload_type = 0
        self._ssrc = seam.sender_ssrc(self._sender)
        self._mid: str | None = None
        self._extensions = seam.sender_extensions_map(self._sender)
        self._seq_delta: int | None = None
        self._ts_delta = 0
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

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def mid(self) -> str | None:
        return self._transceiver.mid

    @property
    def ready(self) -> bool:
        return self._ready

    def _negotiated(self) -> bool:
        """Bind to what the subscriber accepted; False if it accepted no matching codec."""
        for codec in seam.negotiated_codecs(self._transceiver):
            if codec.payloadType is not None and codecs_match(codec, self.producer.codec):
                self._payload_type = codec.payloadType
                self._mid = seam.sender_mid(self._sender) or self._transceiver.mid
                self._extensions = seam.sender_extensions_map(self._sender)
                self._ready = True
                return True
        self._ready = False
        return False

    # --- hot path ----------------------------------------------------------------------------

    async def _forward(self, packet: RtpPacket) -> None:
        if not self._ready or self._closed:
            return
        if self._seq_delta is None:
            self._seq_delta = (random.randint(0, 0x7FFF) - packet.sequence_number) & 0xFFFF
            self._ts_delta = (random.getrandbits(32) - packet.timestamp) & 0xFFFFFFFF
        out = RtpPacket(
            payload_type=self._payload_type,
            marker=packet.marker,
            sequence_number=(packet.sequence_number + self._seq_delta) & 0xFFFF,
            timestamp=(packet.timestamp + self._ts_delta) & 0xFFFFFFFF,
            ssrc=self._ssrc,
            payload=packet.payload,
        )
        out.extensions.mid = self._mid
        out.extensions.audio_level = packet.extensions.audio_level
        out.extensions.abs_send_time = seam.abs_send_time()
        data = out.serialize(self._extensions)
        if self._history is not None:
            self._history[out.sequence_number % HISTORY_SIZE] = data
        try:
            await seam.send_rtp(self._sender, data)
        except ConnectionError:
            return
        seam.note_sent(self._sender, out.timestamp, len(out.payload))
        self.packets_sent += 1

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
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bitrate = bitrate

    async def _resend(self, lost: list[int]) -> None:
        if self._history is None:
            return
        for seq in lost:
            data = self._history[seq % HISTORY_SIZE]
            # the sequence number sits in bytes 2-3 of the RTP header
            if data is None or int.from_bytes(data[2:4], "big") != seq:
                continue
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
        self._ready = False
        self._history = None
        self.producer._remove_consumer(self)
        for callback in self._on_close:
            callback(self)
        self._on_close.clear()
        logger.debug("consumer closed", extra={"consumer_id": self.id})
