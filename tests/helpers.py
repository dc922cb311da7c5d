"""Shared test helpers: raw looks at the database file."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

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


def to_version_3(path: str) -> None:
    """Make a closed store file into a version 3 one, as the eventlog before schema
    version 4 wrote it: no ``entries`` column in the sessions table."""
    con = sqlite3.connect(path)
    try:
        con.executescript("ALTER TABLE sessions DROP COLUMN entries; PRAGMA user_version = 3;")
    finally:
        con.close()
