"""The designs eventlog is measured against, each on the same SQLite settings."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection with the settings every system in a run shares: WAL journal and
    the given ``synchronous``, autocommit (each system manages its transactions)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


def file_bytes(path: str) -> int:
    """Bytes on disk: the database file plus its WAL, after a checkpoint."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


class OneJsonRow:
    """Flue 0.11.0's design: the whole session as one JSON value, ``INSERT OR
    REPLACE`` on every save (no cell limit here, so it can be timed to the end).

    ``compact=True`` writes what ``JSON.stringify`` writes (no spaces, UTF-8 text);
    ``compact=False`` is Python's ``json.dumps`` default (ASCII escapes), which is
    faster in CPython, so the figures compare against the faster of the two."""

    def __init__(self, path: str, synchronous: str, *, compact: bool = False) -> None:
        self.name = "one JSON row" + (" (compact UTF-8)" if compact else "")
        self.dumps_options: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")} if compact else {}
        self.con = connect(path, synchronous)
        self.con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT, updated_at INTEGER)")
        self.n = 0

    def save(self, session_id: str, data: dict[str, Any]) -> None:
        self.n += 1
        self.con.execute(
            "INSERT OR REPLACE INTO flue_sessions VALUES (?, ?, ?)",
            (session_id, json.dumps(data, **self.dumps_options), self.n),
        )

    def load(self, session_id: str) -> Any:
        row = self.con.execute("SELECT data FROM flue_sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        self.con.close()


class RawRows:
    """The floor: ``executemany`` of ready-made bytes, one row each, one transaction."""

    name = "raw sqlite3 executemany"

    def __init__(self, path: str, synchronous: str) -> None:
        self.con = connect(path, synchronous)
        self.con.execute("CREATE TABLE events(pos INTEGER PRIMARY KEY, sid INTEGER, seq INTEGER, frame BLOB)")
        self.seq = 0

    def insert(self, frames: Sequence[bytes]) -> None:
        start = self.seq
        self.seq += len(frames)
        self.con.execute("BEGIN")
        self.con.executemany(
            "INSERT INTO events(sid, seq, frame) VALUES (1, ?, ?)", ((start + i, f) for i, f in enumerate(frames))
        )
        self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()
