"""The public API, the same tests for Store and AsyncStore.

``open_store`` (conftest.py) is ``eventlog.open`` or a synchronous view of
``eventlog.open_async``; the ``store`` fixture, used across test_store.py and
test_trees.py, is parametrised the same way.  These are the cases those files write
with ``eventlog.open`` directly: reopening, closing, options, the whole method list.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import eventlog
from eventlog.samples import coding_session
from eventlog.testing import histories

from ..helpers import dump, largest_cell_and_row

Open = Callable[..., Any]

#: Every method of the Store API; the async store has each as a coroutine.
METHODS = [
    *("save", "append", "load", "fold", "events", "seq", "sessions", "parent", "info", "session_infos"),
    *("children", "tree", "delete", "compact", "verify", "snapshot", "stats", "close"),
]


def test_the_async_store_has_every_method_as_a_coroutine() -> None:
    import inspect

    for name in METHODS:
        assert callable(getattr(eventlog.Store, name)), name
        sync, aio = getattr(eventlog.Store, name), getattr(eventlog.AsyncStore, name)
        assert list(inspect.signature(sync).parameters) == list(inspect.signature(aio).parameters), name
        assert inspect.iscoroutinefunction(getattr(eventlog.AsyncStore, name)) == (name != "events"), name


def test_reopen_keeps_everything(db_path: str, open_store: Open) -> None:
    states = []
    s = open_store(db_path)
    for data in coding_session(40, seed=3):
        s.save("s", data)
        states.append(dump(data))
    s.append("t", [{"id": "a"}], parent_id="s")
    s.close()
    s = open_store(db_path)
    assert dump(s.load("s")) == states[-1]
    assert [dump(s.fold("s", at=k)) for k in (1, 10, 40)] == [states[0], states[9], states[39]]
    assert s.sessions() == ["s", "t"] and s.parent("t") == "s" and s.children("s") == ["t"]
    assert [e.seq for e in s.events("s", since=37)] == [38, 39, 40]


def test_close_is_idempotent_and_later_calls_fail(db_path: str, open_store: Open) -> None:
    s = open_store(db_path)
    s.save("x", {"a": 1})
    s.close()
    s.close()
    for call in (lambda: s.load("x"), lambda: s.save("x", {}), lambda: s.events("x"), lambda: s.stats()):
        with pytest.raises(eventlog.StoreClosedError):
            call()
    s = open_store(db_path)
    assert s.load("x") == {"a": 1}


def test_info_and_snapshot(db_path: str, open_store: Open) -> None:
    s = open_store(db_path, snapshot_every=0)
    for i in range(5):
        s.append("s", [{"id": str(i), "text": "x" * 100}])
    assert s.snapshot("s") == 5
    info = s.info("s")
    assert (info.session_id, info.parent_id, info.seq, info.history_start) == ("s", None, 5, 0)
    assert info.created_ms <= info.updated_ms and info.stored_bytes > 0
    assert s.stats()["snapshots"]["rows"] == 1
    with pytest.raises(eventlog.NotFoundError):
        s.info("nope")


def test_events_come_in_order_across_pages(db_path: str, open_store: Open) -> None:
    s = open_store(db_path)
    for i in range(600):
        s.append("s", [{"id": str(i)}])
    assert [e.seq for e in s.events("s")] == list(range(1, 601))
    it = s.events("s", since=250)
    assert next(it).seq == 251
    s.append("s", [{"id": "late"}])  # written while the iterator is open: seen, in order
    assert [e.seq for e in it] == list(range(252, 602))
    assert list(s.events("s", since=601)) == []
    with pytest.raises(eventlog.NotFoundError):
        s.events("s", since=602)
    with pytest.raises(eventlog.InvalidValueError):
        s.events("s", since=-1)


def test_events_of_a_session_deleted_while_read(db_path: str, open_store: Open) -> None:
    s = open_store(db_path)
    for i in range(300):
        s.append("s", [{"id": str(i)}])
    it = s.events("s")
    assert next(it).seq == 1
    s.delete("s")
    s.save("s", {"entries": [{"id": "new"}]})  # a new session under the same id is not the one being read
    with pytest.raises(eventlog.NotFoundError):
        list(it)


def test_delete_compact_verify_stats(db_path: str, open_store: Open) -> None:
    img = base64.b64encode(random.Random(4).randbytes(300_000)).decode()
    s = open_store(db_path)
    s.save("keep", {"entries": [{"id": "1", "img": img}]})
    s.save("gone", {"entries": [{"id": "1", "img": img[::-1]}]})
    s.save("gone/child", {"entries": []}, parent_id="gone")
    assert s.tree("gone") == ["gone/child"]
    assert s.delete("gone") == ["gone", "gone/child"]
    report = s.compact()
    assert report.sessions_removed == 2 and report.chunks_freed >= 1 and report.checkpointed
    check = s.verify()
    assert check.ok and check.garbage_chunks == 0 and check.sessions == 1
    stats = s.stats()
    assert stats["sessions"]["count"] == 1 and stats["largest_cell"] <= stats["max_cell_bytes"]
    assert s.load("keep") == {"entries": [{"id": "1", "img": img}]}


def test_big_values_round_trip_under_budget(db_path: str, open_store: Open) -> None:
    image = "data:image/png;base64," + base64.b64encode(random.Random(1).randbytes(4_000_000)).decode()
    data = {"entries": [{"type": "message", "content": [{"type": "input_image", "image_url": image}]}]}
    s = open_store(db_path)
    s.save("s", data)
    s.close()
    assert open_store(db_path).load("s") == data
    cell, row = largest_cell_and_row(db_path)
    assert cell <= 2_000_000 and row <= 2_000_000


def test_a_private_memory_store(open_store: Open) -> None:
    s = open_store(":memory:")
    s.save("s", {"entries": [{"id": "a"}]})
    assert s.append("s", [{"id": "b"}], expected_seq=1) == 2
    assert s.load("s") == {"entries": [{"id": "a"}, {"id": "b"}], "leafId": "b"}
    assert s.verify().ok


def test_options_are_checked(db_path: str, open_store: Open) -> None:
    with pytest.raises(eventlog.InvalidValueError, match="max_cell_bytes must be"):
        open_store(db_path, max_cell_bytes=10)
    with pytest.raises(eventlog.InvalidValueError, match="'no_such_option' is not an option"):
        open_store(db_path, no_such_option=1)


class FsPath:
    """An os.PathLike of someone else's making, giving ``value`` as its path."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __fspath__(self) -> Any:
        return self.value


def test_a_path_may_be_any_path_like(tmp_path: Path, open_store: Open) -> None:
    """pathlib.Path or any os.PathLike of a str opens the file named; readonly too."""
    first = open_store(tmp_path / "a.db")
    first.save("s", {"entries": [{"id": "a"}]})
    first.close()
    for path in (tmp_path / "a.db", FsPath(str(tmp_path / "a.db"))):
        s = open_store(path)
        assert s.load("s") == {"entries": [{"id": "a"}]}
        s.close()
    s = open_store(tmp_path / "a.db", readonly=True)
    assert s.load("s") == {"entries": [{"id": "a"}]}
    s.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm", "-lock"))) == ["a.db"]


BAD_PATHS = [
    *(None, 3, 1.5, b"store.db", bytearray(b"store.db"), ["store.db"]),
    *(FsPath(b"store.db"), FsPath(3), FsPath(Path("x"))),
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda p: type(p).__name__ + repr(getattr(p, "value", "")))
def test_a_path_of_another_type_is_refused_naming_it(
    tmp_path: Path, open_store: Open, path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a bytes path that got through would make a file here
    with pytest.raises(eventlog.InvalidValueError, match=r"^path must be a str or os.PathLike|^path: "):
        open_store(path)
    assert list(tmp_path.iterdir()) == []


def test_not_an_eventlog_file(tmp_path: Any, open_store: Open) -> None:
    path = str(tmp_path / "other.db")
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.close()
    with pytest.raises(eventlog.UnsupportedVersionError):
        open_store(path)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories())
def test_round_trip_of_every_saved_state(
    tmp_path_factory: pytest.TempPathFactory, open_store: Open, history: Any
) -> None:
    path = os.path.join(tmp_path_factory.mktemp("h"), "h.db")
    s = open_store(path, max_cell_bytes=64_000)
    for k, state in enumerate(history, 1):
        assert s.save("s", state) == k
        assert dump(s.load("s")) == dump(state)
    assert [dump(s.fold("s", at=k)) for k in range(1, len(history) + 1)] == [dump(x) for x in history]
    s.close()
