"""The datagram guard takes everything an honest browser sends (issue 10).

Chromium sends its first DTLS flight as soon as one of its own connectivity checks succeeds:
before the server's check of that pair has, and on a subscribe connection before the server has
even applied the answer. Measured: a guard that trusted only pairs whose checks had succeeded
dropped that flight on every subscribe connection (a DTLS retransmission timeout on every join).
The guard also trusts an address that sent a check signed with the server's ICE password.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

TIMEOUT_MS = 15_000


def test_an_honest_browser_call_drops_no_datagram(
    teleconsult_server: Server, open_room: Callable[[str, str], RoomPage]
) -> None:
    server = teleconsult_server
    rooms = [open_room(role, server.links[role]) for role in ("doctor", "patient")]
    for room in rooms:
        room.page.wait_for_function(
            "() => window.__tc && Object.keys(window.__tc.timings.firstFrame || {}).length > 0",
            timeout=TIMEOUT_MS,
        )
    logs = "".join(
        p.read_text(errors="replace")
        for p in (server.stdout_path, server.stderr_path)
        if p.exists()
    )
    assert "hostile or broken datagram" not in logs, server.log_tail()
