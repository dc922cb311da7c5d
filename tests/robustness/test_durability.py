"""Durability settings: ``open(..., synchronous=...)``.

What each setting promises (SQLite, WAL journal):

* ``FULL`` (the default) and ``EXTRA``: the WAL is synced on every commit, so a write
  that returned survives a process crash, an OS crash and power loss (as far as the
  disk honours ``fsync``).
* ``NORMAL``: the WAL is synced only at checkpoints.  A write that returned survives
  a process crash (its bytes are in the OS's page cache); an OS crash or power loss
  may lose the last writes, never the file's consistency.
* ``OFF``: never synced.  Survives a process crash too; an OS crash or power loss may
  lose writes and damage the file.

Here the setting is checked to be applied, bad values to be refused, and a process
killed with ``kill -9`` in the middle of appends and saves never to lose one that
returned, for each setting.  Power loss and OS crashes cannot be produced in a test
process: that half of the promise rests on SQLite and the disk, and is not tested.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import eventlog
from tools.crashing import blob, check_verify, kill, start_child, wait_for

LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


@pytest.mark.parametrize("setting", ["OFF", "NORMAL", "FULL", "EXTRA", "normal", "Full"])
def test_the_setting_is_applied(db_path: str, setting: str) -> None:
    with eventlog.open(db_path, synchronous=setting) as store:
        con = store._backend.db.con  # the setting is per connection: read it on the store's own
        assert con.execute("PRAGMA synchronous").fetchone()[0] == LEVELS[setting.upper()]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_default_is_full(db_path: str) -> None:
    with eventlog.open(db_path) as store:
        assert store._backend.db.con.execute("PRAGMA synchronous").fetchone()[0] == LEVELS["FULL"]


@pytest.mark.parametrize("bad", ["MEDIUM", "", "FULL ", 2, None, b"FULL"])
def test_a_bad_setting_is_refused_before_the_file_is_touched(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "store.db"
    with pytest.raises(eventlog.InvalidValueError, match="synchronous must be one of OFF, NORMAL, FULL, EXTRA"):
        eventlog.open(str(path), synchronous=bad)
    assert not path.exists()
    with pytest.raises(ValueError):  # InvalidValueError is also a ValueError
        eventlog.open(str(path), synchronous=bad)


# ---------------------------------------------------------------------- kill -9

APPENDER_CHILD = """
import sys
import eventlog
from tests.robustness.test_durability import appended_entry, saved_state

path, setting = sys.argv[1], sys.argv[2]
with eventlog.open(path, synchronous=setting, snapshot_every=8, chunk_bytes=4096) as store:
    seq = store.seq("a")
    print("start", seq, flush=True)
    while True:
        seq += 1
        if seq % 5 == 0:
            got = store.save("a", saved_state(store.load("a"), seq))
        else:
            got = store.append("a", [appended_entry(seq)], expected_seq=seq - 1)
        assert got == seq, (got, seq)
        sys.stdout.write(f"ok {seq}\\n")  # one line, one write: a kill cannot tear it
        sys.stdout.flush()
"""


def appended_entry(seq: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": f"e{seq}", "seq": seq, "text": "step " * (seq % 40)}
    if seq % 3 == 0:  # a large value: chunks written in the same transaction
        entry["blob"] = blob(seq, 40_000)
    return entry


def saved_state(data: dict[str, Any] | None, seq: int) -> dict[str, Any]:
    """What the child saves as event ``seq`` (every fifth): the session with a field
    changed and one more entry."""
    data = data or {"entries": []}
    data["entries"].append(appended_entry(seq))
    data["leafId"] = f"e{seq}"
    data["saved"] = seq
    return data


def expected(seq: int) -> dict[str, Any]:
    """The session after ``seq`` events of the child."""
    data: dict[str, Any] | None = None
    for k in range(1, seq + 1):
        if k % 5 == 0:
            data = saved_state(data, k)
        elif data is None:
            data = {"entries": [appended_entry(k)], "leafId": f"e{k}"}
        else:
            data["entries"].append(appended_entry(k))
            data["leafId"] = f"e{k}"
    return data or {}


@pytest.mark.parametrize("setting", ["FULL", "NORMAL", "OFF"])
def test_a_write_that_returned_survives_kill_9(tmp_path: Path, setting: str) -> None:
    """The writer is killed at random moments; every append and save it was told had
    succeeded is there when the file is opened again (the one in flight may or may
    not be), and the store verifies."""
    rng = random.Random(setting)
    path = str(tmp_path / "store.db")
    acked = 0
    for r in range(4):
        out = tmp_path / f"appender-{r}.out"
        proc, err = start_child(APPENDER_CHILD, path, setting, out=out)
        wait_for(proc, out, err, marker="ok ")  # at least one write returned, however loaded the machine
        time.sleep(rng.uniform(0.05, 0.25))
        assert kill(proc), f"round {r}: the writer stopped by itself:\n{err.read_text()}"
        # (a line the kill cut short is not a write that returned)
        done = [int(line[3:]) for line in out.read_text().split("\n")[:-1] if line.startswith("ok ")]
        assert done, f"round {r}: no write returned\n{err.read_text()}"
        assert done == list(range(acked + 1, done[-1] + 1)), f"round {r}: writes out of order"
        with eventlog.open(path, synchronous=setting) as store:
            seq = store.seq("a")
            assert done[-1] <= seq <= done[-1] + 1, f"round {r}: seq {seq}, last returned {done[-1]}"
            assert store.load("a") == expected(seq)
            check_verify(store, f"{setting}, after round {r}")
        print(f"{setting} round {r}: writes {done[0]}..{done[-1]} returned, {seq} stored")
        acked = seq
    # The WAL was recovered by the reopening, not lost: the rows are in the file.
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == acked
    con.close()
