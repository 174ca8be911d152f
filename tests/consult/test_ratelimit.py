"""The in-memory limits of issue 13 (R33): token buckets and the in-flight cap per key."""

from __future__ import annotations

import asyncio

import pytest

from consult.ratelimit import ConcurrencyCap, TokenBuckets, TooManyWaiting


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_peek_tells_the_wait_and_takes_nothing() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3.0, clock=clock)
    assert buckets.peek("k") == 0.0  # an unknown key may go
    for _ in range(3):
        assert buckets.take("k") == 0.0
    assert buckets.peek("k") == pytest.approx(0.5)
    assert buckets.peek("k") == pytest.approx(0.5)  # peeking took nothing
    clock.now += 0.5
    assert buckets.peek("k") == 0.0
    assert buckets.take("k") == 0.0
    assert buckets.take("k") == pytest.approx(0.5)


async def _holder(
    cap: ConcurrencyCap, key: str, log: list[str], name: str, go: asyncio.Event
) -> None:
    async with cap.slot(key):
        log.append(f"{name} in")
        await go.wait()
    log.append(f"{name} out")


async def test_a_key_has_its_limit_at_work_the_next_wait_in_order_and_others_go_on() -> None:
    cap = ConcurrencyCap(2, max_waiting=2)
    go = asyncio.Event()
    log: list[str] = []
    tasks = [asyncio.create_task(_holder(cap, "flood", log, f"f{n}", go)) for n in range(4)]
    other = asyncio.create_task(_holder(cap, "healthy", log, "h", asyncio.Event()))
    await asyncio.sleep(0)
    assert log == ["f0 in", "f1 in", "h in"]  # the others' key is not behind the flood
    assert (cap.active("flood"), cap.waiting("flood")) == (2, 2)
    with pytest.raises(TooManyWaiting):  # a fifth: refused at once, nothing queued
        async with cap.slot("flood"):
            pass
    go.set()
    await asyncio.gather(*tasks)
    assert [entry for entry in log if entry.endswith(" in")] == [
        "f0 in",
        "f1 in",
        "h in",
        "f2 in",
        "f3 in",
    ]
    assert (cap.active("flood"), cap.waiting("flood")) == (0, 0)
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    assert cap._keys == {}  # no state kept for keys without requests


async def test_a_waiter_that_goes_away_passes_its_turn_on() -> None:
    cap = ConcurrencyCap(1, max_waiting=5)
    go = asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(_holder(cap, "k", log, "a", go))
    second = asyncio.create_task(_holder(cap, "k", log, "b", go))
    third = asyncio.create_task(_holder(cap, "k", log, "c", go))
    await asyncio.sleep(0)
    second.cancel()  # the client hung up while waiting
    await asyncio.sleep(0)
    assert cap.waiting("k") == 1
    go.set()
    await asyncio.gather(first, third)
    assert log == ["a in", "a out", "c in", "c out"]
    assert cap._keys == {}


def test_a_cap_needs_a_limit() -> None:
    with pytest.raises(ValueError):
        ConcurrencyCap(0, 1)


async def test_a_waiter_that_goes_away_as_its_turn_comes_passes_it_on() -> None:
    cap = ConcurrencyCap(1, max_waiting=5)
    log: list[str] = []
    go = asyncio.Event()
    go.set()
    async with cap.slot("k"):
        second = asyncio.create_task(_holder(cap, "k", log, "b", go))
        third = asyncio.create_task(_holder(cap, "k", log, "c", go))
        await asyncio.sleep(0)
        assert cap.waiting("k") == 2
    second.cancel()  # handed the slot, cancelled before it ran
    await asyncio.gather(second, third, return_exceptions=True)
    assert log == ["c in", "c out"]
    assert cap._keys == {}
