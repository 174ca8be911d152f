"""consult/ imports none of media/, signaling/, web/, recording/ (ARCHITECTURE.md, layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import consult

FORBIDDEN = {"media", "signaling", "web", "recording", "turn"}


def _imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_consult_imports_no_upper_or_sibling_layer() -> None:
    root = Path(consult.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert root / "visits.py" in files and root / "migrations" / "env.py" in files
    offenders = {
        str(path.relative_to(root)): sorted(_imported_top_levels(path) & FORBIDDEN)
        for path in files
    }
    assert {name: found for name, found in offenders.items() if found} == {}
