"""Crash safety: processes killed with ``kill -9`` at random moments.

* Compaction killed anywhere leaves a store that opens, verifies, loads every live
  session as before, never has a ref to a freed chunk, and is finished by the next run.
* A writer killed in the middle of saves and deletes never loses one it was told
  had succeeded.
* A mixed workload (saves and appends with large images, huge tool outputs and
  spilled frames, snapshots, child sessions, deletes, compaction) killed at random
  moments: after each kill the store opens, verifies and holds every acknowledged
  save exactly, and the operation in flight happened entirely or not at all
  (``tools/crashing.py``; ``tools/crash`` runs hundreds of kills).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventlog
from tools import crashing
from tools.crashing import blob, check_verify, dangling_refs, kill, start_child, wait_for

#: Store options shared by the test and its child processes (small chunks: many of them).
OPTIONS: dict[str, Any] = {"synchronous": "NORMAL", "snapshot_every": 4, "chunk_bytes": 4096}

COMPACT_CHILD = """
import random
import sys
import time
from contextlib import contextmanager

import eventlog
from eventlog import compaction
from eventlog.backends.sqlite.connection import Database

path, retain, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
plain_write = Database.write


@contextmanager
def slow_write(self):
    # Compaction is quick; short pauses inside and after some of its transactions spread
    # it out so that a kill at a random moment lands anywhere in it, often inside a
    # transaction (statements run, COMMIT not yet).
    with plain_write(self):
        yield
        if rng.random() < 0.5:
            time.sleep(0.001)
    if rng.random() < 0.5:
        time.sleep(0.001)


def announce(name, step):
    def run(*args, **kwargs):
        print(name, flush=True)
        return step(*args, **kwargs)

    return run


Database.write = slow_write
compaction._remove_deleted = announce("remove-deleted", compaction._remove_deleted)
compaction._truncate_history = announce("truncate-history", compaction._truncate_history)
compaction._free_chunks = announce("free-chunks", compaction._free_chunks)
compaction.finish = announce("finish", compaction.finish)
with eventlog.open(path, synchronous="NORMAL", snapshot_every=4, chunk_bytes=4096) as store:
    print("start", flush=True)
    report = store.compact(retain=None if retain == "-" else int(retain), batch=2)
    print("done", report, flush=True)
"""

WRITER_CHILD = """
import sys
import eventlog
from tests.robustness.test_crash import side_data, writer_data

path = sys.argv[1]
with eventlog.open(path, synchronous="NORMAL", snapshot_every=4, chunk_bytes=4096) as store:
    seq = store.seq("w")
    print("start", seq, flush=True)
    while True:
        seq = store.save("w", writer_data(seq + 1))
        print("save", seq, flush=True)
        if seq % 3 == 0:
            side = f"side-{seq}"
            store.save(side, side_data(seq))
            store.save(f"{side}-child", side_data(seq + 1), parent_id=side)
            deleted = store.delete(side)
            print("delete", seq, len(deleted), flush=True)
"""


# ---------------------------------------------------------------------- helpers


def raw_counts(path: str) -> dict[str, int]:
    """Rows compaction should have removed, counted straight from the file."""
    con = sqlite3.connect(path)
    try:
        dead = "SELECT sid FROM sessions WHERE deleted_ms IS NOT NULL"
        return {
            "dead_sessions": con.execute(f"SELECT count(*) FROM ({dead})").fetchone()[0],
            "dead_events": con.execute(f"SELECT count(*) FROM events WHERE sid IN ({dead})").fetchone()[0],
            "dead_snapshots": con.execute(f"SELECT count(*) FROM snapshots WHERE sid IN ({dead})").fetchone()[0],
            "events_below_floor": con.execute(
                "SELECT count(*) FROM events e JOIN sessions s ON s.sid = e.sid WHERE e.seq <= s.base_seq"
            ).fetchone()[0],
            "snapshots_below_floor": con.execute(
                "SELECT count(*) FROM snapshots n JOIN sessions s ON s.sid = n.sid WHERE n.seq < s.base_seq"
            ).fetchone()[0],
        }
    finally:
        con.close()


def file_bytes(path: str) -> bytes:
    data = Path(path).read_bytes()
    wal = Path(path + "-wal")
    return data + wal.read_bytes() if wal.exists() else data


# ---------------------------------------------------------------------- compaction killed


@dataclass
class Forest:
    """The sessions written for the compaction test and what they should load as."""

    shared: list[bytes]  # blobs used by live and deleted sessions alike
    trees: list[list[str]] = field(default_factory=list)  # each tree's ids, root first
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)  # live id -> data
    deleted: set[str] = field(default_factory=set)
    doomed_blobs: list[bytes] = field(default_factory=list)  # used only by trees that get deleted


def random_blob(rng: random.Random) -> bytes:
    return blob(rng.randrange(1 << 30), rng.randint(40_000, 300_000))


def add_tree(store: eventlog.Store, forest: Forest, rng: random.Random, name: str, *, doomed: bool) -> list[str]:
    """A tree of 3 to 5 sessions, each with many events (saves, then appends), some
    using shared blobs; a ``doomed`` tree also uses a blob nothing else uses."""
    own = [random_blob(rng)] if doomed else []
    forest.doomed_blobs += own
    ids: list[str] = []
    for k in range(rng.randint(3, 5)):
        sid = f"{name}-s{k}"
        parent = rng.choice(ids) if ids else None
        data: dict[str, Any] = {"entries": [], "title": f"session {sid}"}
        pool = forest.shared[rng.randrange(len(forest.shared)) :] + own
        for i in range(rng.randint(6, 14)):
            entry: dict[str, Any] = {"id": f"{sid}-e{i}", "text": f"step {i} of {sid} " * rng.randint(1, 20)}
            if rng.random() < 0.4:
                entry["blob"] = rng.choice(pool)
            if own and i == 0:
                entry["own"] = own[0]
            data["entries"].append(entry)
            data["leafId"] = entry["id"]
            store.save(sid, data, parent_id=parent)
        for i in range(rng.randint(5, 30)):  # cheap small events: work for compaction
            store.append(sid, [{"id": f"{sid}-a{i}", "n": i}])
        ids.append(sid)
        forest.expected[sid] = store.load(sid) or {}
    forest.trees.append(ids)
    return ids


def delete_tree(store: eventlog.Store, forest: Forest, ids: list[str]) -> None:
    deleted = store.delete(ids[0])
    assert sorted(deleted) == sorted(i for i in ids if i in forest.expected)
    for sid in deleted:
        del forest.expected[sid]
        forest.deleted.add(sid)


def grow(store: eventlog.Store, forest: Forest, rng: random.Random, count: int) -> None:
    """A few more events on some live sessions (more history for ``retain``)."""
    for sid in rng.sample(sorted(forest.expected), min(count, len(forest.expected))):
        data = forest.expected[sid]
        for _ in range(rng.randint(2, 6)):
            entry = {"id": f"{sid}-g{len(data['entries'])}", "text": "more " * rng.randint(1, 50)}
            data["entries"].append(entry)
            data["leafId"] = entry["id"]
            store.save(sid, data)
        assert store.load(sid) == data


def check_store(path: str, forest: Forest, when: str) -> eventlog.VerifyReport:
    """The store opens and verifies, every live session loads as expected and every
    deleted one is gone."""
    with eventlog.open(path, **OPTIONS) as store:
        report = check_verify(store, when)
        assert sorted(store.sessions()) == sorted(forest.expected), when
        for sid, data in forest.expected.items():
            assert store.load(sid) == data, f"{when}: session {sid} changed"
        for sid in forest.deleted:
            assert store.load(sid) is None, f"{when}: deleted session {sid} is back"
    assert dangling_refs(path) == [], when
    return report


#: Per round: the compaction step to kill in (the child prints each step's name as it
#: starts it), the longest wait after that, and ``retain``.  "start" is anywhere;
#: "done" lets the run finish after the earlier ones were killed.
TARGETS: list[tuple[str, float, str]] = [
    ("remove-deleted", 0.04, "-"),
    ("truncate-history", 0.04, "2"),
    ("free-chunks", 0.3, "-"),
    ("finish", 0.004, "-"),
    ("start", 0.3, "2"),
    ("done", 0.0, "2"),
]


def test_compaction_killed_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    path = str(tmp_path / "store.db")
    forest = Forest(shared=[random_blob(rng) for _ in range(10)])
    with eventlog.open(path, **OPTIONS) as store:
        trees = [add_tree(store, forest, rng, f"t{t}", doomed=t < 6) for t in range(10)]
        for ids in trees[:3]:
            delete_tree(store, forest, ids)
        # a subtree of a tree that stays: only that part goes
        sub = trees[-1][1]
        delete_tree(store, forest, [sub, *store.tree(sub)])
        check_verify(store, "before compaction")
    later = trees[3:6]  # live for now, deleted between rounds
    assert len(forest.expected) >= 20

    rounds, finished = 12, 0
    stages: list[str] = []  # the step each kill landed in
    for r in range(rounds):
        target, wait, retain = TARGETS[r % len(TARGETS)]
        out = tmp_path / f"compact-{r}.out"
        proc, err = start_child(COMPACT_CHILD, path, retain, str(r), out=out)
        if target == "done":
            proc.wait(timeout=60)
            was_running = False
        else:
            wait_for(proc, out, err, target)
            time.sleep(rng.uniform(0, wait))
            was_running = kill(proc)
        output = out.read_text()
        assert proc.returncode in (0, -signal.SIGKILL), f"round {r}: compaction failed:\n{err.read_text()}"
        when = f"after round {r} (target {target}, retain={retain})"
        if "done" in output:
            finished += 1
        else:
            assert was_running
            stages.append(output.split()[-1])
            when += f", killed in {stages[-1]}"
        report = check_store(path, forest, when)
        if target == "done":  # the run after the killed ones did all that was left
            assert "done" in output
            assert report.garbage_chunks == 0
            counts = raw_counts(path)
            assert counts == dict.fromkeys(counts, 0), counts
        with eventlog.open(path, **OPTIONS) as store:  # new work for the next round
            if later:
                delete_tree(store, forest, later.pop())
            delete_tree(store, forest, add_tree(store, forest, rng, f"x{r}", doomed=True))
            grow(store, forest, rng, 4)
    print(f"compaction: killed in {stages}, {finished} of {rounds} runs finished")
    assert len(stages) >= rounds // 2, f"only {len(stages)} of {rounds} kills landed during compaction"
    assert {"remove-deleted", "free-chunks"} <= set(stages), stages

    # the next run finishes the job
    with eventlog.open(path, **OPTIONS) as store:
        assert store.compact(retain=2).checkpointed
        assert check_verify(store, "after the last compaction").garbage_chunks == 0
    counts = raw_counts(path)
    assert counts == dict.fromkeys(counts, 0), counts
    check_store(path, forest, "at the end")
    raw = file_bytes(path)
    for b in forest.doomed_blobs:
        for at in (0, len(b) // 2, len(b) - 64):
            assert b[at : at + 64] not in raw, "a deleted blob is still in the file"


# ---------------------------------------------------------------------- writer killed


def writer_data(seq: int) -> dict[str, Any]:
    """What the writer child saves as the ``seq``-th version of session ``w``."""
    entries: list[Any] = []
    for i in range(seq):
        entry: dict[str, Any] = {"id": f"e{i}", "n": i, "text": "x" * (i % 50)}
        if i % 2 == 1:  # most saves use chunks (a few distinct blobs: dedup keeps the file small)
            entry["blob"] = blob(i % 4, 40_000 + 1000 * (i % 4))
        entries.append(entry)
    return {"entries": entries, "leafId": f"e{seq - 1}", "seq": seq}


def side_data(seq: int) -> dict[str, Any]:
    return {"entries": [{"id": "a", "blob": blob(1000 + seq, 50_000)}], "seq": seq}


def test_writer_killed_never_loses_an_acknowledged_save(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = str(tmp_path / "store.db")
    acked = 0
    acked_deletes: set[int] = set()
    for r in range(8):
        out = tmp_path / f"writer-{r}.out"
        proc, err = start_child(WRITER_CHILD, path, out=out)
        wait_for(proc, out, err, marker="save")  # the first save can be slow (cbor2 imports on first use)
        time.sleep(rng.uniform(0.05, 0.3))
        assert kill(proc), f"round {r}: the writer stopped by itself:\n{err.read_text()}"
        lines = crashing.written_lines(out)
        saves = [int(line.split()[1]) for line in lines if line.startswith("save ")]
        acked_deletes |= {int(line.split()[1]) for line in lines if line.startswith("delete ")}
        assert saves, f"round {r}: no save acknowledged"
        print(f"writer round {r}: saves {saves[0]}..{saves[-1]} acknowledged, last line {lines[-1]!r}")
        assert saves == list(range(acked + 1, acked + 1 + len(saves))), f"round {r}: saves out of order"
        acked = saves[-1]
        with eventlog.open(path, **OPTIONS) as store:
            seq = store.seq("w")
            assert acked <= seq <= acked + 1, f"round {r}: seq {seq}, last acknowledged {acked}"
            assert store.load("w") == writer_data(seq)
            acked = seq  # the next writer starts from what is stored
            for n in acked_deletes:
                assert store.load(f"side-{n}") is None
                assert store.load(f"side-{n}-child") is None
            check_verify(store, f"after writer round {r}")
    with eventlog.open(path, **OPTIONS) as store:
        store.compact()
        report = check_verify(store, "after compaction")
        assert report.garbage_chunks == 0
        assert store.load("w") == writer_data(acked)


# ---------------------------------------------------------------------- mixed workload killed


def test_mixed_workload_killed_at_random_moments(tmp_path: Path) -> None:
    run = crashing.run_mixed(str(tmp_path / "store.db"), tmp_path, kills=10, seed=6, max_wait=0.4, inside=5)
    print(crashing.summary(run))
    model = run.model
    assert model.acked > 30, "too few operations acknowledged to mean much"
    assert sum(model.landed[k] for k in ("save", "append", "snapshot", "delete", "compact")) >= 5, model.landed


def test_the_long_crash_run_runs(tmp_path: Path) -> None:
    """``tools/crash`` (what a long run uses) works: two kills of it."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "tools/crash", "--kills", "2", "--seed", "1", "--keep", str(tmp_path / "kept.db")],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kills in" in done.stdout and "held every acknowledged save exactly" in done.stdout
