"""Roles and the one permission table (R34): action -> roles allowed to attempt it.

Every REST route and every socket event names one action of :data:`PERMISSIONS`. The table says
which roles may *attempt* an action; ownership and scope (a doctor's own visits, an operator's
departments, a patient's own records) are checked by the service on the object itself. A refusal
is an audit event: use :func:`consult.authorization.authorize` (records it) rather than
:func:`require` alone at a boundary.

Least privilege, as R34 and GB/T 22239 level 3 ask: ``admin`` manages accounts and the
organisation and sees no clinical data; ``auditor`` reads the audit chain and quality reports;
``regulator`` uses the export interface only; ``operator`` acts within its departments.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from consult.errors import PermissionDenied, TotpEnrolmentRequired

if TYPE_CHECKING:
    from consult.actor import Actor


class Role(StrEnum):
    """One role per account (R34)."""

    PATIENT = "patient"
    DOCTOR = "doctor"
    NURSE = "nurse"
    OPERATOR = "operator"
    ADMIN = "admin"
    AUDITOR = "auditor"
    REGULATOR = "regulator"


STAFF_ROLES: Final = frozenset(Role) - {Role.PATIENT}
"""Roles for which a confirmed TOTP second factor is mandatory (R33)."""

PAT, DOC, NUR, OPR, ADM, AUD, REG = (
    Role.PATIENT,
    Role.DOCTOR,
    Role.NURSE,
    Role.OPERATOR,
    Role.ADMIN,
    Role.AUDITOR,
    Role.REGULATOR,
)
_EVERYONE: Final = frozenset(Role)
_CARE: Final = frozenset({PAT, DOC, NUR, OPR})
"""Roles that take part in care; ``admin``, ``auditor`` and ``regulator`` do not."""


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


PERMISSIONS: Final[Mapping[str, frozenset[Role]]] = {
    # Own session and credentials.
    "session.view": _EVERYONE,
    "session.sign_out": _EVERYONE,
    "account.change_password": _EVERYONE,
    "account.enrol_totp": _EVERYONE,
    "account.confirm_totp": _EVERYONE,
    # Account administration (R34: admin manages accounts, nothing clinical).
    "account.create": _roles(ADM),
    "account.list": _roles(ADM),
    "account.view": _roles(ADM),
    "account.update": _roles(ADM),
    "account.deactivate": _roles(ADM),
    "account.unlock": _roles(ADM),
    "account.reset_password": _roles(ADM),
    "account.reset_totp": _roles(ADM),
    # Organisation.
    "institution.create": _roles(ADM),
    "institution.list": _roles(PAT, DOC, NUR, OPR, ADM),
    "department.create": _roles(ADM),
    "department.list": _roles(PAT, DOC, NUR, OPR, ADM),
    # Practitioners (R9, R35). Operators within their departments.
    "practitioner.create": _roles(ADM, OPR),
    "practitioner.verify": _roles(ADM, OPR),
    "practitioner.list": _roles(PAT, DOC, NUR, OPR, ADM),
    "practitioner.view": _roles(PAT, DOC, NUR, OPR, ADM),
    "practitioner.set_pin": _roles(DOC),
    "practitioner.check_pin": _roles(DOC),
    "practitioner.go_online": _roles(DOC),
    "schedule.create_slot": _roles(DOC, OPR),
    "schedule.delete_slot": _roles(DOC, OPR),
    "schedule.view": _CARE,
    # Patients: clinical data (R36, R37).
    "patient.register": _roles(PAT, NUR, OPR),
    "patient.view": _CARE,
    "patient.find": _roles(NUR, OPR),
    "patient.create_account": _roles(NUR, OPR),
    # Identity registration (issue 13 item 3): staff at the desk, documents in hand.
    "patient.verify_guardian": _roles(NUR, OPR),
    "patient.resolve_identity": _roles(NUR, OPR),
    "patient.record_diagnosis": _roles(DOC, NUR, OPR),
    "patient.view_diagnoses": _CARE,
    # Visits (R1-R8).
    "visit.book": _roles(PAT, NUR, OPR),
    "visit.view": _CARE,
    "visit.list": _CARE,
    "visit.cancel": _roles(PAT, NUR, OPR),
    "visit.check_in": _roles(PAT, NUR),
    "visit.admit": _roles(DOC),
    "visit.send_back": _roles(DOC),
    "visit.end": _roles(DOC),
    "visit.refer": _roles(DOC),
    "visit.acknowledge_refusal": _roles(PAT),
    "queue.view": _roles(DOC, NUR, OPR),
    "consent.view_text": _CARE,
    "consent.sign": _roles(PAT),
    "consent.view": _CARE,
    "visit.history": _roles(PAT),  # one's own visits with their rating state (R40)
    # Rating a finished visit (R40): its patient side rates and edits once, its doctor replies;
    # the relationship (which side of the visit) is in consult.access.VISIT_SIDE_ACTIONS.
    "rating.submit": _roles(PAT),
    "rating.edit": _roles(PAT),
    "rating.view": _CARE,
    "rating.reply": _roles(DOC),
    "rating.list": _roles(DOC),  # a doctor's own visits' ratings, to reply to
    # The room: socket events (see SOCKET_EVENT_ACTIONS).
    "room.join": _roles(DOC, PAT),
    "room.publish": _roles(DOC, PAT),
    "room.subscribe": _roles(DOC, PAT),
    "room.signal": _roles(DOC, PAT),
    "room.mute": _roles(DOC, PAT),
    "room.leave": _roles(DOC, PAT),
    "room.chat": _roles(DOC, PAT),
    "room.viewer_sync": _roles(DOC),  # presenting in a review (signaling/review.py)
    "room.review": _roles(DOC, PAT),  # following a review: the room's shared viewer
    "room.control": _roles(DOC),
    "room.invite": _roles(DOC),
    "room.admit": _roles(DOC),
    "room.redeem": _roles(PAT),
    "room.view": _roles(DOC, PAT),
    # Chat over REST (issue 6): the room's doctor and patient (ownership checked in consult.chat).
    "chat.read": _roles(DOC, PAT),
    "chat.upload_image": _roles(DOC, PAT),
    "chat.view_image": _roles(DOC, PAT),
    "chat.export": _roles(DOC, PAT),
    # Imaging (issue 15, R19-R21, R37); relationships in consult.imaging.access.
    "imaging.store": _roles(DOC, NUR, OPR),
    "imaging.read": _roles(PAT, DOC, NUR, OPR),
    "imaging.share": _roles(DOC),
    # The media server's own figures (no clinical data): datagrams dropped at its ICE ports.
    "media.view_stats": _roles(ADM, OPR),
    # Remote consultation between institutions (issue 14, R10-R16); the sides (requester, the
    # requesting department, the two consult centres, invited experts) in consult.access.
    "agreement.create": _roles(ADM),
    "agreement.list": _roles(ADM, OPR, DOC),
    "centre.set": _roles(ADM),
    "consultation.create": _roles(DOC),
    "consultation.update": _roles(DOC),
    "consultation.attach": _roles(DOC),
    "consultation.view": _roles(DOC, OPR),
    "consultation.list": _roles(DOC, OPR),
    "consultation.mine": _roles(PAT),  # one's own consultations, minimal fields (R37)
    "consultation.submit": _roles(DOC),
    "consultation.return": _roles(OPR),
    "consultation.approve": _roles(OPR),
    "consultation.decline": _roles(OPR),
    "consultation.schedule": _roles(DOC, OPR),
    "consultation.start": _roles(DOC),
    "consultation.join": _roles(DOC, PAT),
    "consultation.host": _roles(DOC),
    "consultation.decide": _roles(DOC),
    "consultation.cancel": _roles(DOC, OPR),
    "consultation.assign": _roles(OPR),
    "invitation.accept": _roles(DOC),
    "invitation.decline": _roles(DOC),
    "invitation.withdraw": _roles(OPR),
    "opinion.write": _roles(DOC),
    "opinion.sign": _roles(DOC),
    "opinion.issue": _roles(DOC),
    "opinion.supersede": _roles(DOC),
    "opinion.view": _roles(DOC, OPR),
    # After the report (R17, R18): referral, report interpretation; relationships in the services.
    "referral.create": _roles(DOC),
    "referral.accept": _roles(OPR),
    "referral.decline": _roles(OPR),
    "referral.cancel": _roles(DOC),
    "referral.list": _roles(DOC, OPR),
    "referral.mine": _roles(PAT),  # one's own referrals (R37)
    "interpretation.ask": _roles(PAT, DOC),
    "interpretation.assign": _roles(OPR),
    "interpretation.answer": _roles(DOC),
    "interpretation.schedule": _roles(DOC),
    "interpretation.cancel": _roles(PAT, DOC),
    "interpretation.join": _roles(PAT, DOC),
    "interpretation.list": _roles(DOC, OPR),
    "interpretation.mine": _roles(PAT),  # one's own requests and answers (R37)
    # One's own reminders (issue 14, R11): invitations to answer, sessions about to start,
    # answers of invitations; ids and moments only.
    "reminder.list": _CARE,
    "reminder.read": _CARE,
    # The sensitive-word list (R38), kept by operators.
    "words.manage": _roles(OPR),
    # Network providers' health (R28, R31): who runs the service.
    "system.providers": _roles(OPR, ADM),
    # Audit, reports, export (R22, R25).
    "audit.view": _roles(AUD),
    "audit.verify": _roles(AUD),
    "report.view": _roles(AUD, OPR),
    "report.satisfaction": _roles(DOC, OPR),  # R41: a doctor's own figure, an operator's doctors
    "export.visits": _roles(REG),
    "export.audit": _roles(REG),
    "export.recordings": _roles(REG),
}
"""The permission table: action -> roles that may attempt it. Nothing outside it is allowed."""

SOCKET_EVENT_ACTIONS: Final[Mapping[str, str]] = {
    "join": "room.join",
    "publish": "room.publish",
    "subscribe": "room.subscribe",
    "subscribe_answer": "room.signal",
    "ice_candidate": "room.signal",
    "mute": "room.mute",
    "restart_media": "room.publish",
    "leave": "room.leave",
    "chat": "room.chat",
    "chat_history": "room.chat",
    "chat_retract": "room.chat",
    "viewer_sync": "room.viewer_sync",
    "review_join": "room.review",
    "review_leave": "room.review",
    "review_share": "room.viewer_sync",
    "review_view": "room.viewer_sync",
    "review_annotations": "room.viewer_sync",
    "review_handover": "room.viewer_sync",
    "review_stop": "room.viewer_sync",
    "review_save": "room.viewer_sync",  # the presenter's measurements into the study
    "control": "room.control",
}
"""Socket.io event name -> action, for signaling's per-event check."""

ENROLMENT_ACTIONS: Final = frozenset(
    {"session.view", "session.sign_out", "account.enrol_totp", "account.confirm_totp"}
)
"""All that a staff session without a confirmed TOTP secret may do (R33)."""

CLINICAL_PREFIXES: Final = (
    "patient.",
    "visit.",
    "queue.",
    "consent.",
    "room.",
    "chat.",
    "imaging.",
    "consultation.",
    "invitation.",
    "opinion.",
    "referral.",
    "interpretation.",
    "rating.",
)
"""Actions that touch clinical data: never granted to admin, auditor or regulator."""

ROOM_TOKEN_ACTIONS: Final = frozenset(
    {
        "chat.read",
        "chat.upload_image",
        "chat.view_image",
        "chat.export",
        "imaging.read",
        "imaging.store",
    }
)
"""All that a room's join token may do over REST (in its own room only): the room page has no
session of its own, only the join token of its link. ``imaging.read``: the room's viewer reads the
studies attached to the room's visit (``consult.imaging.access.related``); ``imaging.store``: the
doctor of a visit's room uploads into that visit from the viewer (``access.room_upload_visit``)."""

JOIN_TOKEN_ACTIONS: Final = ROOM_TOKEN_ACTIONS | frozenset(SOCKET_EVENT_ACTIONS.values())
"""All that a join token's actor may attempt: its room's socket events and chat routes."""


def allowed_roles(action: str) -> frozenset[Role]:
    """The roles the table allows for ``action``; ``ValueError`` for an action not in it.

    An unknown action is a programming error (a route naming an action nobody added), so it
    fails loudly instead of quietly refusing.
    """
    try:
        return PERMISSIONS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}: add it to consult.permissions") from None


def is_allowed(actor: Actor, action: str) -> bool:
    """Whether the table lets ``actor`` attempt ``action`` (ownership is checked elsewhere)."""
    roles = allowed_roles(action)
    if actor.enrolment_only and action not in ENROLMENT_ACTIONS:
        return False
    if actor.room_id is not None and action not in JOIN_TOKEN_ACTIONS:
        return False
    return actor.role in roles


def require(actor: Actor, action: str) -> None:
    """Raise unless the table lets ``actor`` attempt ``action``.

    Raises :class:`TotpEnrolmentRequired` (code ``totp_enrolment_required``) for a staff session
    that must enrol TOTP first, :class:`PermissionDenied` (code ``forbidden``) otherwise. Records
    nothing: :func:`consult.authorization.authorize` is the variant that audits the refusal.
    """
    roles = allowed_roles(action)
    if actor.enrolment_only and action not in ENROLMENT_ACTIONS:
        raise TotpEnrolmentRequired()
    if actor.room_id is not None and action not in JOIN_TOKEN_ACTIONS:
        raise PermissionDenied("A room link can only be used in the room.")
    if actor.role not in roles:
        raise PermissionDenied()


def in_scope(actor: Actor, *, institution_id: str | None, department_id: str | None) -> bool:
    """Whether an object of this institution and department is within the actor's scope.

    Operators act only on objects of their departments (R34); nurses within their institution.
    Other roles are not scoped here (their services check ownership instead).
    """
    if actor.role is Role.OPERATOR:
        return department_id is not None and department_id in actor.department_ids
    if actor.role is Role.NURSE:
        return institution_id is not None and institution_id == actor.institution_id
    return True
