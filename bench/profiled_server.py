"""The server under cProfile, phase by phase, for ``bench/dicom_ingest.py --profile DIR``.

    python bench/profiled_server.py DIR serve --config ...

SIGUSR1 starts a profile of the event loop's thread, SIGUSR2 stops it and writes
``DIR/<n>.prof`` (n = 1, 2, ...), so each phase of a bench is profiled alone. Not a test.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the tree the bench runs it in (a baseline's, or ours)

from web.cli import main

out = Path(sys.argv[1])
profiles: list[cProfile.Profile] = []
written = [0]


def start(*_: object) -> None:
    profile = cProfile.Profile(time.thread_time)  # CPU time of the loop thread, not wall time
    profiles.append(profile)
    profile.enable()


def stop(*_: object) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if profiles:
        profile = profiles.pop()
        profile.disable()
        written[0] += 1
        profile.dump_stats(out / f"{written[0]}.prof")


if __name__ == "__main__":  # not when the imaging workers (spawned) import this module
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.exit(main(sys.argv[2:]))
