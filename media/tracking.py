"""Track the SFU's long-lived objects so that tests (and operators) can check for leaks.

mediasoup's ``router.dump()`` after close is the model: once everything is closed, nothing of
ours may remain open.
"""

from __future__ import annotations

import gc
import weakref
from typing import Protocol


class Closable(Protocol):
    @property
    def closed(self) -> bool: ...


_live: weakref.WeakSet[Closable] = weakref.WeakSet()


def track(obj: Closable) -> None:
    """Register a Router, Transport, Producer or Consumer at creation."""
    _live.add(obj)


def open_objects() -> dict[str, int]:
    """Counts, by class name, of tracked objects that are still reachable and not closed."""
    gc.collect()
    counts: dict[str, int] = {}
    for obj in list(_live):
        if not obj.closed:
            name = type(obj).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts
