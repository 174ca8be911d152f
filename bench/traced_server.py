"""The server with its C-STORE steps timed, phase by phase, for ``bench/dicom_ingest.py --trace``.

    python bench/traced_server.py DIR serve --config ...

Each step of an association's C-STORE is wrapped to note when it started and ended (and the
CPU time of the thread that ran it): each ``recv`` of the association's socket, the handler,
the write and parse of the received dataset, the transaction and its directory fsync, and
each ``send``. SIGUSR1 starts a phase, SIGUSR2 ends it and writes ``DIR/<n>.json`` (n = 1,
2, ...); :func:`breakdown` turns one into the steps of a cycle, from one response to the next.
Not a test; the wrappers cost a few microseconds a step.
"""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path.cwd()))  # the tree the bench runs it in (a baseline's, or ours)

Event = tuple[str, float, float, float]
"""A step's name, its start and end (``perf_counter`` seconds) and the CPU time it took."""

_events: list[Event] = []
_lock = threading.Lock()


def _timed(owner: Any, name: str, step: str) -> None:
    inner: Callable[..., Any] | None = getattr(owner, name, None)
    if inner is None:  # an older tree without this step
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            with _lock:
                _events.append((step, started, time.perf_counter(), time.thread_time() - cpu))

    setattr(owner, name, timed)


def install() -> None:
    import pynetdicom.transport

    from consult.imaging import parse, store
    from consult.imaging.ingest_sqlite import SqliteIngest
    from web import dicom_limits, dicom_scp

    _timed(dicom_limits.BoundedRecv, "__call__", "recv")
    _timed(dicom_scp.DicomScp, "_on_store", "handler")
    _timed(store.ImagingStore, "prepare_received", "write and parse")
    _timed(store, "write_all", "write")
    _timed(parse, "parse_parts", "parse")
    _timed(SqliteIngest, "write", "transaction")
    _timed(SqliteIngest, "_sync", "directory fsync")
    _timed(pynetdicom.transport.AssociationSocket, "send", "send")


def breakdown(events: list[Event]) -> list[tuple[str, float, float, float | None]]:
    """The steps of one association's cycles: (what, median ms, p90 ms, median CPU ms of the
    thread that ran the step, or None where the step spans threads) each. A cycle runs from
    one response sent to the next; its steps are the sender's turn (the response out to the
    next request's first bytes read), the request's arrival, pynetdicom's hand-over to the
    handler, the handler's steps and the response going out. A step whose CPU is well under
    its time waited (for the disk, the GIL, another thread); one whose CPU is near it ran."""
    events = sorted(events, key=lambda e: e[1])
    cycles: list[dict[str, Any]] = []
    current: dict[str, Any] = {"recv": []}
    for step, start, end, cpu in events:
        if step == "recv":
            current["recv"].append((start, end))
        elif step == "send" and "handler" in current:
            current["send"] = (start, end)
            cycles.append(current)
            current = {"recv": []}
        elif step != "send":
            current[step] = (start, end, cpu)
    rows: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}

    def add(what: str, seconds: float, cpu: float | None = None) -> None:
        rows.setdefault(what, []).append(seconds * 1000)
        if cpu is not None:
            cpus.setdefault(what, []).append(cpu * 1000)

    for last, cycle in itertools.pairwise(cycles):
        reads, handler = cycle["recv"], cycle["handler"]
        if not reads:
            continue
        sender = reads[0][1] - last["send"][1]
        add("sender's turn (response out -> next request's first read)", sender)
        add("request arriving (first read -> last read)", reads[-1][1] - reads[0][1])
        add("pynetdicom hands it over (last read -> handler)", handler[0] - reads[-1][1])
        for step in ("write and parse", "write", "parse", "transaction", "directory fsync"):
            if step in cycle:
                start, end, cpu = cycle[step]
                add(f"  {step}", end - start, cpu)
        add("handler, in all", handler[1] - handler[0], handler[2])
        add("response out (handler returns -> sent)", cycle["send"][1] - handler[1])
        add("cycle", cycle["send"][1] - last["send"][1])
    return [
        (
            what,
            statistics.median(values),
            sorted(values)[int(0.9 * (len(values) - 1))],
            statistics.median(cpus[what]) if what in cpus else None,
        )
        for what, values in rows.items()
    ]


def _phase_start(*_: object) -> None:
    with _lock:
        _events.clear()


def _phase_end(*_: object) -> None:
    out.mkdir(parents=True, exist_ok=True)
    written[0] += 1
    with _lock:
        events, _events[:] = list(_events), []
    (out / f"{written[0]}.json").write_text(json.dumps(events))


out = Path(sys.argv[1]) if __name__ == "__main__" else Path()
written = [0]

if __name__ == "__main__":  # not when the imaging workers (spawned) import this module
    from web.cli import main

    install()
    signal.signal(signal.SIGUSR1, _phase_start)
    signal.signal(signal.SIGUSR2, _phase_end)
    sys.exit(main(sys.argv[2:]))
