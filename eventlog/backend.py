"""The storage seam: what the engine asks of a backend, in bytes.

Everything above this line (:mod:`eventlog.store`, :mod:`eventlog.log`,
:mod:`eventlog.chunks`, :mod:`eventlog.compaction`, :mod:`eventlog.verify`, ...)
knows sessions, values, events, frames and snapshots; everything below it
(:mod:`eventlog.backends.sqlite`, :mod:`eventlog.backends.memory`) knows files,
connections, transactions, SQL and locks.  Neither knows the other's half:

* **Bytes only.**  A backend sees session ids (``str``), incarnation ids (``int``,
  its own), incarnation keys (16 ``bytes``, the engine's), positions (``int``),
  timestamps (``int``, Unix ms), frames (``bytes``), chunk addresses (32-byte
  ``bytes``) and chunk bytes with their flags and raw size.
  Never a session, an operation, CBOR or zstd: it stores what it is given and
  returns it as stored.  The engine never sees SQL, a connection or a cursor.

* **Units of work.**  Every write method is one atomic transaction that happens
  entirely or raises, and writes nothing then.  The engine never opens or commits
  a transaction: it calls one method.  Reads that must agree with each other (a
  load: the head, a snapshot, the events after it, their chunks) run inside
  ``with backend.reading():``, one consistent view of the store (re-entrant).  No
  write method is called inside ``reading()``.

* **Optimistic writes.**  The engine reads a session's head, computes and encodes
  the event outside any transaction, then calls :meth:`Backend.append` with the
  head it read (``NewEvent.seq`` is that head plus one).  The backend checks the
  head inside its transaction: if it moved, :class:`~eventlog.ConflictError` and
  nothing is written; the engine catches up and tries again (a ``save()`` without
  ``expected_seq``), or hands the conflict to its caller.

* **Chunks travel with what uses them.**  The engine cuts, addresses (BLAKE3, keyed
  or not) and compresses chunks itself.  It asks :meth:`Backend.chunk_sizes` which
  of its chunks are stored already (outside any transaction), and passes the data
  of the others with the write.  Inside the write's transaction the backend stores
  the given chunks that are absent (a chunk already stored is kept as it is),
  checks that every chunk the event or snapshot refers to is stored, and records
  the references.  If one is neither stored nor given (freed meanwhile by
  compaction), it raises :class:`MissingChunks` naming them and writes nothing;
  the engine tries again with their data.

**The chunk-GC contract.**  *A chunk referenced by a committed event or snapshot is
never freed while that event or snapshot exists.*  Every backend keeps it by three
rules, which the conformance suite (:mod:`eventlog.conformance`) races:

1. an event or snapshot and its references are written, and deleted, in the same
   transaction;
2. chunks are freed (:meth:`~Backend.free_chunks`, and when a write drops a
   snapshot) only when nothing refers to them, checked in the transaction that
   frees them;
3. a write's check that the chunks it refers to exist and its recording of the
   references are in the same transaction as the event or snapshot, serialised
   against any freeing: a concurrent free and write cannot both succeed on the same
   chunk (SQLite: one writer at a time; the memory backend: one lock; a server
   database: a foreign key from references to chunks, or row locks, so that one of
   the two conflicts and is retried).

**Sessions and incarnations.**  A session id names at most one *live* incarnation
at a time.  :meth:`Backend.append` creates one (``NewEvent.sid`` is ``None``), and
so does :meth:`Backend.put_session` (with a whole history, copied from another
store); a tombstone (``NewEvent.tombstone``) ends it, and the same id can then be
created again as a new incarnation with a new :attr:`Head.sid`.  An incarnation's
events, snapshots and references stay stored after its tombstone until compaction
purges them (:meth:`~Backend.dead`, :meth:`~Backend.purge`).  Each incarnation has
two identities: its ``sid``, the backend's own, given when it is created and never
again in the store, by which the engine names it in every call; and its ``key``,
16 bytes the engine makes before the first event and the backend keeps (no two
incarnations stored in one backend share one), to which frames are bound (their
CRC): so frames do not depend on anything the backend gives, and a session moves to
another store with its frames.

**Errors.**  A backend raises only eventlog's errors (:mod:`eventlog.errors`): its
driver's errors are translated in one place of its own.  A row that reads wrong (a
column of the wrong type, a missing row where one must be) is
:class:`~eventlog.CorruptionError`, never a crash, a wrong value or a loop; an
argument of the wrong type or out of range is :class:`~eventlog.InvalidValueError`
(checked by the records here and by :func:`check_sid` and friends).  A backend
never decides what is damage in a frame or a chunk's bytes: that is caught above
it, where the bytes are decoded and verified.

**Proving a backend.**  :mod:`eventlog.conformance` holds the suite every backend
passes, in pytest classes: subclass :class:`eventlog.conformance.BackendTests`,
give it a factory (``make_backend()``, ``another_handle()``), and run it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import ConflictError, CorruptionError, InvalidValueError, StorageError

#: Length of a chunk address (a BLAKE3 digest).
HASH_BYTES = 32
#: Length of an incarnation's key.
KEY_BYTES = 16
#: Largest position or id a backend is asked to store (a signed 64-bit integer).
MAX_INT = (1 << 63) - 1


class RefKind(enum.IntEnum):
    """What holds a reference to a chunk (see :meth:`Backend.refs`)."""

    EVENT = 0
    SNAPSHOT = 1
    #: A whole session's references, as files of SQLite schema version 1 recorded
    #: them (until compaction gives each event and snapshot its own).
    SESSION = 2


@dataclass(frozen=True, slots=True)
class Limits:
    """What a backend can store.  ``max_cell_bytes``: no frame or chunk over it is
    stored (a write of one raises :class:`~eventlog.StorageError` and writes
    nothing); every frame or chunk up to ``max_cell_bytes - 512`` bytes is.
    ``max_params``: the most values one statement may bind, where the backend has
    such a limit (SQLite here: 100), ``None`` where it has none; the backend batches
    its statements under it, whatever the size of a call."""

    max_cell_bytes: int
    max_params: int | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """A live session as stored: its id ``name``, its incarnation ``sid`` (the
    backend's id, given when it was created and never given again in the store) and
    ``key`` (the engine's, made when it was created, kept by copies: see below),
    ``parent`` (the id recorded when it was created), ``seq`` (its head: the
    position of its last event), ``base`` (the start of its history: events at or
    below it were folded into the snapshot at ``base``, 0 unless compacted),
    ``created_ms`` and ``updated_ms`` (Unix ms), and the snapshot policy's
    bookkeeping, which the engine owns: ``snap_seq`` (its newest snapshot's
    position), ``snap_bytes`` (what writing it took) and ``snap_bytes_since`` (the
    ``size`` of the events since)."""

    name: str
    sid: int
    parent: str | None
    seq: int
    base: int
    created_ms: int
    updated_ms: int
    snap_seq: int
    snap_bytes: int
    snap_bytes_since: int
    #: The incarnation's stable identity (:data:`KEY_BYTES` bytes, what its frames
    #: are bound to since format version 3); ``None`` only for a session stored
    #: before keys, read through an older schema (a read-only open).
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Listing:
    """A session as :meth:`Backend.info` and :meth:`Backend.listing` show it: its
    head, ``stored_bytes`` (the lengths of its event and snapshot frames; chunks are
    shared and not counted) and ``entries`` (the number the engine recorded with its
    last event, ``None`` where none was)."""

    head: Head
    stored_bytes: int
    entries: int | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: its position ``seq`` in its session, ``pos`` (its global
    position: it increases with every event appended to the store and is never
    given again, even after events are deleted), ``ts_ms`` and its ``frame``."""

    seq: int
    pos: int
    ts_ms: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class FeedRow:
    """An event as :meth:`Backend.feed` reads it: where to resume after it
    (``cursor``), its session's id ``name``, incarnation ``sid`` and ``key``, and
    the event as stored."""

    cursor: str
    name: str
    sid: int
    key: bytes | None
    event: StoredEvent


class Watcher(Protocol):
    """A way to wait for commits (:meth:`Backend.watcher`): its own connection or
    equivalent, so that waiting never holds the handle the engine reads and writes
    with."""

    def wait(self, timeout: float) -> bool:
        """Block until a commit may have happened in the store (by any handle, in
        any process) since the previous call, or the first, returned: ``True``; or
        until ``timeout`` seconds passed: ``False``.  A ``True`` may be spurious; a
        commit is never missed for longer than the backend's fallback poll."""

    def close(self) -> None:
        """Release it (idempotent)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk: its address ``hash``, ``flags`` (how ``data`` is stored: the
    engine's), ``size`` (the length of its content once read back) and the stored
    ``data``."""

    hash: bytes
    flags: int
    size: int
    data: bytes

    def __post_init__(self) -> None:
        check_hash(self.hash)
        if type(self.flags) is not int or type(self.size) is not int or not (0 <= self.size <= MAX_INT):
            raise InvalidValueError(f"a chunk's flags and size must be ints, not {self.flags!r:.40}, {self.size!r:.40}")
        if type(self.data) is not bytes:
            raise InvalidValueError(f"a chunk's data must be bytes, not {type(self.data).__name__}")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event for :meth:`Backend.append`.

    ``name``: the session id.  ``sid``: the live incarnation it extends, whose head
    must be ``seq - 1``; ``None`` to create the session (``seq`` must be 1; no live
    incarnation of ``name`` may have events), recording ``key`` (required then, and
    only then: the new incarnation's key, used by no incarnation stored, else
    :class:`KeyInUse`), ``parent`` and ``created_ms = ts_ms``.  ``frame``: its
    bytes.  ``size``: what the snapshot policy counts (added to
    ``snap_bytes_since``).  ``refs``: the addresses of every chunk the frame uses.
    ``entries``: recorded with the head (see :class:`Listing`).  ``tombstone``: the
    incarnation ends with this event (its name is free from then on)."""

    name: str
    sid: int | None
    seq: int
    ts_ms: int
    frame: bytes
    size: int
    refs: frozenset[bytes] = frozenset()
    entries: int | None = None
    parent: str | None = None
    tombstone: bool = False
    key: bytes | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.sid is not None:
            check_sid(self.sid)
            if self.key is not None:
                raise InvalidValueError("a key is given only to create a session (sid None)")
        else:
            if self.seq != 1:
                raise InvalidValueError(f"a new session's first event is at 1, not {self.seq!r:.40}")
            check_key(self.key)
        check_position(self.seq, "seq", least=1)
        check_position(self.ts_ms, "ts_ms")
        check_position(self.size, "size")
        if type(self.frame) is not bytes:
            raise InvalidValueError(f"a frame must be bytes, not {type(self.frame).__name__}")
        check_hashes(self.refs, "refs")
        if self.entries is not None:
            check_position(self.entries, "entries")
        if self.parent is not None:
            check_name(self.parent, "parent")
        if type(self.tombstone) is not bool:
            raise InvalidValueError("tombstone must be True or False")


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """A snapshot for :meth:`Backend.put_snapshot`: of incarnation ``sid`` at
    position ``seq``, its ``frame``, ``size`` (what writing it took, recorded as
    ``snap_bytes`` for the policy) and ``refs`` (every chunk it uses).  ``keep``:
    afterwards drop all the incarnation's snapshots but the newest ``keep`` and the
    one at its ``base`` (``None``: drop none).  ``floor``: make ``seq`` the start
    of the incarnation's history (its ``base``), as compaction does."""

    sid: int
    seq: int
    frame: bytes
    size: int
    refs: frozenset[bytes] = frozenset()
    keep: int | None = None
    floor: bool = False

    def __post_init__(self) -> None:
        check_sid(self.sid)
        check_position(self.seq, "seq", least=1)
        if type(self.frame) is not bytes:
            raise InvalidValueError(f"a frame must be bytes, not {type(self.frame).__name__}")
        check_position(self.size, "size")
        check_hashes(self.refs, "refs")
        if self.keep is not None:
            check_position(self.keep, "keep", least=1)
        if type(self.floor) is not bool:
            raise InvalidValueError("floor must be True or False")


@dataclass(frozen=True, slots=True)
class CopiedEvent:
    """An event of a :class:`WholeSession`: its position ``seq``, ``ts_ms``,
    ``frame``, ``size`` (what the snapshot policy counts) and ``refs``."""

    seq: int
    ts_ms: int
    frame: bytes
    size: int
    refs: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        check_position(self.seq, "seq", least=1)
        check_position(self.ts_ms, "ts_ms")
        check_position(self.size, "size")
        if type(self.frame) is not bytes:
            raise InvalidValueError(f"a frame must be bytes, not {type(self.frame).__name__}")
        check_hashes(self.refs, "refs")


@dataclass(frozen=True, slots=True)
class CopiedSnapshot:
    """A snapshot of a :class:`WholeSession`: its position ``seq``, ``frame``,
    ``size`` (recorded as ``snap_bytes`` for the newest) and ``refs``."""

    seq: int
    frame: bytes
    size: int
    refs: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        check_position(self.seq, "seq", least=1)
        check_position(self.size, "size")
        if type(self.frame) is not bytes:
            raise InvalidValueError(f"a frame must be bytes, not {type(self.frame).__name__}")
        check_hashes(self.refs, "refs")


@dataclass(frozen=True, slots=True)
class WholeSession:
    """A session with its whole history, for :meth:`Backend.put_session` (a copy
    from another store): its id ``name``, ``key``, ``parent``, ``created_ms``,
    ``updated_ms``, head ``seq``, history start ``base``, ``entries`` (see
    :class:`Listing`), its ``events`` (every position from ``base + 1`` to ``seq``,
    in order) and its ``snapshots`` (positions from ``base`` to ``seq``, in order;
    one at ``base`` when ``base`` is not 0: the floor of a compacted history)."""

    name: str
    key: bytes
    parent: str | None
    created_ms: int
    updated_ms: int
    seq: int
    base: int
    entries: int | None
    events: tuple[CopiedEvent, ...]
    snapshots: tuple[CopiedSnapshot, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name)
        check_key(self.key)
        if self.parent is not None:
            check_name(self.parent, "parent")
        check_position(self.created_ms, "created_ms")
        check_position(self.updated_ms, "updated_ms")
        check_position(self.seq, "seq", least=1)
        check_position(self.base, "base")
        if self.entries is not None:
            check_position(self.entries, "entries")
        if type(self.events) is not tuple or any(not isinstance(e, CopiedEvent) for e in self.events):
            raise InvalidValueError("events must be a tuple of CopiedEvent")
        if type(self.snapshots) is not tuple or any(not isinstance(n, CopiedSnapshot) for n in self.snapshots):
            raise InvalidValueError("snapshots must be a tuple of CopiedSnapshot")
        if self.base > self.seq or [e.seq for e in self.events] != list(range(self.base + 1, self.seq + 1)):
            raise InvalidValueError(f"the events must be at every position from {self.base + 1} to {self.seq}")
        seqs = [n.seq for n in self.snapshots]
        if seqs != sorted(set(seqs)) or any(not self.base <= q <= self.seq for q in seqs):
            raise InvalidValueError(f"the snapshots must be in order, at positions from {self.base} to {self.seq}")
        if self.base and self.base not in seqs:
            raise InvalidValueError(f"a history from {self.base} needs its snapshot at {self.base}")

    @property
    def refs(self) -> frozenset[bytes]:
        """Every chunk its events and snapshots use."""
        return frozenset().union(*(e.refs for e in self.events), *(n.refs for n in self.snapshots))

    @property
    def policy(self) -> tuple[int, int, int]:
        """The snapshot bookkeeping :meth:`Backend.put_session` records: ``(snap_seq,
        snap_bytes, snap_bytes_since)`` of its newest snapshot and the events after it."""
        snap_seq, snap_bytes = (self.snapshots[-1].seq, self.snapshots[-1].size) if self.snapshots else (0, 0)
        return snap_seq, snap_bytes, sum(e.size for e in self.events if e.seq > snap_seq)


@dataclass(frozen=True, slots=True)
class Purged:
    """One step of :meth:`Backend.purge` or :meth:`Backend.trim`: the events and
    snapshots it removed, and whether there is nothing left to remove."""

    events: int
    snapshots: int
    done: bool


@dataclass(frozen=True, slots=True)
class Freed:
    """One step of :meth:`Backend.free_chunks`: ``cursor``, the address to go on
    after (``None``: the last chunk was looked at), and the chunks and stored bytes
    freed."""

    cursor: bytes | None
    chunks: int
    bytes: int


class KeyInUse(ConflictError):
    """A session is created with a key that an incarnation stored already has (a
    live one, or an ended one not yet purged): nothing was written.  The engine
    makes another key (a copy gives the session a new one)."""

    def __init__(self, key: bytes, session_id: str | None = None) -> None:
        self.key = key
        super().__init__(f"session key {key.hex()} is in use in the store", session_id=session_id)


class MissingChunks(StorageError):
    """A write refers to chunks that are neither stored nor given with it
    (``hashes``): nothing was written.  The engine tries again with their data, or,
    when it has none, reports them missing (:class:`~eventlog.CorruptionError`)."""

    def __init__(self, hashes: Collection[bytes]) -> None:
        self.hashes = frozenset(hashes)
        first = min(self.hashes).hex() if self.hashes else "?"
        more = f" and {len(self.hashes) - 1} more" if len(self.hashes) > 1 else ""
        super().__init__(f"chunk {first}{more} is missing")


@runtime_checkable
class Backend(Protocol):
    """A store's storage (see the module documentation).  One handle is used by one
    thread at a time (the engine's lock); several handles, in threads or processes,
    may share one store."""

    @property
    def meta(self) -> Mapping[str, str | bytes]:
        """What was recorded when the store was created (``new_meta`` of the
        backend's constructor), as found; fixed for the store's life."""

    @property
    def readonly(self) -> bool:
        """Every write raises :class:`~eventlog.ReadOnlyError`."""

    @property
    def limits(self) -> Limits:
        """What the backend can store."""

    def close(self) -> None:
        """Release the handle (idempotent); the store stays."""

    def reading(self) -> AbstractContextManager[None]:
        """One consistent view of the store for the reads inside (re-entrant)."""

    # ------------------------------------------------------------------ sessions

    def head(self, name: str) -> Head | None:
        """The live incarnation of session ``name``, or ``None``."""

    def heads(self, after: int, limit: int) -> list[Head]:
        """Live incarnations with ``sid > after``, by ``sid`` (creation order), at
        most ``limit``: a listing by pages."""

    def names(self) -> list[str]:
        """Ids of the live sessions with at least one event, in creation order."""

    def children(self, parents: Sequence[str]) -> list[Head]:
        """The live incarnations whose ``parent`` is one of ``parents`` (any number),
        in creation order."""

    def info(self, name: str) -> Listing | None:
        """The live session ``name`` with at least one event, as listed."""

    def listing(self) -> list[Listing]:
        """Every live session with at least one event, as listed, in creation
        order."""

    # ------------------------------------------------------------------ reading

    def events(self, sid: int, after: int, upto: int | None = None) -> Iterator[StoredEvent]:
        """Events of incarnation ``sid`` with ``after < seq <= upto`` (``None``: to
        the end), in order of ``seq``; the ones missing are simply not there."""

    def last_seq(self, sid: int) -> int | None:
        """The position of the incarnation's last stored event (``None``: none)."""

    def entries(self, sid: int) -> int | None:
        """The ``entries`` the engine recorded with the incarnation's last event (see
        :class:`Listing`; ``None`` where none was, or for an incarnation not
        stored): one row read, whatever the session's length."""

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        """Positions of the incarnation's snapshots at or below ``upto``, newest
        first (a snapshot whose position reads wrong is left out: snapshots are a
        cache, and :meth:`integrity` reports it)."""

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        """The frame of the snapshot at ``seq``, or ``None``."""

    def chunks(self, hashes: Collection[bytes]) -> dict[bytes, Chunk]:
        """The stored chunks among ``hashes`` (any number; missing ones are absent
        from the result)."""

    def chunk_sizes(self, hashes: Collection[bytes]) -> dict[bytes, int]:
        """``hash -> size`` of the stored chunks among ``hashes``, without their
        data: which are stored (any number)."""

    def refs(self, kind: RefKind, sid: int, seq: int = 0) -> set[bytes]:
        """The chunks recorded as used by the event or snapshot at ``seq`` of
        incarnation ``sid`` (or, for :attr:`RefKind.SESSION`, by the whole
        incarnation)."""

    def feed(self, after: str, limit: int) -> list[FeedRow]:
        """Up to ``limit`` events of every session (live or ended, as long as they
        are stored) after the cursor ``after`` (``""``: from the first), in an order
        that never skips: an event that commits later never comes before one already
        returned, however transactions commit (a backend holds back an event while
        one that could come before it may still commit).  A malformed cursor is
        :class:`~eventlog.InvalidValueError`."""

    def watcher(self) -> Watcher:
        """A new :class:`Watcher` on the store."""

    # ------------------------------------------------------------------ writing

    def append(
        self, events: Sequence[NewEvent], chunks: Sequence[Chunk] = (), *, whole_tree: bool = False
    ) -> list[Head]:
        """Append ``events`` (one per session) with their references, storing the
        given ``chunks`` that are absent, in one transaction; returns each one's
        session's head after it.  Raises :class:`~eventlog.ConflictError` (its
        ``seq`` the session's current head, 0 for none) when an event's condition
        does not hold (see :class:`NewEvent`), and with ``whole_tree`` also when a
        live session whose parent is one of the events' sessions is not among them
        (a tree deleted whole); :class:`MissingChunks`; nothing is written then."""

    def put_session(self, session: WholeSession, chunks: Sequence[Chunk] = ()) -> Head:
        """Create the live session ``session.name`` with its whole history (events,
        snapshots and their references, the given ``chunks`` that are absent), in
        one transaction; returns its head.  Its snapshot bookkeeping is its newest
        snapshot's (``snap_seq``, ``snap_bytes``) and the ``size`` of the events
        after it (``snap_bytes_since``); ``pos`` of its events are new (in order).
        Raises :class:`~eventlog.ConflictError` (its ``seq`` the head found) when a
        live incarnation of the name has events, :class:`KeyInUse` when one stored
        has the key, :class:`MissingChunks`; nothing is written then."""

    def put_snapshot(self, snapshot: NewSnapshot, chunks: Sequence[Chunk] = ()) -> bool:
        """Store a snapshot with its references (replacing one at the same
        position, and freeing the chunks only that one used), the given ``chunks``
        that are absent, the policy's bookkeeping (``snap_seq``, ``snap_bytes``,
        ``snap_bytes_since = 0``, when ``seq`` is past the recorded ``snap_seq``),
        then ``keep`` and ``floor`` (see :class:`NewSnapshot`), in one transaction.
        ``False``, nothing written, when the incarnation is not live or its head is
        below ``seq`` (or, with ``floor``, its ``base`` is not below ``seq``);
        :class:`MissingChunks`."""

    def rewrite_chunk(self, chunk: Chunk) -> bool:
        """Replace the stored bytes of a chunk found damaged (its address stays);
        ``False`` when no chunk has that address."""

    # ------------------------------------------------------------------ compaction steps

    def counts(self) -> tuple[int, int, int]:
        """``(live incarnations, ended incarnations still stored, chunks)``."""

    def dead(self, limit: int) -> list[int]:
        """Up to ``limit`` ended incarnations still stored (their ``sid``)."""

    def purge(self, sid: int, batch: int) -> Purged:
        """Remove up to ``batch`` events and ``batch`` snapshots of an ended
        incarnation, with their references; once none are left, the incarnation
        itself (``done``).  A live ``sid`` is :class:`~eventlog.InvalidValueError`."""

    def scrub(self) -> None:
        """After purging: erase what the storage may still hold of removed
        sessions elsewhere (SQLite rewrites its small sessions table, whose pages
        can keep old copies of updated rows)."""

    def legacy(self, after: int, limit: int) -> list[Head]:
        """Live incarnations (``sid > after``, by ``sid``, at most ``limit``) that
        still have whole-session references (:attr:`RefKind.SESSION`)."""

    def adopt_refs(
        self, sid: int, events: Mapping[int, Collection[bytes]], snapshots: Mapping[int, Collection[bytes]]
    ) -> None:
        """Record the references of the incarnation's events and snapshots (by
        position; those no longer stored are skipped) and drop its whole-session
        references, in one transaction; :class:`MissingChunks` if a chunk named is
        not stored."""

    def trim(self, sid: int, batch: int) -> Purged:
        """Remove up to ``batch`` events at or below the live incarnation's ``base``
        and ``batch`` snapshots below it, with their references."""

    def free_chunks(self, after: bytes, batch: int) -> Freed:
        """Look at the next ``batch`` chunks by address after ``after`` (``b""``:
        from the start) and free those nothing refers to, in one transaction."""

    # ------------------------------------------------------------------ maintenance

    def checkpoint(self) -> bool:
        """Make everything written durable in the store's main form (SQLite: copy
        the WAL into the file and truncate it); ``False`` when something outside
        kept it from finishing."""

    def vacuum(self) -> None:
        """Give the space of what was removed back (SQLite: ``VACUUM``)."""

    def integrity(self, limit: int) -> list[str]:
        """What the backend finds wrong with its own storage (at most ``limit``
        problems): damaged pages or indexes, references whose chunk or holder is
        missing, rows over the cell budget, rows that read wrong, counters that
        could give an id again."""

    def chunk_page(self, after: bytes, limit: int) -> list[Chunk]:
        """Up to ``limit`` stored chunks with addresses after ``after``, by
        address."""

    def unreferenced_chunks(self) -> int:
        """How many stored chunks nothing refers to (what compaction would free)."""

    def stats(self) -> dict[str, Any]:
        """Rows, bytes and the largest cell: ``{"events": {"rows", "bytes",
        "largest"}, "snapshots": {... "events_after_newest": (total, largest)},
        "chunks": {... "raw_bytes", "referenced_raw_bytes"}, "sessions": {...},
        "refs": {"rows"}, "file_bytes"}`` (see :meth:`eventlog.Store.stats`)."""


# ---------------------------------------------------------------------- helpers for backends


def check_name(name: Any, what: str = "session id") -> str:
    """``name`` if it is a session id a backend takes: a non-empty ``str``."""
    if type(name) is not str or not name:
        raise InvalidValueError(f"{what} must be a non-empty str, not {name!r:.60}")
    return name


def check_key(key: Any) -> bytes:
    """``key`` if it is an incarnation key: :data:`KEY_BYTES` bytes."""
    if type(key) is not bytes or len(key) != KEY_BYTES:
        raise InvalidValueError(f"a session key must be {KEY_BYTES} bytes, not {key!r:.60}")
    return key


def check_sid(sid: Any) -> int:
    """``sid`` if it is an incarnation id: an ``int`` from 1."""
    return check_position(sid, "sid", least=1)


def check_position(value: Any, what: str, least: int = 0) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) from ``least`` to
    :data:`MAX_INT`."""
    if type(value) is not int or not least <= value <= MAX_INT:
        raise InvalidValueError(f"{what} must be an int from {least}, not {value!r:.40}")
    return value


def check_hash(value: Any) -> bytes:
    """``value`` if it is a chunk address: :data:`HASH_BYTES` bytes."""
    if type(value) is not bytes or len(value) != HASH_BYTES:
        raise InvalidValueError(f"a chunk address must be {HASH_BYTES} bytes, not {value!r:.80}")
    return value


def check_hashes(values: Any, what: str = "hashes") -> None:
    """:class:`~eventlog.InvalidValueError` unless ``values`` is a collection (not
    ``bytes`` or ``str``) of chunk addresses."""
    if isinstance(values, (bytes, str)) or not isinstance(values, Collection):
        raise InvalidValueError(f"{what} must be a collection of chunk addresses, not {type(values).__name__}")
    for h in values:
        check_hash(h)


def parse_cursor(cursor: Any) -> int:
    """A feed cursor of a backend whose positions commit in order (one writer at a
    time): ``""`` (the start: 0) or a position, as text."""
    if type(cursor) is not str or not (cursor == "" or (cursor.isascii() and cursor.isdigit() and len(cursor) < 20)):
        raise InvalidValueError(f"a feed cursor must be one this store gave, not {cursor!r:.60}")
    return int(cursor or 0)


def check_limit(value: Any, what: str = "limit") -> int:
    """``value`` if it is a page size: an ``int`` from 1."""
    return check_position(value, what, least=1)


def check_write(events: Any, chunks: Any, whole_tree: bool = False) -> tuple[list[NewEvent], list[Chunk]]:
    """The arguments of a write, checked (:class:`~eventlog.InvalidValueError`):
    a sequence of :class:`NewEvent`, at most one per session, and one of
    :class:`Chunk`."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise InvalidValueError(f"events must be a sequence of NewEvent, not {type(events).__name__}")
    if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence):
        raise InvalidValueError(f"chunks must be a sequence of Chunk, not {type(chunks).__name__}")
    for ev in events:
        if not isinstance(ev, NewEvent):
            raise InvalidValueError(f"events must be NewEvent records, not {type(ev).__name__}")
    for c in chunks:
        if not isinstance(c, Chunk):
            raise InvalidValueError(f"chunks must be Chunk records, not {type(c).__name__}")
    if len({ev.name for ev in events}) != len(events):
        raise InvalidValueError("a write appends at most one event per session")
    if type(whole_tree) is not bool:
        raise InvalidValueError("whole_tree must be True or False")
    return list(events), list(chunks)


def read_chunk(digest: Any, flags: Any, size: Any, data: Any, where: str) -> Chunk:
    """A chunk read from storage; :class:`~eventlog.CorruptionError` naming
    ``where`` when what was read is not one (a value of the wrong type, a size out
    of range), where :class:`Chunk` itself would say the argument is wrong."""
    try:
        return Chunk(digest, flags, size, data)
    except InvalidValueError as e:
        raise CorruptionError(f"{where} is damaged: {e.message}") from None


def advance(cursor: Any, last: Any, what: str) -> Any:
    """The next cursor of a scan by increasing key (an ``int`` id or a ``bytes``
    address): it must move forward, or a damaged index (keys out of order) would
    make the scan go round forever (:class:`~eventlog.CorruptionError`)."""
    if type(last) is not type(cursor) or last <= cursor:
        raise CorruptionError(f"the {what} are damaged: their keys are out of order")
    return last
