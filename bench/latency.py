"""Latency samples (nanoseconds) in a fixed-size histogram, with percentiles, for the bench server.

The histogram is allocated once, so recording costs no memory however long a run lasts: a
10-minute memory run must not see its own instrument grow. Resolution: 1 µs below 20 ms,
100 µs below 2 s, 10 ms below 120 s; slower samples share one last bucket (reported as the
exact maximum).
"""

from __future__ import annotations

from array import array

#: (bucket width, upper end) of each tier, in nanoseconds, fastest first.
TIERS = ((1_000, 20_000_000), (100_000, 2_000_000_000), (10_000_000, 120_000_000_000))


def _layout() -> list[tuple[int, int, int, int]]:
    """Per tier: (first bucket, lower end ns, width ns, upper end ns)."""
    rows, first, low = [], 0, 0
    for width, high in TIERS:
        rows.append((first, low, width, high))
        first += (high - low) // width
        low = high
    return rows


_TIERS = _layout()
_OVERFLOW = _TIERS[-1][0] + (_TIERS[-1][3] - _TIERS[-1][1]) // _TIERS[-1][2]
_BUCKETS = _OVERFLOW + 1


def _bucket(ns: int) -> int:
    ns = max(0, ns)
    for first, low, width, high in _TIERS:
        if ns < high:
            return first + (ns - low) // width
    return _OVERFLOW


def _upper_edge_ns(bucket: int) -> int | None:
    """A bucket's upper edge (a percentile is never reported below a sample in its bucket);
    None for the overflow bucket."""
    for first, low, width, _high in reversed(_TIERS):
        if bucket >= first and bucket < _OVERFLOW:
            return low + (bucket - first + 1) * width
    return None


class LatencyRecorder:
    """Counts samples since the last :meth:`reset` into fixed buckets."""

    def __init__(self) -> None:
        self._counts = array("q", bytes(8 * _BUCKETS))
        self._n = 0
        self._max_ns = 0

    def add(self, ns: int) -> None:
        self._counts[_bucket(ns)] += 1
        self._n += 1
        if ns > self._max_ns:
            self._max_ns = ns

    def reset(self) -> None:
        counts = self._counts
        for i in range(len(counts)):
            counts[i] = 0
        self._n = 0
        self._max_ns = 0

    def summary(self) -> dict[str, float | int | None]:
        """p50, p99 and max in milliseconds, and the number of samples."""
        n = self._n
        if n == 0:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        ranks = {"p50_ms": 0.50 * (n - 1), "p99_ms": 0.99 * (n - 1)}
        found: dict[str, float | int | None] = {"n": n}
        seen = 0
        for bucket, count in enumerate(self._counts):
            if not count:
                continue
            seen += count
            for key, rank in ranks.items():
                if key not in found and seen > round(rank):
                    edge = _upper_edge_ns(bucket)
                    found[key] = (self._max_ns if edge is None else min(edge, self._max_ns)) / 1e6
            if len(found) == 3:
                break
        found["max_ms"] = self._max_ns / 1e6
        return found
