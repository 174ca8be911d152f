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
#: A stopped video resumes when the estimate covers the lowest layer's bitrate times this.
RESUME_ABOVE = 1.0
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
