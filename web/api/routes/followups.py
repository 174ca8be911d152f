"""After a consultation's report is issued (issue 14 item 7): online referral to the invited
institution (R17) and report interpretation requests answered in writing or in a call (R18).
The services are in ``consult.consultations.flow``; docs/consultations.md says who does what."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from consult import rooms
from consult.consultations import flow
from consult.consultations.flow import (
    InterpretationView,
    MyInterpretationView,
    MyReferralView,
    ReferralView,
)
from consult.consultations.models import AnswerMode
from consult.sessions import account_stamp
from consult.tokens import issue_join_token, verify_join_token

from ...join_links import room_link
from ..call import Call
from ..fields import Id, Input, Reason, Storable, Time, View, Views
from ..registry import api
from .consultations import ConsultationPath, JoinToken, ReasonIn

Note = Annotated[str, StringConstraints(max_length=1000), Storable]
Question = Annotated[str, StringConstraints(min_length=1, max_length=4000), Storable]
Answer = Annotated[str, StringConstraints(max_length=4000), Storable]


# --- Referral (R17) -------------------------------------------------------------------------------


class ReferralIn(Input):
    reason: Reason = Field(description="Why the patient is referred.")
    target_department_id: Id | None = Field(
        default=None, description="A department of the invited institution (else the centre)."
    )


class ReferralAnswerIn(Input):
    proposed_time: Time | None = Field(
        default=None, description="When the receiving institution expects the patient."
    )
    note: Note = Field(default="", description="What the patient should know (where, bring).")


class ReferralPath(Input):
    referral_id: Id


class ReferralQuery(Input):
    consultation_id: Id | None = None


class Referral(View[ReferralView]):
    """A referral after a consultation."""


class Referrals(Views):
    referrals: list[ReferralView]


class MyReferrals(Views):
    referrals: list[MyReferralView]


@api.operation(
    "POST",
    "/consultations/{consultation_id}/referrals",
    action="referral.create",
    tag="consultations",
    status=201,
)
async def refer(call: Call, path: ConsultationPath, body: ReferralIn) -> Referral:
    """Refer the patient to the invited institution once the report is issued (R17): the
    requesting doctor, with a reason; the issued report goes with it by reference."""
    view = await flow.refer(
        call.db,
        call.me,
        path.consultation_id,
        body.reason,
        target_department_id=body.target_department_id,
    )
    return Referral(view)


@api.operation("GET", "/referrals", action="referral.list", tag="consultations")
async def list_referrals(call: Call, query: ReferralQuery) -> Referrals:
    """The caller's referrals: a doctor's own, the referring centre's, the invited centre's
    inbox (``requested`` ones to answer). Newest first."""
    views = await flow.list_referrals(call.db, call.me, consultation_id=query.consultation_id)
    return Referrals(referrals=views)


@api.operation("GET", "/me/referrals", action="referral.mine", tag="consultations")
async def my_referrals(call: Call) -> MyReferrals:
    """The signed-in patient's referrals and their answers (R17, R37)."""
    return MyReferrals(referrals=await flow.my_referrals(call.db, call.me))


@api.operation(
    "POST", "/referrals/{referral_id}/accept", action="referral.accept", tag="consultations"
)
async def accept_referral(call: Call, path: ReferralPath, body: ReferralAnswerIn) -> Referral:
    """The invited institution's centre accepts, optionally with a time and a note."""
    view = await flow.accept_referral(
        call.db, call.me, path.referral_id, proposed_time=body.proposed_time, note=body.note
    )
    return Referral(view)


@api.operation(
    "POST", "/referrals/{referral_id}/decline", action="referral.decline", tag="consultations"
)
async def decline_referral(call: Call, path: ReferralPath, body: ReasonIn) -> Referral:
    """The invited institution's centre declines with its reason (required)."""
    return Referral(await flow.decline_referral(call.db, call.me, path.referral_id, body.reason))


@api.operation(
    "POST", "/referrals/{referral_id}/cancel", action="referral.cancel", tag="consultations"
)
async def cancel_referral(call: Call, path: ReferralPath) -> Referral:
    """The requesting doctor withdraws a referral not yet answered."""
    return Referral(await flow.cancel_referral(call.db, call.me, path.referral_id))


# --- Report interpretation (R18) -----------------------------------------------------------------


class AskIn(Input):
    question: Question = Field(description="What the patient wants explained.")


class AssignInterpreterIn(Input):
    expert_id: Id = Field(description="A practitioner of the invited institution (R12).")


class AnswerIn(Input):
    answer: Answer = Field(
        default="", description="The written answer; after a call, its summary (optional)."
    )


class ScheduleIn(Input):
    mode: AnswerMode = Field(description="`voice` or `video`.")
    scheduled_at: Time | None = Field(default=None, description="When; now if left out.")


class InterpretationPath(Input):
    interpretation_id: Id


class Interpretation(View[InterpretationView]):
    """A report interpretation request."""


class Interpretations(Views):
    interpretations: list[InterpretationView]


class MyInterpretations(Views):
    interpretations: list[MyInterpretationView]


@api.operation(
    "POST",
    "/consultations/{consultation_id}/interpretations",
    action="interpretation.ask",
    tag="consultations",
    status=201,
)
async def ask_interpretation(call: Call, path: ConsultationPath, body: AskIn) -> Interpretation:
    """Ask for the issued report to be explained (R18): the consultation's patient, or its
    requesting doctor for it. The expert who wrote the report is named to answer."""
    view = await flow.ask_interpretation(call.db, call.me, path.consultation_id, body.question)
    return Interpretation(view)


@api.operation("GET", "/interpretations", action="interpretation.list", tag="consultations")
async def list_interpretations(call: Call) -> Interpretations:
    """The caller's interpretation requests: an expert's to answer, the invited centre's to
    assign, the requesting doctor's. Newest first."""
    return Interpretations(interpretations=await flow.list_interpretations(call.db, call.me))


@api.operation("GET", "/me/interpretations", action="interpretation.mine", tag="consultations")
async def my_interpretations(call: Call) -> MyInterpretations:
    """The signed-in patient's interpretation requests and their answers (R18, R37)."""
    return MyInterpretations(interpretations=await flow.my_interpretations(call.db, call.me))


@api.operation(
    "POST",
    "/interpretations/{interpretation_id}/assign",
    action="interpretation.assign",
    tag="consultations",
)
async def assign_interpreter(
    call: Call, path: InterpretationPath, body: AssignInterpreterIn
) -> Interpretation:
    """The invited centre names the expert who answers (R12: 3+ years, the title asked)."""
    view = await flow.assign_interpreter(call.db, call.me, path.interpretation_id, body.expert_id)
    return Interpretation(view)


@api.operation(
    "POST",
    "/interpretations/{interpretation_id}/answer",
    action="interpretation.answer",
    tag="consultations",
)
async def answer_interpretation(
    call: Call, path: InterpretationPath, body: AnswerIn
) -> Interpretation:
    """The named expert answers in writing (after a call: a summary, optional; the call's room
    closes)."""
    view = await flow.answer_interpretation(call.db, call.me, path.interpretation_id, body.answer)
    return Interpretation(view)


@api.operation(
    "POST",
    "/interpretations/{interpretation_id}/schedule",
    action="interpretation.schedule",
    tag="consultations",
)
async def schedule_call(call: Call, path: InterpretationPath, body: ScheduleIn) -> Interpretation:
    """The named expert answers by voice or video: the call's room opens (the expert, the
    patient's account, the requesting doctor); each gets in with
    `POST /interpretations/{id}/join-token`."""
    view = await flow.schedule_call(
        call.db, call.me, path.interpretation_id, body.mode, body.scheduled_at
    )
    return Interpretation(view)


@api.operation(
    "POST",
    "/interpretations/{interpretation_id}/cancel",
    action="interpretation.cancel",
    tag="consultations",
)
async def cancel_interpretation(call: Call, path: InterpretationPath) -> Interpretation:
    """The one who asked withdraws a request not yet answered."""
    return Interpretation(
        await flow.cancel_interpretation(call.db, call.me, path.interpretation_id)
    )


@api.operation(
    "POST",
    "/interpretations/{interpretation_id}/join-token",
    action="interpretation.join",
    tag="consultations",
)
async def interpretation_join_token(call: Call, path: InterpretationPath) -> JoinToken:
    """A join token for the interpretation call's room: its expert (`doctor`), the patient
    (`patient`), the requesting doctor (`inviter`); the room's policy decides (audited)."""
    me = call.me
    room_id = await flow.interpretation_room_id(call.db, path.interpretation_id)
    participation = await rooms.enter(call.db, me, room_id)
    assert me.user_id is not None
    secret = call.config.secret()
    token = issue_join_token(
        secret,
        room_id=room_id,
        user_id=me.user_id,
        role=participation.room_role,
        ttl_s=call.config.token_ttl_s,
        session_id=me.session_id,
        credential_stamp=await account_stamp(call.db, me.user_id),
    )
    expires_at = datetime.fromtimestamp(verify_join_token(secret, token).expires_at, tz=UTC)
    return JoinToken(
        token=token,
        role=participation.room_role,
        room_id=room_id,
        expires_at=expires_at,
        room_url=room_link(token, room_id=room_id),
    )
