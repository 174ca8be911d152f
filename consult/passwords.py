"""Password hashing with Argon2id (argon2-cffi defaults, RFC 9106 low-memory profile).

Hashing and verifying take a fifth of a second of CPU on purpose, over four lanes (threads). From
async code call :func:`hash_async` and :func:`verify_async`: they run on threads of their own at a
lower scheduling priority (nice +10), kept to the upper half of the process's cores (both
inherited by Argon2's lane threads), so a burst of sign-ins cannot take the cores from the event
loop and its database threads, which also carry the calls' media in the one-process setup
(issue 13: 16 sign-in workers moved a healthy client's p99 from 13 to 576 ms). Measured on two
cores beside a loop doing twelve thread hand-offs per request, with one hash always running:
the loop's p99 20 ms with the lanes kept to one core against 33 ms at nice +10 alone (39 ms
without hashing, a busy shared machine), and a quarter more hashes done (the lanes no longer
migrate).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError

_hasher = PasswordHasher()

#: Argon2 runs this much below normal priority (Linux: a thread's niceness, inherited by the
#: threads it starts).
HASHING_NICENESS = 10
#: Hashes computed at once in this process; more wait their turn.
HASHING_THREADS = 2


def hashing_cpus(allowed: set[int]) -> set[int]:
    """The cores Argon2 may use: the upper half of ``allowed`` (at least one), so the lower
    half is the event loop's; all of them when there is only one."""
    ordered = sorted(allowed)
    return set(ordered[len(ordered) // 2 :]) if len(ordered) > 1 else set(ordered)


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed
        me = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + HASHING_NICENESS)
        )
    with contextlib.suppress(OSError, AttributeError):  # 0: this thread (Linux)
        os.sched_setaffinity(0, hashing_cpus(os.sched_getaffinity(0)))


_executor = ThreadPoolExecutor(
    max_workers=HASHING_THREADS, thread_name_prefix="argon2", initializer=_lower_priority
)


async def hash_async(plain: str) -> str:
    """:func:`hash_password` on a low-priority thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor, hash_password, plain)


async def verify_async(hash: str, plain: str) -> bool:
    """:func:`verify_password` on a low-priority thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor, verify_password, hash, plain)


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
