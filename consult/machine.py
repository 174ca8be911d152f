"""State machines as data: one table-driven helper for visits (and consultations, invitations,
reports next).

A :class:`StateMachine` is a transition table ``(state, event) -> state`` and the set of closed
states. :meth:`StateMachine.set_state` is the one setter: it checks the table, logs
``old -> new``, appends the audit event and records a :class:`~consult.events.StateChanged`
domain event in the same transaction (relayed after commit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from consult.actor import Actor
from consult.audit import AuditTx
from consult.errors import ConsultError, InvalidTransition, VisitClosed
from consult.events import StateChanged, publish
from consult.sqltypes import utc_now

logger = logging.getLogger(__name__)

StateT = TypeVar("StateT", bound=StrEnum)
EventT = TypeVar("EventT", bound=StrEnum)


class Stateful(Protocol):
    """A row a machine moves: its id, its state column and its timestamps."""

    id: str
    status: str
    updated_at: Any
    closed_at: Any


@dataclass(frozen=True)
class StateMachine(Generic[StateT, EventT]):
    """A transition table and what it means to be closed, for rows of one ``object_type``."""

    name: str
    """The object type in the audit chain and the domain events (``visit``)."""
    states: type[StateT]
    transitions: Mapping[tuple[StateT, EventT], StateT]
    closed: frozenset[StateT]
    closed_error: type[ConsultError] = VisitClosed
    """Refusal of any event on a closed object; :class:`InvalidTransition` otherwise."""

    def action(self, event: EventT) -> str:
        """The permission-table and audit action of ``event`` (``visit.admit``)."""
        return f"{self.name}.{event.value}"

    def table(self) -> list[tuple[StateT, EventT, StateT]]:
        """The transition table as a sorted list of ``(from, event, to)``."""
        return sorted((old, event, new) for (old, event), new in self.transitions.items())

    async def set_state(
        self,
        tx: AuditTx,
        actor: Actor,
        row: Stateful,
        event: EventT,
        details: Mapping[str, Any] | None = None,
        *,
        parties: tuple[tuple[str, str], ...] = (),
    ) -> StateT:
        """Move ``row`` by ``event``: check, log, audit, and record the domain event.

        Raises (and audits) the machine's closed error when ``row`` is closed, else
        :class:`InvalidTransition` when the table has no such transition. ``parties`` are the
        ``(role, user_id)`` pairs the object concerns, for the listeners.
        """
        old = self.states(row.status)
        new = self.transitions.get((old, event))
        action = self.action(event)
        if new is None:
            error = self.closed_error() if old in self.closed else InvalidTransition()
            raise tx.refuse(
                error,
                actor=actor,
                action=action,
                object_type=self.name,
                object_id=row.id,
                details={"state": old.value},
            )
        now = utc_now()
        row.status = new.value
        row.updated_at = now
        if new in self.closed:
            row.closed_at = now
        logger.info("%s %s: %s -> %s (%s)", self.name, row.id, old.value, new.value, event.value)
        await tx.record(
            action,
            actor=actor,
            object_type=self.name,
            object_id=row.id,
            details={"from": old.value, "to": new.value, **(details or {})},
        )
        publish(
            tx,
            StateChanged(
                self.name, row.id, old.value, new.value, event.value, actor.user_id, parties
            ),
        )
        return new
