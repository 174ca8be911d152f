"""Time-limited TURN credentials (the "TURN REST API" scheme coturn checks with use-auth-secret).

The username is ``<expiry unix time>:<id>`` and the password is base64(HMAC-SHA1(secret,
username)). coturn recomputes the password from its ``static-auth-secret`` and refuses a username
whose expiry has passed (401), so the server never stores or sends coturn a per-user password.
The id is an opaque participant id, never a name or a phone number (it shows in coturn's log).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

#: What an id may hold: coturn splits the username at the first ':'; keep ids plain.
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
#: The shortest secret accepted: coturn's HMAC key, shared by every node and the TURN servers.
MIN_SECRET_BYTES = 32


class CredentialError(ValueError):
    """A credential cannot be minted from these values."""


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int  # unix time


def mint_credential(
    secret: str, user_id: str, ttl_s: int, *, now: float | None = None
) -> TurnCredential:
    """A credential for ``user_id`` that coturn accepts until ``now + ttl_s``."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise CredentialError(f"the TURN secret must be at least {MIN_SECRET_BYTES} bytes")
    if not _ID.fullmatch(user_id):
        raise CredentialError("the TURN user id must be 1-128 characters of A-Z a-z 0-9 _ . -")
    if ttl_s <= 0:
        raise CredentialError("the TURN credential lifetime must be positive")
    expires_at = int(time.time() if now is None else now) + int(ttl_s)
    username = f"{expires_at}:{user_id}"
    return TurnCredential(username, turn_password(secret, username), expires_at)


def turn_password(secret: str, username: str) -> str:
    """The password coturn derives for ``username`` from its static-auth-secret."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
