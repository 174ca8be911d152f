"""What a subscriber's transport-cc feedback costs the server, per packet it reports.

    .venv/bin/python bench/twcc_feedback.py [--reports 11,60] [--feedbacks 400] [--rounds 3]
        [--baseline-tree DIR]

Every packet forwarded on transport-cc comes back in a feedback: Chrome sends one every 50 ms at
a few Mbit/s, so a subscriber of two 1 Mbit/s videos reports ~11 packets a feedback (the load of
bench/sfu_forwarding.py). This times ``TransportWideSender.on_feedback`` (parse, match to what
was sent, the estimator's windows, groups and trendline, and its rate control) over
``--feedbacks`` feedbacks of ``--reports`` packets each (1100 bytes, sent 0.8-1.4 ms apart,
arriving with jitter, one in fifty lost), and prints microseconds per reported packet, the best
of ``--rounds``.

With --baseline-tree DIR, the same runs against DIR's media/ (e.g. a checkout of the tree
before a change), alternated with this tree's in one run, each in its own process; the estimate
both reach is printed too, and must be the same for the same feedback.

Not a test: figures for the notes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(reports: int, feedbacks: int) -> tuple[float, int | None]:
    """(us per reported packet, the estimate at the end) with the media/ on sys.path."""
    from media.twcc import TransportFeedback, TransportWideSender, build_feedback

    sender = TransportWideSender()
    sent_at = 1_000_000
    offset = 5_000_000  # the receiver's clock against ours
    spent = 0.0
    for k in range(feedbacks):
        numbers = []
        for i in range(reports):
            sequence = sender.next_sequence()
            sent_at += 800 + (i % 3) * 300
            sender.sent(sequence, 1100, sent_at)
            numbers.append((sequence, sent_at))
        reference = (numbers[0][1] + offset) // 64_000
        arrivals = tuple(
            None if i % 50 == 7 else at + offset + 20_000 + (i * 37 % 900) - reference * 64_000
            for i, (_, at) in enumerate(numbers)
        )
        data = build_feedback(TransportFeedback(1, 2, numbers[0][0], reference, k & 0xFF, arrivals))
        start = time.perf_counter()
        sender.on_feedback(data, sent_at + 30_000)
        spent += time.perf_counter() - start
    return spent / (reports * feedbacks) * 1e6, sender.estimator.estimate


def run_in(tree: Path, reports: int, feedbacks: int) -> tuple[float, int | None]:
    """:func:`measure` in a process of its own, importing ``tree``'s media/."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(reports), str(feedbacks)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(out.splitlines()[-1])
    return figures["us"], figures["estimate"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", default="11,60", help="packets a feedback, comma-separated")
    parser.add_argument("--feedbacks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", default=None)
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        us, estimate = measure(*args.worker)
        print(json.dumps({"us": us, "estimate": estimate}))
        return
    trees = {"this tree": HERE}
    if args.baseline_tree:
        trees = {"baseline": Path(args.baseline_tree).resolve(), **trees}
    for reports in (int(n) for n in args.reports.split(",")):
        best: dict[str, tuple[float, int | None]] = {}
        for _ in range(args.rounds):
            for name, tree in trees.items():  # alternated: the machine's drift touches both
                figure = run_in(tree, reports, args.feedbacks)
                if name not in best or figure[0] < best[name][0]:
                    best[name] = figure
        line = ", ".join(
            f"{name} {us:.2f} us (estimate {estimate})" for name, (us, estimate) in best.items()
        )
        ratio = ""
        if "baseline" in best:
            ratio = f"; this tree / baseline {best['this tree'][0] / best['baseline'][0]:.2f}"
        print(f"{reports} reports a feedback, per reported packet: {line}{ratio}", flush=True)


if __name__ == "__main__":
    main()
