"""With media worker processes: when the process carrying the room dies, both pages join again
by themselves and see each other again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_room_browser import FIRST_FRAME_LIMIT_S, _wait_joined, _wait_remote_video

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"TELECONSULT_MEDIA_WORKERS": "2"}


def _media_workers(ns: str) -> list[int]:
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"web.media_worker" in f.read():  # media workers with the recording tap
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_pages_rejoin_when_the_media_worker_dies(
    teleconsult_server: Any, open_room: Callable[[str, str], Any]
) -> None:
    server = teleconsult_server
    rooms = {role: open_room(role, server.links[role]) for role in ("doctor", "patient")}
    for room in rooms.values():
        _wait_joined(room)
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S + 1.0
    for room in rooms.values():
        _wait_remote_video(room, deadline)
    workers = _media_workers(server.ns)
    assert len(workers) == 2, workers
    for room in rooms.values():
        room.page.evaluate("() => { window.__old = window.__tc.pcs.subscribe; }")

    for pid in workers:  # the room is on one of them
        os.kill(pid, signal.SIGKILL)

    for room in rooms.values():
        room.page.wait_for_function(
            "() => window.__tc.state === 'joined' && window.__tc.pcs.subscribe"
            " && window.__tc.pcs.subscribe !== window.__old",
            timeout=20_000,
        )
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S + 5.0
    for room in rooms.values():
        sample = _wait_remote_video(room, deadline)
        assert sample["trackState"] == "live", sample
        assert "media_worker_failed" in "\n".join(room.logs)
    assert sorted(_media_workers(server.ns)) != sorted(workers)  # replacements are running
