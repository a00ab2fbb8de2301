"""py-spy profiles of a running gateway under wrk load, summarised as text.

`profile_rows` runs each row's wrk load once more while `py-spy record --format raw` samples
the gateway process, then ranks functions by own time (the innermost frame of each sample)
and by inclusive time (any frame of the sample). py-spy comes from PyPI (`pip install
py-spy`) and needs ptrace rights over the gateway (root, or the same user with ptrace allowed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from bench import throughput as tp
except ModuleNotFoundError:
    import throughput as tp  # type: ignore[no-redef]

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
TOP = 18
LOOP_FRAME = "Runner.run "


def _frame(raw: str) -> str:
    """`function (path)` without the line number, the path shortened to its last 2 parts."""
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    func, path = match.groups()
    return f"{func} ({'/'.join(Path(path).parts[-2:])})"


def summarize(raw_text: str, top: int = TOP) -> str:
    """The top functions by own and by inclusive share of the samples, as text."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw_text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stack, count = match.group(1), int(match.group(2))
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames or not any(f.startswith(LOOP_FRAME) for f in frames):
            continue  # another thread (SQLite, hashing), or the loop waiting in C
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            incl[name] += count
    if not total:
        return "(no samples)"
    out = [f"{total} samples on the event-loop thread; own time:"]
    out += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out.append("inclusive time (frames under the event loop):")
    nested = [(name, n) for name, n in incl.most_common() if n < total * 0.98]
    out += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in nested[:top]]
    return "\n".join(out)


def record(pid: int, seconds: int, out: Path, load: Any, rate: int = 250) -> str:
    """Samples `pid` for `seconds` while `load()` runs in a thread; returns the summary."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate)]
    cmd += ["--format", "raw", "-o", str(out), "--nonblocking"]
    worker = threading.Thread(target=load)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    worker.start()
    _, err = proc.communicate(timeout=seconds + 60)
    worker.join(seconds + 60)
    if proc.returncode != 0 or not out.exists():
        return f"(py-spy failed: {err.decode(errors='replace')[-300:]})"
    return summarize(out.read_text())


def profile_rows(
    rows: Sequence[tuple[str, str, str, tuple[str, ...]]],
    pid: int,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, str]:
    """One profile per row: the row's wrk load for `args.duration` s under py-spy."""
    wrk = shutil.which("wrk") or "wrk"
    seconds = max(2, round(args.duration))
    found = {}
    for name, base, path, headers in rows:
        print(f"profiling {name}", file=sys.stderr)

        def load(base: str = base, path: str = path, headers: tuple[str, ...] = headers) -> None:
            tp.run_wrk(
                wrk, base + path, duration=seconds, connections=args.connections, headers=headers
            )

        found[name] = record(pid, seconds, workdir / f"{name}.raw", load)
        keep = tp.RESULTS_DIR / f"spy-{name}.txt"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(found[name] + "\n")
    return found
