"""A bounded store of latency samples (nanoseconds) with percentiles, for the bench server."""

from __future__ import annotations

from array import array


class LatencyRecorder:
    """Keeps up to ``limit`` samples since the last :meth:`reset`; later ones are counted only."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self._limit = limit
        self._samples = array("q")
        self.dropped = 0

    def add(self, ns: int) -> None:
        if len(self._samples) < self._limit:
            self._samples.append(ns)
        else:
            self.dropped += 1

    def reset(self) -> None:
        self._samples = array("q")
        self.dropped = 0

    def summary(self) -> dict[str, float | int | None]:
        """p50, p99 and max in milliseconds, and the number of samples."""
        samples = sorted(self._samples)
        n = len(samples)
        if n == 0:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def pct(p: float) -> float:
            return samples[min(n - 1, round(p * (n - 1)))] / 1e6

        return {"n": n, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": samples[-1] / 1e6}
