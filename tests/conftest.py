"""Fixtures shared by the suites: loopback-only ICE and a running server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Server, start_server

import consult.passwords
from media import _aiortc_seam

#: Real Argon2id at minimal cost. The production profile (64 MiB, t=3, p=4) costs ~0.2 s a hash
#: on a busy 2-core machine, and every test world hashes and verifies dozens of passwords.
CHEAP_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

#: The suites whose tests hold calls (aiortc peers, Chromium pages, recordings, media workers):
#: one pytest-xdist worker runs them one after another, so two calls never share the 2 cores,
#: while the other worker takes the database, API and imaging tests, a file at a time, beside
#: them. (xdist's own ``--dist loadgroup`` renames node ids, which pytest 9.2 ignores.)
CALL_SUITES = frozenset({"browser", "media", "recording", "signaling"})
#: Browser tests that assert no timing of media (what axe-core finds on each page, where a
#: decline's reminder lands) go beside the calls, each file a scope of its own: the calls worker
#: was the run's long pole (1,620 s of tests against the other worker's 1,260 s, at load 10-20).
NOT_TIMED = frozenset(
    {
        "tests/browser/test_accessibility_browser.py",
        "tests/browser/test_reminders_browser.py",
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class CallsOnOneWorker(LoadScopeScheduling):
        """xdist's scope scheduling: the call suites one scope (the largest, so it is handed
        out first), every other test file a scope of its own."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            parts = path.split("/")
            if (
                len(parts) > 2
                and parts[0] == "tests"
                and parts[1] in CALL_SUITES
                and path not in NOT_TIMED
            ):
                return "calls"
            return path

    return CallsOnOneWorker(config, log)


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    """Test peers (ours and the server's, in this process) gather on 127.0.0.1 only."""
    _aiortc_seam.restrict_host_addresses(["127.0.0.1"])


@pytest.fixture(autouse=True)
def cheap_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords hashed by the servers in this process at minimal cost, unless the test is
    marked ``production_argon2`` (where the hash's strength is the point)."""
    if request.node.get_closest_marker("production_argon2") is None:
        monkeypatch.setattr(consult.passwords, "_hasher", CHEAP_ARGON2)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path)
    yield srv
    await srv.stop()
