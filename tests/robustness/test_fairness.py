"""A writer that writes back to back does not starve the others.

Every eventlog write transaction takes its turn at the store's ``-lock`` file first
(:mod:`eventlog.backends.sqlite.turnstile`); a writer that finds others waiting lets them go first.
So with one process appending in a tight loop, every other writer's call (append,
save, delete, compact, and opening the store) succeeds within ``busy_timeout``,
every time, across processes and between threads of one process.  Opening a store
of the current schema takes no write lock at all.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog.backends.sqlite import turnstile
from eventlog.backends.sqlite.turnstile import Turnstile, TurnTimeout

ROOT = Path(__file__).resolve().parents[2]

# Turns need Linux's open-file-description locks; elsewhere writers go without them.
pytestmark = pytest.mark.skipif(not turnstile._OFD, reason="no open-file-description locks here")

#: A writer in a tight loop: each append encodes 1,000 entries inside its
#: transaction, so it holds SQLite's write lock nearly all the time.
HOT = """
import sys
import eventlog
path = sys.argv[1]
batch = [{"id": i, "role": "tool", "text": "result line %d" % i, "n": [1, 2, 3]} for i in range(1000)]
with eventlog.open(path, synchronous="NORMAL", snapshot_every=0) as store:
    n = 0
    while True:
        store.append("hot", batch)
        n += 1
        if n == 10:
            print("ready", flush=True)
"""

#: Each call kind this many times while the hot writer runs.
TRIES = 50


def start_hot(path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOT, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # it has appended 10 times: it is in its loop
    assert line == "ready\n", proc.stderr.read() if proc.stderr else ""
    return proc


def starved_calls(path: str, tries: int, failures: list[str]) -> None:
    """Each kind of write call ``tries`` times with a 2 s busy timeout; what failed
    goes to ``failures``."""
    with eventlog.open(path, busy_timeout=2) as store:
        calls: dict[str, Any] = {
            "open": lambda i: eventlog.open(path, busy_timeout=2).close(),
            "append": lambda i: store.append("cold", [{"id": f"a{i}"}]),
            "save": lambda i: store.save("saved", {"entries": [{"id": f"s{i}"}], "n": i}),
            "delete": lambda i: (store.append(f"gone-{i}", [{"id": "x"}]), store.delete(f"gone-{i}")),
            "compact": lambda i: store.compact(),
        }
        for i in range(tries):
            for kind, call in calls.items():
                try:
                    call(i)
                except eventlog.StorageError as e:
                    failures.append(f"{kind} #{i}: {e}")
        assert store.seq("cold") + len([f for f in failures if f.startswith("append")]) == tries


def test_a_busy_writer_does_not_starve_other_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    eventlog.open(path).close()
    hot = start_hot(path)
    try:
        with eventlog.open(path, readonly=True) as reader:
            before = reader.seq("hot")
        failures: list[str] = []
        starved_calls(path, TRIES, failures)
        with eventlog.open(path, readonly=True) as reader:
            after = reader.seq("hot")
    finally:
        hot.kill()
        hot.wait()
    assert failures == []  # every call, 50 tries out of 50: none hit busy_timeout
    assert after > before  # the hot writer kept writing meanwhile
    with eventlog.open(path) as store:
        assert store.seq("cold") == TRIES
        assert store.load("saved") == {"entries": [{"id": f"s{TRIES - 1}"}], "n": TRIES - 1}
        assert not any(name.startswith("gone-") for name in store.sessions())
        assert store.verify().ok


def test_a_busy_writer_does_not_starve_another_thread(tmp_path: Path) -> None:
    """Two stores in one process: the turns are locks of one open file each, which
    conflict within a process too."""
    path = str(tmp_path / "store.db")
    batch = [{"id": i, "role": "tool", "text": f"result line {i}", "n": [1, 2, 3]} for i in range(1000)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def hot() -> None:
        try:
            with eventlog.open(path, synchronous="NORMAL", snapshot_every=0) as store:
                while not stop.is_set():
                    store.append("hot", batch)
        except BaseException as e:
            errors.append(e)

    eventlog.open(path).close()
    thread = threading.Thread(target=hot)
    thread.start()
    try:
        failures: list[str] = []
        starved_calls(path, 20, failures)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert failures == []


def test_async_store_and_a_busy_writer(tmp_path: Path) -> None:
    """An AsyncStore's writer thread gets its turns next to a busy writer elsewhere."""
    import asyncio

    path = str(tmp_path / "store.db")
    eventlog.open(path).close()
    hot = start_hot(path)

    async def calls() -> int:
        async with eventlog.open_async(path, busy_timeout=2) as store:
            for i in range(20):
                await store.append("cold", [{"id": i}])
                await store.save("saved", {"entries": [{"id": i}]})
            await store.compact()
            return await store.seq("cold")

    try:
        assert asyncio.run(calls()) == 20
    finally:
        hot.kill()
        hot.wait()


# ---------------------------------------------------------------------- opening


def test_opening_a_current_store_takes_no_write_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock for longer than the busy timeout: the
    store still opens and reads (it used to take the write lock to check its schema)."""
    path = str(tmp_path / "store.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": 1}])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with eventlog.open(path, busy_timeout=0.2) as store:
            assert store.load("s") == {"entries": [{"id": 1}], "leafId": 1}
            with pytest.raises(eventlog.StorageError, match="busy_timeout") as caught:
                store.append("s", [{"id": 2}])
            assert "database is locked" not in str(caught.value)
    finally:
        holder.rollback()
        holder.close()


def test_opening_runs_no_write_statement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a current-schema store reads: no BEGIN IMMEDIATE, no journal mode set
    (the file is WAL already), no lock file made."""
    path = str(tmp_path / "store.db")
    eventlog.open(path).close()
    os.remove(path + "-lock")
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = connect(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(sqlite3, "connect", traced)
    with eventlog.open(path) as store:
        assert store.seq("s") == 0
    assert statements
    assert not [s for s in statements if "IMMEDIATE" in s.upper() or "JOURNAL_MODE=" in s.upper().replace(" ", "")]
    assert not os.path.exists(path + "-lock")


def test_creating_and_upgrading_take_the_turn(tmp_path: Path) -> None:
    """Creating a store writes: it waits for its turn like any writer (here another
    holds it past the timeout), and then succeeds."""
    path = str(tmp_path / "store.db")
    eventlog.open(path).close()
    os.remove(path)
    other = Turnstile.open(path)
    assert other is not None
    other.acquire(0)
    try:
        with pytest.raises(eventlog.StorageError, match="busy_timeout"):
            eventlog.open(path, busy_timeout=0.1)
        assert not os.path.exists(path)  # the failed creation left nothing behind
    finally:
        other.close()
    with eventlog.open(path, busy_timeout=0.1) as store:
        store.append("s", [{"id": 1}])


def test_writes_wait_for_the_turn_then_go(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    with eventlog.open(path, busy_timeout=0.1) as store:
        store.append("s", [{"id": 1}])
        other = Turnstile.open(path)
        assert other is not None
        other.acquire(0)
        with pytest.raises(eventlog.StorageError, match="busy_timeout"):
            store.append("s", [{"id": 2}])
        with pytest.raises(eventlog.StorageError, match="busy_timeout"):
            store.compact()
        other.release()
        assert store.append("s", [{"id": 2}]) == 2
        other.close()


# ---------------------------------------------------------------------- the turnstile


def test_the_turn_is_exclusive_within_a_process(tmp_path: Path) -> None:
    path = str(tmp_path / "x")
    a, b = Turnstile.open(path), Turnstile.open(path)
    assert a is not None and b is not None
    a.acquire(0)
    with pytest.raises(TurnTimeout):
        b.acquire(0.05)
    a.release()
    b.acquire(0)
    with pytest.raises(TurnTimeout):
        a.acquire(0)
    b.close()  # closing gives the turn back
    a.acquire(0)
    a.close()


def test_a_waiter_goes_before_one_that_just_had_the_turn(tmp_path: Path) -> None:
    """One thread takes and gives back the turn back to back, holding it each time;
    another asks for it 20 times with a generous timeout and always gets it (without
    the queue, the first would take it again every time it gave it back)."""
    path = str(tmp_path / "x")
    hot, cold = Turnstile.open(path), Turnstile.open(path)
    assert hot is not None and cold is not None
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            hot.acquire(10)
            time.sleep(0.002)  # a transaction
            hot.release()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        for _ in range(20):
            cold.acquire(2)
            cold.release()
    finally:
        stop.set()
        thread.join()
        hot.close()
        cold.close()


def test_no_turns_without_ofd_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the locks are missing (not Linux), writers go on as before: no lock file."""
    monkeypatch.setattr(turnstile, "_OFD", False)
    path = str(tmp_path / "store.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": 1}])
        assert store.load("s") == {"entries": [{"id": 1}], "leafId": 1}
    assert not os.path.exists(path + "-lock")


def test_no_turns_when_the_lock_file_cannot_be_made(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A ``-lock`` that cannot be opened (here a directory, which stops root too):
    one warning, and writes go on without turns."""
    path = str(tmp_path / "store.db")
    os.mkdir(path + "-lock")
    turnstile._logged.clear()
    with caplog.at_level(logging.WARNING, logger=turnstile.logger.name), eventlog.open(path) as store:
        for i in range(3):
            store.append("s", [{"id": i}])
    with eventlog.open(path) as store:
        store.append("s", [{"id": 3}])
        assert store.seq("s") == 4
    warnings = [r for r in caplog.records if r.name == turnstile.logger.name]
    assert len(warnings) == 1 and "do not take turns" in warnings[0].getMessage()
    assert os.path.isdir(path + "-lock")


def test_read_only_opens_make_no_lock_file(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": 1}])
    os.remove(path + "-lock")
    with eventlog.open(path, readonly=True) as store:
        assert store.seq("s") == 1
    assert not os.path.exists(path + "-lock")


def test_the_lock_file_takes_the_store_files_permissions(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    eventlog.open(str(path)).close()
    os.remove(str(path) + "-lock")
    os.chmod(path, 0o660)
    with eventlog.open(str(path)) as store:
        store.append("s", [{"id": 1}])
    assert os.stat(str(path) + "-lock").st_mode & 0o777 == 0o660


@given(st.lists(st.tuples(st.sampled_from(["take", "give", "wait", "leave"]), st.integers(0, 2)), max_size=40))
def test_turns_are_exclusive_and_nobody_barges(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, int]],
) -> None:
    """Three turnstiles on one file, in any order of operations: at most one holds
    the turn; a writer takes a free turn at once unless someone is queued (then it
    queues too, and with no time to wait, fails); giving back the turn or leaving
    the queue lets the next one in."""
    path = str(tmp_path_factory.mktemp("turns") / "x")
    gates = [Turnstile.open(path) for _ in range(3)]
    assert all(g is not None for g in gates)
    holder: int | None = None
    queued: set[int] = set()
    try:
        for op, i in ops:
            g = gates[i]
            assert g is not None
            if op == "take" and holder != i and i not in queued:
                should = holder is None and not queued
                try:
                    g.acquire(0)
                    got = True
                except TurnTimeout:
                    got = False
                assert got == should, (op, i, holder, queued)
                if got:
                    holder = i
            elif op == "give" and holder == i:
                g.release()
                holder = None
            elif op == "wait" and holder != i and i not in queued:  # queue by hand, as a waiter does
                fcntl.fcntl(g.fd, fcntl.F_OFD_SETLK, turnstile._JOIN_QUEUE)
                queued.add(i)
            elif op == "leave" and i in queued:
                fcntl.fcntl(g.fd, fcntl.F_OFD_SETLK, turnstile._LEAVE_QUEUE)
                queued.discard(i)
    finally:
        for g in gates:
            if g is not None:
                g.close()
