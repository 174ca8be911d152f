"""What a subscriber's bandwidth estimate buys it: which layer, when to stop, how much to probe.

The rules, as in the SFUs we learn from (mediasoup, LiveKit): the estimate steers, it never stops
video dead. A subscriber gets the best simulcast layer its estimate carries; only when even the
lowest layer needs far more than the estimate for a while does its video stop, and then it keeps
receiving padding (probes) at about its estimate, so the estimate can grow again. A receiver's
estimate cannot climb much above what it receives (Chrome's and aiortc's clamp it at 1.5 times the
incoming rate), so a subscriber below a higher layer is probed up to that layer's need too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: A receiver's REMB grows by about 8 % a second and stays within 1.5 times what it receives,
#: so waiting for it to cover a higher layer whole takes long after congestion. While it has not
#: dropped for :data:`STEADY_S` (no overuse seen), switch up when it covers this share of the next
#: layer's bitrate, and stay on a layer down to the second share ...
UP_ABOVE = 0.9
STAY_ABOVE = 0.75
#: ... while it is falling (the receiver saw overuse), stay only while it covers the layer whole.
DOWN_BELOW = 1.0
#: The estimate counts as falling this long after it last dropped by more than :data:`DROP`.
STEADY_S = 2.0
DROP = 0.97
#: Video stops when the estimate is below the lowest layer's bitrate times this ...
PAUSE_BELOW = 0.5
#: ... for this long (a dip under CPU load or a keyframe burst is no reason to stop).
PAUSE_AFTER_S = 3.0
#: A later video of a shared transport (media/bandwidth.py SharedEstimate) that does not fit
#: beside the others stops after this long, once the link showed congestion.
PAUSE_LATER_AFTER_S = 1.0
#: A stopped video resumes when the estimate covers the lowest layer's bitrate times this.
RESUME_ABOVE = 1.0
#: A later video stopped for congestion (it did not fit beside the others) comes back no sooner
#: than this after it stopped, on its lowest layer, and climbs no sooner than STEADY_S after.
#: One that stops again within RESUME_FAILED_S of coming back waits twice as long the next
#: time, up to RESUME_HOLD_MAX_S (LiveKit backs off its probes likewise). On a squeezed
#: link the estimate grows back over what the link carries (8 % a second, up to 1.5 times what
#: was received), the stream came back, overflowed the link, and stopped again every 4-5 s;
#: each time the first video lost packets and, for the patient, froze for up to 3 s.
RESUME_HOLD_S = 4.0
RESUME_HOLD_MAX_S = 16.0
RESUME_FAILED_S = 10.0
#: Probes while stopped go at least this fast, so that an estimate of nearly nothing can grow.
MIN_PROBE_BPS = 60_000
#: Probes towards a higher layer fill what is sent up to this share of the estimate.
PROBE_SHARE = 0.9
#: A padding packet's padding (the RTP maximum).
PADDING_BYTES = 255
#: The REMB the server sends a publisher never asks for less than this.
MIN_UPSTREAM_BPS = 100_000


def choose_layer(
    needs: Sequence[int | None], estimate: int, current: int | None, *, steady: bool = True
) -> int:
    """The layer (index into ``needs``, lowest first) ``estimate`` carries.

    ``needs[i]`` is layer i's bitrate, None while the layer is not being received. With
    hysteresis: while the estimate is ``steady`` (not falling), go up when it covers
    :data:`UP_ABOVE` of a higher layer and stay down to :data:`STAY_ABOVE` of the current one;
    while it falls, go up never and stay only above :data:`DOWN_BELOW`. Never returns an
    inactive layer unless none is active (then the lowest).
    """
    active = [i for i, need in enumerate(needs) if need is not None]
    if not active:
        return 0 if current is None else current
    stay = STAY_ABOVE if steady else DOWN_BELOW
    best = active[0]
    for i in active:
        need = needs[i] or 0
        if i == current:
            if estimate >= need * stay:
                best = i
        elif (steady or current is None or i < current) and estimate >= need * UP_ABOVE:
            best = i
    return best


class ProbeBudget:
    """A token bucket: bytes of padding owed so the subscriber receives ``rate`` bits/s."""

    __slots__ = ("_at", "_credit", "rate")

    def __init__(self) -> None:
        self.rate = 0
        self._credit = 0.0
        self._at: float | None = None

    def set_rate(self, rate: int) -> None:
        if rate <= 0:
            self._at = None
            self._credit = 0.0
        self.rate = max(0, rate)

    def due(self, now: float, media_bytes: int) -> int:
        """How many padding packets to send now, given ``media_bytes`` sent since last call."""
        if self._at is None:
            self._at = now
            return 0
        elapsed = min(now - self._at, 0.2)
        self._at = now
        cap = self.rate / 8 * 0.1  # at most 100 ms of probing in one burst
        self._credit = max(-cap, min(cap, self._credit + self.rate / 8 * elapsed - media_bytes))
        count = int(self._credit // PADDING_BYTES)
        if count > 0:
            self._credit -= count * PADDING_BYTES
            return count
        return 0


# --- one subscribe transport's estimate, shared among its video streams -----------------------

#: What an audio stream on the wire costs above its payload bitrate (about 50 packets a second
#: of RTP, SRTP, UDP and IP headers), and what one is taken to need before it was measured.
AUDIO_OVERHEAD_BPS = 28_000
AUDIO_UNMEASURED_BPS = 64_000


@dataclass(frozen=True, slots=True)
class Want:
    """What one video stream of a transport asks of the shared estimate."""

    #: each layer's bitrate, None while the layer is not being received (lowest first)
    needs: Sequence[int | None]
    #: the layer it forwards or is switching to; None while its video is stopped
    current: int | None


@dataclass(frozen=True, slots=True)
class Grant:
    """A stream's part of the estimate: the layer it may have (None: none, its video stops)
    and its share (bits/s: the layer's need, or less for a first stream short of it)."""

    layer: int | None
    share: int


def allocate(available: int, wants: Sequence[Want], *, steady: bool) -> tuple[list[Grant], int]:
    """Share ``available`` (the estimate less audio) among video streams, in priority order.

    As mediasoup's and LiveKit's allocators: first the lowest layer for each stream in turn,
    as long as it fits (the first stream, while it forwards, keeps its lowest layer whatever
    is left: it stops only by the single-stream rule, after :data:`PAUSE_AFTER_S` under
    :data:`PAUSE_BELOW`, judged on its share); then round after round
    each stream in turn climbs one layer while what is left pays for the step. A layer a
    stream has is counted at :data:`STAY_ABOVE` of its need (at :data:`DOWN_BELOW` while the
    estimate falls), a higher one at :data:`UP_ABOVE` and only while it is steady, a stopped
    stream's lowest at :data:`RESUME_ABOVE`: the single-stream rules of :func:`choose_layer`,
    so that streams do not flap; what a granted layer takes from the rest is its whole need.
    Returns the grants (in ``wants`` order) and what is left.
    """
    stay = STAY_ABOVE if steady else DOWN_BELOW

    def cost(want: Want, layer: int) -> int:
        need = want.needs[layer] or 0
        if want.current is None:
            return int(need * RESUME_ABOVE)
        if layer <= want.current:
            return int(need * stay)
        return int(need * UP_ABOVE)

    remaining = max(0, available)
    layers: list[int | None] = [None] * len(wants)
    shares = [0] * len(wants)  # what each is counted to use: its layer's whole need
    actives = [[i for i, need in enumerate(w.needs) if need is not None] for w in wants]
    for index, want in enumerate(wants):
        if not actives[index]:
            continue
        lowest = actives[index][0]
        if cost(want, lowest) <= remaining or (index == 0 and want.current is not None):
            layers[index] = lowest
            shares[index] = min(want.needs[lowest] or 0, remaining)
            remaining -= shares[index]
    climbed = True
    while climbed:
        climbed = False
        for index, want in enumerate(wants):
            layer = layers[index]
            if layer is None:
                continue
            higher = [i for i in actives[index] if i > layer]
            if not higher:
                continue
            step = higher[0]
            if not steady and (want.current is None or step > want.current):
                continue
            # the step is judged by its threshold, and what it takes is its whole need (so a
            # stream held by the hysteresis leaves the others no room it does not leave)
            if cost(want, step) <= shares[index] + remaining:
                taken = min(want.needs[step] or 0, shares[index] + remaining)
                remaining -= taken - shares[index]
                shares[index] = taken
                layers[index] = step
                climbed = True
    return [Grant(layer, share) for layer, share in zip(layers, shares, strict=True)], remaining


class Member(Protocol):
    """A stream of a subscribe transport, as :class:`SharedEstimate` sees it (a Consumer)."""

    @property
    def kind(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def shares_estimate(self) -> bool:
        """A video stream whose estimate is the transport's (transport-cc, or a REMB naming
        the transport's streams), forwarding or stopped for congestion."""
        ...

    @property
    def audio_bps(self) -> int:
        """An audio stream's bitrate on the wire (0: not sent)."""
        ...

    def want(self, now: float) -> Want: ...


@dataclass(frozen=True, slots=True)
class Share:
    """What :meth:`SharedEstimate.share` tells one video stream."""

    layer: int | None
    #: its estimate to judge by (bits/s): its grant; the prober's also holds what is left
    share: int
    #: it probes for the whole transport (the first stream forwarding; else the first)
    prober: bool
    #: for the prober of several streams: its own rate at which every stream would have its
    #: top layer (the probe cluster's goal); None with one stream (its own layers tell)
    goal: int | None
    #: served first: it stops by the single-stream rule; a later one only on a link that
    #: showed congestion (an estimate that has not grown yet, as after a start, is no reason)
    first: bool


class SharedEstimate:
    """The streams of one subscribe transport, in the order they came (and by priority).

    One transport has one estimate: transport-cc's is the transport's by construction, and a
    browser's REMB names every stream it covers. Each video stream asks :meth:`share` for its
    part instead of taking the whole estimate for itself.
    """

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: list[Member] = []

    def add(self, member: Member) -> None:
        self._members.append(member)

    def remove(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)

    def audio_bps(self) -> int:
        return sum(m.audio_bps for m in self._members if m.kind == "audio")

    def share(self, asking: Member, estimate: int, now: float, *, steady: bool) -> Share:
        """``asking``'s part of ``estimate`` (the transport's), audio reserved first."""
        video = sorted(
            (m for m in self._members if m.kind == "video" and m.shares_estimate),
            key=lambda m: -m.priority,  # stable: the same priority keeps the order they came
        )
        if asking not in video:
            video.insert(0, asking)
        wants = [m.want(now) for m in video]
        grants, left = allocate(estimate - self.audio_bps(), wants, steady=steady)
        forwarding = [
            i for i, w in enumerate(wants) if w.current is not None and grants[i].layer is not None
        ]
        prober = forwarding[0] if forwarding else 0
        index = video.index(asking)
        grant = grants[index]
        share = grant.share + (left if index == prober else 0)
        goal = None
        if index == prober and len(video) > 1:
            missing = 0
            for want, got in zip(wants, grants, strict=True):
                active = [need for need in want.needs if need is not None]
                if active:
                    missing += max(0, active[-1] - (got.share if got.layer is not None else 0))
            goal = share + missing
        return Share(grant.layer, share, index == prober, goal, index == 0)
