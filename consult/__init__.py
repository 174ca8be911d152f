"""The consult domain: people, institutions and visits, who may join what, and the database.

``consult`` imports nothing from ``media``, ``signaling``, ``web`` or ``recording``.
"""

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
from consult.tokens import ROLES, JoinClaims, issue_join_token, verify_join_token
from consult.visits import (
    DemoVisit,
    Identity,
    create_demo_visit,
    get_visit,
    resolve_participant,
)

__all__ = [
    "ROLES",
    "Base",
    "ConsultError",
    "Database",
    "DemoVisit",
    "Department",
    "Identity",
    "Institution",
    "InstitutionLevel",
    "JoinClaims",
    "NotAParticipant",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "User",
    "UserKind",
    "Visit",
    "VisitMode",
    "VisitNotFound",
    "create_demo_visit",
    "get_visit",
    "hash_password",
    "issue_join_token",
    "resolve_participant",
    "verify_join_token",
    "verify_password",
]
