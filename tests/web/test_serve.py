"""On a fresh checkout, ``teleconsult serve`` with no configuration serves the room page."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import skip_or_fail

from web.config import load_config


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read()


def test_serve_with_no_configuration_serves_the_room_page(tmp_path: Path):
    exe = shutil.which("teleconsult", path=str(Path(sys.executable).parent))
    if exe is None:
        skip_or_fail("the teleconsult console script is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    if not _port_free(8080):
        # the default port is taken on this machine; everything else stays default
        env["TELECONSULT_PORT"] = "18080"
    port = int(env.get("TELECONSULT_PORT", "8080"))
    process = subprocess.Popen(
        [exe, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        status, body = 0, b""
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                status, body = _get(f"http://127.0.0.1:{port}/room")
                break
            except OSError:
                time.sleep(0.1)  # polling the port with a deadline
        assert status == 200
        assert b"<html" in body and b'lang="zh-CN"' in body
        assert b"room.js" in body
        # R33: a token in the query (an old-form link) is refused, and logged nowhere
        try:
            _get(f"http://127.0.0.1:{port}/room?visit=v&token=SECRET-TOKEN-VALUE")
            raise AssertionError("a token in the query string was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and b'data-code="token_in_query"' in exc.read()
        # nor a token hidden in the path ("%3F" decodes to "?"): unmatched, its path unlogged
        try:
            _get(f"http://127.0.0.1:{port}/room%3Ftoken=SECRET-TOKEN-VALUE")
            raise AssertionError("an unknown path was served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        status, _ = _get(f"http://127.0.0.1:{port}/vendor/socket.io/socket.io.esm.min.js")
        assert status == 200
        status, body = _get(f"http://127.0.0.1:{port}/vendor/qrcode/qrcode.mjs")
        assert status == 200 and b"export default qrcode" in body
        status, body = _get(f"http://127.0.0.1:{port}/console")
        assert status == 200 and b"console.js" in body
        status, body = _get(f"http://127.0.0.1:{port}/api/v1/health")
        assert status == 200 and b"ok" in body
        # the embedded default: SQLite and its key under ./data
        assert (tmp_path / "data" / "teleconsult.db").is_file()
        assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o077 == 0
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    # requests are logged, join tokens in query strings never
    assert "GET /room" in output
    assert "SECRET-TOKEN-VALUE" not in output
    # what startup built is kept out of garbage collections (a full one stopped the loop
    # ~140 ms walking it): logged once, after the last startup step, with a sizeable count
    frozen = re.findall(r"startup heap kept out of garbage collections: (\d+) objects", output)
    assert len(frozen) == 1 and int(frozen[0]) > 50_000, output


def test_defaults_need_nothing_and_overrides_apply(tmp_path: Path):
    config = load_config(environ={})
    assert config.database.startswith("sqlite+aiosqlite:///")
    assert config.ice_servers == () and config.redis_url == ""
    toml = tmp_path / "teleconsult.toml"
    toml.write_text('port = 9000\nice_addresses = ["10.0.0.1", "10.1.0.1"]\n')
    config = load_config(toml, environ={"TELECONSULT_PORT": "9100"}, host="0.0.0.0")
    assert (config.port, config.host) == (9100, "0.0.0.0")
    assert config.ice_addresses == ("10.0.0.1", "10.1.0.1")
    toml.write_text("colour = 'blue'\n")
    try:
        load_config(toml, environ={})
        raise AssertionError("an unknown key was accepted")
    except ValueError as exc:
        assert "colour" in str(exc)
