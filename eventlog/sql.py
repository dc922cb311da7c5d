"""Every SQL statement eventlog runs, behind a bytes-only interface.

:class:`Database` speaks in session row ids, sequence numbers, names, hashes and
``bytes``; it never sees a Python session, entry or event.  It owns the connection
settings (WAL, ``synchronous``, busy timeout, SQLite's own length limits), the
schema and its migrations, and the translation of ``sqlite3`` errors into eventlog's
hierarchy.  No statement binds more than 100 parameters or is longer than 100 KB,
the limits of a Cloudflare Durable Object.

Schema (version 4)::

    sessions(sid PK AUTOINCREMENT, name, parent, seq, created_ms, updated_ms,
             snap_seq, snap_bytes, snap_bytes_since, base_seq, deleted_ms, entries)
        -- one row per incarnation of a session id; seq = head; name unique among
        -- live rows (deleted_ms IS NULL); events at or below base_seq were folded
        -- into the snapshot at base_seq (history compaction); entries = the number
        -- of entries at the head, written with every event (NULL: not known, a row
        -- last written before version 4)
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

import logging
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

from .errors import (
    CorruptionError,
    EventLogError,
    InvalidValueError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    UnsupportedVersionError,
)
from .turnstile import Turnstile, TurnTimeout

#: Schema version this release writes; ``PRAGMA user_version`` holds the file's.
SCHEMA_VERSION = 4
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
#: The sessions table as this version makes it (when rebuilding it).
_SESSION_COLUMNS = _SESSION_COLUMNS_V2 + ",\n        entries INTEGER\n"
_SESSION_INDEXES = (
    "CREATE UNIQUE INDEX sessions_name ON sessions(name) WHERE deleted_ms IS NULL",
    "CREATE INDEX sessions_parent ON sessions(parent) WHERE parent IS NOT NULL AND deleted_ms IS NULL",
    "CREATE INDEX sessions_dead ON sessions(sid) WHERE deleted_ms IS NOT NULL",
)

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
    *_SESSION_INDEXES,
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

#: ``MIGRATIONS[v]`` upgrades a file from schema version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1, 1: _V1_TO_V2, 2: _V2_TO_V3, 3: _V3_TO_V4}

#: Kinds of holder in ``refs``.
EVENT_REF, SNAPSHOT_REF, SESSION_REF = 0, 1, 2

#: ``READ_SHIMS[v]`` shows a version ``v`` file as version ``v + 1`` to a read-only
#: connection without writing to it: TEMP views and tables, which shadow the file's
#: own tables of the same name (SQLite looks in ``temp`` first), made the way
#: ``MIGRATIONS[v]`` would.  A view cannot be altered, so the sessions view of
#: version 1 files already has the ``entries`` column version 4 adds, and version
#: 3's shim makes the view only where there is none.
READ_SHIMS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TEMP VIEW sessions AS SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, "
        "snap_bytes, snap_bytes_since, 0 AS base_seq, NULL AS deleted_ms, NULL AS entries FROM main.sessions",
        "CREATE TEMP VIEW snapshots AS SELECT rowid AS id, sid, seq, frame FROM main.snapshots",
        f"CREATE TEMP VIEW refs AS SELECT {SESSION_REF} AS kind, sid AS holder, cid FROM main.refs",
    ),
    2: (
        "CREATE TEMP TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
        "INSERT INTO temp.meta(name, value) VALUES ('chunk_hash', 'blake3')",
    ),
    3: ("CREATE TEMP VIEW IF NOT EXISTS sessions AS SELECT *, NULL AS entries FROM main.sessions",),
}

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


#: What a call into ``sqlite3`` may raise.  A damaged file can make SQLite's own error
#: message invalid UTF-8 (a flipped byte in the schema text it quotes), and then
#: ``sqlite3`` raises ``UnicodeDecodeError`` instead of its own error.
_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def _translate(e: sqlite3.Error | UnicodeDecodeError, what: str) -> EventLogError:
    if isinstance(e, UnicodeDecodeError):
        message = e.object[:200] if isinstance(e.object, bytes) else b""
        return CorruptionError(f"database file is damaged while {what}: SQLite's message is not text: {message!r}")
    name = getattr(e, "sqlite_errorname", "")
    # "Could not decode to UTF-8": a TEXT column (a session id) holds bytes that are not UTF-8.
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(e) or "decode to UTF-8" in str(e):
        return CorruptionError(f"database file is damaged while {what}: {e}")
    if name.startswith("SQLITE_READONLY"):
        return ReadOnlyError(f"the store cannot be written while {what}: {e}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StorageError(f"another connection kept the store locked for longer than busy_timeout while {what}")
    if name == "SQLITE_TOOBIG":
        return StorageError(f"a cell was over the length limit while {what} (eventlog bug): {e}")
    return StorageError(f"SQLite failed while {what}: {e}")


#: The first bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


def not_sqlite(path: str) -> bool:
    """Whether ``path`` is a regular file with bytes in it that do not start as an
    SQLite database does (a text file, an image): not an eventlog store, rather than
    a damaged one.  ``False`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return False
    return bool(head) and head != SQLITE_MAGIC


def _opening_error(e: sqlite3.Error | UnicodeDecodeError, path: str) -> EventLogError:
    """An error of SQLite's while opening ``path``: :class:`UnsupportedVersionError`
    for a file that is not an SQLite database at all, else as :func:`_translate`."""
    if getattr(e, "sqlite_errorname", "") == "SQLITE_NOTADB" and not_sqlite(path):
        return UnsupportedVersionError(f"{path!r} is not an eventlog store (not an SQLite database file)")
    return _translate(e, f"opening {path!r}")


Schema = dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]


def _may_have_committed(e: sqlite3.Error | UnicodeDecodeError) -> bool:
    """Whether a failed ``COMMIT`` may have left the transaction in the file: an I/O
    error or a full disk while its frames were written to the WAL or synced (the
    commit frame may be on disk, and comes back after a crash or a reopening)."""
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith("SQLITE_IOERR") or name == "SQLITE_FULL"


def _identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file at ``path``, ``None`` if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


#: Files next to a store that SQLite (and :mod:`eventlog.turnstile`) make.
#: The files next to a store file that belong to it (SQLite's and the writers'
#: turnstile's), named by appending these to the store file's path.
SIDECARS = ("-wal", "-shm", "-journal", "-lock")


def _create(path: str) -> tuple[tuple[int, int], list[str]] | None:
    """Create the store file if there is none: ``(its identity, the files next to it
    that do not exist yet)``, which are what a failed setup removes; ``None`` when
    the file was there (or cannot be made: SQLite then says why)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    real = os.path.realpath(path)
    return (st.st_dev, st.st_ino), [real + s for s in SIDECARS if not os.path.lexists(real + s)]


def _remove_created(path: str, made: tuple[tuple[int, int], list[str]]) -> None:
    """Remove a store file that :func:`_create` made (if it is still that file) and
    the files next to it that were not there before."""
    identity, sidecars = made
    if _identity(path) != identity:
        return  # replaced meanwhile: not ours any more
    for name in (*sidecars, path):
        with suppress(OSError):
            os.unlink(name)


def _schema(con: sqlite3.Connection, tables: Iterable[str]) -> Schema:
    """Each table's columns (name, type, not null, default, primary key) and indexes
    (unique, partial, columns; not names, which renaming a table keeps)."""
    out: Schema = {}
    for table in tables:
        columns = [tuple(r[1:]) for r in con.execute("SELECT * FROM pragma_table_info(?)", (table,))]
        indexes = sorted(
            (unique, partial, tuple(r[0] for r in con.execute("SELECT name FROM pragma_index_info(?)", (index,))))
            for index, unique, partial in con.execute(
                'SELECT name, "unique", partial FROM pragma_index_list(?)', (table,)
            ).fetchall()
        )
        out[table] = (columns, indexes)
    return out


def _expected_schema() -> Schema:
    """The schema this release creates, as :func:`_built_schema` finds it (a test
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
        ],
        [(0, 1, ("parent",)), (0, 1, ("sid",)), (1, 1, ("name",))],
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


def _built_schema() -> Schema:
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


def _schema_problem(con: sqlite3.Connection) -> str | None:
    """How the file's tables differ from eventlog's (other tables are ignored)."""
    expected = _expected_schema()
    found = _schema(con, expected)
    for table, (columns, indexes) in expected.items():
        if not found[table][0]:
            return f"table {table} is missing"
        if found[table][0] != columns:
            return f"the columns of {table} are {found[table][0]!r:.300}"
        if found[table][1] != indexes:
            return f"the indexes of {table} are {found[table][1]!r:.300}"
    return None


class SessionRow(NamedTuple):
    """A session's row: its id, head, newest snapshot (position, and the bytes
    writing it took), bytes of events since, the floor of its history, and its name."""

    sid: int
    seq: int
    snap_seq: int
    snap_bytes: int
    snap_bytes_since: int
    base_seq: int
    name: str


def _session_row(r: Sequence[Any]) -> SessionRow:
    """A sessions row as read; :class:`CorruptionError` when a column has the wrong
    type (a damaged record can read NULL or text where an integer was written)."""
    row = SessionRow(*r)
    if type(row.name) is not str or any(type(v) is not int for v in row[:6]):
        raise CorruptionError(f"the sessions table is damaged: a row reads {tuple(r)!r:.200}")
    return row


def _check_types(values: Iterable[Any], types: type | tuple[type, ...], table: str) -> None:
    """:class:`CorruptionError` unless every value read is of ``types`` (a damaged
    record can read NULL, text or a float where an integer was written)."""
    for v in values:
        if not isinstance(v, types) or type(v) is bool:
            raise CorruptionError(f"the {table} table is damaged: read {v!r:.80}, of type {type(v).__name__}")


def advance(cursor: int, last: Any, table: str) -> int:
    """The next cursor of a scan by increasing id: it must move forward, or a
    damaged b-tree (ids out of order) would make the scan go round forever."""
    if type(last) is not int or last <= cursor:
        raise CorruptionError(f"the {table} table is damaged: its ids are out of order")
    return last


_log = logging.getLogger(__name__)

#: What is checked of a file to see whether it changed: device, inode, size and
#: modification time (``None``: there is no such file).
FileState = tuple[int, int, int, int] | None


def _file_state(path: str) -> FileState:
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {path!r}: {e.strerror}") from None
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)


def _store_files(path: str) -> tuple[FileState, FileState]:
    """The state of the store file and of its ``-wal`` (SQLite names the side files
    after the store file's real path, symbolic links resolved)."""
    return _file_state(path), _file_state(os.path.realpath(path) + "-wal")


def _may_make_side_files(path: str) -> bool:
    """Whether a read-only open may let SQLite make the store's ``-wal`` and ``-shm``
    files: only where this process could write the store itself (as any writer of it
    would make them).  SQLite makes them with the store file's mode and, when run by
    root, gives them the store file's owner: of a store file its owner may not write
    (0444) they would be files its owner may not write either, which keep every
    writer out even after the store file is made writable again, hence the check of
    the owner's write bit."""
    effective = os.access in os.supports_effective_ids
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    return (
        bool(mode & stat.S_IWUSR)
        and os.access(path, os.W_OK, effective_ids=effective)
        and os.access(directory, os.W_OK | os.X_OK, effective_ids=effective)
    )


def _readonly_uri(path: str) -> tuple[str, bool]:
    """The URI a read-only open of ``path`` uses, and whether it is ``immutable``.

    SQLite reads a WAL store with its ``-wal`` file (the writes not yet merged into
    the store file) and its ``-shm`` index, makes them when they are missing, and
    writes the ``-shm`` (and gives an empty ``-wal`` the store file's mode) where it
    may.  Where this process may make them (:func:`_may_make_side_files`), the open
    is plain ``mode=ro``, as a writer of the store would open it.  Elsewhere (a
    directory or a store file this process may not write, a read-only mount) it
    touches neither: without a ``-wal``, or with an empty one, the store file alone
    is everything, and it is opened ``immutable=1`` (no side files, no locks; see
    :meth:`Database.read`); a ``-wal`` with writes in it is read through the
    existing ``-shm`` opened read-only (``readonly_shm=1``; SQLite then rebuilds the
    index in its own memory unless a writer keeps it up to date).  A non-empty
    ``-wal`` without a ``-shm`` cannot be read there, and the store file alone could
    be missing the writes in it: :class:`StorageError` (a ``-wal`` whose writes were
    all merged already, by a checkpoint that did not truncate it, is refused too:
    telling the two apart needs the index)."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    real = os.path.realpath(path)
    wal, shm = real + "-wal", real + "-shm"
    uses: tuple[str, ...] = (path, wal, shm)
    if _may_make_side_files(real):
        immutable = False
    else:
        state = _file_state(wal)
        if state is None or state[2] == 0:
            uri, uses, immutable = uri + "&immutable=1", (path,), True
        elif _file_state(shm) is not None:
            uri, immutable = uri + "&readonly_shm=1", False
        else:
            raise StorageError(
                f"cannot read {path!r} here: its -wal file is not empty, so it may hold writes not yet merged "
                "into the store file (its last writer did not close it), and reading them needs a -shm file, "
                "which cannot be made here (this process may not write the store or its directory); read "
                "without them, the store could be missing those writes. Open it once where it can be written "
                "(eventlog.open() and close(), or any command that writes), which merges them"
            )
    effective = os.access in os.supports_effective_ids
    for name in uses:
        if os.path.exists(name) and not os.access(name, os.R_OK, effective_ids=effective):
            also = "" if name == path else " (SQLite reads a store with its -wal and -shm files)"
            raise StorageError(f"cannot read {path!r}: this process may not read {name!r}{also}")
    return uri, immutable


class Database:
    """One SQLite connection, its schema and every query eventlog makes.

    Every write transaction first takes its turn at the store's ``-lock`` file
    (:mod:`eventlog.turnstile`), so a writer that writes back to back cannot starve
    the others, and checks that the files it was opened on are still the store's
    (a file renamed over it, or its ``-wal`` deleted, would take the write where
    nobody reads it)."""

    def __init__(
        self,
        path: str,
        *,
        max_cell_bytes: int,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        new_meta: dict[str, str | bytes] | None = None,
        readonly: bool = False,
    ) -> None:
        """Open ``path``, creating or upgrading its schema.  ``new_meta`` is recorded
        in the ``meta`` table when the file is created (in the same transaction);
        :attr:`meta` is the file's, whether just recorded or found.

        Opening a file of the current schema takes no write lock (it reads it in a
        read transaction); only creating or upgrading one does.  A new file is made
        by this open, and removed again with what SQLite made next to it if setting
        it up fails (a full disk): a file that was there before is never removed.

        With ``readonly`` the file is opened read-only (``mode=ro``): it must exist,
        nothing is created or upgraded (an older file is shown as the current schema
        through :data:`READ_SHIMS`), and every write raises :class:`ReadOnlyError`.
        Where SQLite's ``-wal`` and ``-shm`` files cannot be made, it is opened
        ``immutable`` (:attr:`immutable`; see :func:`_readonly_uri` and :meth:`read`)."""
        if type(synchronous) is not str or synchronous.upper() not in SYNCHRONOUS:
            raise InvalidValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r:.40}")
        memory = path in (":memory:", "") or path.startswith("file::memory:")
        if readonly and memory:
            raise InvalidValueError(f"readonly=True needs a store file, not {path!r}")
        if readonly and not os.path.isfile(path):
            raise StorageError(f"no store file at {path!r} (a read-only open creates nothing)")
        if not memory and not_sqlite(path):  # SQLite would take a file of a few bytes for an empty one
            raise UnsupportedVersionError(f"{path!r} is not an eventlog store (not an SQLite database file)")
        self.path = path
        self.readonly = readonly
        #: Opened ``immutable=1``: read without locks or side files.
        self.immutable = False
        # An immutable open: the store file and its -wal as they were when it was opened.
        self._files: tuple[FileState, FileState] | None = None
        self.max_cell_bytes = max_cell_bytes
        self.meta: dict[str, str | bytes] = {}
        self.wal = not memory
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        # The files the connection works on: the store file (by its path, as opened)
        # and the -wal and -lock files (SQLite names the -wal after the real path).
        self._file = "" if memory else os.path.abspath(path)
        self._real = "" if memory else os.path.realpath(path)
        self._identity: tuple[int, int] | None = None
        self._wal_identity: tuple[int, int] | None = None
        self._turnstile: Turnstile | None = None
        self._turns = not memory and not readonly  # False once turns turned out impossible
        self._stale = False  # the connection is closed and must be reopened before use
        self._settled = False  # the WAL was emptied after the files turned out replaced
        made = None if readonly or memory else _create(self._file)
        if readonly:
            files = _store_files(path)
            target, self.immutable = _readonly_uri(path)
        else:
            target = path
        try:
            try:
                con = sqlite3.connect(
                    target, isolation_level=None, timeout=busy_timeout, check_same_thread=False, uri=readonly
                )
            except _ERRORS as e:
                raise _translate(e, f"opening {path!r}") from None
            self.con = con
            try:
                self._configure(con)
                if readonly:
                    self._shim()
                    if self.immutable:
                        _log.debug("%r opened immutable: its -wal and -shm cannot be made here", path)
                        self._files = files
                else:
                    self._setup(new_meta or {})
            except _ERRORS as e:
                raise _opening_error(e, path) from None
        except BaseException:
            self.close()
            if made is not None:
                _remove_created(self._file, made)
            raise

    # ------------------------------------------------------------------ lifecycle

    def _configure(self, con: sqlite3.Connection) -> None:
        """The settings of a new connection (its own, nothing written)."""
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.max_cell_bytes)
        con.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_LENGTH_LIMIT)
        con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS)
        # Deleted content is overwritten with zeros, not left in free pages.
        con.execute("PRAGMA secure_delete=ON")
        con.execute(f"PRAGMA synchronous={self._synchronous}")

    def _setup(self, new_meta: dict[str, str | bytes]) -> None:
        """Check the file in a read transaction; only if it must be created or
        upgraded (or put in WAL mode), take the turn and do so (checking again)."""
        con = self.con
        with self.read():
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._check_empty()
            self._check_version(app_id, version)
            if version == SCHEMA_VERSION:
                self._check_schema()
                self.meta = dict(con.execute("SELECT name, value FROM meta").fetchall())
        wal = not self.wal or con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if version != SCHEMA_VERSION or not wal:
            with self._turn():
                if not wal:
                    con.execute("PRAGMA journal_mode=WAL")
                with self._transaction():
                    start = self._migrate(new_meta)
            if start == 0:
                _log.debug("%r: a new store, schema version %d", self.path, SCHEMA_VERSION)
            elif start < SCHEMA_VERSION:
                _log.info("%r upgraded from schema version %d to %d", self.path, start, SCHEMA_VERSION)
        if self.wal:
            self._identity = _identity(self._file)
            self._wal_identity = _identity(self._real + "-wal")

    def _migrate(self, new_meta: dict[str, str | bytes]) -> int:
        """Inside a write transaction: create or upgrade the schema (whatever another
        connection may have done since the file was first read); return the version
        it found (0: a new file)."""
        con = self.con
        app_id, version = (
            con.execute("PRAGMA application_id").fetchone()[0],
            con.execute("PRAGMA user_version").fetchone()[0],
        )
        start: int = version
        created = version == 0
        if version == 0:
            self._check_empty()
            con.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self._check_version(app_id, version)
        while version < SCHEMA_VERSION:
            try:
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
            except sqlite3.Error as e:
                if getattr(e, "sqlite_errorname", "") != "SQLITE_ERROR":
                    raise
                # A statement of the migration does not fit the file's tables.
                raise CorruptionError(
                    f"{self.path!r} says schema version {version}, but its tables are not that version's: {e}"
                ) from None
            version += 1
            con.execute(f"PRAGMA user_version={version}")
        self._check_schema()
        if created:
            for name, value in new_meta.items():
                con.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))
        self.meta = dict(con.execute("SELECT name, value FROM meta").fetchall())
        return start

    def _check_empty(self) -> None:
        """A file of schema version 0 must have no tables (a new file)."""
        if self.con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise UnsupportedVersionError(f"{self.path!r} is an SQLite file but not an eventlog store")

    def _check_schema(self) -> None:
        # A flipped byte in the schema text can rename a column or change a type or
        # default and still parse: refuse such a file now, not at some later query.
        problem = _schema_problem(self.con)
        if problem:
            raise CorruptionError(f"the schema of {self.path!r} is damaged: {problem}")

    def _check_version(self, app_id: int, version: int) -> None:
        if version != 0 and app_id != APPLICATION_ID:
            raise UnsupportedVersionError(f"{self.path!r} is not an eventlog store")
        if version > SCHEMA_VERSION:
            raise UnsupportedVersionError(
                f"{self.path!r} has schema version {version}; this eventlog reads up to {SCHEMA_VERSION}"
            )

    def _shim(self) -> None:
        """Read-only: check the file and, if it is from an older version, show it as
        the current schema without writing to it."""
        con = self.con
        with self.read():
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                raise UnsupportedVersionError(
                    f"{self.path!r} is an SQLite file but not an eventlog store"
                    if tables
                    else f"{self.path!r} is empty, not an eventlog store yet (a read-only open sets nothing up)"
                )
            self._check_version(app_id, version)
            problem = _schema_problem(con) if version == SCHEMA_VERSION else None
            if problem:
                raise CorruptionError(f"the schema of {self.path!r} is damaged: {problem}")
        # A file upgraded by a writer while this connection is open keeps being read
        # through these shims: harmless for version 2 (the meta it gets is the same),
        # and makes reads fail with StorageError for version 1 (its tables are gone).
        if version < SCHEMA_VERSION:
            _log.debug("%r has schema version %d: read through shims, not upgraded", self.path, version)
        for v in range(version, SCHEMA_VERSION):
            for statement in READ_SHIMS[v]:
                con.execute(statement)
        with self.read():
            self.meta = dict(con.execute("SELECT name, value FROM meta").fetchall())

    def close(self) -> None:
        if hasattr(self, "con"):
            if not self._stale and not self._files_ok():
                self._settle()
            self.con.close()
        if self._turnstile is not None:
            self._turnstile.close()
            self._turnstile = None

    def _reopen(self) -> None:
        """Replace the connection (closed when a commit failed at the disk, see
        :meth:`write`) with a new one on the same file; until that succeeds every
        use tries again."""
        self._stale = True
        with suppress(*_ERRORS):
            self.con.close()
        try:
            con = sqlite3.connect(self._file, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False)
        except _ERRORS as e:
            raise _translate(e, f"reopening {self.path!r}") from None
        self.con = con
        self._stale = False
        try:
            self._configure(con)
            with self.read():
                con.execute("PRAGMA user_version").fetchone()  # opens the -wal
        except (*_ERRORS, EventLogError) as e:
            self._stale = True
            con.close()
            raise e if isinstance(e, EventLogError) else _translate(e, f"reopening {self.path!r}") from None
        if _identity(self._file) != self._identity:
            self._stale = True
            con.close()
            raise StorageError(self._replaced())
        self._wal_identity = _identity(self._real + "-wal")

    def _live(self) -> sqlite3.Connection:
        """The connection, reopened first if it was closed after a failed commit."""
        if self._stale:
            self._reopen()
        return self.con

    def _replaced(self) -> str:
        return (
            f"the store file {self.path!r} was replaced or its -wal deleted since it was opened; "
            "nothing was written: reopen the store"
        )

    def _files_ok(self) -> bool:
        """Whether the store file and its ``-wal`` are still the ones this
        connection opened (a ``-wal`` made since is recorded now).  Checked in each
        write transaction: a file renamed over the store, or a ``-wal`` deleted
        under it, would take the write where no later open reads it."""
        if self._identity is None:
            return True
        if _identity(self._file) != self._identity:
            return False
        wal = _identity(self._real + "-wal")
        if self._wal_identity is None:
            self._wal_identity = wal
        return wal == self._wal_identity

    def _settle(self) -> None:
        """The store file was replaced (or its ``-wal`` deleted) under this
        connection: checkpoint the WAL it uses into the file it belongs to (the old
        one, wherever it is now) and empty it, once.  Otherwise SQLite, which finds
        the WAL by name, would apply its pages to whatever file is at the path when
        that is next opened, mixing the two.  (A connection that has opened the new
        file through the old ``-wal`` meanwhile is past helping: do not replace the
        file of an open store.)"""
        if self._settled:
            return
        self._settled = True
        try:
            with self._turn():
                self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except (*_ERRORS, EventLogError):
            pass  # best effort: the write is refused either way

    def _turnstile_(self) -> Turnstile | None:
        """The store's turnstile, opened on first use (a read-only open or a store
        only read never makes the ``-lock`` file)."""
        if self._turnstile is None and self._turns:
            self._turnstile = Turnstile.open(self._real)
            self._turns = self._turnstile is not None
        return self._turnstile

    def _take_turn(self) -> Turnstile | None:
        """Take this writer's turn (see :mod:`eventlog.turnstile`), waiting up to
        the busy timeout for it; the turnstile to give it back to, or ``None`` (no
        turns here, or the turn is held already, further up)."""
        turnstile = self._turnstile_()
        if turnstile is None or turnstile.held:
            return None
        try:
            turnstile.acquire(self._busy_timeout)
        except TurnTimeout:
            raise StorageError(
                f"other writers kept the store busy for longer than busy_timeout ({self._busy_timeout:g} s)"
            ) from None
        except OSError as e:  # the lock file stopped working: go on without turns
            self._no_turns(e)
            return None
        return turnstile

    def _give_turn(self, turnstile: Turnstile) -> None:
        try:
            turnstile.release()
        except OSError as e:
            self._no_turns(e)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold this writer's turn."""
        turnstile = self._take_turn()
        try:
            yield
        finally:
            if turnstile is not None:
                self._give_turn(turnstile)

    def _no_turns(self, e: OSError) -> None:
        logging.getLogger(__name__).warning(
            "locking %s failed (%s): writers of this store no longer take turns", self._real + "-lock", e.strerror
        )
        if self._turnstile is not None:
            self._turnstile.close()
        self._turnstile, self._turns = None, False

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction: the writer's turn, then ``BEGIN IMMEDIATE`` (waiting
        up to the busy timeout for each), committed on success, rolled back on any
        exception (:class:`StorageError` when waiting timed out, never SQLite's
        "database is locked").

        When the ``COMMIT`` itself fails at the disk (an I/O error or a full disk
        while the WAL was written or synced), the transaction may be in the file
        even though SQLite reports it rolled back (it comes back after a crash, or
        once the WAL is read again): :class:`OutcomeUnknownError`, and the
        connection is closed and reopened, so that what it shows next is what the
        file holds."""
        if self.readonly:
            raise ReadOnlyError(f"{self.path!r} was opened read-only")
        turnstile = self._take_turn()
        try:  # (one generator rather than nested ones: this is on every write's path)
            con = self._begin()
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._commit(con)
        finally:
            if turnstile is not None:
                self._give_turn(turnstile)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (the caller holds the turn)."""
        con = self._begin()
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._commit(con)

    def _begin(self) -> sqlite3.Connection:
        con = self._live()
        try:
            con.execute("BEGIN IMMEDIATE")
        except _ERRORS as e:
            raise _translate(e, "starting a write") from None
        if not self._files_ok():
            self._rollback()
            self._settle()
            raise StorageError(self._replaced())
        return con

    def _commit(self, con: sqlite3.Connection) -> None:
        try:
            con.execute("COMMIT")
        except _ERRORS as e:
            self._rollback()
            # (While the store is being opened, a failed creation or upgrade is an
            # error of the opening: the next open looks at the file afresh.)
            if not (self.wal and _may_have_committed(e)) or self._identity is None:
                raise _translate(e, "committing") from None
            message = f"the commit failed at the disk ({e}); the write may or may not be in the file"
            try:
                self._reopen()
            except EventLogError as again:
                message += f" (reopening the store failed too: {again.message}; the next call tries again)"
            raise OutcomeUnknownError(message) from None

    def _rollback(self) -> None:
        """Roll back, if SQLite has not already; a connection that cannot is closed
        (and reopened before its next use)."""
        try:
            self.con.rollback()
        except _ERRORS:
            self._stale = True
            with suppress(*_ERRORS):
                self.con.close()

    @contextmanager
    def read(self) -> Iterator[None]:
        """A read transaction: one consistent view of the file (WAL snapshot).

        An :attr:`immutable` open holds no lock, so nothing keeps a writer (another
        user, root) from changing the file meanwhile.  Before each read, if the store
        file or its ``-wal`` changed since it was opened, it is opened again, as a
        read-only open would be now (so the read sees what was written); after the
        read, if the store file changed during it (its size, modification time or
        inode), what was read is discarded: :class:`StorageError`."""
        con = self._live()
        if con.in_transaction:
            yield
            return
        seen = self._unlocked_start() if self._files is not None else None
        con = self.con
        try:
            con.execute("BEGIN")
        except _ERRORS as e:
            raise _translate(e, "starting a read") from None
        try:
            yield
        except Exception as e:
            if seen is not None and _file_state(self.path) != seen:
                raise self._changed() from e
            raise
        finally:
            self._rollback()
        if seen is not None and _file_state(self.path) != seen:
            raise self._changed()

    def _unlocked_start(self) -> FileState:
        """Before a read of an immutable open: open the store again if a writer came
        since; the store file's state, or ``None`` when it is no longer immutable."""
        assert self._files is not None
        now = _store_files(self.path)
        if now != self._files:
            _log.debug("%r changed since it was opened immutable: opening it again", self.path)
            fresh = Database(
                self.path, max_cell_bytes=self.max_cell_bytes, busy_timeout=self._busy_timeout, readonly=True
            )
            if fresh.meta != self.meta:
                fresh.close()
                raise StorageError(f"{self.path!r} was replaced by another store while it was open")
            self.con.close()
            self.con, self.immutable, self._files = fresh.con, fresh.immutable, fresh._files
            if self._files is None:
                return None
            now = self._files
        return now[0]

    def _changed(self) -> StorageError:
        return StorageError(
            f"{self.path!r} changed while it was read without locks (it was opened immutable, as its -wal and "
            "-shm files cannot be made here): what was read is discarded; read again"
        )

    def _q(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._live().execute(sql, params)
        except _ERRORS as e:
            raise _translate(e, "running a query") from None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._files is not None and not self.con.in_transaction:  # immutable: each read checked
            with self.read():
                return self._all(sql, params)
        try:
            return self._live().execute(sql, params).fetchall()
        except _ERRORS as e:
            raise _translate(e, "reading") from None

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ sessions

    _ROW = "SELECT sid, seq, snap_seq, snap_bytes, snap_bytes_since, base_seq, name FROM sessions "

    def session(self, name: str) -> SessionRow | None:
        """The live session called ``name``, or ``None``."""
        row = self._one(self._ROW + "WHERE name = ? AND deleted_ms IS NULL", (name,))
        return None if row is None else _session_row(row)

    def create_session(self, name: str, parent: str | None, now_ms: int) -> int:
        cur = self._q(
            "INSERT INTO sessions(name, parent, created_ms, updated_ms) VALUES (?, ?, ?, ?)",
            (name, parent, now_ms, now_ms),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def session_names(self) -> list[str]:
        """Names of the live sessions with at least one event, oldest first."""
        names = [r[0] for r in self._all("SELECT name FROM sessions WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid")]
        _check_types(names, str, "sessions")
        return names

    def parent(self, name: str) -> str | None:
        row = self._one("SELECT parent FROM sessions WHERE name = ? AND deleted_ms IS NULL", (name,))
        if row is None or row[0] is None:
            return None
        _check_types(row, str, "sessions")
        return row[0]  # type: ignore[no-any-return]

    def session_info(self, name: str) -> tuple[Any, ...] | None:
        """``(parent, seq, created_ms, updated_ms, base_seq, event bytes, snapshot
        bytes, entries)`` of the live session ``name`` (``entries`` as in
        :meth:`session_list`)."""
        row = self._one(
            "SELECT parent, seq, created_ms, updated_ms, base_seq, "
            "(SELECT coalesce(sum(length(frame)), 0) FROM events e WHERE e.sid = s.sid), "
            "(SELECT coalesce(sum(length(frame)), 0) FROM snapshots n WHERE n.sid = s.sid), entries "
            "FROM sessions s WHERE name = ? AND deleted_ms IS NULL AND seq > 0",
            (name,),
        )
        if row is not None:
            _check_types(row[1:7], int, "sessions")
            _check_types(row[:1], (str, type(None)), "sessions")
            _check_types(row[7:], (int, type(None)), "sessions")
        return row  # type: ignore[no-any-return]

    def session_list(self) -> list[tuple[Any, ...]]:
        """``(name, parent, seq, created_ms, updated_ms, base_seq, event bytes,
        snapshot bytes, entries)`` of every live session with at least one event,
        oldest first, in one query (``entries`` is ``None`` where not recorded)."""
        rows = self._all(
            "SELECT name, parent, seq, created_ms, updated_ms, base_seq, "
            "(SELECT coalesce(sum(length(frame)), 0) FROM events e WHERE e.sid = s.sid), "
            "(SELECT coalesce(sum(length(frame)), 0) FROM snapshots n WHERE n.sid = s.sid), entries "
            "FROM sessions s WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid"
        )
        for row in rows:
            _check_types(row[:1], str, "sessions")
            _check_types(row[1:2], (str, type(None)), "sessions")
            _check_types(row[2:8], int, "sessions")
            _check_types(row[8:], (int, type(None)), "sessions")
        return rows

    def recorded_entries(self, sid: int) -> Any:
        """The number of entries recorded with the session's head (``None``: not
        recorded; anything else read from a damaged row as it is)."""
        row = self._one("SELECT entries FROM sessions WHERE sid = ?", (sid,))
        return None if row is None else row[0]

    def children(self, parents: Sequence[str]) -> list[SessionRow]:
        """The live sessions whose parent is one of ``parents`` (batched), oldest first
        within each batch."""
        out: list[SessionRow] = []
        for i in range(0, len(parents), MAX_PARAMS):
            batch = parents[i : i + MAX_PARAMS]
            marks = ",".join("?" * len(batch))
            rows = self._all(self._ROW + f"WHERE parent IN ({marks}) AND deleted_ms IS NULL ORDER BY sid", batch)
            out += (_session_row(r) for r in rows)
        return out

    def mark_deleted(self, sid: int, now_ms: int) -> None:
        """Mark session ``sid`` deleted (its tombstone is already appended); its name
        is free from now on."""
        self._q("UPDATE sessions SET deleted_ms = ? WHERE sid = ?", (now_ms, sid))

    def dead_sessions(self, limit: int) -> list[int]:
        """Up to ``limit`` deleted sessions whose rows are still stored."""
        return [r[0] for r in self._all("SELECT sid FROM sessions WHERE deleted_ms IS NOT NULL LIMIT ?", (limit,))]

    def live_sessions(self, after_sid: int, limit: int) -> list[SessionRow]:
        """Live sessions with ``sid > after_sid``, by sid, at most ``limit``."""
        rows = self._all(self._ROW + "WHERE sid > ? AND deleted_ms IS NULL ORDER BY sid LIMIT ?", (after_sid, limit))
        return [_session_row(r) for r in rows]

    def legacy_sessions(self, after_sid: int, limit: int) -> list[SessionRow]:
        """Live sessions (``sid > after_sid``) that still have session-wide refs from
        a version 1 file."""
        rows = self._all(
            self._ROW + "WHERE sid > ? AND deleted_ms IS NULL AND EXISTS "
            f"(SELECT 1 FROM refs r WHERE r.kind = {SESSION_REF} AND r.holder = sessions.sid) ORDER BY sid LIMIT ?",
            (after_sid, limit),
        )
        return [_session_row(r) for r in rows]

    def session_by_sid(self, sid: int) -> SessionRow | None:
        row = self._one(self._ROW + "WHERE sid = ? AND deleted_ms IS NULL", (sid,))
        return None if row is None else _session_row(row)

    def drop_session_refs(self, sid: int) -> None:
        """Forget a session's session-wide refs (once its rows have their own)."""
        self._q("DELETE FROM refs WHERE kind = ? AND holder = ?", (SESSION_REF, sid))

    def drop_session(self, sid: int) -> None:
        """Remove a deleted session's row and its session-wide refs (its events and
        snapshots must be gone already)."""
        self._q("DELETE FROM refs WHERE kind = ? AND holder = ?", (SESSION_REF, sid))
        self._q("DELETE FROM sessions WHERE sid = ? AND deleted_ms IS NOT NULL", (sid,))

    def rebuild_sessions(self) -> None:
        """Rewrite the sessions table and its indexes.  Session rows are updated on
        every write, and SQLite may leave old copies of a row in the free space of a
        page that stays in use; ``secure_delete`` zeroes a row only where it is
        deleted.  A fresh table leaves no trace of deleted sessions' ids."""
        q = self._q
        q(f"CREATE TABLE sessions_new ({_SESSION_COLUMNS})")
        q("INSERT INTO sessions_new SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, "
          "snap_bytes_since, base_seq, deleted_ms, entries FROM sessions")  # fmt: skip
        q("DELETE FROM sqlite_sequence WHERE name = 'sessions_new'")
        q("INSERT INTO sqlite_sequence(name, seq) "
          "SELECT 'sessions_new', seq FROM sqlite_sequence WHERE name = 'sessions'")  # fmt: skip
        q("DROP TABLE sessions")
        q("ALTER TABLE sessions_new RENAME TO sessions")
        for statement in _SESSION_INDEXES:
            q(statement)

    def set_base(self, sid: int, base: int) -> None:
        """Declare events up to ``base`` folded into the snapshot at ``base``."""
        self._q("UPDATE sessions SET base_seq = ? WHERE sid = ? AND base_seq < ?", (base, sid, base))

    # ------------------------------------------------------------------ events

    def append_event(self, sid: int, seq: int, ts_ms: int, frame: bytes, size: int, entries: int | None = None) -> int:
        """Insert event ``seq`` of session ``sid`` and advance its head, adding
        ``size`` (its stored bytes) to the bytes since the last snapshot and recording
        ``entries``, the number of entries at the new head (``None``: not known);
        returns the global position.  The head moves only if it was ``seq - 1``."""
        cur = self._q(
            "UPDATE sessions SET seq = ?, updated_ms = ?, snap_bytes_since = snap_bytes_since + ?, entries = ? "
            "WHERE sid = ? AND seq = ?",
            (seq, ts_ms, size, entries, sid, seq - 1),
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
            except _ERRORS as e:
                raise _translate(e, "reading events") from None
            if not rows:
                return
            for r in rows:
                if type(r[0]) is not int or type(r[1]) is not int or type(r[2]) is not int or type(r[3]) is not bytes:
                    seq = r[0] if type(r[0]) is int else None
                    raise CorruptionError("an events row is damaged (a column has the wrong type)", seq=seq)
            yield from rows

    def last_seq(self, sid: int) -> int | None:
        """The position of the session's last stored event (``None``: none)."""
        return self._one("SELECT max(seq) FROM events WHERE sid = ?", (sid,))[0]  # type: ignore[no-any-return]

    def purge_events(self, sid: int, upto: int, limit: int) -> int:
        """Delete up to ``limit`` events of ``sid`` at or below ``upto``, oldest
        first, with their refs; returns how many were deleted."""
        pick = "SELECT pos FROM events WHERE sid = ? AND seq <= ? ORDER BY seq LIMIT ?"
        self._q(f"DELETE FROM refs WHERE kind = {EVENT_REF} AND holder IN ({pick})", (sid, upto, limit))
        return self._q(f"DELETE FROM events WHERE pos IN ({pick})", (sid, upto, limit)).rowcount

    # ------------------------------------------------------------------ snapshots

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        """Positions of the snapshots at or below ``upto``, newest first."""
        rows = self._all("SELECT seq FROM snapshots WHERE sid = ? AND seq <= ? ORDER BY seq DESC", (sid, upto))
        # A damaged position (NULL, text, a float) is a damaged snapshot: skipped, as
        # snapshots are a cache (verify reports it).
        return [r[0] for r in rows if type(r[0]) is int]

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        row = self._one("SELECT CAST(frame AS BLOB) FROM snapshots WHERE sid = ? AND seq = ?", (sid, seq))
        if row is not None and type(row[0]) is not bytes:
            raise CorruptionError("a snapshots row is damaged (its frame is not a blob)", seq=seq)
        return None if row is None else row[0]

    def put_snapshot(self, sid: int, seq: int, frame: bytes, size: int, cids: Sequence[int]) -> None:
        """Store a snapshot at ``seq`` with its refs to chunks ``cids`` (replacing one
        there, and freeing the chunks only that one used), recording ``size`` (the
        bytes writing it took, also those spilled into chunks; large values are
        counted neither here nor for events) for the snapshot policy."""
        old = "SELECT id FROM snapshots WHERE sid = ? AND seq = ?"
        held = f"SELECT cid FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({old})"
        dropped = [r[0] for r in self._all(held, (sid, seq))]
        self._q(f"DELETE FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({old})", (sid, seq))
        self._q("DELETE FROM snapshots WHERE sid = ? AND seq = ?", (sid, seq))
        cur = self._q("INSERT INTO snapshots(sid, seq, frame) VALUES (?, ?, ?)", (sid, seq, frame))
        self._q(
            "UPDATE sessions SET snap_seq = ?, snap_bytes = ?, snap_bytes_since = 0 WHERE sid = ? AND snap_seq < ?",
            (seq, size, sid, seq),
        )
        assert cur.lastrowid is not None
        self.add_refs(SNAPSHOT_REF, cur.lastrowid, cids)
        self._free_unused(dropped)

    def _free_unused(self, cids: Sequence[int]) -> None:
        """Delete those of chunks ``cids`` that nothing refers to any more."""
        for i in range(0, len(cids), MAX_PARAMS):
            batch = cids[i : i + MAX_PARAMS]
            marks = ",".join("?" * len(batch))
            unused = "NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = chunks.cid)"
            self._q(f"DELETE FROM chunks WHERE cid IN ({marks}) AND {unused}", batch)

    def snapshots_of(self, sid: int) -> list[tuple[int, int]]:
        """``(id, seq)`` of the session's snapshots, oldest first."""
        return self._all("SELECT id, seq FROM snapshots WHERE sid = ? ORDER BY seq", (sid,))

    def prune_snapshots(self, sid: int, keep: int, base: int) -> None:
        """Drop, with their refs, all snapshots of ``sid`` but the newest ``keep`` and
        the one at ``base`` (the floor of a compacted history, never a mere cache),
        and free the chunks nothing else refers to."""
        pick = (
            "SELECT id FROM snapshots WHERE sid = ? AND seq != ? AND seq < ("
            "SELECT min(seq) FROM (SELECT seq FROM snapshots WHERE sid = ? ORDER BY seq DESC LIMIT ?))"
        )
        params = (sid, base, sid, keep)
        held = f"SELECT cid FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})"
        dropped = [r[0] for r in self._all(held, params)]
        self._q(f"DELETE FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})", params)
        self._q(f"DELETE FROM snapshots WHERE id IN ({pick})", params)
        # What only those snapshots used (a rewritten last segment, a spilled frame) is
        # garbage now; free it here rather than leave it to the next compaction.
        self._free_unused(dropped)

    def purge_snapshots(self, sid: int, below: int, limit: int) -> int:
        """Delete up to ``limit`` snapshots of ``sid`` below ``below``, with their refs;
        returns how many were deleted."""
        pick = "SELECT id FROM snapshots WHERE sid = ? AND seq < ? LIMIT ?"
        self._q(f"DELETE FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})", (sid, below, limit))
        return self._q(f"DELETE FROM snapshots WHERE id IN ({pick})", (sid, below, limit)).rowcount

    # ------------------------------------------------------------------ chunks

    def chunk_ids(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """``hash -> cid`` for those of ``hashes`` that are stored (batched)."""
        return {h: cid for h, (cid, _) in self.chunk_sizes(hashes).items()}

    def chunk_sizes(self, hashes: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
        """``hash -> (cid, raw size)`` for those of ``hashes`` that are stored (batched)."""
        found: dict[bytes, tuple[int, int]] = {}
        for i in range(0, len(hashes), MAX_PARAMS):
            batch = hashes[i : i + MAX_PARAMS]
            marks = ",".join("?" * len(batch))
            for h, cid, size in self._all(f"SELECT hash, cid, size FROM chunks WHERE hash IN ({marks})", batch):
                _check_types((cid, size), int, "chunks")
                if h not in batch:  # found through the index, but the row says otherwise
                    raise CorruptionError(f"the chunks table is damaged: its index and row {cid!r} disagree")
                found[h] = (cid, size)
        return found

    def put_chunk(self, digest: bytes, flags: int, size: int, data: bytes) -> int:
        cur = self._q("INSERT INTO chunks(hash, flags, size, data) VALUES (?, ?, ?, ?)", (digest, flags, size, data))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def rewrite_chunk(self, cid: int, flags: int, size: int, data: bytes) -> None:
        """Replace a damaged chunk's stored bytes (its address stays)."""
        self._q("UPDATE chunks SET flags = ?, size = ?, data = ? WHERE cid = ?", (flags, size, data, cid))

    def chunk(self, digest: bytes) -> tuple[int, int, bytes] | None:
        """``(flags, size, data)`` of a chunk, or ``None`` when it is missing."""
        row = self._one("SELECT flags, size, CAST(data AS BLOB) FROM chunks WHERE hash = ?", (digest,))
        return None if row is None else (row[0], row[1], row[2])

    def chunks_page(self, after_cid: int, limit: int) -> list[tuple[int, bytes, int, int, bytes]]:
        """``(cid, hash, flags, size, data)`` of chunks with ``cid > after_cid``."""
        return self._all(
            "SELECT cid, hash, flags, size, CAST(data AS BLOB) FROM chunks WHERE cid > ? ORDER BY cid LIMIT ?",
            (after_cid, limit),
        )

    def add_refs(self, kind: int, holder: int, cids: Sequence[int]) -> None:
        """Record that a holder (an event or snapshot) uses chunks ``cids``
        (idempotent, batched)."""
        unique = sorted(set(cids))
        per = MAX_PARAMS // 3
        for i in range(0, len(unique), per):
            batch = unique[i : i + per]
            marks = ",".join("(?, ?, ?)" for _ in batch)
            params: list[int] = []
            for cid in batch:
                params += (kind, holder, cid)
            self._q(f"INSERT OR IGNORE INTO refs(kind, holder, cid) VALUES {marks}", params)

    def refs_of(self, kind: int, holder: int) -> set[int]:
        return {r[0] for r in self._all("SELECT cid FROM refs WHERE kind = ? AND holder = ?", (kind, holder))}

    def free_chunks(self, after_cid: int, limit: int) -> tuple[int | None, int, int]:
        """Delete the chunks among the next ``limit`` after ``after_cid`` that nothing
        refers to.  Returns ``(cursor for the next call or None at the end, chunks
        freed, stored bytes freed)``."""
        row = self._one(
            "SELECT max(cid), count(*) FROM (SELECT cid FROM chunks WHERE cid > ? ORDER BY cid LIMIT ?)",
            (after_cid, limit),
        )
        last, n = row if row else (None, 0)
        if not n:
            return None, 0, 0
        last = advance(after_cid, last, "chunks")
        garbage = (
            "SELECT cid FROM chunks c WHERE cid > ? AND cid <= ? "
            "AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = c.cid)"
        )
        freed, size = self._one(
            f"SELECT count(*), coalesce(sum(length(data)), 0) FROM chunks WHERE cid IN ({garbage})",
            (after_cid, last),
        )
        if freed:
            self._q(f"DELETE FROM chunks WHERE cid IN ({garbage})", (after_cid, last))
        return last, freed, size

    # ------------------------------------------------------------------ maintenance

    def checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it; ``False`` when a reader
        elsewhere kept it from finishing."""
        if not self.wal:
            return True
        # TRUNCATE waits for writers: it takes its turn like one.
        with self._turn():
            row = self._one("PRAGMA wal_checkpoint(TRUNCATE)")
        return row is not None and row[0] == 0

    def vacuum(self) -> None:
        """Rewrite the file without free pages (needs about its size in free space)."""
        with self._turn():
            self._q("VACUUM")

    def integrity_problems(self, limit: int) -> list[str]:
        """What SQLite's ``PRAGMA integrity_check`` finds wrong with the file (pages,
        b-trees, indexes against their tables), at most ``limit`` lines."""
        rows = self._all(f"PRAGMA integrity_check({int(limit)})")
        return [] if [tuple(r) for r in rows] == [("ok",)] else [str(r[0]) for r in rows]

    def counter_problems(self) -> list[str]:
        """Tables whose AUTOINCREMENT counter (in ``sqlite_sequence``) is missing or
        below their largest id: the next row could reuse an id (a position)."""
        counters = dict(self._all("SELECT name, seq FROM sqlite_sequence"))
        # A table an older file is read through (a read-only open's shim view) has none.
        shown = {r[0] for r in self._all("SELECT name FROM sqlite_temp_master WHERE type = 'view'")}
        out = []
        for table, column in (("sessions", "sid"), ("events", "pos"), ("snapshots", "id")):
            if table in shown:
                continue
            largest = self._one(f"SELECT max({column}) FROM {table}")[0]
            counter = counters.get(table)
            if largest is not None and not (type(counter) is int and counter >= largest):
                out.append(f"the id counter of {table} reads {counter!r}, below its largest id {largest}")
        return out

    def dangling_refs(self, limit: int) -> list[tuple[int, int, int]]:
        """``(kind, holder, cid)`` of refs whose chunk or holder is missing."""
        return self._all(
            "SELECT kind, holder, cid FROM refs r WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.cid = r.cid) "
            f"OR (kind = {EVENT_REF} AND NOT EXISTS (SELECT 1 FROM events e WHERE e.pos = r.holder)) "
            f"OR (kind = {SNAPSHOT_REF} AND NOT EXISTS (SELECT 1 FROM snapshots n WHERE n.id = r.holder)) "
            f"OR (kind = {SESSION_REF} AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = r.holder)) LIMIT ?",
            (limit,),
        )

    def orphan_rows(self) -> int:
        """Events and snapshots whose session row is missing."""
        return int(
            self._one(
                "SELECT (SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = e.sid))"
                " + (SELECT count(*) FROM snapshots n WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = n.sid))"
            )[0]
        )

    def counts(self) -> tuple[int, int, int]:
        """``(live sessions, deleted sessions still stored, chunks)``: the totals
        progress is reported against."""
        row = self._one(
            "SELECT (SELECT count(*) FROM sessions WHERE deleted_ms IS NULL), "
            "(SELECT count(*) FROM sessions WHERE deleted_ms IS NOT NULL), (SELECT count(*) FROM chunks)"
        )
        return int(row[0]), int(row[1]), int(row[2])

    def unreferenced_chunks(self) -> int:
        return int(
            self._one("SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = c.cid)")[0]
        )

    def oversized_rows(self, limit: int) -> list[tuple[str, int, int]]:
        """``(table, row id, bytes)`` of rows whose stored columns add up to more
        than the budget (the cell limit stops any single cell)."""
        b = self.max_cell_bytes
        return self._all(
            "SELECT 'events', pos, length(frame) + 32 FROM events WHERE length(frame) + 32 > ? "
            "UNION ALL SELECT 'snapshots', id, length(frame) + 24 FROM snapshots WHERE length(frame) + 24 > ? "
            "UNION ALL SELECT 'chunks', cid, length(data) + length(hash) + 24 FROM chunks "
            "WHERE length(data) + length(hash) + 24 > ? "
            "UNION ALL SELECT 'sessions', sid, length(CAST(name AS BLOB)) + coalesce(length(CAST(parent AS BLOB)), 0) "
            "+ 80 FROM sessions WHERE length(CAST(name AS BLOB)) + coalesce(length(CAST(parent AS BLOB)), 0) + 80 > ? "
            "LIMIT ?",
            (b, b, b, b, limit),
        )

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
        # Bytes of chunk content as referenced (each use counted) against as stored once.
        out["chunks"]["referenced_raw_bytes"] = q(
            "SELECT coalesce(sum(c.size), 0) FROM refs r JOIN chunks c ON c.cid = r.cid"
        ).fetchone()[0]
        out["snapshots"]["events_after_newest"] = q(
            "SELECT coalesce(sum(seq - max(snap_seq, base_seq)), 0), coalesce(max(seq - max(snap_seq, base_seq)), 0) "
            "FROM sessions WHERE deleted_ms IS NULL"
        ).fetchone()
        page_size = q("PRAGMA page_size").fetchone()[0]
        out["file_bytes"] = q("PRAGMA page_count").fetchone()[0] * page_size
        return out
