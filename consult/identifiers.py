"""Resident ID numbers (GB 11643-1999) and mainland mobile numbers: validation, normalising.

These functions never log their input: the values are personal data (R37).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

from consult.errors import InvalidIdNumber, InvalidPhone

_ID_PATTERN: Final = re.compile(r"^\d{17}[\dX]$")
_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS: Final = "10X98765432"
_PHONE_PATTERN: Final = re.compile(r"^1[3-9]\d{9}$")
_OLDEST_BIRTH_YEAR: Final = 1900


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalize_id_number(value: str, *, today: date | None = None) -> str:
    """The 18-character ID number in canonical form (upper-case ``X``), or :class:`InvalidIdNumber`.

    Checks the format, the check character and that the embedded birth date is a real date
    between 1900 and ``today``.
    """
    if not isinstance(value, str):
        raise InvalidIdNumber()
    candidate = value.strip().upper()
    if not _ID_PATTERN.match(candidate) or id_check_char(candidate[:17]) != candidate[17]:
        raise InvalidIdNumber()
    try:
        birth = birth_date_of(candidate)
    except ValueError:
        raise InvalidIdNumber() from None
    if birth.year < _OLDEST_BIRTH_YEAR or birth > (today or date.today()):
        raise InvalidIdNumber()
    return candidate


def birth_date_of(id_number: str) -> date:
    """The birth date embedded in a (well-formed) ID number; ``ValueError`` if impossible."""
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def normalize_phone(value: str) -> str:
    """An 11-digit mainland mobile number, without spaces, dashes or the +86 prefix.

    Raises :class:`InvalidPhone` for anything else.
    """
    if not isinstance(value, str):
        raise InvalidPhone()
    digits = re.sub(r"[\s-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not _PHONE_PATTERN.match(digits):
        raise InvalidPhone()
    return digits


def age_on(birth: date, day: date) -> int:
    """Age in whole years on ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def mask_id_number(id_number: str) -> str:
    """``110105********002X``: enough to recognise, not to reuse (R37)."""
    return id_number[:6] + "*" * 8 + id_number[14:]


def mask_phone(phone: str) -> str:
    """``138****8000``."""
    return phone[:3] + "****" + phone[7:]
