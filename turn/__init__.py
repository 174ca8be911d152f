"""TURN and ICE servers for clients (coturn per network provider comes in its own issue).

The embedded default runs no TURN server: clients get no ICE servers and connect directly.
"""

from __future__ import annotations

from typing import Any


def client_ice_servers(configured: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The ``iceServers`` list a browser should use; empty unless configured."""
    return [dict(s) for s in configured or []]
