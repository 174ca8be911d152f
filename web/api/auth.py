"""Authentication (bearer session tokens) and the permission check, both decided by consult.

The consult room's chat routes (``ROOM_TOKEN_ACTIONS``) also take the room's join token as the
bearer: the room page has only the join token of its link, no session. Such an actor is bound to
the token's room (``Actor.room_id``) and may do nothing else.
"""

from __future__ import annotations

from consult.accounts import authenticate as consult_authenticate
from consult.authorization import authorize as consult_authorize
from consult.permissions import ROOM_TOKEN_ACTIONS
from consult.rooms import authenticate_join

from .call import Call
from .errors import unauthenticated


async def authenticate(call: Call, action: str | None = None) -> None:
    """Set ``call.actor`` from the bearer token, or refuse with 401."""
    token = call.bearer
    if token is None:
        raise unauthenticated("Send Authorization: Bearer <token> (POST /api/v1/session).")
    if action in ROOM_TOKEN_ACTIONS and token.count(".") == 2:  # a JWT: a room's join token
        # the room's participant, account active, the issuing session alive
        call.actor = await authenticate_join(
            call.db, call.config.secret(), token, source_ip=call.source_ip
        )
        return
    call.actor = await consult_authenticate(call.db, token, call.source_ip)


async def authorize(call: Call, action: str) -> None:
    """Check ``action`` against the permission table; a refusal is audited by consult (403)."""
    await consult_authorize(call.db, call.me, action)
