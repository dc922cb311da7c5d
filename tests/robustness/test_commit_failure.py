"""A commit that fails at the disk: the outcome is unknown, and the retry is safe.

When syncing the WAL fails at ``COMMIT``, SQLite reports the transaction rolled
back and the same connection sees the old head, but its commit frame is in the
``-wal`` file: after a crash (or a reopening that recovers the WAL) the write is
there.  eventlog raises :class:`OutcomeUnknownError` (with ``session_id``, the
``seq`` the write would have had and ``expected_seq``, the head before it), reopens
its connection, and the documented retry, with ``expected_seq=err.expected_seq``,
either writes once or raises :class:`ConflictError`: never twice.

The failures are injected with an ``LD_PRELOAD`` shim (compiled here with the
system C compiler; Python's ``_sqlite3`` links the system ``libsqlite3``
dynamically, so the shim sees SQLite's ``fdatasync``) that makes ``fsync`` and
``fdatasync`` fail with EIO on files whose name ends in ``-wal`` while the file
named by ``$EVENTLOG_FAIL_SYNC`` exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import eventlog

ROOT = Path(__file__).resolve().parents[2]

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether syncing fd must fail: it is a -wal file and the trigger file exists. */
static int failing(int fd) {
    const char *trigger = getenv("EVENTLOG_FAIL_SYNC");
    char link[64], target[4096];
    ssize_t n;
    if (trigger == NULL || access(trigger, F_OK) != 0)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof target - 1);
    if (n < 4)
        return 0;
    target[n] = 0;
    return strcmp(target + n - 4, "-wal") == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler on Linux to build the fsync shim")
    where = tmp_path_factory.mktemp("shim")
    (where / "failsync.c").write_text(SHIM)
    lib = where / "failsync.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(where / "failsync.c"), "-ldl"], check=True)
    return str(lib)


def run_child(shim: str, code: str, *args: str, trigger: Path, kill_after: str | None = None) -> list[Any]:
    """Run ``code`` in a Python child with the shim preloaded; its stdout lines are
    JSON.  With ``kill_after``, the child is killed with SIGKILL as soon as it prints
    a line holding that key (it waits after printing it)."""
    env = {**os.environ, "LD_PRELOAD": shim, "EVENTLOG_FAIL_SYNC": str(trigger)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if kill_after is not None and kill_after in lines[-1]:
            proc.send_signal(signal.SIGKILL)
            break
    err = proc.stderr.read()
    proc.wait(timeout=60)
    if kill_after is None:
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == -signal.SIGKILL, err
    return lines


CHILD = """
import json, os, sys
from pathlib import Path
import eventlog

path, kind, trigger, others = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
say = lambda **kw: print(json.dumps(kw), flush=True)

def write(store, n, **kw):
    if kind == "append":
        return store.append("s", [{"id": n}], **kw)
    return store.save("s", {"entries": [{"id": i} for i in range(1, n + 1)], "n": n}, **kw)

store = eventlog.open(path)
# Another connection to the file keeps SQLite's WAL index alive across the reopening,
# so the failed commit stays invisible until a writer overwrites it.
other = eventlog.open(path) if others == "other" else None
write(store, 1)
trigger.touch()
try:
    write(store, 2)
    say(error=None)
    sys.exit(0)
except eventlog.OutcomeUnknownError as e:
    err = e
    say(error=type(e).__name__, session_id=e.session_id, seq=e.seq, expected_seq=e.expected_seq, message=str(e))
finally:
    trigger.unlink()
say(seen=store.seq("s"))
if sys.argv[5] == "wait":
    say(waiting=True)
    sys.stdin.read()  # killed here
try:
    if len(sys.argv) > 6:  # a plain retry (save() is idempotent by content)
        say(retried=write(store, 2))
    else:
        say(retried=write(store, 2, expected_seq=err.expected_seq))
except eventlog.ConflictError:
    say(conflict=store.seq("s"))
say(entries=[x["id"] for x in store.load("s")["entries"]], ok=store.verify().ok)
"""


def expected_error(line: dict[str, Any]) -> None:
    assert line["error"] == "OutcomeUnknownError", line
    assert (line["session_id"], line["seq"], line["expected_seq"]) == ("s", 2, 1)
    assert "may or may not" in line["message"]


@pytest.mark.parametrize("kind", ["append", "save"])
@pytest.mark.parametrize("others", ["alone", "other"])
def test_retry_with_expected_seq_writes_exactly_once(tmp_path: Path, shim: str, kind: str, others: str) -> None:
    """The write's sync fails; the same process retries it with the error's
    ``expected_seq``: the entry is stored exactly once, whichever way it went (alone,
    the reopening recovers the failed commit and the retry conflicts; with another
    connection open, the retry writes)."""
    path = str(tmp_path / "store.db")
    lines = run_child(shim, CHILD, path, kind, str(tmp_path / "trigger"), others, "go", trigger=tmp_path / "trigger")
    expected_error(lines[0])
    result = {k: v for line in lines[1:] for k, v in line.items()}
    assert result["entries"] == [1, 2] and result["ok"], lines
    if "conflict" in result:
        assert result["conflict"] >= lines[0]["seq"]  # the first attempt was committed after all
    else:
        assert result["retried"] == 2
    with eventlog.open(path) as store:
        assert [e["id"] for e in store.load("s")["entries"]] == [1, 2]
        assert store.verify().ok


@pytest.mark.parametrize("others", ["alone", "other"])
def test_killed_after_the_failed_append_the_retry_does_not_duplicate(tmp_path: Path, shim: str, others: str) -> None:
    """The writer is killed (SIGKILL) right after the failed append: the store opens
    and verifies, and the retry with ``expected_seq`` leaves the entry there once."""
    path = str(tmp_path / "store.db")
    trigger = tmp_path / "trigger"
    lines = run_child(shim, CHILD, path, "append", str(trigger), others, "wait", trigger=trigger, kill_after="waiting")
    expected_error(lines[0])
    with eventlog.open(path) as store:
        assert store.verify().ok
        seq = store.seq("s")
        assert seq in (1, 2)
        try:
            store.append("s", [{"id": 2}], expected_seq=lines[0]["expected_seq"])
        except eventlog.ConflictError:
            assert store.seq("s") >= lines[0]["seq"]
        data = store.load("s")
        assert data is not None and [e["id"] for e in data["entries"]] == [1, 2]
        assert store.verify().ok


CACHE_CHILD = """
import json, sys
from pathlib import Path
import eventlog

path, trigger = sys.argv[1], Path(sys.argv[2])
with eventlog.open(path) as store, eventlog.open(path) as other:
    store.save("s", {"entries": [{"id": 1}]})
    trigger.touch()
    try:
        store.save("s", {"entries": [{"id": 1}, {"id": 2}]})
    except eventlog.OutcomeUnknownError:
        pass
    trigger.unlink()
    # Another writer moves the session on; the store's next save diffs against the
    # stored state, not a cached one from before the failure.
    other.save("s", {"entries": [{"id": 9}]})
    store.save("s", {"entries": [{"id": 9}, {"id": 10}]})
    print(json.dumps({"loaded": store.load("s"), "seq": store.seq("s"), "ok": store.verify().ok}))
"""


def test_after_an_unknown_outcome_the_store_rereads_the_file(tmp_path: Path, shim: str) -> None:
    path = str(tmp_path / "store.db")
    [result] = run_child(shim, CACHE_CHILD, path, str(tmp_path / "trigger"), trigger=tmp_path / "trigger")
    assert result["loaded"] == {"entries": [{"id": 9}, {"id": 10}]}
    assert result["ok"]


class _FailingRollback:
    """A connection whose rollback fails as SQLite's can (here: "database is locked")."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def rollback(self) -> None:
        raise sqlite3.OperationalError("database is locked")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def test_a_failed_rollback_never_reaches_the_caller(tmp_path: Path) -> None:
    """A write that fails inside its transaction raises its own error, even when
    rolling back fails too; the store reconnects and goes on."""
    path = str(tmp_path / "store.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": 1}])
        store._backend.db.con = _FailingRollback(store._backend.db.con)  # type: ignore[assignment]
        with pytest.raises(eventlog.InvalidValueError):
            store.append("s", [{"id": {1, 2}}])  # a set: not storable
        assert store.append("s", [{"id": 2}]) == 2
        assert store.load("s") == {"entries": [{"id": 1}, {"id": 2}], "leafId": 2}


@pytest.mark.parametrize("others", ["alone", "other"])
def test_a_plain_retry_of_save_leaves_the_session_as_saved(tmp_path: Path, shim: str, others: str) -> None:
    path = str(tmp_path / "store.db")
    trigger = tmp_path / "trigger"
    lines = run_child(shim, CHILD, path, "save", str(trigger), others, "go", "plain", trigger=trigger)
    expected_error(lines[0])
    result = {k: v for line in lines[1:] for k, v in line.items()}
    assert result["entries"] == [1, 2] and result["ok"], lines
    assert result["retried"] in (2, 3)  # 3: the first attempt was committed, and this is one event more
