"""The SQLite backend passes the backend conformance suite (:mod:`eventlog.conformance`),
and holds the limits it sets on its connection: no cell over ``max_cell_bytes`` and
no statement binding more than 100 values can even be run."""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from eventlog.backend import Backend
from eventlog.backends.sqlite import SQLiteBackend
from eventlog.backends.sqlite.schema import MAX_PARAMS
from eventlog.conformance import BackendTests, chunk_for
from eventlog.errors import StorageError

_names = itertools.count()


def _sqlite(b: Backend) -> SQLiteBackend:
    assert isinstance(b, SQLiteBackend)
    return b


class TestSQLiteBackend(BackendTests):
    def make_backend(self, **options: Any) -> Backend:
        path = str(self.tmp_path / f"store{next(_names)}.db")
        return SQLiteBackend(path, max_cell_bytes=options.get("max_cell_bytes", 2_000_000), synchronous="OFF",
                             new_meta={"made_by": "conformance"})  # fmt: skip

    def another_handle(self, backend: Backend, *, readonly: bool = False) -> Backend:
        b = _sqlite(backend)
        return SQLiteBackend(b.path, max_cell_bytes=b.limits.max_cell_bytes, synchronous="OFF", readonly=readonly)

    def process_opener(self, backend: Backend) -> Callable[[], Backend] | None:
        b = _sqlite(backend)
        return functools.partial(SQLiteBackend, b.path, max_cell_bytes=b.limits.max_cell_bytes, synchronous="OFF")

    def bound_params(self, backend: Backend) -> AbstractContextManager[list[int]] | None:
        return _tracing(_sqlite(backend))

    def damage(self, backend: Backend, kind: str, *, sid: int = 0, seq: int = 0, hash: bytes = b"") -> None:
        statements = {
            "event_column": ("UPDATE events SET ts_ms = 'when?' WHERE sid = ? AND seq = ?", (sid, seq)),
            "event_frame": ("UPDATE events SET frame = 'text' WHERE sid = ? AND seq = ?", (sid, seq)),
            "event_missing": ("DELETE FROM events WHERE sid = ? AND seq = ?", (sid, seq)),
            "session_column": ("UPDATE sessions SET seq = 'head?' WHERE sid = ?", (sid,)),
            "snapshot_seq": ("UPDATE snapshots SET seq = 'where?' WHERE sid = ? AND seq = ?", (sid, seq)),
            "snapshot_frame": ("UPDATE snapshots SET frame = 'text' WHERE sid = ? AND seq = ?", (sid, seq)),
            "chunk_column": ("UPDATE chunks SET size = 'big?' WHERE hash = ?", (hash,)),
            "chunk_missing": ("DELETE FROM chunks WHERE hash = ?", (hash,)),
        }
        sql, params = statements[kind]
        con = sqlite3.connect(_sqlite(backend).path)
        try:
            assert con.execute(sql, params).rowcount == 1
            con.commit()
        finally:
            con.close()


@contextmanager
def _tracing(b: SQLiteBackend) -> Iterator[list[int]]:
    """The number of values each statement of ``b`` binds (every statement of the
    backend runs through ``Database.run`` or ``Database.rows``)."""
    bound: list[int] = []
    db = b.db
    run, rows = db.run, db.rows

    def traced(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(sql: str, params: Sequence[Any] = ()) -> Any:
            bound.append(len(params))
            return real(sql, params)

        return call

    db.run, db.rows = traced(run), traced(rows)  # type: ignore[method-assign]
    try:
        yield bound
    finally:
        del db.run, db.rows


def test_the_connection_refuses_an_oversized_cell_for_real(tmp_path: Any) -> None:
    """The budget is SQLite's own length limit on the connection, so even a
    statement that forgot the check cannot store an oversized cell."""
    b = SQLiteBackend(str(tmp_path / "s.db"), max_cell_bytes=16_384, synchronous="OFF")
    try:
        assert b.db.con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == 16_384
        with pytest.raises(StorageError), b.db.write():
            b.db.run("INSERT INTO chunks(hash, flags, size, data) VALUES (?, 0, 1, ?)",
                     (chunk_for(1).hash, b"x" * 16_384))  # fmt: skip
        assert b.chunk_page(b"", 10) == []
    finally:
        b.close()


def test_the_connection_refuses_a_statement_over_100_values(tmp_path: Any) -> None:
    b = SQLiteBackend(str(tmp_path / "s.db"), max_cell_bytes=16_384, synchronous="OFF")
    try:
        assert b.db.con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) == MAX_PARAMS == b.limits.max_params
        with pytest.raises(StorageError):
            b.db.rows(f"SELECT 1 WHERE 1 IN ({','.join('?' * 101)})", list(range(101)))
    finally:
        b.close()


_CHILD = """
import sys
from eventlog.backend import NewEvent
from eventlog.backends.sqlite import SQLiteBackend
b = SQLiteBackend(sys.argv[1], max_cell_bytes=2_000_000, synchronous="OFF")
head = b.head("a")
b.append([NewEvent("a", head.sid, head.seq + 1, 2, b"from the child", 1)])
b.close()
"""


def test_a_second_handle_in_the_process_keeps_the_first_ones_locks(tmp_path: Any) -> None:
    """Opening another handle on a store used to open and close its file (to read
    its header), which drops every POSIX lock the process holds on it: a writer in
    another process then closed as if it were the store's last user, checkpointed
    and deleted the -wal under the open handles, whose next write failed ("the
    store file was replaced or its -wal deleted")."""
    import subprocess
    import sys

    from eventlog.backend import NewEvent

    path = str(tmp_path / "s.db")
    first = SQLiteBackend(path, max_cell_bytes=2_000_000, synchronous="OFF")
    try:
        (head,) = first.append([NewEvent("a", None, 1, 1, b"first", 1, key=bytes(16))])
        second = SQLiteBackend(path, max_cell_bytes=2_000_000, synchronous="OFF")
        second.close()
        subprocess.run([sys.executable, "-c", _CHILD, path], check=True, timeout=120)
        (head,) = first.append([NewEvent("a", head.sid, 3, 3, b"third", 1)])
        assert [e.frame for e in first.events(head.sid, 0)] == [b"first", b"from the child", b"third"]
    finally:
        first.close()
