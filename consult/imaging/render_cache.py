"""Rendered PNGs kept in memory, least recently used first out, within a byte bound.

Viewers ask for the same renderings again and again (a series' thumbnails on every page, the
frame under the cursor on every scroll back). A rendering is a function of the instance's file
and the frame number only, and an instance's file never changes: it is written once, under a new
id, and never rewritten (a de-identified copy is another instance). So a key of (study id,
instance id, frame) never goes stale and needs no invalidation; the bound is the only way out.
Every request is still checked and audited: the cache saves the decoding and the encoding, not
the access decision.

Used from the event loop only (no lock).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""~2,500 renderings of 512x512 CT (~25 KB each)."""

Key = tuple[str, str, int]


class RenderCache:
    """PNG bytes by (study id, instance id, frame number), at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, bytes] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> bytes | None:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: Key, png: bytes) -> None:
        """Keep ``png``; the least recently used go until the total fits. A rendering larger
        than the whole bound is not kept."""
        if len(png) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._items[key] = png
        self.bytes += len(png)
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= len(evicted)
