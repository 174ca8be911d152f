"""Helpers of the console's browser tests: a server with an empty database, TOTP enrolment read
from the QR code on the page, and layout checks from element geometry.

A plain module (not a conftest): the tests import it by name.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from databases import seed_data_dir

from consult.totp import code_at, matching_step

#: `teleconsult` with cheap password hashing, as conftest.py runs it (cheap_teleconsult.py)
TELECONSULT_ARGV = (sys.executable, str(Path(__file__).with_name("cheap_teleconsult.py")))
START_TIMEOUT_S = 60.0  # as conftest: a loaded 2-core machine takes ~30 s to import and migrate
STOP_TIMEOUT_S = 5.0
WAIT_MS = 15_000
PASSWORD = "Correct-Horse-42"

# Visible buttons (and links styled as buttons), selects and disclosure summaries smaller than
# 44 x 44 px.
SMALL_TARGETS_JS = """
() => [...document.querySelectorAll("button, .btn, input[type=submit], .chat-btn, select, summary")]
  .filter((el) => el.offsetParent !== null && getComputedStyle(el).visibility !== "hidden")
  .map((el) => [el.id || el.className || el.tagName, el.getBoundingClientRect()])
  .filter(([, r]) => r.width > 0 && (r.width < 44 || r.height < 44))
  .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`)
"""


IN_VIEW_JS = """
(el) => {
  // on the screen, and not clipped by a scrolling box it sits in (a box above a fixed element
  // does not clip it)
  const r = el.getBoundingClientRect();
  let box = { top: 0, left: 0, bottom: window.innerHeight, right: window.innerWidth };
  let fixed = getComputedStyle(el).position === "fixed";
  for (let p = el.parentElement; p && !fixed; p = p.parentElement) {
    const style = getComputedStyle(p);
    fixed = style.position === "fixed";
    if (!/(auto|scroll|hidden)/.test(style.overflowY)) continue;
    const c = p.getBoundingClientRect();
    box = { top: Math.max(box.top, c.top), left: Math.max(box.left, c.left),
            bottom: Math.min(box.bottom, c.bottom), right: Math.min(box.right, c.right) };
  }
  return r.top >= box.top - 1 && r.bottom <= box.bottom + 1
    && r.left >= box.left - 1 && r.right <= box.right + 1;
}
"""


def in_view(locator: Any) -> bool:
    """The element is wholly visible without scrolling anything (a click would not move it)."""
    return bool(locator.evaluate(IN_VIEW_JS))


def _ns(ns: str, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], text=True, **kwargs)


@contextmanager
def empty_server(ns: str, tmp_path: Path, toml: str = "") -> Iterator[tuple[str, Path]]:
    """`teleconsult serve` on a new data directory with nothing in it but the first admin
    (made with `teleconsult user add`, as the README says). Yields (base URL, data dir).
    ``toml``: a configuration file for it, if any."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    seed_data_dir(data_dir)  # a migrated empty database (tests/databases.py)
    subprocess.run(
        [
            *TELECONSULT_ARGV,
            "user",
            "add",
            "--data-dir",
            str(data_dir),
            "--role",
            "admin",
            "--username",
            "admin",
            "--display-name",
            "管理员",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = 20000 + secrets.randbelow(40000)  # the namespace is fresh: every port is free
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    config: list[str] = []
    if toml:
        (tmp_path / "teleconsult.toml").write_text(toml)
        config = ["--config", str(tmp_path / "teleconsult.toml")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *("ip", "netns", "exec", ns, *TELECONSULT_ARGV, "serve", "--host", "127.0.0.1"),
                *("--port", str(port), "--data-dir", str(data_dir), "--ice-address", "127.0.0.1"),
                *config,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"teleconsult serve exited early:\n{log.read_text(errors='replace')}")
            probe = _ns(
                ns,
                "curl",
                "--silent",
                "--output",
                "/dev/null",
                "--max-time",
                "1",
                "--write-out",
                "%{http_code}",
                base_url + "/signin",
                capture_output=True,
                check=False,
            )
            if probe.stdout.strip() not in ("", "000"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"teleconsult serve did not answer:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)  # poll interval, bounded by the deadline
        yield base_url, data_dir
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        print(f"\n--- server log ---\n{log.read_text(errors='replace')[-6000:]}")


def decode_qr(page: Any) -> str:
    """The text of the QR code image on the sign-in page, decoded from its pixels (zxing-cpp)."""
    try:
        import zxingcpp
    except ImportError:
        if os.environ.get("TELECONSULT_STRICT") == "1":
            pytest.fail("zxing-cpp is not installed (TELECONSULT_STRICT=1): pip install zxing-cpp")
        pytest.skip("zxing-cpp is not installed (pip install zxing-cpp)")
    from PIL import Image

    src = page.get_attribute("#totp-qr-image", "src")
    assert src and src.startswith("data:image/"), src
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L")
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1, f"expected one QR code, found {len(results)}"
    return str(results[0].text)


def totp_code(secret: str) -> str:
    """The current code, computed with the project's own TOTP module (consult/totp.py)."""
    now = datetime.now(UTC)
    code = code_at(secret, now)
    assert matching_step(secret, code, now, last_step=None) is not None
    return code


def sign_in_and_enrol(
    page: Any, base_url: str, username: str, password: str, shots: Path | None = None
) -> str:
    """Sign a staff account in for the first time: enrol TOTP by the QR code alone (the
    secret is read from the decoded image, never from the page's text) and confirm it."""
    page.goto(f"{base_url}/signin", wait_until="domcontentloaded")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin-button")
    page.locator("#enrol").wait_for(timeout=WAIT_MS)
    page.click("#enrol-start")
    page.locator("#totp-qr-image").wait_for(timeout=WAIT_MS)
    assert page.is_hidden("#totp-secret")  # the key is behind "cannot scan?"
    if shots is not None:
        check_layout(page, "signin-enrol", shots)
    uri = decode_qr(page)
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp", uri
    secret = parse_qs(parsed.query)["secret"][0]
    page.fill("#enrol-code", totp_code(secret))
    page.click("#enrol-confirm")
    return secret


LAYOUT_JS = """
() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== "hidden";
  };
  const h1 = document.querySelector(".topbar h1");
  const style = getComputedStyle(h1);
  const lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.5;
  const box = h1.getBoundingClientRect();
  const range = document.createRange();
  range.selectNodeContents(h1);
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  const targets = [...document.querySelectorAll("button, a.btn, select, summary, .topbar .btn")]
    .filter(visible)
    .map((el) => {
      const r = el.getBoundingClientRect();
      return { id: el.id || el.dataset.action || el.dataset.tab || el.textContent.trim().slice(0, 20),
               width: Math.round(r.width), height: Math.round(r.height) };
    });
  const keys = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const parent = walker.currentNode.parentElement;
    if (/^[a-z_]+(\\.[a-z_]+)+$/.test(text) && parent && visible(parent)) keys.push(text);
  }
  // The top bar's rows: its items (the actions' own items, not their box) grouped by overlap.
  const barItems = [...document.querySelectorAll(".topbar > *, .topbar-actions > *")]
    .filter((el) => !el.classList.contains("topbar-actions") && visible(el))
    .map((el) => el.getBoundingClientRect())
    .sort((a, b) => a.top - b.top);
  let topbarRows = 0;
  let rowBottom = -Infinity;
  for (const r of barItems) {
    if (r.top >= rowBottom - 1) {
      topbarRows += 1;
      rowBottom = r.bottom;
    } else {
      rowBottom = Math.max(rowBottom, r.bottom);
    }
  }
  // In the room: the call timer on the status's line (it used to wrap onto a line of its own).
  const timer = document.querySelector(".room-bar .call-timer");
  const status = document.querySelector(".room-bar .status");
  let timerOffLine = null;
  if (timer && status && visible(timer)) {
    const t = timer.getBoundingClientRect();
    const s = status.getBoundingClientRect();
    const middle = (t.top + t.bottom) / 2;
    if (middle < s.top || middle > s.bottom) timerOffLine = { timer: t.top, status: [s.top, s.bottom] };
  }
  // A page's notices (an error, "the doctor ended the visit") as wide as its cards.
  const card = [...document.querySelectorAll(".page > .card")].find(visible);
  const notices = [...document.querySelectorAll(".page > .notice")].filter(visible);
  const noticesOff = card ? notices.map((n) => {
    const a = n.getBoundingClientRect();
    const b = card.getBoundingClientRect();
    return Math.abs(a.left - b.left) > 1 || Math.abs(a.right - b.right) > 1
      ? { id: n.id, notice: [a.left, a.right], card: [b.left, b.right] } : null;
  }).filter(Boolean) : [];
  return {
    topbarRows,
    timerOffLine,
    noticesOff,
    title: h1.textContent,
    titleLines: lines,
    titleHeight: box.height,
    lineHeight,
    titleWidth: box.width,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    small: targets.filter((t) => t.height < 44 || t.width < 44),
    keys,
  };
}
"""


def check_layout(page: Any, name: str, shots: Path, english: bool = False) -> None:
    """At 390 px and 1280 px wide: the header's title on one line and the header in two rows
    at most, no sideways scrolling, every visible button and select at least 44 px each way, no
    untranslated string key, the page's notices as wide as its cards, and in the room the call
    timer on the status's line.
    ``english``: the same again after the language toggle (longer words), then back."""
    for lang in ("zh-CN", "en") if english else ("zh-CN",):
        if lang == "en":
            page.click("#lang-toggle")
            page.wait_for_function("() => document.documentElement.lang === 'en'")
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_function(f"() => window.innerWidth === {width}")
            layout = page.evaluate(LAYOUT_JS)
            suffix = "-en" if lang == "en" else ""
            page.screenshot(path=str(shots / f"{name}{suffix}-{width}.png"), full_page=True)
            where = f"{name} ({lang}) at {width} px: {layout}"
            assert layout["titleLines"] == 1, where
            assert layout["titleHeight"] < 1.6 * layout["lineHeight"], where
            assert layout["topbarRows"] <= 2, where
            assert layout["timerOffLine"] is None, where
            assert layout["noticesOff"] == [], where
            assert layout["overflow"] <= 1, where
            assert layout["small"] == [], where
            assert layout["keys"] == [], where
        if lang == "en":
            page.click("#lang-toggle")
            page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    page.set_viewport_size({"width": 1280, "height": 900})


def api_setup(ns: str, script: Path, base_url: str, data_dir: Path) -> dict[str, Any]:
    """Run a setup script (``script BASE_URL DATA_DIR``, through the REST API) inside the test's
    network namespace; the last line it prints is its JSON result."""
    ip = shutil.which("ip")
    assert ip is not None
    result = subprocess.run(
        [ip, "netns", "exec", ns, sys.executable, str(script), base_url, str(data_dir)],
        capture_output=True, text=True, check=False, timeout=180,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"API setup failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))
