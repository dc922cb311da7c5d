"""What a writer waits while another process writes back to back.

A child process appends 1,000 entries per call in a tight loop (each append
encodes them inside its transaction, so it holds the write lock nearly all the
time).  Meanwhile this process makes each kind of write call ``tries`` times with
a 2 s busy timeout (1 s with ``--quick``), 20 ms apart, and times each call from
start to return: ``open`` (and close), ``append``, ``save``, ``delete`` and
``compact``.  Failed calls are those that ran out of busy timeout.  Both sides use
``synchronous="NORMAL"``, so that the times are waits and work, not syncs.

Measured twice: with writers taking turns (:mod:`eventlog.backends.sqlite.turnstile`, the default)
and without (both processes with the turns switched off, as on a system without
open-file-description locks; fewer tries, since each failure costs the whole busy
timeout).  Also: the uncontended time of each call, the busy writer's appends per
second in each run (what yielding costs it), and what taking turns costs a single
writer (``append()`` of one small entry, turns on and off taking turns).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import eventlog
from eventlog.backends.sqlite import turnstile

ROOT = Path(__file__).resolve().parent.parent

HOT = """
import sys, time
import eventlog
from eventlog.backends.sqlite import turnstile
path, turns = sys.argv[1], sys.argv[2] == "on"
turnstile._OFD = turnstile._OFD and turns
batch = [{"id": i, "role": "tool", "text": "result line %d" % i, "n": [1, 2, 3]} for i in range(1000)]
with eventlog.open(path, synchronous="NORMAL", snapshot_every=0) as store:
    n = 0
    start = time.perf_counter()
    while True:
        store.append("hot", batch)
        n += 1
        if n == 5:
            print("ready", flush=True)
        if n % 20 == 0:
            print(n / (time.perf_counter() - start), flush=True)
"""

KINDS = ("open", "append", "save", "delete", "compact")
#: Seconds between two calls of the measuring side (not timed).
PAUSE = 0.02


def _calls(path: str, store: eventlog.Store, timeout: float) -> dict[str, Callable[[int], Any]]:
    return {
        "open": lambda i: eventlog.open(path, busy_timeout=timeout, synchronous="NORMAL").close(),
        "append": lambda i: store.append("cold", [{"id": f"a{i}"}]),
        "save": lambda i: store.save("saved", {"entries": [{"id": f"s{i}"}], "n": i}),
        "delete": lambda i: store.delete(f"gone-{i}"),
        "compact": lambda i: store.compact(),
    }


def _measure(path: str, tries: int, timeout: float) -> dict[str, tuple[list[float], int]]:
    """``kind -> (seconds of each call that succeeded, failures)``."""
    out: dict[str, tuple[list[float], int]] = {k: ([], 0) for k in KINDS}
    with eventlog.open(path, busy_timeout=timeout, synchronous="NORMAL") as store:
        calls = _calls(path, store, timeout)
        for i in range(tries):
            with suppress(eventlog.StorageError):
                store.append(f"gone-{i}", [{"id": "x"}])  # something for delete (not timed)
            for kind in KINDS:
                time.sleep(PAUSE)  # an occasional writer, not a second busy one
                t = time.perf_counter()
                try:
                    calls[kind](i)
                except eventlog.StorageError:
                    out[kind] = (out[kind][0], out[kind][1] + 1)
                    continue
                out[kind][0].append(time.perf_counter() - t)
    return out


def _contended(tmp: Path, turns: bool, tries: int, timeout: float) -> tuple[dict[str, tuple[list[float], int]], float]:
    path = str(tmp / f"contended-{turns}.db")
    eventlog.open(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOT, path, "on" if turns else "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    saved = turnstile._OFD
    try:
        if proc.stdout.readline() != "ready\n":
            raise RuntimeError(f"the busy writer did not start: {proc.stderr.read() if proc.stderr else ''}")
        turnstile._OFD = saved and turns
        measured = _measure(path, tries, timeout)
    finally:
        turnstile._OFD = saved
        proc.kill()
        out, _ = proc.communicate()
    rates = [float(x) for x in out.split()]
    return measured, rates[-1] if rates else 0.0


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _single_writer(tmp: Path, n: int, reps: int) -> tuple[float, float]:
    """p50 of append() of one small entry, turns on and off (alternating runs)."""
    lat: dict[bool, list[float]] = {True: [], False: []}
    saved = turnstile._OFD
    try:
        for r in range(reps):
            for turns in (True, False):
                turnstile._OFD = saved and turns
                with eventlog.open(str(tmp / f"single-{r}-{turns}.db"), synchronous="NORMAL") as store:
                    for i in range(n):
                        t = time.perf_counter()
                        store.append("s", [{"id": i, "text": "a small entry"}])
                        lat[turns].append(time.perf_counter() - t)
    finally:
        turnstile._OFD = saved
    return statistics.median(lat[True]), statistics.median(lat[False])


def run(quick: bool) -> list[list[str]]:
    tries, tries_off, timeout = (20, 5, 1.0) if quick else (50, 10, 2.0)
    rows = [["turns", "call", "tries", "failed", "p50", "p99", "max", "alone p50", "busy writer appends/s"]]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        alone_path = str(tmp / "alone.db")
        eventlog.open(alone_path).close()
        alone = _measure(alone_path, tries, timeout)
        for turns, n in ((True, tries), (False, tries_off)):
            measured, rate = _contended(tmp, turns, n, timeout)
            for kind in KINDS:
                lat, failed = measured[kind]
                cells = [_ms(_p(lat, 0.5)), _ms(_p(lat, 0.99)), _ms(max(lat))] if lat else ["-", "-", "-"]
                rows.append(
                    ["on" if turns else "off", kind, str(n), str(failed), *cells,
                     _ms(statistics.median(alone[kind][0])), f"{rate:.0f}"]
                )  # fmt: skip
        on, off = _single_writer(tmp, 300 if quick else 2000, 1 if quick else 3)
    rows.append(["single writer", "append", "-", "-", f"{on * 1e6:.0f} µs (turns off: {off * 1e6:.0f} µs)",
                 "-", "-", "-", "-"])  # fmt: skip
    return rows
