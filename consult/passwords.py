"""Password hashing with Argon2id (argon2-cffi defaults, RFC 9106 low-memory profile).

Hashing and verifying take tens of milliseconds of CPU on purpose: from async code call them through
``asyncio.to_thread`` so the event loop keeps running.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError

_hasher = PasswordHasher()


def hash_password(plain: str) -> str:
    """Return an encoded Argon2id hash (``$argon2id$...``) of ``plain``, with a random salt."""
    return _hasher.hash(plain)


def verify_password(hash: str, plain: str) -> bool:
    """Return whether ``plain`` matches ``hash``.

    Never raises on a wrong password or on a garbled, truncated or non-string hash: all of these
    are simply ``False``. (``hash`` shadows the builtin because the name is the public API.)
    """
    if not isinstance(hash, str) or not isinstance(plain, str):
        return False
    try:
        return _hasher.verify(hash, plain)
    except (Argon2Error, InvalidHashError):
        return False
