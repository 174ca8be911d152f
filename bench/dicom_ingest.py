"""Imaging figures of a real server process: C-STORE ingest, WADO-RS frames, rendered PNGs.

    .venv/bin/python bench/dicom_ingest.py [--instances 300] [--frames 500] [--renders 400]
        [--clients 8] [--associations 4] [--no-reference] [--rounds 1]
        [--baseline-tree DIR] [--data-parent DIR]

``--frames 0 --renders 0 --no-reference`` measures C-STORE alone. With ``--baseline-tree DIR``
a server from that checkout runs beside ours, each on its own data directory, and the
one-association rounds alternate between them (the order turning each round), and so do the
retrieval rounds (``--retrieval-rounds``): the ratio of the two is what to read on a machine
whose speed drifts by 30 % within minutes.
``--data-parent`` puts the data directories elsewhere than the system's temporary directory:
where a file system makes creating files dear (here, ext4 without a journal scans a block
group's recently deleted inodes on every create, and /tmp sees many deletions), a server
whose data lives elsewhere is measured there.

The server (``python -m web serve``) runs in its own process on a fresh SQLite data directory,
with its C-STORE SCP on. One patient account and its record are made through the API; every
instance names that record as its Patient ID, so the patient may read the study.

* C-STORE: DCMTK ``storescu`` sends ``--instances`` 512x512 CT instances (pydicom-data's
  693_UNCI, each with new UIDs; ~0.5 MB) in one association: instances per second, each parsed,
  checked, fsync'd, renamed into place (its directory fsync'd), inserted and audited, committed
  before its C-STORE response (target >= 150/s); DCMTK's own storescp receives the same files
  right after, as the reference, twice: as DCMTK is built here (Nagle's algorithm left on: its
  response waits for storescu's delayed ACK, ~40 ms an instance) and with ``TCP_NODELAY=1``
  (what storescu itself can send). Then the same number again over ``--associations``
  associations at once: one association waits for each response before it sends the next
  instance, so its rate is one instance's latency; several show what the server takes (they
  share commits: see ``consult/group_commit.py``).
* WADO-RS frame: ``--frames`` sequential requests for one native frame (the access check and
  the audit append included): p50/p95 in ms (target p95 <= 5 ms).
* Rendered PNG: ``--clients`` concurrent clients ask ``--renders`` renderings in all, of as
  many different instances (cold: decoded, windowed and PNG-encoded in the server's executor,
  off the event loop), then the same renderings again (warm: from the server's render cache);
  every one checked and audited: p50/p95 in ms and renders per second (target p95 <= 35 ms).

Not a test: figures for the notes (timing on a shared machine is noisy; run it twice).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proc_stats import speed_reference  # noqa: E402

from consult.identifiers import id_check_char  # noqa: E402

PASSWORD = "Correct-Horse-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """The server's CPU time so far: its process and the processes it started (the imaging
    workers), all threads (user + system; Linux /proc). Beside the latencies: on a machine
    other work shares, CPU per operation moves far less than time."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, CPU seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = int(fields[11]) + int(fields[12])
        stats[int(entry.name)] = (int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))
    if pid not in stats:
        return float("nan")
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += stats[current][1]
        pending.extend(children.get(current, []))
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


PREPARE = """
import asyncio, sys
from consult.admin_commands import add_institution, add_user
from consult.db import Database

async def main(data_dir, password):
    db = Database(f"sqlite+aiosqlite:///{data_dir}/teleconsult.db", field_key="f" * 48)
    await db.start()
    try:
        text, code = await add_institution(db, "Bench Hospital", "tertiary")
        assert code == 0, text
        print(text.split()[1])
        text, code = await add_user(
            db, username="bench-patient", display_name="bench", role="patient", password=password
        )
        assert code == 0, text
    finally:
        await db.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def prepare(data_dir: Path, tree: Path) -> str:
    """The institution and a patient account, as the command line makes them, by ``tree``'s
    code (its own schema: a baseline may be a revision behind ours)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PREPARE,
        str(data_dir),
        PASSWORD,
        cwd=tree,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit(f"preparing {data_dir} with {tree} failed")
    return out.decode().split()[-1]


def write_instances(count: int, patient_id: str, directory: Path) -> list[tuple[str, str, str]]:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = dcmread(get_testdata_file("693_UNCI.dcm", download=False))
    assert source.Rows == 512 and source.Columns == 512
    study, series = generate_uid(), generate_uid()
    directory.mkdir(parents=True)
    uids = []
    for n in range(count):
        ds = copy.deepcopy(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = n + 1
        ds.PatientID = patient_id
        ds.save_as(directory / f"{n:05d}.dcm", enforce_file_format=True)
        uids.append((study, series, ds.SOPInstanceUID))
    return uids


async def storescu(
    port: int, calling: str, called: str, files: list[Path], env: dict[str, str] | None = None
) -> float:
    """Send ``files`` in one association; the seconds it took."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "storescu",
        "-aet",
        calling,
        "-aec",
        called,
        "127.0.0.1",
        str(port),
        *map(str, files),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"storescu failed: {output[-500:]!r}")
    return elapsed


async def dcmtk_storescp_rate(
    files: list[Path], directory: Path, env: dict[str, str] | None = None
) -> float:
    """DCMTK's own SCP receiving the same files on this machine now: the reference."""
    directory.mkdir()  # noqa: ASYNC240  (a bench, before anything is timed)
    port = free_port()
    scp = await asyncio.create_subprocess_exec(
        "storescp",
        "-od",
        str(directory),
        "-aet",
        "REF",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                await asyncio.sleep(0.05)
        return len(files) / await storescu(port, "BENCH", "REF", files, env)
    finally:
        scp.terminate()
        await scp.wait()


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


@dataclass
class Retrieval:
    """What the retrieval phases share: the client, the server and its DICOMweb base URL, the
    bench user's credentials, the options and the phase signal (``--profile``, ``--trace``)."""

    http: aiohttp.ClientSession
    base: str
    auth: dict[str, str]
    args: argparse.Namespace
    server: asyncio.subprocess.Process
    phase: Any


async def retrieval_phases(
    http: aiohttp.ClientSession,
    targets: list[Target],
    args: argparse.Namespace,
    phase: Any,
    in_turn: Callable[[int], list[Target]],
) -> None:
    """WADO-RS frames, then rendered PNGs cold and warm (skipped with --frames 0 or --renders 0),
    ``--retrieval-rounds`` times, each server in turn (with ``--baseline-tree``: the order
    turns each round): each round's cold pass renders instances no round rendered before
    (``--renders`` of them, fewer when the instances stored do not go round), and the p95s'
    medians are printed at the end, with ours over the baseline's, round by round."""
    runs = {
        t.name: Retrieval(http, t.url + "/api/v1/dicomweb/studies", t.auth, args, t.server, phase)
        for t in targets
    }
    unrendered = {t.name: random.sample(t.uids, len(t.uids)) for t in targets}
    per_round = max(
        1, min(args.renders, min(len(u) for u in unrendered.values()) // args.retrieval_rounds)
    )
    p95s: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.retrieval_rounds):
        for target in in_turn(round_):
            run, name = runs[target.name], target.name
            label = f" [{name}]" if len(targets) > 1 else ""
            picked, unrendered[name] = unrendered[name][:per_round], unrendered[name][per_round:]
            p95 = await frames_phase(run, target.uids, label)
            p95s.setdefault((name, "WADO-RS frame p95"), []).append(p95)
            for kind, key in (
                ("cold: each instance's first rendering", "rendered PNG p95, cold"),
                ("warm: the same again", "rendered PNG p95, warm"),
            ):
                p95 = await render_phase(run, picked, kind + label)
                p95s.setdefault((name, key), []).append(p95)
    if args.retrieval_rounds > 1:
        for (name, key), values in p95s.items():
            label = f" [{name}]" if len(targets) > 1 else ""
            print(
                f"  {key}{label} over {len(values)} rounds: median "
                f"{statistics.median(values):.2f} ms ({', '.join(f'{v:.2f}' for v in values)})"
            )
    if len(targets) > 1:
        base, ours = targets[0].name, targets[-1].name
        for key in ("WADO-RS frame p95", "rendered PNG p95, cold", "rendered PNG p95, warm"):
            print(f"  {key}, ours / baseline: {ratios(p95s[(ours, key)], p95s[(base, key)])}")


async def frames_phase(run: Retrieval, uids: list[tuple[str, str, str]], label: str = "") -> float:
    """``--frames`` sequential requests of one native frame each; the p95 in ms."""
    frame_ms = []
    accept = {
        "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        **run.auth,
    }
    cpu0 = cpu_seconds(run.server.pid)
    await run.phase(True)
    for _ in range(run.args.frames):
        study, series, sop = random.choice(uids)
        t0 = time.perf_counter()
        async with run.http.get(
            f"{run.base}/{study}/series/{series}/instances/{sop}/frames/1", headers=accept
        ) as r:
            body = await r.read()
            assert r.status == 200, r.status
        frame_ms.append((time.perf_counter() - t0) * 1000)
    await run.phase(False)
    p95 = percentile(frame_ms, 95)
    print(
        f"WADO-RS frame{label} ({len(body) // 1024} KB multipart, sequential, audited): "
        f"p50 {percentile(frame_ms, 50):.2f} ms, p95 {p95:.2f} ms "
        f"(target p95 <= 5); server CPU "
        f"{(cpu_seconds(run.server.pid) - cpu0) / len(frame_ms) * 1000:.1f} ms a request"
    )
    return p95


async def render_phase(run: Retrieval, picked: list[tuple[str, str, str]], label: str) -> float:
    """``--clients`` concurrent clients ask a rendering of each instance of ``picked``; the
    p95 in ms."""
    latencies: list[float] = []
    queue = list(picked)

    async def renderer() -> None:
        while queue:
            study, series, sop = queue.pop()
            t0 = time.perf_counter()
            async with run.http.get(
                f"{run.base}/{study}/series/{series}/instances/{sop}/rendered",
                headers={"Accept": "image/png", **run.auth},
            ) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append((time.perf_counter() - t0) * 1000)

    t0, cpu0, own0 = time.perf_counter(), cpu_seconds(run.server.pid), time.process_time()
    await run.phase(True)
    await asyncio.gather(*(renderer() for _ in range(run.args.clients)))
    await run.phase(False)
    wall = time.perf_counter() - t0
    cpu = (cpu_seconds(run.server.pid) - cpu0) / len(latencies) * 1000
    own = (time.process_time() - own0) / len(latencies) * 1000
    p95 = percentile(latencies, 95)
    print(
        f"Rendered PNG ({run.args.clients} concurrent clients, {label}): p50 "
        f"{percentile(latencies, 50):.1f} ms, p95 {p95:.1f} ms,"
        f" mean {statistics.mean(latencies):.1f} ms, {len(latencies) / wall:.0f} PNG/s"
        f" (target p95 <= 35); server CPU {cpu:.1f} ms a rendering, the clients' (this"
        f" process, on the same cores) {own:.1f} ms"
    )
    return p95


def ratios(ours: list[float], baseline: list[float]) -> str:
    """Paired rounds, ours over the baseline's: each ratio, and their median."""
    paired = [o / b for o, b in zip(ours, baseline, strict=True)]
    return f"{', '.join(f'{r:.2f}' for r in paired)} (median {statistics.median(paired):.2f})"


def print_trace(directory: Path) -> None:
    """The steps of the last phase's cycles (bench/traced_server.py): median and p90, and the
    CPU of the thread that ran a step (median) where one did."""
    from traced_server import breakdown

    newest = max(directory.glob("*.json"), key=lambda p: int(p.stem))
    for what, median, p90, cpu in breakdown(json.loads(newest.read_text())):
        ran = "" if cpu is None else f", its thread's CPU {cpu:5.2f} ms"
        print(f"    {what:<62} median {median:5.2f} ms, p90 {p90:5.2f} ms{ran}")


@dataclass
class Target:
    """One server under test: its tree, process, ports and the bench patient's record."""

    name: str
    tree: Path
    tmp: Path
    server: asyncio.subprocess.Process
    url: str
    dicom_port: int
    auth: dict[str, str] = field(default_factory=dict)
    record_id: str = ""
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    uids: list[tuple[str, str, str]] = field(default_factory=list)
    """(study, series, instance) of every instance stored in it."""


async def start_target(
    name: str, tree: Path, args: argparse.Namespace, http: aiohttp.ClientSession
) -> Target:
    """A fresh data directory, a server from ``tree`` on it, a patient and its record."""
    tmp = Path(tempfile.mkdtemp(prefix="dicom-bench-", dir=args.data_parent))
    data_dir = tmp / "data"
    data_dir.mkdir()
    institution_id = await prepare(data_dir, tree)
    port, dicom_port = free_port(), free_port()
    (tmp / "server.toml").write_text(
        f'data_dir = "{data_dir}"\nport = {port}\nfield_key = "{"f" * 48}"\n'
        f'recording = false\ndicom_port = {dicom_port}\nlog_level = "WARNING"\n'
        f'[dicom_peers]\nBENCH = "{institution_id}"\n'
    )
    # --profile: the server under cProfile, one file a phase (bench/profiled_server.py);
    # --trace: its C-STORE steps timed, one file a phase (bench/traced_server.py)
    launcher = ["-m", "web"]
    if args.profile:
        launcher = [str(ROOT / "bench" / "profiled_server.py"), str(args.profile / name)]
    elif args.trace:
        launcher = [str(ROOT / "bench" / "traced_server.py"), str(args.trace / name)]
    server = await asyncio.create_subprocess_exec(
        sys.executable, *launcher, "serve", "--config", str(tmp / "server.toml"), cwd=tree
    )
    target = Target(name, tree, tmp, server, f"http://127.0.0.1:{port}", dicom_port)
    await wait_healthy(http, target.url, server)
    async with http.post(
        target.url + "/api/v1/session", json={"username": "bench-patient", "password": PASSWORD}
    ) as r:
        target.auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
    first17 = "110105198001011" + f"{secrets.randbelow(100):02d}"
    async with http.post(
        target.url + "/api/v1/patients",
        json={
            "name": "bench",
            "id_number": first17 + id_check_char(first17),
            "phone": "13900000000",
        },
        headers=target.auth,
    ) as r:
        target.record_id = (await r.json())["id"]
    return target


async def stop_target(target: Target) -> None:
    target.server.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(target.server.wait(), timeout=30)
    except TimeoutError:
        target.server.kill()
        await target.server.wait()
    shutil.rmtree(target.tmp, ignore_errors=True)


async def main(args: argparse.Namespace) -> None:
    if shutil.which("storescu") is None:
        raise SystemExit("DCMTK storescu is missing (apt-get install dcmtk)")
    if args.data_parent is not None:  # absolute: each server runs in its own tree
        args.data_parent = args.data_parent.resolve()
        args.data_parent.mkdir(parents=True, exist_ok=True)
    trees = {"ours": ROOT}
    if args.baseline_tree is not None:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    targets: list[Target] = []
    async with aiohttp.ClientSession() as http:
        try:
            for name, tree in trees.items():
                targets.append(await start_target(name, tree, args, http))
            ours = targets[-1]

            async def phase(start: bool) -> None:
                """Start or stop a phase's profile or trace (the figures of a profiled run
                are not figures)."""
                if args.profile or args.trace:
                    for target in targets:
                        target.server.send_signal(signal.SIGUSR1 if start else signal.SIGUSR2)
                    # the server writes its profile or trace
                    await asyncio.sleep(3 if args.profile and not start else 0.5)

            def in_turn(round_: int) -> list[Target]:
                """Each round, each server in turn; the order turns, so that neither always
                runs first (a machine's speed drifts within minutes)."""
                return targets[round_ % len(targets) :] + targets[: round_ % len(targets)]

            def fresh_instances(target: Target, name: str) -> list[Path]:
                """``--instances`` new instances of the target's patient, in ``name``."""
                folder = target.tmp / name
                target.uids.extend(write_instances(args.instances, target.record_id, folder))
                return sorted(folder.iterdir())

            print(f"machine speed: a fixed Python loop takes {speed_reference():.0f} ms now")
            for round_ in range(args.rounds):
                for target in in_turn(round_):
                    files = fresh_instances(target, f"files-{round_}")
                    cpu0 = cpu_seconds(target.server.pid)
                    await phase(True)
                    elapsed = await storescu(target.dicom_port, "BENCH", "TELECONSULT", files)
                    await phase(False)
                    rate = len(files) / elapsed
                    target.rates.append(rate)
                    cpu_store = (cpu_seconds(target.server.pid) - cpu0) / len(files) * 1000
                    target.cpu_ms.append(cpu_store)
                    size = sum(f.stat().st_size for f in files) / len(files) / 1e6
                    label = f" [{target.name}]" if len(targets) > 1 else ""
                    print(
                        f"C-STORE{label} (storescu -> our SCP: parse, check, fsync, rename, row, "
                        f"audit): {len(files)} x {size:.2f} MB 512x512 CT in {elapsed:.2f} s = "
                        f"{rate:.0f} instances/s (target >= 150); server CPU {cpu_store:.1f} ms "
                        f"an instance"
                    )
                    if args.trace:
                        print_trace(args.trace / target.name)
            for target in targets:
                if len(target.rates) > 1:
                    rates = target.rates
                    print(
                        f"  one association [{target.name}] over {len(rates)} rounds: median "
                        f"{statistics.median(rates):.0f} instances/s, {min(rates):.0f}-"
                        f"{max(rates):.0f} (target >= 150); met in "
                        f"{sum(r >= 150 for r in rates)} of {len(rates)}; server CPU median "
                        f"{statistics.median(target.cpu_ms):.1f} ms an instance"
                    )
            if len(targets) > 1:
                base = targets[0]
                print(
                    f"  ours / baseline, round by round: {ratios(ours.rates, base.rates)}"
                    f"; server CPU an instance: median "
                    f"{statistics.median(ours.cpu_ms):.1f} against "
                    f"{statistics.median(base.cpu_ms):.1f} ms"
                )
            rate = ours.rates[-1]
            if not args.no_reference:
                files = sorted((ours.tmp / f"files-{args.rounds - 1}").iterdir())
                reference = await dcmtk_storescp_rate(files, ours.tmp / "storescp")
                nodelay = {**os.environ, "TCP_NODELAY": "1"}
                fast = await dcmtk_storescp_rate(files, ours.tmp / "storescp-nodelay", nodelay)
                print(
                    f"  side by side, DCMTK storescp (C++, writes files, no fsync, no checks): "
                    f"{reference:.0f} instances/s as built (Nagle on), {fast:.0f}/s with "
                    f"TCP_NODELAY=1 (storescu's own ceiling); ours / DCMTK = {rate / reference:.2f}"
                )
            # storescu itself limits one association: several senders at once (as a PACS
            # forwarding to us does) show what the SCP takes.
            n = args.associations
            parallel_rates: dict[str, list[float]] = {t.name: [] for t in targets}
            for round_ in range(args.parallel_rounds):
                for target in in_turn(round_):
                    files2 = fresh_instances(target, f"parallel-{round_}")
                    chunks = [files2[i::n] for i in range(n)]
                    await phase(True)
                    started, cpu0 = time.perf_counter(), cpu_seconds(target.server.pid)
                    await asyncio.gather(
                        *(
                            storescu(target.dicom_port, "BENCH", "TELECONSULT", chunk)
                            for chunk in chunks
                        )
                    )
                    parallel = len(files2) / (time.perf_counter() - started)
                    await phase(False)
                    parallel_rates[target.name].append(parallel)
                    cpu_store = (cpu_seconds(target.server.pid) - cpu0) / len(files2) * 1000
                    label = f" [{target.name}]" if len(targets) > 1 else ""
                    print(
                        f"C-STORE{label} with {n} associations at once: {parallel:.0f} "
                        f"instances/s (target >= 150); server CPU {cpu_store:.1f} ms an instance"
                    )
            if len(targets) > 1 and args.parallel_rounds > 1:
                print(
                    f"  {n} associations, ours / baseline, round by round: "
                    f"{ratios(parallel_rates[ours.name], parallel_rates[targets[0].name])}"
                )

            if args.frames and args.renders:
                await retrieval_phases(http, targets, args, phase, in_turn)
            print(f"machine speed: a fixed Python loop takes {speed_reference():.0f} ms now")
        finally:
            for target in targets:
                await stop_target(target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--renders", type=int, default=400)
    parser.add_argument(
        "--retrieval-rounds",
        type=int,
        default=1,
        help="repeat the frames and renderings N times (each cold pass on instances not rendered"
        " before) and print the p95s' medians",
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the one-association C-STORE N times (fresh instances each time) and print "
        "the median and range: this machine's speed varies from run to run",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip DCMTK's storescp beside ours"
    )
    parser.add_argument(
        "--parallel-rounds",
        type=int,
        default=1,
        help="repeat the several-associations C-STORE N times (alternated with the baseline's)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout (e.g. main): its server too, the one-association rounds "
        "alternated with ours, and the ratio printed",
    )
    parser.add_argument(
        "--data-parent",
        type=Path,
        help="where the servers' data directories are made (default: the system's temporary "
        "directory)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="time each step of the one-association C-STORE (bench/traced_server.py) and print "
        "them round by round, median and p90; files in DIR/<server>/<n>.json",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the server's event loop phase by phase into DIR/<server>/<n>.prof (with "
        "--rounds 1: 1 C-STORE, 2 C-STORE over several associations, 3 frames, 4 PNG cold, "
        "5 PNG warm)",
    )
    asyncio.run(main(parser.parse_args()))
