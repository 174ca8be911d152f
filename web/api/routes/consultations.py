"""Remote consultation between institutions (issue 14, R10-R16): agreements and consult
centres, requests and their attachments, invitations, the session, the signed opinion report
and the inviter's decision. The services are in ``consult.consultations.flow``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from consult import rooms
from consult.consultations import flow, report_pdf
from consult.consultations.flow import (
    AgreementView,
    AttachmentView,
    ConsultationView,
    ExamChoice,
    ExamLink,
    InvitationView,
    MyConsultationView,
    PatientChoice,
    ReportView,
    RequestFields,
)
from consult.consultations.models import ConsultationKind, Urgency
from consult.models import Title
from consult.sessions import account_stamp
from consult.tokens import issue_join_token, verify_join_token

from ...join_links import room_link
from ...keys import IMAGING
from ..call import Call
from ..fields import Id, Input, Output, Pin, Reason, ShortText, Storable, Time, View, Views
from ..registry import BinaryResponse, RawBody, api

log = logging.getLogger(__name__)

LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000), Storable]
OptionalText = Annotated[str, StringConstraints(max_length=4000), Storable]
FileName = Annotated[str, StringConstraints(min_length=1, max_length=200), Storable]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Uid = Annotated[
    str, StringConstraints(pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$", max_length=64)
]


# --- Models -------------------------------------------------------------------------------------


class AgreementIn(Input):
    inviter_institution_id: Id
    invitee_institution_id: Id


class Agreement(View[AgreementView]):
    """A cooperation agreement."""


class Agreements(Views):
    agreements: list[AgreementView]


class CentreIn(Input):
    department_id: Id = Field(description="The department whose operators are the centre.")


class InstitutionPath(Input):
    institution_id: Id


class ConsultationIn(Input):
    kind: ConsultationKind = ConsultationKind.CONSULTATION
    patient_id: Id = Field(description="The patient record.")
    target_institution_id: Id = Field(description="The invited institution (R15: agreement).")
    target_department_id: Id | None = None
    reason: Reason
    purpose: Reason
    specialty: ShortText = Field(description="The specialty wanted (R10).")
    min_title: Title = Field(description="The lowest professional title wanted (R10).")
    urgency: Urgency = Urgency.ROUTINE
    description: LongText = Field(description="The patient's condition (R16).")
    history: OptionalText = Field(default="", description="Existing diagnosis and treatment.")
    summary: LongText = Field(description="The record summary (R10).")
    proposed_start: Time | None = None
    proposed_end: Time | None = None

    def fields(self) -> RequestFields:
        return RequestFields(
            kind=self.kind,
            patient_id=self.patient_id,
            target_institution_id=self.target_institution_id,
            target_department_id=self.target_department_id,
            reason=self.reason,
            purpose=self.purpose,
            specialty=self.specialty,
            min_title=self.min_title,
            urgency=self.urgency,
            description=self.description,
            history=self.history,
            summary=self.summary,
            proposed_start=self.proposed_start,
            proposed_end=self.proposed_end,
        )


class Invitation(View[InvitationView]):
    """An invitation of an expert."""


class Attachment(View[AttachmentView]):
    """An attachment's description."""


class Report(View[ReportView]):
    """A version of the opinion report."""


class Consultation(View[ConsultationView]):
    """A consultation as the caller's side sees it."""


class ExamChoices(Views):
    exams: list[ExamChoice]


class ExamIn(Input):
    study_uid: Uid = Field(
        description="The Study Instance UID of a study your institution holds for the patient."
    )


class Exam(View[ExamLink]):
    """The study to open in the viewer for an exam attachment."""


class ConsultationList(Views):
    consultations: list[ConsultationView]


class MyConsultations(Views):
    consultations: list[MyConsultationView]


class ConsultationPath(Input):
    consultation_id: Id


class AttachmentPath(Input):
    consultation_id: Id
    attachment_id: Id


class ParticipantPath(Input):
    consultation_id: Id
    user_id: Id


class Presence(Output):
    """Where a participant of the consultation's room stands now."""

    room_id: str
    user_id: str
    room_role: str
    state: str = Field(description="`waiting` (asked out) or `admitted` (back in).")


class AttachmentQuery(Input):
    filename: FileName = "attachment"


class InvitationPath(Input):
    invitation_id: Id


class ReportPath(Input):
    report_id: Id


class ReasonIn(Input):
    reason: OptionalText = Field(default="", description="Required: an empty one is refused.")


class AssignIn(Input):
    expert_id: Id
    respond_within_hours: float | None = Field(default=None, gt=0, le=24 * 14)


class DecisionIn(Input):
    decision: LongText


class ReportContent(Input):
    """An opinion report (kind ``consultation``: findings, opinion, treatment plan, medication
    and referral advice) or a remote read's diagnostic report (``imaging``, ``ecg``,
    ``pathology``, ``ultrasound``: examination, findings, opinion, recommendation). A field of
    the other kind must stay empty."""

    examination: OptionalText = Field(default="", description="Diagnostic report: what was read.")
    findings: OptionalText = ""
    opinion: LongText = Field(description="The diagnostic opinion (a read: the impression).")
    recommendation: OptionalText = Field(default="", description="Diagnostic report only.")
    treatment_plan: OptionalText = ""
    medication_advice: OptionalText = ""
    referral_advice: OptionalText = ""


class SignIn(Input):
    pin: Pin = Field(description="The practitioner's signing PIN (R35).")
    content_digest: Digest | None = Field(
        default=None, description="The content the signer read; refused if it changed."
    )


class SignedExport(Output):
    format: str
    document: dict[str, Any]
    document_sm3: str
    signatures: list[dict[str, Any]]
    acceptance: dict[str, Any] | None = Field(
        default=None,
        description="A remote read's joint liability (R14): the inviter's recorded decision on "
        "this version (who, when, what) and the SM3 of the document it accepts; not signed.",
    )


async def _fresh(call: Call, consultation_id: str) -> Consultation:
    return Consultation(await flow.get_consultation(call.db, call.me, consultation_id, audit=False))


# --- Organisation -------------------------------------------------------------------------------


@api.operation("POST", "/agreements", action="agreement.create", tag="consultations", status=201)
async def create_agreement(call: Call, body: AgreementIn) -> Agreement:
    """Let one institution invite another (R15)."""
    view = await flow.create_agreement(
        call.db,
        call.me,
        inviter_institution_id=body.inviter_institution_id,
        invitee_institution_id=body.invitee_institution_id,
    )
    return Agreement(view)


@api.operation("GET", "/agreements", action="agreement.list", tag="consultations")
async def list_agreements(call: Call) -> Agreements:
    """Cooperation agreements (staff see their institution's)."""
    views = await flow.list_agreements(call.db, call.me)
    return Agreements(agreements=views)


@api.operation(
    "PUT", "/institutions/{institution_id}/consult-centre", action="centre.set", tag="consultations"
)
async def set_centre(call: Call, path: InstitutionPath, body: CentreIn) -> None:
    """Name the institution's consult centre (its operators approve and assign)."""
    await flow.set_centre(call.db, call.me, path.institution_id, body.department_id)


# --- Requests -------------------------------------------------------------------------------------


@api.operation(
    "POST", "/consultations", action="consultation.create", tag="consultations", status=201
)
async def create_consultation(call: Call, body: ConsultationIn) -> Consultation:
    """A draft request (R10, R16) by a verified physician."""
    return Consultation(await flow.create_consultation(call.db, call.me, body.fields()))


class PatientChoices(Views):
    patients: list[PatientChoice]


@api.operation("GET", "/consultation-patients", action="consultation.create", tag="consultations")
async def requester_patients(call: Call) -> PatientChoices:
    """Patients registered by the requester's institution, for the request form."""
    views = await flow.requester_patients(call.db, call.me)
    return PatientChoices(patients=views)


@api.operation("GET", "/consultations", action="consultation.list", tag="consultations")
async def list_consultations(call: Call) -> ConsultationList:
    """The caller's worklist: its requests, its invitations, its centre's queue."""
    views = await flow.list_consultations(call.db, call.me)
    return ConsultationList(consultations=views)


@api.operation("GET", "/me/consultations", action="consultation.mine", tag="consultations")
async def my_consultations(call: Call) -> MyConsultations:
    """The signed-in patient's own consultations, newest first, with the minimum (R37): the
    institutions, the start time, and whether the room is open to it now (then
    `POST /consultations/{id}/join-token`) or it was asked out for the doctors' discussion."""
    return MyConsultations(consultations=await flow.my_consultations(call.db, call.me))


@api.operation(
    "GET", "/consultations/{consultation_id}", action="consultation.view", tag="consultations"
)
async def get_consultation(call: Call, path: ConsultationPath) -> Consultation:
    """One consultation as the caller's side sees it (audited)."""
    return Consultation(await flow.get_consultation(call.db, call.me, path.consultation_id))


@api.operation(
    "PUT", "/consultations/{consultation_id}", action="consultation.update", tag="consultations"
)
async def update_consultation(
    call: Call, path: ConsultationPath, body: ConsultationIn
) -> Consultation:
    """Change a draft."""
    return Consultation(
        await flow.update_consultation(call.db, call.me, path.consultation_id, body.fields())
    )


@api.operation(
    "POST",
    "/consultations/{consultation_id}/attachments",
    action="consultation.attach",
    tag="consultations",
    status=201,
    max_body=flow.ATTACHMENT_MAX_BYTES,
)
async def add_attachment(
    call: Call, path: ConsultationPath, query: AttachmentQuery, body: RawBody
) -> Attachment:
    """Attach a PDF, PNG or JPEG (typed by its bytes; SM4-encrypted at rest)."""
    view = await flow.add_attachment(
        call.db, call.me, path.consultation_id, filename=query.filename, data=body.data
    )
    return Attachment(view)


@api.operation(
    "GET",
    "/consultations/{consultation_id}/attachments/{attachment_id}",
    action="consultation.view",
    tag="consultations",
    produces=tuple(flow.ATTACHMENT_TYPES.values()),
)
async def get_attachment(call: Call, path: AttachmentPath) -> BinaryResponse:
    """An attachment's bytes (the view is audited)."""
    view, data = await flow.get_attachment(
        call.db, call.me, path.consultation_id, path.attachment_id
    )
    return BinaryResponse(data, view.content_type, view.filename)


@api.operation(
    "GET",
    "/consultations/{consultation_id}/exam-choices",
    action="consultation.attach",
    tag="consultations",
)
async def exam_choices(call: Call, path: ConsultationPath) -> ExamChoices:
    """The studies the requester may attach (R14, R19): its institution's originals of the
    request's patient, newest first (audited)."""
    return ExamChoices(exams=await flow.exam_choices(call.db, call.me, path.consultation_id))


@api.operation(
    "POST",
    "/consultations/{consultation_id}/exams",
    action="consultation.attach",
    tag="consultations",
    status=201,
)
async def attach_exam(call: Call, path: ConsultationPath, body: ExamIn) -> Attachment:
    """Attach a stored study (imaging, ECG, pathology, ultrasound) to the request (R14, R19);
    once sent it is shared de-identified with the invited institution (R37)."""
    view = await flow.attach_exam(
        call.db, call.request.app[IMAGING], call.me, path.consultation_id, body.study_uid
    )
    return Attachment(view)


@api.operation(
    "GET",
    "/consultations/{consultation_id}/exams/{attachment_id}",
    action="consultation.view",
    tag="consultations",
)
async def open_exam(call: Call, path: AttachmentPath) -> Exam:
    """The study to open for an exam (audited): the original for the requesting doctors, the
    de-identified copy for the invited experts (R37); ``viewer_url`` opens it."""
    view = await flow.open_exam(
        call.db, call.request.app[IMAGING], call.me, path.consultation_id, path.attachment_id
    )
    return Exam(view)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/submit",
    action="consultation.submit",
    tag="consultations",
)
async def submit(call: Call, path: ConsultationPath) -> Consultation:
    """Hand the draft to the consult centre (R16)."""
    await flow.submit(call.db, call.me, path.consultation_id)
    return await _fresh(call, path.consultation_id)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/approve",
    action="consultation.approve",
    tag="consultations",
)
async def approve(call: Call, path: ConsultationPath) -> Consultation:
    """The inviter's centre approves; the request is sent to the invited institution (R15).
    A remote diagnosis request's exams leave as de-identified copies for it (R14, R37)."""
    await flow.approve(call.db, call.me, path.consultation_id)
    try:
        await flow.share_exams(call.db, call.request.app[IMAGING], call.me, path.consultation_id)
    except Exception:
        # The request is sent (committed); an exam not shared now is shared when an invited
        # expert first opens it (flow.open_exam), so the approval does not fail for it.
        log.exception("sharing exams failed", extra={"consultation_id": path.consultation_id})
    return await _fresh(call, path.consultation_id)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/cancel",
    action="consultation.cancel",
    tag="consultations",
)
async def cancel(call: Call, path: ConsultationPath) -> Consultation:
    """Withdraw the request; open invitations are withdrawn with it."""
    await flow.cancel(call.db, call.me, path.consultation_id)
    return await _fresh(call, path.consultation_id)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/return",
    action="consultation.return",
    tag="consultations",
)
async def return_consultation(call: Call, path: ConsultationPath, body: ReasonIn) -> Consultation:
    """The inviter's centre returns the request to its doctor, with a reason."""
    await flow.return_to_requester(call.db, call.me, path.consultation_id, body.reason)
    return await _fresh(call, path.consultation_id)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/decline",
    action="consultation.decline",
    tag="consultations",
)
async def decline_consultation(call: Call, path: ConsultationPath, body: ReasonIn) -> None:
    """The invited institution's centre declines the request with its reason (R11)."""
    await flow.decline_request(call.db, call.me, path.consultation_id, body.reason)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/invitations",
    action="consultation.assign",
    tag="consultations",
    status=201,
)
async def assign_expert(call: Call, path: ConsultationPath, body: AssignIn) -> Invitation:
    """The invited centre invites one of its experts (R12: 3+ years, the title asked)."""
    within = timedelta(hours=body.respond_within_hours) if body.respond_within_hours else None
    view = await flow.assign_expert(
        call.db, call.me, path.consultation_id, body.expert_id, respond_within=within
    )
    return Invitation(view)


class ScheduleIn(Input):
    scheduled_at: Time = Field(
        description="When the session starts; in the future, the requester and every accepted "
        "expert free then (no other session within an hour, no visit-schedule slot)."
    )


@api.operation(
    "PUT",
    "/consultations/{consultation_id}/schedule",
    action="consultation.schedule",
    tag="consultations",
)
async def schedule_session(call: Call, path: ConsultationPath, body: ScheduleIn) -> Consultation:
    """The requester or the invited centre sets (or moves) the session's time against both
    sides' calendars (`schedule_conflict`, `schedule_in_past`); the parties are reminded 24 h and
    15 min before it."""
    return Consultation(
        await flow.schedule_session(call.db, call.me, path.consultation_id, body.scheduled_at)
    )


@api.operation(
    "POST", "/invitations/{invitation_id}/accept", action="invitation.accept", tag="consultations"
)
async def accept_invitation(call: Call, path: InvitationPath) -> None:
    """The invited expert accepts (R11)."""
    await flow.accept_invitation(call.db, call.me, path.invitation_id)


@api.operation(
    "POST", "/invitations/{invitation_id}/decline", action="invitation.decline", tag="consultations"
)
async def decline_invitation(call: Call, path: InvitationPath, body: ReasonIn) -> None:
    """The invited expert declines with its reason (R11)."""
    await flow.decline_invitation(call.db, call.me, path.invitation_id, body.reason)


@api.operation(
    "POST",
    "/invitations/{invitation_id}/withdraw",
    action="invitation.withdraw",
    tag="consultations",
)
async def withdraw_invitation(call: Call, path: InvitationPath) -> None:
    """The invited centre takes an invitation back."""
    await flow.withdraw_invitation(call.db, call.me, path.invitation_id)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/start",
    action="consultation.start",
    tag="consultations",
)
async def start_session(call: Call, path: ConsultationPath) -> Consultation:
    """Open the consultation's session and room (R12 checked)."""
    return Consultation(await flow.start_session(call.db, call.me, path.consultation_id))


@api.operation(
    "POST",
    "/consultations/{consultation_id}/decision",
    action="consultation.decide",
    tag="consultations",
)
async def decide(call: Call, path: ConsultationPath, body: DecisionIn) -> Consultation:
    """The inviter records its decision on diagnosis and treatment (R13); archived."""
    await flow.decide(call.db, call.me, path.consultation_id, body.decision)
    return await _fresh(call, path.consultation_id)


# --- The opinion report ---------------------------------------------------------------------------


@api.operation(
    "PUT", "/consultations/{consultation_id}/report", action="opinion.write", tag="consultations"
)
async def write_report(call: Call, path: ConsultationPath, body: ReportContent) -> Report:
    """Write or change the draft report (an accepted expert); refused once signed (R24)."""
    view = await flow.write_report(call.db, call.me, path.consultation_id, body.model_dump())
    return Report(view)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/report/versions",
    action="opinion.supersede",
    tag="consultations",
    status=201,
)
async def new_version(call: Call, path: ConsultationPath, body: ReportContent) -> Report:
    """A new version of a signed report; the old one stays, superseded (R24)."""
    view = await flow.new_version(call.db, call.me, path.consultation_id, body.model_dump())
    return Report(view)


@api.operation("GET", "/reports/{report_id}", action="opinion.view", tag="consultations")
async def get_report(call: Call, path: ReportPath) -> Report:
    """One report version (audited)."""
    return Report(await flow.get_report(call.db, call.me, path.report_id))


@api.operation("POST", "/reports/{report_id}/sign", action="opinion.sign", tag="consultations")
async def sign_report(call: Call, path: ReportPath, body: SignIn) -> Report:
    """Co-sign with SM2 after the signing PIN (R27, R35); the first signature freezes it."""
    view = await flow.sign_report(
        call.db,
        call.me,
        path.report_id,
        body.pin,
        call.config.report_signing(),
        expected_digest=body.content_digest,
    )
    return Report(view)


@api.operation("POST", "/reports/{report_id}/issue", action="opinion.issue", tag="consultations")
async def issue_report(call: Call, path: ReportPath) -> Report:
    """Issue a signed version to the inviter (R13)."""
    return Report(await flow.issue_report(call.db, call.me, path.report_id))


@api.operation("GET", "/reports/{report_id}/signed", action="opinion.view", tag="consultations")
async def export_report(call: Call, path: ReportPath) -> SignedExport:
    """The signed report as JSON: `teleconsult report verify FILE --ca CA.pem` checks it."""
    return SignedExport(**await flow.export_report(call.db, call.me, path.report_id))


@api.operation(
    "GET",
    "/reports/{report_id}/signed.pdf",
    action="opinion.view",
    tag="consultations",
    produces=("application/pdf",),
)
async def export_report_pdf(call: Call, path: ReportPath) -> BinaryResponse:
    """The signed report as a PDF in Chinese with its signatures listed (R15)."""
    export = await flow.export_report(call.db, call.me, path.report_id)
    pdf = await asyncio.to_thread(report_pdf.render, export)
    return BinaryResponse(pdf, "application/pdf", f"report-{path.report_id}.pdf", attachment=True)


class JoinToken(Output):
    token: str
    role: str = Field(description="The room role: inviter, invitee or patient.")
    room_id: str
    expires_at: datetime
    room_url: str = Field(description="The room page with this room and token.")


@api.operation(
    "POST",
    "/consultations/{consultation_id}/join-token",
    action="consultation.join",
    tag="consultations",
)
async def consultation_join_token(call: Call, path: ConsultationPath) -> JoinToken:
    """A join token for the consultation's MDT room: the requester, the patient, each accepted
    expert (the room's participations; audited by the one policy)."""
    me = call.me
    room_id = await flow.room_id_of(call.db, path.consultation_id)
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
    room_url = room_link(token, room_id=room_id)
    return JoinToken(
        token=token,
        role=participation.room_role,
        room_id=room_id,
        expires_at=expires_at,
        room_url=room_url,
    )


async def _presence(call: Call, path: ParticipantPath, *, out: bool) -> Presence:
    room_id = await flow.room_id_of(call.db, path.consultation_id)
    row = await rooms.step_out(call.db, call.me, room_id, path.user_id, out=out)
    return Presence(room_id=room_id, user_id=row.user_id, room_role=row.room_role, state=row.state)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/participants/{user_id}/step-out",
    action="consultation.host",
    tag="consultations",
)
async def consultation_step_out(call: Call, path: ParticipantPath) -> Presence:
    """The inviter asks the patient's side out of the room for a part among clinicians: its
    sockets leave the room at once (``room_left``, reason ``stepped_out``) and a join waits."""
    return await _presence(call, path, out=True)


@api.operation(
    "POST",
    "/consultations/{consultation_id}/participants/{user_id}/step-in",
    action="consultation.host",
    tag="consultations",
)
async def consultation_step_in(call: Call, path: ParticipantPath) -> Presence:
    """The inviter lets the patient's side back in; its pages are told (``room_changed``)."""
    return await _presence(call, path, out=False)
