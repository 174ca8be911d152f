"""The bench server's ``relay`` engine: plain aiortc peer connections and MediaRelay.

This is what we compare against: the publisher's track is received (jitter buffer, decode), and
each subscriber's sender re-encodes it. Latency is measured per video frame, from the arrival of
the source frame's last packet (after SRTP unprotect and parse, as for ``ours``) to the moment
the re-encoded frame is handed to the sender for packetizing (its packets follow at once).

Our counting subscribers send no REMB, so the relay's encoders would stay at aiortc's default
500 kbps; each is set to the source's bitrate instead, as a browser's REMB would drive it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtp import RtpPacket
from latency import LatencyRecorder

from media import _aiortc_seam as seam

#: The source's bitrate; the relay's video encoders are held at it.
SOURCE_BITRATE = 1_000_000
#: Arrival stamps kept per source track, by RTP timestamp (about 8 s of video frames).
ARRIVALS_KEPT = 256


class _SourceArrivals:
    """When the last packet of each recent frame of one source arrived."""

    def __init__(self) -> None:
        self.by_timestamp: dict[int, int] = {}
        self._receiver: Any = None

    def arrival_of(self, frame_timestamp: int) -> int | None:
        """The arrival stamp of the source frame a decoded frame's pts (``frame_timestamp``) names.

        aiortc's receiver rebases RTP timestamps to its first frame before decoding
        (``TimestampMapper``); undo that to find the source packets.
        """
        mapper = self._receiver._RTCRtpReceiver__timestamp_mapper
        if mapper._origin is None:
            return None
        timestamp = frame_timestamp + mapper._origin
        for candidate in (timestamp, timestamp + 1, timestamp - 1):  # time-base rounding
            arrived = self.by_timestamp.get(candidate & 0xFFFFFFFF)
            if arrived is not None:
                return arrived
        return None

    def attach(self, receiver: Any) -> None:
        self._receiver = receiver
        original = receiver._handle_rtp_packet

        async def stamped(packet: RtpPacket, arrival_time_ms: int) -> None:
            stamps = self.by_timestamp
            stamps[packet.timestamp] = time.perf_counter_ns()
            if len(stamps) > ARRIVALS_KEPT:
                del stamps[next(iter(stamps))]
            await original(packet, arrival_time_ms)

        seam.intercept_receiver(receiver, stamped)


class RelayEngine:
    """One MediaRelay; one peer connection per publisher and one per subscriber."""

    name = "relay"

    def __init__(self, latency: LatencyRecorder | None) -> None:
        self.latency = latency
        self.unmatched_frames = 0
        self._relay = MediaRelay()
        self._tracks: dict[str, tuple[MediaStreamTrack, _SourceArrivals | None]] = {}
        self._publishers: list[RTCPeerConnection] = []
        self._subscribers: dict[str, RTCPeerConnection] = {}
        self._forwarded_by_closed = 0  # packets sent by subscriptions closed since

    def _pc(self) -> RTCPeerConnection:
        # max-bundle: with aiortc's default "balanced" policy the second m-line of a kind stays
        # on a transport that BUNDLE discards, and that track would never be sent.
        return RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    async def publish(self, offer_sdp: str) -> tuple[str, list[dict[str, str]]]:
        pc = self._pc()
        self._publishers.append(pc)
        added: list[dict[str, str]] = []

        def on_track(track: MediaStreamTrack) -> None:
            arrivals = None
            if self.latency is not None and track.kind == "video":
                receiver = next(
                    t.receiver for t in pc.getTransceivers() if t.receiver.track is track
                )
                arrivals = _SourceArrivals()
                arrivals.attach(receiver)
            track_id = uuid.uuid4().hex
            self._tracks[track_id] = (track, arrivals)
            added.append({"id": track_id, "kind": track.kind})

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp, added

    async def subscribe(self, producer_ids: list[str]) -> tuple[str, str]:
        pc = self._pc()
        for producer_id in producer_ids:
            track, arrivals = self._tracks[producer_id]
            sender = pc.addTrack(self._relay.subscribe(track))
            if track.kind == "video":
                self._instrument_sender(sender, arrivals)
        subscription_id = uuid.uuid4().hex
        self._subscribers[subscription_id] = pc
        await pc.setLocalDescription(await pc.createOffer())
        return subscription_id, pc.localDescription.sdp

    def _instrument_sender(self, sender: RTCRtpSender, arrivals: _SourceArrivals | None) -> None:
        original = sender._next_encoded_frame

        async def timed(codec: Any) -> Any:
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if encoder is not None and encoder.target_bitrate != SOURCE_BITRATE:
                encoder.target_bitrate = SOURCE_BITRATE
            frame = await original(codec)
            if frame is not None and arrivals is not None and self.latency is not None:
                # the decoded frame's pts is the source's rebased RTP timestamp, and the encoder
                # hands it through unchanged
                arrived = arrivals.arrival_of(frame.timestamp)
                if arrived is None:
                    self.unmatched_frames += 1
                else:
                    self.latency.add(time.perf_counter_ns() - arrived)
            return frame

        sender._next_encoded_frame = timed  # type: ignore[method-assign]

    async def answer(self, subscription_id: str, answer_sdp: str) -> None:
        pc = self._subscribers[subscription_id]
        await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def unsubscribe(self, subscription_id: str) -> None:
        pc = self._subscribers.pop(subscription_id, None)
        if pc is not None:
            self._forwarded_by_closed += self._packets_sent(pc)
            await pc.close()

    @staticmethod
    def _packets_sent(pc: RTCPeerConnection) -> int:
        return sum(
            s._RTCRtpSender__packet_count  # type: ignore[attr-defined]
            for s in pc.getSenders()
        )

    def forwarded_packets(self) -> int:
        return self._forwarded_by_closed + sum(
            self._packets_sent(pc) for pc in self._subscribers.values()
        )

    async def close(self) -> None:
        for pc in (*self._subscribers.values(), *self._publishers):
            await pc.close()
        self._subscribers.clear()
        self._publishers.clear()
        self._tracks.clear()
