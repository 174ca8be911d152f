"""Authentication (bearer session tokens) and the permission check, both decided by consult."""

from __future__ import annotations

from consult.accounts import authenticate as consult_authenticate
from consult.audit import authorize as consult_authorize

from .call import Call
from .errors import unauthenticated


async def authenticate(call: Call) -> None:
    """Set ``call.actor`` from the bearer token, or refuse with 401."""
    token = call.bearer
    if token is None:
        raise unauthenticated("Send Authorization: Bearer <token> (POST /api/v1/session).")
    call.actor = await consult_authenticate(call.db, token, call.source_ip)


async def authorize(call: Call, action: str) -> None:
    """Check ``action`` against the permission table; a refusal is audited by consult (403)."""
    await consult_authorize(call.db, call.me, action)
