"""Producer: one incoming track of a publisher, fanned out packet by packet to its Consumers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import RtpPacket, unwrap_rtx

from . import _aiortc_seam as seam
from .bandwidth import MIN_UPSTREAM_BPS
from .graph import Sink
from .rtp_writer import abs_send_time, ntp_now
from .tracking import track

logger = logging.getLogger(__name__)

#: Keyframe requests to one publisher are coalesced to at most one per window.
KEYFRAME_WINDOW_S = 0.3
#: A layer that sent nothing for this long is off (the publisher's encoder dropped it: Chrome
#: stops its top simulcast layer for tens of seconds when its CPU is short).
LAYER_IDLE_S = 1.5
#: While a layer some sink takes is off, the other layers' packets reach the sinks too (so a
#: Consumer on the silent layer sees time pass and moves to one that is sent); checked this often.
IDLE_CHECK_S = 0.25
#: The REMB to the publisher is sent at least this often, and at once when it drops by
#: more than :data:`REMB_DROP`.
REMB_INTERVAL_MS = 1000
REMB_DROP = 0.9
#: Packets sent within 5 ms (abs-send-time is 6.18 fixed-point seconds) form one group for the
#: uplink estimator, as in its own inter-arrival filter.
GROUP_SPAN = 5 * (1 << 18) // 1000


class Layer:
    """One encoding of the track: the only one, or a simulcast layer (by rid, lowest first)."""

    __slots__ = (
        "_keyframe_timer",
        "_keyframe_wanted",
        "_last_keyframe_request",
        "_rate_bytes",
        "_rate_start_ms",
        "bitrate",
        "index",
        "last_packet_at",
        "nack",
        "packets_received",
        "rid",
        "rtx_ssrc",
        "ssrc",
    )

    def __init__(self, index: int, rid: str | None, video: bool) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.nack = seam.NackGenerator() if video else None
        self._rate_start_ms: int | None = None
        self._rate_bytes = 0
        self.bitrate = 0  # bits per second over the last second (kept while the layer is off)
        #: when the last packet came, on this process's monotonic clock (arrival times are
        #: aiortc's wall clock, which nothing else here reads)
        self.last_packet_at: float | None = None
        self.packets_received = 0
        self._last_keyframe_request = -KEYFRAME_WINDOW_S
        self._keyframe_timer: asyncio.TimerHandle | None = None
        self._keyframe_wanted = False

    def measure(self, size: int, now_ms: int, now: float) -> None:
        """A packet of ``size`` payload bytes arrived at ``now_ms`` (its arrival time) and
        ``now`` (monotonic seconds)."""
        self.last_packet_at = now
        if self._rate_start_ms is None:
            self._rate_start_ms = now_ms
        self._rate_bytes += size
        elapsed = now_ms - self._rate_start_ms
        if elapsed >= 1000:
            self.bitrate = self._rate_bytes * 8000 // elapsed
            self._rate_start_ms = now_ms
            self._rate_bytes = 0

    def active(self, now: float) -> bool:
        """Whether the publisher sends this layer (``now``: monotonic seconds)."""
        return self.last_packet_at is not None and now - self.last_packet_at < LAYER_IDLE_S


class Producer:
    """An incoming audio or video track. Forwards every RTP packet as it arrives.

    Never decodes: the receiver's packets are routed here instead of to aiortc's jitter buffer.
    It forwards to the sinks (Consumers, a recorder) its Router attached to it
    (:meth:`media.router.Router.attach`): the Router holds the graph, the Producer reads it.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        codec: RTCRtpCodecParameters,
        app_data: dict[str, Any] | None = None,
        *,
        rtx_payload_type: int | None = None,
        rtx_ssrc: int | None = None,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.id = uuid.uuid4().hex
        self.kind: str = transceiver.kind
        self.codec = codec
        self._payload_type: int = codec.payloadType or 0
        self.mid = transceiver.mid
        self.app_data: dict[str, Any] = dict(app_data or {})
        self._transceiver = transceiver
        self._receiver = transceiver.receiver
        self._sinks: tuple[Sink, ...] = ()  # set by the Router (_feed)
        self._closed = False
        self._close_done = asyncio.Event()
        self._paused = False
        self._rtx_payload_type = rtx_payload_type
        video = self.kind == "video"
        #: the encodings, lowest first; one unless the publisher sends simulcast
        self.layers: list[Layer] = [
            Layer(i, rid, video) for i, rid in enumerate(rids[:4] if video else ())
        ] or [Layer(0, None, video)]
        self.simulcast = len(self.layers) > 1
        self._by_rid = {layer.rid: layer for layer in self.layers if layer.rid is not None}
        self._by_ssrc: dict[int, Layer] = {}
        self._wanted = [False] * len(self.layers)  # by layer: a sink forwards it
        self._wanted_idle = False  # a wanted layer is off: every layer reaches the sinks
        self._idle_checked_at = 0.0
        if rtx_ssrc is not None and not self.simulcast:
            self.layers[0].rtx_ssrc = rtx_ssrc
            self._by_ssrc[rtx_ssrc] = self.layers[0]
        self._tasks: set[asyncio.Task[None]] = set()
        # the publisher's uplink, estimated from abs-send-time (video only, as aiortc does)
        self._estimator = seam.RemoteBitrateEstimator() if video else None
        self.uplink_estimate: int | None = None
        # transport-cc on the publisher's leg: it estimates its uplink itself from our feedback
        self._uplink_by_feedback = False
        self._group: list[int] | None = None  # (first, last send time, last arrival, bytes)
        self.remb_sent: int | None = None  # the last REMB value sent upstream
        self._remb_sent_ms = 0
        self._remb_task: asyncio.Task[None] | None = None
        self.packets_received = 0
        self.packets_dropped = 0
        self.packets_recovered = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        self._level_sum = 0
        self._level_count = 0
        self._on_close: list[Any] = []
        self.sender_report: tuple[int, int] | None = None  # (ntp, rtp) of the last SR
        seam.intercept_receiver(self._receiver, self._on_rtp)
        seam.observe_sender_reports(self._receiver, self._on_sender_report)
        if rtx_ssrc is not None:
            seam.route_ssrc_to(self._receiver, rtx_ssrc)
        if self.simulcast:
            seam.route_by_mid(self._receiver)
        track(self)

    # --- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """What this Producer feeds, as its Router attached them."""
        return self._sinks

    def on_close(self, callback: Any) -> None:
        """Call ``callback(self)`` once when this Producer closes."""
        self._on_close.append(callback)

    def _feed(self, sinks: tuple[Sink, ...]) -> None:
        """The Router's graph changed: forward to ``sinks`` from now on."""
        self._sinks = sinks
        self.wanted_layers_changed()

    def wanted_layers_changed(self) -> None:
        """Note which layers some sink forwards or waits for: the others' packets stop at
        the Producer (a simulcast layer nobody takes costs only its reception)."""
        wanted = [False] * len(self.layers)
        for sink in self._sinks:
            for index in sink.layers:
                if 0 <= index < len(wanted):
                    wanted[index] = True
        for layer, was, now in zip(self.layers, self._wanted, wanted, strict=True):
            if now and not was and layer.nack is not None:
                # its losses are tracked from here on: not the gap while nobody took it
                layer.nack = seam.NackGenerator()
        self._wanted = wanted

    @property
    def _ssrc(self) -> int | None:
        """The SSRC of the first (or only) encoding."""
        return self.layers[0].ssrc

    @property
    def bitrate(self) -> int:
        """Bits per second received over the last second, all layers."""
        return sum(layer.bitrate for layer in self.layers)

    def layer_needs(self, now: float) -> list[int | None]:
        """Each layer's bitrate, None for a layer not being received (lowest first); ``now``
        on the monotonic clock."""
        return [
            layer.bitrate if layer.active(now) and layer.bitrate else None for layer in self.layers
        ]

    def _on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        if self._closed or ssrc != self._ssrc:
            return
        self.sender_report = (ntp_timestamp, rtp_timestamp)
        for sink in self._sinks:
            sink.on_sender_report(ntp_timestamp, rtp_timestamp)

    # --- hot path ----------------------------------------------------------------------------

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if self._closed:
            return
        layer = self._by_ssrc.get(packet.ssrc)
        if layer is None:
            layer = self._learn(packet)
            if layer is None:
                self.packets_dropped += 1  # FEC, a codec we did not agree on, an unknown rid
                return
        estimator = self._estimator
        if estimator is not None:
            sent_at = packet.extensions.abs_send_time
            if sent_at is not None and not self._uplink_by_feedback:
                size = len(packet.payload) + packet.padding_size
                group = self._group
                if group is not None and (sent_at - group[0]) & 0xFFFFFF <= GROUP_SPAN:
                    # the same 5 ms group: the estimator only looks at its last packet's times
                    # and its size, so it is fed once per group (a quarter of the calls)
                    group[1] = sent_at
                    group[2] = arrival_time_ms
                    group[3] += size
                else:
                    if group is not None:
                        remb = estimator.add(
                            arrival_time_ms=group[2],
                            abs_send_time=group[1],
                            payload_size=group[3],
                            ssrc=packet.ssrc,
                        )
                        if remb is not None:
                            self.uplink_estimate = remb[0]
                    self._group = [sent_at, sent_at, arrival_time_ms, size]
            if arrival_time_ms - self._remb_sent_ms >= REMB_INTERVAL_MS:
                self.update_remb(arrival_time_ms)
        if packet.payload_type != self._payload_type:
            if packet.payload_type != self._rtx_payload_type or layer.ssrc is None:
                self.packets_dropped += 1
                return
            if len(packet.payload) < 2:
                self.packets_dropped += 1  # RTX padding: a bandwidth probe
                return
            packet = unwrap_rtx(packet, payload_type=self._payload_type, ssrc=layer.ssrc)
            self.packets_recovered += 1
        self.packets_received += 1
        layer.packets_received += 1
        now = time.monotonic()
        layer.measure(len(packet.payload), arrival_time_ms, now)
        nack = layer.nack
        # only a layer some sink takes: a retransmission of another would go nowhere
        if nack is not None and self._wanted[layer.index] and nack.add(packet):
            await self._send_nack(layer, sorted(nack.missing))
        if self.kind == "audio":
            level = packet.extensions.audio_level
            if level is not None:
                self._level_sum += level[1]
                self._level_count += 1
        if self._paused:
            return
        index = layer.index
        if not self._wanted[index] and not self._a_wanted_layer_is_idle(now):
            return
        ntp = ntp_now()
        send_time = abs_send_time(ntp)
        for sink in self._sinks:
            await sink.on_rtp(packet, index, ntp, send_time)

    def _a_wanted_layer_is_idle(self, now: float) -> bool:
        """Whether a layer some sink takes has gone quiet (checked every :data:`IDLE_CHECK_S`).
        Then packets of the others go to the sinks too: a Consumer on the quiet layer hears
        of no time passing otherwise, and would wait for it for good."""
        if now - self._idle_checked_at >= IDLE_CHECK_S:
            self._idle_checked_at = now
            self._wanted_idle = any(
                wanted and not layer.active(now)
                for wanted, layer in zip(self._wanted, self.layers, strict=True)
            )
        return self._wanted_idle

    def _learn(self, packet: RtpPacket) -> Layer | None:
        """The layer a packet of a new SSRC belongs to (by its rid when simulcast)."""
        rtx = packet.payload_type == self._rtx_payload_type
        if packet.payload_type != self._payload_type and not rtx:
            return None
        if self.simulcast:
            if rtx:
                layer = self._by_rid.get(packet.extensions.repaired_rtp_stream_id)
            else:
                layer = self._by_rid.get(packet.extensions.rtp_stream_id)
            if layer is None:
                return None
        else:
            layer = self.layers[0]
            if rtx and layer.rtx_ssrc is not None:
                return None  # not the RTX stream the SDP announced
        self._by_ssrc[packet.ssrc] = layer
        if rtx:
            layer.rtx_ssrc = packet.ssrc
        elif layer.ssrc is None:
            layer.ssrc = packet.ssrc
            if layer._keyframe_wanted:
                self._send_keyframe_request(layer)
        return layer

    # --- the publisher's bitrate -------------------------------------------------------------

    def uplink_by_transport_cc(self) -> None:
        """The publisher numbers its packets and we report their arrival (transport-cc): its
        own send-side estimator, which probes, knows its uplink better than our receive-side
        one, which stays within 1.5 times what it receives and, sent as REMB, held the
        publisher there. The REMB then carries only the subscribers' cap (one stream)."""
        self._uplink_by_feedback = True
        self.uplink_estimate = None

    def update_remb(self, now_ms: int | None = None, *, estimate_dropped: bool = False) -> None:
        """Tell the publisher what to send: its uplink estimate, capped by its subscribers'.

        One stream: the lowest subscriber estimate (so a 1:1 call degrades in quality instead
        of stopping). Simulcast: the uplink alone; each subscriber takes the layer it can carry.
        (Capping by the subscribers here would spiral down: a receiver's REMB stays within 1.5
        times what it receives, and it receives one layer.)
        """
        if self._closed or self.kind != "video":
            return
        if now_ms is None:
            now_ms = int(time.monotonic() * 1000)
        estimates = [s.estimate for s in self._sinks if s.estimate]
        cap: int | None = None
        if estimates and not self.simulcast:
            cap = min(estimates)  # type: ignore[type-var]
        values = [v for v in (self.uplink_estimate, cap) if v]
        if not values:
            return
        bitrate = max(MIN_UPSTREAM_BPS, min(values))  # type: ignore[type-var]
        previous = self.remb_sent
        if estimate_dropped and previous is not None and bitrate >= previous * REMB_DROP:
            return  # not enough of a change to say at once; the next regular REMB carries it
        ssrcs = [layer.ssrc for layer in self.layers if layer.ssrc is not None]
        if not ssrcs or (self._remb_task is not None and not self._remb_task.done()):
            return
        self._remb_sent_ms = now_ms
        self.remb_sent = bitrate
        task = asyncio.get_running_loop().create_task(self._send_remb(bitrate, ssrcs))
        self._remb_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        try:
            await seam.send_remb(self._receiver, bitrate, ssrcs)
        except ConnectionError:
            pass

    async def _send_nack(self, layer: Layer, lost: list[int]) -> None:
        """Losses on the publisher's leg: ask the publisher to send them again."""
        if layer.ssrc is None or not lost:
            return
        self.nacks_sent += 1
        try:
            await seam.send_nack(self._receiver, layer.ssrc, lost)
        except ConnectionError:
            pass

    # --- pause -------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop forwarding (e.g. the publisher muted); the Consumers keep their numbering."""
        self._paused = True

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        for sink in self._sinks:
            sink.on_resume()

    def take_audio_level(self) -> float | None:
        """Mean level (dBov, 0 = loudest) of the packets since the last call; None if none."""
        if not self._level_count:
            return None
        level = -self._level_sum / self._level_count
        self._level_sum = self._level_count = 0
        return level

    # --- keyframes ---------------------------------------------------------------------------

    def request_keyframe(self, layer: int = 0, *, now: bool = False) -> None:
        """Ask the publisher for a keyframe of ``layer``, at most once per
        :data:`KEYFRAME_WINDOW_S` per layer.

        A request inside the window is not dropped: one request goes out when the window ends.
        ``now``: at once, whatever the window (a network path was switched: what was asked and
        sent before went the dead way; waiting out the window cost up to 0.3 s of video).
        """
        if self._closed or self.kind != "video":
            return
        target = self.layers[min(max(layer, 0), len(self.layers) - 1)]
        if now:
            if target._keyframe_timer is not None:
                target._keyframe_timer.cancel()
                target._keyframe_timer = None
            self._send_keyframe_request(target)
            return
        if target._keyframe_timer is not None:
            return  # one is already scheduled; it covers this request too
        wait = target._last_keyframe_request + KEYFRAME_WINDOW_S - time.monotonic()
        if wait <= 0:
            self._send_keyframe_request(target)
        else:
            loop = asyncio.get_running_loop()
            target._keyframe_timer = loop.call_later(wait, self._keyframe_timer_fired, target)

    def _keyframe_timer_fired(self, layer: Layer) -> None:
        layer._keyframe_timer = None
        self._send_keyframe_request(layer)

    def _send_keyframe_request(self, layer: Layer) -> None:
        if self._closed:
            return
        if layer.ssrc is None:
            # Nothing received yet: the publisher's first frame is a keyframe anyway; ask when
            # its SSRC is known in case it is not.
            layer._keyframe_wanted = True
            return
        layer._keyframe_wanted = False
        layer._last_keyframe_request = time.monotonic()
        self.keyframe_requests_sent += 1
        task = asyncio.get_running_loop().create_task(seam.send_pli(self._receiver, layer.ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- close -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close this Producer and, in cascade, its sinks. Idempotent: a second caller returns
        when the first close has finished (a recorder among its sinks has written its end)."""
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            await self._close()
        finally:
            self._close_done.set()

    async def _close(self) -> None:
        for layer in self.layers:
            if layer._keyframe_timer is not None:
                layer._keyframe_timer.cancel()
                layer._keyframe_timer = None
        # its sinks close with it (the Router forgets them, and this Producer, on close)
        for sink in self._sinks:
            try:
                await sink.close()
            except Exception:  # a sink's failure must not stop the cascade
                logger.exception("producer sink failed to close", extra={"producer_id": self.id})
        self._sinks = ()
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for callback in self._on_close:
            callback(self)
        self._on_close.clear()
        logger.debug("producer closed", extra={"producer_id": self.id})
