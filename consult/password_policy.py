"""The password policy (R33): at least 10 characters from 3 of 4 classes, and not guessable.

Guessable means a zxcvbn score under 3: zxcvbn (the maintained Python port of Dropbox's
estimator) knows the common-password lists, keyboard walks (``Qwerty123456``), l33t spellings
(``P@ssw0rd2024``), repeats (ten spaces + ``aA1``), dates and sequences, and the username and
display name passed as user inputs. Classes alone let all of those through (issue 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from zxcvbn import zxcvbn

from consult.errors import WeakPassword

MIN_CHARS: Final = 10
MAX_CHARS: Final = 256
MIN_CLASSES: Final = 3
MIN_SCORE: Final = 3
"""zxcvbn's 0-4 scale; 3 is "safely unguessable: moderate protection from offline attack"."""
SCORED_CHARS: Final = 100
"""zxcvbn's matching grows with length; a longer password is scored on its first 100 characters."""


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digits and other characters ``password`` uses.

    Letters without case (Chinese characters, for instance) count as "other".
    """
    lower = any(ch.islower() for ch in password)
    upper = any(ch.isupper() for ch in password)
    digit = any(ch.isdigit() for ch in password)
    other = any(not (ch.islower() or ch.isupper() or ch.isdigit()) for ch in password)
    return lower + upper + digit + other


def guess_score(password: str, user_inputs: Sequence[str] = ()) -> int:
    """zxcvbn's score (0-4) of ``password``, with the account's own words as ``user_inputs``."""
    inputs = [word for word in user_inputs if isinstance(word, str) and word]
    return int(zxcvbn(password[:SCORED_CHARS], user_inputs=inputs)["score"])


def check_password(
    password: str, *, username: str | None = None, user_inputs: Sequence[str] = ()
) -> None:
    """Raise :class:`WeakPassword` unless ``password`` meets the policy.

    Also refused: more than 256 characters (hashing cost), a password containing the username,
    and a guessable one (:func:`guess_score` under :data:`MIN_SCORE`).
    """
    if not isinstance(password, str):
        raise WeakPassword()
    if not MIN_CHARS <= len(password) <= MAX_CHARS:
        raise WeakPassword()
    if character_classes(password) < MIN_CLASSES:
        raise WeakPassword()
    if username and len(username) >= 3 and username.casefold() in password.casefold():
        raise WeakPassword("The password must not contain the username.")
    if guess_score(password, [*(user_inputs or ()), username or ""]) < MIN_SCORE:
        raise WeakPassword("The password is too easy to guess (a common word, pattern or walk).")
