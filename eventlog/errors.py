"""The one exception hierarchy of eventlog.

Every error eventlog raises on purpose derives from :class:`EventLogError` and carries
the session and position involved (``session_id``, ``seq``) when there is one, so a
caller can log or handle it without parsing the message.  SQLite's own errors are
translated here and never reach the caller raw.
"""

from __future__ import annotations


class EventLogError(Exception):
    """Base class of every eventlog error.

    ``session_id`` and ``seq`` name the session and the sequence number (the position
    in that session's log) the error is about, or are ``None`` when it is about the
    store as a whole.
    """

    def __init__(self, message: str, *, session_id: str | None = None, seq: int | None = None) -> None:
        self.session_id = session_id
        self.seq = seq
        where = []
        if session_id is not None:
            where.append(f"session {session_id!r}")
        if seq is not None:
            where.append(f"seq {seq}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.message = message


class ConflictError(EventLogError):
    """The session's sequence number was not the ``expected_seq`` the caller gave:
    another writer got there first.  Nothing was written."""


class NotFoundError(EventLogError, KeyError):
    """The session does not exist (or the requested position is past its end)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class CorruptionError(EventLogError):
    """Stored bytes failed a check (checksum, hash, length, frame or CBOR structure),
    or SQLite found its file damaged (a page, the schema, a row that reads wrong).

    eventlog never returns data it could not verify; this names what was damaged,
    and the session (and position, when known) it was reading.
    """


class UnsupportedVersionError(EventLogError):
    """The file or a stored frame uses a format version this eventlog does not know
    (written by a newer release), or the file is not an eventlog store."""


class InvalidValueError(EventLogError, ValueError):
    """A value handed to eventlog cannot be stored faithfully: an unsupported type,
    a non-string dict key, nesting deeper than the limit, or a size over a limit.
    Nothing was written."""


class KeyMismatchError(EventLogError):
    """The ``chunk_key`` given to :func:`eventlog.open` does not match the store: the
    store was created with a key and none or another was given, or it was created
    without one and a key was given (a key cannot be added to an existing store).
    Nothing was read or written."""


class StoreClosedError(EventLogError):
    """The store was used after :meth:`eventlog.Store.close`."""


class StorageError(EventLogError):
    """SQLite failed for a reason that is not corruption (disk full, I/O error,
    still locked after the busy timeout).  The transaction was rolled back."""


class ReadOnlyError(StorageError):
    """A write (``save``, ``append``, ``delete``, ``snapshot``, ``compact``) on a store
    opened with ``readonly=True``, or on a file SQLite can only read.  Nothing was
    written."""
