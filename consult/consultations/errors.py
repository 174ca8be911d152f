"""Errors of remote consultation (issue 14), each with a stable code (consult/error_table.py)."""

from __future__ import annotations

from consult.errors import Conflict, InvalidInput, NotFound, PermissionDenied, RuleRefused


class ConsultationNotFound(NotFound):
    code = "consultation_not_found"
    default_message = "The consultation does not exist."


class InvitationNotFound(NotFound):
    code = "invitation_not_found"
    default_message = "The invitation does not exist."


class ReportNotFound(NotFound):
    code = "report_not_found"
    default_message = "The opinion report does not exist."


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"
    default_message = "The attachment does not exist."


class NoAgreement(RuleRefused):
    """R15: the inviter's institution has no cooperation agreement with the one it invites."""

    code = "no_cooperation_agreement"
    default_message = "There is no cooperation agreement with this institution."


class NoConsultCentre(RuleRefused):
    code = "no_consult_centre"
    default_message = "The institution has no consult centre."


class ExpertNotQualified(RuleRefused):
    """R12: an invitee expert needs 3+ years of independent practice, verified, the title asked."""

    code = "expert_not_qualified"
    default_message = (
        "The expert cannot be invited: verified practice of 3 years or more and the title asked "
        "are required."
    )


class ExpertElsewhere(RuleRefused):
    code = "expert_of_other_institution"
    default_message = "The expert does not belong to the invited institution."


class InviterNotQualified(RuleRefused):
    """R12: the inviter side needs a verified physician with the patient."""

    code = "inviter_not_qualified"
    default_message = "The requesting doctor must be a verified physician."


class DeclineReasonRequired(InvalidInput):
    """R11: a decline carries its reason."""

    code = "decline_reason_required"
    default_message = "A decline needs its reason."


class InvitationExpired(Conflict):
    code = "invitation_expired"
    default_message = "The time to answer this invitation has passed."


class AlreadyInvited(Conflict):
    code = "expert_already_invited"
    default_message = "This expert is already invited."


class ReportSigned(Conflict):
    """R24: a signed report never changes; a new version keeps the old one."""

    code = "report_signed"
    default_message = "The report is signed and cannot be changed; make a new version."


class ReportUnsigned(Conflict):
    code = "report_unsigned"
    default_message = "The report has no signature yet."


class AlreadySignedReport(Conflict):
    code = "report_already_signed_by_you"
    default_message = "You have already signed this report."


class SigningUnavailable(Conflict):
    code = "signing_unavailable"
    default_message = "Report signing is not configured on this server (no signing CA)."


class AttachmentRefused(InvalidInput):
    code = "attachment_refused"
    default_message = "Only PDF, PNG and JPEG files up to 10 MB may be attached."


class ConsultationClosed(Conflict):
    code = "consultation_closed"
    default_message = "The consultation is closed."


class InvitationClosed(Conflict):
    code = "invitation_closed"
    default_message = "The invitation has been answered or withdrawn."


class ReportSuperseded(Conflict):
    code = "report_superseded"
    default_message = "A newer version of the report replaced this one."


# --- After the report (R17, R18) ---------------------------------------------------------------


class NotYourConsultation(PermissionDenied):
    """R17, R18: only the consultation's own people refer or ask about its report."""

    code = "not_your_consultation"
    default_message = "Not your consultation."


class NotReported(Conflict):
    """R17, R18: a referral or an interpretation follows an issued report."""

    code = "consultation_not_reported"
    default_message = "The consultation's report has not been issued yet."


class ReferralNotFound(NotFound):
    code = "referral_not_found"
    default_message = "The referral does not exist."


class ReferralDeclineReasonRequired(InvalidInput):
    """R17 (as R11): a declined referral carries its reason."""

    code = "referral_decline_reason_required"
    default_message = "Declining a referral needs its reason."


class ReferralAnswered(Conflict):
    code = "referral_answered"
    default_message = "The referral has already been answered or cancelled."


class ReferralOpen(Conflict):
    code = "referral_open"
    default_message = "A referral of this consultation is already waiting for its answer."


class InterpretationNotFound(NotFound):
    code = "interpretation_not_found"
    default_message = "The interpretation request does not exist."


class InterpretationAnswered(Conflict):
    code = "interpretation_answered"
    default_message = "The interpretation request has already been answered or cancelled."
