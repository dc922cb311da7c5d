"""Checking a whole store: what ``Store.verify()`` and ``eventlog verify`` report.

Checked, in one read transaction (a consistent view even while others write):

* SQLite's own ``PRAGMA integrity_check``: every page, b-tree and index of the
  file (an index that disagrees with its table, a damaged page, free space that
  is not free);
* each AUTOINCREMENT counter is at least its table's largest id (positions are
  never reused);
* every chunk decompresses (bounded) to bytes whose BLAKE3 (keyed with the store's
  ``chunk_key``, if it has one) is its address, and
  each event or snapshot using a damaged one is named;
* every ref names an existing chunk and an existing event, snapshot or session;
* no event, snapshot, chunk or session row is over the cell budget;
* no event or snapshot is left without its session;
* every live session replays from the start of its history (or its compacted
  floor) to its head and no further, event by event, each event's recorded refs
  being exactly the chunks it uses, each large value's chunks adding up to its
  length, and each snapshot decoding to the state that replay reaches at its
  position; the number of entries recorded with its head (what ``eventlog
  sessions`` lists) is the number replay ends with.

Damage SQLite reports while reading (a page it cannot parse) ends the check with
one problem saying so; ``verify`` itself never raises for what it finds.

What no check sees: a changed byte in a column that nothing checksums and no
index repeats (a session's created and updated times, its
snapshot bookkeeping, when a deleted session was deleted, an AUTOINCREMENT
counter moved up), schema text changed in a way that means the same, and bytes in free
pages or the unused parts of pages (they hold nothing).  None of these is part of
what ``load()`` returns.  A damaged index entry can hide a session from ``load()``
(which finds sessions through the index, and then returns ``None``); ``verify``
reports it.  An event's timestamp is bound into its frame's CRC (frames written
since schema version 3), so a changed one is reported like a changed frame.

Chunks that nothing refers to are counted (``garbage_chunks``) but are not a
problem: :meth:`eventlog.Store.compact` frees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .codec import DecodeError, Ref
from .errors import CorruptionError, EventLogError
from .fold import State, apply
from .log import Log
from .progress import Progress
from .sql import EVENT_REF, SESSION_REF, SNAPSHOT_REF, Database, SessionRow, advance
from .values import same

_PAGE = 256
_MAX_REPORTED = 1000


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a store, with the session and position when it has them."""

    what: str
    session_id: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = []
        if self.session_id is not None:
            where.append(f"session {self.session_id!r}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return f"{', '.join(where)}: {self.what}" if where else self.what


@dataclass
class VerifyReport:
    """The result of :func:`verify`: ``ok`` when ``problems`` is empty."""

    problems: list[Problem] = field(default_factory=list)
    sessions: int = 0
    events: int = 0
    snapshots: int = 0
    chunks: int = 0
    garbage_chunks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, what: str, session_id: str | None = None, seq: int | None = None) -> None:
        if len(self.problems) < _MAX_REPORTED:
            self.problems.append(Problem(what, session_id, seq))


def verify(db: Database, log: Log, progress: Progress | None = None) -> VerifyReport:
    """Check everything listed in the module docstring.  ``progress`` (see
    :mod:`eventlog.progress`) is told of the steps ``"integrity"`` (SQLite's check
    of the file, no total), ``"chunks"`` and ``"sessions"``."""
    report = VerifyReport()
    tell = progress or _silent
    with db.read():
        try:
            sessions, _, chunks = db.counts() if progress else (0, 0, 0)
            tell("integrity", 0, None)
            for problem in db.integrity_problems(_MAX_REPORTED):
                report.add(f"the SQLite file is damaged: {problem}")
            for problem in db.counter_problems():
                report.add(problem)
            tell("chunks", 0, chunks)
            damaged = _chunks(db, log, report, tell, chunks)
            for kind, holder, cid in db.dangling_refs(_MAX_REPORTED):
                what = ("event", "snapshot", "session")[kind] if kind in (0, 1, 2) else f"kind {kind!r}"
                report.add(f"ref from {what} {holder} to chunk {cid}: its chunk or holder is missing")
            for table, rowid, size in db.oversized_rows(_MAX_REPORTED):
                report.add(f"{table} row {rowid} holds {size} bytes, over the budget of {db.max_cell_bytes}")
            orphans = db.orphan_rows()
            if orphans:
                report.add(f"{orphans} events or snapshots belong to no session")
            report.garbage_chunks = db.unreferenced_chunks()
            tell("sessions", 0, sessions)
            after = 0
            while rows := db.live_sessions(after, 100):
                for row in rows:
                    _session(db, log, row, damaged, report)
                    tell("sessions", report.sessions, max(sessions, report.sessions))
                after = advance(after, rows[-1].sid, "sessions")
        except EventLogError as e:  # SQLite could not read on: the file is damaged
            report.add(f"checking stopped: {e.message}", e.session_id, e.seq)
    return report


def _silent(step: str, done: int, total: int | None) -> None:
    pass


def _chunks(db: Database, log: Log, report: VerifyReport, tell: Progress, total: int) -> set[int]:
    """Check every chunk; returns the ids of the damaged ones."""
    damaged: set[int] = set()
    after = 0
    while page := db.chunks_page(after, 16):
        for cid, digest, flags, size, data in page:
            report.chunks += 1
            try:
                log.chunks.open(digest, flags, size, data)
            except DecodeError as e:
                damaged.add(cid)
                report.add(f"chunk {cid}: {e}")
        tell("chunks", report.chunks, max(total, report.chunks))
        after = advance(after, page[-1][0], "chunks")
    return damaged


def _session(db: Database, log: Log, row: SessionRow, damaged: set[int], report: VerifyReport) -> None:
    """Replay one live session, checking refs and snapshots on the way."""
    name, sid = row.name, row.sid
    report.sessions += 1
    shared = db.refs_of(SESSION_REF, sid)  # version 1 files: refs of the whole session
    snap_ids = {seq: snap_id for snap_id, seq in db.snapshots_of(sid)}
    for seq in snap_ids:
        if type(seq) is not int or seq > row.seq:
            report.add(f"a snapshot is at position {seq!r}, not in the log: its row is damaged", name)
    state = State()
    expected = row.base_seq + 1
    try:
        if row.base_seq:
            if row.base_seq not in snap_ids:
                report.add("the snapshot holding the compacted history is missing", name, row.base_seq)
                return
            state = _snapshot(db, log, row, row.base_seq, snap_ids[row.base_seq], shared, damaged, report)
        for seq, pos, ts, frame in db.events(sid, row.base_seq):
            if seq > row.seq:
                report.add(f"the log goes on after the session's head ({row.seq}): the head is damaged", name, seq)
                return
            if seq != expected:
                report.add("event is missing", name, expected)
                return
            expected += 1
            report.events += 1
            seen: list[Ref] = []
            event = log.event(name, sid, seq, pos, ts, frame, rehydrate=False, seen=seen)
            _refs(db, EVENT_REF, pos, seen, shared, damaged, report, name, seq, "event")
            try:
                apply(state, event.ops)
            except ValueError as e:
                report.add(f"event does not apply: {e}", name, seq)
                return
            if seq in snap_ids:
                try:
                    snap = _snapshot(db, log, row, seq, snap_ids[seq], shared, damaged, report)
                except EventLogError as e:
                    report.add(f"snapshot is unreadable (loads fall back to replay): {e.message}", name, seq)
                    continue
                if not (same(snap.fields, state.fields) and same(snap.entries, state.entries)):
                    report.add("snapshot differs from the replayed session", name, seq)
    except EventLogError as e:
        report.add(f"does not fold: {e.message}", name, e.seq)
        return
    if expected != row.seq + 1:
        report.add("the log ends before the session's head", name, expected)
        return
    recorded = db.recorded_entries(sid)
    if recorded is not None and (type(recorded) is not int or recorded != len(state.entries)):
        report.add(f"the entry count recorded with the head reads {recorded!r:.40}, the log folds to "
                   f"{len(state.entries)} entries", name, row.seq)  # fmt: skip


def _snapshot(
    db: Database,
    log: Log,
    row: SessionRow,
    seq: int,
    snap_id: int,
    shared: set[int],
    damaged: set[int],
    report: VerifyReport,
) -> State:
    frame = db.snapshot(row.sid, seq)
    if frame is None:
        raise CorruptionError("snapshot is missing", session_id=row.name, seq=seq)
    report.snapshots += 1
    seen: list[Ref] = []
    state = log.snapshot_state(row.name, row.sid, seq, frame, rehydrate=False, seen=seen)
    _refs(db, SNAPSHOT_REF, snap_id, seen, shared, damaged, report, row.name, seq, "snapshot")
    return state


def _refs(
    db: Database,
    kind: int,
    holder: int,
    seen: list[Ref],
    shared: set[int],
    damaged: set[int],
    report: VerifyReport,
    name: str,
    seq: int,
    what: str,
) -> None:
    """The chunks a frame uses must exist, be sound, add up to each value's length,
    and be exactly its recorded refs."""
    hashes = list({h for ref in seen for h in ref.chunk_hashes()})
    found = db.chunk_sizes(hashes) if hashes else {}
    if len(found) != len(hashes):
        missing = sorted(h.hex() for h in hashes if h not in found)
        report.add(f"{what} refers to missing chunk {missing[0]}", name, seq)
    else:
        for ref in seen:
            stored = sum(found[h][1] for h in ref.chunk_hashes())
            if stored != ref.length:
                report.add(f"{what} has a large value of {ref.length} bytes stored as {stored} bytes", name, seq)
    used = {cid for cid, _ in found.values()}
    if used & damaged:
        report.add(f"{what} uses damaged chunks {sorted(used & damaged)}: it cannot be loaded", name, seq)
    recorded = db.refs_of(kind, holder)
    unrecorded = used - recorded - shared
    if unrecorded:
        report.add(f"{what} uses chunks {sorted(unrecorded)} without recording it", name, seq)
    extra = recorded - used
    if extra:
        report.add(f"{what} records refs to chunks {sorted(extra)} it does not use", name, seq)
