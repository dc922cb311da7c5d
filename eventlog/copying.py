"""Copying sessions from one store to another with their whole history
(:meth:`eventlog.Store.copy_to`, ``eventlog copy``).

A session is copied as what it means, not as its rows: its history is read from
the source (every event from the start of its history, each with its timestamp,
and, for a history shortened by ``compact(retain=...)``, the state at its start)
and written again by the destination's own engine, so chunks are cut and addressed
the destination's way (its ``chunk_key``, or none), frames are bound to the
session's key, and nothing of the source's rows (their ids, their chunk addresses,
frames of an older format) has to fit the destination.  So ``fold(at=k)`` gives the
same session in both stores for every position ``k`` the source can fold, and
``events()`` the same events with the same positions and timestamps.

What is kept: the session id, its key (unless the destination already holds an
incarnation with it, a deleted copy not yet compacted: then the copy gets a new
one), its parent link, when it was created and last written, its positions and
timestamps, and the start of its history (``history_start``: the snapshot there is
written with it).  What is not: the source's snapshots (caches: one at the head is
built after the copy) and the global positions of its events (``Event.position``, the
destination's own).

Each session is one unit of work of the destination's backend
(:meth:`~eventlog.backend.Backend.put_session`): it is there whole, or not at all.
The source is only read (it may be opened with ``readonly=True``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .backend import KEY_BYTES, CopiedEvent, CopiedSnapshot, Head, KeyInUse, WholeSession
from .cache import check_head
from .chunks import ChunkWrites
from .codec import ENTRIES
from .errors import ConflictError, CorruptionError, InvalidValueError, NotFoundError
from .fold import Event, State, apply, ops_to_wire, uses_paths
from .log import EVENT
from .snapshots import SnapshotBuilder
from .writer import encodable_ops

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger(__name__)

#: How many sessions a conflict message names before "and N more".
_NAMED = 5


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")


def plan(src: Store, dst: Store, sessions: Sequence[str] | None, tree: bool) -> list[Head]:
    """The heads of the sessions to copy, in the source's creation order: every
    live session (``sessions`` ``None``), or those named and, with ``tree``, their
    descendants.  Refuses (before anything is written) a name that is not a live
    session of the source (:class:`~eventlog.NotFoundError`), one live in the
    destination (:class:`~eventlog.ConflictError` naming them), and a session
    whose parent is live in the source but neither copied nor live in the
    destination (:class:`~eventlog.InvalidValueError`)."""
    with src._lock:
        src._open()
        with src._backend.reading():
            if sessions is None:
                heads = {h.name: h for h in _all_heads(src)}
            else:
                heads = {}
                for name in sessions:
                    head = src._lookup(name)
                    heads[name] = head
                    if tree:
                        heads.update((h.name, h) for h in src._descendants(name) if h.seq > 0)
            parents = {h.parent for h in heads.values() if h.parent is not None and h.parent not in heads}
            live_parents = {p for p in parents if _live(src, p)}
    chosen = sorted(heads.values(), key=lambda h: h.sid)
    with dst._lock:
        dst._writable("copy_to")
        with dst._backend.reading():
            taken = [h.name for h in chosen if _live(dst, h.name)]
            missing = sorted(p for p in live_parents if not _live(dst, p))
    if taken:
        raise ConflictError(f"already in the destination store (not copied, nothing written): {_names(taken)}",
                            session_id=taken[0])  # fmt: skip
    if missing:
        child = next(h.name for h in chosen if h.parent == missing[0])
        raise InvalidValueError(
            f"its parent {missing[0]!r:.200} is neither copied nor in the destination store: copy it too",
            session_id=child,
        )
    return chosen


def _live(store: Store, name: str) -> bool:
    """Whether ``name`` is a live session of ``store`` (with at least one event)."""
    head = store._backend.head(name)
    return head is not None and head.seq > 0


def _all_heads(src: Store) -> list[Head]:
    out: list[Head] = []
    after = 0
    while True:
        page = src._backend.heads(after, 1000)
        out += (h for h in page if h.seq > 0)
        if len(page) < 1000:
            return out
        after = page[-1].sid


def _read(src: Store, head: Head) -> tuple[Head, State | None, list[Event], int]:
    """The session's head as read now, the state at the start of its history
    (``None`` when it starts at 0), its events after that, and its entries at the
    head; :class:`~eventlog.CorruptionError` naming session and position for
    anything damaged."""
    name = head.name
    with src._lock:
        src._open()
        with src._backend.reading():
            row = src._backend.head(name)
            if row is None or row.sid != head.sid or row.seq == 0:
                raise NotFoundError("the session was deleted while it was copied", session_id=name)
            try:
                check_head(src._backend, row)
                floor = None
                if row.base:
                    floor = src._log.fold(name, row.sid, row.key, row.base, rehydrate=True, floor=row.base)
                events = list(src._log.events(name, row.sid, row.key, row.base, row.seq, rehydrate=True))
            except CorruptionError as e:
                if e.session_id is not None:
                    raise
                raise CorruptionError(e.message, session_id=name, seq=e.seq) from None
    state = State() if floor is None else floor.clone()  # (apply changes lists at paths in place)
    for event in events:  # (also proves that the history folds, before anything is written)
        try:
            apply(state, event.ops)
        except ValueError as e:
            raise CorruptionError(f"event does not apply: {e}", session_id=name, seq=event.seq) from None
    return row, floor, events, len(state.entries)


def _whole(dst: Store, row: Head, floor: State | None, events: list[Event], entries: int, key: bytes,
           writes: ChunkWrites) -> WholeSession:  # fmt: skip
    """The session encoded by the destination's engine (its chunks in ``writes``),
    every frame bound to ``key``."""
    log, name = dst._log, row.name
    copied = []
    for event in events:
        wire = encodable_ops(log, list(event.ops), writes)
        encoded = log.encode(EVENT, ops_to_wire(wire), writes, seq=event.seq, paths=uses_paths(event.ops))
        frame = encoded.seal(EVENT, key, event.seq, event.timestamp_ms)
        copied.append(CopiedEvent(event.seq, event.timestamp_ms, frame, encoded.size, encoded.refs))
    snapshots = []
    if floor is not None:
        fields = {k: v if v is ENTRIES else log.encodable(v, writes) for k, v in floor.fields.items()}
        pieces: list[Any] = log.encodable_each(list(floor.entries), writes)
        frame, refs, size = SnapshotBuilder(log).snapshot_of(name, key, row.base, fields, pieces, [], writes)
        snapshots.append(CopiedSnapshot(row.base, frame, size, refs))
    return WholeSession(name, key, row.parent, row.created_ms, row.updated_ms, row.seq, row.base, entries,
                        tuple(copied), tuple(snapshots))  # fmt: skip


def copy_one(src: Store, dst: Store, head: Head) -> None:
    """Copy one session (see the module documentation), in one unit of work of the
    destination, then build a snapshot of its head there."""
    row, floor, events, entries = _read(src, head)
    name = row.name
    key = row.key if row.key is not None else os.urandom(KEY_BYTES)
    with dst._lock:
        dst._writable("copy_to")
        for _ in range(3):
            writes = ChunkWrites()
            whole = _whole(dst, row, floor, events, entries, key, writes)
            try:
                with dst._writer.committing(name):
                    stored = dst._log.chunks.submit(writes, functools.partial(dst._backend.put_session, whole), name,
                                                    None)  # fmt: skip
                break
            except KeyInUse:
                # The destination still holds an incarnation with this key (a copy
                # deleted there and not yet compacted): this copy gets its own.
                logger.info("session %r: its key is in use in the destination store; the copy gets a new one", name)
                key = os.urandom(KEY_BYTES)
        else:  # pragma: no cover - three random 128-bit keys in use
            raise ConflictError("no free session key found for the copy", session_id=name)
        dst._cache.drop(name)
        if stored.seq > stored.base:
            dst._writer.snapshot(name, stored.sid, stored.seq)  # a cache: a failure is logged, and loses nothing
    logger.debug("session %r copied: %d events from %d", name, len(events), row.base)


def copy(src: Store, dst: Store, sessions: Sequence[str] | None, tree: bool) -> list[str]:
    """:meth:`eventlog.Store.copy_to` (its arguments checked)."""
    done: list[str] = []
    for head in plan(src, dst, sessions, tree):
        copy_one(src, dst, head)
        done.append(head.name)
    return done
