"""Every SQL statement eventlog runs, behind a bytes-only interface.

:class:`Database` speaks in session row ids, sequence numbers, names, hashes and
``bytes``; it never sees a Python session, entry or event.  It owns the connection
settings (WAL, ``synchronous``, busy timeout, SQLite's own length limits), the
schema and its migrations, and the translation of ``sqlite3`` errors into eventlog's
hierarchy.  No statement binds more than 100 parameters or is longer than 100 KB,
the limits of a Cloudflare Durable Object.

Schema (version 1)::

    sessions(sid PK AUTOINCREMENT, name UNIQUE, parent, seq, created_ms, updated_ms,
             snap_seq, snap_bytes, snap_bytes_since)  -- one row per session id; seq = head
    events(pos PK AUTOINCREMENT, sid, seq, ts_ms, frame, UNIQUE(sid, seq))
    snapshots(sid, seq, frame, PK(sid, seq))
    chunks(cid PK, hash UNIQUE, flags, size, data)   -- size = raw length
    refs(sid, cid, PK(sid, cid)) WITHOUT ROWID       -- which session uses which chunk

``pos`` is the global position: AUTOINCREMENT guarantees it is never reused, even
after rows are deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import CorruptionError, EventLogError, StorageError, UnsupportedVersionError

#: Schema version this release writes; ``PRAGMA user_version`` holds the file's.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of an eventlog file ("EvLg").
APPLICATION_ID = 0x45764C67
#: Most parameters bound in one statement (Durable Object limit).
MAX_PARAMS = 100
SQL_LENGTH_LIMIT = 100_000

_SCHEMA_V1 = (
    """CREATE TABLE sessions (
        sid INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        parent TEXT,
        seq INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        snap_seq INTEGER NOT NULL DEFAULT 0,
        snap_bytes INTEGER NOT NULL DEFAULT 0,
        snap_bytes_since INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX sessions_parent ON sessions(parent) WHERE parent IS NOT NULL",
    """CREATE TABLE events (
        pos INTEGER PRIMARY KEY AUTOINCREMENT,
        sid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        frame BLOB NOT NULL,
        UNIQUE (sid, seq)
    )""",
    """CREATE TABLE snapshots (
        sid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        frame BLOB NOT NULL,
        PRIMARY KEY (sid, seq)
    )""",
    """CREATE TABLE chunks (
        cid INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        flags INTEGER NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    """CREATE TABLE refs (
        sid INTEGER NOT NULL,
        cid INTEGER NOT NULL,
        PRIMARY KEY (sid, cid)
    ) WITHOUT ROWID""",
    "CREATE INDEX refs_cid ON refs(cid)",
)

#: ``MIGRATIONS[v]`` upgrades a file from schema version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1}

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _translate(e: sqlite3.Error, what: str) -> EventLogError:
    name = getattr(e, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(e):
        return CorruptionError(f"database file is damaged while {what}: {e}")
    if name == "SQLITE_TOOBIG":
        return StorageError(f"a cell was over the length limit while {what} (eventlog bug): {e}")
    return StorageError(f"SQLite failed while {what}: {e}")


class Database:
    """One SQLite connection, its schema and every query eventlog makes."""

    def __init__(
        self,
        path: str,
        *,
        max_cell_bytes: int,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        try:
            con = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
        except sqlite3.Error as e:
            raise _translate(e, f"opening {path!r}") from None
        self.con = con
        try:
            con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_cell_bytes)
            con.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_LENGTH_LIMIT)
            con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS)
            if path != ":memory:" and not path.startswith("file::memory:"):
                con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as e:
            con.close()
            raise _translate(e, f"opening {path!r}") from None
        except EventLogError:
            con.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _migrate(self) -> None:
        con = self.con
        with self.write():
            app_id, version = (
                con.execute("PRAGMA application_id").fetchone()[0],
                con.execute("PRAGMA user_version").fetchone()[0],
            )
            if version == 0:
                tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise UnsupportedVersionError(f"{self.path!r} is an SQLite file but not an eventlog store")
                con.execute(f"PRAGMA application_id={APPLICATION_ID}")
            elif app_id != APPLICATION_ID:
                raise UnsupportedVersionError(f"{self.path!r} is not an eventlog store")
            if version > SCHEMA_VERSION:
                raise UnsupportedVersionError(
                    f"{self.path!r} has schema version {version}; this eventlog reads up to {SCHEMA_VERSION}"
                )
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
                version += 1
                con.execute(f"PRAGMA user_version={version}")

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction: ``BEGIN IMMEDIATE`` (waits up to the busy timeout for
        other writers), committed on success, rolled back on any exception."""
        con = self.con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _translate(e, "starting a write") from None
        try:
            yield
        except BaseException:
            con.rollback()
            raise
        try:
            con.execute("COMMIT")
        except sqlite3.Error as e:
            con.rollback()
            raise _translate(e, "committing") from None

    @contextmanager
    def read(self) -> Iterator[None]:
        """A read transaction: one consistent view of the file (WAL snapshot)."""
        con = self.con
        if con.in_transaction:
            yield
            return
        con.execute("BEGIN")
        try:
            yield
        finally:
            con.rollback()

    def _q(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.con.execute(sql, params)
        except sqlite3.Error as e:
            raise _translate(e, "running a query") from None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.con.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _translate(e, "reading") from None

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ sessions

    def session(self, name: str) -> tuple[int, int, int, int, int] | None:
        """``(sid, seq, snap_seq, snap_bytes, snap_bytes_since)`` of a session (the
        newest snapshot's position and size, and the bytes of event frames written
        since), or ``None``."""
        row = self._one("SELECT sid, seq, snap_seq, snap_bytes, snap_bytes_since FROM sessions WHERE name = ?", (name,))
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def create_session(self, name: str, parent: str | None, now_ms: int) -> int:
        cur = self._q(
            "INSERT INTO sessions(name, parent, created_ms, updated_ms) VALUES (?, ?, ?, ?)",
            (name, parent, now_ms, now_ms),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def session_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM sessions WHERE seq > 0 ORDER BY sid")]

    def parent(self, name: str) -> str | None:
        row = self._one("SELECT parent FROM sessions WHERE name = ?", (name,))
        return None if row is None else row[0]

    # ------------------------------------------------------------------ events

    def append_event(self, sid: int, seq: int, ts_ms: int, frame: bytes) -> int:
        """Insert event ``seq`` of session ``sid`` and advance its head; returns the
        global position.  The head moves only if it was ``seq - 1``."""
        cur = self._q(
            "UPDATE sessions SET seq = ?, updated_ms = ?, snap_bytes_since = snap_bytes_since + ? "
            "WHERE sid = ? AND seq = ?",
            (seq, ts_ms, len(frame), sid, seq - 1),
        )
        if cur.rowcount != 1:
            raise StorageError("session head moved during a write (eventlog bug)", seq=seq)
        cur = self._q("INSERT INTO events(sid, seq, ts_ms, frame) VALUES (?, ?, ?, ?)", (sid, seq, ts_ms, frame))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def events(self, sid: int, after: int, upto: int | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        """``(seq, pos, ts_ms, frame)`` of events ``after < seq <= upto`` in order."""
        if upto is None:
            upto = 1 << 62
        cur = self._q(
            "SELECT seq, pos, ts_ms, CAST(frame AS BLOB) FROM events WHERE sid = ? AND seq > ? AND seq <= ? "
            "ORDER BY seq",
            (sid, after, upto),
        )
        while True:
            try:
                rows = cur.fetchmany(256)
            except sqlite3.Error as e:
                raise _translate(e, "reading events") from None
            if not rows:
                return
            yield from rows

    # ------------------------------------------------------------------ snapshots

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        """Positions of the snapshots at or below ``upto``, newest first."""
        rows = self._all("SELECT seq FROM snapshots WHERE sid = ? AND seq <= ? ORDER BY seq DESC", (sid, upto))
        return [r[0] for r in rows]

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        row = self._one("SELECT CAST(frame AS BLOB) FROM snapshots WHERE sid = ? AND seq = ?", (sid, seq))
        return None if row is None else bytes(row[0])

    def put_snapshot(self, sid: int, seq: int, frame: bytes, keep: int) -> None:
        """Store a snapshot at ``seq`` and drop all but the newest ``keep``."""
        self._q("INSERT OR REPLACE INTO snapshots(sid, seq, frame) VALUES (?, ?, ?)", (sid, seq, frame))
        self._q(
            "DELETE FROM snapshots WHERE sid = ? AND seq < ("
            "SELECT min(seq) FROM (SELECT seq FROM snapshots WHERE sid = ? ORDER BY seq DESC LIMIT ?))",
            (sid, sid, keep),
        )
        self._q(
            "UPDATE sessions SET snap_seq = ?, snap_bytes = ?, snap_bytes_since = 0 WHERE sid = ? AND snap_seq < ?",
            (seq, len(frame), sid, seq),
        )

    # ------------------------------------------------------------------ chunks

    def chunk_ids(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """``hash -> cid`` for those of ``hashes`` that are stored (batched)."""
        found: dict[bytes, int] = {}
        for i in range(0, len(hashes), MAX_PARAMS):
            batch = hashes[i : i + MAX_PARAMS]
            marks = ",".join("?" * len(batch))
            for h, cid in self._all(f"SELECT hash, cid FROM chunks WHERE hash IN ({marks})", batch):
                found[h] = cid
        return found

    def put_chunk(self, digest: bytes, flags: int, size: int, data: bytes) -> int:
        cur = self._q("INSERT INTO chunks(hash, flags, size, data) VALUES (?, ?, ?, ?)", (digest, flags, size, data))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def chunk(self, digest: bytes) -> tuple[int, int, bytes] | None:
        """``(flags, size, data)`` of a chunk, or ``None`` when it is missing."""
        row = self._one("SELECT flags, size, CAST(data AS BLOB) FROM chunks WHERE hash = ?", (digest,))
        return None if row is None else (row[0], row[1], row[2])

    def has_refs(self, sid: int) -> bool:
        """Whether session ``sid`` uses any chunk."""
        return self._one("SELECT 1 FROM refs WHERE sid = ? LIMIT 1", (sid,)) is not None

    def add_refs(self, sid: int, cids: Sequence[int]) -> None:
        """Record that session ``sid`` uses chunks ``cids`` (idempotent, batched)."""
        unique = sorted(set(cids))
        per = MAX_PARAMS // 2
        for i in range(0, len(unique), per):
            batch = unique[i : i + per]
            marks = ",".join("(?, ?)" for _ in batch)
            params: list[int] = []
            for cid in batch:
                params += (sid, cid)
            self._q(f"INSERT OR IGNORE INTO refs(sid, cid) VALUES {marks}", params)

    # ------------------------------------------------------------------ statistics

    def table_stats(self) -> dict[str, Any]:
        """Row counts, stored bytes and the largest cell of each table."""
        q = self._q  # aggregate queries over integers only: nothing to decode
        out: dict[str, Any] = {}
        for table, col in (("events", "frame"), ("snapshots", "frame"), ("chunks", "data"), ("sessions", "name")):
            n, total, largest = q(
                f"SELECT count(*), coalesce(sum(length({col})), 0), coalesce(max(length({col})), 0) FROM {table}"
            ).fetchone()
            out[table] = {"rows": n, "bytes": total, "largest": largest}
        out["chunks"]["raw_bytes"] = q("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()[0]
        out["refs"] = {"rows": q("SELECT count(*) FROM refs").fetchone()[0]}
        page_size = q("PRAGMA page_size").fetchone()[0]
        out["file_bytes"] = q("PRAGMA page_count").fetchone()[0] * page_size
        return out
