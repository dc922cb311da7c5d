"""The PostgreSQL backend's connection: connecting (``psycopg`` 3, an optional
extra), its settings, read and write transactions, retrying a unit of work that
the server aborted for a deadlock or a serialization failure, and translating the
driver's errors into eventlog's: the one place where they are.

A handle holds one connection in autocommit mode; transactions are explicit:

* a *unit of work* (:meth:`Connection.unit`) is ``BEGIN`` (``READ COMMITTED``) ...
  ``COMMIT``, run again from the start when the server aborts it for a deadlock
  (``40P01``) or a serialization failure (``40001``), up to :data:`RETRIES` times;
* a *read* (:meth:`Connection.read`) is ``BEGIN ISOLATION LEVEL REPEATABLE READ
  READ ONLY``: one snapshot for every statement inside.

Waiting for a lock another connection holds is bounded by ``busy_timeout``
(``lock_timeout``): past it, :class:`~eventlog.StorageError`, never a hang.  A
connection the server or the network dropped is opened again before the next use;
a ``COMMIT`` whose answer was lost with the connection is
:class:`~eventlog.OutcomeUnknownError`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ...errors import (
    ConflictError,
    CorruptionError,
    EventLogError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
)

_log = logging.getLogger("eventlog.postgres")

T = TypeVar("T")

#: How many times a unit of work the server aborted (deadlock, serialization
#: failure) is run again before :class:`~eventlog.StorageError`.
RETRIES = 8
#: URL schemes of a PostgreSQL store.
SCHEMES = ("postgresql://", "postgres://")
#: Seconds a writer goes by what it last saw of a channel's watchers (see
#: :meth:`Connection.notify`): a quarter of a watcher's fallback poll, so a watcher
#: that starts elsewhere waits at most that long for its first wake-up (a look is one
#: short query).
WATCHERS_SEEN_FOR = 0.25
#: Watchers started in this process so far: a writer looks again at once after one.
_started = [0]
#: Whether a watcher's connection (by its name) is in this database.
_WATCHERS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND datname = current_database())"
)


def watcher_name(channel: str) -> str:
    """The ``application_name`` a watcher's connection shows in ``pg_stat_activity``
    (every role may read it there), by which writers know a channel is watched."""
    return f"eventlog watcher {channel}"


def watcher_started() -> None:
    """A watcher of this process is listening (writers here look again at once)."""
    _started[0] += 1


class Retry(Exception):
    """Inside a unit of work: run it again from the start (raised by the backend
    where a concurrent transaction won a race the unit can simply repeat)."""


def is_url(path: str) -> bool:
    """Whether ``path`` names a PostgreSQL store."""
    return path.startswith(SCHEMES)


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``: what messages and logs show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(an unreadable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StorageError("a PostgreSQL store needs psycopg 3: pip install 'eventlog[postgres]'") from None
    return psycopg


def translate(e: BaseException, what: str) -> EventLogError:
    """A driver error as eventlog's."""
    state = getattr(e, "sqlstate", None) or ""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
        return CorruptionError(f"the database is damaged while {what}: {text}")
    if state == "25006" or state == "42501":  # read_only_sql_transaction, insufficient_privilege
        return ReadOnlyError(f"the store cannot be written while {what}: {text}")
    if state == "55P03":  # lock_not_available: lock_timeout (busy_timeout) passed
        return StorageError(f"another connection kept the store locked for longer than busy_timeout while {what}")
    if state in ("40001", "40P01"):
        return StorageError(f"the server kept aborting the transaction ({text}) while {what}")
    if state == "23505":
        return ConflictError(f"another writer stored the same row first while {what}: {text}")
    if state.startswith("08") or not state:
        return StorageError(f"the connection to PostgreSQL failed while {what}: {text}")
    return StorageError(f"PostgreSQL failed while {what}: {text}")


class Connection:
    """One connection to the store's database, with eventlog's settings."""

    def __init__(self, url: str, *, synchronous: str, busy_timeout: float, readonly: bool) -> None:
        self.url = url
        self.shown = redacted(url)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self._psycopg = _psycopg()
        self._errors: tuple[type[BaseException], ...] = (self._psycopg.Error,)
        self._con: Any = None
        self._closed = False
        self._reading = 0
        self._writing = False
        # (channel, watchers started here then, when looked, whether it was watched)
        self._watched: tuple[str, int, float, bool] | None = None
        self._connect()

    # ------------------------------------------------------------------ the connection

    def _connect(self) -> None:
        try:
            con = self._psycopg.connect(self.url, autocommit=True)
        except self._errors as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StorageError(f"cannot connect to {self.shown}: {why}") from None
        except Exception as e:  # a malformed URL or connection option (libpq's own parser)
            raise StorageError(f"cannot connect to {self.shown}: {type(e).__name__}: {e}") from None
        try:
            timeout = max(1, int(self.busy_timeout * 1000))
            commit = "off" if self.synchronous == "OFF" else "on"
            settings = [f"lock_timeout = {timeout}", f"synchronous_commit = {commit}",
                        "idle_in_transaction_session_timeout = 0"]  # fmt: skip
            if self.readonly:
                settings.append("default_transaction_read_only = on")
            con.execute("; ".join(f"SET {s}" for s in settings))  # (one round trip)
        except self._errors as e:
            with suppress(Exception):
                con.close()
            raise translate(e, f"setting up the connection to {self.shown}") from None
        self._con = con

    def live(self) -> Any:
        """The connection, opened again first if it was lost."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        if self._con is None or self._con.closed or self._con.broken:
            if self._reading or self._writing:
                raise StorageError(f"the connection to {self.shown} was lost in the middle of a transaction")
            if self._con is not None:
                _log.warning("the connection to %s was lost; connecting again", self.shown)
                with suppress(Exception):
                    self._con.close()
            self._con = None
            self._connect()
        return self._con

    @property
    def raw(self) -> Any:
        """The ``psycopg`` connection as it is (``None`` once closed or lost)."""
        return self._con

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._con is not None:
            with suppress(Exception):
                self._con.close()
            self._con = None

    def notify(self, channel: str) -> None:
        """Wake the watchers of ``channel`` (after a commit; best effort: a lost
        wake-up is made up by their polling).  Sent in a transaction of its own that
        does not wait for the WAL flush, so that writers never queue behind one
        another's flush on the server's notification lock; and only while the
        channel is watched (:meth:`watched`), since the notification is a round
        trip and a transaction of its own for every write."""
        try:
            if self.watched(channel):
                self.live().execute(f"SET LOCAL synchronous_commit TO off; NOTIFY {channel}")
        except Exception as e:  # the driver's or ours (reconnecting failed): the write stands either way
            _log.debug("no wake-up sent on %s: %s", channel, e)

    def watched(self, channel: str) -> bool:
        """Whether a watcher's connection to this database listens on ``channel``,
        as seen at most :data:`WATCHERS_SEEN_FOR` seconds ago (and again at once
        after a watcher started in this process): a watcher that starts elsewhere
        may miss the wake-ups of that long, which its fallback poll makes up.  Where
        the server does not say (the look fails), the channel counts as watched."""
        now = time.monotonic()
        seen = self._watched
        if seen is not None and seen[0] == channel and seen[1] == _started[0] and now - seen[2] < WATCHERS_SEEN_FOR:
            return seen[3]
        started = _started[0]
        try:
            row = self.live().execute(_WATCHERS_SQL, (watcher_name(channel),)).fetchone()
            found = row is None or bool(row[0])
        except self._errors as e:
            _log.debug("cannot tell whether %s is watched (%s): waking it", channel, e)
            found = True
        self._watched = (channel, started, now, found)
        return found

    # ------------------------------------------------------------------ statements

    def run(self, sql: str, params: Sequence[Any] | None = None, what: str = "running a query") -> Any:
        """Run a statement; its cursor (binary results: ``bytea`` reads ``bytes``)."""
        con = self.live()
        try:
            return con.execute(sql, params, binary=True)
        except self._errors as e:
            raise self._failed(e, what) from None

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """The rows a query reads."""
        cur = self.run(sql, params, "reading")
        try:
            return list(cur.fetchall())
        except self._errors as e:
            raise self._failed(e, "reading") from None

    def row(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first row a query reads, or ``None``."""
        found = self.rows(sql, params)
        return found[0] if found else None

    def _failed(self, e: BaseException, what: str) -> BaseException:
        """What a failed statement raises: :class:`Retry` inside a unit of work the
        server aborted, else the error translated."""
        state = getattr(e, "sqlstate", None) or ""
        if self._writing and state in ("40001", "40P01"):
            return Retry()
        return translate(e, what)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def read(self) -> Iterator[None]:
        """One snapshot of the database for the reads inside (re-entrant; inside a
        unit of work, that unit's transaction)."""
        if self._reading or self._writing:
            self._reading += 1
            try:
                yield
            finally:
                self._reading -= 1
            return
        self.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None, "starting a read")
        self._reading += 1
        try:
            yield
        except BaseException:
            self._reading -= 1
            self._end("ROLLBACK")
            raise
        self._reading -= 1
        self._end("COMMIT")

    def _end(self, how: str) -> None:
        con = self._con
        if con is None or con.closed:
            return
        try:
            con.execute(how)
        except self._errors as e:
            if how == "COMMIT":
                raise translate(e, "ending a read") from None
            with suppress(Exception):
                con.close()

    def _may_write(self) -> None:
        if self.readonly:
            raise ReadOnlyError(f"{self.shown} was opened read-only")
        if self._reading:
            raise StorageError("a write inside reading() (an engine bug: reads and writes are apart)")

    @staticmethod
    def _pause(attempt: int) -> None:
        """A short random wait before running an aborted transaction again."""
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))

    def unit(self, work: Callable[[], T], what: str) -> T:
        """Run ``work`` in one write transaction, committed if it returns, rolled
        back if it raises; run again when the server aborts it (deadlock,
        serialization failure) or it raises :class:`Retry`, with a short random
        pause, up to :data:`RETRIES` times."""
        self._may_write()
        for attempt in range(RETRIES + 1):
            con = self.live()
            try:
                con.execute("BEGIN")
            except self._errors as e:
                raise translate(e, f"starting a transaction ({what})") from None
            self._writing = True
            try:
                out = work()
            except Retry:
                self._writing = False
                self._rollback()
                if attempt == RETRIES:
                    raise StorageError(f"the server kept aborting the transaction while {what}") from None
                self._pause(attempt)
                continue
            except BaseException:
                self._writing = False
                self._rollback()
                raise
            self._writing = False
            self._commit(con, what)
            return out
        raise AssertionError("unreachable")

    def write_one(self, sql: str, params: Sequence[Any], what: str) -> list[Any]:
        """A write that is one statement, run as its own transaction (autocommit: one
        round trip, atomic as any statement is); its rows.  Run again on a deadlock
        or serialization failure, as :meth:`unit` is; a connection lost before the
        answer came is :class:`~eventlog.OutcomeUnknownError` (the server may have
        committed it)."""
        self._may_write()
        for attempt in range(RETRIES + 1):
            con = self.live()
            try:
                return list(con.execute(sql, params, binary=True).fetchall())
            except self._errors as e:
                state = getattr(e, "sqlstate", None) or ""
                if state in ("40001", "40P01") and attempt < RETRIES:
                    self._pause(attempt)
                    continue
                if state.startswith("08") or not state or con.broken:
                    with suppress(Exception):
                        con.close()
                    raise OutcomeUnknownError(
                        f"the connection to {self.shown} failed while {what}; the write may or may not be stored"
                    ) from None
                raise translate(e, what) from None
        raise AssertionError("unreachable")

    def _rollback(self) -> None:
        con = self._con
        if con is None or con.closed:
            return
        try:
            con.execute("ROLLBACK")
        except self._errors:
            with suppress(Exception):
                con.close()

    def _commit(self, con: Any, what: str) -> None:
        try:
            con.execute("COMMIT")
        except self._errors as e:
            state = getattr(e, "sqlstate", None) or ""
            if state.startswith("08") or not state or con.broken:
                # The answer was lost with the connection: the server may have committed.
                with suppress(Exception):
                    con.close()
                raise OutcomeUnknownError(
                    f"the connection to {self.shown} failed while committing ({what}); "
                    "the write may or may not be stored"
                ) from None
            self._rollback()
            raise translate(e, f"committing ({what})") from None
