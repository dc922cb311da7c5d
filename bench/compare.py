"""eventlog side by side with the session stores people use today (issues 5 and 16).

The systems (``bench/systems.py``) run in one process, one after another, each on
its own SQLite file with the same settings: WAL journal, the ``synchronous`` given
to the bench, and a 2,000,000-byte ``SQLITE_LIMIT_LENGTH`` (a Durable Object's cell
limit) except for the system named "no limit".  A system that fails is reported as
FAILED with its error and where it happened; one whose ``load()`` does not give back
what was saved is reported WRONG; one that cannot run here says why.

Workloads, all generated from seeds (``eventlog.samples``), full size / ``--quick``:

* **coding**: a coding agent's session of 1,000 / 200 entries, saved after every
  entry (``append()`` of the new entry for the append systems);
* **browser**: 300 / 40 turns, each adding an assistant message and a tool result
  with a screenshot of 750 / 250 KB (~1 MB / 333 KB of base64), about half of them
  identical to the one before; saved after every turn;
* **tree**: a parent and 20 / 5 sub-agent sessions of 200 / 50 entries each (the
  parent's task calls in between), saved after every entry, then all loaded, then
  the whole tree deleted (eventlog: ``delete(root)`` and ``compact()``);
* **bulk**: 100,000 / 10,000 entries of ~1 KB appended in batches of 1,000 (a save
  of the whole session per batch for systems without an append), then loaded;
* **cold**: a 10,000 / 2,000-entry session stored, then opened and loaded in a fresh
  Python process (imports done before the clock starts; the file is in the OS page
  cache).

Figures per system and workload: total time of the saves (or appends); per-save
latency p50 and p99 over the first and the last tenth of the saves (at least 10);
load time on the same connection right after writing (eventlog answers from its
cache of folded sessions) and after reopening the file (a fresh connection, no
caches: the ratio is of this one), for **cold** in a fresh process; bytes on disk
(file plus WAL after a checkpoint); the largest cell (any column of any table, read
from the file); peak Python memory, from a second run of the same workload on a
fresh file under tracemalloc (after all timing is done, in two worker processes):
while writing, minus the peak of that run against a system that stores nothing (the
workload's own data), and while reopening and loading (above what was allocated
before, the loaded session included; for **cold**, in the fresh process).  Python's
allocations leave out native memory (SQLite's page cache, zstd's buffers), so for
**cold** the fresh process also reports how far its resident memory rose over open
and load (high-water mark minus resident at the open, the least over the runs; Linux
only).  Ratios
are to eventlog in the same run (``save()``; ``append()`` for bulk).  Best of three
runs, the systems taking turns, for **bulk**, and of seven for **cold** (each well
under a second, and a fresh process is the noisiest thing measured here); one run
for the others (``--quick``: one run everywhere).
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import zstandard

from eventlog import speedups
from eventlog.samples import SessionBuilder, browser_session, bulk_entries, coding_session

from .baselines import file_bytes
from .systems import LIMIT, NAMES, NullSystem, Raw, System, Unavailable, cold_load, digest, make, reopen

SID = 'agent-session:["inst-1","default","default"]'
Workload = Callable[[System, "Run"], None]


@dataclass(frozen=True)
class Sizes:
    coding: int
    turns: int
    image_bytes: int
    children: int
    child_entries: int
    bulk: int
    batch: int
    cold: int
    reps: int
    cold_reps: int


FULL = Sizes(coding=1000, turns=300, image_bytes=750_000, children=20, child_entries=200,
             bulk=100_000, batch=1000, cold=10_000, reps=3, cold_reps=7)  # fmt: skip
QUICK = Sizes(coding=200, turns=40, image_bytes=250_000, children=5, child_entries=50,
              bulk=10_000, batch=1000, cold=2_000, reps=1, cold_reps=1)  # fmt: skip


@dataclass
class Run:
    """What one system did on one workload."""

    key: str
    system: str
    workload: str
    status: str = "ok"  # ok | FAILED | WRONG | n/a | not installed
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds per save, in order
    where: str = ""  # progress, to say where a failure happened
    on_phase: Callable[[str], None] | None = field(default=None, repr=False)
    opened: list[System] = field(default_factory=list, repr=False)  # systems reopened by the workload

    def phase(self, name: str) -> None:
        """The workload moves on from writing to ``name`` ("load", "delete")."""
        self.where = name
        if self.on_phase is not None:
            self.on_phase(name)


class Wrong(Exception):
    """``load()`` did not give back what was saved."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Wrong(what)


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


# ---------------------------------------------------------------- workloads


def _write(system: System, run: Run, steps: Iterator[tuple[str, str | None, dict[str, Any]]]) -> dict[str, Any]:
    """Feed ``steps`` (session id, parent id, session state) to ``system``: ``save()``
    of the state, or ``append()`` of its new entries; time each call.  Returns the
    last state of every session (copies of the top level and the entries list)."""
    done: dict[str, int] = {}
    final: dict[str, Any] = {}
    lat = run.latencies
    for sid, parent, data in steps:
        run.where = f"save {len(lat) + 1}"
        if system.by_append:
            new = data["entries"][done.get(sid, 0) :]
            done[sid] = len(data["entries"])
            lat.append(_timed(system.append, sid, new, parent_id=parent))
        else:
            lat.append(_timed(system.save, sid, data, parent_id=parent))
        final[sid] = data
    run.metrics["total"] = sum(lat)
    return {sid: {**d, "entries": list(d["entries"])} for sid, d in final.items()}


def _load(system: System, run: Run, want: dict[str, Any], *, warm: bool = True) -> System:
    """Load every session of ``want`` on the same connection right after writing
    ("load_warm"; not with ``warm=False``), then reopen the file and load them again
    ("open", "load"); check both.  Returns the reopened system."""
    if warm:
        run.phase("warm")
        t = time.perf_counter()
        got = {sid: system.load(sid) for sid in want}
        run.metrics["load_warm"] = time.perf_counter() - t
        _check(all(_same(system, got[sid], want[sid]) for sid in want), "load() differs from the last save")
        del got
    if not isinstance(system, NullSystem):
        system.close()  # its caches freed before the load phase's memory is measured
    run.phase("load")
    t = time.perf_counter()
    system = reopen(system)
    run.opened.append(system)
    t1 = time.perf_counter()
    got = {sid: system.load(sid) for sid in want}
    run.metrics["open"], run.metrics["load"] = t1 - t, time.perf_counter() - t1
    _check(all(_same(system, got[sid], want[sid]) for sid in want), "load() after reopening differs")
    return system


def _same(system: System, got: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    if got is None:
        return False
    if system.by_append or want.keys() == {"entries"}:  # append() sets entries and leafId only
        return bool(got["entries"] == want["entries"])
    return got == want


def coding(system: System, run: Run, sizes: Sizes) -> None:
    """A coding session saved after every entry, then loaded."""
    _load(system, run, _write(system, run, ((SID, None, d) for d in coding_session(sizes.coding, seed=1))))


def browser(system: System, run: Run, sizes: Sizes) -> None:
    """A browser agent's session with a screenshot every turn, saved after every
    turn, then loaded."""
    steps = ((SID, None, d) for d in browser_session(sizes.turns, seed=2, image_bytes=sizes.image_bytes))
    _load(system, run, _write(system, run, steps))


def _grow(b: SessionBuilder, n: int) -> Iterator[None]:
    """Grow ``b`` to ``n`` entries with a coding session's mix, yielding after each."""
    while len(b.data["entries"]) < n:
        if b.rng.random() < 0.05:
            b.user()
        else:
            b.assistant()
            if len(b.data["entries"]) < n:
                yield
                b.tool_result()
        yield


def tree_steps(children: int, entries: int, seed: int = 3) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """A parent session that spawns ``children`` sub-agent sessions one after another
    (``task:<parent>:t<k>``, with the metadata links of the data model), each grown
    to ``entries`` entries and saved after every entry; the parent grows between
    them to ``entries`` entries too."""
    parent = SessionBuilder(seed)
    parent.user("Split the refactor into sub-tasks and run them one by one.")
    yield SID, None, parent.data
    per = max(2, (entries - 1) // children)
    for k in range(children):
        tid = f"t{k}"
        cid = f"task:{SID}:{tid}"
        parent.data["metadata"].setdefault("taskSessions", []).append({"session": cid, "taskId": tid})
        parent.assistant()
        yield SID, None, parent.data
        child = SessionBuilder(seed * 1000 + k, name=tid)
        child.data["metadata"].update({"parentSession": SID, "taskId": tid, "cwd": "/work", "agent": "general",
                                       "depth": 1})  # fmt: skip
        child.user(f"Sub-task {k}: refactor module {k} and keep its tests green.")
        yield cid, SID, child.data
        for _ in _grow(child, entries):
            yield cid, SID, child.data
        parent.tool_result()
        yield SID, None, parent.data
        for _ in _grow(parent, 1 + (k + 1) * per):
            yield SID, None, parent.data
    for _ in _grow(parent, entries):
        yield SID, None, parent.data


def tree(system: System, run: Run, sizes: Sizes) -> None:
    """A parent and its sub-agent sessions, saved after every entry; all loaded; the
    bytes and largest cell then; the whole tree deleted (and reclaimed)."""
    final = _write(system, run, tree_steps(sizes.children, sizes.child_entries))
    system = _load(system, run, final)
    if system.path:
        run.metrics["bytes"] = file_bytes(system.path)
        run.metrics["largest_cell"] = largest_cell(system.path)
    if system.can_delete:
        run.phase("delete")
        run.metrics["delete"] = _timed(system.delete_tree, SID, list(final))
        _check(all(system.load(sid) is None for sid in final), "a deleted session still loads")


@dataclass
class Bulk:
    """The bulk workload's entries, and the bytes the raw floor inserts for them
    (zstd level 3 of each entry's CBOR, as a per-entry log stores), made before timing."""

    entries: list[dict[str, Any]]
    frames: list[bytes]

    @classmethod
    def make(cls, n: int) -> Bulk:
        entries = bulk_entries(n, seed=4)
        cctx = zstandard.ZstdCompressor(level=3)
        return cls(entries, [cctx.compress(cbor2.dumps(e)) for e in entries])


def bulk(system: System, run: Run, sizes: Sizes, data: Bulk) -> None:
    """Entries appended in batches (``append()``, or a save of the whole session per
    batch for systems without one), then the session loaded."""
    entries, batch = data.entries, sizes.batch
    items: list[Any] = data.frames if isinstance(system, Raw) else entries
    lat = run.latencies
    for i in range(0, len(entries), batch):
        run.where = f"batch {i // batch + 1} (entry {i + batch:,})"
        if system.can_append:
            lat.append(_timed(system.append, "bulk", items[i : i + batch]))
        else:
            state = {"entries": entries[: i + batch], "leafId": entries[min(i + batch, len(entries)) - 1]["id"]}
            lat.append(_timed(system.save, "bulk", state))
    run.metrics["total"] = sum(lat)
    run.metrics["rate"] = len(entries) / run.metrics["total"]
    _load(system, run, {"bulk": {"entries": entries}}, warm=False)


_BULK: dict[int, Bulk] = {}


def workload(name: str, sizes: Sizes) -> Workload:
    """The workload ``name`` at ``sizes``, as a function of (system, run)."""
    if name == "bulk":
        data = _BULK.get(sizes.bulk) or _BULK.setdefault(sizes.bulk, Bulk.make(sizes.bulk))
        return lambda s, r: bulk(s, r, sizes, data)
    fns: dict[str, Callable[[System, Run, Sizes], None]] = {"coding": coding, "browser": browser, "tree": tree}
    fn = fns[name]
    return lambda s, r: fn(s, r, sizes)


# ---------------------------------------------------------------- measuring


def largest_cell(path: str) -> int:
    """The largest value in any column of any table of the file, in bytes (text as
    UTF-8), as tests/helpers.py measures it."""
    con = sqlite3.connect(path)
    try:
        best = 0
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            expr = ", ".join(f'coalesce(max(length(CAST("{c}" AS BLOB))), 0)' for c in cols)
            best = max(best, *con.execute(f'SELECT {expr} FROM "{table}"').fetchone())
        return int(best)
    finally:
        con.close()


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _once(key: str, name: str, fn: Workload, path: str, sync: str) -> Run:
    """One timed run of ``fn`` against a fresh system ``key`` on ``path``."""
    run = Run(key, NAMES[key], name)
    _remove(path)
    try:
        system = make(key, path, sync)
    except Unavailable as e:
        run.status, run.error = "not installed", str(e)
        return run
    run.system = system.name
    try:
        fn(system, run)
    except Wrong as e:
        run.status, run.error = "WRONG", f"{e} (at {run.where})"
    except Exception as e:
        run.status, run.error = "FAILED", f"at {run.where}: {type(e).__name__}: {e}"
    finally:
        for opened in [system, *run.opened]:
            opened.close()
    if run.status == "ok":
        run.metrics.setdefault("bytes", file_bytes(path))
        run.metrics.setdefault("largest_cell", largest_cell(path))
        run.metrics["bytes_end"] = file_bytes(path)
    _remove(path)
    return run


class Phases:
    """tracemalloc's peak per phase of a workload: "write" from the start (the
    system's creation included), then each later phase from its own start, above
    what was allocated when it began."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.name, self.start = "write", 0

    def __call__(self, name: str) -> None:
        current, peak = tracemalloc.get_traced_memory()
        self.peaks[self.name] = max(0, peak - self.start)
        tracemalloc.reset_peak()
        self.name, self.start = name, current


def traced(fn: Workload, system: System, run: Run) -> dict[str, int]:
    """Run ``fn`` under tracemalloc; the peaks of its phases."""
    phases = Phases()
    traced_run = Run(run.key, run.system, run.workload, on_phase=phases)
    tracemalloc.start()
    try:
        fn(system, traced_run)
        phases("end")
    finally:
        tracemalloc.stop()
        for opened in traced_run.opened:
            opened.close()
    return phases.peaks


def measure(name: str, keys: list[str], sizes: Sizes, tmp: Path, sync: str, reps: int) -> list[Run]:
    """Best of ``reps`` timed runs per system (by total time; the systems take
    turns).  Memory is measured afterwards (:func:`memory`)."""
    fn = workload(name, sizes)
    best: dict[str, Run] = {}
    for rep in range(reps):
        for key in keys:
            if rep and best[key].status != "ok":
                continue
            run = _once(key, name, fn, str(tmp / f"{name}-{key}.db"), sync)
            if key not in best or (run.status == "ok" and run.metrics["total"] < best[key].metrics["total"]):
                best[key] = run
    return [best[k] for k in keys]


def memory_job(name: str, key: str, sizes: Sizes, sync: str) -> dict[str, int]:
    """One run of workload ``name`` against system ``key`` ("null": a system that
    stores nothing) on a fresh file under tracemalloc; the peaks of its phases."""
    fn = workload(name, sizes)
    with tempfile.TemporaryDirectory() as d:
        system = NullSystem() if key == "null" else make(key, str(Path(d) / "mem.db"), sync)
        try:
            return traced(fn, system, Run(key, key, name))
        finally:
            system.close()


def memory(sections: list[Section], sizes: Sizes, sync: str, workers: int) -> None:
    """Peak memory of every run that succeeded, measured after all timing is done,
    in ``workers`` processes (tracing every allocation makes the quadratic designs
    several times slower): while writing, minus the peak of the same run against a
    system that stores nothing (the workload's own data), and while loading."""
    cost = {(s.workload, r.key): r.metrics["total"] for s in sections if s.workload != "cold"
            for r in s.runs if r.status == "ok"}  # fmt: skip
    jobs = sorted(cost, key=cost.__getitem__, reverse=True)  # the longest first, so the workers finish together
    jobs += [(s.workload, "null") for s in sections if s.workload != "cold"]
    peaks: dict[tuple[str, str], dict[str, int]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {job: pool.submit(memory_job, *job, sizes, sync) for job in jobs}
        for job, future in futures.items():
            try:
                peaks[job] = future.result()
            except Exception as e:  # reported, not fatal: that run simply has no memory figure
                print(f"[compare] peak memory of {job[1]} on {job[0]} not measured: {type(e).__name__}: {e}")
    for s in sections:
        for r in s.runs:
            got, null = peaks.get((s.workload, r.key)), peaks.get((s.workload, "null"))
            if got is None or null is None:
                continue
            r.metrics["peak_write"] = max(0, got["write"] - null["write"])
            for phase in ("load", "delete"):
                if phase in got:
                    r.metrics[f"peak_{phase}"] = got[phase]


def cold(keys: list[str], tmp: Path, sync: str, sizes: Sizes) -> list[Run]:
    """Each system stores one ``sizes.cold``-entry session, the way it would have
    been written: eventlog by ``append()`` of every entry and a final ``save()`` (a
    log of one event per entry, with its snapshots), the others by one ``save()``
    (the same rows as saving entry by entry would leave; eventsourcing: one event per
    entry and one for the fields).  Then, in fresh processes, open + load: the best
    of ``sizes.cold_reps``, and one run under tracemalloc."""
    data: dict[str, Any] = deque(coding_session(sizes.cold, seed=5), maxlen=1)[0]
    want = digest(data)
    runs = []
    for key in keys:
        run = Run(key, NAMES[key], "cold")
        path = str(tmp / f"cold-{key}.db")
        _remove(path)
        runs.append(run)
        try:
            system = make(key, path, sync)
        except Unavailable as e:
            run.status, run.error = "not installed", str(e)
            continue
        run.system = "eventlog" if key.startswith("eventlog") else system.name
        try:
            run.where = "build"
            t = time.perf_counter()
            if key.startswith("eventlog"):
                for entry in data["entries"]:
                    system.append(SID, [entry])
            system.save(SID, data)
            run.metrics["build"] = time.perf_counter() - t
        except Exception as e:
            run.status, run.error = "FAILED", f"at {run.where}: {type(e).__name__}: {e}"
        finally:
            system.close()
        if run.status != "ok":
            _remove(path)
            continue
        run.metrics["bytes"] = file_bytes(path)
        run.metrics["largest_cell"] = largest_cell(path)
    for _ in range(sizes.cold_reps):  # the systems take turns
        for run in runs:
            if run.status != "ok":
                continue
            try:
                out = cold_load(run.key, str(tmp / f"cold-{run.key}.db"), sync, SID)
            except Exception as e:
                run.status, run.error = "FAILED", f"at load: {e}"
                continue
            if out["digest"] != want:
                run.status, run.error = "WRONG", "load() in a fresh process differs from what was saved"
                continue
            if out["open"] + out["load"] < run.metrics.get("cold", float("inf")):
                run.metrics.update(cold=out["open"] + out["load"], open=out["open"], load=out["load"])
            if "rss" in out:
                run.metrics["rss_load"] = min(out["rss"], run.metrics.get("rss_load", out["rss"]))
    for run in runs:
        path = str(tmp / f"cold-{run.key}.db")
        if run.status == "ok":
            run.metrics["peak_load"] = cold_load(run.key, path, sync, SID, trace=True)["peak"]
        _remove(path)
    return runs


def _na(reasons: dict[str, str], workload: str) -> list[Run]:
    """Rows for systems not run on a workload, with the reason."""
    return [Run(key, NAMES[key], workload, "n/a", reason) for key, reason in reasons.items()]


# ---------------------------------------------------------------- report


def _t(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def _b(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} KB"
    return f"{n:.0f} B"


def _x(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return ""
    r = value / ref
    return f" ({r:.3g}x)"


def _window(n: int) -> int:
    """Saves in the first and in the last window: a tenth, at least 10 (at most half)."""
    return min(max(10, n // 10), max(1, n // 2))


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _lat(lat: list[float], end: bool) -> str:
    w = _window(len(lat))
    xs = lat[-w:] if end else lat[:w]
    return f"{_t(statistics.median(xs))} / {_t(_pct(xs, 0.99))}"


Column = tuple[str, Callable[[Run, Run | None], str]]


def _m(key: str, fmt: Callable[[float], str], ratio: bool = False) -> Callable[[Run, Run | None], str]:
    def cell(run: Run, ref: Run | None) -> str:
        value = run.metrics.get(key)
        if value is None:
            return "-"
        ref_value = ref.metrics.get(key) if ref is not None and ref.status == "ok" else None
        return fmt(value) + (_x(value, ref_value) if ratio else "")

    return cell


def _status(run: Run, _ref: Run | None) -> str:
    if run.status == "not installed":
        return f"not installed ({run.error})"
    return run.status if not run.error else f"{run.status}: {run.error}"


def _name(run: Run, _ref: Run | None) -> str:
    return run.system


def _save_lat(end: bool) -> Callable[[Run, Run | None], str]:
    def cell(run: Run, _ref: Run | None) -> str:  # a failed run: its first saves only
        return _lat(run.latencies, end) if run.latencies and (run.status == "ok" or not end) else "-"

    return cell


def _lat_headers(what: str, n: int) -> tuple[str, str]:
    return f"{what} p50 / p99, first {n:,}", f"{what} p50 / p99, last {n:,}"


def columns(workload: str, n_saves: int) -> list[Column]:
    """The table's columns for one workload (``n_saves``: saves per run)."""
    w = _window(n_saves)
    first, last = _lat_headers("batch" if workload == "bulk" else "save", w)
    head: list[Column] = [("system", _name), ("status", _status)]
    stored: list[Column] = [
        ("bytes on disk (x eventlog)", _m("bytes", _b, ratio=True)),
        ("largest cell", _m("largest_cell", _b)),
    ]
    if workload == "cold":
        return [*head, ("build", _m("build", _t)),
                ("open + load, fresh process (x eventlog)", _m("cold", _t, ratio=True)),
                ("open", _m("open", _t)), ("load", _m("load", _t)), *stored,
                ("peak memory, open + load (x eventlog)", _m("peak_load", _b, ratio=True)),
                ("peak RSS growth, open + load (x eventlog)", _m("rss_load", _b, ratio=True))]  # fmt: skip
    body: list[Column] = [("total (x eventlog)", _m("total", _t, ratio=True))]
    if workload == "bulk":
        body.append(("entries/s", _m("rate", lambda v: f"{v:,.0f}")))
    body += [(first, _save_lat(False)), (last, _save_lat(True)),
             ("load, same connection", _m("load_warm", _t)),
             ("load, reopened (x eventlog)", _m("load", _t, ratio=True))]  # fmt: skip
    if workload == "tree":
        body += [("delete tree (eventlog: + compact)", _m("delete", _t)), ("bytes after delete", _m("bytes_end", _b))]
    return [*head, *body, *stored,
            ("peak memory, writing (x eventlog)", _m("peak_write", _b, ratio=True)),
            ("peak memory, load reopened (x eventlog)", _m("peak_load", _b, ratio=True))]  # fmt: skip


@dataclass
class Section:
    workload: str
    title: str
    reference: str  # the eventlog key the ratios are to
    n_saves: int
    runs: list[Run]

    def rows(self) -> list[list[str]]:
        cols = columns(self.workload, self.n_saves)
        ref = next((r for r in self.runs if r.key == self.reference), None)
        out = [[c[0] for c in cols]]
        out += [[c[1](run, ref) for c in cols] for run in self.runs]
        return out


@dataclass
class Target:
    name: str
    measured: str
    ratio: float | None
    target: str
    ok: bool | None  # None: not measurable, or --quick (targets are for the full size)


def _get(sections: dict[str, Section], workload: str, key: str) -> Run | None:
    return next((r for r in sections[workload].runs if r.key == key), None)


def targets(sections: dict[str, Section], sizes: Sizes, quick: bool) -> list[Target]:
    """The issue's targets, as ratios of systems measured in this run."""
    out: list[Target] = []

    def add(name: str, a: Run | None, b: Run | None, metric: str, fmt: Callable[[float], str],
            label: tuple[str, str], op: str, limit: float) -> None:  # fmt: skip
        if a is None or b is None or a.status != "ok" or b.status != "ok":
            pairs = zip(label, (a, b), strict=True)
            missing = ", ".join(
                f"{x} {r.status if r else 'not run'}" for x, r in pairs if r is None or r.status != "ok"
            )
            out.append(Target(name, f"not measured: {missing}", None, f"{op} {limit:g}", None))
            return
        va, vb = a.metrics[metric], b.metrics[metric]
        ratio = va / vb
        ok = {">=": ratio >= limit, ">": ratio > limit, "<=": ratio <= limit}[op]
        out.append(Target(name, f"{label[0]} {fmt(va)}, {label[1]} {fmt(vb)}", ratio, f"{op} {limit:g}", ok))

    coding = sections["coding"]
    n = coding.n_saves
    json_row = _get(sections, "coding", "json-2mb")
    json_label = "one JSON row (2 MB limit)"
    if json_row is None or json_row.status != "ok":  # it failed on the cell limit: the design without the limit
        json_row, json_label = _get(sections, "coding", "json"), "one JSON row (no limit)"
    ev_save, ev_append = _get(sections, "coding", "eventlog-save"), _get(sections, "coding", "eventlog-append")
    with_c = speedups.ACTIVE  # issue 16: >= 25x with the C extension, >= 10x without
    add(f"coding, {n:,} entries saved after each: total, {json_label.split(' (')[0]} / eventlog save()"
        f" ({'with' if with_c else 'without'} the C extension)",
        json_row, ev_save, "total", _t, (json_label, "eventlog save()"), ">=", 25 if with_c else 10)  # fmt: skip
    add(f"coding, {n:,} entries: total, {json_label.split(' (')[0]} / eventlog append()",
        json_row, ev_append, "total", _t, (json_label, "eventlog append()"), ">=", 50)  # fmt: skip
    add(
        f"coding, {n:,} entries: total, per-entry rows / eventlog save()",
        _get(sections, "coding", "flue"),
        ev_save,
        "total",
        _t,
        ("per-entry rows", "eventlog save()"),
        ">=",
        3,
    )
    add(f"browser, {sizes.turns:,} turns: bytes on disk, eventlog / per-entry rows",
        _get(sections, "browser", "eventlog-save"), _get(sections, "browser", "flue"), "bytes", _b,
        ("eventlog", "per-entry rows"), "<=", 0.60)  # fmt: skip
    add(f"bulk append, {sizes.bulk:,} entries: rate, eventlog / raw sqlite3 floor",
        _get(sections, "bulk", "eventlog-append"), _get(sections, "bulk", "raw"), "rate",
        lambda v: f"{v:,.0f} entries/s", ("eventlog", "raw"), ">=", 0.50)  # fmt: skip
    add(f"cold load of {sizes.cold:,} entries: eventsourcing replay / eventlog",
        _get(sections, "cold", "eventsourcing"), _get(sections, "cold", "eventlog-save"), "cold", _t,
        ("eventsourcing", "eventlog"), ">=", 2)  # fmt: skip
    add(f"cold load of {sizes.cold:,} entries: one JSON row's json.loads / eventlog",
        _get(sections, "cold", "json"), _get(sections, "cold", "eventlog-save"), "cold", _t,
        ("one JSON row (no limit)", "eventlog"), ">", 1)  # fmt: skip
    if quick:
        for t in out:
            t.ok = None
    return out


def machine(sync: str, quick: bool) -> str:
    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, synchronous={sync}, WAL, SQLITE_LIMIT_LENGTH={LIMIT:,} "
        f"(except 'no limit'), {speedups.describe()}{', quick' if quick else ''}"
    )


# ---------------------------------------------------------------- run


@dataclass
class Report:
    machine: str
    sizes: Sizes
    sections: list[Section]
    targets: list[Target]
    seconds: float
    coding_latencies: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "seconds": round(self.seconds, 1),
            "sizes": asdict(self.sizes),
            "workloads": [
                {
                    "workload": s.workload,
                    "title": s.title,
                    "reference": s.reference,
                    "runs": [
                        {
                            "system": r.system,
                            "key": r.key,
                            "status": r.status,
                            "error": r.error,
                            "metrics": {k: round(v, 6) for k, v in r.metrics.items()},
                        }
                        for r in s.runs
                    ],
                }
                for s in self.sections
            ],
            "targets": [asdict(t) for t in self.targets],
            "coding_latencies_ms": {k: [round(x * 1e3, 4) for x in v] for k, v in self.coding_latencies.items()},
        }


SAVE_SYSTEMS = ["json-2mb", "json", "flue", "eventsourcing", "eventlog-save", "eventlog-append"]


def run(quick: bool, sync: str, log: Callable[[str], None] = print) -> Report:
    """Every workload on every system it applies to; returns the report."""
    sizes = QUICK if quick else FULL
    started = time.perf_counter()
    sections: list[Section] = []

    def step(title: str) -> None:
        log(f"[compare] {title} ({time.perf_counter() - started:.0f} s)")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        step(f"coding: {sizes.coding:,} entries")
        runs = measure("coding", SAVE_SYSTEMS, sizes, tmp, sync, 1)
        sections.append(Section("coding", f"Coding agent: {sizes.coding:,} entries, saved after every entry",
                                "eventlog-save", sizes.coding, runs))  # fmt: skip
        step(f"browser: {sizes.turns} turns")
        keys = [k for k in SAVE_SYSTEMS if k != "json"]
        runs = measure("browser", keys, sizes, tmp, sync, 1)
        runs += _na({"json": "not run: rewrites the whole session (hundreds of MB) on every save"}, "browser")
        sections.append(Section("browser", f"Browser agent: {sizes.turns} turns, a {sizes.image_bytes / 1e3:.0f} KB "
                                "screenshot each (about half repeat the previous one), saved after every turn",
                                "eventlog-save", sizes.turns + 1, runs))  # fmt: skip
        step(f"tree: 1 + {sizes.children} sessions of {sizes.child_entries} entries")
        keys = [k for k in SAVE_SYSTEMS if k != "json"]
        runs = measure("tree", keys, sizes, tmp, sync, 1)
        runs += _na({"json": "not run: no session reaches the limit, so the same as the 2 MB-limit row"}, "tree")
        n_tree = sum(1 for _ in tree_steps(sizes.children, sizes.child_entries))
        sections.append(Section("tree", f"Sub-agent tree: a parent and {sizes.children} children of "
                                f"{sizes.child_entries} entries, saved after every entry, then the tree deleted",
                                "eventlog-save", n_tree, runs))  # fmt: skip
        step(f"bulk: {sizes.bulk:,} entries")
        runs = measure("bulk", ["raw", "eventlog-append", "eventsourcing", "json-2mb"], sizes, tmp, sync, sizes.reps)
        runs += _na(
            {
                "json": "not run: one save of the whole session per batch (quadratic)",
                "flue": "not run: save() only, reading and re-encoding every stored entry per batch (quadratic)",
                "eventlog-save": "see eventlog append(): an append API is what bulk writers use",
            },
            "bulk",
        )
        sections.append(Section("bulk", f"Bulk append: {sizes.bulk:,} entries of ~1 KB in batches of "
                                f"{sizes.batch:,}", "eventlog-append", sizes.bulk // sizes.batch, runs))  # fmt: skip
        step(f"cold: {sizes.cold:,} entries")
        runs = cold(["json-2mb", "json", "flue", "eventsourcing", "eventlog-save"], tmp, sync, sizes)
        sections.append(Section("cold", f"Cold load: a {sizes.cold:,}-entry session opened and loaded in a fresh "
                                "process", "eventlog-save", sizes.cold, runs))  # fmt: skip
    workers = max(1, min(2, os.cpu_count() or 1))
    step(f"peak memory: every run again under tracemalloc, in {workers} processes")
    memory(sections, sizes, sync, workers)
    by_name = {s.workload: s for s in sections}
    coding_runs = by_name["coding"].runs
    latencies = {r.system: r.latencies for r in coding_runs if r.latencies}
    step("done")
    return Report(machine(sync, quick), sizes, sections, targets(by_name, sizes, quick), time.perf_counter() - started,
                  latencies)  # fmt: skip


def plot(report: Report, path: Path) -> str:
    """Per-save latency against entry index for every system on the coding workload
    (log y axis), as a PNG; returns what was done, for the log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no plot"
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    failed = {r.system for r in report.sections[0].runs if r.status == "FAILED"}
    for name, lat in report.coding_latencies.items():
        xs = range(1, len(lat) + 1)
        (line,) = ax.plot(xs, [x * 1e3 for x in lat], linewidth=0.9, alpha=0.85, label=name)
        if name in failed:  # the save after the last one timed failed
            ax.plot([len(lat) + 1], [lat[-1] * 1e3], "x", color=line.get_color(), markersize=9)
            line.set_label(f"{name} (FAILED at save {len(lat) + 1}: SQLITE_TOOBIG)")
    ax.set_yscale("log")
    ax.set_xlabel("entry (save number)")
    ax.set_ylabel("latency of one save / append (ms, log scale)")
    ax.set_title(f"Coding agent, {report.sizes.coding:,} entries, saved after every entry\n{report.machine}",
                 fontsize=9)  # fmt: skip
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"
