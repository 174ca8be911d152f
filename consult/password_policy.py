"""The password policy (R33): at least 10 characters from 3 of 4 classes."""

from __future__ import annotations

from typing import Final

from consult.errors import WeakPassword

MIN_CHARS: Final = 10
MAX_CHARS: Final = 256
MIN_CLASSES: Final = 3


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digits and other characters ``password`` uses.

    Letters without case (Chinese characters, for instance) count as "other".
    """
    lower = any(ch.islower() for ch in password)
    upper = any(ch.isupper() for ch in password)
    digit = any(ch.isdigit() for ch in password)
    other = any(not (ch.islower() or ch.isupper() or ch.isdigit()) for ch in password)
    return lower + upper + digit + other


def check_password(password: str, *, username: str | None = None) -> None:
    """Raise :class:`WeakPassword` unless ``password`` meets the policy.

    Also refused: more than 256 characters (hashing cost), and a password containing the
    username.
    """
    if not isinstance(password, str):
        raise WeakPassword()
    if not MIN_CHARS <= len(password) <= MAX_CHARS:
        raise WeakPassword()
    if character_classes(password) < MIN_CLASSES:
        raise WeakPassword()
    if username and len(username) >= 3 and username.casefold() in password.casefold():
        raise WeakPassword("The password must not contain the username.")
