"""Consumer: one Producer forwarded to one subscriber, packet by packet, never transcoded."""

from __future__ import annotations

import logging
import random
import struct
import time
import uuid
from typing import Any

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
from .bandwidth import (
    AUDIO_OVERHEAD_BPS,
    AUDIO_UNMEASURED_BPS,
    DROP,
    MIN_PROBE_BPS,
    PADDING_BYTES,
    PAUSE_AFTER_S,
    PAUSE_BELOW,
    PAUSE_LATER_AFTER_S,
    PROBE_SHARE,
    RESUME_ABOVE,
    RESUME_FAILED_S,
    RESUME_HOLD_MAX_S,
    RESUME_HOLD_S,
    STEADY_S,
    UP_ABOVE,
    ProbeBudget,
    Share,
    SharedEstimate,
    Want,
    choose_layer,
)
from .graph import Source
from .keyframes import keyframe_start
from .rtp_writer import RtpWriter
from .tracking import track
from .twcc import TransportWideSender
from .vp8 import Vp8Numbering

logger = logging.getLogger(__name__)

#: Packets kept per video Consumer to answer the subscriber's NACKs (about 1.5 s at 1 Mbps).
HISTORY_SIZE = 512
#: While a video Consumer waits for a keyframe, it asks the publisher again this often.
KEYFRAME_RETRY_S = 1.0
#: Retransmissions to a subscriber take at most this share of its estimate per second (the
#: share of an unknown estimate: of this).
RESEND_SHARE = 0.25
RESEND_UNLIMITED_BPS = 10_000_000
#: A video Consumer looks at its estimate and the layers this often (and on each REMB).
EVALUATE_EVERY_S = 0.5
#: Packets more than this far behind the newest forwarded one are dropped (their outgoing
#: numbers may be taken): retransmissions come within a few hundred.
BASE_TRAIL = 0x4000
#: With transport-cc, a subscriber below the next layer is probed with a cluster this much
#: above that layer's rate (the result must cover it) ...
CLUSTER_ABOVE = 1.2
CLUSTER_S = 0.1
#: ... and at most this many times the transport's whole estimate (libwebrtc probes further at
#: twice its estimate): a free link is found in a few doublings, and a link already full gets
#: a little more than it carries for 100 ms, not a burst towards every top layer that
#: overflowed a 300 kbit/s link's queue and took the media in it down too.
CLUSTER_STEP = 2.0
#: ... at first this long after the last one, doubling while they find no more, up to the max.
CLUSTER_EVERY_S = 1.0
CLUSTER_EVERY_MAX_S = 3.0
_NTP_SECOND = 1 << 32

#: ``callback(consumer, paused)`` when video stops or starts again for congestion.
CongestionCallback = Any


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
    publisher re-joined, a switch to another simulcast layer), the offsets are re-based so that
    the subscriber sees the next sequence number and a timestamp advanced by the wall-clock time
    that passed: never a jump it would take for loss. Video resumes, and switches layer, only on
    a keyframe. Video packets are kept to answer NACKs.

    The subscriber's estimate (REMB) picks the layer (media/bandwidth.py). Video stops only when
    even the lowest layer is far above the estimate for a while, and then padding keeps probing
    so that the estimate can recover; it resumes with a keyframe.

    A sink of the media graph (media/graph.py): its Router attaches it to its Producer.
    """

    def __init__(
        self,
        producer: Source,
        transceiver: RTCRtpTransceiver,
        app_data: dict[str, Any] | None = None,
        shared: SharedEstimate | None = None,
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
        self._congested_since: float | None = None  # monotonic time the estimate fell short
        self._estimate_fell_at = -STEADY_S  # monotonic time the estimate last dropped
        # a later video stopped for congestion: when it may come back, how long it waited last
        # time, when it last came back (media/bandwidth.py RESUME_HOLD_S)
        self._resume_not_before = 0.0
        self._resume_hold = RESUME_HOLD_S
        self._resumed_at: float | None = None
        self._on_congestion: list[CongestionCallback] = []
        # layers (simulcast): the one forwarded, the one wanted; a switch waits for its keyframe
        self._layer = 0
        self._target = 0
        self.layer_switches = 0
        self._next_evaluation = 0  # NTP time
        self._vp8 = self._numbering_for(producer)
        self._probe = ProbeBudget()
        self._probe_writer: RtpWriter | None = None
        self._media_bytes = 0
        self.probe_packets_sent = 0
        self._history: list[bytes | None] | None = (
            [None] * HISTORY_SIZE if self.kind == "video" else None
        )
        self.packets_sent = 0
        self.packets_resent = 0
        self.resends_refused = 0
        self._resend_window_at = 0.0
        self._resend_bytes = 0
        self.keyframe_requests_received = 0
        self.remb_bitrate: int | None = None
        # transport-cc (when the subscriber negotiated it): the transport's numbering and
        # estimate, and the probe clusters this Consumer sends to climb a layer
        self._cc: TransportWideSender | None = None
        self._cc_fell_at_us: int | None = None
        self._cc_logged = False
        self._base_probe_rate = 0
        self._cluster_rate = 0
        self._cluster_until = 0.0
        self._cluster_goal = 0
        self._next_cluster_at = 0.0
        self._cluster_every = CLUSTER_EVERY_S
        self._others_bps = 0  # what the transport's other streams are allotted (audio too)
        # the subscribe transport's streams share its estimate (media/bandwidth.py); a stream
        # of higher priority is served first, the same priority in the order they came
        self.priority = 1
        self._remb_names_others = False  # the last REMB named other streams than this one's
        self.last_share: Share | None = None
        self._shared = shared
        if shared is not None:
            shared.add(self)
        self._on_close: list[Any] = []
        seam.intercept_sender_rtcp(self._sender, self._on_rtcp)
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

    @property
    def layer(self) -> int:
        """The simulcast layer forwarded (0 = lowest, the only one without simulcast)."""
        return self._layer

    @property
    def target_layer(self) -> int:
        return self._target

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers forwarded and wanted (a switch waits for the wanted one's keyframe)."""
        return (self._layer, self._target)

    @property
    def estimate(self) -> int | None:
        """What the subscriber can take for this stream: the transport-cc estimate while its
        feedback flows, else its REMB; of a transport shared with other video streams, this
        stream's share (audio and the others' grants left out). A single-stream publisher is
        asked for no more than this, and retransmissions take a part of it."""
        whole = self.remb_bitrate
        cc = self._cc
        if cc is not None and cc.estimate is not None:
            whole = cc.estimate
        share = self.last_share
        if whole is not None and share is not None and self.shares_estimate:
            return min(whole, share.share)
        return whole

    @property
    def transport_cc(self) -> TransportWideSender | None:
        return self._cc

    @property
    def shares_estimate(self) -> bool:
        """A video stream whose estimate is its transport's, to be shared with the transport's
        other video streams: transport-cc feedback flows, or the subscriber's REMB names other
        streams too (a browser's names all it covers). A REMB naming this stream alone is its
        own. Not while paused by the room or its Producer: it sends nothing then."""
        if self.kind != "video" or self._writer is None or self._paused or self._closed:
            return False
        if self.producer.paused:
            return False
        if self._cc is not None and self._cc.estimate is not None:
            return True
        return self._remb_names_others and self.remb_bitrate is not None

    @property
    def audio_bps(self) -> int:
        """An audio stream's bitrate on the wire, reserved before the video streams share
        the rest (0 while it sends nothing)."""
        if self.kind != "audio" or self._writer is None or self.paused:
            return 0
        payload = sum(layer.bitrate for layer in self.producer.layers)
        return payload + AUDIO_OVERHEAD_BPS if payload else AUDIO_UNMEASURED_BPS

    def want(self, now: float) -> Want:
        """What this stream asks of the shared estimate: its layers' needs and the layer it
        is on (or switching to), None while its video is stopped for congestion."""
        return Want(self.producer.layer_needs(now), None if self._congested else self._target)

    @staticmethod
    def _numbering_for(producer: Source) -> Vp8Numbering | None:
        """Simulcast VP8 needs its picture ids kept continuous across layer switches."""
        if producer.simulcast and producer.codec.mimeType.lower() == "video/vp8":
            return Vp8Numbering()
        return None

    def on_congestion(self, callback: CongestionCallback) -> None:
        """Call ``callback(self, paused)`` when video stops, or starts again, for congestion."""
        self._on_congestion.append(callback)

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
                extension_ids = seam.negotiated_extension_ids(self._transceiver)
                self._writer = RtpWriter(
                    ssrc=self._ssrc,
                    payload_type=codec.payloadType,
                    extension_ids=extension_ids,
                    mid=self._mid,
                )
                if self._writer.transport_cc:
                    self._cc = seam.transport_wide_sender(self._sender)
                if self._rtx_payload_type is not None:
                    seam.route_feedback_of(self._sender, self._rtx_ssrc)
                    self._probe_writer = RtpWriter(
                        ssrc=self._rtx_ssrc,
                        payload_type=self._rtx_payload_type,
                        extension_ids=extension_ids,
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

    def on_resume(self) -> None:
        """The Producer forwards again after a pause."""
        self._resumed()

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Nothing to pass on: this stream's sender reports are our own (seam.note_sent)."""

    def _switched_to(self, producer: Source) -> None:
        """The Router attached this stream to ``producer`` (the same participant's track after
        a re-join): carry it on, numbering continuous."""
        if producer is self.producer:
            return
        self.producer = producer
        self._layer = self._target = 0
        producer.wanted_layers_changed()
        # the same subscriber stream: keep counting where it was (re-based on the next keyframe)
        self._vp8 = self._vp8 or self._numbering_for(producer)
        self._resumed()

    # --- hot path ----------------------------------------------------------------------------

    async def on_rtp(self, packet: RtpPacket, layer: int, ntp: int, send_time: bytes) -> None:
        """Send ``packet`` (of simulcast ``layer``) on to the subscriber; ``ntp``/``send_time``:
        now, computed once per incoming packet by the Producer."""
        writer = self._writer
        if writer is None or self._paused:
            return
        if self._history is not None and ntp >= self._next_evaluation:
            self._next_evaluation = ntp + int(EVALUATE_EVERY_S * _NTP_SECOND)
            self._evaluate()
        if self._probe.rate or self._cluster_until:
            await self._send_probes(send_time)
        if layer != self._layer:
            if layer != self._target or self._congested:
                return
            if not keyframe_start(self.producer.codec.mimeType, packet.payload):
                return
            # the wanted layer's keyframe: switch, numbering continuous
            self._layer = layer
            self.producer.wanted_layers_changed()
            self._rebase = True
            self.layer_switches += 1
        elif self._congested:
            return
        if self._rebase:
            if not self._start(packet):
                return
        elif _older(packet.sequence_number, self._base_in_seq):
            return  # from before the re-base: its number is taken
        elif (packet.sequence_number - self._base_in_seq) & 0xFFFF > BASE_TRAIL:
            # the base follows the stream: 32,768 packets on from a fixed base (8 minutes of
            # video, 11 of audio) every packet would look older than it
            self._base_in_seq = (packet.sequence_number - BASE_TRAIL) & 0xFFFF
        seq = (packet.sequence_number + self._seq_delta) & 0xFFFF
        ts = (packet.timestamp + self._ts_delta) & 0xFFFFFFFF
        cc = self._cc
        transport_seq = cc.next_sequence() if cc is not None else None
        data = writer.write(
            sequence_number=seq,
            timestamp=ts,
            marker=packet.marker,
            payload=packet.payload if self._vp8 is None else self._vp8.rewrite(packet.payload),
            padding_size=packet.padding_size,
            send_time=send_time,
            audio_level=packet.extensions.audio_level,
            transport_seq=transport_seq,
        )
        if self._history is not None:
            self._history[seq % HISTORY_SIZE] = data
            self._media_bytes += len(data)
        if self._last_out_seq is None or _older(self._last_out_seq, seq):
            self._last_out_seq = seq
            self._last_out_ts = ts
            self._last_out_at = time.monotonic()
        try:
            if not seam.send_rtp_now(self._sender, data):
                await seam.send_rtp(self._sender, data)
        except ConnectionError:
            return
        if cc is not None:
            cc.sent(transport_seq, len(data))  # type: ignore[arg-type]
        seam.note_sent(self._sender, ts, len(packet.payload), ntp)
        self.packets_sent += 1

    async def _send_probes(self, send_time: bytes) -> None:
        """Padding on the RTX stream, so the subscriber's estimate can grow (never decoded)."""
        writer = self._probe_writer
        media, self._media_bytes = self._media_bytes, 0
        now = time.monotonic()
        if self._cluster_until:
            if now < self._cluster_until:
                self._probe.set_rate(self._cluster_rate)
            else:
                self._cluster_until = 0.0
                self._probe.set_rate(self._base_probe_rate)
        count = self._probe.due(now, media)
        if writer is None or not count:
            return
        cc = self._cc
        for _ in range(count):
            transport_seq = cc.next_sequence() if cc is not None else None
            data = writer.write(
                sequence_number=self._rtx_seq,
                timestamp=self._last_out_ts,
                marker=0,
                payload=b"",
                padding_size=PADDING_BYTES,
                send_time=send_time,
                audio_level=None,
                transport_seq=transport_seq,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            try:
                if not seam.send_rtp_now(self._sender, data):
                    await seam.send_rtp(self._sender, data)
            except ConnectionError:
                return
            if cc is not None:
                cc.sent(transport_seq, len(data))  # type: ignore[arg-type]
            self.probe_packets_sent += 1

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
                self.producer.request_keyframe(self._target)
            return False
        if self._vp8 is not None:
            self._vp8.rebase(packet.payload)
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
            # the subscriber's decoder needs a keyframe of the layer it gets (or is about to):
            # asking for another layer's left a subscriber frozen on a higher one for good
            self.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):  # a count the FCI does not hold (tests/fuzz)
                return
            if self._ssrc in ssrcs or self._rtx_ssrc in ssrcs:
                self._remb_names_others = any(s not in (self._ssrc, self._rtx_ssrc) for s in ssrcs)
                if not self.estimate_from_remb:
                    self.remb_bitrate = bitrate  # the fallback, should the feedback stop
                    return
                dropped = self.remb_bitrate is not None and bitrate < self.remb_bitrate
                if dropped and bitrate < self.remb_bitrate * DROP:  # type: ignore[operator]
                    self._estimate_fell_at = time.monotonic()
                self.remb_bitrate = bitrate
                self._evaluate()
                if dropped:
                    self.producer.update_remb(estimate_dropped=True)

    def _evaluate(self) -> None:
        """Pick the layer the estimate carries; stop video only when even the lowest is far
        out of reach for :data:`PAUSE_AFTER_S`; set how much to probe."""
        if self.kind != "video" or self._closed:
            return
        producer = self.producer
        now = time.monotonic()
        estimate = self._cc_estimate(now)
        if estimate is None:
            estimate = self.remb_bitrate
        if estimate is None:
            if not producer.simulcast:
                return
            # no estimate yet: start on the best layer, so that the receiver's first estimate
            # (which it takes from what it receives) is not held down by a low layer
            estimate = 1 << 40
        needs = producer.layer_needs(now)
        active = [need for need in needs if need is not None]
        if not active:
            self._probe.set_rate(0)
            return
        lowest = active[0]
        steady = now - self._estimate_fell_at >= STEADY_S
        share: Share | None = None
        self._others_bps = 0
        whole = estimate
        if self._shared is not None and self.shares_estimate:
            # the transport's estimate, audio reserved, shared among its video streams
            share = self._shared.share(self, estimate, now, steady=steady)
            self._others_bps = max(0, estimate - share.share)
            estimate = share.share
        self.last_share = share
        probes = share is None or share.prober  # one stream probes for the transport
        first = share is not None and share.first
        if self._congested:
            # the first video comes back by the single-stream rule too (the whole estimate
            # covers its lowest layer); a later one when its lowest layer fits beside the others
            if (whole if first else estimate) >= lowest * RESUME_ABOVE and (
                share is None
                or first
                or (share.layer is not None and now >= self._resume_not_before)
            ):
                self._set_congested(False)
            elif not probes:
                self._set_probe_rate(0)
                return
            else:
                self._set_probe_rate(min(lowest, max(estimate, MIN_PROBE_BPS)))
                self._probe_cluster(lowest, estimate, now)
                return
        elif (whole if first else estimate) < lowest * PAUSE_BELOW:
            # the first video of a transport stops by the single-stream rule on the whole
            # estimate (audio goes on the link anyway): after a squeeze, loss cuts the estimate
            # far under what the link carries for a while, and its share then stopped it too
            if self._congested_since is None:
                self._congested_since = now
            elif (share is None or share.first) and now - self._congested_since >= PAUSE_AFTER_S:
                self._set_congested(True)
                self._set_probe_rate(min(lowest, max(estimate, MIN_PROBE_BPS)) if probes else 0)
                return
            elif (
                share is not None
                and not share.first
                and now - self._congested_since >= PAUSE_LATER_AFTER_S
                and now - self._estimate_fell_at < PAUSE_AFTER_S + STEADY_S
            ):
                # a later video that does not fit beside the others, on a link that showed
                # congestion: it stops soon, before the overflow takes the first one down too
                self._set_congested(True, hold=True)
                self._set_probe_rate(min(lowest, max(estimate, MIN_PROBE_BPS)) if probes else 0)
                return
        else:
            self._congested_since = None
        if share is None:
            target = choose_layer(needs, estimate, self._layer, steady=steady)
        elif share.layer is not None:
            target = share.layer
            if (
                not share.first
                and self._resumed_at is not None
                and now - self._resumed_at < STEADY_S
            ):
                # a later video just back from a stop: its lowest layer first
                target = next(i for i, need in enumerate(needs) if need is not None)
        else:  # no layer fits beside the others: the lowest until its video stops
            target = next(i for i, need in enumerate(needs) if need is not None)
        if target != self._target:
            logger.info(
                "consumer %s: layer %d -> %d (estimate %d of %d, layers %s, transport %s, %s%s)",
                self.id[:8],
                self._target,
                target,
                estimate,
                whole,
                needs,
                self.transport_id[:8],
                "alone" if share is None else ("first" if share.first else "later"),
                self._cc_story(),
            )
            self._target = target
            producer.wanted_layers_changed()
            if target != self._layer:
                self._keyframe_asked_at = now
                producer.request_keyframe(target)
        elif target != self._layer and (
            self._keyframe_asked_at is None or now - self._keyframe_asked_at >= KEYFRAME_RETRY_S
        ):
            # still waiting for the wanted layer's keyframe: a request can be lost or ignored
            self._keyframe_asked_at = now
            producer.request_keyframe(target)
        # probe towards the next layer up (its last known rate), only while the estimate is
        # steady (padding on a link that just showed overuse only adds to the queue), and to a
        # little under the estimate: the receiver's estimate may grow to 1.5 times that
        above = [layer.bitrate for layer in producer.layers[self._layer + 1 :] if layer.bitrate]
        if estimate < (needs[self._layer] or 0):
            # the layer it forwards (the first stream keeps its lowest one) already takes more
            # than its part of the estimate: the link is full, and padding or a probe cluster
            # would only overflow its queue; the estimate grows by itself while nothing is lost
            self._set_probe_rate(0)
        elif share is not None and share.goal is not None:
            # the prober of several streams: padding up to a little under its share (what the
            # others leave), a cluster towards every stream's top layer
            if share.goal > estimate and target == self._layer and steady:
                self._set_probe_rate(int(estimate * PROBE_SHARE))
                self._probe_cluster(share.goal, estimate, now)
            else:
                self._set_probe_rate(0)
        elif not probes:
            self._set_probe_rate(0)
        elif above and target == self._layer and steady:
            self._set_probe_rate(int(min(above[0], estimate * PROBE_SHARE)))
            # a cluster aims at the top layer: a free link shows it at once, a narrow one
            # shows its own rate (and the estimate picks what fits), in one step either way
            self._probe_cluster(max(above), estimate, now)
        else:
            self._set_probe_rate(0)

    @property
    def estimate_from_remb(self) -> bool:
        """Whether REMB is this subscriber's estimate (no transport-cc feedback flowing)."""
        return self._cc is None or self._cc.estimate is None

    def _cc_story(self) -> str:
        """For the logs: what last cut the transport-cc estimate, and how many rises of delay
        the link did not confirm (media/gcc.py)."""
        cc = self._cc
        if cc is None or cc.estimate is None:
            return ""
        estimator = cc.estimator
        return f"; last cut by {estimator.cut_by}, {estimator.overuse_held} overuses held"

    def _cc_estimate(self, now: float) -> int | None:
        """The transport-cc estimate, noting when it last fell (overuse or loss cut it)."""
        cc = self._cc
        if cc is None:
            return None
        estimate = cc.estimate
        if estimate is None:
            return None
        if not self._cc_logged:
            self._cc_logged = True
            logger.info(
                "transport-cc estimate in use",
                extra={"consumer_id": self.id, "estimate": estimate},
            )
        fell = cc.estimator.decreased_at_us
        if fell is not None and fell != self._cc_fell_at_us:
            self._cc_fell_at_us = fell
            logger.debug(
                "consumer %s: transport-cc estimate %d, cut by %s (transport %s)",
                self.id[:8],
                estimate,
                cc.estimator.cut_by,
                self.transport_id[:8],
            )
            self._estimate_fell_at = fell / 1_000_000
            self.producer.update_remb(estimate_dropped=True)
        return estimate

    def _set_probe_rate(self, rate: int) -> None:
        """Padding at ``rate`` (with what is sent), unless a probe cluster runs."""
        self._base_probe_rate = rate
        if not self._cluster_until:
            self._probe.set_rate(rate)

    def _probe_cluster(self, goal: int, estimate: int, now: float) -> None:
        """With transport-cc, a subscriber whose estimate is below ``goal`` (the next layer,
        or the lowest one while video is stopped) gets a short burst a little above it: if the
        link carries it, the estimate jumps there instead of growing 8 % a second. ``goal`` and
        ``estimate`` are this stream's; the cluster the estimator measures holds what the
        transport's other streams send meanwhile (``_others_bps``) too."""
        cc = self._cc
        if cc is None or cc.estimate is None or self._probe_writer is None:
            return
        if self._cluster_goal and estimate >= self._cluster_goal * UP_ABOVE:
            self._cluster_goal = 0  # reached: the next climb starts probing briskly again
            self._cluster_every = CLUSTER_EVERY_S
        if estimate >= goal * RESUME_ABOVE:
            return
        if now < self._next_cluster_at or self._cluster_until:
            return
        if self._cluster_goal:
            # the last cluster found no more: wait longer before the next one
            self._cluster_every = min(self._cluster_every * 2, CLUSTER_EVERY_MAX_S)
        target = min(
            int(goal * CLUSTER_ABOVE) + self._others_bps,
            int((estimate + self._others_bps) * CLUSTER_STEP),
        )
        rate = target - self._others_bps
        if not cc.estimator.probe(target, int(now * 1_000_000), int(CLUSTER_S * 1_000_000)):
            return
        self._cluster_goal = int(rate / CLUSTER_ABOVE)  # what this cluster can show
        self._cluster_rate = rate
        self._cluster_until = now + CLUSTER_S
        self._next_cluster_at = now + self._cluster_every
        self._probe.set_rate(rate)

    def _set_congested(self, congested: bool, *, hold: bool = False) -> None:
        """Stop or restart video for congestion; ``hold``: a later video stopped, which comes
        back no sooner than its hold (doubled when it stopped again soon after it came back)."""
        self._congested = congested
        self._congested_since = None
        now = time.monotonic()
        if congested and hold:
            failed = self._resumed_at is not None and now - self._resumed_at < RESUME_FAILED_S
            self._resume_hold = (
                min(self._resume_hold * 2, RESUME_HOLD_MAX_S) if failed else RESUME_HOLD_S
            )
            self._resume_not_before = now + self._resume_hold
        if not congested:
            self._resumed_at = now
        if congested:
            logger.info(
                "video paused for a congested subscriber (consumer %s, transport %s%s)",
                self.id[:8],
                self.transport_id[:8],
                f"; back in {self._resume_hold:.0f} s at the soonest" if hold else "",
                extra={"consumer_id": self.id, "estimate": self.remb_bitrate},
            )
        else:
            logger.info(
                "video resumed", extra={"consumer_id": self.id, "estimate": self.remb_bitrate}
            )
            self._probe.set_rate(0)
            self._resumed()
        for callback in tuple(self._on_congestion):
            callback(self, congested)

    async def _resend(self, lost: list[int]) -> None:
        if self._history is None:
            return
        if self.paused:
            # a stream that forwards nothing (stopped for congestion, paused) answers no NACKs,
            # as mediasoup's inactive Consumers: the subscriber will not get the rest of its
            # frames anyway, and on a squeezed link those retransmissions (every packet the
            # squeeze took) crowded out the video that still forwards (measured: the doctor's
            # video froze 5 s for the patient while the family member's, stopped, was resent)
            self.resends_refused += len(lost)
            return
        now = time.monotonic()
        if now - self._resend_window_at >= 1.0:
            self._resend_window_at = now
            self._resend_bytes = 0
        # retransmissions take at most a share of the estimate: on a congested link, answering
        # every NACK doubles what it must carry, and the loss with it. A share of nothing buys
        # none (a later stream the allocation left out; 0 once read as "no estimate": unlimited)
        estimate = self.estimate
        budget = (RESEND_UNLIMITED_BPS if estimate is None else estimate) * RESEND_SHARE / 8
        for seq in lost:
            data = self._history[seq % HISTORY_SIZE]
            # the sequence number sits in bytes 2-3 of the RTP header
            if data is None or int.from_bytes(data[2:4], "big") != seq:
                continue
            if self._resend_bytes + len(data) > budget:
                self.resends_refused += 1
                continue
            self._resend_bytes += len(data)
            cc = self._cc
            transport_seq = cc.next_sequence() if cc is not None else None
            if self._rtx_payload_type is not None or transport_seq is not None:
                original = RtpPacket.parse(data, self._extensions)
                packet = original
                if self._rtx_payload_type is not None:
                    packet = wrap_rtx(
                        original,
                        payload_type=self._rtx_payload_type,
                        sequence_number=self._rtx_seq,
                        ssrc=self._rtx_ssrc,
                    )
                    packet.extensions = original.extensions
                    self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                if transport_seq is not None:
                    # a retransmission is a packet of its own on the transport (as libwebrtc
                    # numbers it): the original's number was reported already
                    packet.extensions.transport_sequence_number = transport_seq
                data = packet.serialize(self._extensions)
            try:
                if not seam.send_rtp_now(self._sender, data):
                    await seam.send_rtp(self._sender, data)
            except ConnectionError:
                return
            if cc is not None:
                cc.sent(transport_seq, len(data))  # type: ignore[arg-type]
            self.packets_resent += 1

    def on_close(self, callback: Any) -> None:
        """Call ``callback(self)`` once when this Consumer closes."""
        self._on_close.append(callback)

    def request_keyframe(self, *, now: bool = False) -> None:
        """Ask for a keyframe of the layer forwarded, and of the one wanted if a switch waits
        (``now``: at once, see Producer.request_keyframe)."""
        self.producer.request_keyframe(self._layer, now=now)
        if self._target != self._layer:
            self.producer.request_keyframe(self._target, now=now)

    # --- close -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop forwarding; the Router detaches it from its Producer (on_close), the Transport
        owns the transceiver. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer = None
        self._history = None
        if self._shared is not None:
            self._shared.remove(self)
        self._on_congestion.clear()
        for callback in self._on_close:
            callback(self)
        self._on_close.clear()
        logger.debug("consumer closed", extra={"consumer_id": self.id})
