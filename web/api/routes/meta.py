"""Liveness: no token, no database."""

from __future__ import annotations

from typing import Literal

from ..call import Call
from ..fields import Output
from ..registry import api


class Health(Output):
    status: Literal["ok"]


@api.operation("GET", "/health", action=None, tag="meta")
async def health(call: Call) -> Health:
    """Whether the server answers."""
    return Health(status="ok")
