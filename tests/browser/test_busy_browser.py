"""Overload in a real browser (issue 10, part 4): the server's loop lags, the patient's page is
told the server is busy, says so, and joins by itself once the server keeps up again. Seen at a
phone's size, as a patient would.

The lag is real: the server process (in-process SFU, media_workers=0) is stopped with SIGSTOP
for 250 ms of every 750 ms, which its event loop sees as lag.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Server = Any
RoomPage = Any

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PHONE = {"width": 390, "height": 844}


class Stopper:
    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            os.kill(self._pid, signal.SIGSTOP)
            self._stop.wait(0.25)
            os.kill(self._pid, signal.SIGCONT)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        os.kill(self._pid, signal.SIGCONT)


def _wait_log(server: Server, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not logged\n{server.log_tail()}")
        time.sleep(0.1)  # poll interval, bounded by the deadline


def test_a_busy_server_is_said_and_the_page_joins_by_itself(
    teleconsult_server: Server, open_room: Callable[..., RoomPage], tmp_path: Path
) -> None:
    server = teleconsult_server
    doctor = open_room("doctor", server.links["doctor"])
    doctor.page.wait_for_function(
        "() => window.__tc && window.__tc.state === 'joined'", timeout=15_000
    )

    stopper = Stopper(server.process.pid)
    try:
        _wait_log(server, "event loop lagging", timeout=15)
        patient = open_room("patient", server.links["patient"], viewport=PHONE)
        patient.page.wait_for_function(
            "() => window.__tc && window.__tc.state === 'busy'", timeout=20_000
        )
        status = patient.page.locator("#status")
        assert "服务器繁忙" in status.inner_text() and "秒后自动重试" in status.inner_text()
        patient.page.screenshot(path=str(tmp_path / "patient-busy-phone.png"))
        patient.page.locator("#lang-toggle").click()
        assert "The server is busy" in status.inner_text()
        patient.page.screenshot(path=str(tmp_path / "patient-busy-phone-en.png"))
        patient.page.locator("#lang-toggle").click()
        busy = patient.tc()["busy"]
        assert busy["code"] == "server_busy" and busy["attempt"] >= 1, busy
    finally:
        stopper.stop()

    # once the server keeps up again, the page joins by itself and the two see each other
    patient.page.wait_for_function("() => window.__tc.state === 'joined'", timeout=30_000)
    for room in (doctor, patient):
        room.page.wait_for_function(
            "() => { const v = document.querySelector('.tile-remote video');"
            " return v && v.videoWidth > 0; }",
            timeout=15_000,
        )
    assert "keeps up again" in server.stderr_path.read_text(errors="replace")
    refusals = [e for e in patient.tc()["errors"] if e["code"] == "server_busy"]
    print(f"\nthe patient's page was refused {len(refusals)} time(s) before it joined")
    assert patient.page.locator("#error").is_hidden()
    assert patient.page.locator("#call-timer").is_visible()
    patient.page.screenshot(path=str(tmp_path / "patient-joined-phone.png"))
    doctor.page.screenshot(path=str(tmp_path / "doctor-joined.png"))
