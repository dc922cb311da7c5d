"""Compaction: removing what deleted sessions and old history leave behind.

Compaction runs as many small steps, each one unit of work of the backend (one
transaction) that leaves the store consistent, so it can be interrupted at any point
(``kill -9`` included) and simply run again to finish.  What makes this safe is the
backend's chunk-GC contract (:mod:`eventlog.backend`): an event or snapshot and its
references are written and deleted in the same transaction, so a chunk with no
references is used by nothing, and freeing it can never leave a live event or
snapshot pointing at a missing chunk; a chunk with references is never freed, even
while other handles write.

The steps, in order:

1. Deleted sessions (tombstoned by :meth:`eventlog.Store.delete`): their events and
   snapshots, with their refs, in batches; then the session itself; then the
   backend scrubs what it may keep of them elsewhere (SQLite rewrites its small
   sessions table: it can leave old copies of an updated row in a page's free
   space, which ``secure_delete`` does not reach).
2. Sessions from SQLite files of schema version 1 get refs per event and snapshot
   (they had one set per session, which pinned every chunk they ever used).
3. With ``retain``: each live session's history older than its last ``retain``
   events is folded into a snapshot at that position, which becomes the floor of its
   history, and the events and snapshots below it are removed (events left below a
   floor by an interrupted run are removed by any later run).
4. Chunks that nothing refers to, in batches in chunk order.
5. A checkpoint (SQLite: one that truncates the WAL, so deleted content is gone
   from both files, ``secure_delete`` zeroing it in the pages), and with ``vacuum``
   a VACUUM that also returns the free pages to the file system.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from .backend import Backend, Head, NewSnapshot, advance
from .chunks import ChunkWrites, hashes_of
from .codec import Ref
from .errors import CorruptionError, EventLogError
from .log import Log
from .progress import Progress
from .snapshots import SnapshotBuilder

logger = logging.getLogger(__name__)


@dataclass
class CompactReport:
    """What one :meth:`eventlog.Store.compact` run removed."""

    sessions_removed: int = 0
    events_removed: int = 0
    snapshots_removed: int = 0
    sessions_truncated: int = 0  # live sessions whose older history was folded away
    chunks_freed: int = 0
    bytes_freed: int = 0  # stored bytes of the freed chunks
    checkpointed: bool = False  # the WAL was emptied (False: a reader elsewhere held it)
    vacuumed: bool = False
    skipped: list[str] = field(default_factory=list)  # sessions whose history could not be folded, and why


#: Opens one step: the caller's lock around the backend's calls inside (for
#: ``read``, in one consistent view).
Step = Callable[[], AbstractContextManager[None]]


def _silent(step: str, done: int, total: int | None) -> None:
    pass


def compact(
    backend: Backend,
    log: Log,
    write: Step,
    read: Step,
    *,
    retain: int | None,
    batch: int,
    progress: Progress | None = None,
) -> CompactReport:
    """Steps 1 to 4 of compaction (then :func:`finish`); ``write()`` is held around
    each of the backend's units of work, ``read()`` around reads that must agree.
    ``progress`` (see :mod:`eventlog.progress`) is told of the steps ``"deleted
    sessions"``, ``"sessions"`` (the live ones, their history shortened with
    ``retain``) and ``"chunks"`` (looked at for freeing)."""
    report = CompactReport()
    tell = progress or _silent
    live = dead = chunks = 0
    if progress:
        with read():
            live, dead, chunks = backend.counts()
    tell("deleted sessions", 0, dead)
    _remove_deleted(backend, write, read, batch, report, tell, dead)
    if report.sessions_removed:
        with write():
            backend.scrub()
    _own_refs(backend, log, write, read, report)
    tell("sessions", 0, live)
    _truncate_history(backend, log, write, read, retain, batch, report, tell, live)
    tell("chunks", 0, chunks)
    _free_chunks(backend, write, batch, report, tell, chunks)
    return report


def finish(backend: Backend, report: CompactReport, *, vacuum: bool, progress: Progress | None = None) -> None:
    """The last step: checkpoint, and VACUUM if asked (outside any transaction);
    ``progress`` is told of the step ``"vacuum"`` (no total)."""
    if vacuum:
        tell = progress or _silent
        tell("vacuum", 0, None)
        backend.vacuum()
        report.vacuumed = True
        tell("vacuum", 1, 1)
    report.checkpointed = backend.checkpoint()


def _remove_deleted(
    backend: Backend, write: Step, read: Step, batch: int, report: CompactReport, tell: Progress, total: int
) -> None:
    done: list[int] = []
    while True:
        with read():
            sids = backend.dead(64)
        if not sids:
            return
        if sids == done:  # removed, yet still listed: the table or its index is damaged
            raise CorruptionError("the sessions table is damaged: deleted sessions cannot be removed")
        done = sids
        for sid in sids:
            while True:
                with write():
                    step = backend.purge(sid, batch)
                report.events_removed += step.events
                report.snapshots_removed += step.snapshots
                if step.done:
                    report.sessions_removed += 1
                    tell("deleted sessions", report.sessions_removed, max(total, report.sessions_removed))
                    break


def _sessions(read: Step, page: Callable[[int, int], list[Head]]) -> Iterator[Head]:
    """The heads ``page(after_sid, limit)`` gives, a page per read."""
    after = 0
    while True:
        with read():
            rows = page(after, 100)
        if not rows:
            return
        after = advance(after, rows[-1].sid, "sessions")
        yield from rows


def _own_refs(backend: Backend, log: Log, write: Step, read: Step, report: CompactReport) -> None:
    """Give each event and snapshot of a session migrated from a version 1 file its
    own refs, then drop the session-wide ones, so its unused chunks can be freed.
    One unit of work per session; a session that cannot be decoded keeps its refs."""
    for row in _sessions(read, backend.legacy):
        try:
            events: dict[int, frozenset[bytes]] = {}
            snapshots: dict[int, frozenset[bytes]] = {}
            with read():
                current = backend.head(row.name)
                if current is None or current.sid != row.sid:
                    continue
                for stored in backend.events(row.sid, current.base, current.seq):
                    refs: list[Ref] = []
                    log.event(row.name, row.sid, row.key, stored.seq, stored.pos, stored.ts_ms, stored.frame,
                              rehydrate=False, seen=refs)  # fmt: skip
                    events[stored.seq] = hashes_of(refs)
                for seq in backend.snapshot_seqs(row.sid, current.seq):
                    snap = backend.snapshot(row.sid, seq)
                    if snap is None or seq < current.base:
                        continue
                    refs = []
                    log.snapshot_state(row.name, row.sid, row.key, seq, snap, rehydrate=False, seen=refs)
                    snapshots[seq] = hashes_of(refs)
            with write():
                backend.adopt_refs(row.sid, events, snapshots)
        except EventLogError as e:
            _skip(report, row.name, e, "keeps its chunks")


def _skip(report: CompactReport, name: str, e: EventLogError, what: str) -> None:
    report.skipped.append(f"{name}: {e}")
    logger.warning("compaction skipped session %r, which %s: %s", name, what, e)


def _truncate_history(
    backend: Backend,
    log: Log,
    write: Step,
    read: Step,
    retain: int | None,
    batch: int,
    report: CompactReport,
    tell: Progress,
    total: int,
) -> None:
    for done, row in enumerate(_sessions(read, backend.heads), 1):
        tell("sessions", done, max(total, done))
        floor = row.base
        if retain is not None and row.seq - retain > floor:
            try:
                if _new_floor(backend, log, write, read, row, row.seq - retain):
                    floor = row.seq - retain
                    report.sessions_truncated += 1
            except EventLogError as e:  # a damaged session keeps its history; the rest goes on
                _skip(report, row.name, e, "keeps its history")
        while floor:  # what lies below the floor (also after an interrupted run), in batches
            with write():
                step = backend.trim(row.sid, batch)
            report.events_removed += step.events
            report.snapshots_removed += step.snapshots
            if step.done:
                break


def _new_floor(backend: Backend, log: Log, write: Step, read: Step, row: Head, floor: int) -> bool:
    """Fold the session up to ``floor`` into a snapshot there and make it the floor
    of its history, in one unit of work.  ``False`` if the session changed
    meanwhile in a way that makes this moot."""
    writes = ChunkWrites()
    with read():
        current = backend.head(row.name)
        if current is None or current.sid != row.sid or floor <= current.base or floor > current.seq:
            return False
        build = SnapshotBuilder(log).snapshot
        frame, refs, size = build(row.name, row.sid, row.key, floor, current.base, writes, reuse=False)
    snapshot = NewSnapshot(row.sid, floor, frame, size, refs, floor=True)
    with write():
        if not log.chunks.submit(writes, lambda give: backend.put_snapshot(snapshot, give), row.name, floor):
            return False
    logger.debug("session %r: history before %d folded into a snapshot there", row.name, floor)
    return True


def _free_chunks(backend: Backend, write: Step, batch: int, report: CompactReport, tell: Progress, total: int) -> None:
    cursor: bytes | None = b""
    looked = 0
    while cursor is not None:
        with write():
            step = backend.free_chunks(cursor, batch)
        cursor = step.cursor
        report.chunks_freed += step.chunks
        report.bytes_freed += step.bytes
        looked = total if cursor is None else min(looked + batch, total)  # each call looks at `batch` chunks
        tell("chunks", looked, total)
