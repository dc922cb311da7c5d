"""The writer: the one path by which a store appends events.

``save()``, ``append()`` and the tombstones of ``delete()`` all go through
:meth:`Writer._commit`, which repeats one attempt until it is stored or must give
up.  An attempt reads the heads it builds on (or trusts the session cache),
encodes its events outside any transaction (large values cut into chunks), and
hands them to the backend as one unit of work conditional on those heads, with the
chunks the backend does not have yet (:meth:`eventlog.chunks.Chunks.submit`).  Then:

* the backend finds a head moved meanwhile (:class:`~eventlog.ConflictError`): the
  cached sessions are dropped and, without ``expected_seq``, the attempt is made
  again from the heads read now (at most :data:`MAX_TRIES` times).  With
  ``expected_seq`` the caller gets the conflict, except once: a conflict whose head
  is the one the caller expected was caused by this store's cached incarnation
  (deleted and made again by another handle), and is tried again from the head;
* the commit's outcome is unknown (:class:`~eventlog.OutcomeUnknownError`): every
  cached session is dropped (the write may yet turn out to be stored) and the error
  names the session and the head the write was made from;
* it is stored: the session cache learns the new head (:mod:`eventlog.cache`), and
  the snapshot policy may build a snapshot (a cache: failing to build one is logged
  and loses nothing).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from .backend import Backend, Chunk, Head, NewEvent, NewSnapshot
from .cache import Cached, SessionCache, Tip
from .chunks import ChunkWrites
from .codec import ENTRIES, EVENT
from .errors import (
    ConflictError,
    CorruptionError,
    EventLogError,
    InvalidValueError,
    OutcomeUnknownError,
    StorageError,
)
from .fold import At, Delete, Insert, Op, Replace, SetFields, Tombstone, diff, lists_in, ops_to_wire, uses_paths
from .log import Log
from .snapshots import SnapshotBuilder, SnapshotPolicy

#: Times a write without ``expected_seq`` is made again because other writers moved
#: the session on meanwhile, before :class:`StorageError` (each time one of them
#: wrote: a bound that only a backend that is wrong about heads can reach).
MAX_TRIES = 1000

logger = logging.getLogger(__name__)


@contextmanager
def naming(session_id: str) -> Iterator[None]:
    """Damage the backend reports while a session is read is reported as that session's."""
    try:
        yield
    except CorruptionError as e:
        if e.session_id is not None:
            raise
        raise CorruptionError(e.message, session_id=session_id, seq=e.seq) from None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encodable_ops(log: Log, ops: list[Op], writes: ChunkWrites) -> list[Op]:
    """Each op with encodable values: validated, large ones cut into chunks (for
    ``writes``) and replaced by refs."""
    return [_encodable(log, op, writes, 0) for op in ops]


def _encodable(log: Log, op: Op, writes: ChunkWrites, within: int) -> Op:
    """``op`` encodable, its values nested ``within`` keys down (an :class:`At`'s path)."""
    if type(op) is Insert:
        return Insert(op.index, log.encodable_each(op.entries, writes, within))
    if type(op) is Replace:
        return Replace(op.index, log.encodable(op.entry, writes, within))
    if type(op) is SetFields:
        changed = {k: v if v is ENTRIES else log.encodable(v, writes, within) for k, v in op.changed.items()}
        return SetFields(changed, op.order)
    if type(op) is At:
        return At(op.path, _encodable(log, op.op, writes, len(op.path)))  # type: ignore[arg-type]
    assert isinstance(op, Delete)
    return op


@dataclass(slots=True)
class _Attempt:
    """The events one attempt appends, in one unit of work: their chunks' bytes,
    whether they delete a tree whole (see :meth:`~eventlog.backend.Backend.append`),
    and the head they were made from (one session's: to name in errors)."""

    events: list[NewEvent]
    writes: ChunkWrites
    head: int | None = None
    whole_tree: bool = False


class Writer:
    """Appends the events of one store (see the module documentation), through
    ``backend``, encoding with ``log``, keeping ``cache`` current and snapshotting
    as ``policy`` says.  Not thread-safe: the store's lock is held around every call."""

    def __init__(
        self, backend: Backend, log: Log, cache: SessionCache, snapshots: SnapshotBuilder, policy: SnapshotPolicy
    ) -> None:
        self._backend = backend
        self._log = log
        self._cache = cache
        self._snapshots = snapshots
        self._policy = policy
        # Sessions whose last snapshot failed (warned about once, until one is built).
        self._unsnapshotted: set[str] = set()

    @contextmanager
    def committing(self, session_id: str | None = None) -> Iterator[None]:
        """Around the backend's units of work (about ``session_id``) made outside
        :meth:`_commit`.  When one's outcome is unknown (the commit failed at the
        disk; the connection was reopened) the cached sessions are dropped: the
        write may yet turn out to be in the file."""
        try:
            yield
        except OutcomeUnknownError as e:
            self._cache.clear()
            if session_id is None:
                raise
            raise OutcomeUnknownError(e.message, session_id=session_id) from None

    # ------------------------------------------------------------------ the one path

    def _commit(
        self, name: str, expected_seq: int | None, attempt: Callable[[], _Attempt], *, named: bool = True
    ) -> list[Head]:
        """Make ``attempt()`` and append its events, again while other writers move
        the sessions on (see the module documentation); the heads after them.
        ``named``: damage found is reported as session ``name``'s."""
        tries = 0
        stale = False  # a conflict of the cached incarnation was retried once
        while True:
            made: _Attempt | None = None
            try:
                with naming(name) if named else nullcontext():
                    made = attempt()
                    if not made.events:
                        return []
                    append = functools.partial(self._append, made.events, whole_tree=made.whole_tree)
                    return self._log.chunks.submit(made.writes, append, name, made.events[0].seq)
            except ConflictError as e:
                self._drop(name, made)
                if expected_seq is not None:
                    found = 0 if e.seq is None else e.seq
                    if found == expected_seq and not stale:
                        # The head is as the caller expects: what conflicted was this
                        # store's cached incarnation (deleted and made again by
                        # another handle meanwhile).  Once more, from the head read now.
                        stale = True
                        continue
                    raise ConflictError(f"expected seq {expected_seq}, found {found}", session_id=name,
                                        seq=found) from None  # fmt: skip
                tries += 1
                if tries >= MAX_TRIES:
                    raise StorageError(f"the session moved on {tries} times while a write was encoded: "
                                       "given up", session_id=name) from None  # fmt: skip
                logger.debug("session %r (or its tree) moved on while a write was encoded: writing it again", name)
            except OutcomeUnknownError as e:
                self._cache.clear()
                head = None if made is None else made.head
                raise OutcomeUnknownError(
                    e.message, session_id=name, seq=None if head is None else head + 1, expected_seq=head
                ) from None
            except BaseException:
                self._drop(name, made)
                raise

    def _append(self, events: list[NewEvent], give: list[Chunk], *, whole_tree: bool) -> list[Head]:
        return self._backend.append(events, give, whole_tree=whole_tree)

    def _drop(self, name: str, made: _Attempt | None) -> None:
        self._cache.drop(name)
        if made is not None:
            for event in made.events:
                self._cache.drop(event.name)

    def _write(
        self,
        name: str,
        parent: str | None,
        expected_seq: int | None,
        make_ops: Callable[[Cached, dict[tuple[str, ...], int]], list[Op]],
        done: Callable[[Cached, Head, list[Op], Tip], None],
        *,
        full: bool,
        lists: dict[tuple[str, ...], list[Any]] | None = None,
    ) -> int:
        """Append one event made by ``make_ops(cached, known)`` from the cached
        session (with ``full``, its state caught up to the head, and ``known``: how
        many items of each of the caller's ``lists`` its mirrors prove unchanged),
        then tell ``done`` what was written and run the snapshot policy."""
        c: Cached | None = None
        ops: list[Op] = []
        tip: Tip | None = None

        def attempt() -> _Attempt:
            nonlocal c, ops, tip
            c, known = self._cache.for_write(name, expected_seq, full=full, lists=lists)
            ops = make_ops(c, known)
            tip = c.tip.after(ops)
            writes = ChunkWrites()
            wire = self._encodable(ops, writes)
            seq, ts, (sid, key) = tip.seq, now_ms(), c.who
            encoded = self._log.encode(EVENT, ops_to_wire(wire), writes, seq=seq, paths=uses_paths(ops))
            frame = encoded.seal(EVENT, key, seq, ts)
            if sid is None:  # a new session, with the key made for it
                event = NewEvent(name, None, seq, ts, frame, encoded.size, encoded.refs, tip.entries, parent, key=key)
            else:
                event = NewEvent(name, sid, seq, ts, frame, encoded.size, encoded.refs, tip.entries)
            return _Attempt([event], writes, head=c.tip.seq)

        [after] = self._commit(name, expected_seq, attempt)
        assert c is not None and tip is not None
        done(c, after, ops, tip)
        if self._policy.due(after.seq, after.snap_seq, after.snap_bytes, after.snap_bytes_since):
            self.snapshot(name, after.sid, after.seq)
        return after.seq

    def _encodable(self, ops: list[Op], writes: ChunkWrites) -> list[Op]:
        return encodable_ops(self._log, ops, writes)

    # ------------------------------------------------------------------ its users

    def save(self, name: str, parent: str | None, expected_seq: int | None, data: dict[str, Any]) -> int:
        """:meth:`eventlog.Store.save` (its arguments checked): the ops that turn the
        stored state into ``data``, each list compared item by item except for the
        items its mirror proves unchanged."""
        lists = lists_in(data)
        known: dict[tuple[str, ...], int] = {}

        def make_ops(c: Cached, proven: dict[tuple[str, ...], int]) -> list[Op]:
            nonlocal known
            known = proven  # (for this attempt's state)
            return diff(c.state, data, known.get(("entries",), 0), known)

        def done(c: Cached, after: Head, ops: list[Op], tip: Tip) -> None:
            self._cache.saved(name, c, after, ops, lists, known)

        return self._write(name, parent, expected_seq, make_ops, done, full=True, lists=lists)

    def append(self, name: str, parent: str | None, expected_seq: int | None, batch: list[Any]) -> int:
        """:meth:`eventlog.Store.append` (its arguments checked)."""

        def make_ops(c: Cached, _: dict[tuple[str, ...], int]) -> list[Op]:
            if c.tip.has_fields and not c.tip.managed:
                raise InvalidValueError("the stored session's entries field is not a list", session_id=name)
            out: list[Op] = [Insert(c.tip.entries, batch)] if batch else []
            changed: dict[str, Any] = {} if c.tip.managed else {"entries": ENTRIES}
            last = batch[-1] if batch else None
            if type(last) is dict and "id" in last:
                changed["leafId"] = last["id"]
            if changed:
                out.append(SetFields(changed))
            return out

        def done(c: Cached, after: Head, ops: list[Op], tip: Tip) -> None:
            self._cache.appended(name, c, after, tip)

        return self._write(name, parent, expected_seq, make_ops, done, full=False)

    def delete(self, name: str, find: Callable[[], list[Head]], whole_tree: bool) -> list[str]:
        """:meth:`eventlog.Store.delete`: a tombstone event ends each session
        ``find()`` gives (read again when one of them moved on meanwhile), in one
        unit of work; the names deleted."""
        tomb = self._log.encode(EVENT, ops_to_wire([Tombstone(name)]), ChunkWrites())
        rows: list[Head] = []

        def attempt() -> _Attempt:
            nonlocal rows
            with self._backend.reading():
                rows = find()
            now = now_ms()
            events = [
                NewEvent(r.name, r.sid, r.seq + 1, now, tomb.seal(EVENT, r.key, r.seq + 1, now), tomb.size,
                         tombstone=True)
                for r in rows
            ]  # fmt: skip
            return _Attempt(events, ChunkWrites(), whole_tree=whole_tree)

        try:
            self._commit(name, None, attempt, named=False)
        finally:
            for row in rows:
                self._cache.drop(row.name)
        return [r.name for r in rows]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, name: str, sid: int, seq: int) -> None:
        """Build and store a snapshot of the session at ``seq`` if it is still its
        head.  A snapshot is a cache: a failure is logged (a warning once, until one
        of the session is built) and loses nothing."""
        log, backend = self._log, self._backend
        try:
            writes = ChunkWrites()
            with backend.reading(), naming(name):
                row = backend.head(name)
                if row is None or row.sid != sid or row.seq != seq:
                    logger.debug("snapshot of session %r at %d not built: the session moved on", name, seq)
                    return  # someone wrote meanwhile; the next write will try again
                frame, refs, size = self._snapshots.snapshot(name, sid, row.key, seq, row.base, writes)
            snapshot = NewSnapshot(sid, seq, frame, size, refs, keep=self._policy.keep)
            with self.committing():
                stored = log.chunks.submit(writes, lambda give: backend.put_snapshot(snapshot, give), name, seq)
            if not stored:
                logger.debug("snapshot of session %r at %d not stored: the session was deleted meanwhile", name, seq)
                return
        except EventLogError as e:
            # A snapshot is a cache: failing to build one loses nothing, but loads of
            # the session replay more.  Said once, until a snapshot of it is built.
            level = logging.DEBUG if name in self._unsnapshotted else logging.WARNING
            self._unsnapshotted.add(name)
            logger.log(level, "snapshot of session %r at %d failed (it is tried again later): %s", name, seq, e)
            return
        self._unsnapshotted.discard(name)
        logger.debug("snapshot of session %r built at %d (%d bytes written)", name, seq, size)
