"""A real call for the packet fuzz targets, shared by the examples of one test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from targets import Call, start_call


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = await start_call()
    yield c
    await c.close()
