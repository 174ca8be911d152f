"""The browser tests' shared types: a server in a namespace and a participant's page.

They live here, not in conftest.py, so that test modules import them by a name no other
suite's conftest shares.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Server:
    ns: str
    base_url: str
    visit_id: str
    links: dict[str, str]
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def log_tail(self, lines: int = 80) -> str:
        out = []
        for path in (self.stdout_path, self.stderr_path):
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            out.append(f"--- {path.name} (last {lines} lines) ---\n{tail}")
        return "\n".join(out)


@dataclass
class RoomPage:
    """One participant's page with what it logged."""

    role: str
    page: Any
    logs: list[str] = field(default_factory=list)

    def tc(self) -> dict[str, Any]:
        """A JSON copy of window.__tc without the peer connections."""
        return self.page.evaluate(
            "() => { const {pcs, ...rest} = window.__tc || {};"
            " return JSON.parse(JSON.stringify(rest)); }"
        )
