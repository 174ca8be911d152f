"""The README's reverse proxy works: docs/deploy/Caddyfile serves the pages over HTTPS and passes
socket.io's websocket upgrade through, so a browser on another machine gets a secure page (cameras
need one) and its signaling socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from ssl import CERT_NONE, create_default_context
from urllib.parse import parse_qs, urlsplit

import pytest
import socketio
from harness import skip_or_fail

CADDYFILE = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "Caddyfile"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int:
    context = create_default_context()
    context.check_hostname = False
    context.verify_mode = CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if _status(url) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)  # polling the port with a deadline
    pytest.fail(f"{url} did not answer 200: {log.read_text()[-2000:]}")


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    caddy = shutil.which("caddy")
    if caddy is None:
        skip_or_fail("caddy is not installed (Debian package caddy)")
    server_port, proxy_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update(
        TELECONSULT_DATA_DIR=str(tmp_path / "data"),
        TELECONSULT_PORT=str(server_port),
        TELECONSULT_ICE_ADDRESSES="127.0.0.1",
        TELECONSULT_RECORDING="0",
    )
    caddy_env = dict(
        env,
        HOME=str(tmp_path),
        XDG_DATA_HOME=str(tmp_path / "caddy-data"),
        XDG_CONFIG_HOME=str(tmp_path / "caddy-config"),
        TELECONSULT_SITE=f"https://127.0.0.1:{proxy_port}",
        TELECONSULT_TLS="tls internal",
        TELECONSULT_UPSTREAM=f"127.0.0.1:{server_port}",
    )
    teleconsult = str(Path(sys.executable).parent / "teleconsult")
    server_log, caddy_log = tmp_path / "server.log", tmp_path / "caddy.log"
    with server_log.open("wb") as slog, caddy_log.open("wb") as clog:
        server = subprocess.Popen([teleconsult, "serve"], env=env, stdout=slog, stderr=slog)
        proxy = subprocess.Popen(
            [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=caddy_env,
            stdout=clog,
            stderr=clog,
        )
        try:
            _wait(f"http://127.0.0.1:{server_port}/room", server, server_log)
            base = f"https://127.0.0.1:{proxy_port}"
            _wait(f"{base}/room", proxy, caddy_log)
            demo = subprocess.run(
                [teleconsult, "demo", "--base-url", base, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert "nothing answers" not in demo.stderr
            yield base, json.loads(demo.stdout)["links"]
        finally:
            for process in (proxy, server):
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


async def test_caddy_example_serves_https_and_upgrades_the_signaling_socket(
    proxied: tuple[str, dict[str, str]],
) -> None:
    base, links = proxied
    assert _status(f"{base}/signin") == 200
    query = parse_qs(urlsplit(links["doctor"]).fragment)  # the join token is in the fragment
    assert urlsplit(links["doctor"]).netloc == urlsplit(base).netloc  # links name the proxy
    sio = socketio.AsyncClient(reconnection=False, ssl_verify=False)
    try:
        await sio.connect(
            base, auth={"token": query["token"][0]}, transports=["websocket"], wait_timeout=10
        )
        assert sio.transport() == "websocket"
        ack = await sio.call(
            "join", {"visit": parse_qs(urlsplit(links["doctor"]).query)["visit"][0]}, timeout=10
        )
        assert ack["ok"], ack
        assert ack["participant"]["role"] == "doctor"
    finally:
        await sio.disconnect()
