"""Instructions per fast-path request, counted by valgrind: an A/B that noise cannot blur.

    .venv/bin/python bench/instructions.py [--baseline DIR] [--requests 200 1000]

Runs each row of `bench/hotpath.py` (public, session, API key, browser-like) under
`valgrind --tool=callgrind` twice per tree, with N1 and N2 requests, and prints
(I2 - I1) / (N2 - N1): the instructions this process executes per fast-path request of that
row; start-up, sign-up and warm-up cancel out in the difference. Callgrind counts instructions,
not seconds, so the figure repeats from run to run whatever else the machine is doing: use it
to compare two versions of the hot path on a noisy VM, where a 5 % change hides in the
wall-clock noise. It does not count the upstream (another process) or time spent waiting.
Needs Debian's `valgrind`; one tree takes about twelve minutes with the default counts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOTPATH = ROOT / "bench" / "hotpath.py"
"""This tree's driver for every tree: `PYTHONPATH` picks the `gateway` package it measures."""
ROWS = ("gw-public", "gw-session", "gw-apikey", "gw-browser")  # bench/hotpath.py's rows
_COLLECTED = re.compile(r"Collected : (\d+)")


def count(tree: Path, row: str, requests: int, python: str) -> int:
    """Instructions callgrind counted for one `hotpath.py` run of one row of `tree`."""
    with tempfile.TemporaryDirectory(prefix="gw-instr-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        done = subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out",
                python, str(HOTPATH), "--row", row, "--requests", str(requests),
            ],
            cwd=tmp, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        raise SystemExit(f"hotpath.py under valgrind failed ({tree}):\n{tail}")
    return int(found[-1])


def per_request(tree: Path, row: str, low: int, high: int, python: str) -> float:
    """Instructions per request of one row of `tree`'s fast path (see the module docstring)."""
    return (count(tree, row, high, python) - count(tree, row, low, python)) / (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--requests", type=int, nargs=2, default=(200, 1000), metavar="N")
    parser.add_argument("--row", action="append", choices=ROWS, help="only this row (repeatable)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    low, high = sorted(args.requests)
    if low == high:
        parser.error("the two request counts must differ")
    trees = [("this tree", ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    print(f"{'row':<11}" + "".join(f"{name:>14}" for name, _ in trees), flush=True)
    for row in args.row or ROWS:
        counts = [per_request(tree, row, low, high, sys.executable) for _, tree in trees]
        line = f"{row:<11}" + "".join(f"{c:14,.0f}" for c in counts)
        if len(counts) == 2:
            line += f"  {counts[0] / counts[1] - 1:+.1%}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
