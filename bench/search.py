"""``python -m bench search``: the debugging tools on a store of about 1 GB.

The store: browser-agent sessions (300 turns, a 750 KB screenshot in each tool
result, about half repeating the one before) and coding-agent sessions (2,000
entries), saved turn by turn / whole, as :mod:`bench.compare` makes them.  Then,
each in a fresh process (``python -m eventlog``, as a user runs it): ``grep`` of a
regular expression across every session (issue 20: under 30 s for 1 GB), ``grep``
with no hit, ``stats`` of the largest session and ``compare`` of two browser runs.
Peak resident memory of each process is reported (its own ``VmHWM`` on Linux).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import eventlog
from eventlog.samples import browser_session, coding_session

from .postgres import Target


def _build(path: Path, quick: bool) -> tuple[int, int]:
    browsers, turns, codings, entries = (2, 60, 4, 500) if quick else (9, 300, 20, 2000)
    with eventlog.open(str(path)) as store:
        for k in range(browsers):
            for data in browser_session(turns, seed=k):
                store.save(f"browser-{k}", data)
        for k in range(codings):
            store.save(f"coding-{k}", deque(coding_session(entries, seed=100 + k), maxlen=1)[0])
    return browsers + codings, os.path.getsize(path)


_WRAP = """\
import resource, runpy, sys
sys.argv = ["eventlog", *sys.argv[1:]]
try:
    runpy.run_module("eventlog", run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
try:  # this process's own high-water mark (ru_maxrss may carry the parent's over fork + exec)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stderr.write(f"\\n@peak {peak}\\n")
sys.exit(code)
"""


def _cli(*args: str) -> tuple[float, int, int, str]:
    """(seconds, peak resident memory in bytes, exit status, stdout) of ``eventlog
    ARGS`` in a fresh process."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAP, *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    lines = done.stderr.strip().splitlines()
    if done.returncode not in (0, 1) or not lines or not lines[-1].startswith("@peak ") or len(lines) > 1:
        raise RuntimeError(f"eventlog {' '.join(args)}: {done.stderr.strip()}")
    return elapsed, int(lines[-1].split()[1]) * 1024, done.returncode, done.stdout


def run(quick: bool, tmp: Path) -> tuple[str, list[tuple[str, list[list[str]]]], list[Target]]:
    path = tmp / "search.db"
    t = time.perf_counter()
    sessions, size = _build(path, quick)
    built = time.perf_counter() - t
    machine = (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs{', quick' if quick else ''}; "
        f"store: {sessions} sessions, {size / 1e6:,.0f} MB (built in {built:.0f} s)"
    )
    rows = [["command", "time", "peak RSS", "exit", "output lines"]]
    figures: dict[str, float] = {}
    for name, args in (
        ("grep -E 'Lisbon|yaml fi\\w+ lib'", ["grep", str(path), "-E", r"Lisbon|yaml fi\w+ lib"]),
        ("grep (no hit)", ["grep", str(path), "no such text anywhere"]),
        ("stats browser-0", ["stats", str(path), "browser-0"]),
        ("compare browser-0 browser-1", ["compare", str(path), "browser-0", "browser-1"]),
    ):
        seconds, peak, status, out = _cli(*args)
        figures[name] = seconds
        rows.append([name, f"{seconds:.2f} s", f"{peak / 1e6:,.0f} MB", str(status), str(len(out.splitlines()))])
    per_gb = figures["grep -E 'Lisbon|yaml fi\\w+ lib'"] / (size / 1e9)
    targets = [Target("grep of every session, seconds per GB of store", f"{per_gb:.1f} s/GB", per_gb, "< 30",
                      per_gb < 30)]  # fmt: skip
    return machine, [("The debugging tools, each in a fresh process", rows)], targets
