"""Join tokens: signed, expiring JWTs (HS256) that admit one user to one room in one room role.

``web/`` issues a token after sign-in (or ``teleconsult demo`` prints one); whoever presents it
(a socket on connect, the room page's chat routes) goes through
:func:`consult.rooms.authenticate_join`, which turns it into the one :class:`~consult.actor.Actor`
after checking that the user takes part in the room and that the session that asked for the
token is still alive (a token dies with its session, and with a password change or deactivation
of its account). :class:`TokenClaims` is what a token says, never who acts: nothing outside
consult sees it. Verification accepts HS256
only and checks every claim's presence and type itself, so a token that PyJWT would tolerate but
we did not issue is refused.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

import jwt

from consult.errors import TokenExpired, TokenInQuery, TokenInvalid, TokenMissing
from consult.models import RoomRole

ROLES: Final = tuple(role.value for role in RoomRole)
"""Room roles a join token may carry."""

AUDIENCE: Final = "teleconsult-join"
ALGORITHM: Final = "HS256"
MAX_TOKEN_CHARS: Final = 4096
MIN_SECRET_BYTES: Final = 32
"""RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output (32 bytes)."""

DEFAULT_TTL_S: Final = 12 * 3600

QUERY_TOKEN_KEYS: Final = frozenset({"token", "access_token"})
"""Query parameters that would carry a bearer: refused everywhere (``token_in_query``). Join
links carry their token in the URL fragment, which never leaves the browser."""

_REQUIRED_CLAIMS: Final = ["sub", "room", "role", "iat", "exp", "jti", "aud"]


@dataclass(frozen=True)
class TokenClaims:
    """The verified content of a join token (what it says; :mod:`consult.rooms` decides)."""

    room_id: str
    user_id: str
    role: str
    expires_at: int
    """Unix time in seconds; the token is refused from this second on."""
    token_id: str
    session_id: str | None = None
    """The signed-in session that asked for the token (claim ``sid``): the token dies with it.
    ``None`` for a token the command line issued (``teleconsult demo``)."""
    credential_stamp: int | None = None
    """The account's password-change time when the token was issued (claim ``cst``, Unix
    microseconds, 0 for never): a password change since refuses the token."""


def issue_join_token(
    secret: str,
    *,
    room_id: str,
    user_id: str,
    role: str,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
    session_id: str | None = None,
    credential_stamp: int | None = None,
) -> str:
    """Sign a join token for ``user_id`` to enter ``room_id`` in the room role ``role``.

    ``session_id`` ties the token to the signed-in session that asked for it (``sid``), and
    ``credential_stamp`` to the account's current password (``cst``, see
    :func:`consult.sessions.credential_stamp`).
    Raises ``ValueError`` for a secret shorter than 32 bytes, an unknown role, empty ids or a
    non-positive ``ttl_s``: these are programming or configuration errors, not client errors.
    """
    _check_secret(secret)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if not room_id or not user_id:
        raise ValueError("room_id and user_id must be non-empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued_at = int(time.time() if now is None else now)
    payload = {
        "sub": user_id,
        "room": room_id,
        "role": role,
        "iat": issued_at,
        "exp": issued_at + ttl_s,
        "jti": secrets.token_hex(16),
        "aud": AUDIENCE,
    }
    if session_id is not None:
        payload["sid"] = session_id
    if credential_stamp is not None:
        payload["cst"] = credential_stamp
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_join_token(secret: str, token: object, *, now: float | None = None) -> TokenClaims:
    """Check a presented join token and return its claims.

    Raises :class:`TokenMissing` for ``None`` or ``""``, :class:`TokenExpired` once ``exp`` is
    reached (no leeway), and :class:`TokenInvalid` for everything else that is wrong: not a string,
    longer than 4096 characters, undecodable, a signature that does not match ``secret``, any
    algorithm but HS256 (including ``none``), a wrong audience, or a missing or ill-typed claim.
    ``now`` (Unix seconds) fixes the clock for tests.
    """
    _check_secret(secret)
    if token is None or token == "":
        raise TokenMissing()
    if not isinstance(token, str):
        raise TokenInvalid("The join token must be a string.")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenInvalid("The join token is too long.")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            # Time claims are checked below against our own clock (``now``), without leeway.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": _REQUIRED_CLAIMS,
            },
        )
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        # ValueError/TypeError: defence in depth against decoder corners on hostile input.
        raise TokenInvalid() from exc
    claims = _claims_from_payload(payload)
    current = time.time() if now is None else now
    if current >= claims.expires_at:
        raise TokenExpired()
    return claims


def check_no_query_token(query_string: str) -> None:
    """Raise :class:`TokenInQuery` when ``query_string`` names a token parameter."""
    if not QUERY_TOKEN_KEYS.isdisjoint(parse_qs(query_string, keep_blank_values=True)):
        raise TokenInQuery()


def _claims_from_payload(payload: dict[str, Any]) -> TokenClaims:
    """Type-check the claims we rely on; PyJWT only checks that they are present."""
    role = _str_claim(payload, "role")
    if role not in ROLES:
        raise TokenInvalid("The join token names an unknown role.")
    _int_claim(payload, "iat")
    session_id = _str_claim(payload, "sid") if "sid" in payload else None
    stamp = _int_claim(payload, "cst") if "cst" in payload else None
    return TokenClaims(
        room_id=_str_claim(payload, "room"),
        user_id=_str_claim(payload, "sub"),
        role=role,
        expires_at=_int_claim(payload, "exp"),
        token_id=_str_claim(payload, "jti"),
        session_id=session_id,
        credential_stamp=stamp,
    )


def _str_claim(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise TokenInvalid(f"The join token's {name!r} claim is missing or malformed.")
    return value


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    # bool is a subclass of int; a boolean time is as malformed as a string one.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenInvalid(f"The join token's {name!r} claim is missing or malformed.")
    return value


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the join-token secret must be at least {MIN_SECRET_BYTES} bytes long")
