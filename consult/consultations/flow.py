"""The consultation services ``web/`` calls (issue 14, R10-R16): requests, invitations, the
session, the opinion report and the inviter's decision. This module is the package's public
surface; the rules live in the modules named beside each group below, and an import-linter
contract keeps the rest of the code base out of them.

Every change goes through one of the three machines of :mod:`consult.consultations.machines`
(checked, logged, audited, relayed after commit) inside :func:`consult.audit.audited`. Who may
act is the role table (:mod:`consult.permissions`) plus the sides of :func:`consult.access.
consultation_sides`: the requesting doctor and the doctors of its department, the consult
centres of both institutions (operators of the centre department), the invited experts.

Rules, each refused with a stable code and audited:

- R15 a request goes only to an institution the inviter's has a cooperation agreement with;
- R10 reason, purpose, proposed times, record summary, specialty and title wanted are required;
- R12 the requester is a verified physician; an expert has verified practice of 3+ years, the
  title asked or higher, and belongs to the invited institution;
- R11 a decline carries its reason; an invitation not answered by its deadline expires;
- R13, R24 the report is frozen at its first signature; a change is a new version and the old
  one stays; R27, R35 a signature needs the practitioner's signing PIN;
- R17 once the report is issued, the requesting doctor refers the patient to the invited
  institution, whose centre accepts or declines with a reason (``referrals``);
- R18 once the report is issued, the patient or its doctor asks for it to be explained; an
  expert answers in writing or in a call (``interpretations``).
"""

from __future__ import annotations

from consult.consultations.attachments import (
    ATTACHMENT_MAX_BYTES,
    ATTACHMENT_TYPES,
    add_attachment,
    get_attachment,
)
from consult.consultations.centres import create_agreement, list_agreements, set_centre
from consult.consultations.interpretations import (
    answer_interpretation,
    ask_interpretation,
    assign_interpreter,
    cancel_interpretation,
    interpretation_room_id,
    list_interpretations,
    my_interpretations,
    schedule_call,
)
from consult.consultations.invitations import (
    accept_invitation,
    assign_expert,
    decline_invitation,
    expire_overdue,
    withdraw_invitation,
)
from consult.consultations.mine import my_consultations
from consult.consultations.queries import (
    get_consultation,
    list_consultations,
    requester_patients,
)
from consult.consultations.referrals import (
    accept_referral,
    cancel_referral,
    decline_referral,
    list_referrals,
    my_referrals,
    refer,
)
from consult.consultations.report_signing import export_report, sign_report
from consult.consultations.reports import get_report, issue_report, new_version, write_report
from consult.consultations.request import (
    approve,
    cancel,
    create_consultation,
    decide,
    decline_request,
    return_to_requester,
    submit,
    update_consultation,
)
from consult.consultations.session import room_id_of, start_session
from consult.consultations.views import (
    AgreementView,
    AttachmentView,
    ConsultationView,
    InterpretationView,
    InvitationView,
    MyConsultationView,
    MyInterpretationView,
    MyReferralView,
    PatientChoice,
    ReferralView,
    ReportView,
    RequestFields,
    SignatureView,
)

__all__ = [
    "ATTACHMENT_MAX_BYTES",
    "ATTACHMENT_TYPES",
    "AgreementView",
    "AttachmentView",
    "ConsultationView",
    "InterpretationView",
    "InvitationView",
    "MyConsultationView",
    "MyInterpretationView",
    "MyReferralView",
    "PatientChoice",
    "ReferralView",
    "ReportView",
    "RequestFields",
    "SignatureView",
    "accept_invitation",
    "accept_referral",
    "add_attachment",
    "answer_interpretation",
    "approve",
    "ask_interpretation",
    "assign_expert",
    "assign_interpreter",
    "cancel",
    "cancel_interpretation",
    "cancel_referral",
    "create_agreement",
    "create_consultation",
    "decide",
    "decline_invitation",
    "decline_referral",
    "decline_request",
    "expire_overdue",
    "export_report",
    "get_attachment",
    "get_consultation",
    "get_report",
    "interpretation_room_id",
    "issue_report",
    "list_agreements",
    "list_consultations",
    "list_interpretations",
    "list_referrals",
    "my_consultations",
    "my_interpretations",
    "my_referrals",
    "new_version",
    "refer",
    "requester_patients",
    "return_to_requester",
    "room_id_of",
    "schedule_call",
    "set_centre",
    "sign_report",
    "start_session",
    "submit",
    "update_consultation",
    "withdraw_invitation",
    "write_report",
]
