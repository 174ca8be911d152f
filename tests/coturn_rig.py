"""coturn, as `teleconsult turn config` writes its configuration, inside a test's namespace.

Shared by the TURN tests (tests/turn/test_coturn.py: aiortc clients and aioice's TURN client)
and the Chromium page behind blocked UDP (tests/browser/test_turn_browser.py).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from harness import skip_or_fail

from turn import TurnProvider, coturn_config


def wait_for_port(ns: str, port: int, proto: str, deadline: float, process: Any) -> None:
    """Poll ``ss`` in ``ns`` until something listens on ``port`` (``proto`` udp or tcp)."""
    flag = "-lun" if proto == "udp" else "-ltn"
    while True:
        listening = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", flag, f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if f":{port}" in listening:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {proto} {port} in {ns} in time")
        time.sleep(0.05)  # poll interval, bounded by the deadline


@contextmanager
def coturn(ns: str, provider: TurnProvider, secret: str, tmp: Path) -> Iterator[None]:
    """Run ``turnserver`` for ``provider`` inside ``ns`` until the block ends; its logs are
    printed afterwards (pytest shows them for a failed test)."""
    for tool in ("turnserver", "ss"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed")
    conf = tmp / "turnserver.conf"
    conf.write_text(coturn_config(provider, secret, log_file=str(tmp / "turn.log")))
    with (tmp / "turnserver.out").open("wb") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, "turnserver", "-c", str(conf), "--pidfile",
             str(tmp / "turn.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port(ns, provider.port, "udp", time.monotonic() + 15, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for name in ("turn.log", "turnserver.out"):
            path = tmp / name
            if path.exists():
                print(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
