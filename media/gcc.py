"""A send-side bandwidth estimator from transport feedback, after Google Congestion Control.

draft-ietf-rmcat-gcc-02 and libwebrtc's goog_cc, reduced to what an SFU's subscriber leg needs
(no maintained Python implementation exists; aiortc has only the receive-side one):

* delay-based: packets sent within 5 ms form a group; the change of one-way delay between groups,
  accumulated and smoothed, is fitted with a line over the last 20 groups (the trendline); its
  slope, against an adaptive threshold, says overuse / normal / underuse;
* AIMD rate control: overuse cuts the estimate to 0.85 x the throughput the receiver acknowledged,
  once the link confirms it (below); normal lets it grow 8 % a second, but never past 1.5 x that
  throughput (what is not sent cannot be measured);
* confirmation (ours; libwebrtc cuts on every overuse): growing delay alone is no proof of a queue
  in the network. A receiver short of CPU (a browser on a busy machine) stamps arrivals late and
  in bursts, which the trendline reads as overuse; but on a link that carries all that is sent,
  the packets of the last second still arrived over the span they were sent over. So overuse cuts
  only while they arrived over a longer span (the link delivers less than is sent: a queue grows)
  or packets are lost; else the estimate holds, as while a queue drains;
* loss-based: over 10 % loss cuts the estimate by half the loss, but not below 0.85 x the
  throughput the receiver acknowledged (losses while the sender cannot slow down yet say no more
  than that); under 2 % lets it grow;
* probes: a short cluster of packets sent faster than the estimate (padding); the rate the
  receiver got them at, when it is close to the rate they were sent at, becomes the estimate at
  once. This is how the estimate climbs back in a second after congestion lifts, where the 8 %
  growth would take ten.

What runs for every reported packet (the feedback's parse, matching it to what was sent, the
windows, the packet groups and the trendline) is compiled: media/_gcc_core.pyx. What runs once
a feedback or less (the rate control, loss and probes) is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ._gcc_core import OVERUSE, UNDERUSE, EstimatorCore, Trendline

#: Overuse cuts to this share of the acknowledged throughput ...
BETA = 0.85
#: ... at most once per this long (about a round trip and a feedback interval).
DECREASE_EVERY_US = 200_000
#: Normal growth per second, and its cap against what the receiver acknowledged.
GROWTH_PER_S = 1.08
THROUGHPUT_CAP = 1.5
THROUGHPUT_CAP_EXTRA = 10_000
LOSS_HIGH = 0.10
LOSS_LOW = 0.02
#: Loss is judged over at least this many packets and this long, then counted afresh (a burst
#: counts once, as in an RTCP receiver report's fraction lost).
LOSS_MIN_PACKETS = 20
LOSS_EVERY_US = 300_000
#: Overuse cuts only when the packets acknowledged over the last STRETCH_WINDOW_US of arrival
#: time (media/_gcc_core.pyx) arrived over a span this many times the one they were sent over
#: (or loss was seen). A link narrower than what is sent stretches them at once (300 kbit/s
#: under 700: 1.2-4.9 at the cuts measured in the three-page browser test); a starved receiver
#: hardly does (0.94-1.09 at the overuses it caused there, 2-5 load per core). A second, not
#: half: a receiver that reads late for 100 ms stretches half a second by 1.2, but a second by
#: 1.1 only.
QUEUE_STRETCH = 1.1
#: ... or when a queue stands: the least one-way delay of the last QUEUE_RECENT_US is this much
#: over the least of the last QUEUE_BASE_US. A link just narrower than what is sent stretches
#: the arrivals by little (7 % over: 1.08), but its queue grows for as long as that lasts and
#: every packet waits in it (the squeezed link: 270-640 ms); a starved receiver stamps late
#: mostly what came during a stall, and what it reads at once after shows the link's own delay
#: (14-90 ms over the base at its overuses, at 2-5 load per core).
QUEUE_CONFIRM_US = 200_000
MIN_BPS = 30_000
MAX_BPS = 20_000_000
#: A probe counts when this share of its packets were reported received ...
PROBE_MIN_RECEIVED = 0.8
PROBE_MIN_PACKETS = 5
#: ... and a receive rate under this share of the send rate means the link saturated: then the
#: estimate is this share of the receive rate.
PROBE_SATURATED = 0.9
PROBE_UTILISATION = 0.95
#: A probe whose feedback has not come within this long after it ended is given up.
PROBE_TIMEOUT_US = 1_000_000


class PacketResult(NamedTuple):
    """One reported packet: when we sent it, when it arrived (receiver's clock, us; None if
    lost), its size, and the probe cluster it belonged to (0: none)."""

    send_us: int
    arrival_us: int | None
    size: int
    cluster: int


#: A :class:`PacketResult`'s fields as a plain tuple.
_Result = tuple[int, int | None, int, int]


@dataclass
class _Cluster:
    id: int
    target: int
    end_us: int
    sent: int = 0
    sent_bytes: int = 0
    first_send: int = 0
    last_send: int = 0
    last_size: int = 0
    received: int = 0
    received_bytes: int = 0
    first_arrival: int | None = None
    last_arrival: int = 0
    last_arrival_size: int = 0
    first_arrival_size: int = 0


class SendSideEstimator:
    """The estimate (bits/s) of one transport, from the feedback on what it sent.

    ``on_sent`` for each packet sent (it says which probe cluster the packet belongs to),
    ``on_feedback`` with the receiver's reports, ``probe`` to start a probe cluster.
    """

    def __init__(self) -> None:
        self.estimate: int | None = None
        #: what was sent and what the feedback said of it, per packet (compiled)
        self.core = EstimatorCore()
        self._increasing_since: int | None = None
        self._decreased_at = -DECREASE_EVERY_US
        self.decreased_at_us: int | None = None  # when overuse or loss last cut the estimate
        self.cut_by: str | None = None  # what cut it last, for the logs
        #: overuse the link did not confirm (held, not cut), and the last stretch measured
        self.overuse_held = 0
        self.queue_us: int | None = None  # the standing queue at the last judgement
        self.stretch: float | None = None
        self._loss_cap: float | None = None
        self._loss_cap_at = 0
        self._loss_judged_at = 0
        self.loss = 0.0  # the fraction lost over the last judged stretch
        self._clusters: dict[int, _Cluster] = {}
        self._next_cluster = 1
        self._active_cluster: _Cluster | None = None
        self.probes_started = 0
        self.probes_succeeded = 0
        self.last_probe_result: int | None = None

    @property
    def trendline(self) -> Trendline:
        return self.core.trendline

    @property
    def state(self) -> str:
        """The delay detector's: overuse, normal or underuse."""
        return self.core.state

    # --- probes -------------------------------------------------------------------------------

    def probe(self, target_bps: int, now_us: int, duration_us: int = 100_000) -> int:
        """Start a probe cluster at ``target_bps`` for ``duration_us``; its id (0 if one is
        still running)."""
        active = self._active_cluster
        if active is not None and now_us < active.end_us:
            return 0
        cluster = _Cluster(self._next_cluster, target_bps, now_us + duration_us)
        self._next_cluster += 1
        self._clusters[cluster.id] = cluster
        self._active_cluster = cluster
        self.core.probe_sent = self.on_sent  # the core asks for each packet sent meanwhile
        self.probes_started += 1
        return cluster.id

    @property
    def probing(self) -> bool:
        return self._active_cluster is not None

    def on_sent(self, size: int, now_us: int) -> int:
        """Note a packet sent; the probe cluster it belongs to (0: none)."""
        cluster = self._active_cluster
        if cluster is None:
            return 0
        if now_us >= cluster.end_us:
            self._active_cluster = None
            self.core.probe_sent = None
            return 0
        if not cluster.sent:
            cluster.first_send = now_us
        cluster.sent += 1
        cluster.sent_bytes += size
        cluster.last_send = now_us
        cluster.last_size = size
        return cluster.id

    def _probe_result(self, cluster: _Cluster) -> int | None:
        if cluster.sent < PROBE_MIN_PACKETS or cluster.received < cluster.sent * PROBE_MIN_RECEIVED:
            return None
        send_span = cluster.last_send - cluster.first_send
        receive_span = cluster.last_arrival - (cluster.first_arrival or 0)
        if send_span <= 0 or receive_span <= 0 or receive_span > 1_000_000:
            return None
        # the last packet sent / first packet received bound the spans: not counted in them
        send_rate = (cluster.sent_bytes - cluster.last_size) * 8_000_000 / send_span
        receive_rate = (
            (cluster.received_bytes - cluster.first_arrival_size) * 8_000_000 / (receive_span)
        )
        if receive_rate < PROBE_SATURATED * send_rate:
            return int(min(PROBE_UTILISATION * receive_rate, cluster.target))
        # no more than the cluster aimed at: padding goes out in bursts, so the rates measured
        # over a 100 ms cluster can be several times its target (a free link then read as
        # 2.9 Mbit/s lifted a subscriber to a layer its link, squeezed a moment later, lost)
        return int(min(send_rate, receive_rate, cluster.target))

    # --- feedback -----------------------------------------------------------------------------

    def on_feedback(self, results: Sequence[_Result], now_us: int) -> None:
        """Take one feedback's packets (:class:`PacketResult` or plain tuples of its fields, in
        sequence order)."""
        self.core.add_results(results)
        self.judge(now_us)

    def judge(self, now_us: int) -> None:
        """After a feedback went into :attr:`core`: finish the probes it completes, and move
        the estimate."""
        reports = self.core.probe_reports
        if reports:
            for cluster, size, arrival in reports:
                self._probe_packet(cluster, size, arrival)
            reports.clear()
        self._finish_probes(now_us)
        self._update_rate(now_us)

    @property
    def acknowledged_bps(self) -> int | None:
        """What the receiver got over the last half second of its arrival times."""
        return self.core.acknowledged_bps

    @property
    def arrival_stretch(self) -> float | None:
        """The span over which the packets acknowledged over the last ``STRETCH_WINDOW_US``
        (media/_gcc_core.pyx) arrived, over the span they were sent over: about 1 while the link
        carries what is sent, more while a queue grows. None with too little to tell (computed
        when asked: only overuse asks)."""
        return self.core.arrival_stretch

    @property
    def standing_queue_us(self) -> int | None:
        """How much the least one-way delay of the last ``QUEUE_RECENT_US`` exceeds the least
        of the last ``QUEUE_BASE_US`` (media/_gcc_core.pyx; clock offsets cancel): the queue
        every packet waited in lately. None until a second of history."""
        return self.core.standing_queue_us

    def _probe_packet(self, cluster_id: int, size: int, arrival: int) -> None:
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            return
        if cluster.first_arrival is None or arrival < cluster.first_arrival:
            cluster.first_arrival = arrival
            cluster.first_arrival_size = size
        cluster.last_arrival = max(cluster.last_arrival, arrival)
        cluster.received += 1
        cluster.received_bytes += size

    def _finish_probes(self, now_us: int) -> None:
        for cluster in tuple(self._clusters.values()):
            if now_us < cluster.end_us:
                continue
            result = self._probe_result(cluster)
            if result is None and now_us < cluster.end_us + PROBE_TIMEOUT_US:
                continue  # its feedback may still come
            del self._clusters[cluster.id]
            self.last_probe_result = result
            if result is not None and (self.estimate is None or result > self.estimate):
                self.probes_succeeded += 1
                self.estimate = min(result, MAX_BPS)
                if self._loss_cap is not None:
                    self._loss_cap = max(self._loss_cap, result)

    def _update_rate(self, now_us: int) -> None:
        acked = self.acknowledged_bps
        if self.estimate is None:
            if acked is None:
                return
            # the first estimate: what gets through, with room to grow (probes find more)
            self.estimate = int(acked * THROUGHPUT_CAP)
        estimate = float(self.estimate)
        if self.state == OVERUSE:
            self._increasing_since = None
            if now_us - self._decreased_at >= DECREASE_EVERY_US:
                stretch = self.stretch = self.arrival_stretch
                queue = self.queue_us = self.standing_queue_us
                if (
                    stretch is not None
                    and stretch < QUEUE_STRETCH
                    and (queue is None or queue < QUEUE_CONFIRM_US)
                    and self.loss < LOSS_LOW
                ):
                    # the link delivered what was sent: a receiver short of CPU stamped the
                    # arrivals late, no queue grew. Hold (as while one drains), judge again later
                    self.overuse_held += 1
                    self._decreased_at = now_us
                else:
                    reduced = BETA * (acked if acked is not None else estimate)
                    if reduced < estimate:
                        estimate = reduced
                        self._decreased_at = now_us
                        self.decreased_at_us = now_us
                        self.cut_by = (
                            f"overuse (arrivals stretched {stretch or 0:.2f} times,"
                            f" {(queue or 0) // 1000} ms queue, {self.loss:.0%} lost)"
                        )
        elif self.state == UNDERUSE:
            self._increasing_since = None  # hold while queues drain
        else:
            since = self._increasing_since
            if since is None:
                self._increasing_since = now_us
            else:
                grown = estimate * GROWTH_PER_S ** (min(now_us - since, 1_000_000) / 1_000_000)
                self._increasing_since = now_us
                if acked is not None:
                    cap = THROUGHPUT_CAP * acked + THROUGHPUT_CAP_EXTRA
                    grown = min(grown, max(estimate, cap))
                estimate = grown
        estimate = self._apply_loss(estimate, now_us)
        self.estimate = int(min(max(estimate, MIN_BPS), MAX_BPS))

    def _apply_loss(self, estimate: float, now_us: int) -> float:
        core = self.core
        if (
            core.reported_count >= LOSS_MIN_PACKETS
            and now_us - self._loss_judged_at >= LOSS_EVERY_US
        ):
            self.loss = core.lost_count / core.reported_count
            core.lost_count = core.reported_count = 0
            self._loss_judged_at = now_us
            self._judge_loss(estimate, now_us)
        if self._loss_cap is not None:
            return min(estimate, self._loss_cap)
        return estimate

    def _judge_loss(self, estimate: float, now_us: int) -> None:
        loss = self.loss
        if loss > LOSS_HIGH:
            cut = estimate * (1 - 0.5 * loss)
            # Losses while the sender cannot follow the estimate yet (a Consumer waits for the
            # lower layer's keyframe) come from the rate already known to be too high: cut after
            # cut, they took a 300 kbit/s link's estimate to 120 kbit/s and stopped its video.
            # The link delivered what the receiver acknowledged: the estimate stays at least
            # where an overuse would put it.
            acked = self.acknowledged_bps
            if acked is not None:
                cut = min(estimate, max(cut, BETA * acked))
            self._loss_cap = cut
            self._loss_cap_at = now_us
            self.decreased_at_us = now_us
            self.cut_by = f"loss ({loss:.0%})"
        elif loss < LOSS_LOW and self._loss_cap is not None:
            elapsed = min(now_us - self._loss_cap_at, 1_000_000) / 1_000_000
            self._loss_cap *= GROWTH_PER_S**elapsed
            self._loss_cap_at = now_us
            if self._loss_cap >= estimate:
                self._loss_cap = None
