"""A healthy client's round trip with and without a flood, side by side, on a real server process.

    .venv/bin/python bench/flood_latency.py [--window 4] [--rounds 3] [--floods forbidden,sign_in]
        [--py-spy /path/to/py-spy --profile-dir DIR]

The server (``python -m web serve``) runs in its own process on a fresh SQLite data directory, with
production Argon2 costs. The healthy client reads ``GET /api/v1/me`` one request after another,
at most 100 a second, taking turns among 8 signed-in patients so that each stays inside its read
budget (20 a second); each round measures it for ``--window`` seconds quiet, then for the same
time beside each flood, run by a process of its own (so the flooder's client work is not on the
healthy client's loop; tests/http_flood_client.py, which tests/api/test_floods.py runs too):

* ``forbidden``: a patient asks for the audit chain (auditors only), 20 requests at a time
  (issue 13: 179 audit rows a second). Each round a new patient floods, so every round sees the
  expensive start: the first ``DENIALS_BURST`` refusals are audited one row each.
* ``sign_in``: 16 workers from one address (a new one each round, 127.0.0.3, .4, ...) send wrong
  passwords for four real accounts and unknown names.

Per flood it prints the healthy client's p50 and p99 quiet and flooded, the p99 ratio, and the
bound tests/api/test_floods.py asserts (``max(2 x quiet p99, quiet p99 + 50 ms)``), with the
load average before and after. ``--py-spy`` attaches py-spy to the server for each flood window
and writes its collapsed stacks (``--profile-dir``), to see where the time goes.

Not a test: figures for the notes (timing on a shared machine is noisy; run it twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consult.admin_commands import add_user  # noqa: E402
from consult.db import Database  # noqa: E402

PASSWORD = "Correct-Horse-42"
FLOOD_CLIENT = ROOT / "tests" / "http_flood_client.py"
"""The flooder, a process of its own (shared with tests/api/test_floods.py)."""
FLOOD_CONCURRENCY = {"forbidden": 20, "sign_in": 16}
HEALTHY_ACCOUNTS = 8
HEALTHY_EVERY_S = 0.01
"""The healthy client: 100 requests a second at most, 12.5 per account (the read budget is 20)."""
FLOOR_S = 0.05
"""The floor of the bound: a quiet machine's 5 ms p99 may double from scheduling alone."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


async def prepare(data_dir: Path, rounds: int) -> None:
    """The healthy patient, a flooding patient per round and four victims of the sign-in flood."""
    db = Database(f"sqlite+aiosqlite:///{data_dir / 'teleconsult.db'}", field_key="f" * 48)
    await db.start()
    try:
        names = [f"healthy-{n}" for n in range(HEALTHY_ACCOUNTS)]
        names += [f"flooder-{n}" for n in range(rounds)]
        names += [f"victim-{n}" for n in range(4)]
        for name in names:
            text, code = await add_user(
                db, username=name, display_name=name, role="patient", password=PASSWORD
            )
            assert code == 0, text
    finally:
        await db.close()


async def wait_healthy(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise SystemExit("the server exited")
        try:
            async with http.get(url + "/api/v1/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not start")


async def sign_in(http: aiohttp.ClientSession, url: str, username: str) -> str:
    async with http.post(
        url + "/api/v1/session", json={"username": username, "password": PASSWORD}
    ) as r:
        body = await r.json()
        assert r.status == 201, body
        return str(body["token"])


async def healthy_window(
    http: aiohttp.ClientSession, url: str, tokens: list[str], seconds: float
) -> list[float]:
    """Seconds per ``GET /me``, one after another (at most one per :data:`HEALTHY_EVERY_S`,
    taking turns among the healthy accounts: each stays within its read budget), for
    ``seconds``."""
    times: list[float] = []
    until = time.monotonic() + seconds
    n = 0
    while (now := time.monotonic()) < until:
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        n += 1
        started = time.perf_counter()
        async with http.get(url + "/api/v1/me", headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        times.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, now + HEALTHY_EVERY_S - time.monotonic()))
    return times


async def beside_flood(
    http: aiohttp.ClientSession,
    url: str,
    token: list[str],
    kind: str,
    secret: str,
    seconds: float,
    profile: tuple[str, Path, int] | None,
) -> tuple[list[float], dict[str, int]]:
    """The healthy client's round trips while a flood process runs for ``seconds``."""
    victims = [f"victim-{n}" for n in range(4)] if kind == "sign_in" else []
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, str(FLOOD_CLIENT), url, kind, secret, str(FLOOD_CONCURRENCY[kind]),
        "--seconds", str(seconds), *victims,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert flooder.stdout is not None
    spy = None
    try:
        line = await asyncio.wait_for(flooder.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        if profile is not None:
            binary, path, pid = profile
            spy = await asyncio.create_subprocess_exec(
                binary, "record", "--pid", str(pid), "-d", str(int(seconds)), "-r", "250",
                "-f", "raw", "-o", str(path), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        times = await healthy_window(http, url, token, seconds)
        output, _ = await flooder.communicate()
        counts = json.loads(output.decode().strip().splitlines()[-1])
    finally:
        if flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        if spy is not None:
            await spy.wait()
    return times, counts


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    await prepare(data_dir, args.rounds)
    port = free_port()
    (tmp / "server.toml").write_text(
        f'data_dir = "{data_dir}"\nport = {port}\nfield_key = "{"f" * 48}"\n'
        f'recording = false\nlog_level = "WARNING"\n'
    )
    log = (tmp / "server.log").open("wb")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "web", "serve", "--config", str(tmp / "server.toml"),
        cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    floods = [kind for kind in args.floods.split(",") if kind]
    quiet: dict[str, list[float]] = {kind: [] for kind in floods}
    flooded: dict[str, list[float]] = {kind: [] for kind in floods}
    answers: dict[str, dict[str, int]] = {kind: {} for kind in floods}
    print(f"before: {load()}")
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, url, server)
            token = [await sign_in(http, url, f"healthy-{n}") for n in range(HEALTHY_ACCOUNTS)]
            flooders = [await sign_in(http, url, f"flooder-{n}") for n in range(args.rounds)]
            await healthy_window(http, url, token, 1.0)  # warm up
            for n in range(args.rounds):
                for kind in floods:
                    quiet[kind] += await healthy_window(http, url, token, args.window)
                    secret = flooders[n] if kind == "forbidden" else f"127.0.0.{3 + n}"
                    profile = None
                    if args.py_spy:
                        path = Path(args.profile_dir) / f"{kind}-{n}.txt"
                        profile = (args.py_spy, path, server.pid)
                    times, counts = await beside_flood(
                        http, url, token, kind, secret, args.window, profile
                    )
                    flooded[kind] += times
                    for key, value in counts.items():
                        answers[kind][key] = answers[kind].get(key, 0) + value
    finally:
        server.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(server.wait(), timeout=30)
        except TimeoutError:
            server.kill()
            await server.wait()
        log.close()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"after: {load()}")
    for kind in floods:
        base, during = quiet[kind], flooded[kind]
        p99_base, p99_during = percentile(base, 99), percentile(during, 99)
        bound = max(2 * p99_base, p99_base + FLOOR_S)
        print(
            f"{kind}: healthy GET /me quiet n={len(base)} p50 {percentile(base, 50) * 1e3:.1f} "
            f"p99 {p99_base * 1e3:.1f} ms | flooded n={len(during)} "
            f"p50 {percentile(during, 50) * 1e3:.1f} p99 {p99_during * 1e3:.1f} "
            f"max {max(during) * 1e3:.1f} ms | p99 ratio {p99_during / p99_base:.2f} "
            f"(test bound {bound * 1e3:.0f} ms: {'within' if p99_during <= bound else 'OVER'})"
        )
        print(f"  flood answers: {dict(sorted(answers[kind].items()))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floods", default="forbidden,sign_in")
    parser.add_argument("--py-spy", default="", help="py-spy binary: profile each flood window")
    parser.add_argument("--profile-dir", default=".")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    asyncio.run(main(parser.parse_args()))
