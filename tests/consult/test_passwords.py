"""Argon2id password hashes: a right password verifies, anything else is False, never an error."""

from __future__ import annotations

import pytest

from consult.passwords import hash_password, verify_password

# the hasher the product runs, not the suite's cheap one (tests/conftest.py)
pytestmark = pytest.mark.production_argon2


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple 电池")


def test_hash_is_argon2id_salted_and_not_the_password(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # RFC 9106 low-memory profile
    assert "correct horse" not in stored
    assert hash_password("correct horse battery staple 电池") != stored  # a fresh salt each time


def test_right_password_verifies(stored: str) -> None:
    assert verify_password(stored, "correct horse battery staple 电池") is True


@pytest.mark.parametrize("attempt", ["wrong", "", "correct horse battery staple"])
def test_wrong_password_is_false(stored: str, attempt: str) -> None:
    assert verify_password(stored, attempt) is False


@pytest.mark.parametrize(
    "garbled",
    [
        "",
        "not a hash",
        "$argon2id$",
        "$argon2id$v=19$m=65536,t=3,p=4$!!!$???",
        "$2b$12$abcdefghijklmnopqrstuu",  # bcrypt-shaped
    ],
)
def test_garbled_hash_is_false(garbled: str) -> None:
    assert verify_password(garbled, "anything") is False


def test_truncated_hash_is_false(stored: str) -> None:
    assert verify_password(stored[:-10], "correct horse battery staple 电池") is False


def test_non_string_inputs_are_false(stored: str) -> None:
    assert verify_password(None, "x") is False  # type: ignore[arg-type]
    assert verify_password(stored, None) is False  # type: ignore[arg-type]


async def test_r33_hashing_runs_below_the_event_loops_priority(stored: str) -> None:
    """Argon2 runs on threads of its own at nice +10, on the upper half of the process's cores
    (its lane threads inherit both), so a burst of sign-ins leaves the cores to the event loop
    and the calls' media on it."""
    import os
    import threading

    from consult import passwords

    assert await passwords.verify_async(stored, "correct horse battery staple 电池") is True
    assert await passwords.verify_async(stored, "wrong") is False
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hashing = [t for t in threading.enumerate() if t.name.startswith("argon2")]
    assert hashing, [t.name for t in threading.enumerate()]
    for thread in hashing:
        assert thread.native_id is not None
        niceness = os.getpriority(os.PRIO_PROCESS, thread.native_id)
        assert niceness == min(19, base + passwords.HASHING_NICENESS), (thread.name, niceness)
        cores = os.sched_getaffinity(thread.native_id)
        assert cores == passwords.hashing_cpus(os.sched_getaffinity(0)), (thread.name, cores)


def test_hashing_keeps_to_the_upper_half_of_the_cores() -> None:
    from consult.passwords import hashing_cpus

    assert hashing_cpus({0}) == {0}
    assert hashing_cpus({0, 1}) == {1}
    assert hashing_cpus({0, 1, 2}) == {1, 2}
    assert hashing_cpus({2, 3, 6, 7}) == {6, 7}
