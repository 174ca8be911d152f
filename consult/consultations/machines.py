"""The three state machines of remote consultation, as data (``consult.machine``).

Consultation (the request, R10, R11, R13, R16)::

    draft --submit--> submitted --approve--> approved --send--> sent --accept--> accepted
      ^                  |                                        |               |
      +-----return-------+                       declined <-decline-+     start  v
                                                                         in_session
    accepted | in_session --report--> reported --decide--> decided      (report: a version issued)
    draft, submitted, approved, sent, accepted --cancel--> cancelled

Invitation (one per expert, R11, R12): invited --accept--> accepted; invited --decline-->
declined (with its reason); invited --expire--> expired (the answer's deadline passed);
invited | accepted --withdraw--> withdrawn.

Opinion report version (R13, R24): draft --sign--> signing (content frozen) --sign--> signing
(co-signers) --issue--> issued; signing | issued --supersede--> superseded (a new version).

Referral (R17, after the report is issued): requested --accept--> accepted (a proposed time,
optional); requested --decline--> declined (with its reason); requested --cancel--> cancelled
(the requester).

Report interpretation (R18): asked --assign--> asked (the invited centre names the expert);
asked --answer--> answered (in writing); asked --schedule--> scheduled (a voice or video call,
its room) --answer--> answered; asked | scheduled --cancel--> cancelled (the one who asked).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from consult.consultations.errors import (
    ConsultationClosed,
    InterpretationAnswered,
    InvitationClosed,
    ReferralAnswered,
    ReportSuperseded,
)
from consult.consultations.models import (
    ConsultationState,
    InterpretationState,
    InvitationState,
    ReferralState,
    ReportState,
)
from consult.machine import StateMachine


class ConsultationEvent(StrEnum):
    SUBMIT = "submit"
    RETURN = "return"
    APPROVE = "approve"
    SEND = "send"
    ACCEPT = "accept"
    DECLINE = "decline"
    START = "start"
    REPORT = "report"
    DECIDE = "decide"
    CANCEL = "cancel"


class InvitationEvent(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    EXPIRE = "expire"
    WITHDRAW = "withdraw"


class ReportEvent(StrEnum):
    SIGN = "sign"
    ISSUE = "issue"
    SUPERSEDE = "supersede"


class ReferralEvent(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"


class InterpretationEvent(StrEnum):
    ASSIGN = "assign"
    ANSWER = "answer"
    SCHEDULE = "schedule"
    CANCEL = "cancel"


C, CE = ConsultationState, ConsultationEvent
CONSULTATION_TRANSITIONS: Final[
    Mapping[tuple[ConsultationState, ConsultationEvent], ConsultationState]
] = {
    (C.DRAFT, CE.SUBMIT): C.SUBMITTED,
    (C.SUBMITTED, CE.RETURN): C.DRAFT,
    (C.SUBMITTED, CE.APPROVE): C.APPROVED,
    (C.APPROVED, CE.SEND): C.SENT,
    (C.SENT, CE.ACCEPT): C.ACCEPTED,
    (C.SENT, CE.DECLINE): C.DECLINED,
    (C.ACCEPTED, CE.START): C.IN_SESSION,
    (C.ACCEPTED, CE.REPORT): C.REPORTED,
    (C.IN_SESSION, CE.REPORT): C.REPORTED,
    (C.REPORTED, CE.REPORT): C.REPORTED,
    (C.REPORTED, CE.DECIDE): C.DECIDED,
    (C.DRAFT, CE.CANCEL): C.CANCELLED,
    (C.SUBMITTED, CE.CANCEL): C.CANCELLED,
    (C.APPROVED, CE.CANCEL): C.CANCELLED,
    (C.SENT, CE.CANCEL): C.CANCELLED,
    (C.ACCEPTED, CE.CANCEL): C.CANCELLED,
}
CONSULTATION_MACHINE: Final = StateMachine(
    "consultation",
    ConsultationState,
    CONSULTATION_TRANSITIONS,
    frozenset({C.DECIDED, C.DECLINED, C.CANCELLED}),
    ConsultationClosed,
)

N, IE = InvitationState, InvitationEvent
INVITATION_TRANSITIONS: Final[Mapping[tuple[InvitationState, InvitationEvent], InvitationState]] = {
    (N.INVITED, IE.ACCEPT): N.ACCEPTED,
    (N.INVITED, IE.DECLINE): N.DECLINED,
    (N.INVITED, IE.EXPIRE): N.EXPIRED,
    (N.INVITED, IE.WITHDRAW): N.WITHDRAWN,
    (N.ACCEPTED, IE.WITHDRAW): N.WITHDRAWN,
}
INVITATION_MACHINE: Final = StateMachine(
    "invitation",
    InvitationState,
    INVITATION_TRANSITIONS,
    frozenset({N.DECLINED, N.EXPIRED, N.WITHDRAWN}),
    InvitationClosed,
)

R, RE = ReportState, ReportEvent
REPORT_TRANSITIONS: Final[Mapping[tuple[ReportState, ReportEvent], ReportState]] = {
    (R.DRAFT, RE.SIGN): R.SIGNING,
    (R.SIGNING, RE.SIGN): R.SIGNING,
    (R.SIGNING, RE.ISSUE): R.ISSUED,
    (R.SIGNING, RE.SUPERSEDE): R.SUPERSEDED,
    (R.ISSUED, RE.SUPERSEDE): R.SUPERSEDED,
}
REPORT_MACHINE: Final = StateMachine(
    "opinion",
    ReportState,
    REPORT_TRANSITIONS,
    frozenset({R.SUPERSEDED}),
    ReportSuperseded,
)

F, FE = ReferralState, ReferralEvent
REFERRAL_TRANSITIONS: Final[Mapping[tuple[ReferralState, ReferralEvent], ReferralState]] = {
    (F.REQUESTED, FE.ACCEPT): F.ACCEPTED,
    (F.REQUESTED, FE.DECLINE): F.DECLINED,
    (F.REQUESTED, FE.CANCEL): F.CANCELLED,
}
REFERRAL_MACHINE: Final = StateMachine(
    "referral",
    ReferralState,
    REFERRAL_TRANSITIONS,
    frozenset({F.ACCEPTED, F.DECLINED, F.CANCELLED}),
    ReferralAnswered,
)

P, PE = InterpretationState, InterpretationEvent
INTERPRETATION_TRANSITIONS: Final[
    Mapping[tuple[InterpretationState, InterpretationEvent], InterpretationState]
] = {
    (P.ASKED, PE.ASSIGN): P.ASKED,
    (P.ASKED, PE.ANSWER): P.ANSWERED,
    (P.ASKED, PE.SCHEDULE): P.SCHEDULED,
    (P.SCHEDULED, PE.ANSWER): P.ANSWERED,
    (P.ASKED, PE.CANCEL): P.CANCELLED,
    (P.SCHEDULED, PE.CANCEL): P.CANCELLED,
}
INTERPRETATION_MACHINE: Final = StateMachine(
    "interpretation",
    InterpretationState,
    INTERPRETATION_TRANSITIONS,
    frozenset({P.ANSWERED, P.CANCELLED}),
    InterpretationAnswered,
)
