"""Crash-injection machinery shared by ``tests/robustness/test_crash.py`` (bounded runs in CI)
and ``tools/crash`` (hundreds of kills).

A child process runs a :class:`Workload`: it saves and appends to sessions (large
images, huge tool outputs and frames spilled into chunks included), builds
snapshots, creates child sessions, deletes trees and compacts, forever.  Before each
operation it prints what it is about to do (``try ...``, with a digest of the
session it is writing), and after the call returns it prints ``ok ...``.  The
parent kills it with ``kill -9`` at a random moment and checks, with a
:class:`Model` of everything acknowledged, that the store opens, passes
``verify()``, and holds every acknowledged save exactly (the head and earlier
positions through ``fold``), every acknowledged delete, no session that was never
written, and for the one operation in flight either all of it or none.
"""

from __future__ import annotations

import base64
import collections
import copy
import functools
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventlog
from eventlog import codec

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- processes


@functools.cache
def blob(seed: int, size: int) -> bytes:
    """Incompressible bytes, the same for the same seed (stored raw in chunks)."""
    return random.Random(seed).randbytes(size)


def start_child(code: str, *args: str, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``python -c code args`` with stdout to ``out`` (a file: a pipe left unread
    could fill and stall the child) and stderr next to it."""
    err = out.with_suffix(".err")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=o, stderr=e, cwd=ROOT)
    return proc, err


def written_lines(out: Path) -> list[str]:
    """The lines a killed child wrote whole: a kill can land in the middle of a
    line (``save `` without its number), and that line says nothing yet."""
    text = out.read_text()
    lines = text.split("\n")
    return lines[:-1]  # the part after the last newline is torn or empty


def wait_for(proc: subprocess.Popen[bytes], out: Path, err: Path, marker: str = "start", timeout: float = 60) -> None:
    """Wait until the child has printed a line starting with ``marker`` (or has exited,
    having started)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = out.read_text().splitlines()
        if any(line.startswith(marker) for line in lines):
            return
        if proc.poll() is not None:
            assert lines and lines[0].startswith("start"), f"child exited with {proc.returncode}:\n{err.read_text()}"
            return
        assert time.monotonic() < deadline, f"child did not reach {marker!r}:\n{err.read_text()}"
        time.sleep(0.001)


def kill(proc: subprocess.Popen[bytes]) -> bool:
    """``kill -9`` the child if it is still running; True if it was."""
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return running


def check_verify(store: eventlog.Store, when: str) -> eventlog.VerifyReport:
    report = store.verify()
    assert report.ok, f"{when}: verify found problems:\n" + "\n".join(map(str, report.problems))
    return report


def dangling_refs(path: str) -> list[tuple[int, int, int]]:
    """Refs to a chunk that is not there, found straight from the file (``verify``
    checks this too, among much else)."""
    con = sqlite3.connect(path)
    try:
        return con.execute(
            "SELECT kind, holder, cid FROM refs r WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.cid = r.cid)"
        ).fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------------------- the workload

#: Store options of the mixed workload: a 64 KB cell budget (frames of big entries
#: and snapshots spill into chunks), 16 KB chunks (an image is dozens), a snapshot
#: every 5 events besides the explicit ones.
OPTIONS: dict[str, Any] = {"max_cell_bytes": 64_000, "chunk_bytes": 16_000, "snapshot_every": 5}


def digest(data: Any) -> str:
    """Exact fingerprint of a session (types and key order included)."""
    return hashlib.blake2b(codec.dumps(data), digest_size=10).hexdigest()


def after_append(data: dict[str, Any] | None, batch: list[Any]) -> dict[str, Any]:
    """What ``append(batch)`` makes of a session (see :meth:`eventlog.Store.append`)."""
    new = dict(data) if data is not None else {}
    new["entries"] = [*new.get("entries", []), *batch]
    last = batch[-1] if batch else None
    if type(last) is dict and "id" in last:
        new["leafId"] = last["id"]
    return new


WORKLOAD_CHILD = """
import sys
from tools.crashing import Workload
Workload(sys.argv[1], int(sys.argv[2]), sys.argv[3]).run()
"""


class Workload:
    """The child's side: operations on a handful of sessions, forever, each announced
    before (``try``) and acknowledged after (``ok``), one line each, flushed."""

    def __init__(self, path: str, seed: int, prefix: str) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.prefix = prefix  # new session ids are prefix + a counter: never reused
        self.count = 0
        self.sessions: dict[str, dict[str, Any]] = {}
        self.images = [base64.b64encode(blob(9000 + k, 100_000 + 60_000 * k)).decode() for k in range(4)]

    def say(self, *words: Any) -> None:
        print(" ".join(map(str, words)), flush=True)

    def entry(self, sid: str, n: int) -> dict[str, Any]:
        rng = self.rng
        e: dict[str, Any] = {"id": f"{sid}.{n}", "role": rng.choice(("user", "assistant", "toolResult"))}
        r = rng.random()
        if r < 0.12:  # a screenshot, often one seen before (dedup)
            if rng.random() < 0.5:
                image = rng.choice(self.images)
            else:
                image = base64.b64encode(rng.randbytes(rng.randrange(40_000, 400_000))).decode()
            e["content"] = [{"type": "image", "data": "data:image/png;base64," + image}]
        elif r < 0.2:  # a huge tool output
            e["output"] = "".join(rng.choice("abc xyz\n é日") for _ in range(200)) * rng.randrange(100, 1500)
        elif r < 0.27:  # many mid-size values: the event frame is over the cell budget and spills
            e["parts"] = [rng.randbytes(20_000) for _ in range(4)]
        elif r < 0.3:
            e["blob"] = blob(rng.randrange(6), 50_000)
        else:
            e["text"] = "".join(rng.choice("hello world, 日本 🚀 ") for _ in range(rng.randrange(5, 400)))
        e["n"] = rng.choice((n, float(n), True, None, -0.0))
        return e

    def edit(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        """The next state a runtime would save: mostly appended entries, sometimes an
        entry changed or removed, fields changed."""
        rng = self.rng
        new = copy.deepcopy(data) if rng.random() < 0.2 else {**data, "entries": list(data["entries"])}
        entries = new["entries"]
        r = rng.random()
        if r < 0.6 or not entries:
            for _ in range(rng.randrange(1, 4)):
                entries.append(self.entry(sid, len(entries)))
        elif r < 0.75:
            entries[rng.randrange(len(entries))] = self.entry(sid, rng.randrange(1000))
        elif r < 0.85:
            del entries[rng.randrange(len(entries))]
        else:
            new["title"] = f"turn {rng.randrange(10**6)}"
            if rng.random() < 0.3:
                new = {k: new[k] for k in reversed(list(new))}
        if entries and isinstance(entries[-1], dict):
            new["leafId"] = entries[-1]["id"]
        return new

    def run(self) -> None:
        rng = self.rng
        synchronous = rng.choice(("NORMAL", "NORMAL", "FULL"))
        with eventlog.open(self.path, synchronous=synchronous, **OPTIONS) as store:
            for sid in store.sessions():
                self.sessions[sid] = store.load(sid) or {}
            self.say("start", synchronous, len(self.sessions))
            while True:
                r = rng.random()
                names = sorted(self.sessions)
                if r < 0.12 or len(names) < 2:
                    self.count += 1
                    sid = f"{self.prefix}{self.count}"
                    parent = rng.choice(names) if names and rng.random() < 0.5 else None
                    data = {"title": sid, "entries": [self.entry(sid, 0)]}
                    self.save(store, sid, data, parent)
                elif r < 0.55:
                    sid = rng.choice(names)
                    self.save(store, sid, self.edit(sid, self.sessions[sid]), None)
                elif r < 0.75:
                    sid = rng.choice(names)
                    batch = [
                        self.entry(sid, len(self.sessions[sid]["entries"]) + i) for i in range(rng.randrange(1, 4))
                    ]
                    new = after_append(self.sessions[sid], batch)
                    seq = store.seq(sid) + 1
                    self.say("try append", sid, seq, digest(new))
                    store.append(sid, batch)
                    self.sessions[sid] = new
                    self.say("ok append", sid, seq)
                elif r < 0.83:
                    sid = rng.choice(names)
                    self.say("try snapshot", sid)
                    store.snapshot(sid)
                    self.say("ok snapshot", sid)
                elif r < 0.93 or len(names) > 8:
                    sid = rng.choice(names)
                    doomed = [sid, *store.tree(sid)]
                    self.say("try delete", *doomed)
                    store.delete(sid)
                    for d in doomed:
                        self.sessions.pop(d, None)
                    self.say("ok delete", sid)
                else:
                    retain = rng.choice(("-", "-", "2", "0"))
                    batch = rng.choice((2, 20, 500))
                    self.say("try compact", retain, batch)
                    store.compact(retain=None if retain == "-" else int(retain), batch=batch)
                    self.say("ok compact", retain)

    def save(self, store: eventlog.Store, sid: str, data: dict[str, Any], parent: str | None) -> None:
        seq = store.seq(sid) + 1
        self.say("try save", sid, seq, digest(data), parent or "-")
        store.save(sid, data, parent_id=parent)
        self.sessions[sid] = data
        self.say("ok save", sid, seq)


# ----------------------------------------------------------------------------- the model


@dataclass
class Model:
    """What the parent knows was acknowledged: each live session's states by
    position (of its only incarnation: ids are never reused), its parent, the
    deleted ids."""

    states: dict[str, dict[int, str]] = field(default_factory=dict)  # sid -> seq -> digest
    parents: dict[str, str | None] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    acked: int = 0  # operations acknowledged, all rounds
    landed: collections.Counter[str] = field(default_factory=collections.Counter)  # what each kill interrupted
    committed: collections.Counter[str] = field(default_factory=collections.Counter)  # of those, found done

    def head(self, sid: str) -> int:
        return max(self.states[sid]) if self.states.get(sid) else 0

    def apply(self, lines: list[str]) -> list[str] | None:
        """Take in one round's output; return the operation in flight when the child
        was killed (its ``try`` words), if any."""
        pending: list[str] | None = None
        for line in lines:
            words = line.split()
            if not words or words[0] == "start":
                continue
            if words[0] == "try":
                pending = words[1:]
                continue
            assert words[0] == "ok" and pending is not None and words[1] == pending[0], f"out of order: {line!r}"
            self._done(pending)
            self.acked += 1
            pending = None
        return pending

    def _done(self, op: list[str]) -> None:
        kind = op[0]
        if kind in ("save", "append"):
            sid, seq, fingerprint = op[1], int(op[2]), op[3]
            assert seq == self.head(sid) + 1, f"{kind} of {sid} at {seq}, head {self.head(sid)}"
            self.states.setdefault(sid, {})[seq] = fingerprint
            if seq == 1:
                self.parents[sid] = None if kind == "append" or op[4] == "-" else op[4]
        elif kind == "delete":
            for sid in op[1:]:
                if sid in self.states:
                    del self.states[sid]
                    self.deleted.add(sid)

    def resolve(self, store: eventlog.Store, pending: list[str] | None) -> None:
        """Decide from the store whether the operation in flight happened: it must
        have happened entirely or not at all."""
        kind = pending[0] if pending else "nothing"
        self.landed[kind] += 1
        if pending is None or kind in ("snapshot", "compact"):
            return  # nothing a load shows (checked by check_store)
        if kind in ("save", "append"):
            sid, seq, fingerprint = pending[1], int(pending[2]), pending[3]
            stored = store.seq(sid)
            assert stored in (seq - 1, seq), f"{kind} of {sid} in flight at {seq}: the store is at {stored}"
            if stored == seq:
                data = store.load(sid)
                assert data is not None and digest(data) == fingerprint, f"{kind} of {sid} at {seq} half done"
                self._done(pending)
                self.committed[kind] += 1
        elif kind == "delete":
            gone = [sid for sid in pending[1:] if store.load(sid) is None]
            assert gone in ([], pending[1:]), f"delete of {pending[1:]} in flight: only {gone} gone"
            if gone:
                self._done(pending)
                self.committed[kind] += 1

    def check_store(self, store: eventlog.Store, rng: random.Random, when: str, folds: int = 3) -> None:
        """Every acknowledged state is there: each live session's head exactly, and
        ``folds`` earlier positions of each (of those still in its history); every
        deleted session is gone; nothing else exists; the store verifies."""
        assert sorted(store.sessions()) == sorted(self.states), f"{when}: sessions differ"
        for sid, states in self.states.items():
            head = self.head(sid)
            assert store.seq(sid) == head, f"{when}: {sid} is at {store.seq(sid)}, acknowledged {head}"
            data = store.load(sid)
            assert data is not None and digest(data) == states[head], f"{when}: {sid} at {head} is not what was saved"
            assert store.parent(sid) == self.parents.get(sid), f"{when}: {sid} lost its parent"
            start = store.info(sid).history_start
            assert start <= head, f"{when}: {sid} history starts at {start}, after its head {head}"
            earlier = [k for k in states if start <= k < head and k > 0]
            for k in rng.sample(earlier, min(folds, len(earlier))):
                assert digest(store.fold(sid, at=k)) == states[k], f"{when}: {sid} at {k} is not what was saved"
        for sid in self.deleted:
            assert store.load(sid) is None, f"{when}: deleted session {sid} is back"
        check_verify(store, when)


# ----------------------------------------------------------------------------- the driver


@dataclass
class CrashRun:
    kills: int = 0
    rounds: int = 0
    seconds: float = 0.0
    largest_file: int = 0
    model: Model = field(default_factory=Model)


def run_mixed(
    path: str,
    workdir: Path,
    *,
    kills: int,
    seconds: float | None = None,
    seed: int = 0,
    max_wait: float = 0.5,
    progress: Callable[[CrashRun], None] | None = None,
    inside: int = 0,
) -> CrashRun:
    """Start the workload on ``path`` and kill it ``kills`` times (or until
    ``seconds`` have passed), checking the store after each kill; then compact it
    fully and check once more.  With ``inside``, go on killing (up to four times
    ``kills``) until at least that many kills landed inside an operation: where
    kills land depends on the machine's speed, and a run must mean something."""
    rng = random.Random(seed)
    run = CrashRun()
    start = time.monotonic()
    model = run.model

    def more() -> bool:
        if run.kills < kills:
            return True
        landed = sum(n for k, n in model.landed.items() if k != "nothing")
        return landed < inside and run.kills < 4 * kills

    while more() and (seconds is None or time.monotonic() - start < seconds):
        r = run.rounds
        out = workdir / "child.out"
        proc, err = start_child(WORKLOAD_CHILD, path, str(rng.randrange(1 << 30)), f"r{r}-", out=out)
        wait_for(proc, out, err)
        # After a few operations most of the time (kills early in a run are cheap to
        # get); the wait is random so the kill lands anywhere in an operation.
        if rng.random() < 0.7:
            wait_for(proc, out, err, marker="ok")
        time.sleep(rng.uniform(0, max_wait))
        killed = kill(proc)
        assert killed, f"round {r}: the workload stopped by itself:\n{err.read_text()}"
        run.kills += 1
        run.rounds += 1
        lines = written_lines(out)
        pending = model.apply(lines)
        when = f"after kill {run.kills} (in {' '.join(pending) if pending else 'no operation'})"
        with eventlog.open(path, **OPTIONS) as store:
            model.resolve(store, pending)
            model.check_store(store, rng, when)
        assert dangling_refs(path) == [], when
        run.largest_file = max(run.largest_file, Path(path).stat().st_size)
        if progress is not None:
            progress(run)
    with eventlog.open(path, **OPTIONS) as store:
        store.compact()
        report = check_verify(store, "after the last compaction")
        assert report.garbage_chunks == 0
        model.check_store(store, rng, "after the last compaction", folds=10)
    run.seconds = time.monotonic() - start
    return run


def summary(run: CrashRun) -> str:
    m = run.model
    landed = ", ".join(f"{k} {v}" for k, v in m.landed.most_common())
    committed = ", ".join(f"{k} {v}" for k, v in m.committed.most_common()) or "none"
    return (
        f"{run.kills} kills in {run.seconds:.0f} s: after each the store opened, verified and held every "
        f"acknowledged save exactly.\n"
        f"  operations acknowledged: {m.acked}; live sessions at the end: {len(m.states)}, deleted: {len(m.deleted)}\n"
        f"  kills landed in: {landed}\n"
        f"  of the operations in flight, found done after the kill: {committed}\n"
        f"  largest file: {run.largest_file / 1e6:.1f} MB"
    )
