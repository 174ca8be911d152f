"""The consult domain: people, institutions and visits, who may join what, and the database.

``consult`` imports nothing from ``media``, ``signaling``, ``web`` or ``recording``.

Services (each takes the acting :class:`Actor`, checks :mod:`consult.permissions`, records in
:mod:`consult.audit`): :mod:`consult.sessions` and :mod:`consult.accounts` (sign-in, TOTP,
admin), :mod:`consult.organisation`, :mod:`consult.practitioners`, :mod:`consult.schedule`,
:mod:`consult.patients`, :mod:`consult.visit_flow`, :mod:`consult.chat` (with
:mod:`consult.chat_images` and :mod:`consult.sensitive_words`); :mod:`consult.admin_commands` for
the CLI.
"""

import consult.consultations.models
import consult.imaging.models  # noqa: F401  (the imaging tables join Base.metadata)
from consult.actor import Actor
from consult.db import Database
from consult.errors import (
    ConsultError,
    NotAParticipant,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    VisitNotFound,
)
from consult.models import (
    Base,
    Department,
    Institution,
    InstitutionLevel,
    User,
    UserKind,
    Visit,
    VisitMode,
)
from consult.passwords import hash_password, verify_password
from consult.permissions import Role
from consult.rooms import authenticate_join
from consult.tokens import ROLES, issue_join_token, verify_join_token
from consult.visits import DemoVisit, create_demo_visit, get_visit

__all__ = [
    "ROLES",
    "Actor",
    "Base",
    "ConsultError",
    "Database",
    "DemoVisit",
    "Department",
    "Institution",
    "InstitutionLevel",
    "NotAParticipant",
    "Role",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "User",
    "UserKind",
    "Visit",
    "VisitMode",
    "VisitNotFound",
    "authenticate_join",
    "create_demo_visit",
    "get_visit",
    "hash_password",
    "issue_join_token",
    "verify_join_token",
    "verify_password",
]
