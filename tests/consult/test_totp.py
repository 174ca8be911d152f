"""TOTP steps: what the server accepts (matching_step) and what a client may still use
(next_usable_step) agree, so a client signing one account in several times never replays a step
and never waits while the window has one left."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp

from consult.totp import INTERVAL_S, code_for_step, matching_step, next_usable_step

SECRET = pyotp.random_base32()


def _accepted(step: int, now: float, last_step: int) -> bool:
    moment = datetime.fromtimestamp(now, UTC)
    return matching_step(SECRET, code_for_step(SECRET, step), moment, last_step=last_step) == step


def test_three_sign_ins_in_one_step_without_waiting_each_accepted_once() -> None:
    start = 1_000 * INTERVAL_S + 3.0  # 3 s into a step
    last = -1
    for _ in range(3):
        step = next_usable_step(start, last)
        assert step is not None and _accepted(step, start, last)
        last = step
    assert next_usable_step(start, last) is None  # the window is spent
    assert not _accepted(last, start, last)  # and the last code is not accepted twice


def test_the_previous_step_is_not_offered_just_before_it_leaves_the_window() -> None:
    late = 1_000 * INTERVAL_S + INTERVAL_S - 2.0  # 2 s before the next step
    step = next_usable_step(late, -1)
    assert step == 1_000  # the current step, not 999
    # a code for it still holds if it reaches the server in the next step
    assert _accepted(step, late + 3.0, -1)
