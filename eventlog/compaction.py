"""Compaction: removing what deleted sessions and old history leave behind.

Compaction runs as many small write transactions, each of which leaves the store
consistent, so it can be interrupted at any point (``kill -9`` included) and simply
run again to finish.  The invariant that makes this safe is kept by every writer:
an event or snapshot and its refs are written and deleted in the same transaction.
A chunk with no refs is therefore used by nothing, and freeing it can never leave a
live row pointing at a missing chunk; a chunk with refs is never freed.

The steps, in order:

1. Deleted sessions (tombstoned by :meth:`eventlog.Store.delete`): their events and
   snapshots, with their refs, in batches; then the session row; then the small
   sessions table is rewritten (SQLite can leave old copies of an updated row in a
   page's free space, which ``secure_delete`` does not reach).
2. Sessions from version 1 files get refs per event and snapshot (they had one set
   per session, which pinned every chunk they ever used).
3. With ``retain``: each live session's history older than its last ``retain``
   events is folded into a snapshot at that position, which becomes the floor of its
   history, and the events and snapshots below it are removed (events left below a
   floor by an interrupted run are removed by any later run).
4. Chunks that nothing refers to, in batches in chunk order.
5. A WAL checkpoint that truncates the WAL, so deleted content is gone from both
   files (``secure_delete`` zeroes it in the pages), and with ``vacuum`` a VACUUM
   that also returns the free pages to the file system.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from .codec import Ref
from .errors import CorruptionError, EventLogError
from .log import Log
from .progress import Progress
from .sql import EVENT_REF, SNAPSHOT_REF, Database, SessionRow, advance

#: Everything, as a sequence number bound.
_ALL = 1 << 62

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


Transaction = Callable[[], AbstractContextManager[None]]


def _silent(step: str, done: int, total: int | None) -> None:
    pass


def compact(
    db: Database,
    log: Log,
    write: Transaction,
    read: Transaction,
    *,
    retain: int | None,
    batch: int,
    progress: Progress | None = None,
) -> CompactReport:
    """Steps 1 to 4 of compaction (then :func:`finish`); ``write()`` and ``read()``
    open one write or read transaction (holding whatever lock the caller needs).
    ``progress`` (see :mod:`eventlog.progress`) is told of the steps ``"deleted
    sessions"``, ``"sessions"`` (the live ones, their history shortened with
    ``retain``) and ``"chunks"`` (looked at for freeing)."""
    report = CompactReport()
    tell = progress or _silent
    live = dead = chunks = 0
    if progress:
        with read():
            live, dead, chunks = db.counts()
    tell("deleted sessions", 0, dead)
    _remove_deleted(db, write, read, batch, report, tell, dead)
    if report.sessions_removed:
        with write():
            db.rebuild_sessions()
    _own_refs(db, log, write, read, report)
    tell("sessions", 0, live)
    _truncate_history(db, log, write, read, retain, batch, report, tell, live)
    tell("chunks", 0, chunks)
    _free_chunks(db, write, batch, report, tell, chunks)
    return report


def finish(db: Database, report: CompactReport, *, vacuum: bool, progress: Progress | None = None) -> None:
    """The last step: checkpoint and truncate the WAL, and VACUUM if asked (outside
    any transaction); ``progress`` is told of the step ``"vacuum"`` (no total)."""
    if vacuum:
        tell = progress or _silent
        tell("vacuum", 0, None)
        db.vacuum()
        report.vacuumed = True
        tell("vacuum", 1, 1)
    report.checkpointed = db.checkpoint()


def _remove_deleted(
    db: Database, write: Transaction, read: Transaction, batch: int, report: CompactReport, tell: Progress, total: int
) -> None:
    done: list[int] = []
    while True:
        with read():
            sids = db.dead_sessions(64)
        if not sids:
            return
        if sids == done:  # removed, yet still listed: the table or its index is damaged
            raise CorruptionError("the sessions table is damaged: deleted sessions cannot be removed")
        done = sids
        for sid in sids:
            while True:
                with write():
                    events = db.purge_events(sid, _ALL, batch)
                    snapshots = db.purge_snapshots(sid, _ALL, batch)
                    if not events and not snapshots:
                        db.drop_session(sid)
                report.events_removed += events
                report.snapshots_removed += snapshots
                if not events and not snapshots:
                    report.sessions_removed += 1
                    tell("deleted sessions", report.sessions_removed, max(total, report.sessions_removed))
                    break


def _sessions(read: Transaction, page: Callable[[int, int], list[SessionRow]]) -> Iterator[SessionRow]:
    """The rows ``page(after_sid, limit)`` gives, a page per read transaction."""
    after = 0
    while True:
        with read():
            rows = page(after, 100)
        if not rows:
            return
        after = advance(after, rows[-1].sid, "sessions")
        yield from rows


def _own_refs(db: Database, log: Log, write: Transaction, read: Transaction, report: CompactReport) -> None:
    """Give each event and snapshot of a session migrated from a version 1 file its
    own refs, then drop the session-wide ones, so its unused chunks can be freed.
    One transaction per session; a session that cannot be decoded keeps its refs."""
    for row in _sessions(read, db.legacy_sessions):
        try:
            with write():
                current = db.session_by_sid(row.sid)
                if current is None:
                    continue
                for seq, pos, ts, frame in db.events(row.sid, current.base_seq, current.seq):
                    refs: list[Ref] = []
                    log.event(row.name, row.sid, seq, pos, ts, frame, rehydrate=False, seen=refs)
                    db.add_refs(EVENT_REF, pos, log.chunk_ids_of(refs, row.name, seq))
                for snap_id, seq in db.snapshots_of(row.sid):
                    snap = db.snapshot(row.sid, seq)
                    if snap is None or seq < current.base_seq:
                        continue
                    refs = []
                    log.snapshot_state(row.name, row.sid, seq, snap, rehydrate=False, seen=refs)
                    db.add_refs(SNAPSHOT_REF, snap_id, log.chunk_ids_of(refs, row.name, seq))
                db.drop_session_refs(row.sid)
        except EventLogError as e:
            _skip(report, row.name, e, "keeps its chunks")


def _skip(report: CompactReport, name: str, e: EventLogError, what: str) -> None:
    report.skipped.append(f"{name}: {e}")
    logger.warning("compaction skipped session %r, which %s: %s", name, what, e)


def _truncate_history(
    db: Database,
    log: Log,
    write: Transaction,
    read: Transaction,
    retain: int | None,
    batch: int,
    report: CompactReport,
    tell: Progress,
    total: int,
) -> None:
    for done, row in enumerate(_sessions(read, db.live_sessions), 1):
        tell("sessions", done, max(total, done))
        floor = row.base_seq
        if retain is not None and row.seq - retain > floor:
            try:
                if _new_floor(db, log, write, row, row.seq - retain):
                    floor = row.seq - retain
                    report.sessions_truncated += 1
            except EventLogError as e:  # a damaged session keeps its history; the rest goes on
                _skip(report, row.name, e, "keeps its history")
        while floor:  # what lies below the floor (also after an interrupted run), in batches
            with write():
                events = db.purge_events(row.sid, floor, batch)
                snapshots = db.purge_snapshots(row.sid, floor, batch)
            report.events_removed += events
            report.snapshots_removed += snapshots
            if not events and not snapshots:
                break


def _new_floor(db: Database, log: Log, write: Transaction, row: SessionRow, floor: int) -> bool:
    """Fold the session up to ``floor`` into a snapshot there and make it the floor
    of its history, in one transaction.  ``False`` if the session changed meanwhile
    in a way that makes this moot."""
    with write():
        current = db.session(row.name)
        if current is None or current.sid != row.sid or floor <= current.base_seq or floor > current.seq:
            return False
        frame, cids, size = log.snapshot(row.name, row.sid, floor, current.base_seq, reuse=False)
        db.put_snapshot(row.sid, floor, frame, size, cids)
        db.set_base(row.sid, floor)
    logger.debug("session %r: history before %d folded into a snapshot there", row.name, floor)
    return True


def _free_chunks(
    db: Database, write: Transaction, batch: int, report: CompactReport, tell: Progress, total: int
) -> None:
    cursor: int | None = 0
    looked = 0
    while cursor is not None:
        with write():
            cursor, freed, size = db.free_chunks(cursor, batch)
        report.chunks_freed += freed
        report.bytes_freed += size
        looked = total if cursor is None else min(looked + batch, total)  # each call looks at `batch` chunks
        tell("chunks", looked, total)
