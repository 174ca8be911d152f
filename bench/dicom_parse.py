"""The ingest parser's cost for one 512x512 CT (pydicom-data's 693_UNCI), side by side with
another checkout's parser.

    .venv/bin/python bench/dicom_parse.py [--baseline-tree DIR] [--rounds 3] [--parses 300]

Each tree's parser runs in its own process (``DIR``'s ``consult/imaging/parse.py``), the two
alternated ``--rounds`` times; a round prints, for each tree, the best of three batches of
``--parses`` parses, in ms a parse, both ways the server parses: ``parse_bytes`` (STOW-RS, a
file read whole) and ``parse_parts`` (C-STORE: the file meta and the received dataset as two
buffers). The parse runs under the GIL, in the association's time for each instance. Not a
test: figures for the notes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MEASURE = """
import io, json, sys, time
sys.path.insert(0, ".")
import pydicom
from pydicom.data import get_testdata_file
from consult.imaging.parse import parse_bytes, parse_parts

buffer = io.BytesIO()
pydicom.dcmread(get_testdata_file("693_UNCI.dcm")).save_as(buffer, enforce_file_format=True)
data = buffer.getvalue()
meta_end = 144 + int.from_bytes(data[140:144], "little")
header, body = data[:meta_end], data[meta_end:]
parses = int(sys.argv[1])
ways = {
    "parse_bytes": lambda: parse_bytes(data),
    "parse_parts": lambda: parse_parts(header, memoryview(body)),
}
result = {}
for name, parse in ways.items():
    for _ in range(50):
        parse()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(parses):
            parse()
        best = min(best, (time.perf_counter() - started) / parses)
    result[name] = best * 1000
print(json.dumps(result))
"""


def measure(tree: Path, parses: int) -> dict[str, float]:
    """Parse in a process of its own, with ``tree``'s parser."""
    output = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(parses)],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, help="another checkout, e.g. main")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parses", type=int, default=300)
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.baseline_tree is not None:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            figures = measure(tree, args.parses)
            runs[name].append(figures)
            shown = ", ".join(f"{way} {ms:.3f} ms" for way, ms in figures.items())
            print(f"round {round_ + 1}, {name}: {shown}")
    for way in ("parse_bytes", "parse_parts"):
        medians = {name: statistics.median(r[way] for r in runs[name]) for name in trees}
        line = ", ".join(f"{name} {ms:.3f} ms" for name, ms in medians.items())
        if "baseline" in medians:
            line += f"; this tree / baseline = {medians['this tree'] / medians['baseline']:.2f}"
        print(f"{way}, median a parse: {line}")


if __name__ == "__main__":
    main()
