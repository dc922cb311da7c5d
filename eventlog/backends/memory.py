"""A backend in plain Python structures (dicts, behind one lock): the second
implementation of :mod:`eventlog.backend`, which proves the seam is real, and a
fast store for tests.

Open one with ``eventlog.open("memory:")`` (a private store, gone when it is
closed) or ``eventlog.open("memory:NAME")``: every handle opened with the same name
in this process shares one store, which lives while any of them is open (so an
:func:`eventlog.open_async` store gets its reader threads, and tests can race
handles).  Nothing is ever written to disk; ``synchronous`` and ``busy_timeout``
do not apply.

One lock per store makes every unit of work and every ``reading()`` block atomic:
a write waits while another handle reads inside ``reading()``, and the chunk-GC
contract holds because checking a write's chunks, recording its references and
freeing chunks all happen under that lock.  Cells are held to ``max_cell_bytes``
as SQLite holds them (a row's other columns counted), and the reads check what they
return as a file's reads do, so a test that damages the structures
(:meth:`MemoryBackend.poke`) sees :class:`~eventlog.CorruptionError`.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from ..backend import (
    KEY_BYTES,
    Chunk,
    FeedRow,
    Freed,
    Head,
    KeyInUse,
    Limits,
    Listing,
    MissingChunks,
    NewEvent,
    NewSnapshot,
    Purged,
    RefKind,
    StoredEvent,
    WholeSession,
    advance,
    check_hashes,
    check_limit,
    check_name,
    check_position,
    check_sid,
    check_write,
    parse_cursor,
    read_chunk,
)
from ..errors import (
    ConflictError,
    CorruptionError,
    InvalidValueError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
)

#: What a path starts with to name an in-memory store of this backend.
PREFIX = "memory:"
#: Bytes a row's other columns take, as SQLite counts them (see
#: :meth:`eventlog.backends.sqlite.maintenance.Maintenance.integrity`).
_EVENT_ROOM, _SNAPSHOT_ROOM, _CHUNK_ROOM = 32, 24, 24 + 32


@dataclass
class _Session:
    name: str
    sid: int
    parent: str | None
    created_ms: int
    key: bytes | None = None
    seq: int = 0
    base: int = 0
    updated_ms: int = 0
    snap_seq: int = 0
    snap_bytes: int = 0
    snap_bytes_since: int = 0
    entries: int | None = None
    deleted_ms: int | None = None
    #: seq -> (pos, ts_ms, frame, refs)
    events: dict[int, tuple[Any, Any, Any, frozenset[bytes]]] = field(default_factory=dict)
    #: seq -> (frame, refs)
    snapshots: dict[Any, tuple[Any, frozenset[bytes]]] = field(default_factory=dict)

    def head(self) -> Head:
        values = (self.sid, self.seq, self.base, self.created_ms, self.updated_ms, self.snap_seq, self.snap_bytes,
                  self.snap_bytes_since)  # fmt: skip
        if (
            type(self.name) is not str
            or any(type(v) is not int for v in values)
            or not (self.key is None or (type(self.key) is bytes and len(self.key) == KEY_BYTES))
        ):
            raise CorruptionError(f"the sessions of the store are damaged: session {self.sid!r:.40} reads wrong")
        return Head(self.name, self.sid, self.parent, self.seq, self.base, self.created_ms, self.updated_ms,
                    self.snap_seq, self.snap_bytes, self.snap_bytes_since, self.key)  # fmt: skip


class _Store:
    """One in-memory store, shared by its handles."""

    def __init__(self, meta: Mapping[str, str | bytes], max_cell_bytes: int) -> None:
        self.lock = threading.RLock()
        self.meta = dict(meta)
        self.max_cell_bytes = max_cell_bytes
        self.sessions: dict[int, _Session] = {}  # by sid: creation order
        self.live: dict[str, int] = {}
        self.chunks: dict[bytes, Chunk] = {}
        self.uses: dict[bytes, int] = {}  # how many events and snapshots refer to each chunk
        self.next_sid = self.next_pos = 1
        self.handles = 0
        #: Writes so far, and the condition :class:`_Watcher`\ s wait on.
        self.version = 0
        self.changed = threading.Condition(self.lock)


_named: dict[str, _Store] = {}
_named_lock = threading.Lock()


class _Watcher:
    """Waits on the store's condition, which every write notifies."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._seen = store.version

    def wait(self, timeout: float) -> bool:
        with self._store.changed:
            if self._store.version == self._seen:
                self._store.changed.wait(max(timeout, 0.0))
            changed = self._store.version != self._seen
            self._seen = self._store.version
        return changed

    def close(self) -> None:
        pass


class MemoryBackend:
    """A handle on an in-memory store: ``name`` (``None``: a private store of its
    own) names one shared by every handle opened with that name in this process;
    ``new_meta`` is recorded when the store is made.  With ``readonly``, the store
    must exist and every write raises :class:`~eventlog.ReadOnlyError`.
    :meth:`handle` opens another handle on the same store."""

    def __init__(
        self,
        name: str | None = None,
        *,
        max_cell_bytes: int = 2_000_000,
        new_meta: Mapping[str, str | bytes] | None = None,
        readonly: bool = False,
        _store: _Store | None = None,
    ) -> None:
        check_position(max_cell_bytes, "max_cell_bytes", least=1024)
        if name is not None and type(name) is not str:
            raise InvalidValueError(f"an in-memory store's name must be a str, not {type(name).__name__}")
        with _named_lock:
            store = _store if _store is not None else _named.get(name) if name is not None else None
            if store is None:
                if readonly:
                    where = f"no in-memory store named {name!r}" if name is not None else "a private in-memory store"
                    raise InvalidValueError(f"readonly=True needs an existing store: {where} is made empty")
                store = _Store(new_meta or {}, max_cell_bytes)
                if name is not None:
                    _named[name] = store
            store.handles += 1
        self.name = name
        self._store = store
        self.meta: Mapping[str, str | bytes] = store.meta
        self.readonly = readonly
        self.limits = Limits(store.max_cell_bytes, None)
        self._closed = False
        self._reading = 0

    def handle(self, *, readonly: bool = False) -> MemoryBackend:
        """Another handle on this store."""
        self._check()
        return MemoryBackend(self.name, max_cell_bytes=self.limits.max_cell_bytes, readonly=readonly,
                             _store=self._store)  # fmt: skip

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _named_lock:
            self._store.handles -= 1
            if self._store.handles == 0 and self.name is not None and _named.get(self.name) is self._store:
                del _named[self.name]

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError("the in-memory store handle is closed")

    @contextmanager
    def reading(self) -> Iterator[None]:
        self._check()
        with self._store.lock:
            self._reading += 1
            try:
                yield
            finally:
                self._reading -= 1

    @contextmanager
    def _writing(self) -> Iterator[_Store]:
        """A unit of work: nothing it changed stays when it raises (each write
        checks everything before it changes anything)."""
        self._check()
        if self.readonly:
            raise ReadOnlyError("the in-memory store was opened read-only")
        if self._reading:
            raise StorageError("a write inside reading() (an engine bug: reads and writes are apart)")
        with self._store.lock:
            yield self._store
            self._store.version += 1
            self._store.changed.notify_all()

    def _read(self) -> _Store:
        self._check()
        return self._store

    # ------------------------------------------------------------------ sessions

    def head(self, name: str) -> Head | None:
        check_name(name)
        s = self._read()
        with s.lock:
            sid = s.live.get(name)
            return None if sid is None else s.sessions[sid].head()

    def heads(self, after: int, limit: int) -> list[Head]:
        check_position(after, "after")
        check_limit(limit)
        s = self._read()
        with s.lock:
            return [h for h in self._live(s) if h.sid > after][:limit]

    def names(self) -> list[str]:
        s = self._read()
        with s.lock:
            return [h.name for h in self._live(s) if h.seq > 0]

    def children(self, parents: Sequence[str]) -> list[Head]:
        if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence):  # a str is a sequence of names
            raise InvalidValueError(f"parents must be a sequence of session ids, not {type(parents).__name__}")
        wanted = set()
        for p in parents:
            wanted.add(check_name(p, "parent"))
        s = self._read()
        with s.lock:
            return [h for h in self._live(s) if h.parent in wanted]

    @staticmethod
    def _live(s: _Store) -> list[Head]:
        """The heads of the live incarnations, each read (checked) before anything
        compares its fields: a damaged one is :class:`~eventlog.CorruptionError`,
        never a ``TypeError``."""
        return [x.head() for x in s.sessions.values() if x.deleted_ms is None]

    def _listing(self, x: _Session) -> Listing:
        head = x.head()
        if not (x.entries is None or type(x.entries) is int):
            raise CorruptionError(f"the sessions of the store are damaged: entries reads {x.entries!r:.40}")
        stored = sum(len(e[2]) for e in x.events.values()) + sum(len(n[0]) for n in x.snapshots.values())
        return Listing(head, stored, x.entries)

    def info(self, name: str) -> Listing | None:
        check_name(name)
        s = self._read()
        with s.lock:
            sid = s.live.get(name)
            x = None if sid is None else s.sessions[sid]
            return None if x is None or x.seq == 0 else self._listing(x)

    def listing(self) -> list[Listing]:
        s = self._read()
        with s.lock:
            return [self._listing(s.sessions[h.sid]) for h in self._live(s) if h.seq > 0]

    # ------------------------------------------------------------------ reading

    def events(self, sid: int, after: int, upto: int | None = None) -> Iterator[StoredEvent]:
        check_sid(sid)
        check_position(after, "after")
        if upto is not None:
            check_position(upto, "upto")
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            found = [] if x is None else sorted(
                (q, e) for q, e in x.events.items() if after < q and (upto is None or q <= upto)
            )  # fmt: skip
            out = []
            for q, (pos, ts, frame, _) in found:
                if type(pos) is not int or type(ts) is not int or type(frame) is not bytes:
                    raise CorruptionError("an events row is damaged (a column has the wrong type)", seq=q)
                out.append(StoredEvent(q, pos, ts, frame))
        yield from out

    def last_seq(self, sid: int) -> int | None:
        check_sid(sid)
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            return max(x.events) if x is not None and x.events else None

    def entries(self, sid: int) -> int | None:
        check_sid(sid)
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            if x is None or x.entries is None:
                return None
            if type(x.entries) is not int:
                raise CorruptionError(f"the sessions of the store are damaged: entries reads {x.entries!r:.40}")
            return x.entries

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        check_sid(sid)
        check_position(upto, "upto")
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            seqs = [] if x is None else [q for q in x.snapshots if type(q) is int and q <= upto]
        return sorted(seqs, reverse=True)

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        check_sid(sid)
        check_position(seq, "seq")
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            found = None if x is None else x.snapshots.get(seq)
        if found is not None and type(found[0]) is not bytes:
            raise CorruptionError("a snapshots row is damaged (its frame is not a blob)", seq=seq)
        return None if found is None else found[0]

    def chunks(self, hashes: Collection[bytes]) -> dict[bytes, Chunk]:
        check_hashes(hashes)
        s = self._read()
        with s.lock:
            found = {h: s.chunks[h] for h in hashes if h in s.chunks}
        return {h: read_chunk(c.hash, c.flags, c.size, c.data, "the store's chunks") for h, c in found.items()}

    def chunk_sizes(self, hashes: Collection[bytes]) -> dict[bytes, int]:
        return {h: c.size for h, c in self.chunks(hashes).items()}

    def refs(self, kind: RefKind, sid: int, seq: int = 0) -> set[bytes]:
        check_sid(sid)
        check_position(seq, "seq")
        s = self._read()
        with s.lock:
            x = s.sessions.get(sid)
            if kind == RefKind.EVENT:
                held = x.events.get(seq) if x is not None else None
                return set(held[3]) if held is not None else set()
            if kind == RefKind.SNAPSHOT:
                snap = x.snapshots.get(seq) if x is not None else None
                return set(snap[1]) if snap is not None else set()
            if kind == RefKind.SESSION:
                return set()
        raise InvalidValueError(f"kind must be a RefKind, not {kind!r:.40}")

    def feed(self, after: str, limit: int) -> list[FeedRow]:
        start = parse_cursor(after)
        check_limit(limit)
        s = self._read()
        with s.lock:
            found = heapq.nsmallest(
                limit,
                ((e[0], x, q, e) for x in s.sessions.values() for q, e in x.events.items() if e[0] > start),
                key=lambda t: t[0],
            )
            out = []
            for pos, x, q, (_, ts, frame, _refs) in found:
                if type(ts) is not int or type(frame) is not bytes:
                    raise CorruptionError("an events row is damaged (a column has the wrong type)", seq=q)
                out.append(FeedRow(str(pos), x.name, x.sid, x.key, StoredEvent(q, pos, ts, frame)))
        return out

    def watcher(self) -> _Watcher:
        return _Watcher(self._read())

    # ------------------------------------------------------------------ writing

    def _fits(self, s: _Store, size: int, room: int) -> None:
        if size + room > s.max_cell_bytes:
            raise StorageError(f"a cell was over the length limit while writing (eventlog bug): {size} bytes")

    def _chunks_for(self, s: _Store, chunks: Sequence[Chunk], refs: Collection[bytes]) -> list[Chunk]:
        """The given chunks to store for ``refs`` (checked to fit), or
        :class:`~eventlog.backend.MissingChunks`."""
        given = {c.hash: c for c in chunks}
        missing = [h for h in set(refs) if h not in s.chunks]
        lost = [h for h in missing if h not in given]
        if lost:
            raise MissingChunks(lost)
        for h in missing:
            self._fits(s, len(given[h].data), _CHUNK_ROOM)
        return [given[h] for h in missing]

    @staticmethod
    def _use(s: _Store, new: Collection[Chunk], refs: Collection[bytes], by: int = 1) -> None:
        for c in new:
            s.chunks[c.hash] = c
        for h in refs:
            s.uses[h] = s.uses.get(h, 0) + by

    @staticmethod
    def _free_unused(s: _Store, hashes: Collection[bytes]) -> None:
        for h in hashes:
            if not s.uses.get(h):
                s.uses.pop(h, None)
                s.chunks.pop(h, None)

    def append(
        self, events: Sequence[NewEvent], chunks: Sequence[Chunk] = (), *, whole_tree: bool = False
    ) -> list[Head]:
        events, chunks = check_write(events, chunks, whole_tree)
        if not events:
            return []
        with self._writing() as s:
            targets = [self._before(s, ev) for ev in events]
            if whole_tree:
                kept = {t.sid for t in targets if t is not None}
                names = {ev.name for ev in events}
                for other in s.sessions.values():
                    if other.deleted_ms is None and other.parent in names and other.sid not in kept:
                        raise ConflictError(f"session {other.name!r:.200} was created under it meanwhile",
                                            session_id=other.parent)  # fmt: skip
            for ev in events:
                if ev.key is not None:
                    self._key_free(s, ev.key, ev.name)
            refs = frozenset().union(*(ev.refs for ev in events))
            new = self._chunks_for(s, chunks, refs)
            frames: list[bytes] = []
            sids: list[int] = []
            fresh = s.next_sid
            for ev, target in zip(events, targets, strict=True):
                if target is None:
                    sids.append(fresh)
                    fresh += 1
                else:
                    sids.append(target.sid)
                frame = ev.frame
                self._fits(s, len(frame), _EVENT_ROOM)
                frames.append(frame)
            # Everything is checked: from here on nothing raises.
            self._use(s, new, ())
            s.next_sid = fresh
            out = []
            for ev, target, sid, frame in zip(events, targets, sids, frames, strict=True):
                x = target
                if x is None:
                    x = _Session(ev.name, sid, ev.parent, ev.ts_ms, ev.key)
                    s.sessions[sid] = x
                    s.live[x.name] = sid
                elif ev.key is not None:  # (a session row with no event yet)
                    x.key = ev.key
                x.events[ev.seq] = (s.next_pos, ev.ts_ms, frame, ev.refs)
                s.next_pos += 1
                self._use(s, (), ev.refs)
                x.seq, x.updated_ms, x.entries = ev.seq, ev.ts_ms, ev.entries
                x.snap_bytes_since += ev.size
                if ev.tombstone:
                    x.deleted_ms = ev.ts_ms
                    del s.live[x.name]
                out.append(replace(x.head()))
        return out

    def _before(self, s: _Store, ev: NewEvent) -> _Session | None:
        sid = s.live.get(ev.name)
        x = None if sid is None else s.sessions[sid]
        if ev.sid is None:
            if x is None or x.seq == 0:
                return x
        elif x is not None and x.sid == ev.sid and x.seq == ev.seq - 1:
            return x
        found = 0 if x is None else x.seq
        raise ConflictError(f"the session's head is {found}, not {ev.seq - 1}", session_id=ev.name, seq=found)

    @staticmethod
    def _key_free(s: _Store, key: bytes, name: str) -> None:
        if any(x.key == key for x in s.sessions.values()):
            raise KeyInUse(key, name)

    def put_session(self, session: WholeSession, chunks: Sequence[Chunk] = ()) -> Head:
        if not isinstance(session, WholeSession):
            raise InvalidValueError(f"session must be a WholeSession, not {type(session).__name__}")
        _, chunks = check_write((), chunks)
        w = session
        refs = w.refs
        with self._writing() as s:
            sid = s.live.get(w.name)
            old = None if sid is None else s.sessions[sid]
            if old is not None and old.seq > 0:
                raise ConflictError("the session exists", session_id=w.name, seq=old.seq)
            self._key_free(s, w.key, w.name)
            new = self._chunks_for(s, chunks, refs)
            for e in w.events:
                self._fits(s, len(e.frame), _EVENT_ROOM)
            for n in w.snapshots:
                self._fits(s, len(n.frame), _SNAPSHOT_ROOM)
            # Everything is checked: from here on nothing raises.
            self._use(s, new, ())
            if old is not None:
                old.deleted_ms = old.updated_ms
            x = _Session(w.name, s.next_sid, w.parent, w.created_ms, w.key, w.seq, w.base, w.updated_ms)
            s.next_sid += 1
            x.entries = w.entries
            for e in w.events:
                x.events[e.seq] = (s.next_pos, e.ts_ms, e.frame, e.refs)
                s.next_pos += 1
                self._use(s, (), e.refs)
            for n in w.snapshots:
                x.snapshots[n.seq] = (n.frame, n.refs)
                self._use(s, (), n.refs)
            x.snap_seq, x.snap_bytes, x.snap_bytes_since = w.policy
            s.sessions[x.sid] = x
            s.live[x.name] = x.sid
            return x.head()

    def put_snapshot(self, snapshot: NewSnapshot, chunks: Sequence[Chunk] = ()) -> bool:
        if not isinstance(snapshot, NewSnapshot):
            raise InvalidValueError(f"snapshot must be a NewSnapshot, not {type(snapshot).__name__}")
        _, chunks = check_write((), chunks)
        n = snapshot
        with self._writing() as s:
            x = s.sessions.get(n.sid)
            if x is None or x.deleted_ms is not None or x.seq < n.seq or (n.floor and x.base >= n.seq):
                return False
            new = self._chunks_for(s, chunks, n.refs)
            self._fits(s, len(n.frame), _SNAPSHOT_ROOM)
            self._use(s, new, n.refs)
            dropped: set[bytes] = set()
            old = x.snapshots.pop(n.seq, None)
            if old is not None:
                self._use(s, (), old[1], -1)
                dropped |= old[1]
            x.snapshots[n.seq] = (n.frame, n.refs)
            if x.snap_seq < n.seq:
                x.snap_seq, x.snap_bytes, x.snap_bytes_since = n.seq, n.size, 0
            if n.floor:
                x.base = n.seq
            if n.keep is not None:
                newest = sorted((q for q in x.snapshots if type(q) is int), reverse=True)[: n.keep]
                for q in [q for q in x.snapshots if q != x.base and (type(q) is not int or q < min(newest))]:
                    refs = x.snapshots.pop(q)[1]
                    self._use(s, (), refs, -1)
                    dropped |= refs
            self._free_unused(s, dropped)
        return True

    def rewrite_chunk(self, chunk: Chunk) -> bool:
        if not isinstance(chunk, Chunk):
            raise InvalidValueError(f"chunk must be a Chunk, not {type(chunk).__name__}")
        with self._writing() as s:
            if chunk.hash not in s.chunks:
                return False
            self._fits(s, len(chunk.data), _CHUNK_ROOM)
            s.chunks[chunk.hash] = chunk
        return True

    # ------------------------------------------------------------------ compaction steps

    def counts(self) -> tuple[int, int, int]:
        s = self._read()
        with s.lock:
            live = sum(1 for x in s.sessions.values() if x.deleted_ms is None)
            return live, len(s.sessions) - live, len(s.chunks)

    def dead(self, limit: int) -> list[int]:
        check_limit(limit)
        s = self._read()
        with s.lock:
            return [x.sid for x in s.sessions.values() if x.deleted_ms is not None][:limit]

    def purge(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")
        with self._writing() as s:
            x = s.sessions.get(sid)
            if x is None:
                return Purged(0, 0, True)
            if x.deleted_ms is None:
                raise InvalidValueError(f"session {sid} is live: only an ended incarnation is purged")
            events, snapshots = self._remove(s, x, 1 << 62, 1 << 62, batch)
            done = not events and not snapshots
            if done:
                del s.sessions[sid]
        return Purged(events, snapshots, done)

    def _remove(self, s: _Store, x: _Session, upto: int, below: int, batch: int) -> tuple[int, int]:
        """Events at or below ``upto`` and snapshots below ``below``, up to ``batch``
        of each, oldest first; their chunks are left to :meth:`free_chunks`."""
        events = sorted(q for q in x.events if q <= upto)[:batch]
        for q in events:
            self._use(s, (), x.events.pop(q)[3], -1)
        snaps = sorted((q for q in x.snapshots if type(q) is not int or q < below), key=str)[:batch]
        for q in snaps:
            self._use(s, (), x.snapshots.pop(q)[1], -1)
        return len(events), len(snaps)

    def scrub(self) -> None:
        with self._writing():  # a write like any other (refused read-only), though nothing of a
            pass  # removed session is kept anywhere

    def legacy(self, after: int, limit: int) -> list[Head]:
        check_position(after, "after")
        check_limit(limit)
        return []  # whole-session references come from SQLite files of schema version 1 only

    def adopt_refs(
        self, sid: int, events: Mapping[int, Collection[bytes]], snapshots: Mapping[int, Collection[bytes]]
    ) -> None:
        check_sid(sid)
        for held in (*events.values(), *snapshots.values()):
            check_hashes(held, "refs")
        with self._writing() as s:
            x = s.sessions.get(sid)
            if x is None:
                return
            wanted = {h for held in (*events.values(), *snapshots.values()) for h in held}
            self._chunks_for(s, (), wanted)
            for seq, held in events.items():
                if seq in x.events:
                    pos, ts, frame, refs = x.events[seq]
                    added = frozenset(held) - refs
                    x.events[seq] = (pos, ts, frame, refs | added)
                    self._use(s, (), added)
            for seq, held in snapshots.items():
                if seq in x.snapshots:
                    frame, refs = x.snapshots[seq]
                    added = frozenset(held) - refs
                    x.snapshots[seq] = (frame, refs | added)
                    self._use(s, (), added)

    def trim(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")
        with self._writing() as s:
            x = s.sessions.get(sid)
            if x is None or x.deleted_ms is not None or not x.base:
                return Purged(0, 0, True)
            events, snapshots = self._remove(s, x, x.base, x.base, batch)
        return Purged(events, snapshots, not events and not snapshots)

    def free_chunks(self, after: bytes, batch: int) -> Freed:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(batch, "batch")
        with self._writing() as s:
            page = heapq.nsmallest(batch, (h for h in s.chunks if h > after))
            if not page:
                return Freed(None, 0, 0)
            last = advance(after, page[-1], "chunks")
            garbage = [h for h in page if not s.uses.get(h)]
            size = sum(len(s.chunks[h].data) for h in garbage)
            self._free_unused(s, garbage)
        return Freed(last, len(garbage), size)

    # ------------------------------------------------------------------ maintenance

    def checkpoint(self) -> bool:
        self._check()
        return True

    def vacuum(self) -> None:
        self._check()

    def integrity(self, limit: int) -> list[str]:
        """The structures' own invariants: every reference names a stored chunk, the
        reference counts are right, no cell is over the budget, and every row reads
        as the types it was written with."""
        check_limit(limit)
        s = self._read()
        out: list[str] = []
        with s.lock:
            uses: dict[bytes, int] = {}
            for x in s.sessions.values():
                try:
                    x.head()
                except CorruptionError as damaged:
                    out.append(damaged.message)
                for q, e in x.events.items():
                    if type(q) is not int or type(e[0]) is not int or type(e[1]) is not int:
                        out.append(f"session {x.name!r:.200}: event {q!r:.40} reads values of the wrong type")
                holders = [(f"event {q}", e[3], e[2], _EVENT_ROOM) for q, e in x.events.items()]
                holders += [(f"snapshot {q!r:.40}", n[1], n[0], _SNAPSHOT_ROOM) for q, n in x.snapshots.items()]
                for what, refs, frame, room in holders:
                    for h in refs:
                        uses[h] = uses.get(h, 0) + 1
                        if h not in s.chunks:
                            out.append(f"session {x.name!r:.200}: {what} refers to chunk {h.hex()}, which is missing")
                    if type(frame) is not bytes:
                        out.append(f"session {x.name!r:.200}: {what} reads a frame of the wrong type")
                    elif len(frame) + room > s.max_cell_bytes:
                        out.append(f"session {x.name!r:.200}: {what} holds {len(frame) + room} bytes, over the budget")
                for q in x.snapshots:
                    if type(q) is not int:
                        out.append(f"session {x.name!r:.200}: a snapshot is at position {q!r:.40}, not in the log: "
                                   "its row is damaged")  # fmt: skip
            if uses != {h: n for h, n in s.uses.items() if n}:
                out.append("the reference counts of the chunks are wrong")
            for h, c in s.chunks.items():
                try:
                    read_chunk(c.hash, c.flags, c.size, c.data, f"chunk {h.hex()}")
                except CorruptionError as damaged:
                    out.append(damaged.message)
                if type(c.data) is not bytes or len(c.data) + _CHUNK_ROOM > s.max_cell_bytes or c.hash != h:
                    out.append(f"chunk {h.hex()} is over the budget or stored under another address")
        return out[:limit]

    def chunk_page(self, after: bytes, limit: int) -> list[Chunk]:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(limit)
        s = self._read()
        with s.lock:
            page = heapq.nsmallest(limit, (h for h in s.chunks if h > after))
            return [read_chunk(c.hash, c.flags, c.size, c.data, "the store's chunks")
                    for c in (s.chunks[h] for h in page)]  # fmt: skip

    def unreferenced_chunks(self) -> int:
        s = self._read()
        with s.lock:
            return sum(1 for h in s.chunks if not s.uses.get(h))

    def stats(self) -> dict[str, Any]:
        s = self._read()
        with s.lock:
            events = [len(e[2]) for x in s.sessions.values() for e in x.events.values()]
            snaps = [len(n[0]) for x in s.sessions.values() for n in x.snapshots.values()]
            data = [len(c.data) for c in s.chunks.values()]
            names = [len(x.name) for x in s.sessions.values()]

            def table(sizes: list[int]) -> dict[str, int]:
                return {"rows": len(sizes), "bytes": sum(sizes), "largest": max(sizes, default=0)}

            out: dict[str, Any] = {"events": table(events), "snapshots": table(snaps), "chunks": table(data),
                                   "sessions": table(names)}  # fmt: skip
            out["chunks"]["raw_bytes"] = sum(c.size for c in s.chunks.values())
            out["refs"] = {"rows": sum(s.uses.values())}
            used = [s.chunks[h].size * n for h, n in s.uses.items() if h in s.chunks]
            out["chunks"]["referenced_raw_bytes"] = sum(used)
            behind = [x.seq - max(x.snap_seq, x.base) for x in s.sessions.values() if x.deleted_ms is None]
            out["snapshots"]["events_after_newest"] = (sum(behind), max(behind, default=0))
            out["file_bytes"] = sum(events) + sum(snaps) + sum(data)
        return out

    # ------------------------------------------------------------------ for tests

    def poke(self, change: Any) -> None:
        """Run ``change(store)`` on the raw structures, under the lock: how a test
        damages a store (a frame of the wrong type, a lost event) to see that the
        reads report it."""
        s = self._read()
        with s.lock:
            change(s)
