"""The server under cProfile, phase by phase, for ``bench/dicom_ingest.py --profile DIR``.

    python bench/profiled_server.py DIR serve --config ...

SIGUSR1 starts a profile of the event loop's thread, SIGUSR2 stops it and writes
``DIR/<n>.prof`` (n = 1, 2, ...), so each phase of a bench is profiled alone. Not a test.
"""

from __future__ import annotations

import cProfile
import signal
import time
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from web.cli import main  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
state: dict[str, cProfile.Profile | int | None] = {"profile": None, "n": 0}


def start(*_: object) -> None:
    profile = cProfile.Profile(time.thread_time)  # CPU time of the loop thread, not wall time
    state["profile"] = profile
    profile.enable()


def stop(*_: object) -> None:
    profile = state["profile"]
    if isinstance(profile, cProfile.Profile):
        profile.disable()
        n = int(state["n"] or 0) + 1  # type: ignore[call-overload]
        state["n"] = n
        profile.dump_stats(out / f"{n}.prof")
        state["profile"] = None


signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.exit(main(sys.argv[2:]))
