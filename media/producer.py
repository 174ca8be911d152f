"""Producer: one incoming track of a publisher, fanned out packet by packet to its Consumers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import RtpPacket, unwrap_rtx

from . import _aiortc_seam as seam
from .errors import ClosedError
from .rtp_writer import abs_send_time, ntp_now
from .tracking import track

if TYPE_CHECKING:
    from .consumer import Consumer
    from .tap import ProducerTap

logger = logging.getLogger(__name__)

#: Keyframe requests to one publisher are coalesced to at most one per window.
KEYFRAME_WINDOW_S = 0.3


class Producer:
    """An incoming audio or video track. Forwards every RTP packet as it arrives.

    Never decodes: the receiver's packets are routed here instead of to aiortc's jitter buffer.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        codec: RTCRtpCodecParameters,
        app_data: dict[str, Any] | None = None,
        *,
        rtx_payload_type: int | None = None,
        rtx_ssrc: int | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.kind: str = transceiver.kind
        self.codec = codec
        self._payload_type: int = codec.payloadType or 0
        self.mid = transceiver.mid
        self.app_data: dict[str, Any] = dict(app_data or {})
        self._transceiver = transceiver
        self._receiver = transceiver.receiver
        self._consumers: dict[str, Consumer] = {}
        self._closed = False
        self._close_done = asyncio.Event()
        self._paused = False
        self._ssrc: int | None = None
        self._rtx_payload_type = rtx_payload_type
        self._nack = seam.NackGenerator() if self.kind == "video" else None
        self._last_keyframe_request = -KEYFRAME_WINDOW_S
        self._keyframe_timer: asyncio.TimerHandle | None = None
        self._keyframe_wanted = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._rate_start_ms: int | None = None
        self._rate_bytes = 0
        self.bitrate = 0  # bits per second over the last second
        self.packets_received = 0
        self.packets_dropped = 0
        self.packets_recovered = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        self._level_sum = 0
        self._level_count = 0
        self._on_close: list[Any] = []
        self._taps: list[ProducerTap] = []
        self.sender_report: tuple[int, int] | None = None  # (ntp, rtp) of the last SR
        seam.intercept_receiver(self._receiver, self._on_rtp)
        seam.observe_sender_reports(self._receiver, self._on_sender_report)
        if rtx_ssrc is not None:
            seam.route_ssrc_to(self._receiver, rtx_ssrc)
        track(self)

    # --- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def on_close(self, callback: Any) -> None:
        """Call ``callback(self)`` once when this Producer closes."""
        self._on_close.append(callback)

    def _add_consumer(self, consumer: Consumer) -> None:
        if self._closed:
            raise ClosedError(f"producer {self.id} is closed")
        self._consumers[consumer.id] = consumer

    def _remove_consumer(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer.id, None)

    @property
    def taps(self) -> list[ProducerTap]:
        return list(self._taps)

    def add_tap(self, tap: ProducerTap) -> None:
        """Give ``tap`` every packet forwarded from now on; it closes with this Producer."""
        if self._closed:
            raise ClosedError(f"producer {self.id} is closed")
        self._taps.append(tap)
        if self.sender_report is not None:
            tap.on_sender_report(*self.sender_report)

    def remove_tap(self, tap: ProducerTap) -> None:
        """Stop giving ``tap`` packets (closing it is the caller's business)."""
        if tap in self._taps:
            self._taps.remove(tap)

    def _on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        if self._closed or ssrc != self._ssrc:
            return
        self.sender_report = (ntp_timestamp, rtp_timestamp)
        for tap in self._taps:
            tap.on_sender_report(ntp_timestamp, rtp_timestamp)

    # --- hot path ----------------------------------------------------------------------------

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if self._closed:
            return
        if packet.payload_type != self._payload_type:
            if packet.payload_type != self._rtx_payload_type or self._ssrc is None:
                self.packets_dropped += 1  # FEC, or a codec we did not agree on
                return
            if len(packet.payload) < 2:
                self.packets_dropped += 1  # RTX padding: a bandwidth probe
                return
            packet = unwrap_rtx(packet, payload_type=self._payload_type, ssrc=self._ssrc)
            self.packets_recovered += 1
        elif self._ssrc is None:
            self._ssrc = packet.ssrc
            if self._keyframe_wanted:
                self._send_keyframe_request()
        self.packets_received += 1
        self._measure(len(packet.payload), arrival_time_ms)
        if self._nack is not None and self._nack.add(packet):
            await self._send_nack(sorted(self._nack.missing))
        if self.kind == "audio":
            level = packet.extensions.audio_level
            if level is not None:
                self._level_sum += level[1]
                self._level_count += 1
        if self._paused:
            return
        for tap in self._taps:
            tap.on_rtp(packet)
        if not self._consumers:
            return
        ntp = ntp_now()
        send_time = abs_send_time(ntp)
        for consumer in tuple(self._consumers.values()):
            await consumer._forward(packet, ntp, send_time)

    def _measure(self, size: int, now_ms: int) -> None:
        if self._rate_start_ms is None:
            self._rate_start_ms = now_ms
        self._rate_bytes += size
        elapsed = now_ms - self._rate_start_ms
        if elapsed >= 1000:
            self.bitrate = self._rate_bytes * 8000 // elapsed
            self._rate_start_ms = now_ms
            self._rate_bytes = 0

    async def _send_nack(self, lost: list[int]) -> None:
        """Losses on the publisher's leg: ask the publisher to send them again."""
        if self._ssrc is None or not lost:
            return
        self.nacks_sent += 1
        try:
            await seam.send_nack(self._receiver, self._ssrc, lost)
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
        for consumer in self._consumers.values():
            consumer._resumed()
        for tap in self._taps:
            tap.on_resume()

    def take_audio_level(self) -> float | None:
        """Mean level (dBov, 0 = loudest) of the packets since the last call; None if none."""
        if not self._level_count:
            return None
        level = -self._level_sum / self._level_count
        self._level_sum = self._level_count = 0
        return level

    # --- keyframes ---------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per :data:`KEYFRAME_WINDOW_S`.

        A request inside the window is not dropped: one request goes out when the window ends.
        """
        if self._closed or self.kind != "video":
            return
        if self._keyframe_timer is not None:
            return  # one is already scheduled; it covers this request too
        wait = self._last_keyframe_request + KEYFRAME_WINDOW_S - time.monotonic()
        if wait <= 0:
            self._send_keyframe_request()
        else:
            loop = asyncio.get_running_loop()
            self._keyframe_timer = loop.call_later(wait, self._keyframe_timer_fired)

    def _keyframe_timer_fired(self) -> None:
        self._keyframe_timer = None
        self._send_keyframe_request()

    def _send_keyframe_request(self) -> None:
        if self._closed:
            return
        if self._ssrc is None:
            # Nothing received yet: the publisher's first frame is a keyframe anyway; ask when
            # its SSRC is known in case it is not.
            self._keyframe_wanted = True
            return
        self._keyframe_wanted = False
        self._last_keyframe_request = time.monotonic()
        self.keyframe_requests_sent += 1
        task = asyncio.get_running_loop().create_task(seam.send_pli(self._receiver, self._ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- close -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close this Producer and, in cascade, its Consumers and taps. Idempotent: a second
        caller returns when the first close has finished (its taps have written their end)."""
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            await self._close()
        finally:
            self._close_done.set()

    async def _close(self) -> None:
        if self._keyframe_timer is not None:
            self._keyframe_timer.cancel()
            self._keyframe_timer = None
        for consumer in tuple(self._consumers.values()):
            await consumer.close()
        self._consumers.clear()
        taps, self._taps = self._taps, []
        for tap in taps:
            try:
                await tap.close()
            except Exception:  # a tap's failure must not stop the cascade
                logger.exception("producer tap failed to close", extra={"producer_id": self.id})
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for callback in self._on_close:
            callback(self)
        self._on_close.clear()
        logger.debug("producer closed", extra={"producer_id": self.id})
