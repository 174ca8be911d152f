"""Rate limits, failure back-off and refusal summaries, in memory (issue 13, R33).

Three small, clock-injected pieces that the edges share:

- :class:`TokenBuckets`: a bucket per key (an account, a socket and event class, an address):
  ``burst`` tokens, refilled at ``rate`` per second. :meth:`TokenBuckets.take` answers 0 when
  the request may go, else the seconds until it could.
- :class:`FailureBackoff`: failures per key in a sliding window; from ``threshold`` failures on,
  the key waits ``base_s * 2**(failures - threshold)`` seconds (capped) after its last failure.
  A refusal while waiting is not a failure, so waiting never grows by itself.
- :class:`RefusalSummary`: counts refusals per (key, kind) and hands out one summary per key and
  kind per ``interval_s``, so a flood writes one audit row a minute instead of one per request.

Each keeps at most ``max_keys`` keys (the least recently used go first), so a flood of new keys
(spoofed addresses, new sockets) costs bounded memory. State is per process: with several
processes each enforces its own share (documented in docs/hardening.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

DEFAULT_MAX_KEYS: Final = 100_000

Clock = Callable[[], float]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """An ordered dict that forgets its least recently used key beyond ``max_keys``."""

    def __init__(self, max_keys: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._max = max_keys

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class TokenBuckets:
    """A token bucket per key: ``burst`` at most, ``rate`` tokens a second."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: _Lru[Hashable, list[float]] = _Lru(max_keys)

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if taken, else the seconds until they would be."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= cost:
            bucket[0] = tokens - cost
            self._buckets.put(key, bucket)
            return 0.0
        bucket[0] = tokens
        self._buckets.put(key, bucket)
        return (cost - tokens) / self.rate


@dataclass
class _Failures:
    stamps: list[float] = field(default_factory=list)


class FailureBackoff:
    """Failures per key within ``window_s``; exponential waiting from ``threshold`` on."""

    def __init__(
        self,
        threshold: int,
        *,
        window_s: float = 900.0,
        base_s: float = 1.0,
        max_wait_s: float = 900.0,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.base_s = base_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._keys: _Lru[Hashable, _Failures] = _Lru(max_keys)

    def _recent(self, key: Hashable, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is None:
            return None
        entry.stamps = [t for t in entry.stamps if now - t < self.window_s]
        if not entry.stamps:
            self._keys.pop(key)
            return None
        return entry

    def wait(self, key: Hashable) -> float:
        """Seconds ``key`` must still wait before its next attempt (0.0: it may go)."""
        now = self._clock()
        entry = self._recent(key, now)
        if entry is None or len(entry.stamps) < self.threshold:
            return 0.0
        exponent = min(len(entry.stamps) - self.threshold, 30)
        delay = min(self.max_wait_s, self.base_s * 2**exponent)
        return max(0.0, entry.stamps[-1] + delay - now)

    def failed(self, key: Hashable) -> None:
        """Count one failure of ``key``."""
        now = self._clock()
        entry = self._recent(key, now) or _Failures()
        entry.stamps.append(now)
        del entry.stamps[: -max(self.threshold * 4, 1)]  # enough to reach the cap
        self._keys.put(key, entry)

    def forget(self, key: Hashable) -> None:
        """A success: the key starts afresh."""
        self._keys.pop(key)


class RefusalSummary:
    """Counts refusals per (key, kind); one summary per (key, kind) per ``interval_s``.

    :meth:`refused` returns the count to audit now (the refusals since the last summary,
    including this one) or ``None`` when this refusal is only counted. The first refusal of a
    quiet key is reported at once, so a single refused request is still audited as before.
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._keys: _Lru[Hashable, list[float]] = _Lru(max_keys)

    def refused(self, key: Hashable) -> int | None:
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None or now - entry[0] >= self.interval_s:
            pending = 0 if entry is None else int(entry[1])
            self._keys.put(key, [now, 0.0])
            return pending + 1
        entry[1] += 1
        return None

    def pending(self, key: Hashable) -> int:
        """Refusals counted but not yet reported for ``key``."""
        entry = self._keys.get(key)
        return 0 if entry is None else int(entry[1])
