"""TOTP second factor (RFC 6238, pyotp): codes of 6 digits, 30-second steps, one step of drift.

A code is accepted at most once: the caller stores the step it matched and passes it back as
``last_step``, so a code seen over someone's shoulder cannot be replayed within its window.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final

import pyotp

DIGITS: Final = 6
INTERVAL_S: Final = 30
DRIFT_STEPS: Final = 1


def new_secret() -> str:
    """A fresh random base32 secret (160 bits)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def next_usable_step(now: float, last_step: int, *, margin_s: float = 5.0) -> int | None:
    """The earliest step a code made at ``now`` (Unix seconds) is accepted for after
    ``last_step``, or ``None`` while every step of the window is spent. A step before the
    current one only while ``margin_s`` remain before it leaves the window. (For clients that
    sign one account in several times in a row: tests, scripts.)"""
    current = int(now // INTERVAL_S)
    earliest = current - DRIFT_STEPS if now % INTERVAL_S < INTERVAL_S - margin_s else current
    step = max(earliest, last_step + 1)
    return step if step <= current + DRIFT_STEPS else None


def code_for_step(secret: str, step: int) -> str:
    """The code of time step ``step``."""
    return pyotp.TOTP(secret).generate_otp(step)


def code_at(secret: str, moment: datetime) -> str:
    """The code valid at ``moment`` (for tests and enrolment checks)."""
    return pyotp.TOTP(secret).at(moment)


def matching_step(
    secret: str, code: str | None, moment: datetime, *, last_step: int | None
) -> int | None:
    """The time step ``code`` belongs to (within one step of ``moment``), or ``None``.

    ``None`` also when the step is not after ``last_step`` (a replay) or the code is malformed.
    """
    if not isinstance(code, str):
        return None
    code = code.strip()
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(moment)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None
