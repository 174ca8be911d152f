"""Request budgets of the REST API per account (issue 13 item 4, R33).

Every route spends from a token bucket of its caller before its body is parsed: one budget for
reads (GET), one for writes (POST, PUT, PATCH, DELETE), and a tighter one that costly writes
spend as well (uploads, registering a person, resolving an identity dispute, setting a password
by link). A signed-in account (or a room's join-token holder, which is an account too) is keyed
by its user id, whichever session or address it comes from, so a stolen session floods no more
than its owner could; a public route is keyed by the caller's address. Sign-in is left out: it
has its own, tighter budget per address, spent before any Argon2 work (``consult.sessions``).

Over budget: HTTP 429 ``rate_limited`` with ``Retry-After`` (whole seconds), and the audit chain
gets one ``api.rate_limited`` row per caller a minute with the count, never a row per refusal.

Fairness: a caller (a bearer token; an address without one) has at most
:data:`CALLER_IN_FLIGHT` requests at work at once and an address :data:`ADDRESS_IN_FLIGHT`;
more wait their turn without running anything, and a caller with :data:`CALLER_WAITING` waiting
already is refused (429) at once. So one client's burst takes a bounded share of the database
connections, the audit append lock and the event loop, and others are not queued behind it.

A refusal (``rate_limited``) of a caller with other requests at work or waiting, a burst, is
answered after :data:`HOLD_REFUSAL_S`, holding its slot meanwhile (a tarpit, as a front proxy's
``limit_req`` delays excess requests): a burst that ignores ``Retry-After`` then gets at most
``CALLER_IN_FLIGHT / HOLD_REFUSAL_S`` answers a second instead of as many as the event loop can
write, which left no time for anyone else (measured: 1,600 refusals a second). A client that
sends one request at a time is answered at once: it takes one request's share of the loop.

Refusing cheaply: a bearer token authenticated a moment ago is remembered with its account
(:meth:`ApiLimits.known`); a caller whose budget is spent, or whose refused requests are being
throttled (``consult.authorization.refuse_if_throttled``), is refused before its token is
looked up in the database. The memory only ever refuses; every request that goes on is
authenticated.

The numbers are sized from what people do, not from what tests tolerate; the world-building
fixtures of the test suite are a faster operator than any real one (one admin: 84 writes within
seconds) and use at most a third of any budget. State is per process (a node with N processes
allows N times the rates), like the other limits of ``docs/hardening.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from consult.actor import Actor
from consult.audit import append
from consult.errors import RateLimited
from consult.models import AuditResult
from consult.ratelimit import (
    Clock,
    ConcurrencyCap,
    Lru,
    RefusalSummary,
    TokenBuckets,
    TooManyWaiting,
)

from .call import Call
from .registry import Operation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestClass:
    """A budget: ``burst`` requests at once, then ``rate`` a second."""

    name: str
    rate: float
    burst: float


READ: Final = RequestClass("read", 20.0, 600.0)
"""GETs. A page opening fetches a dozen lists, and pages re-read on every pushed event (a
consultation page: about 50 reads in a session); 600 at once then 20 a second (72,000 an hour)
lets a day of that through with room to spare and still cuts a scraper looping on a list or a
record to 20 a second."""
WRITE: Final = RequestClass("write", 5.0, 300.0)
"""POST, PUT, PATCH, DELETE. A person clicks a few times a minute; a desk nurse working fast
writes perhaps one request every few seconds. 300 at once, then 5 a second, is far above that
(a fixture creating a whole clinic of accounts, visits and consultations stays inside it) and
cuts a script writing hundreds a second to 5."""
COSTLY: Final = RequestClass("costly", 0.1, 30.0)
"""Writes that cost staff work, storage or an Argon2 hash, on top of :data:`WRITE`: 30 at once,
then one every 10 seconds (6 a minute, 360 an hour). Registering a person at the desk takes a
minute of typing (name, ID number, phone, birth date), so an operator registering patients all
morning stays far below 6 a minute; attaching a dozen files to a consultation at once fits the
burst. A patient account registering 50 wards in a minute (each a pending link or an identity
dispute for staff to resolve) is refused from the 31st or so."""

IMAGING: Final = RequestClass("imaging", 100.0, 3000.0)
"""DICOMweb reads (QIDO, WADO: metadata, frames, rendered images, bulk data, ECG), a budget of
their own because a viewer is a heavy but honest reader: opening a 500-slice CT fetches its
metadata and then every frame at once, and two specialists scrolling through three studies
together fetch a few thousand. 3000 at once, then 100 a second, lets that through and cuts a
script pulling a hospital's images to 100 objects a second. A STOW upload is a costly write."""

COSTLY_ACTIONS: Final = frozenset(
    {
        "patient.register",  # a record, and an identity dispute when the number is on file
        "patient.resolve_identity",  # merges or removes records (staff; the POST only)
    }
)
"""Permission-table actions whose writes spend :data:`COSTLY` too; every upload (a route that
takes its body as bytes) does as well."""

COSTLY_PUBLIC: Final = frozenset({("POST", "/enrolment")})
"""Public writes that spend :data:`COSTLY`: redeeming an enrolment link hashes a password
(Argon2) and audits every wrong link; a person does it once."""

EXEMPT: Final = frozenset({("POST", "/session")})
"""Routes without an API budget: sign-in has its own per address (``consult.sessions``: 60 at
once, then one a second, before any Argon2 work), tighter than these and audited the same way."""

CALLER_IN_FLIGHT: Final = 8
"""Requests of one caller at work at once. A browser opens at most six connections to a host
(HTTP/1.1), so a person's pages never wait here; a script's burst of 20 waits in line."""
CALLER_WAITING: Final = 64
"""Requests of one caller waiting for a slot; one more is refused at once (429)."""
ADDRESS_IN_FLIGHT: Final = 32
"""Requests of one address at work at once, whatever their tokens (a hospital behind one NAT
address: 32 requests of a few milliseconds each are thousands a second)."""
ADDRESS_WAITING: Final = 512
HOLD_REFUSAL_S: Final = 0.25
"""How long a refusal within a burst is held back (see above)."""
KNOWN_CALLERS: Final = 10_000
KNOWN_FOR_S: Final = 300.0
"""How long a token's account is remembered after its last authentication, to refuse it
cheaply (:meth:`ApiLimits.known`)."""

WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SUMMARY_INTERVAL_S: Final = 60.0


def classes_of(op: Operation) -> tuple[RequestClass, ...]:
    """The budgets a request to ``op`` spends (none for an exempt route)."""
    if (op.method, op.path) in EXEMPT:
        return ()
    if op.method not in WRITE_METHODS:
        return (READ,)
    costly = (
        op.raw_body
        or (op.method, op.path) in COSTLY_PUBLIC
        or (op.action in COSTLY_ACTIONS and not op.public)
    )
    return (WRITE, COSTLY) if costly else (WRITE,)


class ApiLimits:
    """The buckets of every caller in this process, and the refusal summaries.

    ``clock`` is read at every request (tests replace it to refill a bucket without waiting).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._buckets = {
            kind.name: TokenBuckets(kind.rate, kind.burst, clock=self._now)
            for kind in (READ, WRITE, COSTLY, IMAGING)
        }
        self.summary = RefusalSummary(SUMMARY_INTERVAL_S, clock=self._now)
        self.callers = ConcurrencyCap(CALLER_IN_FLIGHT, CALLER_WAITING)
        self.addresses = ConcurrencyCap(ADDRESS_IN_FLIGHT, ADDRESS_WAITING)
        self._known: Lru[bytes, tuple[Actor, float]] = Lru(KNOWN_CALLERS)

    def _now(self) -> float:
        return self.clock()

    def known(self, token: str | None) -> Actor | None:
        """The actor ``token`` authenticated as within :data:`KNOWN_FOR_S` (for refusing only:
        never a reason to let a request through)."""
        if token is None:
            return None
        entry = self._known.get(_token_key(token))
        if entry is None or time.monotonic() - entry[1] > KNOWN_FOR_S:
            return None
        return entry[0]

    def remember(self, token: str | None, actor: Actor | None) -> None:
        """``token`` has just authenticated as ``actor``."""
        if token is not None and actor is not None:
            self._known.put(_token_key(token), (actor, time.monotonic()))

    def take(self, key: Hashable, kinds: tuple[RequestClass, ...]) -> tuple[RequestClass, float]:
        """Spend one request of each of ``kinds``: the class that refused and the seconds to wait
        (0.0: the request may go). The tighter class is asked first, so a refused costly write
        does not also empty the caller's general write budget."""
        for kind in sorted(kinds, key=lambda k: k.burst):
            wait = self._buckets[kind.name].take(key)
            if wait > 0:
                return kind, wait
        return kinds[0], 0.0


API_LIMITS: Final = web.AppKey("api_limits", ApiLimits)
"""The request budgets of this process (set by ``setup_api``)."""


def _token_key(token: str) -> bytes:
    """A token as a key in memory (its digest: the map holds no usable token)."""
    return hashlib.blake2b(token.encode(), digest_size=16).digest()


@asynccontextmanager
async def admitted(limits: ApiLimits, call: Call, route: str) -> AsyncIterator[None]:
    """Hold one of the caller's and one of its address's in-flight slots for the request,
    waiting for them in turn; refuse with ``rate_limited`` (429) when the caller already has
    :data:`CALLER_WAITING` requests waiting (or its address :data:`ADDRESS_WAITING`). A
    ``rate_limited`` refusal while the caller has other requests at work or waiting is held
    back :data:`HOLD_REFUSAL_S`, slots and all."""
    token = call.bearer
    caller: Hashable = ("token", _token_key(token)) if token else ("address", call.source_ip)
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(limits.callers.slot(caller))
            await stack.enter_async_context(limits.addresses.slot(call.source_ip))
        except TooManyWaiting:
            call.actor = call.actor or limits.known(token)
            await _refuse(limits, call, "in_flight", route, 1.0)
        try:
            yield
        except RateLimited:
            if limits.callers.active(caller) + limits.callers.waiting(caller) > 1:
                await asyncio.sleep(HOLD_REFUSAL_S)
            raise


def _key(call: Call) -> Hashable:
    if call.actor is not None and call.actor.user_id is not None:
        return ("account", call.actor.user_id)
    return ("address", call.source_ip or "unknown")


async def spend(limits: ApiLimits, call: Call, op: Operation) -> None:
    """Spend the budgets of ``op`` for the caller, or refuse with ``rate_limited`` (429)."""
    await spend_classes(limits, call, classes_of(op), op.operation_id)


def dicomweb_classes(method: str) -> tuple[RequestClass, ...]:
    """The budgets of a DICOMweb request (routes outside the operation registry)."""
    return (WRITE, COSTLY) if method in WRITE_METHODS else (IMAGING,)


async def spend_classes(
    limits: ApiLimits, call: Call, kinds: tuple[RequestClass, ...], route: str
) -> None:
    """Spend one request of each of ``kinds`` for the caller, or refuse with ``rate_limited``
    (429); ``route`` names the route in the audit summary."""
    if not kinds:
        return
    kind, wait = limits.take(_key(call), kinds)
    if wait > 0:
        await _refuse(limits, call, kind.name, route, wait)


async def _refuse(limits: ApiLimits, call: Call, kind: str, route: str, wait: float) -> None:
    """Count one refusal of the caller in its summary and raise ``rate_limited``."""
    actor, source_ip = call.actor, call.source_ip

    async def write(count: int) -> None:  # a quiet caller's first refusal, then one a minute
        await append(
            call.db,
            "api.rate_limited",
            actor=actor,
            source_ip=source_ip,
            result=AuditResult.DENIED,
            details={"class": kind, "route": route, "refused": count},
        )
        logger.warning("API requests throttled (%s budget, %d refused)", kind, count)

    await limits.summary.refused(_key(call), write)
    raise RateLimited(wait)
