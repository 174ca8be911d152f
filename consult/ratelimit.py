"""Rate limits, failure back-off and refusal summaries, in memory (issue 13, R33).

Three small, clock-injected pieces that the edges share:

- :class:`TokenBuckets`: a bucket per key (an account, a socket and event class, an address):
  ``burst`` tokens, refilled at ``rate`` per second. :meth:`TokenBuckets.take` answers 0 when
  the request may go, else the seconds until it could.
- :class:`FailureBackoff`: failures per key in a sliding window; from ``threshold`` failures on,
  the key waits ``base_s * 2**(failures - threshold)`` seconds (capped) after its last failure.
  A refusal while waiting is not a failure, so waiting never grows by itself.
- :class:`RefusalSummary`: counts refusals per key and writes one summary per key per
  ``interval_s``, so a flood writes one audit row a minute instead of one per request; what was
  refused after the last one is written by :func:`flush_summaries`.
- :class:`ConcurrencyCap`: at most ``limit`` requests of one key at work at once; the next
  ``max_waiting`` wait their turn (a suspended coroutine: nothing runs on the event loop for
  them), and any beyond are refused at once. One client's burst then takes a bounded share of
  the database connections, the append lock and the loop, whatever its rate.

Each keeps at most ``max_keys`` keys (the least recently used go first), so a flood of new keys
(spoofed addresses, new sockets) costs bounded memory. State is per process: with several
processes each enforces its own share (documented in docs/hardening.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

DEFAULT_MAX_KEYS: Final = 100_000

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
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

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())

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
        self._buckets: Lru[Hashable, list[float]] = Lru(max_keys)

    def peek(self, key: Hashable, cost: float = 1.0) -> float:
        """The seconds until ``key`` could take ``cost`` tokens (0.0: now), taking none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket[0] + (self._clock() - bucket[1]) * self.rate)
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

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
        self._keys: Lru[Hashable, _Failures] = Lru(max_keys)

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


#: Writes one summary row of ``count`` refusals.
SummaryWriter = Callable[[int], Awaitable[None]]


@dataclass
class _Pending:
    since: float
    """When the last summary of this key was written."""
    count: int = 0
    """Refusals counted since then."""
    write: SummaryWriter | None = None
    """How to write this key's next summary (the latest refusal's writer)."""


class RefusalSummary:
    """Counts refusals per key (an account, an address, a socket and class) and writes one
    summary per key per ``interval_s``, so a flood writes one audit row a minute instead of one
    per request.

    :meth:`refused` counts a refusal and writes a summary at once when the key was quiet (a
    single refused request is audited as before) or its interval has passed. What a flood
    refused after its last summary is written by :meth:`flush` (:func:`flush_summaries`, run
    periodically by the server and at its shutdown), so the chain's counts add up to what was
    refused even when the flood stops.
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
        self._keys: Lru[Hashable, _Pending] = Lru(max_keys)
        _summaries.add(self)

    async def refused(self, key: Hashable, write: SummaryWriter) -> None:
        """Count one refusal of ``key``; ``write(count)`` its summary now or later."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None or now - entry.since >= self.interval_s:
            pending = 0 if entry is None else entry.count
            self._keys.put(key, _Pending(now))
            await write(pending + 1)
            return
        entry.count += 1
        entry.write = write

    def pending(self, key: Hashable) -> int:
        """Refusals counted but not yet reported for ``key``."""
        entry = self._keys.get(key)
        return 0 if entry is None else entry.count

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries whose interval has passed (``everything``: all pending, as at
        shutdown); return how many were written. A writer's failure (its database closed) is
        logged with the count it loses."""
        now = self._clock()
        due = [
            (key, entry)
            for key, entry in self._keys.items()
            if entry.count and entry.write and (everything or now - entry.since >= self.interval_s)
        ]
        written = 0
        for _key, entry in due:
            count, write = entry.count, entry.write
            assert write is not None
            entry.count, entry.since = 0, now
            try:
                await write(count)
            except Exception as exc:  # e.g. another server's database, closed (tests)
                logger.warning(
                    "a summary of %d refusals was not written (%s)", count, type(exc).__name__
                )
            else:
                written += 1
        return written


_summaries: weakref.WeakSet[RefusalSummary] = weakref.WeakSet()


class TooManyWaiting(Exception):
    """:meth:`ConcurrencyCap.slot` refused: the key has ``limit`` at work and ``max_waiting``
    waiting already."""


@dataclass
class _Slots:
    active: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class ConcurrencyCap:
    """At most ``limit`` holders of a slot per key at once; ``max_waiting`` more wait in order
    (first come, first served), and one beyond that is refused (:class:`TooManyWaiting`).

    A key's state exists only while it has a holder or a waiter, so memory follows the requests
    in flight, not the keys ever seen.
    """

    def __init__(self, limit: int, max_waiting: int) -> None:
        if limit < 1 or max_waiting < 0:
            raise ValueError("a cap needs limit >= 1 and max_waiting >= 0")
        self.limit = limit
        self.max_waiting = max_waiting
        self._keys: dict[Hashable, _Slots] = {}

    def active(self, key: Hashable) -> int:
        """Holders of ``key``'s slots now."""
        slots = self._keys.get(key)
        return 0 if slots is None else slots.active

    def waiting(self, key: Hashable) -> int:
        """Requests of ``key`` waiting for a slot now."""
        slots = self._keys.get(key)
        return 0 if slots is None else len(slots.waiting)

    @asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        """Hold one of ``key``'s slots for the block, waiting for one if need be."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: Hashable) -> None:
        slots = self._keys.get(key)
        if slots is None:
            slots = self._keys[key] = _Slots()
        if slots.active < self.limit and not slots.waiting:
            slots.active += 1
            return
        if len(slots.waiting) >= self.max_waiting:
            raise TooManyWaiting()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.waiting.append(turn)
        try:
            await turn  # _release hands its slot over: ``active`` is already counted
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(key)  # handed over, then cancelled: pass it on
            else:
                slots.waiting.remove(turn)
                self._forget(key, slots)
            raise

    def _release(self, key: Hashable) -> None:
        slots = self._keys[key]
        while slots.waiting:
            turn = slots.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes straight to the next in line
                return
        slots.active -= 1
        self._forget(key, slots)

    def _forget(self, key: Hashable, slots: _Slots) -> None:
        if slots.active == 0 and not slots.waiting:
            self._keys.pop(key, None)


async def flush_summaries(*, everything: bool = False) -> int:
    """:meth:`RefusalSummary.flush` of every summary of this process."""
    written = 0
    for summary in list(_summaries):
        written += await summary.flush(everything=everything)
    return written
