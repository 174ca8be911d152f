"""Domain events: recorded inside a transaction, relayed to listeners after it commits.

A service records an event with :func:`publish` on its :class:`~consult.audit.AuditTx`; once the
transaction commits, every listener :func:`subscribe`-d to the database is called with it (in
process; the same relay can later go over Redis). A rolled-back transaction relays nothing, and
a failing listener is logged, never undoes the change.

Signaling listens: a visit leaving the room takes its people out (``room_left``), a revoked
account or session loses its sockets at once (docs/signaling.md).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from consult.audit import AuditTx
from consult.db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainEvent:
    """Base class of what is relayed after commit."""


@dataclass(frozen=True)
class StateChanged(DomainEvent):
    """An object of a state machine moved from ``old`` to ``new`` by ``event``."""

    machine: str
    """The machine's name (``visit``)."""
    object_id: str
    old: str
    new: str
    event: str
    actor_id: str | None
    parties: tuple[tuple[str, str], ...] = ()
    """``(role, user_id)`` of the people the object concerns (a visit's doctor and patient, and
    a guardian on its own account)."""


@dataclass(frozen=True)
class AccessRevoked(DomainEvent):
    """An account's access ended: its sockets and join tokens die with it.

    ``session_ids`` empty means every session and every join token of the account (deactivation,
    password change); otherwise only what those sessions issued (sign-out, a newer sign-in).
    """

    user_id: str
    reason: str
    session_ids: frozenset[str] = frozenset()
    tokens_only: bool = False
    """Only the join tokens (and room sockets) end; the sessions named, or all, stay signed in
    (a password change keeps the session that made it)."""

    @property
    def whole_account(self) -> bool:
        return not self.session_ids


@dataclass(frozen=True)
class ParticipationChanged(DomainEvent):
    """A person's place in a room changed: asked out for a part among clinicians (``waiting``)
    or let back in (``admitted``). Signaling takes a participant asked out off the room at once;
    the person's pages are told either way."""

    room_id: str
    user_id: str
    state: str
    reason: str


@dataclass(frozen=True)
class VisitPeopleChanged(DomainEvent):
    """Who is in a visit's room changed while the visit kept its state: a guardian came after
    the patient-side account checked in (R4; let in at once when the visit is already in the
    room), or the doctor let a waiting companion in. The doctor's queue (who is there, whether
    the visit may start) and the people's waiting pages read the visit again."""

    visit_id: str
    state: str
    """The visit's state (unchanged)."""
    event: str
    """``arrived`` (came to the waiting room, or straight in) or ``admitted`` (let in)."""
    room_role: str
    """The room role of the person who came or was let in."""
    parties: tuple[tuple[str, str], ...]
    """``(role, user_id)`` of the people the visit concerns, the newcomer included."""


@dataclass(frozen=True)
class RatingChanged(DomainEvent):
    """A finished visit's rating was given, edited or answered (R40, R41): the doctor's and the
    patient side's pages read their ratings again. ``event``: rated, edited or replied."""

    visit_id: str
    user_ids: tuple[str, ...]
    event: str


@dataclass(frozen=True)
class ReminderMade(DomainEvent):
    """A reminder was made for ``user_id`` (issue 14, R11): its pages show it at once. Ids, the
    kind and the moment only (no patient data)."""

    reminder_id: str
    user_id: str
    kind: str
    subject_type: str
    subject_id: str
    consultation_id: str | None
    at: str
    """The moment it is about, ISO 8601 UTC."""


Listener = Callable[[DomainEvent], Awaitable[None]]
_listeners: weakref.WeakKeyDictionary[Database, list[Listener]] = weakref.WeakKeyDictionary()


def subscribe(db: Database, listener: Listener) -> Callable[[], None]:
    """Call ``listener`` with every domain event committed on ``db``; returns the unsubscriber."""
    listeners = _listeners.setdefault(db, [])
    listeners.append(listener)
    return lambda: listeners.remove(listener) if listener in listeners else None


def publish(tx: AuditTx, event: DomainEvent) -> None:
    """Relay ``event`` to the listeners once ``tx`` commits (never if it rolls back)."""
    if tx.db is None:
        return
    for listener in list(_listeners.get(tx.db, ())):
        tx.after_commit(partial(listener, event))


async def relay(db: Database, event: DomainEvent) -> None:
    """Relay ``event`` of a change already committed outside :func:`consult.audit.audited`
    (a reminder is no audited state change); a failing listener is logged."""
    for listener in list(_listeners.get(db, ())):
        try:
            await listener(event)
        except Exception:
            logger.exception("domain event listener failed")
