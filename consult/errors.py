"""Errors of the consult domain, each with a stable code for the client boundary.

The boundary (signaling/ or web/) maps a ``ConsultError`` to ``{"code": exc.code, "message":
exc.message}``; nothing else about the exception reaches a client.
"""

from __future__ import annotations


class ConsultError(Exception):
    """Base class: a refusal the client may be told about.

    ``code`` is stable and machine-readable; ``message`` is short English text for people.
    """

    code: str = "consult_error"
    default_message: str = "The request was refused."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.default_message)

    @property
    def message(self) -> str:
        """The human-readable text, the same as ``str(exc)``."""
        return str(self)


class TokenMissing(ConsultError):
    """No join token was presented."""

    code = "token_missing"
    default_message = "A join token is required."


class TokenInQuery(ConsultError):
    """A token was sent in a URL's query string (an old-form link, or a client's mistake): refused
    even when valid, so that old links fail clearly and no token is taught to travel in URLs."""

    code = "token_in_query"
    default_message = "Send the token in the socket's auth payload or a header, not the URL."


class TokenInvalid(ConsultError):
    """The token is malformed, forged, signed with another key or carries wrong claims."""

    code = "token_invalid"
    default_message = "The join token is not valid."


class TokenExpired(ConsultError):
    """The token was valid but its expiry time has passed."""

    code = "token_expired"
    default_message = "The join token has expired."


class RoomNotFound(ConsultError):
    """No room has the requested id."""

    code = "room_not_found"
    default_message = "The room does not exist."


class VisitNotFound(ConsultError):
    """No visit has the requested id."""

    code = "visit_not_found"
    default_message = "The visit does not exist."


# --- Categories: the boundary may map a whole category to one HTTP status. -------------------


class Unauthenticated(ConsultError):
    """Who is asking is unknown: no, wrong, expired or revoked credentials (HTTP 401)."""

    code = "unauthenticated"
    default_message = "Sign-in is required."


class PermissionDenied(ConsultError):
    """The actor is known but may not do this (HTTP 403). Always recorded in the audit chain."""

    code = "forbidden"
    default_message = "You may not do this."


class NotFound(ConsultError):
    """The object does not exist (HTTP 404)."""

    code = "not_found"
    default_message = "The object does not exist."


class InvalidInput(ConsultError):
    """A value is malformed or out of range (HTTP 422)."""

    code = "invalid_input"
    default_message = "A value is not valid."


class Conflict(ConsultError):
    """The request clashes with the current state: a duplicate, a wrong state (HTTP 409)."""

    code = "conflict"
    default_message = "The request conflicts with the current state."


class RuleRefused(ConsultError):
    """A rule of care (R2-R9) refuses the request (HTTP 409 or 422: the boundary decides)."""

    code = "rule_refused"
    default_message = "A rule of care refuses this request."


# --- Sign-in and sessions (R33) ---------------------------------------------------------------


class InvalidCredentials(Unauthenticated):
    """Wrong username, password or TOTP code, or an inactive account: deliberately vague."""

    code = "invalid_credentials"
    default_message = "The username, password or code is wrong."


class AccountLocked(Unauthenticated):
    """Too many failures: the account is locked for a while."""

    code = "account_locked"
    default_message = "Too many failed attempts; the account is locked for 10 minutes."


class TotpRequired(Unauthenticated):
    """The password was right; the account's TOTP code must come with it."""

    code = "totp_required"
    default_message = "Enter the code from your authenticator app."


class RateLimited(ConsultError):
    """Too many requests (or failures) from one address, account or socket: wait and retry
    (HTTP 429). ``retry_after_s`` says how long; it is also the ``Retry-After`` header."""

    code = "rate_limited"
    default_message = "Too many requests; wait a moment and try again."

    def __init__(self, retry_after_s: float = 1.0, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


class CredentialsSetByPerson(PermissionDenied):
    """An admin may not set a doctor's password (R34): it issues an enrolment link instead."""

    code = "credentials_set_by_person"
    default_message = (
        "An administrator cannot set a clinician's password; issue a one-time enrolment link."
    )


class EnrolmentLinkInvalid(Unauthenticated):
    """An enrolment link that is unknown, used or expired (all alike, R34)."""

    code = "enrolment_link_invalid"
    default_message = "This enrolment link is not valid; ask the administrator for a new one."


class SessionInvalid(Unauthenticated):
    """The bearer token is unknown, malformed or revoked."""

    code = "session_invalid"
    default_message = "The session is not valid; sign in again."


class SessionExpired(Unauthenticated):
    """The session passed its idle timeout or absolute lifetime."""

    code = "session_expired"
    default_message = "The session has expired; sign in again."


class TokenRevoked(Unauthenticated):
    """A join token whose session ended (sign-out, a newer sign-in), or issued before its
    account's password changed or the account was deactivated."""

    code = "token_revoked"
    default_message = "The join token was revoked; sign in again."


class TotpEnrolmentRequired(PermissionDenied):
    """A staff account without a confirmed TOTP secret may only enrol one."""

    code = "totp_enrolment_required"
    default_message = "Set up two-factor sign-in first."


class TotpInvalid(InvalidInput):
    """The TOTP code given to confirm an enrolment is wrong."""

    code = "totp_invalid"
    default_message = "The code is wrong."


class TotpAlreadyEnrolled(Conflict):
    """The account already has a confirmed TOTP secret (an admin can reset it)."""

    code = "totp_already_enrolled"
    default_message = "Two-factor sign-in is already set up."


class TotpNotEnrolled(Conflict):
    """Confirmation without a pending enrolment."""

    code = "totp_not_enrolled"
    default_message = "Start the two-factor enrolment first."


class WeakPassword(InvalidInput):
    """The password does not meet the policy (10+ characters from 3 of 4 classes)."""

    code = "weak_password"
    default_message = (
        "Use at least 10 characters from three of: lower case, upper case, digits, symbols."
    )


class UsernameTaken(Conflict):
    """Another account has this username."""

    code = "username_taken"
    default_message = "The username is taken."


class UserNotFound(NotFound):
    """No account has this id."""

    code = "user_not_found"
    default_message = "The account does not exist."


# --- Organisation, practitioners (R9, R35) ----------------------------------------------------


class ReminderNotFound(NotFound):
    """No reminder of the caller's has this id (another's is not found either)."""

    code = "reminder_not_found"
    default_message = "The reminder does not exist."


class InstitutionNotFound(NotFound):
    """No institution has this id."""

    code = "institution_not_found"
    default_message = "The institution does not exist."


class DepartmentNotFound(NotFound):
    """No department has this id (or it belongs to another institution)."""

    code = "department_not_found"
    default_message = "The department does not exist."


class PractitionerNotFound(NotFound):
    """The account has no practitioner record."""

    code = "practitioner_not_found"
    default_message = "The practitioner does not exist."


class PractitionerExists(Conflict):
    """The account already has a practitioner record, or the licence number is taken."""

    code = "practitioner_exists"
    default_message = "A practitioner with this account or licence number exists."


class PractitionerNotVerified(RuleRefused):
    """R9: an unverified doctor cannot take a patient."""

    code = "practitioner_not_verified"
    default_message = "The doctor's identity and licence are not verified yet."


class SigningPinNotSet(Conflict):
    """No signing PIN has been set (R35)."""

    code = "signing_pin_not_set"
    default_message = "Set a signing PIN first."


class SigningPinInvalid(PermissionDenied):
    """The signing PIN is wrong."""

    code = "signing_pin_invalid"
    default_message = "The signing PIN is wrong."


class SigningPinLocked(PermissionDenied):
    """Too many wrong signing PINs: signing is locked for a while."""

    code = "signing_pin_locked"
    default_message = "Too many wrong PINs; signing is locked for 10 minutes."


class WeakPin(InvalidInput):
    """The signing PIN is too short or trivial."""

    code = "weak_pin"
    default_message = "Use a PIN of 6 to 12 digits that is not a run or a repeat."


# --- Patients (R36, R37) ----------------------------------------------------------------------


class InvalidIdNumber(InvalidInput):
    """Not an 18-character resident ID number with a valid check character and birth date."""

    code = "invalid_id_number"
    default_message = "The ID number is not valid."


class InvalidPhone(InvalidInput):
    """Not a mainland mobile number."""

    code = "invalid_phone"
    default_message = "The phone number is not valid."


class PatientNotFound(NotFound):
    """No patient record has this id."""

    code = "patient_not_found"
    default_message = "The patient does not exist."


class PatientExists(Conflict):
    """A patient with this ID number (or for this account) is already registered."""

    code = "patient_exists"
    default_message = "The patient is already registered."


class IdentityDisputed(Conflict):
    """Staff only: the record is provisional, its ID number disputed until staff resolve it."""

    code = "identity_disputed"
    default_message = "The record's ID number is disputed; resolve the dispute first."


class DisputeNotFound(NotFound):
    code = "dispute_not_found"
    default_message = "The identity dispute does not exist."


class DisputeClosed(Conflict):
    code = "dispute_closed"
    default_message = "The identity dispute is resolved already."


class GuardianPending(PermissionDenied):
    """A guardian acts for a ward only once staff have verified the relation."""

    code = "guardian_pending"
    default_message = "The hospital has not verified the guardian relation yet."


class GuardianNotPending(Conflict):
    code = "guardian_not_pending"
    default_message = "This record has no guardian link waiting for verification."


# --- Visits (R1-R8) ---------------------------------------------------------------------------


class InvalidTransition(Conflict):
    """The visit's state does not allow this step."""

    code = "invalid_transition"
    default_message = "The visit is not in a state that allows this."


class FirstVisitRefused(RuleRefused):
    """R2: online visits are follow-ups of a condition diagnosed at a physical institution."""

    code = "first_visit_refused"
    default_message = (
        "Online visits are for follow-ups only: a prior diagnosis of this condition from a "
        "hospital is required."
    )


class GuardianRequired(RuleRefused):
    """R4: a child under 6 needs a guardian present."""

    code = "guardian_required"
    default_message = "A child under 6 needs a guardian present."


class EmergencyRefused(RuleRefused):
    """R4: no internet visits for emergencies."""

    code = "emergency_not_allowed"
    default_message = "Emergencies cannot be seen online; call 120 or go to an emergency room."


class ConsentRequired(RuleRefused):
    """R5: the risk notice must be signed before joining."""

    code = "consent_required"
    default_message = "Read and sign the informed consent first."


class ConsentMismatch(InvalidInput):
    """The signed document is not the current version of the text shown."""

    code = "consent_mismatch"
    default_message = "The document signed is not the current version."


class AlreadySigned(Conflict):
    """This document was already signed for this visit."""

    code = "already_signed"
    default_message = "Already signed."


class DoctorOffline(RuleRefused):
    """R6/R7: a queue booking needs the doctor online."""

    code = "doctor_offline"
    default_message = "The doctor is not online."


class DoctorBusy(Conflict):
    """The doctor already has a patient in the room: one at a time."""

    code = "doctor_busy"
    default_message = "Another patient is in the room."


class SlotNotFound(NotFound):
    """No schedule slot has this id (or it is another doctor's)."""

    code = "slot_not_found"
    default_message = "The schedule slot does not exist."


class SlotUnavailable(Conflict):
    """The slot is full or already over."""

    code = "slot_unavailable"
    default_message = "The schedule slot is full or over."


class VisitExists(Conflict):
    """The patient already holds an open visit with this doctor for this condition."""

    code = "visit_exists"
    default_message = (
        "The patient already has an open visit with this doctor for this condition; "
        "use it or cancel it first."
    )


class NotAdmitted(PermissionDenied):
    """The patient has not been admitted into the room by the doctor."""

    code = "not_admitted"
    default_message = "Please wait: the doctor has not admitted you yet."


class VisitClosed(Conflict):
    """The visit has ended, been referred or been cancelled."""

    code = "visit_closed"
    default_message = "The visit is over."


# --- Chat (issue 6: R1, R38) --------------------------------------------------------------------


class MessageEmpty(InvalidInput):
    """A text message with nothing but spaces."""

    code = "message_empty"
    default_message = "The message is empty."


class MessageTooLong(InvalidInput):
    """A text message over the limit (``consult.chat.MAX_TEXT_CHARS``)."""

    code = "message_too_long"
    default_message = "The message is too long (2000 characters at most)."


class MessageInvalidCharacters(InvalidInput):
    """Control characters (other than line breaks and tabs), or text that is not valid Unicode."""

    code = "message_invalid_characters"
    default_message = "The message contains characters that cannot be sent."


class SensitiveWordBlocked(RuleRefused):
    """R38: the message contains a word of the sensitive-word list; it was not sent."""

    code = "sensitive_word"
    default_message = (
        "The message was not sent: it contains a word that may not be used here. "
        "Please rephrase it."
    )


class MessageNotFound(NotFound):
    """No message of this room has this id."""

    code = "message_not_found"
    default_message = "The message does not exist."


class RetractNotAllowed(PermissionDenied):
    """Only the sender may retract a message, once, and a retraction cannot be retracted."""

    code = "retract_not_allowed"
    default_message = "You cannot retract this message."


class ImageNotFound(NotFound):
    """No image of this room has this id (an image of another room is not found either)."""

    code = "image_not_found"
    default_message = "The image does not exist."


class ImageTypeUnsupported(InvalidInput):
    """The bytes are not a JPEG, PNG or WebP image, whatever the name or declared type."""

    code = "image_type_unsupported"
    default_message = "Only JPEG, PNG and WebP images can be sent."


class ImageTooLarge(InvalidInput):
    """The file is over the byte limit."""

    code = "image_too_large"
    default_message = "The image file is too large (10 MiB at most)."


class ImageTooManyPixels(InvalidInput):
    """The image claims more pixels than allowed (a decompression bomb, or simply too big)."""

    code = "image_too_many_pixels"
    default_message = "The image has too many pixels (40 megapixels at most)."


class ImageUnreadable(InvalidInput):
    """The image type is right but its data is damaged or truncated."""

    code = "image_unreadable"
    default_message = "The image cannot be read."


class WordInvalid(InvalidInput):
    """A sensitive word that is empty after normalisation, or too long."""

    code = "word_invalid"
    default_message = "The word is empty after normalisation or longer than 64 characters."


class WordNotFound(NotFound):
    """No entry of the sensitive-word list has this id."""

    code = "word_not_found"
    default_message = "The word is not on the list."


class NotAParticipant(PermissionDenied):
    """The actor takes no part in this room in that room role (or its join token is for another
    room, or its account is deactivated). Raised by the one access policy (``consult.access``)
    and by :func:`consult.rooms.authenticate_join` only."""

    code = "not_a_participant"
    default_message = "You are not a participant of this room."


class InvitationNotFound(NotFound):
    """No invitation has this link (or the link is malformed)."""

    code = "invitation_not_found"
    default_message = "This invitation link does not exist."


class InvitationUsed(Conflict):
    """The single-use invitation link was used already."""

    code = "invitation_used"
    default_message = "This invitation link has been used already."


class InvitationExpired(Conflict):
    """The invitation link is past its time, or its room has closed."""

    code = "invitation_expired"
    default_message = "This invitation link has expired."


# --- Ratings (issue 12: R40) --------------------------------------------------------------------


class VisitNotFinished(RuleRefused):
    """R40: only a finished service is rated (ended, or referred after the doctor saw the
    patient)."""

    code = "visit_not_finished"
    default_message = "Only a finished visit can be rated."


class RatingWindowClosed(RuleRefused):
    """R40: past the time allowed (rate within 15 days of the end; edit and reply within 30
    days of the rating)."""

    code = "rating_window_closed"
    default_message = "The time allowed for this has passed."


class AlreadyRated(Conflict):
    """The visit has its rating; it may be edited once instead."""

    code = "already_rated"
    default_message = "This visit has been rated already."


class RatingEditUsed(Conflict):
    """R40: a rating is edited at most once."""

    code = "rating_edit_used"
    default_message = "The rating has been edited once already."


class RatingAlreadyReplied(Conflict):
    """R40: the doctor replies to a rating once."""

    code = "rating_already_replied"
    default_message = "The doctor has replied to this rating already."


class RatingNotFound(NotFound):
    """The visit has no rating (yet)."""

    code = "rating_not_found"
    default_message = "This visit has no rating."


class RatingStarsInvalid(InvalidInput):
    """Stars are a whole number from 1 to 5."""

    code = "rating_stars_invalid"
    default_message = "Give 1 to 5 stars."


class RatingTextInvalid(InvalidInput):
    """A comment or reply that is too long, blank where needed, or holds control characters."""

    code = "rating_text_invalid"
    default_message = (
        "The text is too long (500 characters at most) or holds characters that cannot be kept."
    )
