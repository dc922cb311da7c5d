"""The SQLite backend's schema: its tables, the migrations from older versions,
the shims that show an older file as the current version to a read-only open, and
the check that a file's tables are what this release expects.

Schema (version 5)::

    sessions(sid PK AUTOINCREMENT, name, parent, seq, created_ms, updated_ms,
             snap_seq, snap_bytes, snap_bytes_since, base_seq, deleted_ms, entries,
             key)
        -- one row per incarnation of a session id; seq = head; name unique among
        -- live rows (deleted_ms IS NULL); events at or below base_seq were folded
        -- into the snapshot at base_seq (history compaction); entries = the number
        -- of entries at the head, written with every event (NULL: not known, a row
        -- last written before version 4); key = the incarnation's 16-byte key
        -- (what its frames of format version 3 and 4 are bound to), unique among
        -- rows, made by the engine (the migration to version 5 gives every row a
        -- random one)
    events(pos PK AUTOINCREMENT, sid, seq, ts_ms, frame, UNIQUE(sid, seq))
    snapshots(id PK AUTOINCREMENT, sid, seq, frame, UNIQUE(sid, seq))
    chunks(cid PK, hash UNIQUE, flags, size, data)   -- size = raw length
    refs(kind, holder, cid, PK(kind, holder, cid)) WITHOUT ROWID
        -- the event (kind 0, holder = pos) or snapshot (kind 1, holder = id) that
        -- uses a chunk; kind 2 (holder = sid): a whole session, from version 1 files
    meta(name PK, value) WITHOUT ROWID
        -- what is fixed when the file is created: chunk_hash ('blake3', or
        -- 'blake3-keyed' with chunk_key_check, a fingerprint of the key, never the key)

``pos`` is the global position: AUTOINCREMENT guarantees it is never reused, even
after rows are deleted.  A row and its refs are written and deleted in the same
transaction, so a chunk without refs is garbage and a chunk with refs is in use.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from typing import Any

from ...backend import RefKind
from ...errors import CorruptionError, UnsupportedVersionError

#: Schema version this release writes; ``PRAGMA user_version`` holds the file's.
SCHEMA_VERSION = 5
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

# The sessions table as version 2 made it (the v1 -> v2 migration builds it so).
_SESSION_COLUMNS_V2 = """
        sid INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        parent TEXT,
        seq INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        snap_seq INTEGER NOT NULL DEFAULT 0,
        snap_bytes INTEGER NOT NULL DEFAULT 0,
        snap_bytes_since INTEGER NOT NULL DEFAULT 0,
        base_seq INTEGER NOT NULL DEFAULT 0,
        deleted_ms INTEGER
"""
#: The sessions table as this version makes it (when rebuilding it), and its columns.
SESSION_COLUMNS = _SESSION_COLUMNS_V2 + ",\n        entries INTEGER,\n        key BLOB\n"
SESSION_COLUMN_NAMES = (
    "sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, snap_bytes_since, base_seq, "
    "deleted_ms, entries, key"
)
_SESSION_INDEXES_V2 = (
    "CREATE UNIQUE INDEX sessions_name ON sessions(name) WHERE deleted_ms IS NULL",
    "CREATE INDEX sessions_parent ON sessions(parent) WHERE parent IS NOT NULL AND deleted_ms IS NULL",
    "CREATE INDEX sessions_dead ON sessions(sid) WHERE deleted_ms IS NOT NULL",
)
_KEY_INDEX = "CREATE UNIQUE INDEX sessions_key ON sessions(key) WHERE key IS NOT NULL"
#: The indexes of the sessions table as this version makes them.
SESSION_INDEXES = (*_SESSION_INDEXES_V2, _KEY_INDEX)

_V1_TO_V2 = (
    f"CREATE TABLE sessions_v2 ({_SESSION_COLUMNS_V2})",
    "INSERT INTO sessions_v2(sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, "
    "snap_bytes_since) SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, "
    "snap_bytes_since FROM sessions",
    """CREATE TABLE snapshots_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        frame BLOB NOT NULL,
        UNIQUE (sid, seq)
    )""",
    "INSERT INTO snapshots_v2(sid, seq, frame) SELECT sid, seq, frame FROM snapshots",
    """CREATE TABLE refs_v2 (
        kind INTEGER NOT NULL,
        holder INTEGER NOT NULL,
        cid INTEGER NOT NULL,
        PRIMARY KEY (kind, holder, cid)
    ) WITHOUT ROWID""",
    "INSERT INTO refs_v2(kind, holder, cid) SELECT 2, sid, cid FROM refs",
    "UPDATE sqlite_sequence SET seq = coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sessions'), 0) "
    "WHERE name = 'sessions_v2'",
    "DROP TABLE sessions",
    "DROP TABLE snapshots",
    "DROP TABLE refs",
    "ALTER TABLE sessions_v2 RENAME TO sessions",
    "ALTER TABLE snapshots_v2 RENAME TO snapshots",
    "ALTER TABLE refs_v2 RENAME TO refs",
    *_SESSION_INDEXES_V2,
    "CREATE INDEX refs_cid ON refs(cid)",
)

# Files from before version 3 recorded no chunk addressing: theirs is plain BLAKE3.
_V2_TO_V3 = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta(name, value) VALUES ('chunk_hash', 'blake3')",
)

# Each session's number of entries, kept with its head, so listing sessions needs no
# fold; rows from before are NULL (not known) until the session is next written.
_V3_TO_V4 = ("ALTER TABLE sessions ADD COLUMN entries INTEGER",)

# Each incarnation's stable key, which frames of format version 3 and 4 are bound to
# instead of the row id (so a session can be copied to another store with its
# frames).  Every row gets a random one now, live and ended alike: then every
# session a writer meets has a key, so every frame written from here on is bound to
# it and the engine has one way to seal a frame; the frames already written stay
# bound to the row id (versions 1 and 2) and read as they are.  (Leaving old rows
# without a key would keep a second, row-bound way of writing alive for as long as
# such a session is appended to, and give a copy of it nothing to keep.)
# randomblob(16): 128 random bits, so the unique index meets no collision.
_V4_TO_V5 = (
    "ALTER TABLE sessions ADD COLUMN key BLOB",
    "UPDATE sessions SET key = randomblob(16)",
    _KEY_INDEX,
)

#: ``MIGRATIONS[v]`` upgrades a file from schema version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1, 1: _V1_TO_V2, 2: _V2_TO_V3, 3: _V3_TO_V4, 4: _V4_TO_V5}

#: Kinds of holder in ``refs`` (the protocol's :class:`~eventlog.backend.RefKind`).
EVENT_REF, SNAPSHOT_REF, SESSION_REF = int(RefKind.EVENT), int(RefKind.SNAPSHOT), int(RefKind.SESSION)

#: ``READ_SHIMS[v]`` shows a version ``v`` file as version ``v + 1`` to a read-only
#: connection without writing to it: TEMP views and tables, which shadow the file's
#: own tables of the same name (SQLite looks in ``temp`` first), made the way
#: ``MIGRATIONS[v]`` would.  A view cannot be altered, so the sessions view of
#: version 1 files already has the ``entries`` and ``key`` columns versions 4 and 5
#: add, and the shims of versions 3 and 4 make the view only where there is none.
#: Rows seen through a shim have no key (``NULL``): their frames are all of format
#: version 1 or 2, bound to the row id.
READ_SHIMS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TEMP VIEW sessions AS SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, "
        "snap_bytes, snap_bytes_since, 0 AS base_seq, NULL AS deleted_ms, NULL AS entries, NULL AS key "
        "FROM main.sessions",
        "CREATE TEMP VIEW snapshots AS SELECT rowid AS id, sid, seq, frame FROM main.snapshots",
        f"CREATE TEMP VIEW refs AS SELECT {SESSION_REF} AS kind, sid AS holder, cid FROM main.refs",
    ),
    2: (
        "CREATE TEMP TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
        "INSERT INTO temp.meta(name, value) VALUES ('chunk_hash', 'blake3')",
    ),
    3: ("CREATE TEMP VIEW IF NOT EXISTS sessions AS SELECT *, NULL AS entries, NULL AS key FROM main.sessions",),
    4: ("CREATE TEMP VIEW IF NOT EXISTS sessions AS SELECT *, NULL AS key FROM main.sessions",),
}

Schema = dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]


def _schema(con: sqlite3.Connection, tables: Iterable[str]) -> Schema:
    """Each table's columns (name, type, not null, default, primary key) and indexes
    (unique, partial, columns; not names, which renaming a table keeps), in two
    queries whatever the number of tables (a table that is not there, or a view in
    its place, has no columns)."""
    names = list(tables)
    out: Schema = {table: ([], []) for table in names}
    where = f"m.type = 'table' AND m.name IN ({', '.join('?' * len(names))})"
    for row in con.execute(
        'SELECT m.name, p.name, p.type, p."notnull", p.dflt_value, p.pk '
        f"FROM main.sqlite_master AS m, pragma_table_info(m.name, 'main') AS p WHERE {where} ORDER BY m.name, p.cid",
        names,
    ):
        out[row[0]][0].append(tuple(row[1:]))
    found: dict[tuple[str, str], tuple[int, int, list[Any]]] = {}
    for table, index, unique, partial, column in con.execute(
        'SELECT m.name, i.name, i."unique", i.partial, c.name FROM main.sqlite_master AS m, '
        "pragma_index_list(m.name, 'main') AS i LEFT JOIN pragma_index_info(i.name, 'main') AS c "
        f"WHERE {where} ORDER BY m.name, i.name, c.seqno",
        names,
    ):
        found.setdefault((table, index), (unique, partial, []))[2].append(column)
    for (table, _), (unique, partial, columns) in found.items():
        out[table][1].append((unique, partial, tuple(columns)))
    for _, indexes in out.values():
        indexes.sort()
    return out


def expected_schema() -> Schema:
    """The schema this release creates, as :func:`built_schema` finds it (a test
    checks they agree; written out so opening a file does not build one first)."""
    return _EXPECTED_SCHEMA


_EXPECTED_SCHEMA: Schema = {
    "chunks": (
        [
            ("cid", "INTEGER", 0, None, 1),
            ("hash", "BLOB", 1, None, 0),
            ("flags", "INTEGER", 1, None, 0),
            ("size", "INTEGER", 1, None, 0),
            ("data", "BLOB", 1, None, 0),
        ],
        [(1, 0, ("hash",))],
    ),
    "events": (
        [
            ("pos", "INTEGER", 0, None, 1),
            ("sid", "INTEGER", 1, None, 0),
            ("seq", "INTEGER", 1, None, 0),
            ("ts_ms", "INTEGER", 1, None, 0),
            ("frame", "BLOB", 1, None, 0),
        ],
        [(1, 0, ("sid", "seq"))],
    ),
    "meta": ([("name", "TEXT", 1, None, 1), ("value", "", 1, None, 0)], [(1, 0, ("name",))]),
    "refs": (
        [("kind", "INTEGER", 1, None, 1), ("holder", "INTEGER", 1, None, 2), ("cid", "INTEGER", 1, None, 3)],
        [(0, 0, ("cid",)), (1, 0, ("kind", "holder", "cid"))],
    ),
    "sessions": (
        [
            ("sid", "INTEGER", 0, None, 1),
            ("name", "TEXT", 1, None, 0),
            ("parent", "TEXT", 0, None, 0),
            ("seq", "INTEGER", 1, "0", 0),
            ("created_ms", "INTEGER", 1, None, 0),
            ("updated_ms", "INTEGER", 1, None, 0),
            ("snap_seq", "INTEGER", 1, "0", 0),
            ("snap_bytes", "INTEGER", 1, "0", 0),
            ("snap_bytes_since", "INTEGER", 1, "0", 0),
            ("base_seq", "INTEGER", 1, "0", 0),
            ("deleted_ms", "INTEGER", 0, None, 0),
            ("entries", "INTEGER", 0, None, 0),
            ("key", "BLOB", 0, None, 0),
        ],
        [(0, 1, ("parent",)), (0, 1, ("sid",)), (1, 1, ("key",)), (1, 1, ("name",))],
    ),
    "snapshots": (
        [
            ("id", "INTEGER", 0, None, 1),
            ("sid", "INTEGER", 1, None, 0),
            ("seq", "INTEGER", 1, None, 0),
            ("frame", "BLOB", 1, None, 0),
        ],
        [(1, 0, ("sid", "seq"))],
    ),
    "sqlite_sequence": ([("name", "", 0, None, 0), ("seq", "", 0, None, 0)], []),
}


def built_schema() -> Schema:
    """The schema this release creates, built in memory by the migrations."""
    con = sqlite3.connect(":memory:")
    try:
        for version in range(SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return _schema(con, tables)
    finally:
        con.close()


def schema_problem(con: sqlite3.Connection) -> str | None:
    """How the file's tables differ from eventlog's (other tables are ignored)."""
    expected = expected_schema()
    found = _schema(con, expected)
    for table, (columns, indexes) in expected.items():
        if not found[table][0]:
            return f"table {table} is missing"
        if found[table][0] != columns:
            return f"the columns of {table} are {found[table][0]!r:.300}"
        if found[table][1] != indexes:
            return f"the indexes of {table} are {found[table][1]!r:.300}"
    return None


def check_empty(con: sqlite3.Connection, path: str) -> None:
    """A file of schema version 0 must have no tables (a new file)."""
    if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise UnsupportedVersionError(f"{path!r} is an SQLite file but not an eventlog store")


#: Digests of the schema texts (the rows of ``sqlite_master``) that :func:`check_schema`
#: found to be eventlog's, in this process.  SQLite builds a file's schema from exactly
#: that text, so the same text again is the same schema: a store opened again (a
#: reading store, a resumed conversation) is checked by one query, not one per table.
_CHECKED: set[bytes] = set()


def _schema_text(con: sqlite3.Connection) -> bytes:
    """A digest of everything SQLite builds the file's schema from."""
    rows = con.execute("SELECT type, name, tbl_name, sql FROM main.sqlite_master ORDER BY type, name").fetchall()
    return hashlib.blake2b(repr(rows).encode()).digest()


def check_schema(con: sqlite3.Connection, path: str) -> None:
    """A flipped byte in the schema text can rename a column or change a type or
    default and still parse: refuse such a file now, not at some later query."""
    text = _schema_text(con)
    if text in _CHECKED:
        return
    problem = schema_problem(con)
    if problem:
        raise CorruptionError(f"the schema of {path!r} is damaged: {problem}")
    _CHECKED.add(text)


def check_version(app_id: int, version: int, path: str) -> None:
    """An eventlog file (by its application id) of a schema version this release reads."""
    if version != 0 and app_id != APPLICATION_ID:
        raise UnsupportedVersionError(f"{path!r} is not an eventlog store")
    if version > SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"{path!r} has schema version {version}; this eventlog reads up to {SCHEMA_VERSION}"
        )
