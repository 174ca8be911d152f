"""Harness for browser end-to-end tests: server and Debian Chromium in a private network namespace.

Chromium picks a non-loopback interface for WebRTC even when the server offers only 127.0.0.1, so
both the server and the browser run inside a fresh network namespace whose only interface is `lo`
(and Chromium gets `--allow-loopback-in-peer-connection`). No test traffic can leave it.

Needs root (for `ip netns`), `/usr/bin/chromium` (Debian's, never a downloaded browser) and Python
Playwright. Without them the tests skip; with TELECONSULT_STRICT=1 they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_types import RoomPage, Server
from databases import seed_data_dir

CHROMIUM = Path("/usr/bin/chromium")
BIN_DIR = Path(sys.executable).parent
TELECONSULT = BIN_DIR / "teleconsult"
#: How the tests run it: the same CLI with cheap password hashing (cheap_teleconsult.py).
TELECONSULT_ARGV = (sys.executable, str(Path(__file__).with_name("cheap_teleconsult.py")))
STRICT = os.environ.get("TELECONSULT_STRICT") == "1"

SERVER_START_TIMEOUT_S = 60.0  # a loaded 2-core machine takes ~30 s to import and migrate
SERVER_STOP_TIMEOUT_S = 5.0

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Without it Chromium gathers no loopback candidates and the peer connections never connect.
    "--allow-loopback-in-peer-connection",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    """Skip, or fail under TELECONSULT_STRICT=1 (CI must not silently skip these tests)."""
    if STRICT:
        pytest.fail(f"browser test prerequisites missing (TELECONSULT_STRICT=1): {reason}")
    pytest.skip(reason)


def _ip() -> str:
    ip = shutil.which("ip")
    assert ip is not None
    return ip


@pytest.fixture
def browser_prerequisites() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root to create network namespaces (ip netns)")
    if shutil.which("ip") is None:
        _unavailable("the `ip` command (iproute2) is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"Debian chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Python Playwright is not installed")
    if not TELECONSULT.exists():
        _unavailable(f"{TELECONSULT} not found (pip install -e .)")


@pytest.fixture
def netns(browser_prerequisites: None) -> Iterator[str]:
    """A fresh network namespace with only `lo` up; deleted at teardown."""
    name = f"tc-{secrets.token_hex(4)}"
    subprocess.run([_ip(), "netns", "add", name], check=True)
    try:
        subprocess.run([_ip(), "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        _kill_namespace_processes(name)
        subprocess.run([_ip(), "netns", "delete", name], check=False)


def _kill_namespace_processes(ns: str) -> None:
    """Kill what is still running in our namespace: only processes this harness started."""
    result = subprocess.run(
        [_ip(), "netns", "pids", ns], capture_output=True, text=True, check=False
    )
    for pid in result.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def ns_run(ns: str, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_ip(), "netns", "exec", ns, *argv], text=True, **kwargs)


def _parse_demo_output(stdout: str) -> dict[str, Any]:
    """`teleconsult demo --json` prints one JSON object; tolerate log lines around it."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        for line in reversed(stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise


def _wait_for_http(server: Server, path: str, deadline: float) -> None:
    """Poll the server from inside the namespace until it answers HTTP at all."""
    url = server.base_url + path
    while True:
        if server.process.poll() is not None:
            pytest.fail(
                f"teleconsult serve exited with {server.process.returncode} before it answered\n"
                + server.log_tail()
            )
        probe = ns_run(
            server.ns,
            "curl",
            "--silent",
            "--output",
            "/dev/null",
            "--max-time",
            "1",
            "--write-out",
            "%{http_code}",
            url,
            capture_output=True,
            check=False,
        )
        if probe.stdout.strip() not in ("", "000"):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"teleconsult serve did not answer {url} in time\n" + server.log_tail())
        time.sleep(0.1)  # poll interval, bounded by the deadline above


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for `teleconsult serve` (a test module may override this fixture)."""
    return {}


@pytest.fixture
def server_listen() -> tuple[str, list[str]]:
    """Listen address and ICE addresses of `teleconsult serve` (a test module may override this
    fixture, e.g. to reach pages in another namespace)."""
    return "127.0.0.1", ["127.0.0.1"]


@pytest.fixture
def server_toml() -> str:
    """A TOML configuration for `teleconsult serve` (``{port}`` stands for its port); a test
    module may override this fixture, e.g. for ``[[providers]]`` tables."""
    return ""


@pytest.fixture
def teleconsult_server(
    netns: str,
    tmp_path: Path,
    server_env: dict[str, str],
    server_listen: tuple[str, list[str]],
    server_toml: str,
) -> Iterator[Server]:
    """A demo visit and `teleconsult serve` on 127.0.0.1 inside the namespace."""
    with _serve(
        netns, "127.0.0.1", server_listen, tmp_path, server_env, toml=server_toml
    ) as server:
        yield server


@contextlib.contextmanager
def _serve(
    ns: str,
    url_host: str,
    server_listen: tuple[str, list[str]],
    tmp_path: Path,
    server_env: dict[str, str],
    toml: str = "",
    demo_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """A demo visit and `teleconsult serve` inside ``ns``, listening on ``server_listen`` (host,
    ICE addresses); its links name ``url_host``; ``toml``: its configuration file, if any;
    ``demo_args``: more `teleconsult demo` options (``--companion``: a third person)."""
    if shutil.which("curl") is None:
        _unavailable("curl is needed to poll the server inside the namespace")
    port = 20000 + secrets.randbelow(40000)  # the namespace is fresh: every port is free
    base_url = f"http://{url_host}:{port}"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    seed_data_dir(data_dir)  # a migrated empty database (tests/databases.py)

    demo = ns_run(
        ns,
        *TELECONSULT_ARGV,
        "demo",
        "--data-dir",
        str(data_dir),
        "--base-url",
        base_url,
        "--json",
        *demo_args,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if demo.returncode != 0:
        pytest.fail(f"teleconsult demo failed ({demo.returncode}):\n{demo.stdout}\n{demo.stderr}")
    info = _parse_demo_output(demo.stdout)

    host, ice_addresses = server_listen
    ice_args = [arg for address in ice_addresses for arg in ("--ice-address", address)]
    if toml:
        config_path = tmp_path / "teleconsult.toml"
        config_path.write_text(toml.replace("{port}", str(port)))
        ice_args += ["--config", str(config_path)]
    stdout_path = tmp_path / "server.stdout.log"
    stderr_path = tmp_path / "server.stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [
                _ip(),
                "netns",
                "exec",
                ns,
                *TELECONSULT_ARGV,
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *ice_args,
            ],
            stdout=out,
            stderr=err,
            env={**os.environ, **server_env},
        )
    server = Server(
        ns=ns,
        base_url=base_url,
        visit_id=info["visit_id"],
        links=dict(info["links"]),
        process=process,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )
    try:
        _wait_for_http(server, "/room", time.monotonic() + SERVER_START_TIMEOUT_S)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Shown by pytest only when the test failed.
        print(f"\nteleconsult serve exit code {process.returncode}\n{server.log_tail()}")


@pytest.fixture
def chromium(netns: str, tmp_path: Path) -> Iterator[Any]:
    """Debian Chromium launched by Playwright inside the namespace.

    Playwright talks to the browser over a pipe, so a wrapper script that enters the namespace and
    execs Chromium works as `executable_path`.
    """
    from playwright.sync_api import sync_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec {_ip()} netns exec {netns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_in(chromium: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: one more Chromium, in network namespace `ns` (e.g. a page behind its own link);
    `extra_args` are added to the command line."""
    browsers: list[Any] = []

    def _launch(ns: str, extra_args: tuple[str, ...] = ()) -> Any:
        wrapper = tmp_path / f"chromium-in-{ns}"
        wrapper.write_text(f'#!/bin/sh\nexec {_ip()} netns exec {ns} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        browser = chromium.browser_type.launch(
            executable_path=str(wrapper), headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        browsers.append(browser)
        return browser

    try:
        yield _launch
    finally:
        for browser in browsers:
            browser.close()


@pytest.fixture
def open_room(chromium: Any) -> Iterator[Callable[..., RoomPage]]:
    """Factory: open `url` as `role` in its own browser context (own camera, own storage);
    `browser=` another Chromium (see `chromium_in`), `viewport=` another size, `init_script=`
    JavaScript run in the page before any of its own."""
    rooms: list[RoomPage] = []
    contexts: list[Any] = []

    def _open(
        role: str,
        url: str,
        browser: Any = None,
        viewport: dict[str, int] | None = None,
        init_script: str | None = None,
    ) -> RoomPage:
        context = (browser or chromium).new_context(
            viewport=viewport or {"width": 1280, "height": 900}, locale="zh-CN"
        )
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        room = RoomPage(role=role, page=page)
        page.on("console", lambda msg: room.logs.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: room.logs.append(f"pageerror: {exc}"))
        page.on(
            "requestfailed",
            lambda req: room.logs.append(f"requestfailed: {req.url} {req.failure}"),
        )
        page.goto(url, wait_until="commit")
        rooms.append(room)
        return room

    try:
        yield _open
    finally:
        for room in rooms:
            print(f"\n--- console of the {room.role} page ---\n" + "\n".join(room.logs))
        for context in contexts:
            context.close()


# --- two namespaces joined by a veth: a link that can be shaped ---------------------------------


@dataclass
class Link:
    """A server namespace and a client namespace joined by a veth pair (a /30)."""

    server: str
    client: str
    address: str  # the server's address on the link
    device: str  # the link's end in the server namespace: shaping its egress shapes the
    # client's downlink


@pytest.fixture
def two_namespaces(browser_prerequisites: None) -> Iterator[Link]:
    """Fresh server and client namespaces (``lo`` up in both) joined by a veth; deleted after."""
    tag = secrets.token_hex(3)
    server_ns, client_ns = f"tc-s{tag}", f"tc-c{tag}"
    server_dev, client_dev = f"tcs{tag}", f"tcc{tag}"
    prefix = f"10.{16 + secrets.randbelow(200)}.{secrets.randbelow(250)}"
    ip = _ip()
    created: list[str] = []
    try:
        for ns in (server_ns, client_ns):
            subprocess.run([ip, "netns", "add", ns], check=True)
            created.append(ns)
            subprocess.run([ip, "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                ip,
                "link",
                "add",
                server_dev,
                "netns",
                server_ns,
                "type",
                "veth",
                "peer",
                client_dev,
                "netns",
                client_ns,
            ],
            check=True,
        )
        for ns, dev, host in ((server_ns, server_dev, 1), (client_ns, client_dev, 2)):
            subprocess.run(
                [ip, "-n", ns, "addr", "add", f"{prefix}.{host}/30", "dev", dev], check=True
            )
            subprocess.run([ip, "-n", ns, "link", "set", dev, "up"], check=True)
        yield Link(server_ns, client_ns, f"{prefix}.1", server_dev)
    finally:
        for ns in reversed(created):
            _kill_namespace_processes(ns)
            subprocess.run([ip, "netns", "delete", ns], check=False)


@pytest.fixture
def demo_args() -> tuple[str, ...]:
    """More `teleconsult demo` options for :func:`veth_server` (a test parametrizes it, e.g.
    ``("--companion",)`` for a visit of three)."""
    return ()


@pytest.fixture
def veth_server(
    two_namespaces: Link, tmp_path: Path, server_env: dict[str, str], demo_args: tuple[str, ...]
) -> Iterator[Server]:
    """`teleconsult serve` in the server namespace on its link address (pages in that namespace
    reach it over lo, pages in the client namespace over the veth)."""
    address = two_namespaces.address
    with _serve(
        two_namespaces.server,
        address,
        (address, [address]),
        tmp_path,
        server_env,
        demo_args=demo_args,
    ) as server:
        yield server


@pytest.fixture
def open_room_in(browser_prerequisites: None, tmp_path: Path) -> Iterator[Callable[..., RoomPage]]:
    """Factory: open ``url`` as ``role`` in a Chromium running inside namespace ``ns``."""
    from playwright.sync_api import sync_playwright

    rooms: list[RoomPage] = []
    with sync_playwright() as playwright:
        browsers: dict[str, Any] = {}

        def _open(ns: str, role: str, url: str, also_secure: tuple[str, ...] = ()) -> RoomPage:
            """``also_secure``: more origins the namespace's browser (started by the first
            call for ``ns``) treats as secure, for pages served from several addresses."""
            if ns not in browsers:
                wrapper = tmp_path / f"chromium-in-{ns}"
                wrapper.write_text(f'#!/bin/sh\nexec {_ip()} netns exec {ns} {CHROMIUM} "$@"\n')
                wrapper.chmod(0o755)
                # an address other than loopback is no secure context: no camera without this
                origins = ",".join(("/".join(url.split("/")[:3]), *also_secure))
                browsers[ns] = playwright.chromium.launch(
                    executable_path=str(wrapper),
                    headless=True,
                    args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origins}"],
                )
            context = browsers[ns].new_context(
                viewport={"width": 1280, "height": 900}, locale="zh-CN"
            )
            page = context.new_page()
            room = RoomPage(role=role, page=page)
            page.on("console", lambda msg: room.logs.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: room.logs.append(f"pageerror: {exc}"))
            page.goto(url, wait_until="commit")
            rooms.append(room)
            return room

        try:
            yield _open
        finally:
            for room in rooms:
                print(f"\n--- console of the {room.role} page ---\n" + "\n".join(room.logs[-60:]))
            for browser in browsers.values():
                browser.close()
