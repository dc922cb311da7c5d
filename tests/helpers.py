"""Shared test helpers: raw looks at the database file, and the command line run
in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from typing import Any

from eventlog import codec

CELL_COLUMNS = {
    "events": ("frame",),
    "snapshots": ("frame",),
    "chunks": ("data", "hash"),
    "sessions": ("name", "parent"),
}


def dump(value: Any) -> str:
    """JSON text as a runtime would write it (byte-for-byte comparison); bytes, which
    JSON lacks, as tagged hex."""
    return json.dumps(value, ensure_ascii=False, default=lambda b: {"$bytes": b.hex()})


def largest_cell_and_row(path: str) -> tuple[int, int]:
    """The largest single value and the largest row (sum of its values) in the file."""
    con = sqlite3.connect(path)
    try:
        cell = row = 0
        for table in ("events", "snapshots", "chunks", "sessions", "refs"):
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            expr = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in cols)
            big = " , ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in cols)
            for r in con.execute(f"SELECT {expr}, max({big}, 0) FROM {table}"):
                row = max(row, r[0] or 0)
                cell = max(cell, r[1] or 0)
        return cell, row
    finally:
        con.close()


def row_bound(frame: bytes, kind: bytes, sid: int, seq: int, ts: int | None) -> bytes:
    """A frame of format version 3 or 4 (bound to its session's key) as the
    eventlog before keys wrote it: version 1 or 2, bound to the session's row id
    (and, when flagged, to ``ts``)."""
    version, flags = frame[0], frame[1]
    assert version in (codec.FRAME_VERSION_KEYED, codec.FRAME_VERSION_KEYED_SEGMENTS), version
    binding = codec.binding(kind, sid, seq, ts if flags & codec.FLAG_TIMED else None)
    return codec.Framer.seal(flags, frame[6:], binding, keyed=False)


def to_version_4(path: str) -> None:
    """Make a closed store file into a version 4 one, as the eventlog before session
    keys (schema version 5) wrote it: no ``key`` column, and every frame bound to
    its session's row id (format versions 1 and 2)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN")
        for pos, sid, seq, ts, frame in con.execute("SELECT pos, sid, seq, ts_ms, frame FROM events").fetchall():
            con.execute("UPDATE events SET frame = ? WHERE pos = ?", (row_bound(frame, b"E", sid, seq, ts), pos))
        for nid, sid, seq, frame in con.execute("SELECT id, sid, seq, frame FROM snapshots").fetchall():
            con.execute("UPDATE snapshots SET frame = ? WHERE id = ?", (row_bound(frame, b"S", sid, seq, None), nid))
        con.execute("DROP INDEX sessions_key")
        con.execute("ALTER TABLE sessions DROP COLUMN key")
        con.execute("PRAGMA user_version = 4")
        con.execute("COMMIT")
    finally:
        con.close()


def to_version_3(path: str) -> None:
    """Make a closed store file into a version 3 one, as the eventlog before schema
    version 4 wrote it: no ``entries`` column in the sessions table."""
    to_version_4(path)
    con = sqlite3.connect(path)
    try:
        con.executescript("ALTER TABLE sessions DROP COLUMN entries; PRAGMA user_version = 3;")
    finally:
        con.close()


def run(*args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m eventlog ARGS`` (or the installed console script)."""
    exe = [shutil.which("eventlog", path=os.path.dirname(sys.executable)) or "eventlog"] if script else [
        sys.executable, "-m", "eventlog"
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120, env=env)
