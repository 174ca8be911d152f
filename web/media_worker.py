"""A media worker process with the recording tap: ``python -m web.media_worker``.

``media`` may not import ``recording``; this module, in the package that composes the process,
hands the recording tap to the worker's pool.
"""

from __future__ import annotations

from media.worker_process import main as worker_main
from recording import recording_tap


def main() -> None:
    worker_main(tap_factory=recording_tap)


if __name__ == "__main__":
    main()
