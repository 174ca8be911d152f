"""The bench server's ``ours`` engine: media.MediaWorker / Router / Transport, packet forwarding.

Latency instrumentation lives here, not in media/: ``Producer._on_rtp`` is wrapped to stamp
``perf_counter_ns()`` when a video packet enters (after SRTP unprotect and parse), and
``media._aiortc_seam.send_rtp`` is wrapped to take the difference after each send returns
(SRTP protect and ``sendto`` done). A context variable carries the stamp, so packets of
publishers served by different tasks never mix.
"""

from __future__ import annotations

import contextvars
import logging
import time
from pathlib import Path
from typing import Any

from latency import LatencyRecorder

import media
from media import MediaWorker, Producer, Transport
from media import _aiortc_seam as seam

logger = logging.getLogger(__name__)

_packet_in_ns: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "packet_in_ns", default=None
)


def instrument(recorder: LatencyRecorder) -> None:
    """Measure packet-in to packet-out for every forwarded video packet (whichever of the seam's
    two sends sends it). Call before publishing."""
    original_on_rtp = Producer._on_rtp
    original_send_rtp = seam.send_rtp

    async def timed_on_rtp(self: Producer, packet: Any, arrival_time_ms: int) -> None:
        if self.kind != "video":
            await original_on_rtp(self, packet, arrival_time_ms)
            return
        token = _packet_in_ns.set(time.perf_counter_ns())
        try:
            await original_on_rtp(self, packet, arrival_time_ms)
        finally:
            _packet_in_ns.reset(token)

    async def timed_send_rtp(sender: Any, data: bytes) -> None:
        await original_send_rtp(sender, data)
        started = _packet_in_ns.get()
        if started is not None:  # None: a NACK answer, not a forwarded packet
            recorder.add(time.perf_counter_ns() - started)

    def timed_send_rtp_now(sender: Any, data: bytes) -> bool:
        sent = original_send_rtp_now(sender, data)
        started = _packet_in_ns.get()
        if sent and started is not None:
            recorder.add(time.perf_counter_ns() - started)
        return sent

    original_send_rtp_now = seam.send_rtp_now
    Producer._on_rtp = timed_on_rtp  # type: ignore[method-assign]
    seam.send_rtp = timed_send_rtp
    seam.send_rtp_now = timed_send_rtp_now


def counters_of(obj: Any) -> dict[str, int]:
    """The public int attributes of ``obj`` (its packet and feedback counters)."""
    return {
        k: v
        for k, v in vars(obj).items()
        if not k.startswith("_") and isinstance(v, int) and not isinstance(v, bool)
    }


class OursEngine:
    """One Router; one publish Transport per publisher, one subscribe Transport per subscriber."""

    name = "ours"

    def __init__(self, latency: LatencyRecorder | None, ice_address: str = "127.0.0.1") -> None:
        self.latency = latency
        if latency is not None:
            instrument(latency)
        self._worker = MediaWorker(ice_addresses=[ice_address], ice_servers=[])
        self._router = self._worker.get_router("bench")
        self._producers: dict[str, Producer] = {}
        self._subscriptions: dict[str, Transport] = {}
        self._forwarded_by_closed = 0  # packets sent by subscriptions closed since
        self._recorders: list[Any] = []

    async def publish(self, offer_sdp: str) -> tuple[str, list[dict[str, str]]]:
        transport = self._router.create_transport("publish")
        result = await self._router.publish(transport, offer_sdp)
        for producer in result.added:
            self._producers[producer.id] = producer
        return result.answer_sdp, [{"id": p.id, "kind": p.kind, "mid": p.mid} for p in result.added]

    async def subscribe(self, producer_ids: list[str]) -> tuple[str, str]:
        transport = self._router.create_transport("subscribe")
        for producer_id in producer_ids:
            self._router.consume(transport, self._producers[producer_id])
        self._subscriptions[transport.id] = transport
        return transport.id, await transport.create_offer()

    def subscription_mids(self, subscription_id: str) -> dict[str, str]:
        """mid -> producer id of a subscription's Consumers (after its offer was made)."""
        transport = self._subscriptions[subscription_id]
        return {c.mid: c.producer.id for c in transport.consumers if c.mid is not None}

    async def unsubscribe(self, subscription_id: str) -> None:
        transport = self._subscriptions.pop(subscription_id, None)
        if transport is not None:
            self._forwarded_by_closed += sum(c.packets_sent for c in transport.consumers)
            await transport.close()

    async def answer(self, subscription_id: str, answer_sdp: str) -> None:
        await self._subscriptions[subscription_id].apply_answer(answer_sdp)

    def forwarded_packets(self) -> int:
        return self._forwarded_by_closed + sum(
            c.packets_sent for t in self._subscriptions.values() for c in t.consumers
        )

    def producer_stats(self) -> dict[str, dict[str, int]]:
        """Every public integer counter of each Producer, by Producer id.

        Read generically, so counters media/ adds later (upstream NACKs, recovered packets)
        show up here without a change to the bench.
        """
        return {pid: counters_of(p) for pid, p in self._producers.items()}

    def consumer_stats(self) -> dict[str, int]:
        """The public integer counters of all Consumers, summed."""
        totals: dict[str, int] = {}
        for transport in self._subscriptions.values():
            for consumer in transport.consumers:
                for key, value in counters_of(consumer).items():
                    if key == "remb_bitrate":
                        continue  # a reading, not a counter
                    totals[key] = totals.get(key, 0) + value
        return totals

    async def record(self, producer_ids: list[str], directory: str) -> None:
        """Attach a recording Consumer (recording/) to each of ``producer_ids``."""
        from recording.recorder import RecordingConsumer

        for producer_id in producer_ids:
            producer = self._producers[producer_id]
            recorder = RecordingConsumer(
                producer,
                Path(directory) / "tracks" / producer.id,
                room_id="bench",
                session_id="bench",
                segment_s=5.0,
            )
            self._router.attach(producer, recorder)
            self._recorders.append(recorder)

    async def stop_recording(self) -> dict[str, int]:
        """Close every recorder; the frames and packets they wrote."""
        recorders, self._recorders = self._recorders, []
        for recorder in recorders:
            self._router.detach(recorder)
            await recorder.close()
        return {"recorders": len(recorders), "dropped": sum(r.dropped for r in recorders)}

    async def close(self) -> None:
        await self.stop_recording()
        await self._worker.close()
        leaks = media.open_objects()
        if leaks:
            logger.warning("objects still open after close: %s", leaks)
