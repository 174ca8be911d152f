"""Issue 14: the machines of remote consultation as data, every state x event asserted.

Each (state, event) of each machine, on SQLite and PostgreSQL: the table's transitions move the
row, are audited ``ok`` with from/to and relayed as a domain event after commit; every other pair
is refused with the machine's closed error or ``invalid_transition``, audited ``refused`` with
the state, and leaves the row as it was. R10-R13 (the flow), R24 (a superseded report is closed),
R17 (a referral, answered once), R18 (an interpretation request, answered once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pytest

from consult.actor import Actor
from consult.audit import audited
from consult.audit_verify import events_for
from consult.consultations.errors import (
    ConsultationClosed,
    InterpretationAnswered,
    InvitationClosed,
    ReferralAnswered,
    ReportSuperseded,
)
from consult.consultations.machines import (
    CONSULTATION_MACHINE,
    INTERPRETATION_MACHINE,
    INVITATION_MACHINE,
    REFERRAL_MACHINE,
    REPORT_MACHINE,
    ConsultationEvent,
    InterpretationEvent,
    InvitationEvent,
    ReferralEvent,
    ReportEvent,
)
from consult.consultations.models import (
    ConsultationState,
    InterpretationState,
    InvitationState,
    ReferralState,
    ReportState,
)
from consult.db import Database
from consult.errors import ConsultError, InvalidTransition
from consult.events import DomainEvent, StateChanged, subscribe
from consult.machine import StateMachine
from consult.permissions import Role
from consult.sqltypes import new_id

C, CE = ConsultationState, ConsultationEvent
N, IE = InvitationState, InvitationEvent
R, RE = ReportState, ReportEvent
F, FE = ReferralState, ReferralEvent
P, PE = InterpretationState, InterpretationEvent


def test_r10_r13_consultation_transition_list_is_exactly_this() -> None:
    assert CONSULTATION_MACHINE.table() == sorted(
        [
            (C.DRAFT, CE.SUBMIT, C.SUBMITTED),
            (C.SUBMITTED, CE.RETURN, C.DRAFT),
            (C.SUBMITTED, CE.APPROVE, C.APPROVED),
            (C.APPROVED, CE.SEND, C.SENT),
            (C.SENT, CE.ACCEPT, C.ACCEPTED),
            (C.SENT, CE.DECLINE, C.DECLINED),
            (C.ACCEPTED, CE.START, C.IN_SESSION),
            (C.ACCEPTED, CE.REPORT, C.REPORTED),
            (C.IN_SESSION, CE.REPORT, C.REPORTED),
            (C.REPORTED, CE.REPORT, C.REPORTED),
            (C.REPORTED, CE.DECIDE, C.DECIDED),
            (C.DRAFT, CE.CANCEL, C.CANCELLED),
            (C.SUBMITTED, CE.CANCEL, C.CANCELLED),
            (C.APPROVED, CE.CANCEL, C.CANCELLED),
            (C.SENT, CE.CANCEL, C.CANCELLED),
            (C.ACCEPTED, CE.CANCEL, C.CANCELLED),
        ]
    )


def test_r11_invitation_transition_list_is_exactly_this() -> None:
    assert INVITATION_MACHINE.table() == sorted(
        [
            (N.INVITED, IE.ACCEPT, N.ACCEPTED),
            (N.INVITED, IE.DECLINE, N.DECLINED),
            (N.INVITED, IE.EXPIRE, N.EXPIRED),
            (N.INVITED, IE.WITHDRAW, N.WITHDRAWN),
            (N.ACCEPTED, IE.WITHDRAW, N.WITHDRAWN),
        ]
    )


def test_r13_r24_report_transition_list_is_exactly_this() -> None:
    assert REPORT_MACHINE.table() == sorted(
        [
            (R.DRAFT, RE.SIGN, R.SIGNING),
            (R.SIGNING, RE.SIGN, R.SIGNING),
            (R.SIGNING, RE.ISSUE, R.ISSUED),
            (R.SIGNING, RE.SUPERSEDE, R.SUPERSEDED),
            (R.ISSUED, RE.SUPERSEDE, R.SUPERSEDED),
        ]
    )


def test_r17_referral_transition_list_is_exactly_this() -> None:
    assert REFERRAL_MACHINE.table() == sorted(
        [
            (F.REQUESTED, FE.ACCEPT, F.ACCEPTED),
            (F.REQUESTED, FE.DECLINE, F.DECLINED),
            (F.REQUESTED, FE.CANCEL, F.CANCELLED),
        ]
    )
    assert REFERRAL_MACHINE.closed == {F.ACCEPTED, F.DECLINED, F.CANCELLED}


def test_r18_interpretation_transition_list_is_exactly_this() -> None:
    assert INTERPRETATION_MACHINE.table() == sorted(
        [
            (P.ASKED, PE.ASSIGN, P.ASKED),
            (P.ASKED, PE.ANSWER, P.ANSWERED),
            (P.ASKED, PE.SCHEDULE, P.SCHEDULED),
            (P.SCHEDULED, PE.ANSWER, P.ANSWERED),
            (P.ASKED, PE.CANCEL, P.CANCELLED),
            (P.SCHEDULED, PE.CANCEL, P.CANCELLED),
        ]
    )
    assert INTERPRETATION_MACHINE.closed == {P.ANSWERED, P.CANCELLED}


@dataclass
class Row:
    """What a machine moves: an id, a state and its timestamps."""

    id: str
    status: str
    updated_at: datetime | None = None
    closed_at: datetime | None = None


CASES: list[tuple[StateMachine, type[StrEnum], type[StrEnum], type[ConsultError]]] = [  # type: ignore[type-arg]
    (CONSULTATION_MACHINE, ConsultationState, ConsultationEvent, ConsultationClosed),
    (INVITATION_MACHINE, InvitationState, InvitationEvent, InvitationClosed),
    (REPORT_MACHINE, ReportState, ReportEvent, ReportSuperseded),
    (REFERRAL_MACHINE, ReferralState, ReferralEvent, ReferralAnswered),
    (INTERPRETATION_MACHINE, InterpretationState, InterpretationEvent, InterpretationAnswered),
]


@pytest.mark.parametrize(
    "machine,states,events,closed_error", CASES, ids=lambda c: getattr(c, "name", "")
)
async def test_every_state_x_event_of_each_consultation_machine(
    db: Database,
    machine: StateMachine,  # type: ignore[type-arg]
    states: type[StrEnum],
    events: type[StrEnum],
    closed_error: type[ConsultError],
) -> None:
    heard: list[StateChanged] = []

    async def listener(event: DomainEvent) -> None:
        if isinstance(event, StateChanged) and event.machine == machine.name:
            heard.append(event)

    unsubscribe = subscribe(db, listener)
    actor = Actor(user_id=None, role=Role.DOCTOR, source_ip="test")
    try:
        for state in states:
            for event in events:
                row = Row(new_id(), state.value)
                expected = machine.transitions.get((state, event))
                before = len(heard)
                if expected is not None:
                    async with audited(db) as tx:
                        assert await machine.set_state(tx, actor, row, event) is expected
                    assert row.status == expected.value
                    assert (row.closed_at is not None) == (expected in machine.closed)
                    [audit] = await events_for(db, row.id)
                    assert (audit.action, audit.result) == (f"{machine.name}.{event.value}", "ok")
                    assert f'"from":"{state.value}"' in audit.details
                    assert f'"to":"{expected.value}"' in audit.details
                    assert [(h.old, h.new, h.event) for h in heard[before:]] == [
                        (state.value, expected.value, event.value)
                    ]
                else:
                    error = closed_error if state in machine.closed else InvalidTransition
                    with pytest.raises(error):
                        async with audited(db) as tx:
                            await machine.set_state(tx, actor, row, event)
                    assert row.status == state.value
                    [audit] = await events_for(db, row.id)
                    assert (audit.action, audit.result) == (
                        f"{machine.name}.{event.value}",
                        "refused",
                    )
                    assert f'"state":"{state.value}"' in audit.details
                    assert len(heard) == before
    finally:
        unsubscribe()
