"""Decisions drawn from rows, kept for a moment: who a bearer token is, who may read a study.

A viewer asks for hundreds of frames a minute, and each request would otherwise read the same
session, account, study, visit and patient rows again (each statement a round trip through the
database driver's thread, most of a request's CPU). A :class:`DecisionCache` keeps what such
reads decided, and forgets it:

- at once when this process writes anything that may change it: the database's
  :attr:`~consult.db.Database.changes` counter moves at every such write (a session revoked, an
  account deactivated, a share or an invitation withdrawn, a visit reassigned ...) and again
  when that transaction ends; an entry is served only while the counter still reads what it
  read *before* the rows behind the entry were read, so a decision read from rows that a
  concurrent transaction was changing is never kept;
- after :data:`DECISION_TTL_S` whatever happens, which bounds how long a change made by another
  process (the command line, another worker) goes unseen.

Only grants are kept; a refusal is decided (and audited) every time. Used from the event loop
only (no lock).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

from consult.db import Database

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DECISION_TTL_S: Final = 2.0
"""How long a decision is kept at most (a change made by another process is seen after this)."""
MAX_DECISIONS: Final = 10_000


class DecisionCache(Generic[K, V]):
    """Values by key, each valid while the database's change counter stands where it stood
    before the value was read, and for :data:`DECISION_TTL_S` at most."""

    def __init__(
        self, db: Database, *, ttl_s: float = DECISION_TTL_S, max_items: int = MAX_DECISIONS
    ) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._changes = db.changes
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def stamp(self) -> int:
        """The change counter now: take it *before* reading the rows a value is drawn from,
        and give it to :meth:`put`."""
        return self.db.changes

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, or None (never kept, changed since, or too old)."""
        if self.db.changes != self._changes:  # something changed: every entry may be stale
            self._items.clear()
            self._changes = self.db.changes
        found = self._items.get(key)
        if found is None or time.monotonic() - found[0] >= self.ttl_s:
            self.misses += 1
            return None
        self.hits += 1
        return found[1]

    def put(self, key: K, value: V, stamp: int) -> None:
        """Keep ``value`` if nothing changed since ``stamp`` (:meth:`stamp`) was taken."""
        if stamp != self.db.changes:
            return
        if self._changes != stamp:
            self._items.clear()
            self._changes = stamp
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class PerDatabase(Generic[K, V]):
    """One :class:`DecisionCache` for each database, made at its first use and gone with the
    database: ``cache_of = PerDatabase(); cache_of(db).get(key)``."""

    def __init__(self, *, ttl_s: float = DECISION_TTL_S, max_items: int = MAX_DECISIONS) -> None:
        self._ttl_s = ttl_s
        self._max_items = max_items
        self._caches: weakref.WeakKeyDictionary[Database, DecisionCache[K, V]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, db: Database) -> DecisionCache[K, V]:
        cache = self._caches.get(db)
        if cache is None:
            cache = self._caches[db] = DecisionCache(
                db, ttl_s=self._ttl_s, max_items=self._max_items
            )
        return cache


def token_key(token: str) -> bytes:
    """A bearer or join token as a cache key: an unkeyed BLAKE2b digest, so that the token
    itself is not kept in memory longer than its request."""
    return hashlib.blake2b(token.encode(), digest_size=16).digest()
