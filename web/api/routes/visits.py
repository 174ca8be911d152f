"""Visits (R1-R8): book, consent, check in, the doctor's queue, admit, send back, end, refer
offline, the patient's refusal of a referral, and join tokens for the consult room."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from pydantic import Field, StringConstraints

from consult import rooms, visit_flow
from consult import visits as visit_rows
from consult.models import ConsentKind, VisitMode, VisitState
from consult.sessions import account_stamp
from consult.tokens import issue_join_token, verify_join_token
from consult.visit_details import visit_details
from consult.visit_flow import QueueEntry, VisitView

from ...join_links import room_link
from ..call import Call
from ..fields import Id, Input, Output, Reason, ShortText, Storable
from ..registry import api

ConditionCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][0-9]{2}(\.[0-9]{1,4})?$")]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64), Storable]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class VisitBook(Input):
    patient_id: Id = Field(description="The patient record (one's own or a ward's).")
    doctor_id: Id
    mode: VisitMode
    condition_code: ConditionCode = Field(
        description="ICD-10 of the condition followed up; an offline diagnosis must exist (R2)."
    )
    slot_id: Id | None = Field(
        default=None, description="A schedule slot; without one, the online doctor's queue."
    )
    emergency: bool = Field(default=False, description="Emergencies are refused online (R4).")


class Visit(Output):
    id: str
    state: VisitState
    mode: VisitMode
    institution_id: str
    department_id: str | None
    doctor_id: str
    patient_id: str = Field(description="The patient-side account (a guardian's for a child).")
    patient_record_id: str | None
    diagnosis_id: str | None
    slot_id: str | None
    created_at: datetime
    checked_in_at: datetime | None
    admitted_at: datetime | None
    closed_at: datetime | None
    guardian_present: bool
    referral_reason: str | None
    referral_appointment: str | None
    consent_signed: bool = Field(description="The risk notice is signed (R5).")
    refusal_acknowledged: bool = Field(description="The patient signed a referral refusal.")
    doctor_name: str = ""
    patient_name: str | None = None
    department_name: str | None = None
    slot_starts_at: datetime | None = None
    slot_ends_at: datetime | None = None
    queue_position: int | None = Field(
        default=None, description="Patients waiting ahead (0: next); only while waiting."
    )


class VisitList(Output):
    visits: list[Visit]


class VisitQuery(Input):
    state: VisitState | None = None
    limit: int = Field(default=100, ge=1, le=500)


class VisitPath(Input):
    visit_id: Id


class Signature(Input):
    version: Version = Field(description="The document version shown to the patient.")
    digest: Digest = Field(description="The SM3 digest of the document shown.")


class CheckIn(Input):
    guardian_present: bool = Field(default=False, description="Needed for a child under 6.")


class Referral(Input):
    reason: Reason
    appointment: ShortText | None = Field(default=None, description="Where and when, if booked.")


class DocumentPath(Input):
    kind: ConsentKind


class Document(Output):
    kind: ConsentKind
    version: str
    digest: str
    text_zh: str
    text_en: str


class SignedDocument(Output):
    kind: ConsentKind
    version: str
    digest: str
    signer_id: str
    signed_at: datetime


class SignedDocuments(Output):
    documents: list[SignedDocument]


class QueueItem(Output):
    id: str
    state: VisitState
    mode: VisitMode
    patient_record_id: str | None
    patient_name: str
    checked_in_at: datetime | None
    guardian_present: bool = Field(description="A guardian came (R4: needed under 6).")


class Queue(Output):
    visits: list[QueueItem]


class QueueQuery(Input):
    doctor_id: Id | None = Field(default=None, description="Nurses and operators name a doctor.")


class JoinToken(Output):
    token: str
    role: str = Field(description="The room role the token carries (doctor, patient, guardian...).")
    room_id: str
    expires_at: datetime
    room_url: str = Field(description="The consult room page with this visit and token.")


async def visit_of(call: Call, view: VisitView) -> Visit:
    consent = await visit_flow.consent_signed(call.db, view.id, ConsentKind.RISK_NOTICE)
    refusal = await visit_flow.consent_signed(call.db, view.id, ConsentKind.REFERRAL_REFUSAL)
    details = await visit_details(call.db, view.id)
    return Visit(
        id=view.id,
        state=view.state,
        mode=view.mode,
        institution_id=view.institution_id,
        department_id=view.department_id,
        doctor_id=view.doctor_id,
        patient_id=view.patient_id,
        patient_record_id=view.patient_record_id,
        diagnosis_id=view.diagnosis_id,
        slot_id=view.slot_id,
        created_at=view.created_at,
        checked_in_at=view.checked_in_at,
        admitted_at=view.admitted_at,
        closed_at=view.closed_at,
        guardian_present=view.guardian_present,
        referral_reason=view.referral_reason,
        referral_appointment=view.referral_appointment,
        consent_signed=consent,
        refusal_acknowledged=refusal,
        doctor_name=details.doctor_name if details else "",
        patient_name=details.patient_name if details else None,
        department_name=details.department_name if details else None,
        slot_starts_at=details.slot_starts_at if details else None,
        slot_ends_at=details.slot_ends_at if details else None,
        queue_position=details.queue_position if details else None,
    )


def queue_item_of(entry: QueueEntry) -> QueueItem:
    return QueueItem(
        id=entry.visit_id,
        state=entry.state,
        mode=entry.mode,
        patient_record_id=entry.patient_record_id,
        patient_name=entry.patient_name,
        checked_in_at=entry.checked_in_at,
        guardian_present=entry.guardian_present,
    )


async def _fresh(call: Call, visit_id: str) -> Visit:
    """The visit as it is now, for answers of services that return nothing."""
    return await visit_of(call, await visit_flow.get_visit_view(call.db, call.me, visit_id))


@api.operation("POST", "/visits", action="visit.book", tag="visits", status=201)
async def book_visit(call: Call, body: VisitBook) -> Visit:
    """Book a follow-up into a schedule slot, or the queue of a doctor who is online."""
    view = await visit_flow.book_visit(
        call.db,
        call.me,
        patient_id=body.patient_id,
        doctor_id=body.doctor_id,
        mode=body.mode,
        condition_code=body.condition_code,
        slot_id=body.slot_id,
        emergency=body.emergency,
    )
    return await visit_of(call, view)


@api.operation("GET", "/visits", action="visit.list", tag="visits")
async def list_visits(call: Call, query: VisitQuery) -> VisitList:
    """The visits the caller may act on, newest first."""
    views = await visit_flow.list_visits(
        call.db,
        call.me,
        states={query.state} if query.state is not None else None,
        limit=query.limit,
    )
    return VisitList(visits=[await visit_of(call, view) for view in views])


@api.operation("GET", "/visits/{visit_id}", action="visit.view", tag="visits")
async def get_visit(call: Call, path: VisitPath) -> Visit:
    """One visit (the view is audited)."""
    return await _fresh(call, path.visit_id)


@api.operation("GET", "/documents/{kind}", action="consent.view_text", tag="visits")
async def get_document(call: Call, path: DocumentPath) -> Document:
    """The current text to sign: the risk notice, or the referral refusal (R5)."""
    document = visit_flow.current_document(path.kind)
    return Document(
        kind=document.kind,
        version=document.version,
        digest=document.digest,
        text_zh=document.text_zh,
        text_en=document.text_en,
    )


@api.operation("POST", "/visits/{visit_id}/consent", action="consent.sign", tag="visits")
async def sign_consent(call: Call, path: VisitPath, body: Signature) -> Visit:
    """The patient signs the risk notice it was shown (version and digest), before check-in."""
    await visit_flow.sign_consent(
        call.db,
        call.me,
        path.visit_id,
        document_version=body.version,
        document_digest=body.digest,
    )
    return await _fresh(call, path.visit_id)


@api.operation("GET", "/visits/{visit_id}/consents", action="consent.view", tag="visits")
async def list_consents(call: Call, path: VisitPath) -> SignedDocuments:
    """The documents signed for the visit: which version, which digest, who, when."""
    views = await visit_flow.visit_consents(call.db, call.me, path.visit_id)
    return SignedDocuments(
        documents=[
            SignedDocument(
                kind=view.kind,
                version=view.document_version,
                digest=view.document_digest,
                signer_id=view.signer_id,
                signed_at=view.signed_at,
            )
            for view in views
        ]
    )


@api.operation("POST", "/visits/{visit_id}/check-in", action="visit.check_in", tag="visits")
async def check_in(call: Call, path: VisitPath, body: CheckIn) -> Visit:
    """Enter the waiting room: consent signed, a guardian present for a child under 6."""
    view = await visit_flow.check_in(
        call.db, call.me, path.visit_id, guardian_present=body.guardian_present
    )
    return await visit_of(call, view)


@api.operation("POST", "/visits/{visit_id}/cancel", action="visit.cancel", tag="visits")
async def cancel_visit(call: Call, path: VisitPath) -> Visit:
    """Cancel a visit before it reaches the room."""
    return await visit_of(call, await visit_flow.cancel_visit(call.db, call.me, path.visit_id))


@api.operation("GET", "/queue", action="queue.view", tag="visits")
async def get_queue(call: Call, query: QueueQuery) -> Queue:
    """A doctor's waiting room and room, in check-in order (a doctor sees its own)."""
    entries = await visit_flow.doctor_queue(call.db, call.me, query.doctor_id)
    return Queue(visits=[queue_item_of(entry) for entry in entries])


@api.operation("POST", "/visits/{visit_id}/admit", action="visit.admit", tag="visits")
async def admit(call: Call, path: VisitPath) -> Visit:
    """The doctor admits a waiting patient into the room, one at a time."""
    return await visit_of(call, await visit_flow.admit(call.db, call.me, path.visit_id))


@api.operation("POST", "/visits/{visit_id}/send-back", action="visit.send_back", tag="visits")
async def send_back(call: Call, path: VisitPath) -> Visit:
    """The doctor sends the patient back to the waiting room."""
    return await visit_of(call, await visit_flow.send_back(call.db, call.me, path.visit_id))


@api.operation("POST", "/visits/{visit_id}/end", action="visit.end", tag="visits")
async def end_visit(call: Call, path: VisitPath) -> Visit:
    """The doctor ends the visit."""
    return await visit_of(call, await visit_flow.end_visit(call.db, call.me, path.visit_id))


@api.operation("POST", "/visits/{visit_id}/refer", action="visit.refer", tag="visits")
async def refer_offline(call: Call, path: VisitPath, body: Referral) -> Visit:
    """End the online visit at once and refer the patient offline, with a reason (R3)."""
    view = await visit_flow.refer_offline(
        call.db, call.me, path.visit_id, reason=body.reason, appointment=body.appointment
    )
    return await visit_of(call, view)


@api.operation(
    "POST", "/visits/{visit_id}/refusal", action="visit.acknowledge_refusal", tag="visits"
)
async def acknowledge_refusal(call: Call, path: VisitPath, body: Signature) -> Visit:
    """The patient declines the offline referral and signs the acknowledgement it was shown."""
    await visit_flow.acknowledge_referral_refusal(
        call.db,
        call.me,
        path.visit_id,
        document_version=body.version,
        document_digest=body.digest,
    )
    return await _fresh(call, path.visit_id)


@api.operation("POST", "/visits/{visit_id}/join-token", action="room.join", tag="visits")
async def join_token(call: Call, path: VisitPath) -> JoinToken:
    """A join token for the visit's room: for its doctor, and for its admitted patient side."""
    me = call.me
    # the one policy: a participant of the room, admitted, the room open (audited either way)
    room_id, role = await rooms.enter_visit_room(call.db, me, path.visit_id)
    assert me.user_id is not None
    secret = call.config.secret()
    token = issue_join_token(
        secret,
        room_id=room_id,
        user_id=me.user_id,
        role=role,
        ttl_s=call.config.token_ttl_s,
        # the token dies with the session that asked for it, and with a password change
        session_id=me.session_id,
        credential_stamp=await account_stamp(call.db, me.user_id),
    )
    expires_at = datetime.fromtimestamp(verify_join_token(secret, token).expires_at, tz=UTC)
    visit = await visit_rows.get_visit(call.db, path.visit_id)
    text_only = visit is not None and visit.mode == VisitMode.TEXT.value  # R1: no camera
    room_url = room_link(token, visit_id=path.visit_id, text_only=text_only)
    return JoinToken(
        token=token, role=role, room_id=room_id, expires_at=expires_at, room_url=room_url
    )


# --- More than two in a visit's room: invitations (issue 11) -------------------------------------


class InvitationIn(Input):
    room_role: Literal["companion", "interpreter"]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class InvitationOut(Output):
    id: str
    room_id: str
    room_role: str
    label: str
    code: str = Field(description="The link's secret, shown once: single use.")
    link: str = Field(description="The page the invitee opens (signed in) to come in.")
    expires_at: datetime


class Redemption(Input):
    code: Annotated[str, StringConstraints(min_length=16, max_length=64)]


class Redeemed(Output):
    room_id: str
    room_role: str
    state: str
    visit_id: str | None


class ParticipantPath(Input):
    visit_id: Id
    user_id: Id


@api.operation(
    "POST", "/visits/{visit_id}/invitations", action="room.invite", tag="visits", status=201
)
async def invite(call: Call, path: VisitPath, body: InvitationIn) -> InvitationOut:
    """The doctor invites a companion or an interpreter: a single-use link (24 h)."""
    made = await rooms.invite(call.db, call.me, path.visit_id, body.room_role, body.label)
    return InvitationOut(
        id=made.id,
        room_id=made.room_id,
        room_role=made.room_role.value,
        label=made.label,
        code=made.code,
        link="/waiting?" + urlencode({"visit": path.visit_id, "invite": made.code}),
        expires_at=made.expires_at,
    )


@api.operation("POST", "/invitations/redeem", action="room.redeem", tag="visits")
async def redeem(call: Call, body: Redemption) -> Redeemed:
    """Take up an invitation: into the visit's waiting room, admitted by the doctor."""
    row = await rooms.redeem(call.db, call.me, body.code)
    subject = await rooms.subject_of(call.db, row.room_id)
    return Redeemed(
        room_id=row.room_id,
        room_role=row.room_role,
        state=row.state,
        visit_id=subject[1] if subject and subject[0] == "visit" else None,
    )


@api.operation(
    "POST", "/visits/{visit_id}/participants/{user_id}/admit", action="visit.admit", tag="visits"
)
async def admit_participant(call: Call, path: ParticipantPath) -> Visit:
    """The doctor lets in one waiting person (a companion who came while the visit is on)."""
    await rooms.admit_participant(call.db, call.me, path.visit_id, path.user_id)
    return await _fresh(call, path.visit_id)
