"""SQLite's errors, translated into eventlog's (:mod:`eventlog.errors`): the one
place where they are."""

from __future__ import annotations

import sqlite3

from ...errors import CorruptionError, EventLogError, ReadOnlyError, StorageError, UnsupportedVersionError
from .files import not_sqlite

#: What a call into ``sqlite3`` may raise.  A damaged file can make SQLite's own error
#: message invalid UTF-8 (a flipped byte in the schema text it quotes), and then
#: ``sqlite3`` raises ``UnicodeDecodeError`` instead of its own error.
ERRORS = (sqlite3.Error, UnicodeDecodeError)


def translate(e: sqlite3.Error | UnicodeDecodeError, what: str) -> EventLogError:
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


def opening_error(e: sqlite3.Error | UnicodeDecodeError, path: str) -> EventLogError:
    """An error of SQLite's while opening ``path``: :class:`UnsupportedVersionError`
    for a file that is not an SQLite database at all, else as :func:`translate`."""
    if getattr(e, "sqlite_errorname", "") == "SQLITE_NOTADB" and not_sqlite(path, any_size=True):
        return UnsupportedVersionError(f"{path!r} is not an eventlog store (not an SQLite database file)")
    return translate(e, f"opening {path!r}")


def may_have_committed(e: sqlite3.Error | UnicodeDecodeError) -> bool:
    """Whether a failed ``COMMIT`` may have left the transaction in the file: an I/O
    error or a full disk while its frames were written to the WAL or synced (the
    commit frame may be on disk, and comes back after a crash or a reopening)."""
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith("SQLITE_IOERR") or name == "SQLITE_FULL"
