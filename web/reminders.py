"""The reminder task (issue 14, R11): every ``reminder_interval_s`` it makes the reminders that
are due (:func:`consult.consultations.flow.due_reminders`, kept once each by
:mod:`consult.reminders`, pushed on ``/updates``), hands pending ones to the hospital's SMS/WeChat
gateway (``reminder_webhook_url``) and purges old ones; each part bounded per run.

The webhook: one JSON ``POST`` per reminder, signed with HMAC-SHA256 over
``<timestamp>.<body>`` under ``reminder_webhook_secret`` (``X-Teleconsult-Signature:
sha256=<hex>``, ``X-Teleconsult-Timestamp``: Unix seconds); ids, the kind and the moment only
(the gateway maps ``recipient_id`` to a phone or a WeChat account). A 2xx answer delivers it;
anything else is retried with a doubling backoff, at most ``reminder_webhook_attempts`` times,
then it is given up. Failures are logged (ids and the status only) and counted.

:meth:`ReminderTask.run_once` takes the moment to act at, so tests drive it without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp

from consult import reminders
from consult.consultations import flow
from consult.db import Database
from consult.sqltypes import utc_now

logger = logging.getLogger(__name__)

DELIVERIES_PER_RUN: Final = 50
PARALLEL_DELIVERIES: Final = 8
FIRST_RETRY: Final = timedelta(seconds=30)
LAST_RETRY: Final = timedelta(hours=1)
SIGNATURE_HEADER: Final = "X-Teleconsult-Signature"
TIMESTAMP_HEADER: Final = "X-Teleconsult-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def payload(delivery: reminders.Delivery) -> dict[str, Any]:
    """What the gateway is told: ids, the kind and the moments; no patient data."""
    return {
        "type": "reminder",
        "id": delivery.id,
        "kind": delivery.kind,
        "subject_type": delivery.subject_type,
        "subject_id": delivery.subject_id,
        "consultation_id": delivery.consultation_id,
        "recipient_id": delivery.recipient_id,
        "at": reminders.iso(delivery.at),
        "created_at": reminders.iso(delivery.created_at),
        "attempt": delivery.attempt,
    }


def retry_in(attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt`` (1, 2, ...): 30 s doubling, at most an hour."""
    return min(FIRST_RETRY * 2 ** (attempt - 1), LAST_RETRY)


@dataclass
class RunResult:
    """What one run did."""

    made: int = 0
    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    purged: int = 0


@dataclass
class Counters:
    """Since the process started: the webhook's outcomes."""

    made: int = 0
    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ReminderTask:
    """Makes, sends and purges reminders; one per process (several processes may run it)."""

    def __init__(
        self,
        db: Database,
        *,
        interval_s: float,
        webhook_url: str = "",
        webhook_secret: str = "",
        attempts: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        self._db = db
        self.interval_s = interval_s
        self.webhook_url = webhook_url
        self._secret = webhook_secret
        self.attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.counters = Counters()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Run every ``interval_s`` seconds (0: never; :meth:`run_once` still works)."""
        if self.interval_s > 0 and self._task is None and not self._closed:
            self._task = asyncio.create_task(self._every(), name="reminders")

    async def close(self) -> None:
        """Stop the task and the HTTP client; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _every(self) -> None:
        while True:
            try:
                result = await self.run_once()
                if result.made or result.delivered or result.failed or result.purged:
                    logger.info(
                        "reminders: made %d, delivered %d, failed %d (given up %d), purged %d",
                        result.made,
                        result.delivered,
                        result.failed,
                        result.given_up,
                        result.purged,
                    )
            except Exception as exc:  # the next round tries again
                logger.error("reminder run failed: %s", type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def run_once(self, now: datetime | None = None) -> RunResult:
        """Make what is due at ``now``, deliver what waits for the webhook, purge old ones."""
        if self._closed:
            raise RuntimeError("the reminder task is closed")
        now = now or utc_now()
        result = RunResult()
        async with self._lock:  # one run at a time in this process
            due = await flow.due_reminders(self._db, now=now)
            made = await reminders.store(self._db, due, now=now, webhook=bool(self.webhook_url))
            result.made = len(made)
            self.counters.made += len(made)
            if self.webhook_url:
                await self._deliver_due(now, result)
            result.purged = await reminders.purge(self._db, now=now)
        return result

    async def _deliver_due(self, now: datetime, result: RunResult) -> None:
        claimed = await reminders.claim_deliveries(
            self._db, now=now, limit=DELIVERIES_PER_RUN, lease=self._lease()
        )
        gate = asyncio.Semaphore(PARALLEL_DELIVERIES)

        async def one(delivery: reminders.Delivery) -> None:
            async with gate:
                await self._deliver(delivery, now, result)

        await asyncio.gather(*(one(d) for d in claimed))

    def _lease(self) -> timedelta:
        """How long a claimed delivery is this process's: past it (the process died while
        sending) another run tries again, as one more attempt."""
        return timedelta(seconds=float(self._timeout.total or 10.0) + 60.0)

    async def _deliver(
        self, delivery: reminders.Delivery, now: datetime, result: RunResult
    ) -> None:
        body = json.dumps(payload(delivery), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Teleconsult-Event": "reminder",
            "X-Teleconsult-Delivery": delivery.id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        error: str | None = None
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=self._timeout)
            async with self._http.post(
                self.webhook_url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    error = f"http {response.status}"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        if error is None:
            await reminders.delivered(self._db, delivery.id, now=now)
            result.delivered += 1
            self.counters.delivered += 1
            return
        given_up = await reminders.delivery_failed(
            self._db,
            delivery,
            now=now,
            error=error,
            max_attempts=self.attempts,
            retry_in=retry_in(delivery.attempt),
        )
        result.failed += 1
        self.counters.failed += 1
        self.counters.errors[error] = self.counters.errors.get(error, 0) + 1
        if given_up:
            result.given_up += 1
            self.counters.given_up += 1
        logger.warning(
            "reminder webhook failed: reminder %s attempt %d/%d: %s%s",
            delivery.id,
            delivery.attempt,
            self.attempts,
            error,
            " (given up)" if given_up else "",
        )
