"""Latency samples (nanoseconds) in a fixed-size histogram, with percentiles, for the bench server.

The histogram is allocated once, so recording costs no memory however long a run lasts: a
10-minute memory run must not see its own instrument grow. Resolution: 1 µs below 20 ms,
100 µs from 20 ms to 2.02 s; anything slower lands in the last bucket (the maximum is exact).
"""

from __future__ import annotations

from array import array

FINE_NS = 1_000  # bucket width below FINE_LIMIT_NS
FINE_LIMIT_NS = 20_000_000
COARSE_NS = 100_000  # bucket width above it
COARSE_BUCKETS = 20_000
_FINE_BUCKETS = FINE_LIMIT_NS // FINE_NS
_BUCKETS = _FINE_BUCKETS + COARSE_BUCKETS + 1  # the last one: everything slower


def _bucket(ns: int) -> int:
    if ns < FINE_LIMIT_NS:
        return max(0, ns) // FINE_NS
    return min(_BUCKETS - 1, _FINE_BUCKETS + (ns - FINE_LIMIT_NS) // COARSE_NS)


def _upper_edge_ns(bucket: int) -> int:
    """The upper edge of a bucket: a percentile is reported no lower than any sample in it."""
    if bucket < _FINE_BUCKETS:
        return (bucket + 1) * FINE_NS
    return FINE_LIMIT_NS + (bucket - _FINE_BUCKETS + 1) * COARSE_NS


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
                    found[key] = min(_upper_edge_ns(bucket), self._max_ns) / 1e6
            if len(found) == 3:
                break
        found["max_ms"] = self._max_ns / 1e6
        return found
