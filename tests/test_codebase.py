"""The house rules that tools check: layers (import-linter), lint and format (ruff), types (mypy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(command[0], path=str(BIN)) or shutil.which(command[0])
    assert exe is not None, f"{command[0]} is not installed (pip install -e '.[test]')"
    return subprocess.run(
        [exe, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "command",
    [
        ("lint-imports",),
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy",),
    ],
    ids=["import-linter", "ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: tuple[str, ...]):
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "./scripts/setup --test && .venv/bin/python -m pytest"
    assert f"    {command}\n" in readme
    assert command in ci
    assert "export TELECONSULT_STRICT=1" in ci
