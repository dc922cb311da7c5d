"""Waiting for commits to an SQLite store (:meth:`eventlog.backend.Backend.watcher`):
a read-only connection of the watcher's own polls ``PRAGMA data_version``, which
changes when any other connection, in any process, commits to the file; the
handle's own commits are counted by the handle.  Where no such connection can be
opened (a private in-memory database, a file read without locks), the watcher
falls back to waking every :data:`FALLBACK` seconds."""

from __future__ import annotations

import sqlite3
import time
from contextlib import suppress
from typing import Any

#: Seconds between two looks at the change counter.
INTERVAL = 0.02
#: Seconds between wake-ups where the change counter cannot be read.
FALLBACK = 0.25


class SQLiteWatcher:
    """Waits for commits to the file at ``path`` (``database``: the handle, whose
    own commits it counts)."""

    def __init__(self, path: str, database: Any) -> None:
        self._db = database
        self._commits = database.commits
        self._con: sqlite3.Connection | None = None
        if path not in ("", ":memory:") and not path.startswith("file::memory:"):
            with suppress(sqlite3.Error, ValueError):
                con = sqlite3.connect(f"file:{_quoted(path)}?mode=ro", uri=True, check_same_thread=False,
                                      isolation_level=None)  # fmt: skip
                con.execute("PRAGMA busy_timeout = 1000")
                self._version = con.execute("PRAGMA data_version").fetchone()[0]
                self._con = con

    def _changed(self) -> bool:
        if self._db.commits != self._commits:
            self._commits = self._db.commits
            return True
        if self._con is None:
            return False
        try:
            version = self._con.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True  # (busy for a moment: look again, as if something changed)
        if version != self._version:
            self._version = version
            return True
        return False

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        step = INTERVAL if self._con is not None else FALLBACK
        while True:
            if self._changed():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return self._con is None  # (without a counter, every wake may be a change)
            time.sleep(min(step, left))

    def close(self) -> None:
        if self._con is not None:
            with suppress(sqlite3.Error):
                self._con.close()
            self._con = None


def _quoted(path: str) -> str:
    """``path`` as the path of a ``file:`` URI (``?`` and ``#`` would end it)."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
