"""Several processes and threads on one file: every race has exactly one winner.

Writers append to the same session with ``expected_seq`` set to what they last saw;
the losers get :class:`ConflictError` and retry from the new head.  At the end the
session holds every acknowledged append exactly once, in order of acknowledgement,
and no writer ever saw ``database is locked`` (or any other error).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import eventlog

WRITER = """
import json, sys, time
import eventlog
path, name, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
won = conflicts = 0
with eventlog.open(path, synchronous="NORMAL", busy_timeout=30) as store:
    time.sleep(max(0.0, start - time.time()))  # all writers start together
    while won < count:
        seq = store.seq("shared")
        try:
            store.append("shared", [{"id": f"{name}-{won}", "by": name}], expected_seq=seq)
            won += 1
        except eventlog.ConflictError:
            conflicts += 1
        store.append(f"own-{name}", [{"id": str(won)}])  # a session of its own, concurrently
print(json.dumps({"won": won, "conflicts": conflicts}))
"""


def test_processes_racing_on_one_session(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    eventlog.open(path).close()
    cmd = [sys.executable, "-c", WRITER, path]
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen([*cmd, f"p{i}", "40", start], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err  # no "database is locked", no other error
        results.append(json.loads(out))
    with eventlog.open(path) as store:
        data = store.load("shared")
        assert data is not None
        ids = [e["id"] for e in data["entries"]]
        assert len(ids) == len(set(ids)) == 160 == store.seq("shared")  # each exactly once, nothing lost
        for i in range(4):
            mine = [int(x.split("-")[1]) for x in ids if x.startswith(f"p{i}-")]
            assert mine == list(range(40))  # each writer's appends in its own order
            assert store.seq(f"own-p{i}") == 40 + results[i]["conflicts"]
        assert store.verify().ok
    assert sum(r["conflicts"] for r in results) > 0  # the writers really raced


def test_threads_sharing_one_store(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    wins: list[int] = []
    with eventlog.open(str(tmp_path / "threads.db"), synchronous="NORMAL") as store:

        def work(n: int) -> None:
            won = 0
            try:
                while won < 25:
                    try:
                        store.append("shared", [{"id": f"t{n}-{won}"}], expected_seq=store.seq("shared"))
                        won += 1
                    except eventlog.ConflictError:
                        pass
                    store.save(f"own-{n}", {"entries": [{"id": str(won)}]})
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            wins.append(won)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and sum(wins) == 100
        data = store.load("shared")
        assert data is not None and len({e["id"] for e in data["entries"]}) == 100 == store.seq("shared")
        assert store.verify().ok
