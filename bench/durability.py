"""What ``synchronous`` costs: FULL (the default) against NORMAL and OFF.

One run, one machine, one directory, the same workloads for each setting, the
settings taking turns (best of ``reps`` for throughput, latencies pooled):

* ``save()`` after every entry of a coding session (one commit per save);
* ``append()`` of one entry per call (one small commit each);
* ``append()`` of ~1 KB entries in batches of 1,000 (few, large commits);
* with ``strace`` on the path: ``fsync``/``fdatasync`` calls per append, counted in
  a child process (the difference between a short and a long run, so opening and
  closing are not counted).  This shows what the setting does, not only what it
  costs: FULL syncs the WAL at every commit, NORMAL and OFF do not.

Every figure is also given as a ratio to FULL.  The cost of a sync depends on the
disk (and on a virtual machine, on the host's cache policy); the directory's file
system is printed with the results, since on tmpfs a sync costs nothing.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import eventlog
from eventlog.samples import bulk_entries, coding_session

SETTINGS = ("FULL", "NORMAL", "OFF")


@dataclass
class Measured:
    """One setting's figures (seconds, per second, or counts)."""

    setting: str
    save_p50: float = 0.0
    save_p99: float = 0.0
    saves_per_s: float = 0.0
    append_p50: float = 0.0
    append_p99: float = 0.0
    appends_per_s: float = 0.0
    bulk_entries_per_s: float = 0.0
    syncs_per_append: float | None = None
    save_lat: list[float] = field(default_factory=list, repr=False)
    append_lat: list[float] = field(default_factory=list, repr=False)


def filesystem(path: str) -> str:
    """The type of the file system holding ``path`` (Linux), else "unknown"."""
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1].replace("\\040", " ")
                if os.path.realpath(path).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _saves(path: str, setting: str, entries: int) -> tuple[list[float], float]:
    """Latency of each save() and saves per second of time spent in save() (making
    the next state of the session is not counted)."""
    lat: list[float] = []
    with eventlog.open(path, synchronous=setting) as store:
        for data in coding_session(entries, seed=5):
            t = time.perf_counter()
            store.save("s", data)
            lat.append(time.perf_counter() - t)
    return lat, len(lat) / sum(lat)


@functools.cache
def _entries(count: int, seed: int, size: int) -> list[dict[str, Any]]:
    return bulk_entries(count, seed=seed, size=size)


def _appends(path: str, setting: str, count: int) -> tuple[list[float], float]:
    entries = _entries(count, 6, 600)
    lat: list[float] = []
    with eventlog.open(path, synchronous=setting) as store:
        for entry in entries:
            t = time.perf_counter()
            store.append("a", [entry])
            lat.append(time.perf_counter() - t)
    return lat, count / sum(lat)


def _bulk(path: str, setting: str, total: int, batch: int) -> float:
    entries = _entries(total, 7, 1000)
    with eventlog.open(path, synchronous=setting) as store:
        start = time.perf_counter()
        for i in range(0, total, batch):
            store.append("b", entries[i : i + batch])
        return total / (time.perf_counter() - start)


_SYNC_CHILD = """
import sys
import eventlog
path, setting, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with eventlog.open(path, synchronous=setting) as store:
    for i in range(n):
        store.append("a", [{"id": str(i), "text": "x" * 500}])
"""


def _sync_calls(tmp: Path, setting: str, n: int) -> int | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    out = tmp / f"strace-{setting}-{n}.txt"
    db = tmp / f"strace-{setting}-{n}.db"
    cmd = [strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out)]
    res = subprocess.run([*cmd, sys.executable, "-c", _SYNC_CHILD, str(db), setting, str(n)], capture_output=True)
    if res.returncode != 0 or not out.exists():
        return None
    calls = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in ("fsync", "fdatasync"):
            calls += int(fields[3])
    return calls


def _syncs_per_append(tmp: Path, setting: str) -> float | None:
    short, long = _sync_calls(tmp, setting, 20), _sync_calls(tmp, setting, 220)
    if short is None or long is None:
        return None
    return (long - short) / 200


def run(quick: bool) -> tuple[str, list[Measured]]:
    """Measure every setting; returns the machine line and the figures."""
    entries, appends, bulk, reps = (200, 200, 10_000, 1) if quick else (1000, 1000, 50_000, 5)
    results = {s: Measured(s) for s in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="eventlog-durability-") as d:
        tmp = Path(d)
        fs = filesystem(d)
        for rep in range(reps):
            for s in SETTINGS if rep % 2 == 0 else reversed(SETTINGS):  # take turns, both orders
                m = results[s]
                lat, rate = _saves(str(tmp / f"save-{s}-{rep}.db"), s, entries)
                m.save_lat += lat
                m.saves_per_s = max(m.saves_per_s, rate)
                lat, rate = _appends(str(tmp / f"append-{s}-{rep}.db"), s, appends)
                m.append_lat += lat
                m.appends_per_s = max(m.appends_per_s, rate)
                m.bulk_entries_per_s = max(m.bulk_entries_per_s, _bulk(str(tmp / f"bulk-{s}-{rep}.db"), s, bulk, 1000))
        for m in results.values():
            m.save_p50, m.save_p99 = statistics.median(m.save_lat), _p(m.save_lat, 0.99)
            m.append_p50, m.append_p99 = statistics.median(m.append_lat), _p(m.append_lat, 0.99)
            m.syncs_per_append = _syncs_per_append(tmp, m.setting)
    machine = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}, WAL, "
        f"files on {fs}{', quick' if quick else ''}; {entries} saves, {appends} appends, "
        f"{bulk:,} bulk entries per setting, best of / pooled over {reps}"
    )
    return machine, list(results.values())


def _ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms" if x >= 1e-3 else f"{x * 1e6:.0f} µs"


def rows(measured: list[Measured]) -> list[list[str]]:
    """The table: each setting's figure, then each one's ratio to FULL."""
    by = {m.setting: m for m in measured}
    full = by["FULL"]
    others = [s for s in SETTINGS if s != "FULL"]
    out = [["measurement", *SETTINGS, *[f"{s} / FULL" for s in others]]]

    def line(label: str, attr: str, fmt: Any) -> None:
        values = [getattr(by[s], attr) for s in SETTINGS]
        base = getattr(full, attr)
        if any(v is None for v in values):
            out.append([label, *["-" if v is None else fmt(v) for v in values], *["-" for _ in others]])
            return
        ratios = [f"{getattr(by[s], attr) / base:.2f}" if base else "-" for s in others]
        out.append([label, *[fmt(v) for v in values], *ratios])

    line("save() after every entry: p50 latency", "save_p50", _ms)
    line("save() after every entry: p99 latency", "save_p99", _ms)
    line("save() after every entry: saves/s", "saves_per_s", lambda v: f"{v:,.0f}")
    line("append() of one entry: p50 latency", "append_p50", _ms)
    line("append() of one entry: p99 latency", "append_p99", _ms)
    line("append() of one entry: appends/s", "appends_per_s", lambda v: f"{v:,.0f}")
    line("append() of 1,000 entries per call: entries/s", "bulk_entries_per_s", lambda v: f"{v:,.0f}")
    line("fsync/fdatasync calls per append (strace)", "syncs_per_append", lambda v: f"{v:.2f}")
    return out


def to_json(machine: str, measured: list[Measured]) -> dict[str, Any]:
    figures = []
    for m in measured:
        d = asdict(m)
        d.pop("save_lat")
        d.pop("append_lat")
        figures.append(d)
    return {"machine": machine, "settings": figures}


def fs_warning(machine: str) -> str | None:
    if re.search(r"files on (tmpfs|ramfs)", machine):
        return "warning: the files were on a RAM file system, where a sync costs nothing"
    return None
