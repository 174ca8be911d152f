"""Authentication (bearer session tokens) and the permission check, both decided by consult.

The consult room's chat routes (``ROOM_TOKEN_ACTIONS``) also take the room's join token as the
bearer: the room page has only the join token of its link, no session. Such an actor is bound to
the token's visit (``Actor.room_visit_id``) and may do nothing else.
"""

from __future__ import annotations

from consult.accounts import authenticate as consult_authenticate
from consult.actor import Actor
from consult.audit import authorize as consult_authorize
from consult.permissions import ROOM_TOKEN_ACTIONS, Role
from consult.tokens import verify_join_token
from consult.visits import resolve_participant

from .call import Call
from .errors import unauthenticated


async def authenticate(call: Call, action: str | None = None) -> None:
    """Set ``call.actor`` from the bearer token, or refuse with 401."""
    token = call.bearer
    if token is None:
        raise unauthenticated("Send Authorization: Bearer <token> (POST /api/v1/session).")
    if action in ROOM_TOKEN_ACTIONS and token.count(".") == 2:  # a JWT: a room's join token
        claims = verify_join_token(call.config.secret(), token)
        await resolve_participant(call.db, claims)  # the visit's participant, account active
        call.actor = Actor(
            user_id=claims.user_id,
            role=Role(claims.role),
            source_ip=call.source_ip,
            room_visit_id=claims.visit_id,
        )
        return
    call.actor = await consult_authenticate(call.db, token, call.source_ip)


async def authorize(call: Call, action: str) -> None:
    """Check ``action`` against the permission table; a refusal is audited by consult (403)."""
    await consult_authorize(call.db, call.me, action)
