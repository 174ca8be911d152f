"""Fixtures for the imaging tests: two institutions, their people, a visit, test DICOM data.

All DICOM data comes from wheels already installed (pydicom's test files, pydicom-data); nothing
is downloaded. Series are synthesised from them (new UIDs per instance, same pixels).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import start_server
from imaging_world import World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    server = await start_server(tmp_path)
    w = await make_world(server)
    try:
        yield w
    finally:
        await w.clinic.close()
        await server.stop()
