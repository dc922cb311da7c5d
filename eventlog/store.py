"""The public face of eventlog: :func:`open` and :class:`Store`.

A store talks to its storage only through the protocol of :mod:`eventlog.backend`
(picked for the path by :func:`eventlog.backends.open_backend`).  This module holds
the public API: argument checks, the store's lock, opening and closing; the work
is done by the session cache (:mod:`eventlog.cache`: folded states, what a load
hands out), the writer (:mod:`eventlog.writer`: every event appended, by
``save()``, ``append()`` and ``delete()``), the log (:mod:`eventlog.log`: frames,
events, folding) and the snapshot builder (:mod:`eventlog.snapshots`).

A write reads the session's head (or trusts its cache), encodes the event outside
any transaction, and hands it to the backend as one unit of work conditional on
that head: when another writer got there first, a ``save()`` or ``append()``
without ``expected_seq`` catches up and encodes again; with ``expected_seq``, the
caller gets the :class:`~eventlog.ConflictError`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Unpack

from . import backends, chunks, compaction
from . import verify as verification
from .backend import Head, Listing, Watcher
from .cache import SessionCache, check_head
from .codec import ENTRIES, DecodeError, Ref
from .compaction import CompactReport
from .errors import (
    CorruptionError,
    EventLogError,
    InvalidValueError,
    NotFoundError,
    ReadOnlyError,
    StoreClosedError,
)
from .fold import Event, State
from .log import Log
from .options import MIN_CELL_BYTES as MIN_CELL_BYTES
from .options import Options, OptionValues, resolve, shown
from .progress import Progress
from .slices import entries_tail, list_at, list_slice, text_session
from .snapshots import SnapshotBuilder, SnapshotPolicy
from .verify import VerifyReport
from .watching import PAGE, FeedItem, FeedState, Follow, WatchState, check_cursor, check_timeout, ended_by
from .writer import MAX_TRIES as MAX_TRIES
from .writer import Writer, naming

#: Longest session id accepted, in UTF-8 bytes.
MAX_SESSION_ID_BYTES = 4096

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session's bookkeeping: ``seq`` (its head), when it was created and last
    written (Unix ms), ``history_start`` (the first position :meth:`Store.fold` can
    reach back to, 0 unless compacted with ``retain``), ``stored_bytes`` (its
    event and snapshot rows; chunks are shared and not counted), and ``entries``:
    the number of entries at its head (the length of its ``entries`` list, 0 when
    it has none), recorded with every write; ``None`` for a session last written by
    an eventlog before schema version 4, until its next write (fold it to count)."""

    session_id: str
    parent_id: str | None
    seq: int
    created_ms: int
    updated_ms: int
    history_start: int
    stored_bytes: int
    entries: int | None = None


def _info(found: Listing) -> SessionInfo:
    h = found.head
    return SessionInfo(h.name, h.parent, h.seq, h.created_ms, h.updated_ms, h.base, found.stored_bytes, found.entries)


def _check_id(session_id: Any, what: str = "session id") -> str:
    if type(session_id) is not str or not session_id:
        raise InvalidValueError(f"{what} must be a non-empty str, not {shown(session_id, 80)}")
    try:
        n = len(session_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError(f"{what} is not valid Unicode text") from None
    if n > MAX_SESSION_ID_BYTES:
        raise InvalidValueError(f"{what} of {n} bytes is over the limit of {MAX_SESSION_ID_BYTES}")
    return session_id


def check_path(path: Any, what: str = "path") -> str:
    """``path`` (a ``str`` or an ``os.PathLike`` giving one) as a ``str``; else
    :class:`InvalidValueError` naming ``what``.  Bytes paths are refused: the store's
    messages and SQLite's URIs are text (``os.fsdecode`` turns one into a ``str``)."""
    if isinstance(path, os.PathLike):
        try:
            path = os.fspath(path)
        except TypeError as e:  # its __fspath__ gave neither str nor bytes
            raise InvalidValueError(f"{what}: {e}") from None
    if isinstance(path, str):
        return path if type(path) is str else str.__str__(path)
    if isinstance(path, bytes):
        raise InvalidValueError(f"{what} must be a str or os.PathLike, not bytes (decode it with os.fsdecode())")
    raise InvalidValueError(f"{what} must be a str or os.PathLike, not {type(path).__name__}")


def _check_expected(expected_seq: Any, session_id: str) -> None:
    if expected_seq is not None and (type(expected_seq) is not int or expected_seq < 0):
        raise InvalidValueError("expected_seq must be a non-negative int", session_id=session_id)


def _check_progress(progress: Any) -> None:
    if progress is not None and not callable(progress):
        raise InvalidValueError(f"progress must be a callable or None, not {type(progress).__name__}")


def _check_field(field: Any, session_id: str) -> tuple[str, ...]:
    """The path of keys ``field`` names (a key, or a non-empty sequence of keys)."""
    path = (field,) if type(field) is str else tuple(field) if isinstance(field, (list, tuple)) else ()
    if not path or not all(type(k) is str for k in path):
        message = f"field must be a str or a non-empty list or tuple of str, not {shown(field, 60)}"
        raise InvalidValueError(message, session_id=session_id)
    return path


def _check_ids(session_id: Any, parent_id: Any) -> None:
    _check_id(session_id)
    if parent_id is not None:
        _check_id(parent_id, "parent id")
        if parent_id == session_id:
            raise InvalidValueError("a session cannot be its own parent", session_id=session_id)


def check_ids(session_id: Any, parent_id: Any) -> None:
    """:class:`InvalidValueError` unless ``session_id`` is a session id and
    ``parent_id`` ``None`` or another one."""
    _check_ids(session_id, parent_id)


class Store:
    """A durable, event-sourced store of agent sessions in one SQLite file.

    Use :func:`eventlog.open` to make one.  A store is a context manager; it may be
    shared between threads (calls are serialised) and several processes may open the
    same file (writes take turns, see :mod:`eventlog.turnstile`; see ``expected_seq``).
    """

    def __init__(
        self, path: str | os.PathLike[str], options: Options | None = None, **overrides: Unpack[OptionValues]
    ) -> None:
        """Open the store at ``path`` with ``options`` (an :class:`~eventlog.Options`,
        default: every default) and ``overrides`` (options as keywords); see
        :func:`eventlog.open`.  Every option is checked before the file is touched."""
        opts = resolve(options, overrides)
        named = isinstance(path, str)
        path = check_path(path)
        #: The options the store was opened with.
        self.options = opts
        self.max_cell_bytes = opts.max_cell_bytes
        self._backend = backends.open_backend(
            path,
            max_cell_bytes=opts.max_cell_bytes,
            synchronous=opts.synchronous,
            busy_timeout=opts.busy_timeout,
            new_meta=chunks.addressing(opts.chunk_key),
            readonly=opts.readonly,
            memory_store=named,
        )
        self.readonly = opts.readonly
        try:
            chunks.match_key(self._backend.meta, opts.chunk_key, path)
        except EventLogError:
            self._backend.close()
            raise
        self._log = Log(
            self._backend,
            max_cell_bytes=opts.max_cell_bytes,
            chunk_bytes=opts.chunk_size,
            large_value_bytes=opts.large_value_bytes,
            max_body_bytes=opts.max_body_bytes,
            chunk_key=opts.chunk_key,  # chunk addresses keyed with the store's key, if it has one
        )
        self._cache = SessionCache(opts.cache_sessions, self._backend, self._log)
        policy = SnapshotPolicy(opts.snapshot_every, opts.snapshot_bytes)
        self._writer = Writer(self._backend, self._log, self._cache, SnapshotBuilder(self._log), policy)
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the file.  Idempotent; later calls raise :class:`StoreClosedError`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._cache.clear()
                self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    def _writable(self, what: str) -> None:
        self._open()
        if self.readonly:
            raise ReadOnlyError(f"{what}() on a store opened with readonly=True")

    # ------------------------------------------------------------------ writing

    def save(
        self,
        session_id: str,
        data: dict[str, Any],
        *,
        parent_id: str | None = None,
        expected_seq: int | None = None,
    ) -> int:
        """Make the stored session equal to ``data``; return its new sequence number.

        Appends one event (in one transaction) holding only the operations that turn
        the stored session into ``data``: entries appended, changed in place, removed
        or reordered, and top-level fields set, removed or reordered.  ``data`` is
        compared with the stored state in memory; only what changed is encoded.  Each
        call appends exactly one event, even when nothing changed, so the k-th save of
        a new session has sequence number k.

        ``parent_id`` records the session this one was spawned from (taken when the
        session is created).  With ``expected_seq`` the save happens only if the
        session's current sequence number is that (0: the session must not exist),
        else :class:`ConflictError`; without it the save replaces whatever is stored.
        Raises :class:`InvalidValueError` (nothing written) for values that cannot be
        stored exactly, and :class:`OutcomeUnknownError` when the commit fails at the
        disk (the write may be stored or not: see its retry).
        """
        self._writable("save")
        _check_ids(session_id, parent_id)
        if type(data) is not dict:
            raise InvalidValueError(f"session data must be a dict, not {type(data).__name__}", session_id=session_id)
        for k, v in data.items():
            if type(k) is not str:
                raise InvalidValueError(f"key {shown(k, 40)} is a {type(k).__name__}, not a str", session_id=session_id)
            if v is ENTRIES:
                raise InvalidValueError(f"field {k!r:.40} holds eventlog.ENTRIES", session_id=session_id)
        _check_expected(expected_seq, session_id)
        with self._lock:
            self._open()
            return self._writer.save(session_id, parent_id, expected_seq, data)

    def append(
        self,
        session_id: str,
        entries: list[Any],
        *,
        expected_seq: int | None = None,
        parent_id: str | None = None,
    ) -> int:
        """Append ``entries``, a ``list`` of entries (each stored as given), as one
        event; return the new sequence number.  The session's ``leafId`` moves to the
        last entry's ``id`` (when it is a dict with an ``id``).  A new session starts
        as ``{"entries": [...], "leafId": ...}``.  Raises :class:`ConflictError` when
        ``expected_seq`` is given and is not the current sequence number (0: the
        session must not exist), and :class:`OutcomeUnknownError` when the commit
        fails at the disk (the entries may be stored or not: retry with
        ``expected_seq=err.expected_seq``, never plainly).

        ``entries`` must be a ``list`` (``[]`` appends an event with no entries):
        anything else, a dict, a str, a tuple, a generator, is an
        :class:`InvalidValueError` and nothing is written (a dict or a str would
        otherwise be taken apart into its keys or its letters)."""
        self._writable("append")
        _check_ids(session_id, parent_id)
        if type(entries) is not list:
            raise InvalidValueError(
                f"entries must be a list of entries, not {type(entries).__name__}", session_id=session_id
            )
        _check_expected(expected_seq, session_id)
        with self._lock:
            self._open()
            return self._writer.append(session_id, parent_id, expected_seq, list(entries))

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, session_id: str) -> int:
        """Build a snapshot of the session's head now; returns its sequence number."""
        with self._lock:
            self._writable("snapshot")
            row = self._lookup(session_id)
            self._writer.snapshot(session_id, row.sid, row.seq)
            return row.seq

    # ------------------------------------------------------------------ reading

    def _lookup(self, name: str) -> Head:
        _check_id(name)
        row = self._backend.head(name)
        if row is None or row.seq == 0:
            raise NotFoundError("no such session", session_id=name)
        return row

    def load(self, session_id: str) -> dict[str, Any] | None:
        """The session as last saved (equal, key order included), or ``None``.

        The result is the caller's own: changing it never changes the store."""
        with self._lock:
            self._open()
            _check_id(session_id)
            with self._backend.reading(), naming(session_id):
                row = self._backend.head(session_id)
                if row is None or row.seq == 0:
                    return None
                return self._cache.session(row)

    def items(
        self,
        session_id: str,
        start: int | None = None,
        stop: int | None = None,
        *,
        field: str | Sequence[str] = "entries",
    ) -> list[Any]:
        """``list[start:stop]`` (Python's slice rules, negative indexes included) of
        the list at ``field`` of the session as last saved: a key of the session
        dict (default ``"entries"``) or a path of keys through nested dicts
        (``("state", "messages")``).  Equal to ``load(session_id)[field][start:stop]``,
        but it decodes only what the slice needs: the newest snapshot's fields (of
        ``entries``, or of a list at a path that the snapshot keeps in segments,
        only the segments holding the wanted items), the events
        since, and only the large values inside the wanted items.  A slice of
        ``entries`` counted from the end (a negative ``start``) comes from the
        newest events alone when they only appended entries (see
        :func:`eventlog.slices.entries_tail`).  The result is the caller's own.

        Raises :class:`NotFoundError` for an unknown session or when the session has
        no value at ``field``, :class:`InvalidValueError` when that value is not a
        list or for bad arguments."""
        _check_id(session_id)
        path = _check_field(field, session_id)
        for name, index in (("start", start), ("stop", stop)):
            if index is not None and type(index) is not int:
                raise InvalidValueError(f"{name} must be an int or None, not {shown(index, 40)}", session_id=session_id)
        with self._lock:
            self._open()
            with self._backend.reading(), naming(session_id):
                row = self._lookup(session_id)

                def pick(state: State) -> list[Any]:
                    return list_at(state, path, session_id)[start:stop]

                cached = self._cache.part_at_head(row, pick)
                if cached is not None:
                    return cached
                check_head(self._backend, row)
                if path == ("entries",) and start is not None and start < 0:  # a tail: from the newest events?
                    since = max(row.base, min(row.snap_seq, row.seq))
                    count = self._backend.entries(row.sid)
                    got = entries_tail(self._log, session_id, row.sid, row.key, row.seq, since, count, start, stop)
                    if got is not None:
                        return got
                return list_slice(self._log, session_id, row.sid, row.key, row.seq, row.base, path, start, stop)

    def tail(self, session_id: str, n: int, *, field: str | Sequence[str] = "entries") -> list[Any]:
        """The last ``n`` items (all when there are fewer) of the list at ``field``:
        :meth:`items` of ``-n`` on (``[]`` for ``n == 0``).  ``n`` must be an int, 0
        or more (:class:`InvalidValueError`)."""
        if type(n) is not int or n < 0:
            raise InvalidValueError(f"n must be a non-negative int, not {shown(n, 40)}", session_id=session_id)
        return self.items(session_id, -n if n else 0, None if n else 0, field=field)

    def seq(self, session_id: str) -> int:
        """The session's current sequence number (0 when it does not exist)."""
        return self._head_of(session_id)[0]

    def _head_of(self, session_id: str) -> tuple[int, int]:
        """``(seq, incarnation)`` of a session (``(0, 0)`` when it does not exist):
        the incarnation is the backend's id of it, never given again in the store,
        so that a caller keeping what it read can tell a session deleted and made
        again from the one it read (for :mod:`eventlog.langgraph`)."""
        with self._lock:
            self._open()
            _check_id(session_id)
            row = self._backend.head(session_id)
            return (0, 0) if row is None else (row.seq, row.sid)

    def fold(self, session_id: str, at: int | None = None) -> dict[str, Any]:
        """The session as it was right after event ``at`` (default: now).

        ``at=0`` gives ``{}`` (before the first event).  Raises
        :class:`NotFoundError` for an unknown session or ``at`` past the head, and
        :class:`InvalidValueError` for an ``at`` that is not an int, 0 or more."""
        _check_id(session_id)  # (before naming it in an error)
        if at is not None and (type(at) is not int or at < 0):
            message = f"at must be a non-negative int or None, not {shown(at, 40)}"
            raise InvalidValueError(message, session_id=session_id)
        with self._lock:
            self._open()
            with self._backend.reading(), naming(session_id):
                row = self._lookup(session_id)
                sid, seq = row.sid, row.seq
                if at is None:
                    at = seq
                if type(at) is not int or not 0 <= at <= seq:
                    raise NotFoundError(f"no position {shown(at, 40)}; the session is at {seq}", session_id=session_id)
                if 0 < at < row.base:
                    raise NotFoundError(f"history before {row.base} was compacted away", session_id=session_id, seq=at)
                if at == seq:
                    cached = self._cache.session_at_head(row)
                    if cached is not None:
                        return cached
                if at == 0:
                    return {}
                check_head(self._backend, row)
                return self._log.fold(session_id, sid, row.key, at, rehydrate=True, floor=row.base).session()

    def events(self, session_id: str, since: int = 0) -> Iterator[Event]:
        """The session's events after sequence number ``since``, oldest first, with
        large values rehydrated.  Raises :class:`NotFoundError` at once for an
        unknown session, for ``since`` past the head, and for ``since`` below the
        start of a history shortened by :meth:`compact`; reads lazily, a page of
        events per read transaction (and raises :class:`NotFoundError` if meanwhile
        the session is deleted or its history is shortened past the reader)."""
        return self._events(session_id, since, rehydrate=True)

    def _events(self, session_id: str, since: int, *, rehydrate: bool) -> Iterator[Event]:
        _check_id(session_id)  # (before naming it in an error)
        if type(since) is not int or since < 0:
            raise InvalidValueError("since must be a non-negative int", session_id=session_id)
        with self._lock:
            self._open()
            row = self._lookup(session_id)
            self._check_since(row, since)
            if since > row.seq:
                raise NotFoundError(f"no position {since}; the session is at {row.seq}", session_id=session_id)
        return self._iter_events(session_id, row.sid, since, rehydrate=rehydrate)

    def _text_session(self, session_id: str, marker: str) -> tuple[int, dict[str, Any], list[Ref]]:
        """For the debugging tools' searches (``eventlog grep``): ``(seq, session,
        refs)`` at the head, its large text read and its large bytes and base64
        values (images) not (see :func:`eventlog.slices.text_session`; ``marker``
        is a ``str.format`` pattern of one field): not the stored session, so
        private.  Raises as :meth:`fold`."""
        _check_id(session_id)
        with self._lock:
            self._open()
            with self._backend.reading(), naming(session_id):
                row = self._lookup(session_id)
                if row.seq == 0:
                    return 0, {}, []
                check_head(self._backend, row)
                data, refs = text_session(self._log, session_id, row.sid, row.key, row.seq, row.base, marker)
                return row.seq, data, refs

    def _read_large(self, session_id: str, ref: Ref) -> str | bytes:
        """The large value ``ref`` of session ``session_id`` stands for (from
        :meth:`_text_session`), read and verified; :class:`CorruptionError` when
        it cannot be (its chunks damaged, or freed since by a compaction)."""
        with self._lock:
            self._open()
            with self._backend.reading():
                try:
                    return self._log.rehydrate(ref)
                except DecodeError as e:
                    raise CorruptionError(f"a large value cannot be read: {e}", session_id=session_id) from None

    def _fold_unread(self, session_id: str, at: int) -> dict[str, Any]:
        """:meth:`fold` at ``at`` (0 < ``at`` <= the head, not below the history's
        start) with large values left as :class:`~eventlog.codec.Ref` (as
        :meth:`_events_unread` gives them): for the debugging tools, never cached."""
        _check_id(session_id)
        with self._lock:
            self._open()
            with self._backend.reading(), naming(session_id):
                row = self._lookup(session_id)
                if not 0 < at <= row.seq or at < row.base:
                    raise NotFoundError(f"no position {at} to read", session_id=session_id, seq=at)
                check_head(self._backend, row)
                return self._log.fold(session_id, row.sid, row.key, at, rehydrate=False, floor=row.base).session()

    def _events_unread(self, session_id: str, since: int = 0) -> Iterator[Event]:
        """:meth:`events` with large values left as :class:`~eventlog.codec.Ref`
        (equal for equal values: enough to follow items, as the debugging tools
        do, without reading images)."""
        return self._events(session_id, since, rehydrate=False)

    @staticmethod
    def _check_since(row: Head, since: int) -> None:
        if since < row.base:
            raise NotFoundError(
                f"events up to {row.base} were compacted away; read from since={row.base}",
                session_id=row.name,
                seq=since + 1,
            )

    def _iter_events(self, name: str, sid: int, since: int, *, rehydrate: bool = True) -> Iterator[Event]:
        after = since
        while True:
            with self._lock:
                self._open()
                with self._backend.reading(), naming(name):
                    row = self._backend.head(name)
                    if row is None or row.sid != sid:
                        raise NotFoundError("the session was deleted while its events were read", session_id=name)
                    self._check_since(row, after)
                    upto = min(after + 256, row.seq)
                    page = list(self._log.events(name, sid, row.key, after, upto, rehydrate=rehydrate))
            yield from page
            if upto >= row.seq:
                return
            after = upto

    # ------------------------------------------------------------------ live subscriptions

    def watch(self, session_id: str, since: int = 0, *, timeout: float | None = None) -> Iterator[Event]:
        """Every event of the session after sequence number ``since``, as it
        commits, from any handle or process: first those stored already, then each
        new one soon after its commit (SQLite: within ~20 ms, by the file's change
        counter; PostgreSQL: at its notification; at worst at the next poll, every
        second).  A session that does not exist yet is waited for.  The iteration
        follows the incarnation it found: it ends after that session's tombstone
        event (a ``delete()``, given as its last event), or once ``timeout`` seconds
        pass without a new event (``None``: it never times out).  Large values are
        rehydrated.  Raises :class:`NotFoundError` when the events after ``since``
        were compacted away, or the session was deleted and compacted while it was
        watched.  The watch holds a connection of its own until the iteration ends
        or the iterator is closed."""
        _check_id(session_id)
        if type(since) is not int or since < 0:
            raise InvalidValueError("since must be a non-negative int", session_id=session_id)
        timeout = check_timeout(timeout)
        state = WatchState(session_id, since)
        return iter(Follow(lambda: self._watch_step(state), self._watcher(), timeout))

    def _watcher(self) -> Watcher:
        """A new watcher of the store's commits (see :mod:`eventlog.watching`)."""
        with self._lock:
            self._open()
            return self._backend.watcher()

    def _watch_step(self, w: WatchState) -> list[Event] | None:
        """The events of the watched session committed since the last step (at most
        a page), ``None`` once it ended."""
        if w.ended:
            return None
        with self._lock:
            self._open()
            with self._backend.reading(), naming(w.name):
                if w.sid is None:
                    row = self._backend.head(w.name)
                    if row is None or row.seq == 0:
                        return []
                    self._check_since(row, w.after)
                    w.sid, w.key = row.sid, row.key
                last = self._backend.last_seq(w.sid) or 0
                if last <= w.after:
                    row = self._backend.head(w.name)
                    if (row is None or row.sid != w.sid) and not last:
                        raise NotFoundError("the session was deleted and compacted while it was watched",
                                            session_id=w.name)  # fmt: skip
                    return []
                try:
                    page = list(self._log.events(w.name, w.sid, w.key, w.after, min(last, w.after + PAGE), True))
                except CorruptionError:
                    row = self._backend.head(w.name)
                    if row is not None and row.sid == w.sid and w.after < row.base:
                        raise NotFoundError(f"events up to {row.base} were compacted away while they were watched",
                                            session_id=w.name, seq=w.after + 1) from None  # fmt: skip
                    raise
        if page:
            w.after = page[-1].seq
            w.ended = ended_by(page[-1])
        return page

    def feed(
        self, after: str | None = None, *, follow: bool = False, timeout: float | None = None
    ) -> Iterator[FeedItem]:
        """Every event of every session (deleted ones too, until compaction removes
        them), each as a :class:`FeedItem` of the event and the ``cursor`` after it,
        from the start or from ``after`` (a cursor this store gave: resume with the
        last one seen).  The order never skips an event, even where writers on a
        server commit out of order (PostgreSQL: an event is given once every
        transaction that could come before it has ended), and within a session it is
        the order of ``seq``.  Without ``follow`` the iteration ends at the events
        committed so far; with it, it waits for new ones, as :meth:`watch` does, until
        ``timeout`` seconds pass without one (``None``: forever).  Large values are
        rehydrated.  A cursor that is not one this store gives raises
        :class:`InvalidValueError`."""
        cursor = check_cursor(after)
        timeout = check_timeout(timeout)
        with self._lock:
            self._open()
            self._backend.feed(cursor, 1)  # (the cursor checked now, not at the first step)
        state = FeedState(cursor)
        if not follow:
            return self._feed_once(state)
        return iter(Follow(lambda: self._feed_step(state), self._watcher(), timeout))

    def _feed_once(self, state: FeedState) -> Iterator[FeedItem]:
        while True:
            items = self._feed_step(state)
            if not items:
                return
            yield from items

    def _feed_step(self, f: FeedState) -> list[FeedItem]:
        """The events after the feed's cursor (at most a page)."""
        with self._lock:
            self._open()
            with self._backend.reading():
                out = []
                for row in self._backend.feed(f.cursor, PAGE):
                    e = row.event
                    with naming(row.name):
                        event = self._log.event(row.name, row.sid, row.key, e.seq, e.pos, e.ts_ms, e.frame, True)
                    out.append(FeedItem(row.cursor, event))
        if out:
            f.cursor = out[-1].cursor
        return out

    def sessions(self) -> list[str]:
        """Ids of every stored session, oldest first."""
        with self._lock:
            self._open()
            return self._backend.names()

    def parent(self, session_id: str) -> str | None:
        """The ``parent_id`` recorded when the session was created."""
        _check_id(session_id)
        with self._lock:
            self._open()
            row = self._backend.head(session_id)
            return None if row is None else row.parent

    def info(self, session_id: str) -> SessionInfo:
        """What the store knows about a session without folding it; raises
        :class:`NotFoundError` for an unknown or deleted one."""
        _check_id(session_id)
        with self._lock:
            self._open()
            found = self._backend.info(session_id)
        if found is None:
            raise NotFoundError("no such session", session_id=session_id)
        return _info(found)

    def session_infos(self) -> list[SessionInfo]:
        """:meth:`info` of every stored session, oldest first (the order of
        :meth:`sessions`), read in one query: nothing is folded, so this is fast
        however large the sessions are."""
        with self._lock:
            self._open()
            return [_info(found) for found in self._backend.listing()]

    # ------------------------------------------------------------------ trees

    def children(self, session_id: str) -> list[str]:
        """Ids of the live sessions created with ``parent_id=session_id``, oldest
        first.  Parent links are by id: they hold whether or not the parent exists."""
        _check_id(session_id)
        with self._lock:
            self._open()
            return [r.name for r in self._backend.children([session_id]) if r.seq > 0]

    def tree(self, session_id: str) -> list[str]:
        """Ids of every live descendant of ``session_id`` (its children, their
        children, and so on, to any depth), level by level, oldest first within a
        level.  The session itself is not included."""
        _check_id(session_id)
        with self._lock:
            self._open()
            with self._backend.reading():
                return [r.name for r in self._descendants(session_id) if r.seq > 0]

    def _descendants(self, name: str) -> list[Head]:
        """Live descendants, breadth first; each session once even if the parent
        links loop (a session created naming a later one as its parent)."""
        out: list[Head] = []
        seen: set[str] = {name}
        level = [name]
        while level:
            found = [r for r in self._backend.children(level) if r.name not in seen]
            seen.update(r.name for r in found)
            out += found
            level = [r.name for r in found]
        return out

    def delete(self, session_id: str, *, tree: bool = True) -> list[str]:
        """Delete the session and every live descendant (see :meth:`tree`) in one
        transaction; return the ids deleted, the session's first (``[]`` when there
        was nothing to delete).

        Each deleted session's log ends with a tombstone event.  From then on
        :meth:`load` returns ``None`` for each of them, :meth:`events` and
        :meth:`fold` raise :class:`NotFoundError`, and saving the same id starts a
        new, empty session.  Their bytes stay in the file until :meth:`compact`,
        which removes them (chunks no live session uses included).

        With ``tree=False`` only the session itself is deleted (``[session_id]``, or
        ``[]``): its children stay, and so do their parent links.  Links are by id,
        so they then name whatever session has that id: none until the id is written
        again, and from then on the new session, whose children they are (what
        :meth:`children`, :meth:`tree` and a later ``delete()`` of the id see).
        This is how a conversation is cleared and started over while the sessions
        it spawned live on (:meth:`eventlog.agents.EventlogSession.clear_session`).
        """
        _check_id(session_id)
        if type(tree) is not bool:
            raise InvalidValueError("tree must be True or False", session_id=session_id)
        with self._lock:
            self._writable("delete")

            def find() -> list[Head]:
                root = self._backend.head(session_id)
                rows = [root] if root is not None else []
                return rows + self._descendants(session_id) if tree else rows

            return self._writer.delete(session_id, find, tree)

    # ------------------------------------------------------------------ copying

    def copy_to(self, other: Store, sessions: Sequence[str] | None = None, *, tree: bool = True) -> list[str]:
        """Copy sessions of this store into ``other``, each with its whole history;
        return the ids copied, in this store's creation order.

        ``sessions``: the ids to copy (default ``None``: every live session); with
        ``tree`` (the default) each brings its live descendants (:meth:`tree`), as
        :meth:`delete` takes them.  A copy has the same id, parent link, creation and
        last-write times, positions, event timestamps and history start
        (``history_start``), so ``other.fold(s, at=k) == self.fold(s, at=k)`` for
        every ``k`` this store can fold, and ``other.events(s)`` gives the same
        events (their ``position`` excepted: the global position is the destination's).
        Large values are stored again in ``other`` as its chunks (addressed with its
        ``chunk_key``, or none), so stores with different keys copy between
        themselves; frames are written anew, bound to the session's key (which the
        copy keeps, unless ``other`` still holds a deleted incarnation with it, not
        yet compacted: then the copy gets a new one), whatever format version the
        session's frames here have.  Snapshots are not copied: ``other`` builds one
        at the head (and writes the one at the history start of a compacted
        session).

        Each session is copied in one transaction of ``other``: it is there whole
        or not at all.  Before anything is written, the copy is refused when a
        session to copy is live in ``other`` (:class:`ConflictError` naming them:
        sessions are never merged or replaced; delete them in ``other`` first), when
        one named is not a live session here (:class:`NotFoundError`), and when a
        session's parent is live here but neither copied nor live in ``other``
        (:class:`InvalidValueError`: copy it too).  Damage met while reading a
        session stops the copy with :class:`CorruptionError` naming the session and
        position; that session is not in ``other``, and those copied before it
        are.  This store is only read (it may be opened with ``readonly=True``);
        ``other`` must be writable.  Sessions are read and written one at a time,
        each held in memory whole while it is copied."""
        from . import copying

        if not isinstance(other, Store):
            raise InvalidValueError(f"other must be a Store, not {type(other).__name__}")
        if other is self:
            raise InvalidValueError("a store cannot be copied into itself")
        if sessions is not None:
            if isinstance(sessions, (str, bytes)) or not isinstance(sessions, Sequence):
                raise InvalidValueError(
                    f"sessions must be a sequence of session ids or None, not {type(sessions).__name__}"
                )
            sessions = list(sessions)
            for name in sessions:
                _check_id(name)
        if type(tree) is not bool:
            raise InvalidValueError(f"tree must be True or False, not {shown(tree, 40)}")
        return copying.copy(self, other, sessions, tree)

    # ------------------------------------------------------------------ maintenance

    @contextmanager
    def _step(self, read: bool) -> Iterator[None]:
        """One step of compaction: the store's lock, and the backend's units of work
        (or, with ``read``, its reads in one view) inside."""
        with self._lock:
            self._open()
            with self._backend.reading() if read else self._writer.committing():
                yield

    def compact(
        self, *, retain: int | None = None, vacuum: bool = False, batch: int = 500, progress: Progress | None = None
    ) -> CompactReport:
        """Reclaim space; see :mod:`eventlog.compaction` for the steps.

        Removes the events, snapshots and refs of deleted sessions, then frees every
        chunk that no live event or snapshot refers to (a chunk shared with a live
        session stays), then checkpoints and truncates the WAL.  Deleted content is
        zeroed in place (``secure_delete``), so it is gone from the file without a
        VACUUM; the file does not shrink unless ``vacuum=True``, which rewrites it
        (slow on a big file, and needs as much free disk space).

        With ``retain=n`` each live session keeps only its last ``n`` events: older
        ones are folded into a snapshot, which becomes the start of its history, and
        removed.  :meth:`load` is unchanged; :meth:`fold` and :meth:`events` before
        that point raise :class:`NotFoundError`.  The default keeps all history.

        Runs as many small transactions of at most ``batch`` rows; writers are not
        blocked for long, and an interrupted run (even ``kill -9``) leaves a
        consistent store that the next run finishes.

        ``progress`` (optional): a callback told how far each step has got, as
        ``progress(step, done, total)`` with the steps ``"deleted sessions"``,
        ``"sessions"``, ``"chunks"`` and, with ``vacuum``, ``"vacuum"`` (see
        :mod:`eventlog.progress`).
        """
        if retain is not None and (type(retain) is not int or retain < 0):
            raise InvalidValueError(f"retain must be a non-negative int or None, not {shown(retain, 40)}")
        if type(batch) is not int or batch < 1:
            raise InvalidValueError(f"batch must be a positive int, not {shown(batch, 40)}")
        if type(vacuum) is not bool:
            raise InvalidValueError(f"vacuum must be True or False, not {shown(vacuum, 40)}")
        _check_progress(progress)
        with self._lock:
            self._writable("compact")
        report = compaction.compact(
            self._backend,
            self._log,
            lambda: self._step(read=False),
            lambda: self._step(read=True),
            retain=retain,
            batch=batch,
            progress=progress,
        )
        with self._lock:
            self._open()
            compaction.finish(self._backend, report, vacuum=vacuum, progress=progress)
        return report

    def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """Check the whole store; see :mod:`eventlog.verify`.  Never raises for what
        it finds: every problem is in the report, naming session and position.

        ``progress`` (optional): a callback told how far the check has got, as
        ``progress(step, done, total)`` with the steps ``"integrity"``, ``"chunks"``
        and ``"sessions"`` (see :mod:`eventlog.progress`)."""
        _check_progress(progress)
        with self._lock:
            self._open()
            return verification.verify(self._backend, self._log, progress)

    def stats(self) -> dict[str, Any]:
        """Rows, bytes and largest cell per table, the file size, and:
        ``chunks.raw_bytes`` (distinct chunk content) and ``chunks.referenced_raw_bytes``
        (chunk content as used, each use counted: their ratio is the dedup factor);
        ``snapshots.events_after_newest`` (total and largest number of events a load
        replays after the newest snapshot); ``sessions.count`` (live sessions);
        ``chunk_addresses``: ``"blake3"``, or ``"blake3-keyed"`` for a store created
        with a ``chunk_key`` (see :mod:`eventlog.chunks`).  The
        entries of a large session's snapshot are in its segments, counted under
        ``chunks`` (the ``snapshots`` rows hold their manifests)."""
        with self._lock:
            self._open()
            with self._backend.reading():
                out = self._backend.stats()
                live = len(self._backend.names())
            out["sessions"].pop("rows")
            out["sessions"]["count"] = live
            out["largest_cell"] = max(out[t]["largest"] for t in ("events", "snapshots", "chunks"))
            out["max_cell_bytes"] = self.max_cell_bytes
            out["chunk_addresses"] = self._backend.meta.get("chunk_hash")
            return out


def open(path: str | os.PathLike[str], options: Options | None = None, **overrides: Unpack[OptionValues]) -> Store:
    """Open (creating if needed) the eventlog store at ``path``, a ``str`` or any
    ``os.PathLike`` such as a ``pathlib.Path`` (``":memory:"`` for a private in-memory
    store; bytes paths and other types raise :class:`InvalidValueError`).

    ``options`` is an :class:`eventlog.Options` (default: every default), and
    ``overrides`` are options given as keywords, which take precedence over it:
    ``eventlog.open(path, synchronous="NORMAL")``, ``eventlog.open(path, opts)`` and
    ``eventlog.open(path, opts, readonly=True)`` all work.  The options, their types,
    defaults and meaning are listed in :class:`eventlog.Options`: ``max_cell_bytes``,
    ``synchronous``, ``snapshot_every``, ``snapshot_bytes``, ``large_value_bytes``,
    ``chunk_bytes``, ``max_body_bytes``, ``cache_sessions``, ``busy_timeout``,
    ``chunk_key`` and ``readonly``.  A bad option (a name that is not an option
    included) raises :class:`InvalidValueError` naming it, before the file is touched.

    With ``readonly=True``, where this process may write the store file and its
    directory, SQLite may leave an empty ``-wal`` and the ``-shm`` index next to it,
    as a writer would (with the store file's mode and owner).  Elsewhere (a directory
    or a store file this process may not write, a read-only mount) nothing is created
    or changed: without a ``-wal``, or with an empty one, the file is opened
    ``immutable`` and read without locks (before each read, if the store file or its
    ``-wal`` changed, it is opened again and the read sees the new writes; a read
    during which the store file changed raises :class:`StorageError` instead of
    returning); a ``-wal`` holding writes is read through its ``-shm``, opened
    read-only; a ``-wal`` holding writes without a ``-shm`` cannot be read there:
    :class:`StorageError` (open the store once where it can be written).
    """
    return Store(path, options, **overrides)
