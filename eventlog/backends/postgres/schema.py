"""The PostgreSQL backend's schema: its tables, created (and, in later versions,
migrated) by eventlog under an advisory lock, and the version table that says
which schema a database holds.

Tables (schema version 1), in the connection's current schema (the first of its
``search_path``: give ``options=-csearch_path=NAME`` in the URL to keep several
stores, or eventlog apart from an application's tables, in one database); every
name starts with ``eventlog_``::

    eventlog_version(version)                 -- one row: the schema version
    eventlog_meta(name PK, value, is_text)    -- fixed when the store is created:
        -- chunk_hash ('blake3', or 'blake3-keyed' with chunk_key_check)
    eventlog_sessions(sid PK identity, name, parent, seq, created_ms, updated_ms,
                      snap_seq, snap_bytes, snap_bytes_since, base_seq,
                      deleted_ms, entries, key UNIQUE)
        -- one row per incarnation; name unique among live rows (deleted_ms IS NULL);
        -- name and parent are UTF-8 bytes (a session id may hold NUL, which
        -- PostgreSQL's text cannot)
    eventlog_events(pos PK identity, sid, seq, ts_ms, frame, tx, UNIQUE(sid, seq))
        -- tx: the writing transaction's id (xid8), which orders the feed
    eventlog_snapshots(id PK identity, sid, seq, frame, UNIQUE(sid, seq))
    eventlog_chunks(cid PK identity, hash UNIQUE, flags, size, data)
    eventlog_refs(kind, holder, cid REFERENCES eventlog_chunks, PK(kind, holder, cid))
        -- the event (kind 0, holder = pos) or snapshot (kind 1, holder = id) using
        -- a chunk

Identity columns take their values from sequences, which never give one twice, so
``pos`` is never reused, even after rows are deleted.  Positions are not given in
the order transactions commit, though: one that took position 11 may commit before
one that took 10.  The feed (:meth:`~eventlog.backend.Backend.feed`) therefore reads
events by ``(tx, pos)`` and only those of transactions older than every transaction
still running (``pg_snapshot_xmin(pg_current_snapshot())``): a transaction that
commits later has an id at least that, so it sorts after everything already read.  A row and its references are
written and deleted in one transaction.
"""

from __future__ import annotations

from contextlib import suppress

from ...errors import CorruptionError, EventLogError
from .connection import Connection

#: Schema version this release writes.
SCHEMA_VERSION = 1

_TABLES = (
    "CREATE TABLE eventlog_version (version integer NOT NULL)",
    """CREATE TABLE eventlog_meta (
        name text PRIMARY KEY,
        value bytea NOT NULL,
        is_text boolean NOT NULL
    )""",
    """CREATE TABLE eventlog_sessions (
        sid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name bytea NOT NULL,
        parent bytea,
        seq bigint NOT NULL DEFAULT 0,
        created_ms bigint NOT NULL,
        updated_ms bigint NOT NULL,
        snap_seq bigint NOT NULL DEFAULT 0,
        snap_bytes bigint NOT NULL DEFAULT 0,
        snap_bytes_since bigint NOT NULL DEFAULT 0,
        base_seq bigint NOT NULL DEFAULT 0,
        deleted_ms bigint,
        entries bigint,
        key bytea NOT NULL UNIQUE
    )""",
    "CREATE UNIQUE INDEX eventlog_sessions_name ON eventlog_sessions(name) WHERE deleted_ms IS NULL",
    "CREATE INDEX eventlog_sessions_parent ON eventlog_sessions(parent) "
    "WHERE parent IS NOT NULL AND deleted_ms IS NULL",
    "CREATE INDEX eventlog_sessions_dead ON eventlog_sessions(sid) WHERE deleted_ms IS NOT NULL",
    """CREATE TABLE eventlog_events (
        pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid bigint NOT NULL,
        seq bigint NOT NULL,
        ts_ms bigint NOT NULL,
        frame bytea NOT NULL,
        tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
        UNIQUE (sid, seq)
    )""",
    "CREATE INDEX eventlog_events_feed ON eventlog_events(tx, pos)",
    """CREATE TABLE eventlog_snapshots (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid bigint NOT NULL,
        seq bigint NOT NULL,
        frame bytea NOT NULL,
        UNIQUE (sid, seq)
    )""",
    """CREATE TABLE eventlog_chunks (
        cid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        hash bytea NOT NULL UNIQUE,
        flags integer NOT NULL,
        size bigint NOT NULL,
        data bytea NOT NULL
    )""",
    """CREATE TABLE eventlog_refs (
        kind smallint NOT NULL,
        holder bigint NOT NULL,
        cid bigint NOT NULL REFERENCES eventlog_chunks(cid),
        PRIMARY KEY (kind, holder, cid)
    )""",
    "CREATE INDEX eventlog_refs_cid ON eventlog_refs(cid)",
    # Chunks and frames are compressed already: stored out of line, never compressed again.
    "ALTER TABLE eventlog_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    "ALTER TABLE eventlog_events ALTER COLUMN frame SET STORAGE EXTERNAL",
    "ALTER TABLE eventlog_snapshots ALTER COLUMN frame SET STORAGE EXTERNAL",
)

#: Every table of a store.
TABLES = ("eventlog_version", "eventlog_meta", "eventlog_sessions", "eventlog_events", "eventlog_snapshots",
          "eventlog_chunks", "eventlog_refs")  # fmt: skip

#: ``MIGRATIONS[v]`` upgrades a store from schema version ``v`` to ``v + 1``
#: (version 0: an empty database).
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _TABLES}

# A transaction-scoped advisory lock, one per schema, so that two processes opening
# a new store at once do not both create it.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.eventlog'))"


def setup(db: Connection, new_meta: dict[str, str | bytes], readonly: bool) -> dict[str, str | bytes]:
    """Create or upgrade the store in the connection's schema (under the advisory
    lock, in one transaction), or, ``readonly``, check that it is there; its meta."""
    from ...errors import StorageError, UnsupportedVersionError

    def found() -> int | None:
        if db.row("SELECT to_regclass('eventlog_version')")[0] is None:
            return None
        row = db.row("SELECT max(version), count(*) FROM eventlog_version")
        if row is None or row[1] != 1 or type(row[0]) is not int:
            raise UnsupportedVersionError(f"{db.shown}: the eventlog_version table is damaged")
        return int(row[0])

    def check(version: int) -> None:
        if version > SCHEMA_VERSION:
            raise UnsupportedVersionError(
                f"{db.shown} holds an eventlog store of schema version {version}, newer than this "
                f"release's {SCHEMA_VERSION}: upgrade eventlog"
            )

    if readonly:
        with db.read():
            version = found()
            if version is None:
                raise StorageError(f"no eventlog store at {db.shown} (readonly=True needs an existing store)")
            check(version)
            if version < SCHEMA_VERSION:
                raise UnsupportedVersionError(
                    f"{db.shown} holds schema version {version}: open it once without readonly to upgrade it"
                )
            return _meta(db)

    # A store of this version: nothing to create, no lock to take (one query).
    if db.row("SELECT to_regclass('eventlog_version') IS NOT NULL AND to_regclass('eventlog_meta') IS NOT NULL")[0]:
        with suppress(EventLogError):
            meta, version = _meta_and_version(db)
            if version == SCHEMA_VERSION:
                return meta

    def create() -> dict[str, str | bytes]:
        db.run(_LOCK)
        version = found()
        start = 0 if version is None else version
        check(start)
        if start == 0:
            others = db.row(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY(%s)",
                (list(TABLES),),
            )[0]
            if others:
                raise UnsupportedVersionError(
                    f"{db.shown}: some eventlog_ tables exist without a version: not an eventlog store"
                )
        for v in range(start, SCHEMA_VERSION):
            for statement in MIGRATIONS[v]:
                db.run(statement)
        if start == 0:
            db.run("INSERT INTO eventlog_version(version) VALUES (%s)", (SCHEMA_VERSION,))
            for name, value in new_meta.items():
                raw = value.encode() if isinstance(value, str) else value
                db.run("INSERT INTO eventlog_meta(name, value, is_text) VALUES (%s, %s, %s)",
                       (name, raw, isinstance(value, str)))  # fmt: skip
        elif start < SCHEMA_VERSION:
            db.run("UPDATE eventlog_version SET version = %s", (SCHEMA_VERSION,))
        return _meta(db)

    return db.unit(create, "creating the store")


def _meta(db: Connection) -> dict[str, str | bytes]:
    """The store's meta."""
    return _meta_and_version(db)[0]


def _meta_and_version(db: Connection) -> tuple[dict[str, str | bytes], int | None]:
    """The store's meta and its version (``None`` where the version table does not
    hold exactly one row), in one query."""
    out: dict[str, str | bytes] = {}
    rows = db.rows("SELECT name, value, is_text, (SELECT CASE WHEN count(*) = 1 THEN max(version) END "
                   "FROM eventlog_version) FROM eventlog_meta")  # fmt: skip
    for name, value, is_text, _ in rows:
        if is_text:
            try:
                out[name] = bytes(value).decode()
            except UnicodeDecodeError:
                raise CorruptionError(f"{db.shown}: the eventlog_meta table is damaged") from None
        else:
            out[name] = bytes(value)
    version = rows[0][3] if rows else None
    return out, version if type(version) is int else None
