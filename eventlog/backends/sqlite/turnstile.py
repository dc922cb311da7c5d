"""Fair turns for the writers of one store, across threads and processes.

SQLite lets one writer in at a time, and a writer that finds the file locked waits
in SQLite's busy handler: it sleeps (1, 2, 5, ... up to 100 ms between tries) and
tries again.  A writer that writes back to back holds the lock nearly all the time,
so a waiter almost never tries at the one moment the lock is free, and fails with
"database is locked" when its ``busy_timeout`` runs out.

Every write transaction of the SQLite backend (a write, a snapshot, a batch of
compaction, a migration, the WAL checkpoint at the end of compaction) first takes
its turn here (through :class:`Turns`, one per connection),
then runs ``BEGIN IMMEDIATE`` ... ``COMMIT``, then gives the turn back.  The turn
is a lock on the store's ``-lock`` file, an empty file next to the store
(``PATH-lock``), with two bytes:

* byte 0, the turn: held exclusively from before ``BEGIN IMMEDIATE`` until after
  the transaction ends;
* byte 1, the queue: held shared by every writer waiting for the turn.

A writer that finds nobody queued and the turn free takes it at once (one writer
alone pays three ``fcntl`` calls a write).  Otherwise it queues, and tries for the
turn every few tenths of a millisecond until it gets it or ``busy_timeout`` runs
out (then :class:`TurnTimeout`).  A writer that arrives to find others queued
queues too, and waits a little longer before its first try, so that those who were
waiting go first: a writer that just gave the turn back cannot take it again ahead
of them.

The locks are Linux open-file-description locks (``F_OFD_SETLK``): they belong to
one open file, so two :class:`Turnstile` objects conflict even in one process
(threads, or an :class:`~eventlog.AsyncStore`), and they go away when the file is
closed or the process dies.  They are on a file of their own because closing any
descriptor of a file drops the process's classic POSIX locks on it, which SQLite
holds on the database and ``-shm`` files.  Where these locks are not available (not
Linux) or the ``-lock`` file cannot be made or opened for writing, writers go
without turns and rely on SQLite's busy handler alone, as before (logged once, at
WARNING when the file is the problem).  Programs other than eventlog that write to
the file do not take turns; SQLite's busy timeout still covers them.

The ``-lock`` file is an empty file that writers use to take turns; it holds no
data and eventlog never deletes it (deleted while stores have it open, later
writers would make a new one and two writers could hold "the" turn at once: no
data is at risk, SQLite still lets one writer in at a time, but the turns are no
longer fair).  With the store closed everywhere it can go with the store's other
files.  Writable opens make it on their first write; read-only opens never do.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("eventlog.sqlite")  # one name for the backend

#: Shortest and longest pause between two tries of a queued writer (seconds).
POLL_MIN, POLL_MAX = 0.0002, 0.001
#: The first pause of a writer that found others queued: longer than any pause of
#: theirs, so one of them goes first.
YIELD = 2 * POLL_MAX

_TURN, _QUEUE = 0, 1
_OFD = sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLK")
_logged: set[str] = set()
# F_RDLCK, F_WRLCK, F_UNLCK (the same numbers on every Linux architecture).
_RD, _WR, _UN = 0, 1, 2


def _flock(kind: int, start: int) -> bytes:
    """A ``struct flock`` for one byte at ``start`` (with room for the padding the
    C struct has after ``l_pid``)."""
    return struct.pack("@hhqqi", kind, os.SEEK_SET, start, 1, 0) + bytes(8)


_TAKE_TURN = _flock(_WR, _TURN)
_GIVE_TURN = _flock(_UN, _TURN)
_JOIN_QUEUE = _flock(_RD, _QUEUE)
_LEAVE_QUEUE = _flock(_UN, _QUEUE)
_ASK_QUEUE = _flock(_WR, _QUEUE)
_ASK_TURN = _flock(_WR, _TURN)
_FREE = struct.pack("@h", _UN)  # l_type of what F_OFD_GETLK returns when nothing is in the way
_BUSY = (errno.EAGAIN, errno.EACCES)


class TurnTimeout(Exception):
    """The turn did not come within the timeout."""


def _log_once(key: str, level: int, message: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.log(level, message, *args)


class Turnstile:
    """The turns of one store file (see the module documentation).  Not for use by
    two threads at once: each connection (each :class:`Turns`) has its own."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.held = False

    @classmethod
    def open(cls, db_path: str) -> Turnstile | None:
        """The turnstile of the store at ``db_path`` (its ``-lock`` file made if
        missing, with the store file's permissions and, for root, owner), or
        ``None`` (logged once) where writers cannot take turns."""
        if not _OFD:
            _log_once("platform", logging.DEBUG, "no open-file-description locks here: writers do not take turns")
            return None
        path = db_path + "-lock"
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                made = True
            except FileExistsError:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                made = False
        except OSError as e:
            _log_once(
                f"open {path}", logging.WARNING,
                "cannot open %s (%s): writers of this store do not take turns, a busy writer may starve others",
                path, e.strerror,
            )  # fmt: skip
            return None
        turnstile = cls(fd, path)
        if made:
            turnstile._like(db_path)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _ASK_QUEUE)
        except OSError as e:  # a file system without these locks
            turnstile.close()
            _log_once(
                f"lock {path}", logging.WARNING,
                "cannot lock %s (%s): writers of this store do not take turns", path, e.strerror,
            )  # fmt: skip
            return None
        return turnstile

    def _like(self, db_path: str) -> None:
        """Give a new lock file the store file's permissions (and owner, when run as
        root), as SQLite does for the ``-wal`` and ``-shm`` files, so that whoever
        may write the store may take turns."""
        try:
            st = os.stat(db_path)
            os.fchmod(self.fd, (st.st_mode & 0o666) | 0o600)
            if os.geteuid() == 0:
                os.fchown(self.fd, st.st_uid, st.st_gid)
        except OSError:
            pass  # best effort: a lock file this process can use is enough for it

    def acquire(self, timeout: float) -> None:
        """Take the turn, waiting up to ``timeout`` seconds (else :class:`TurnTimeout`)."""
        fd = self.fd
        # Whether anyone holds a lock on the queue byte (our own locks never conflict).
        queued = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _ASK_QUEUE)[:2] != _FREE
        if not queued and self._try():
            return
        deadline = time.monotonic() + timeout
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _JOIN_QUEUE)
        try:
            if queued:
                self._let_others_first(deadline)
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TurnTimeout
                time.sleep(min(random.uniform(POLL_MIN, POLL_MAX), deadline - now))
                if self._try():
                    return
        finally:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _LEAVE_QUEUE)

    def _let_others_first(self, deadline: float) -> None:
        """Found others queued: stay out of the way until one of them has the turn
        (or :data:`YIELD` has passed: they may have gone, or been quicker than a look)."""
        end = min(time.monotonic() + YIELD, deadline)
        while True:
            now = time.monotonic()
            if now >= end:
                return
            time.sleep(min(POLL_MIN, end - now))
            if fcntl.fcntl(self.fd, fcntl.F_OFD_GETLK, _ASK_TURN)[:2] != _FREE:
                return

    def _try(self) -> bool:
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _TAKE_TURN)
        except OSError as e:
            if e.errno in _BUSY:
                return False
            raise
        self.held = True
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _GIVE_TURN)

    def close(self) -> None:
        """Close the lock file (which gives back the turn and leaves the queue)."""
        if self.fd >= 0:
            fd, self.fd, self.held = self.fd, -1, False
            os.close(fd)


class Turns:
    """One connection's turns at its store's turnstile: the turnstile is opened on
    first use (a read-only open or a store only read never makes the ``-lock``
    file), and given up for good, with a warning, when locking it fails (writers
    then rely on SQLite's busy handler alone)."""

    def __init__(self, real_path: str, enabled: bool, timeout: float) -> None:
        self.real_path = real_path
        self.enabled = enabled  # False once turns turned out impossible
        self.timeout = timeout
        self.turnstile: Turnstile | None = None

    def take(self) -> Turnstile | None:
        """Take this writer's turn, waiting up to the timeout for it (else
        :class:`TurnTimeout`); the turnstile to give it back to, or ``None`` (no
        turns here, or the turn is held already, further up)."""
        if self.turnstile is None and self.enabled:
            self.turnstile = Turnstile.open(self.real_path)
            self.enabled = self.turnstile is not None
        turnstile = self.turnstile
        if turnstile is None or turnstile.held:
            return None
        try:
            turnstile.acquire(self.timeout)
        except OSError as e:  # the lock file stopped working: go on without turns
            self._give_up(e)
            return None
        return turnstile

    def give(self, turnstile: Turnstile) -> None:
        try:
            turnstile.release()
        except OSError as e:
            self._give_up(e)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold this writer's turn."""
        turnstile = self.take()
        try:
            yield
        finally:
            if turnstile is not None:
                self.give(turnstile)

    def _give_up(self, e: OSError) -> None:
        logger.warning(
            "locking %s failed (%s): writers of this store no longer take turns", self.real_path + "-lock", e.strerror
        )
        self.close()
        self.enabled = False

    def close(self) -> None:
        if self.turnstile is not None:
            self.turnstile.close()
            self.turnstile = None
