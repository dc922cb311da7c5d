"""Checking a whole store: what ``Store.verify()`` and ``eventlog verify`` report.

Checked, in one consistent view of the store (even while others write):

* the backend's own check of its storage (:meth:`eventlog.backend.Backend.integrity`;
  for SQLite: ``PRAGMA integrity_check``, every page, b-tree and index of the file,
  an index that disagrees with its table, a damaged page, free space that is not
  free; each AUTOINCREMENT counter at least its table's largest id, so positions
  are never reused; every ref naming an existing chunk and an existing event,
  snapshot or session; no event, snapshot, chunk or session row over the cell
  budget; no event or snapshot left without its session; no row whose columns read
  values of the wrong type);
* every chunk decompresses (bounded) to bytes whose BLAKE3 (keyed with the store's
  ``chunk_key``, if it has one) is its address, and
  each event or snapshot using a damaged one is named;
* every live session replays from the start of its history (or its compacted
  floor) to its head and no further, event by event, each event's recorded refs
  being exactly the chunks it uses, each large value's chunks adding up to its
  length, and each snapshot decoding to the state that replay reaches at its
  position; the number of entries recorded with its head (what ``eventlog
  sessions`` lists) is the number replay ends with.

Damage the backend reports while reading (a page SQLite cannot parse, a row that
reads wrong) ends the check with one problem saying so; ``verify`` itself never
raises for what it finds.  Chunks are named by their address.

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

from .backend import Backend, Head, RefKind, advance
from .chunks import hashes_of
from .codec import DecodeError, Ref
from .errors import CorruptionError, EventLogError
from .fold import State, apply
from .log import Log
from .progress import Progress
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


def verify(backend: Backend, log: Log, progress: Progress | None = None) -> VerifyReport:
    """Check everything listed in the module docstring.  ``progress`` (see
    :mod:`eventlog.progress`) is told of the steps ``"integrity"`` (the backend's
    check of its storage, no total), ``"chunks"`` and ``"sessions"``."""
    report = VerifyReport()
    tell = progress or _silent
    with backend.reading():
        try:
            sessions, _, chunks = backend.counts() if progress else (0, 0, 0)
            tell("integrity", 0, None)
            for problem in backend.integrity(_MAX_REPORTED):
                report.add(problem)
            tell("chunks", 0, chunks)
            damaged = _chunks(backend, log, report, tell, chunks)
            report.garbage_chunks = backend.unreferenced_chunks()
            tell("sessions", 0, sessions)
            after = 0
            while rows := backend.heads(after, 100):
                for row in rows:
                    _session(backend, log, row, damaged, report)
                    tell("sessions", report.sessions, max(sessions, report.sessions))
                after = advance(after, rows[-1].sid, "sessions")
        except EventLogError as e:  # the backend could not read on: its storage is damaged
            report.add(f"checking stopped: {e.message}", e.session_id, e.seq)
    return report


def _silent(step: str, done: int, total: int | None) -> None:
    pass


def _chunks(backend: Backend, log: Log, report: VerifyReport, tell: Progress, total: int) -> set[bytes]:
    """Check every chunk; returns the addresses of the damaged ones."""
    damaged: set[bytes] = set()
    after = b""
    while page := backend.chunk_page(after, 16):
        for chunk in page:
            report.chunks += 1
            try:
                log.chunks.open(chunk.hash, chunk.flags, chunk.size, chunk.data)
            except DecodeError as e:
                damaged.add(chunk.hash)
                report.add(f"chunk {chunk.hash.hex()}: {e}")
        tell("chunks", report.chunks, max(total, report.chunks))
        after = advance(after, page[-1].hash, "chunks")
    return damaged


def _session(backend: Backend, log: Log, row: Head, damaged: set[bytes], report: VerifyReport) -> None:
    """Replay one live session, checking refs and snapshots on the way."""
    name, sid = row.name, row.sid
    report.sessions += 1
    shared = backend.refs(RefKind.SESSION, sid)  # version 1 files: refs of the whole session
    snap_seqs = set(backend.snapshot_seqs(sid, 1 << 62))
    for seq in sorted(snap_seqs):
        if seq > row.seq:
            report.add(f"a snapshot is at position {seq!r}, not in the log: its row is damaged", name)
    state = State()
    expected = row.base + 1
    try:
        if row.base:
            if row.base not in snap_seqs:
                report.add("the snapshot holding the compacted history is missing", name, row.base)
                return
            state = _snapshot(backend, log, row, row.base, shared, damaged, report)
        for stored in backend.events(sid, row.base):
            seq = stored.seq
            if seq > row.seq:
                report.add(f"the log goes on after the session's head ({row.seq}): the head is damaged", name, seq)
                return
            if seq != expected:
                report.add("event is missing", name, expected)
                return
            expected += 1
            report.events += 1
            seen: list[Ref] = []
            event = log.event(name, sid, row.key, seq, stored.pos, stored.ts_ms, stored.frame, rehydrate=False,
                              seen=seen)  # fmt: skip
            _refs(backend, RefKind.EVENT, row, seq, seen, shared, damaged, report, "event")
            try:
                apply(state, event.ops)
            except ValueError as e:
                report.add(f"event does not apply: {e}", name, seq)
                return
            if seq in snap_seqs:
                try:
                    snap = _snapshot(backend, log, row, seq, shared, damaged, report)
                except EventLogError as e:
                    report.add(f"snapshot is unreadable (loads fall back to replay): {e.message}", name, seq)
                    continue
                if not (same(snap.fields, state.fields) and same(snap.entries, state.entries)):
                    report.add("snapshot differs from the replayed session", name, seq)
        if expected != row.seq + 1:
            report.add("the log ends before the session's head", name, expected)
            return
        listed = backend.info(name)
    except EventLogError as e:
        report.add(f"does not fold: {e.message}", name, e.seq)
        return
    recorded = None if listed is None else listed.entries
    if recorded is not None and recorded != len(state.entries):
        report.add(f"the entry count recorded with the head reads {recorded!r:.40}, the log folds to "
                   f"{len(state.entries)} entries", name, row.seq)  # fmt: skip


def _snapshot(
    backend: Backend,
    log: Log,
    row: Head,
    seq: int,
    shared: set[bytes],
    damaged: set[bytes],
    report: VerifyReport,
) -> State:
    frame = backend.snapshot(row.sid, seq)
    if frame is None:
        raise CorruptionError("snapshot is missing", session_id=row.name, seq=seq)
    report.snapshots += 1
    seen: list[Ref] = []
    state = log.snapshot_state(row.name, row.sid, row.key, seq, frame, rehydrate=False, seen=seen)
    _refs(backend, RefKind.SNAPSHOT, row, seq, seen, shared, damaged, report, "snapshot")
    return state


def _refs(
    backend: Backend,
    kind: RefKind,
    row: Head,
    seq: int,
    seen: list[Ref],
    shared: set[bytes],
    damaged: set[bytes],
    report: VerifyReport,
    what: str,
) -> None:
    """The chunks a frame uses must exist, be sound, add up to each value's length,
    and be exactly its recorded refs."""
    name = row.name
    used = hashes_of(seen)
    found = backend.chunk_sizes(used) if used else {}
    if len(found) != len(used):
        missing = sorted(h.hex() for h in used if h not in found)
        report.add(f"{what} refers to missing chunk {missing[0]}", name, seq)
    else:
        for ref in seen:
            stored = sum(found[h] for h in ref.chunk_hashes())
            if stored != ref.length:
                report.add(f"{what} has a large value of {ref.length} bytes stored as {stored} bytes", name, seq)
    if used & damaged:
        report.add(f"{what} uses damaged chunks {_named(used & damaged)}: it cannot be loaded", name, seq)
    recorded = backend.refs(kind, row.sid, seq)
    unrecorded = {h for h in used if h in found} - recorded - shared
    if unrecorded:
        report.add(f"{what} uses chunks {_named(unrecorded)} without recording it", name, seq)
    extra = recorded - used
    if extra:
        report.add(f"{what} records refs to chunks {_named(extra)} it does not use", name, seq)


def _named(hashes: set[bytes] | frozenset[bytes]) -> str:
    """Chunk addresses, for a message."""
    return "[" + ", ".join(sorted(h.hex() for h in hashes)) + "]"
