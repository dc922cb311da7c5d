"""The store's files: what a failed creation leaves, and a file replaced under an
open store.

* Creating a store that fails (here a full disk, as ``RLIMIT_FSIZE`` makes it)
  removes the file it made and what SQLite made next to it; a file that was there
  before is never removed.
* A store file renamed over, or its ``-wal`` deleted, under an open store: the next
  write raises :class:`StorageError` and writes nothing (it used to go into the
  old, unlinked files, acknowledged and lost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import eventlog

ROOT = Path(__file__).resolve().parents[2]

#: Opens a new store with files limited to ``limit`` bytes (SIGXFSZ ignored, so a
#: write past it fails with EFBIG, as on a full disk).
FULL_DISK = """
import json, resource, signal, sys
import eventlog
path, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    eventlog.open(path).close()
    print(json.dumps({"error": None}))
except eventlog.EventLogError as e:
    print(json.dumps({"error": type(e).__name__, "storage": isinstance(e, eventlog.StorageError), "message": str(e)}))
"""


def open_on_a_full_disk(path: Path, limit: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path), str(limit)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


# The limits stop the setup at different points: the -shm, the first frames of
# the WAL, the commit of the schema.
LIMITS = [2048, 4096, 30000, 60000]


@pytest.mark.parametrize("limit", LIMITS)
def test_a_failed_creation_leaves_nothing_behind(tmp_path: Path, limit: int) -> None:
    where = tmp_path / "stores"
    where.mkdir()
    result = open_on_a_full_disk(where / "store.db", limit)
    assert result["error"] is not None and result["storage"], result
    assert sorted(os.listdir(where)) == []


@pytest.mark.parametrize("limit", LIMITS)
def test_a_failed_setup_never_removes_a_file_that_was_there(tmp_path: Path, limit: int) -> None:
    """An empty file (which an open makes a store): the failed open leaves it."""
    where = tmp_path / "stores"
    where.mkdir()
    (where / "store.db").touch()
    result = open_on_a_full_disk(where / "store.db", limit)
    assert result["error"] is not None and result["storage"], result
    assert (where / "store.db").exists()


def test_a_new_file_at_the_path_meanwhile_is_not_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cleanup removes the file only if it is still the one this open made."""
    from eventlog.backends.sqlite import connection as sql

    path = tmp_path / "store.db"
    migrate = sql.Database._migrate

    def replaced_then_failing(self: sql.Database, new_meta: dict[str, str | bytes]) -> None:
        os.rename(path, tmp_path / "moved.db")
        path.write_text("someone else's")
        migrate(self, new_meta)
        raise eventlog.StorageError("the disk is full")

    monkeypatch.setattr(sql.Database, "_migrate", replaced_then_failing)
    with pytest.raises(eventlog.StorageError, match="the disk is full"):
        eventlog.open(str(path))
    assert path.read_text() == "someone else's"


def test_a_failed_creation_in_process_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any failure while the new store is set up (here an interruption) removes it."""
    from eventlog.backends.sqlite import connection as sql

    def interrupted(self: sql.Database, new_meta: dict[str, str | bytes]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sql.Database, "_migrate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        eventlog.open(str(tmp_path / "store.db"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- replaced files


def test_a_store_renamed_over_an_open_store_stops_its_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    other = str(tmp_path / "other.db")
    store = eventlog.open(path)
    store.save("mine", {"entries": [{"id": 1}]})
    with eventlog.open(other) as o:
        o.save("theirs", {"entries": [{"id": "t"}]})
    os.replace(other, path)
    with pytest.raises(eventlog.StorageError, match="replaced or its -wal deleted"):
        store.save("mine", {"entries": [{"id": 1}, {"id": 2}]})
    with pytest.raises(eventlog.StorageError, match="replaced"):
        store.append("new", [{"id": 1}])
    with pytest.raises(eventlog.StorageError, match="replaced"):
        store.delete("theirs")  # (it reads first: the old file has no such session)
    with pytest.raises(eventlog.StorageError, match="replaced"):
        store.load("mine")  # what the old file holds is not the store at the path
    store.close()
    with eventlog.open(path) as reopened:  # the file now at the path is whole, and unchanged
        assert reopened.sessions() == ["theirs"]
        assert reopened.load("theirs") == {"entries": [{"id": "t"}]}
        assert reopened.verify().ok


def test_a_deleted_wal_stops_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    with eventlog.open(path) as store:
        store.save("s", {"entries": [{"id": 1}]})
        os.remove(path + "-wal")
        with pytest.raises(eventlog.StorageError, match="replaced or its -wal deleted"):
            store.save("s", {"entries": [{"id": 1}, {"id": 2}]})
        with pytest.raises(eventlog.StorageError, match="-wal deleted"):
            store.compact()
    with eventlog.open(path) as store:
        assert store.load("s") == {"entries": [{"id": 1}]}  # acknowledged, still there
        assert store.verify().ok


def test_the_files_stay_the_same_through_ordinary_use(tmp_path: Path) -> None:
    """Compaction (which truncates the WAL), other stores opening and closing, and a
    change of working directory are not mistaken for a replaced file."""
    path = tmp_path / "store.db"
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        store = eventlog.open("store.db")
        store.save("s", {"entries": [{"id": 1}]})
        os.chdir(here)
        for i in range(3):
            with eventlog.open(str(path)) as other:
                other.append("o", [{"id": i}])
            store.delete("o")
            store.compact(vacuum=i == 2)
            store.append("s", [{"id": i + 2}])
        assert store.seq("s") == 4
        store.close()
    finally:
        os.chdir(here)
