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
    still busy with other writers after the busy timeout, the store file replaced
    under an open store).  The transaction was rolled back, except for
    :class:`OutcomeUnknownError`, a subclass raised when the commit itself failed."""


class OutcomeUnknownError(StorageError):
    """The write's commit failed at the disk (an I/O error or a full disk while the
    WAL was written or synced), so it may or may not be in the file: the same
    process may not see it now, and it may be there after a crash or a reopening.
    The store has reopened its connection and dropped its cached sessions.

    ``session_id`` is the session written, ``seq`` the sequence number the write
    would have had, and ``expected_seq`` the session's head before it (``seq`` and
    ``expected_seq`` are ``None`` for a write that is not one session's event, such
    as a batch of :meth:`~eventlog.Store.compact`).

    A plain retry of an ``append()`` may store its entries twice.  Retry with
    ``expected_seq=err.expected_seq`` instead: the write then happens exactly once,
    or raises :class:`ConflictError`, in which case the session moved past
    ``expected_seq``: if nothing else writes to it, ``store.seq(session_id) >=
    err.seq`` means the first attempt was committed.  ``save()`` is idempotent by
    content: saving the same data again leaves the session as wanted either way
    (one event more if the first attempt was committed), and the same
    ``expected_seq`` retry makes it exactly once.  ``delete()``, ``snapshot()`` and
    ``compact()`` can simply be called again.
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: str | None = None,
        seq: int | None = None,
        expected_seq: int | None = None,
    ) -> None:
        super().__init__(message, session_id=session_id, seq=seq)
        self.expected_seq = expected_seq


class ReadOnlyError(StorageError):
    """A write (``save``, ``append``, ``delete``, ``snapshot``, ``compact``) on a store
    opened with ``readonly=True``, or on a file SQLite can only read.  Nothing was
    written."""
