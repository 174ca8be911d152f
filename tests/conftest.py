"""Fixtures shared by the suites: loopback-only ICE and a running server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Server, start_server

from media import _aiortc_seam


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    """Test peers (ours and the server's, in this process) gather on 127.0.0.1 only."""
    _aiortc_seam.restrict_host_addresses(["127.0.0.1"])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path)
    yield srv
    await srv.stop()
