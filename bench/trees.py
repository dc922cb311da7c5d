"""Deleting and compacting a tree of sessions that share blobs.

A tree of N sessions (a root, fan-out 10, down to four levels) is built with
``parent_id``; each session is saved after each of its three entries, and two of
them carry a blob drawn from one pool of 50 random 100-400 KB byte strings, so most
chunks are shared by many sessions.  One live session outside the tree uses five of
the pooled blobs: their chunks must survive.  The file is then copied, and on each
copy the tree is removed: ``delete(root)`` (one transaction), then ``compact()``
with the default batch of 500 rows, with 50, and with 2 (fewer than the four events
each deleted session holds, so that batching shows).  ``--quick``: trees of 50 and
200 sessions and 40-100 KB blobs, one run each; else 200 and 1,000, best of three.

Measured, on one machine in one run, at two tree sizes side by side:

* build, ``delete()`` and ``compact()`` times (best of a few runs, each on a fresh
  copy, the systems taking turns), against the naive delete of the same sessions
  from Flue's one-JSON-row store (blobs inline as base64, one row per session,
  one ``DELETE`` per id in one transaction, then a WAL checkpoint), with and
  without ``secure_delete`` (eventlog always zeroes deleted content);
* peak Python memory (``tracemalloc``, on separate copies: tracing slows Python)
  during ``delete()`` and during ``compact()``, and its ratio to the file's size;
  SQLite's own page cache is outside it and bounded by ``cache_size``;
* every statement run during ``delete()`` and ``compact()`` (``set_trace_callback``
  on the store's connection, again on separate copies): how many, how many write
  transactions and the most rows one of them changed, and the most literal values
  in one statement.  Python 3.11+ passes the trace the SQL with the bound
  values written in, so that count is an upper bound on the parameters bound (it
  also counts literals in eventlog's own SQL), and it covers long literal
  ``IN (...)`` lists too;
* what compaction removed, and ``verify()`` afterwards: the store is sound, no
  chunk is left unreferenced, and the live session loads unchanged.
"""

from __future__ import annotations

import base64
import random
import re
import shutil
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventlog
from eventlog.compaction import CompactReport

from .baselines import OneJsonRow, connect, file_bytes

SYNC = "NORMAL"
ROOT = "t"
LIVE = "live"

Session = tuple[str, str | None, list[dict[str, Any]]]  # id, parent id, entries


def tree_shape(n: int, fanout: int = 10) -> list[tuple[str, str | None]]:
    """``(id, parent id)`` of ``n`` sessions, breadth first: a root, ``fanout``
    children each, and so on (four levels for 1,000 sessions)."""
    out: list[tuple[str, str | None]] = [(ROOT, None)]
    level = [ROOT]
    while len(out) < n:
        nxt = []
        for parent in level:
            for k in range(fanout):
                if len(out) == n:
                    break
                out.append((f"{parent}.{k}", parent))
                nxt.append(out[-1][0])
        level = nxt
    return out


def blob_pool(count: int, lo: int, hi: int) -> list[bytes]:
    rng = random.Random(1)
    return [rng.randbytes(rng.randint(lo, hi)) for _ in range(count)]


def _entries(name: str, blobs: list[bytes], rng: random.Random) -> list[dict[str, Any]]:
    """Three Flue-shaped entries; the first and last carry a blob each."""
    out: list[dict[str, Any]] = []
    parent = None
    for k in range(3):
        text = f"{name} step {k}: " + "lorem ipsum " * rng.randint(5, 40)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if k != 1:
            content.append({"type": "image", "mimeType": "image/png", "data": blobs[k // 2]})
        eid = f"{name}-{k}"
        out.append({"type": "message", "id": eid, "parentId": parent, "timestamp": 1_700_000_000_000 + k,
                    "message": {"role": ("user", "assistant")[k % 2], "content": content}})  # fmt: skip
        parent = eid
    return out


def sessions(n: int, pool: list[bytes]) -> tuple[list[Session], Session]:
    """The tree's sessions (each with two blobs from the pool) and the live one (five)."""
    rng = random.Random(2)
    tree = [(sid, parent, _entries(sid, rng.sample(pool, 2), rng)) for sid, parent in tree_shape(n)]
    live = [
        e for k, blobs in enumerate((pool[0:2], pool[2:4], pool[4:5] * 2)) for e in _entries(f"{LIVE}{k}", blobs, rng)
    ]
    return tree, (LIVE, None, live)


def build_eventlog(path: str, tree: list[Session], live: Session) -> float:
    """Save every session after each of its entries; returns the time taken."""
    t = time.perf_counter()
    with eventlog.open(path, synchronous=SYNC) as store:
        for sid, parent, entries in [live, *tree]:
            for k in range(len(entries)):
                store.save(sid, {"entries": entries[: k + 1], "leafId": entries[k]["id"]}, parent_id=parent)
    return time.perf_counter() - t


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def build_json(path: str, tree: list[Session], live: Session) -> float:
    """Each session's final state as one JSON row (blobs as base64), one transaction;
    returns the time taken."""
    t = time.perf_counter()
    store = OneJsonRow(path, SYNC)
    store.con.execute("BEGIN")
    for sid, _parent, entries in [live, *tree]:
        store.save(sid, {"entries": _to_json(entries), "leafId": entries[-1]["id"]})
    store.con.execute("COMMIT")
    store.close()
    return time.perf_counter() - t


def json_delete(path: str, ids: list[str], *, secure: bool) -> float:
    """The naive delete: one ``DELETE`` per id in one transaction, then a WAL
    checkpoint (as ``compact()`` ends with); returns the time taken."""
    con = connect(path, SYNC)
    con.execute(f"PRAGMA secure_delete={'ON' if secure else 'OFF'}")
    t = time.perf_counter()
    con.execute("BEGIN")
    for sid in ids:
        con.execute("DELETE FROM flue_sessions WHERE id = ?", (sid,))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elapsed = time.perf_counter() - t
    left = con.execute("SELECT count(*) FROM flue_sessions").fetchone()[0]
    con.close()
    assert left == 1, left
    return elapsed


# Literal values in expanded SQL: blobs, strings, numbers (not inside names), NULL;
# eventlog binds no NULL after IS, so ``IS [NOT] NULL`` is its own text, not counted.
_LITERAL = re.compile(r"[xX]'[0-9a-fA-F]*'|'(?:[^']|'')*'|(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])|\bNULL\b")
_IS_NULL = re.compile(r"\bIS\s+(NOT\s+)?NULL\b", re.IGNORECASE)
_IN_LIST = re.compile(r"\bIN\s*\(((?:'(?:[^']|'')*'|[^()'])*)\)", re.IGNORECASE)


class Trace:
    """A trace callback: counts statements, literal values, ``IN (...)`` lists,
    write transactions and the most rows changed in one."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.statements = self.most_literals = self.over_100 = self.longest_in = 0
        self.transactions = self.most_changes = 0
        self._began: int | None = None

    def __call__(self, sql: str) -> None:
        sql = _IS_NULL.sub("IS_NULL", sql)
        n = len(_LITERAL.findall(sql))
        self.statements += 1
        self.most_literals = max(self.most_literals, n)
        self.over_100 += n > 100
        for m in _IN_LIST.finditer(sql):
            if not m.group(1).lstrip().upper().startswith("SELECT"):
                self.longest_in = max(self.longest_in, len(_LITERAL.findall(m.group(1))))
        if sql == "BEGIN IMMEDIATE":
            self.transactions += 1
            self._began = self.con.total_changes
        elif sql == "COMMIT" and self._began is not None:  # traced as it starts: every change is counted
            self.most_changes = max(self.most_changes, self.con.total_changes - self._began)
            self._began = None


@dataclass
class Step:
    seconds: float = 0.0
    peak: int = 0  # tracemalloc peak, bytes ("memory" runs)
    trace: Trace | None = None  # ("trace" runs)


@dataclass
class Run:
    """One delete + compact on one copy of the store, and the store afterwards."""

    delete: Step
    compact: Step
    deleted: int
    report: CompactReport
    verify_ok: bool
    garbage_chunks: int
    live_intact: bool
    chunks_left: int
    variable_limit: int


def _step(fn: Callable[[], Any], con: sqlite3.Connection, mode: str) -> tuple[Step, Any]:
    step = Step(trace=Trace(con) if mode == "trace" else None)
    con.set_trace_callback(step.trace)
    if mode == "memory":
        tracemalloc.start()
    t = time.perf_counter()
    try:
        out = fn()
    finally:
        step.seconds = time.perf_counter() - t
        if mode == "memory":
            step.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        con.set_trace_callback(None)
    return step, out


def delete_and_compact(path: str, batch: int, live: Session, mode: str = "time") -> Run:
    """``delete(ROOT)`` then ``compact(batch=batch)``, and a check of the store;
    ``mode`` "time", "memory" (under tracemalloc) or "trace" (every statement seen)."""
    with eventlog.open(path, synchronous=SYNC) as store:
        con: sqlite3.Connection = store._backend.db.con
        delete, ids = _step(lambda: store.delete(ROOT), con, mode)
        compact, report = _step(lambda: store.compact(batch=batch), con, mode)
        v = store.verify()
        entries = live[2]
        intact = store.sessions() == [LIVE] and store.load(LIVE) == {"entries": entries, "leafId": entries[-1]["id"]}
        return Run(delete, compact, len(ids), report, v.ok, v.garbage_chunks, intact,
                   store.stats()["chunks"]["rows"], con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # fmt: skip


@dataclass
class Size:
    """Everything measured for one tree size."""

    n: int
    file_bytes: int = 0
    json_bytes: int = 0
    chunks: int = 0
    build_s: float = 0.0
    json_build_s: float = 0.0
    timed: dict[int, Run] = field(default_factory=dict)  # by batch: the fastest delete + compact
    memory: dict[int, Run] = field(default_factory=dict)
    traced: dict[int, Run] = field(default_factory=dict)
    json_s: dict[bool, float] = field(default_factory=dict)  # by secure_delete: the fastest

    def runs(self) -> list[Run]:
        return [*self.timed.values(), *self.memory.values(), *self.traced.values()]


#: compact() batch sizes: the default, the issue's smaller one, and one below the
#: four events each session holds, so that batching shows.
BATCHES = (500, 50, 2)


def measure(tmp: Path, n: int, pool: list[bytes], reps: int) -> Size:
    """Build both stores for a tree of ``n``, then delete and compact copies of them."""
    tree, live = sessions(n, pool)
    size = Size(n)
    master, json_master = str(tmp / f"ev-{n}.db"), str(tmp / f"json-{n}.db")
    size.build_s = build_eventlog(master, tree, live)
    size.json_build_s = build_json(json_master, tree, live)
    size.file_bytes, size.json_bytes = file_bytes(master), file_bytes(json_master)
    with eventlog.open(master) as store:
        size.chunks = store.stats()["chunks"]["rows"]
    ids = [sid for sid, _, _ in tree]
    copy = str(tmp / "copy.db")

    def fresh(src: str) -> str:
        for suffix in ("-wal", "-shm"):
            Path(copy + suffix).unlink(missing_ok=True)
        shutil.copyfile(src, copy)
        return copy

    for _ in range(reps):  # the systems take turns; each keeps its fastest
        for batch in BATCHES:
            r = delete_and_compact(fresh(master), batch, live)
            best = size.timed.get(batch)
            if best is None or r.delete.seconds + r.compact.seconds < best.delete.seconds + best.compact.seconds:
                size.timed[batch] = r
        for secure in (True, False):
            s = json_delete(fresh(json_master), ids, secure=secure)
            size.json_s[secure] = min(s, size.json_s.get(secure, s))
    for batch in BATCHES:
        size.memory[batch] = delete_and_compact(fresh(master), batch, live, "memory")
        size.traced[batch] = delete_and_compact(fresh(master), batch, live, "trace")
    return size


def run(quick: bool) -> list[list[str]]:
    """The table: one row per measurement, one column per tree size."""
    ns, lo, hi, reps = ((50, 200), 40_000, 100_000, 1) if quick else ((200, 1000), 100_000, 400_000, 3)
    pool = blob_pool(50, lo, hi)
    with tempfile.TemporaryDirectory() as d:
        sizes = [measure(Path(d), n, pool, reps) for n in ns]
    return table(sizes, lo, hi)


def table(sizes: list[Size], lo: int, hi: int) -> list[list[str]]:
    columns = [_column(s, lo, hi) for s in sizes]
    rows = [["measurement", *[f"tree of {s.n:,} sessions" for s in sizes]]]
    rows += [[label, *(c[i][1] for c in columns)] for i, (label, _) in enumerate(columns[0])]
    return rows


def _column(s: Size, lo: int, hi: int) -> list[tuple[str, str]]:
    """``(label, value)`` of every row, for one tree size."""
    big = BATCHES[0]
    timed, memory, traced = s.timed[big], s.memory[big], s.traced[big]
    report = timed.report
    ev = timed.delete.seconds + timed.compact.seconds
    traces = [t for r in s.traced.values() for t in (r.delete.trace, r.compact.trace) if t is not None]
    runs = s.runs()
    out = [
        (f"stored: eventlog file / one JSON row file (50 blobs of {lo // 1000}-{hi // 1000} KB)",
         f"{s.file_bytes / 1e6:.1f} MB / {s.json_bytes / 1e6:.0f} MB ({s.chunks} chunks)"),
        ("build: save() after every entry, eventlog / one JSON row (one save each)",
         f"{s.build_s:.2f} s / {s.json_build_s:.2f} s"),
        ("delete(root): sessions tombstoned, time", f"{timed.deleted:,}, {timed.delete.seconds:.3f} s"),
        (f"compact(batch={big}) time", f"{timed.compact.seconds:.3f} s"),
    ]  # fmt: skip
    for b in BATCHES[1:]:
        t = s.timed[b].compact.seconds
        out.append((f"compact(batch={b}) time (ratio to batch={big})", f"{t:.3f} s ({t / timed.compact.seconds:.2f})"))
    out.append(("one JSON row: DELETE per id + checkpoint, secure_delete ON / OFF",
                f"{s.json_s[True]:.3f} s / {s.json_s[False]:.3f} s"))  # fmt: skip
    for secure in (True, False):
        label = f"ratio eventlog delete+compact({big}) / JSON, secure_delete {'ON' if secure else 'OFF'}"
        out.append((label, f"{ev / s.json_s[secure]:.2f}"))
    out.append(("peak Python memory in delete() (/ file bytes)", _peak(memory.delete, s.file_bytes)))
    for b in BATCHES:
        out.append((f"peak Python memory in compact(batch={b}) (/ file bytes)",
                    _peak(s.memory[b].compact, s.file_bytes)))  # fmt: skip
    out += [
        (f"compact(batch={big}) removed: sessions, events, snapshots",
         f"{report.sessions_removed:,}, {report.events_removed:,}, {report.snapshots_removed:,}"),
        ("chunks freed (MB) / left (the live session's)",
         f"{report.chunks_freed} ({report.bytes_freed / 1e6:.1f} MB) / {timed.chunks_left}"),
        ("delete(): statements, write transactions, most rows changed in one", _shape(traced.delete.trace)),
    ]  # fmt: skip
    for b in BATCHES:
        out.append((f"compact(batch={b}): statements, write transactions, most rows changed in one",
                    _shape(s.traced[b].compact.trace)))  # fmt: skip
    out += [
        ("most literal values in one statement (>= bound params); statements over 100",
         f"{max(t.most_literals for t in traces)}; {sum(t.over_100 for t in traces)}"),
        ("longest IN (...) list of values; SQLite variable limit on the store's connection",
         f"{max(t.longest_in for t in traces)}; {traced.variable_limit}"),
        ("after, in every run: verify().ok, garbage_chunks, live session loads unchanged",
         f"ok {sum(r.verify_ok for r in runs)}/{len(runs)}, garbage {max(r.garbage_chunks for r in runs)}, "
         f"unchanged {sum(r.live_intact for r in runs)}/{len(runs)}"),
    ]  # fmt: skip
    return out


def _peak(step: Step, file_bytes: int) -> str:
    return f"{step.peak / 1024:,.0f} KiB ({step.peak / file_bytes:.4f})"


def _shape(t: Trace | None) -> str:
    assert t is not None
    return f"{t.statements:,}, {t.transactions:,}, {t.most_changes:,}"
