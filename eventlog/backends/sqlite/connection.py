"""The SQLite backend's connection: opening a store file (creating, upgrading or,
read-only, shimming its schema), its settings, write and read transactions, the
writers' turns (:mod:`.turnstile`), the checks that the files it was opened on are
still the store's, and reopening after a commit failed at the disk.

Every statement of the backend runs through :meth:`Database.q`, :meth:`Database.all`
and :meth:`Database.one`, which translate SQLite's errors (:mod:`.errors`).  No
statement binds more than 100 parameters or is longer than 100 KB (the limits of a
Cloudflare Durable Object, set on the connection so that a longer one fails).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from ...errors import (
    CorruptionError,
    EventLogError,
    InvalidValueError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    UnsupportedVersionError,
)
from . import files
from .errors import ERRORS, may_have_committed, opening_error, translate
from .files import FileState, file_state, identity, not_sqlite, store_files
from .schema import (
    APPLICATION_ID,
    MAX_PARAMS,
    MIGRATIONS,
    READ_SHIMS,
    SCHEMA_VERSION,
    SQL_LENGTH_LIMIT,
    check_empty,
    check_schema,
    check_version,
)
from .turnstile import Turns, Turnstile, TurnTimeout

_log = logging.getLogger("eventlog.sqlite")  # one name for the backend, whichever module logs

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class Database:
    """One SQLite connection to a store, its settings and its transactions.

    Every write transaction first takes its turn at the store's ``-lock`` file
    (:mod:`.turnstile`), so a writer that writes back to back cannot starve
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
        ``immutable`` (:attr:`immutable`; see :func:`.files.readonly_uri` and :meth:`read`)."""
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
        #: Write transactions this handle committed (see :mod:`.watching`).
        self.commits = 0
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
        self.turns = Turns(self._real, not memory and not readonly, busy_timeout)
        self._stale = False  # the connection is closed and must be reopened before use
        self._settled = False  # the WAL was emptied after the files turned out replaced
        made = None if readonly or memory else files.create(self._file)
        if readonly:
            seen = store_files(path)
            target, self.immutable = files.readonly_uri(path)
        else:
            target = path
        try:
            try:
                con = sqlite3.connect(
                    target, isolation_level=None, timeout=busy_timeout, check_same_thread=False, uri=readonly
                )
            except ERRORS as e:
                raise translate(e, f"opening {path!r}") from None
            self.con = con
            try:
                self._configure(con)
                if readonly:
                    self._shim()
                    if self.immutable:
                        _log.debug("%r opened immutable: its -wal and -shm cannot be made here", path)
                        self._files = seen
                else:
                    self._setup(new_meta or {})
            except ERRORS as e:
                raise opening_error(e, path) from None
        except BaseException:
            self.close()
            if made is not None:
                files.remove_created(self._file, made)
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
                check_empty(con, self.path)
            check_version(app_id, version, self.path)
            if version == SCHEMA_VERSION:
                check_schema(con, self.path)
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
            self._identity = identity(self._file)
            self._wal_identity = identity(self._real + "-wal")

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
            check_empty(con, self.path)
            con.execute(f"PRAGMA application_id={APPLICATION_ID}")
        check_version(app_id, version, self.path)
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
        check_schema(con, self.path)
        if created:
            for name, value in new_meta.items():
                con.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))
        self.meta = dict(con.execute("SELECT name, value FROM meta").fetchall())
        return start

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
            check_version(app_id, version, self.path)
            if version == SCHEMA_VERSION:
                check_schema(con, self.path)
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
        self.turns.close()

    def _reopen(self) -> None:
        """Replace the connection (closed when a commit failed at the disk, see
        :meth:`write`) with a new one on the same file; until that succeeds every
        use tries again."""
        self._stale = True
        with suppress(*ERRORS):
            self.con.close()
        try:
            con = sqlite3.connect(self._file, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False)
        except ERRORS as e:
            raise translate(e, f"reopening {self.path!r}") from None
        self.con = con
        self._stale = False
        try:
            self._configure(con)
            with self.read():
                con.execute("PRAGMA user_version").fetchone()  # opens the -wal
        except (*ERRORS, EventLogError) as e:
            self._stale = True
            con.close()
            raise e if isinstance(e, EventLogError) else translate(e, f"reopening {self.path!r}") from None
        if identity(self._file) != self._identity:
            self._stale = True
            con.close()
            raise StorageError(self._replaced())
        self._wal_identity = identity(self._real + "-wal")

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
        if identity(self._file) != self._identity:
            return False
        wal = identity(self._real + "-wal")
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
        except (*ERRORS, EventLogError):
            pass  # best effort: the write is refused either way

    def _take_turn(self) -> Turnstile | None:
        try:
            return self.turns.take()
        except TurnTimeout:
            raise StorageError(
                f"other writers kept the store busy for longer than busy_timeout ({self._busy_timeout:g} s)"
            ) from None

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold this writer's turn."""
        turnstile = self._take_turn()
        try:
            yield
        finally:
            if turnstile is not None:
                self.turns.give(turnstile)

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
                self.turns.give(turnstile)

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
        except ERRORS as e:
            raise translate(e, "starting a write") from None
        if not self._files_ok():
            self._rollback()
            self._settle()
            raise StorageError(self._replaced())
        return con

    def _commit(self, con: sqlite3.Connection) -> None:
        try:
            con.execute("COMMIT")
            self.commits += 1  # (what a watcher of a private database looks at)
        except ERRORS as e:
            self._rollback()
            # (While the store is being opened, a failed creation or upgrade is an
            # error of the opening: the next open looks at the file afresh.)
            if not (self.wal and may_have_committed(e)) or self._identity is None:
                raise translate(e, "committing") from None
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
        except ERRORS:
            self._stale = True
            with suppress(*ERRORS):
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
        except ERRORS as e:
            raise translate(e, "starting a read") from None
        if seen is None and not self._files_ok():
            # Replaced under this connection: what it would read is no longer the
            # store at the path (a delete() would find nothing to delete there).
            self._rollback()
            self._settle()
            raise StorageError(self._replaced())
        try:
            yield
        except Exception as e:
            if seen is not None and file_state(self.path) != seen:
                raise self._changed() from e
            raise
        finally:
            self._rollback()
        if seen is not None and file_state(self.path) != seen:
            raise self._changed()

    def _unlocked_start(self) -> FileState:
        """Before a read of an immutable open: open the store again if a writer came
        since; the store file's state, or ``None`` when it is no longer immutable."""
        assert self._files is not None
        now = store_files(self.path)
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

    def run(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run a statement (a write, or a read whose rows the caller fetches)."""
        try:
            return self._live().execute(sql, params)
        except ERRORS as e:
            raise translate(e, "running a query") from None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows a query reads (of an immutable open, in a read transaction of
        its own unless in one already)."""
        if self._files is not None and not self.con.in_transaction:  # immutable: each read checked
            with self.read():
                return self.rows(sql, params)
        try:
            return self._live().execute(sql, params).fetchall()
        except ERRORS as e:
            raise translate(e, "reading") from None

    def row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row a query reads, or ``None``."""
        rows = self.rows(sql, params)
        return rows[0] if rows else None
