"""The backend conformance suite: what every storage backend of
:mod:`eventlog.backend` must do, as pytest test methods a backend's own test module
inherits (the way ``eventsourcing`` ships its recorder tests).

It needs ``pytest`` and ``hypothesis`` (the ``test`` extra: ``pip install
'eventlog[test]'``); ``import eventlog`` does not import it.  To prove a backend,
subclass :class:`BackendTests` in a module pytest collects, under a name starting
with ``Test``, and give it a factory::

    from eventlog.conformance import BackendTests

    class TestMyBackend(BackendTests):
        def make_backend(self, **options):
            return MyBackend(self.tmp_path / "store", **options)   # a new, empty store

        def another_handle(self, backend, *, readonly=False):
            return MyBackend(backend.path, readonly=readonly)      # the same store

Every test works at the protocol level (bytes in, bytes out: no engine, no values)
and asserts behaviour a backend could get wrong: atomic units of work, conditional
appends and conflicts (with handles racing in threads and, through
:meth:`BackendTests.process_opener`, in processes), ordering and global positions,
chunks and batches of any size, the chunk-GC contract raced by writers and a
compaction on separate handles and checked against a model by a Hypothesis state
machine, snapshots, tombstones and the compaction steps, the cell budget, damaged
rows (through :meth:`BackendTests.damage`) and read-only handles.  Optional hooks
(:meth:`~BackendTests.process_opener`, :meth:`~BackendTests.bound_params`,
:meth:`~BackendTests.damage`) skip the tests that need them when a backend does not
give them.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from .backend import (
    KEY_BYTES,
    Backend,
    Chunk,
    CopiedEvent,
    CopiedSnapshot,
    Head,
    KeyInUse,
    MissingChunks,
    NewEvent,
    NewSnapshot,
    Purged,
    RefKind,
    StoredEvent,
    WholeSession,
)
from .errors import (
    ConflictError,
    CorruptionError,
    EventLogError,
    InvalidValueError,
    ReadOnlyError,
    StorageError,
)

__all__ = ["DAMAGES", "BackendTests", "chunk_for"]

T = TypeVar("T")

#: The kinds of damage :meth:`BackendTests.damage` is asked to do.
DAMAGES = (
    "event_column",  # an event's timestamp reads a value of the wrong type (text)
    "event_frame",  # an event's frame reads a value of the wrong type (text, not bytes)
    "event_missing",  # an event is gone, its references left behind
    "session_column",  # a session's head position reads a value of the wrong type (text)
    "snapshot_seq",  # a snapshot's position reads a value of the wrong type (text)
    "snapshot_frame",  # a snapshot's frame reads a value of the wrong type (text)
    "chunk_column",  # a chunk's size reads a value of the wrong type (text)
    "chunk_missing",  # a chunk something refers to is gone
)


def new_event(name: str, sid: int | None, seq: int, ts_ms: int, frame: Any, size: int,
              refs: frozenset[bytes] = frozenset(), entries: int | None = None, parent: str | None = None,
              tombstone: bool = False, key: bytes | None = None) -> NewEvent:  # fmt: skip
    """A :class:`NewEvent`, with a fresh random key when it creates its session
    (``sid`` None) and none is given."""
    if sid is None and key is None:
        key = os.urandom(KEY_BYTES)
    return NewEvent(name, sid, seq, ts_ms, frame, size, refs, entries, parent, tombstone, key)


def chunk_for(tag: int | str, size: int = 40) -> Chunk:
    """A chunk with content made from ``tag`` (``size`` bytes) and its address (a
    SHA-256 digest: the backend never checks addresses, the engine does)."""
    data = (hashlib.sha256(str(tag).encode()).digest() * (size // 32 + 1))[:size]
    return Chunk(hashlib.sha256(data).digest(), 0, size, data)


def write_with_chunks(backend: Backend, refs: frozenset[bytes], pool: dict[bytes, Chunk],
                      write: Callable[[Sequence[Chunk]], T]) -> tuple[T, bool]:  # fmt: skip
    """What the engine does: ask which of ``refs`` are stored (outside any
    transaction), give the data of the others with ``write``, and when they were
    freed meanwhile (:class:`~eventlog.backend.MissingChunks`) give all of them.
    The result, and whether the first attempt found chunks missing."""
    stored = backend.chunk_sizes(refs)
    try:
        return write([pool[h] for h in refs if h not in stored]), False
    except MissingChunks as e:
        assert e.hashes <= refs, "MissingChunks names chunks the write did not refer to"
        return write([pool[h] for h in refs]), True


# ---------------------------------------------------------------------- workers in other processes


def _process_appender(opener: Callable[[], Backend], name: str, tag: str, count: int) -> list[tuple[int, bytes]]:
    """In another process: append ``count`` events to session ``name`` through a
    handle of its own, retrying on conflicts; the acknowledged ``(seq, frame)``."""
    backend = opener()
    try:
        return _append_until(backend, name, tag, count)
    finally:
        backend.close()


def _append_until(backend: Backend, name: str, tag: str, count: int) -> list[tuple[int, bytes]]:
    done: list[tuple[int, bytes]] = []
    while len(done) < count:
        head = backend.head(name)
        frame = f"{tag}-{len(done)}".encode()
        seq = 1 if head is None else head.seq + 1
        try:
            backend.append([new_event(name, None if head is None else head.sid, seq, 1000 + seq, frame, 1)])
        except ConflictError as e:
            assert e.seq is not None and e.seq >= seq - 1, f"a conflict must carry the current head, not {e.seq}"
            continue
        done.append((seq, frame))
    return done


def _process_writer(opener: Callable[[], Backend], seed: int, ops: int) -> int:
    """In another process: the chunk-reusing writer of the GC race."""
    backend = opener()
    try:
        return _gc_writer(backend, random.Random(seed), ops, f"p{seed}")
    finally:
        backend.close()


#: The chunks the GC race's writers share (few, so that they are freed and used again).
_POOL = {c.hash: c for c in (chunk_for(f"pool{i}", 64 + i) for i in range(10))}


def _gc_writer(backend: Backend, rng: random.Random, ops: int, prefix: str) -> int:
    """Events and snapshots that re-use chunks of :data:`_POOL`, and tombstones that
    leave them to a compaction; how many writes found chunks freed meanwhile."""
    hashes = sorted(_POOL)
    names = [f"{prefix}-{i}" for i in range(3)]
    freed_meanwhile = 0
    for _ in range(ops):
        name = rng.choice(names)
        refs = frozenset(rng.sample(hashes, rng.randint(1, 3)))
        head = backend.head(name)
        what = rng.random()
        if head is None or what < 0.6:
            seq = 1 if head is None else head.seq + 1
            ev = new_event(name, None if head is None else head.sid, seq, seq, b"event", 1, refs)

            def append(give: Sequence[Chunk], ev: NewEvent = ev) -> list[Head]:
                return backend.append([ev], give)

            _, missing = write_with_chunks(backend, refs, _POOL, append)
        elif what < 0.85:
            snap = NewSnapshot(head.sid, rng.randint(1, head.seq), b"snapshot", 1, refs, keep=rng.choice((1, 2, None)))
            def put(give: Sequence[Chunk], snap: NewSnapshot = snap) -> bool:
                return backend.put_snapshot(snap, give)

            ok, missing = write_with_chunks(backend, refs, _POOL, put)
            assert ok, "a snapshot at or below the head of a live session is stored"
        else:
            backend.append([new_event(name, head.sid, head.seq + 1, 0, b"tombstone", 0, tombstone=True)])
            missing = False
        freed_meanwhile += missing
    return freed_meanwhile


def _compact_once(backend: Backend, batch: int = 3) -> int:
    """Every compaction step once over: purge the ended incarnations, then free the
    unreferenced chunks; the chunks freed."""
    for sid in backend.dead(1000):
        while not backend.purge(sid, batch).done:
            pass
    return _free_all(backend, batch)


def _free_all(backend: Backend, batch: int = 3) -> int:
    cursor: bytes | None = b""
    freed = 0
    while cursor is not None:
        step = backend.free_chunks(cursor, batch)
        assert step.cursor is None or step.cursor > cursor, "free_chunks must move its cursor forward"
        cursor = step.cursor
        freed += step.chunks
    return freed


def _all_holders(backend: Backend, sids: Sequence[int]) -> dict[tuple[RefKind, int, int], set[bytes]]:
    """The references of every stored event and snapshot of incarnations ``sids``."""
    out: dict[tuple[RefKind, int, int], set[bytes]] = {}
    with backend.reading():
        for sid in sids:
            for ev in backend.events(sid, 0):
                out[RefKind.EVENT, sid, ev.seq] = backend.refs(RefKind.EVENT, sid, ev.seq)
            for seq in backend.snapshot_seqs(sid, 1 << 62):
                out[RefKind.SNAPSHOT, sid, seq] = backend.refs(RefKind.SNAPSHOT, sid, seq)
    return out


_SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class BackendTests:
    """The conformance suite.  A subclass gives the factory
    (:meth:`make_backend`, :meth:`another_handle`) and, where its backend can, the
    optional hooks; every handle the suite opens is closed after each test.

    :attr:`tmp_path` is a fresh directory for each test (pytest's ``tmp_path``),
    for the factory's files."""

    #: Operations of each writer in the race tests (more: a longer race).
    race_ops = 300
    tmp_path: Path

    # ------------------------------------------------------------------ the factory (hooks)

    def make_backend(self, **options: Any) -> Backend:
        """A handle on a new, empty store.  ``options``: ``max_cell_bytes`` (the cell
        budget, :attr:`~eventlog.backend.Limits.max_cell_bytes`) when a test gives
        one."""
        raise NotImplementedError("a conformance test class gives make_backend()")

    def another_handle(self, backend: Backend, *, readonly: bool = False) -> Backend:
        """A second handle on the store of ``backend`` (SQLite: a second
        connection), read-only if asked."""
        raise NotImplementedError("a conformance test class gives another_handle()")

    def process_opener(self, backend: Backend) -> Callable[[], Backend] | None:
        """A picklable function that opens a handle on the store of ``backend`` in
        another process (started with ``spawn``); ``None`` (the default) where the
        store cannot be shared between processes, and the tests of processes are
        skipped."""
        return None

    def bound_params(self, backend: Backend) -> AbstractContextManager[list[int]] | None:
        """Where the backend has :attr:`~eventlog.backend.Limits.max_params`: a
        context manager giving a list to which the number of values each statement
        the handle runs inside binds is added; ``None`` (the default): not traced."""
        return None

    def damage(self, backend: Backend, kind: str, *, sid: int = 0, seq: int = 0, hash: bytes = b"") -> None:
        """Damage the store under ``backend`` as :data:`DAMAGES` ``kind`` says, at
        the event or snapshot ``seq`` of incarnation ``sid``, or at chunk ``hash``,
        directly in its storage (SQLite: a raw connection).  The default skips the
        tests of damaged storage."""
        pytest.skip("this backend gives no way to damage its storage (BackendTests.damage)")

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture(autouse=True)
    def _conformance_handles(self, tmp_path: Path) -> Iterator[None]:
        self.tmp_path = tmp_path
        self._opened: list[Backend] = []
        yield
        for b in reversed(self._opened):
            with suppress(EventLogError):
                b.close()

    def backend(self, **options: Any) -> Backend:
        b = self.make_backend(**options)
        self._opened.append(b)
        return b

    def handle(self, backend: Backend, *, readonly: bool = False) -> Backend:
        b = self.another_handle(backend, readonly=readonly)
        self._opened.append(b)
        return b

    @staticmethod
    def create(b: Backend, name: str, frame: bytes = b"first", *, refs: Sequence[Chunk] = (), give: bool = True,
               parent: str | None = None, ts: int = 1000, size: int = 1,
               entries: int | None = None, key: bytes | None = None) -> Head:  # fmt: skip
        (head,) = b.append([new_event(name, None, 1, ts, frame, size, frozenset(c.hash for c in refs), entries,
                                     parent, key=key)], list(refs) if give else [])  # fmt: skip
        return head

    @staticmethod
    def extend(b: Backend, head: Head, frame: bytes = b"next", *, refs: Sequence[Chunk] = (), give: bool = True,
               ts: int = 2000, size: int = 1, tombstone: bool = False) -> Head:  # fmt: skip
        (new,) = b.append([new_event(head.name, head.sid, head.seq + 1, ts, frame, size,
                                    frozenset(c.hash for c in refs), tombstone=tombstone)],
                          list(refs) if give else [])  # fmt: skip
        return new

    @staticmethod
    def frames(b: Backend, sid: int, after: int = 0, upto: int | None = None) -> list[tuple[int, bytes]]:
        return [(e.seq, e.frame) for e in b.events(sid, after, upto)]

    @staticmethod
    def snapshot_of(b: Backend, head: Head, seq: int, frame: bytes = b"snap", *, refs: Sequence[Chunk] = (),
                    give: bool = True, keep: int | None = None, floor: bool = False,
                    size: int = 5) -> bool:  # fmt: skip
        snap = NewSnapshot(head.sid, seq, frame, size, frozenset(c.hash for c in refs), keep, floor)
        return b.put_snapshot(snap, list(refs) if give else [])

    def assert_unchanged(self, b: Backend, before: dict[str, Any]) -> None:
        assert self.state(b) == before, "a write that failed changed the store"

    @staticmethod
    def state(b: Backend) -> dict[str, Any]:
        """Everything a test can see of a store through the protocol."""
        with b.reading():
            heads = b.heads(0, 1 << 20)
            sids = [h.sid for h in heads] + b.dead(1 << 20)
            chunks = []
            after = b""
            while page := b.chunk_page(after, 50):
                chunks += page
                after = page[-1].hash
            return {
                "heads": heads,
                "events": {sid: list(b.events(sid, 0)) for sid in sids},
                "snapshots": {sid: [(q, b.snapshot(sid, q)) for q in b.snapshot_seqs(sid, 1 << 62)] for sid in sids},
                "refs": _all_holders(b, sids),
                "chunks": chunks,
                "counts": b.counts(),
            }

    # ------------------------------------------------------------------ appending: heads, positions, ordering

    def test_a_new_session_reads_back_as_written(self) -> None:
        b = self.backend()
        assert b.head("a") is None and b.info("a") is None and b.names() == []
        key = os.urandom(KEY_BYTES)
        (head,) = b.append([new_event("a", None, 1, 1234, b"first frame", 7, entries=3, parent="p", key=key)])
        assert (head.name, head.parent, head.seq, head.base, head.created_ms, head.updated_ms) == ("a", "p", 1, 0,
                                                                                               1234, 1234)  # fmt: skip
        assert (head.snap_seq, head.snap_bytes, head.snap_bytes_since) == (0, 0, 7)
        assert b.head("a") == head
        (ev,) = b.events(head.sid, 0)
        assert (ev.seq, ev.ts_ms, ev.frame) == (1, 1234, b"first frame") and head.key == key
        info = b.info("a")
        assert info is not None and info.head == head and info.entries == 3 and info.stored_bytes == len(ev.frame)
        assert b.names() == ["a"] and b.listing() == [info] and b.last_seq(head.sid) == 1
        assert b.entries(head.sid) == 3 and b.entries(head.sid + 1000) is None

    def test_the_entries_count_is_the_one_of_the_last_event(self) -> None:
        """``entries(sid)``: what the last event recorded (``None`` where it recorded
        none), as ``info`` lists it."""
        b = self.backend()
        (head,) = b.append([new_event("a", None, 1, 1, b"e1", 2, entries=3)])
        (head,) = b.append([new_event("a", head.sid, 2, 2, b"e2", 2, entries=5)])
        info = b.info("a")
        assert b.entries(head.sid) == 5 and info is not None and info.entries == 5
        (head,) = b.append([new_event("a", head.sid, 3, 3, b"e3", 2)])
        info = b.info("a")
        assert b.entries(head.sid) is None and info is not None and info.entries is None

    def test_a_key_names_one_incarnation_until_it_is_purged(self) -> None:
        """Frames are bound to an incarnation's key: no two stored incarnations
        (live, or ended and not yet purged) may share one."""
        b = self.backend()
        key = os.urandom(KEY_BYTES)
        a = self.create(b, "a", key=key)
        assert a.key == key and b.head("a") == a
        before = self.state(b)
        for name, error in (("b", KeyInUse), ("a", ConflictError)):  # ("a" is live: that comes first)
            with pytest.raises(error):
                b.append([new_event(name, None, 1, 1, b"x", 1, key=key)])
            self.assert_unchanged(b, before)
        self.extend(b, a, tombstone=True)
        with pytest.raises(KeyInUse):  # ended, not yet purged: its frames are still stored
            b.append([new_event("b", None, 1, 1, b"x", 1, key=key)])
        _compact_once(b)
        assert self.create(b, "b", key=key).key == key

    def whole(self, name: str, *, key: bytes | None = None, base: int = 0, seq: int = 3,
              refs: Sequence[Chunk] = (), parent: str | None = None) -> WholeSession:  # fmt: skip
        hashes = frozenset(c.hash for c in refs)
        events = tuple(CopiedEvent(q, 100 + q, b"copied %d" % q, 2, hashes if q == seq else frozenset())
                       for q in range(base + 1, seq + 1))  # fmt: skip
        snaps = tuple(CopiedSnapshot(q, b"snap %d" % q, 3, hashes) for q in sorted({base, seq}) if q)
        return WholeSession(name, key or os.urandom(KEY_BYTES), parent, 100, 100 + seq, seq, base, 4, events, snaps)

    def test_a_whole_session_is_put_in_one_unit_of_work(self) -> None:
        b = self.backend()
        refs = [chunk_for("w1"), chunk_for("w2")]
        session = self.whole("w", base=2, seq=5, refs=refs, parent="p")
        head = b.put_session(session, refs)
        assert (head.name, head.key, head.parent, head.seq, head.base) == ("w", session.key, "p", 5, 2)
        assert (head.created_ms, head.updated_ms, head.snap_seq) == (100, 105, 5)
        assert [(e.seq, e.ts_ms, e.frame) for e in b.events(head.sid, 0)] == [
            (q, 100 + q, b"copied %d" % q) for q in (3, 4, 5)]  # fmt: skip
        assert b.snapshot_seqs(head.sid, 10) == [5, 2] and b.snapshot(head.sid, 2) == b"snap 2"
        assert b.refs(RefKind.EVENT, head.sid, 5) == {c.hash for c in refs}
        assert b.refs(RefKind.SNAPSHOT, head.sid, 2) == {c.hash for c in refs}
        info = b.info("w")
        assert info is not None and info.entries == 4
        # The chunk-GC contract holds for what it stored: nothing frees them while used.
        _free_all(b)
        assert b.chunks([c.hash for c in refs]) == {c.hash: c for c in refs}
        # A write after it continues its history.
        assert self.extend(b, head).seq == 6

    def test_a_whole_session_that_cannot_be_put_writes_nothing(self) -> None:
        b = self.backend()
        live = self.create(b, "w")
        refs = [chunk_for("p1")]
        before = self.state(b)
        attempts: list[tuple[type[Exception], Callable[[], object]]] = [
            (ConflictError, lambda: b.put_session(self.whole("w", refs=refs), refs)),  # the id is live
            (KeyInUse, lambda: b.put_session(self.whole("x", key=live.key, refs=refs), refs)),
            (MissingChunks, lambda: b.put_session(self.whole("x", refs=refs), [])),
            (InvalidValueError, lambda: b.put_session("not a session", refs)),  # type: ignore[arg-type]
        ]
        for error, attempt in attempts:
            with pytest.raises(error):
                attempt()
            self.assert_unchanged(b, before)
        assert b.head("x") is None
        with pytest.raises(InvalidValueError):  # a history from 2 without its floor snapshot
            WholeSession("x", os.urandom(KEY_BYTES), None, 1, 1, 3, 2, None,
                         tuple(CopiedEvent(q, 1, b"e", 1) for q in (3,)), ())  # fmt: skip

    def test_events_come_in_order_and_by_range(self) -> None:
        b = self.backend()
        head = self.create(b, "a", b"e1")
        for i in range(2, 11):
            head = self.extend(b, head, b"e%d" % i, ts=i, size=i)
        assert head.seq == 10 and head.updated_ms == 10 and head.snap_bytes_since == 1 + sum(range(2, 11))
        events = list(b.events(head.sid, 0))
        assert [e.seq for e in events] == list(range(1, 11)) and [e.frame for e in events[1:]] == [
            b"e%d" % i for i in range(2, 11)
        ]
        assert all(x.pos < y.pos for x, y in itertools.pairwise(events)), "pos must increase"
        assert self.frames(b, head.sid, 3, 7) == [(i, b"e%d" % i) for i in range(4, 8)]
        assert self.frames(b, head.sid, 10) == [] and self.frames(b, head.sid + 1000, 0) == []
        assert b.last_seq(head.sid) == 10 and b.last_seq(head.sid + 1000) is None

    def test_global_positions_increase_and_are_never_given_again(self) -> None:
        b = self.backend()
        seen: list[int] = []
        heads = {n: self.create(b, n) for n in "abc"}
        for i in range(12):
            n = "abc"[i % 3]
            heads[n] = self.extend(b, heads[n], b"x%d" % i)
        for h in heads.values():
            seen += (e.pos for e in b.events(h.sid, 0))
        assert len(set(seen)) == len(seen), "two events share a global position"
        # The newest events are removed with their session: their positions stay taken.
        gone = self.extend(b, heads["c"], tombstone=True)
        _compact_once(b)
        assert b.dead(10) == [] and self.frames(b, gone.sid) == []
        a = self.extend(b, heads["a"], b"after")
        c = self.create(b, "c", b"again")
        assert c.sid > gone.sid, "an incarnation id was given again"
        newest = [e.pos for e in b.events(a.sid, a.seq - 1)] + [e.pos for e in b.events(c.sid, 0)]
        assert min(newest) > max(seen), "a global position was given again after its event was removed"

    def test_listing_pages_in_creation_order(self) -> None:
        b = self.backend()
        names = [f"s{i:02d}" for i in range(12)]
        for n in reversed(names):  # creation order, not name order
            self.create(b, n, parent=None if n == "s11" else "s11")
        ended = self.extend(b, b.head("s05") or pytest.fail("s05"), tombstone=True)
        order = [n for n in reversed(names) if n != "s05"]
        got: list[Head] = []
        after = 0
        while page := b.heads(after, 5):
            assert len(page) <= 5
            got += page
            after = page[-1].sid
        assert [h.name for h in got] == order
        assert [h.sid for h in got] == sorted(h.sid for h in got)
        assert b.names() == order and [x.head.name for x in b.listing()] == order
        assert [h.name for h in b.children(["s11"])] == order[1:]
        assert ended.sid not in [h.sid for h in got]
        # Any number of parents (past a backend's limit on bound values).
        many = [f"nobody{i}" for i in range(250)] + ["s11"]
        assert [h.name for h in b.children(many)] == order[1:]

    def test_one_write_appends_to_several_sessions_at_once(self) -> None:
        b = self.backend()
        a = self.create(b, "a")
        out = b.append([new_event("a", a.sid, 2, 5, b"a2", 1), new_event("b", None, 1, 5, b"b1", 1)])
        assert [(h.name, h.seq) for h in out] == [("a", 2), ("b", 1)]
        # A conflict on one writes nothing for either.
        before = self.state(b)
        with pytest.raises(ConflictError):
            b.append([new_event("a", a.sid, 3, 6, b"a3", 1), new_event("b", out[1].sid, 1, 6, b"stale", 1)])
        self.assert_unchanged(b, before)
        with pytest.raises(InvalidValueError):
            b.append([new_event("a", a.sid, 3, 6, b"a3", 1), new_event("a", a.sid, 3, 6, b"twice", 1)])
        self.assert_unchanged(b, before)

    def test_bad_arguments_are_invalid_value_errors(self) -> None:
        b = self.backend()
        head = self.create(b, "a", refs=[chunk_for(1)])
        before = self.state(b)
        h = chunk_for(1).hash
        calls: list[Callable[[], object]] = [
            lambda: b.append(e for e in [new_event("a", head.sid, 2, 1, b"", 1)]),  # type: ignore[arg-type]
            lambda: b.append(["not an event"]),  # type: ignore[list-item]
            lambda: b.append([new_event("a", head.sid, 2, 1, b"", 1)], [b"not a chunk"]),  # type: ignore[list-item]
            lambda: b.append([new_event("a", head.sid, 2, 1, b"", 1)], whole_tree=1),  # type: ignore[arg-type]
            lambda: b.append([new_event("b", None, 1, 1, "not bytes", 1)]),
            lambda: NewEvent("b", None, 1, 1, b"", 1),  # a new session without a key
            lambda: NewEvent("b", None, 1, 1, b"", 1, key=b"short"),
            lambda: NewEvent("a", head.sid, 2, 1, b"", 1, key=bytes(KEY_BYTES)),  # a key, not creating
            lambda: new_event("", None, 1, 1, b"", 1),
            lambda: new_event("a", head.sid, 0, 1, b"", 1),
            lambda: new_event("a", True, 2, 1, b"", 1),
            lambda: new_event("a", head.sid, 2, -1, b"", 1),
            lambda: new_event("a", head.sid, 2, 1, "text", 1),
            lambda: new_event("a", head.sid, 2, 1, b"", 1, frozenset([b"short"])),
            lambda: NewSnapshot(head.sid, 1, b"", 1, keep=0),
            lambda: Chunk(b"x" * 31, 0, 1, b"x"),
            lambda: b.put_snapshot("not a snapshot"),  # type: ignore[arg-type]
            lambda: b.rewrite_chunk("not a chunk"),  # type: ignore[arg-type]
            lambda: b.head(7),  # type: ignore[arg-type]
            lambda: b.heads("0", 10),  # type: ignore[arg-type]
            lambda: b.heads(0, 0),
            lambda: b.children("a"),
            lambda: list(b.events("1", 0)),  # type: ignore[arg-type]
            lambda: list(b.events(head.sid, -1)),
            lambda: b.snapshot_seqs(0, 10),
            lambda: b.chunks(h),  # type: ignore[arg-type]
            lambda: b.chunks([h[:16]]),
            lambda: b.chunk_sizes([h, 7]),  # type: ignore[list-item]
            lambda: b.chunk_page("", 10),  # type: ignore[arg-type]
            lambda: b.free_chunks("", 10),  # type: ignore[arg-type]
            lambda: b.free_chunks(b"", 0),
            lambda: b.purge(0, 1),
            lambda: b.purge(head.sid, 1),  # live: only an ended incarnation is purged
            lambda: b.trim(head.sid, 0),
            lambda: b.dead(0),
            lambda: b.integrity(0),
        ]
        for i, call in enumerate(calls):
            with pytest.raises(InvalidValueError):
                call()
                pytest.fail(f"call {i} did not raise")
        self.assert_unchanged(b, before)

    # ------------------------------------------------------------------ conditional appends and conflicts

    def test_a_stale_head_conflicts_and_writes_nothing(self) -> None:
        b = self.backend()
        head = self.create(b, "a")
        head = self.extend(b, self.extend(b, head))
        before = self.state(b)
        stale = new_event("a", head.sid, head.seq, 9, b"stale", 1, frozenset([chunk_for("new").hash]))
        with pytest.raises(ConflictError) as e:
            b.append([stale], [chunk_for("new")])
        assert e.value.seq == 3, "a conflict carries the session's current head"
        ahead = new_event("a", head.sid, head.seq + 2, 9, b"ahead", 1)
        with pytest.raises(ConflictError) as e:
            b.append([ahead])
        assert e.value.seq == 3
        with pytest.raises(ConflictError) as e:
            self.create(b, "a", b"again")  # a live session is not created again
        assert e.value.seq == 3
        with pytest.raises(ConflictError) as e:
            b.append([new_event("nobody", head.sid, 4, 9, b"x", 1)])  # another session's sid
        assert e.value.seq == 0
        self.assert_unchanged(b, before)
        assert b.chunk_sizes([chunk_for("new").hash]) == {}, "a conflicting write stored its chunks"

    def test_an_ended_incarnation_takes_no_more_events(self) -> None:
        b = self.backend()
        old = self.extend(b, self.create(b, "a", b"old"), tombstone=True)
        assert b.head("a") is None and b.info("a") is None and b.names() == []
        with pytest.raises(ConflictError) as e:
            b.append([new_event("a", old.sid, old.seq + 1, 1, b"late", 1)])
        assert e.value.seq == 0
        new = self.create(b, "a", b"new")
        assert new.sid != old.sid and new.seq == 1
        with pytest.raises(ConflictError) as e:
            b.append([new_event("a", old.sid, 2, 1, b"late", 1)])  # the old sid, the new head
        assert e.value.seq == 1
        assert self.frames(b, old.sid) == [(1, b"old"), (2, b"next")], "ended history stays until purged"
        assert self.frames(b, new.sid) == [(1, b"new")]
        assert b.dead(10) == [old.sid]

    def test_tombstoning_a_tree_whole(self) -> None:
        b = self.backend()
        p = self.create(b, "p")
        c = self.create(b, "c", parent="p")
        g = self.create(b, "g", parent="c")
        before = self.state(b)
        with pytest.raises(ConflictError):  # a live child left out of a whole-tree write
            b.append([new_event("p", p.sid, 2, 1, b"t", 0, tombstone=True),
                      new_event("c", c.sid, 2, 1, b"t", 0, tombstone=True)], whole_tree=True)  # fmt: skip
        self.assert_unchanged(b, before)
        with pytest.raises(ConflictError):  # one session written whole while it has a live child
            b.append([new_event("c", c.sid, 2, 1, b"t", 0, tombstone=True)], whole_tree=True)
        self.assert_unchanged(b, before)
        b.append([new_event(h.name, h.sid, 2, 1, b"t", 0, tombstone=True) for h in (p, c, g)], whole_tree=True)
        assert b.names() == [] and b.children(["p", "c"]) == [] and sorted(b.dead(10)) == sorted([p.sid, c.sid, g.sid])
        assert b.counts()[:2] == (0, 3)

    def test_concurrent_appenders_on_one_session_from_threads(self) -> None:
        b = self.backend()
        handles = [b, self.handle(b), self.handle(b)]
        results: list[list[tuple[int, bytes]]] = [[] for _ in handles]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                results[i] = _append_until(handles[i], "shared", f"t{i}", 40)
            except BaseException as e:  # anything but a conflict fails the test
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(handles))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"an appender failed with {errors[0]!r}"
        self._check_exactly_once(b, "shared", results)

    def test_concurrent_appenders_on_one_session_from_processes(self) -> None:
        b = self.backend()
        opener = self.process_opener(b)
        if opener is None:
            pytest.skip("this backend's stores are not shared between processes")
        with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_process_appender, opener, "shared", f"p{i}", 25) for i in range(3)]
            results = [f.result() for f in futures]
        self._check_exactly_once(b, "shared", results)

    def _check_exactly_once(self, b: Backend, name: str, results: Sequence[list[tuple[int, bytes]]]) -> None:
        head = b.head(name)
        assert head is not None
        stored = self.frames(b, head.sid)
        acked = sorted(x for r in results for x in r)
        assert stored == acked, "the stored events are not exactly the acknowledged appends"
        assert [q for q, _ in stored] == list(range(1, head.seq + 1))
        for r in results:  # each writer's events in its own order
            mine = [q for q, _ in r]
            assert mine == sorted(mine)

    # ------------------------------------------------------------------ chunks

    def test_chunks_travel_with_their_event_and_are_stored_once(self) -> None:
        b = self.backend()
        one, two = chunk_for(1), chunk_for(2, 3000)
        a = self.create(b, "a", refs=[one, two])
        assert b.chunks([one.hash, two.hash]) == {one.hash: one, two.hash: two}
        assert b.chunk_sizes([one.hash, two.hash, chunk_for(3).hash]) == {one.hash: 40, two.hash: 3000}
        assert b.refs(RefKind.EVENT, a.sid, 1) == {one.hash, two.hash}
        # Used again, given or not: stored once, and a chunk already stored is kept as it is.
        other = Chunk(one.hash, 1, 2, b"no")
        a = self.extend(b, a, refs=[other])
        self.create(b, "b", refs=[one], give=False)
        assert b.chunks([one.hash]) == {one.hash: one}
        assert [c.hash for c in b.chunk_page(b"", 10)] == sorted([one.hash, two.hash])
        assert b.unreferenced_chunks() == 0 and b.counts()[2] == 2

    def test_a_chunk_neither_stored_nor_given_is_missing_and_nothing_is_written(self) -> None:
        b = self.backend()
        head = self.create(b, "a")
        given, lost, old = chunk_for("given"), chunk_for("lost"), chunk_for("old")
        head = self.extend(b, head, refs=[old])
        before = self.state(b)
        for attempt in (
            lambda: b.append([new_event("a", head.sid, 3, 1, b"x", 1, frozenset([given.hash, lost.hash, old.hash]))],
                             [given]),
            lambda: b.append([new_event("new", None, 1, 1, b"x", 1, frozenset([lost.hash]))]),
            lambda: self.snapshot_of(b, head, 2, refs=[given, lost], give=False),
        ):
            with pytest.raises(MissingChunks) as e:
                attempt()
            assert lost.hash in e.value.hashes and old.hash not in e.value.hashes
            assert isinstance(e.value, StorageError)
            self.assert_unchanged(b, before)
        assert b.head("new") is None, "a failed first event left its session behind"
        assert b.chunk_sizes([given.hash]) == {}, "a failed write stored its chunks"

    def test_batches_of_any_size(self) -> None:
        b = self.backend()
        many = [chunk_for(i, 50 + i % 7) for i in range(250)]
        absent = [chunk_for(f"absent{i}").hash for i in range(60)]
        tracer = self.bound_params(b)
        with tracer if tracer is not None else nullcontext([]) as bound:
            head = self.create(b, "a", refs=many)
            assert self.snapshot_of(b, head, 1, refs=many[::-1])
            hashes = [c.hash for c in many] + absent
            assert b.chunks(hashes) == {c.hash: c for c in many}
            assert b.chunk_sizes(hashes) == {c.hash: c.size for c in many}
            assert b.refs(RefKind.EVENT, head.sid, 1) == {c.hash for c in many}
            assert b.refs(RefKind.SNAPSHOT, head.sid, 1) == {c.hash for c in many}
            assert self.snapshot_of(b, head, 1, b"again")  # dropping the old one's 250 references
            tomb = [new_event(f"k{i}", None, 1, 1, b"k", 1, parent="a") for i in range(150)]
            heads = b.append(tomb)
            b.append([new_event(h.name, h.sid, 2, 1, b"t", 0, tombstone=True) for h in heads]
                     + [new_event("a", head.sid, 2, 1, b"t", 0, tombstone=True)], whole_tree=True)  # fmt: skip
            self.create(b, "z")
            _compact_once(b, batch=500)
            assert b.chunk_page(b"", 1000) == [] and b.counts() == (1, 0, 0)
        limit = b.limits.max_params
        if limit is not None and tracer is not None:
            assert bound and max(bound) <= limit, f"a statement bound {max(bound)} values, over {limit}"

    def test_chunk_pages_and_freeing_go_by_address_with_a_cursor(self) -> None:
        b = self.backend()
        many = sorted((chunk_for(f"c{i}") for i in range(40)), key=lambda c: c.hash)
        keep = many[::4]
        head = self.create(b, "a", refs=many)
        self.extend(b, self.extend(b, head, refs=keep), tombstone=True)
        assert b.unreferenced_chunks() == 0
        pages: list[Chunk] = []
        after = b""
        while page := b.chunk_page(after, 7):
            pages += page
            after = page[-1].hash
        assert pages == many
        # Nothing refers to them until the ended session is purged.
        assert _free_all(b, 7) == 0 and b.counts()[2] == 40
        (sid,) = b.dead(10)
        steps = []
        while not (step := b.purge(sid, 1)).done:
            assert step.events <= 1 and step.snapshots <= 1
            steps.append(step)
        assert sum(s.events for s in steps) == 3
        assert b.unreferenced_chunks() == 40
        cursor: bytes | None = b""
        freed = size = 0
        while cursor is not None:
            freeing = b.free_chunks(cursor, 7)
            assert freeing.cursor is None or freeing.cursor > cursor
            cursor, freed, size = freeing.cursor, freed + freeing.chunks, size + freeing.bytes
        assert (freed, size) == (40, 40 * 40)
        assert b.free_chunks(b"", 10).chunks == 0 and b.counts() == (0, 0, 0)

    # ------------------------------------------------------------------ the chunk-GC contract

    def test_replacing_a_snapshot_keeps_the_chunks_the_new_one_uses(self) -> None:
        b = self.backend()
        only, shared, dropped = chunk_for("only"), chunk_for("shared"), chunk_for("dropped")
        head = self.extend(b, self.extend(b, self.create(b, "a")))
        assert self.snapshot_of(b, head, 2, b"old", refs=[only, dropped])
        # The same position again, referring to a chunk only the old snapshot used
        # (stored: the engine gives no data for it).
        assert self.snapshot_of(b, head, 2, b"new", refs=[only], give=False)
        assert b.snapshot(head.sid, 2) == b"new" and b.refs(RefKind.SNAPSHOT, head.sid, 2) == {only.hash}
        assert b.chunks([only.hash]) == {only.hash: only}, "a chunk the new snapshot refers to was freed"
        assert b.chunk_sizes([dropped.hash]) == {}, "a chunk only the replaced snapshot used was left behind"
        # keep drops older snapshots that share chunks with the new one.
        assert self.snapshot_of(b, head, 1, b"one", refs=[only, shared])
        assert self.snapshot_of(b, head, 3, b"three", refs=[shared, only], give=False, keep=1)
        assert b.snapshot_seqs(head.sid, 3) == [3]
        assert b.chunk_sizes([only.hash, shared.hash]) == {only.hash: 40, shared.hash: 40}
        assert _free_all(b) == 0 and b.integrity(10) == []

    def test_chunks_shared_by_events_snapshots_and_sessions_outlive_each_user(self) -> None:
        b = self.backend()
        c = chunk_for("c")
        a = self.create(b, "a", refs=[c])
        x = self.create(b, "x", refs=[c], give=False)
        assert self.snapshot_of(b, a, 1, refs=[c], give=False)
        assert self.snapshot_of(b, a, 1, b"again", give=False, keep=1)  # the snapshot's ref dropped
        self.extend(b, a, tombstone=True)
        _compact_once(b)
        assert b.chunks([c.hash]) == {c.hash: c}, "a chunk a live event refers to was freed"
        self.extend(b, x, tombstone=True)
        assert _compact_once(b) == 1 and b.chunks([c.hash]) == {}

    def test_writers_and_a_compaction_race_on_separate_handles(self) -> None:
        b = self.backend()
        writer, compactor = self.handle(b), self.handle(b)
        done = threading.Event()
        failures: list[BaseException] = []
        freed = [0]

        def write() -> None:
            try:
                _gc_writer(writer, random.Random(7), self.race_ops, "w")
            except BaseException as e:
                failures.append(e)
            finally:
                done.set()

        t = threading.Thread(target=write)
        t.start()
        try:
            passes = 0
            while not done.is_set() or passes < 2:
                freed[0] += _compact_once(compactor)
                passes += 1
        finally:
            t.join()
        assert not failures, f"the writer failed with {failures[0]!r}"
        self._check_gc_contract(b)

    def test_a_writer_process_and_a_compaction_race(self) -> None:
        b = self.backend()
        opener = self.process_opener(b)
        if opener is None:
            pytest.skip("this backend's stores are not shared between processes")
        compactor = self.handle(b)
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_process_writer, opener, seed, self.race_ops) for seed in (1, 2)]
            while not all(f.done() for f in futures):
                _compact_once(compactor)
            for f in futures:
                f.result()
        _compact_once(compactor)
        self._check_gc_contract(b)

    def _check_gc_contract(self, b: Backend) -> None:
        """Every stored event's and snapshot's chunks are stored, and once the ended
        incarnations are purged and the chunks freed, nothing else is."""
        with b.reading():
            sids = [h.sid for h in b.heads(0, 1 << 20)] + b.dead(1 << 20)
            holders = _all_holders(b, sids)
            used = set().union(*holders.values()) if holders else set()
            assert b.chunk_sizes(used).keys() == used, "a chunk that a stored event or snapshot refers to was freed"
            assert b.integrity(20) == []
        _compact_once(b)
        stored = {c.hash for c in b.chunk_page(b"", 1 << 20)}
        live = _all_holders(b, [h.sid for h in b.heads(0, 1 << 20)])
        assert stored == (set().union(*live.values()) if live else set()), "a chunk nothing uses was not freed"

    def test_random_operations_against_a_model(self) -> None:
        """A Hypothesis state machine: random appends, conflicts, snapshots,
        tombstones and compaction steps from two handles, against a plain model of
        the sessions and their references."""
        suite = self

        class Machine(_ModelMachine):
            def make(self) -> tuple[Backend, Backend]:
                b = suite.backend()
                return b, suite.handle(b)

        run_state_machine_as_test(Machine, settings=settings(_SLOW, stateful_step_count=30))

    # ------------------------------------------------------------------ snapshots

    def test_snapshots_put_replace_and_bookkeeping(self) -> None:
        b = self.backend()
        head = self.create(b, "a", size=4)
        for _ in range(4):
            head = self.extend(b, head, size=4)
        assert head.snap_bytes_since == 20
        assert self.snapshot_of(b, head, 3, b"s3", size=100)
        got = b.head("a")
        assert got is not None and (got.snap_seq, got.snap_bytes, got.snap_bytes_since) == (3, 100, 0)
        assert self.snapshot_of(b, head, 2, b"s2", size=50)  # older: the bookkeeping stays
        assert self.snapshot_of(b, head, 3, b"s3 again", size=70)  # the same position: replaced
        got = b.head("a")
        assert got is not None and (got.snap_seq, got.snap_bytes, got.snap_bytes_since) == (3, 100, 0)
        assert b.snapshot_seqs(head.sid, 5) == [3, 2] and b.snapshot_seqs(head.sid, 2) == [2]
        assert b.snapshot(head.sid, 3) == b"s3 again" and b.snapshot(head.sid, 4) is None
        got = self.extend(b, got, size=9)
        assert got.snap_bytes_since == 9
        assert self.snapshot_of(b, got, 6, b"s6", size=1)
        got = b.head("a")
        assert got is not None and (got.snap_seq, got.snap_bytes, got.snap_bytes_since) == (6, 1, 0)

    def test_a_snapshot_above_the_head_or_of_a_gone_session_is_not_written(self) -> None:
        b = self.backend()
        head = self.extend(b, self.create(b, "a"))
        before = self.state(b)
        c = chunk_for("snap")
        assert self.snapshot_of(b, head, 3, refs=[c]) is False
        dead = self.extend(b, self.create(b, "d"), tombstone=True)
        before = self.state(b)
        assert self.snapshot_of(b, dead, 1, refs=[c]) is False
        gone = Head("z", dead.sid + 100, None, 5, 0, 0, 0, 0, 0, 0, bytes(KEY_BYTES))
        assert self.snapshot_of(b, gone, 1, refs=[c]) is False
        self.assert_unchanged(b, before)
        assert b.chunk_sizes([c.hash]) == {}

    def test_keep_and_floor(self) -> None:
        b = self.backend()
        head = self.create(b, "a")
        for _ in range(7):
            head = self.extend(b, head)
        for q in (1, 2, 3):
            assert self.snapshot_of(b, head, q)
        assert self.snapshot_of(b, head, 4, keep=2)
        assert b.snapshot_seqs(head.sid, 8) == [4, 3]
        assert self.snapshot_of(b, head, 3, b"floor", floor=True)
        got = b.head("a")
        assert got is not None and got.base == 3
        assert self.snapshot_of(b, head, 3, floor=True) is False, "a floor must be above the base"
        assert self.snapshot_of(b, head, 2, floor=True) is False
        for q in (5, 6, 7):
            assert self.snapshot_of(b, head, q, keep=1)
        assert b.snapshot_seqs(head.sid, 8) == [7, 3], "keep dropped the snapshot at the base"
        assert b.snapshot(head.sid, 3) == b"floor"

    def test_trim_removes_history_below_the_floor_in_batches(self) -> None:
        b = self.backend()
        old, base, live = chunk_for("old"), chunk_for("base"), chunk_for("live")
        head = self.create(b, "a", refs=[old])
        for i in range(2, 7):
            head = self.extend(b, head, b"e%d" % i, refs=[old] if i < 4 else [live])
        assert self.snapshot_of(b, head, 2, refs=[old], give=False)
        assert self.snapshot_of(b, head, 4, refs=[base], floor=True)
        other = self.create(b, "other")
        before_other = self.frames(b, other.sid)
        steps = []
        while not (step := b.trim(head.sid, 2)).done:
            assert step.events <= 2 and step.snapshots <= 2
            steps.append(step)
        assert (sum(s.events for s in steps), sum(s.snapshots for s in steps)) == (4, 1)
        assert self.frames(b, head.sid) == [(5, b"e5"), (6, b"e6")]
        assert b.snapshot_seqs(head.sid, 6) == [4]
        assert _free_all(b) == 1 and b.chunk_sizes([old.hash, base.hash, live.hash]).keys() == {base.hash, live.hash}
        assert self.frames(b, other.sid) == before_other
        assert b.trim(other.sid, 5) == b.trim(head.sid, 5)
        assert b.trim(other.sid, 5).done

    # ------------------------------------------------------------------ tombstones and compaction

    def test_after_tombstone_purge_and_free_nothing_of_the_session_remains(self) -> None:
        b = self.backend()
        mine, shared = chunk_for("mine"), chunk_for("shared")
        live = self.create(b, "live", refs=[shared])
        live = self.extend(b, live, refs=[shared], give=False)
        assert self.snapshot_of(b, live, 2, refs=[shared], give=False)
        live_state = (b.head("live"), self.frames(b, live.sid), _all_holders(b, [live.sid]), b.snapshot(live.sid, 2))
        head = self.create(b, "gone", refs=[mine, shared], give=True)
        for _ in range(4):
            head = self.extend(b, head, refs=[mine])
        assert self.snapshot_of(b, head, 3, refs=[mine])
        end = self.extend(b, head, tombstone=True)
        assert b.counts() == (1, 1, 2)
        assert b.refs(RefKind.EVENT, end.sid, 2) == {mine.hash}, "references stay until the purge"
        removed = [0, 0]
        (sid,) = b.dead(10)
        while not (step := b.purge(sid, 2)).done:
            removed[0] += step.events
            removed[1] += step.snapshots
        assert removed == [6, 1] and b.dead(10) == [] and b.counts() == (1, 0, 2)
        assert self.frames(b, end.sid) == [] and b.snapshot_seqs(end.sid, 10) == []
        assert b.refs(RefKind.EVENT, end.sid, 2) == set() and b.refs(RefKind.SNAPSHOT, end.sid, 3) == set()
        assert b.purge(sid, 2).done
        b.scrub()
        assert b.unreferenced_chunks() == 1 and _free_all(b) == 1
        assert b.chunks([mine.hash, shared.hash]).keys() == {shared.hash}
        assert (b.head("live"), self.frames(b, live.sid), _all_holders(b, [live.sid]),
                b.snapshot(live.sid, 2)) == live_state  # fmt: skip
        assert b.integrity(10) == []

    # ------------------------------------------------------------------ reading

    def test_reading_is_one_consistent_view(self) -> None:
        b = self.backend()
        other = self.handle(b)
        head = self.create(b, "a")
        wrote = threading.Event()

        def write() -> None:
            current = other.head("a")
            assert current is not None
            self.extend(other, current, b"meanwhile")
            wrote.set()

        with b.reading():
            first = (b.head("a"), self.frames(b, head.sid))
            t = threading.Thread(target=write)
            t.start()
            wrote.wait(0.5)  # (a backend may hold the writer until the view ends)
            assert (b.head("a"), self.frames(b, head.sid)) == first
        t.join()
        assert self.frames(b, head.sid)[-1] == (2, b"meanwhile")

    # ------------------------------------------------------------------ limits

    def test_no_cell_over_the_budget_is_stored(self) -> None:
        budget = 16_384
        b = self.backend(max_cell_bytes=budget)
        assert b.limits.max_cell_bytes == budget
        fits = budget - 512
        head = self.create(b, "a", b"f" * fits, refs=[chunk_for("big", fits)])
        assert self.frames(b, head.sid) == [(1, b"f" * fits)]
        assert b.chunks([chunk_for("big", fits).hash])[chunk_for("big", fits).hash].data == chunk_for("big", fits).data
        assert self.snapshot_of(b, head, 1, b"s" * fits)
        before = self.state(b)
        over = chunk_for("over", budget)
        for attempt in (
            lambda: self.extend(b, head, b"x" * budget),
            lambda: self.create(b, "b", b"x" * budget),
            lambda: self.extend(b, head, refs=[chunk_for("ok"), over]),
            lambda: self.snapshot_of(b, head, 1, b"x" * budget, refs=[chunk_for("ok")]),
            lambda: b.rewrite_chunk(Chunk(chunk_for("big", fits).hash, 0, budget, b"x" * budget)),
        ):
            with pytest.raises(StorageError):
                attempt()
            self.assert_unchanged(b, before)
        assert b.integrity(10) == []

    # ------------------------------------------------------------------ the feed and watchers

    def test_the_feed_gives_every_event_once_and_resumes_from_any_cursor(self) -> None:
        b = self.backend()
        heads = {n: self.create(b, n, f"{n}1".encode()) for n in ("a", "b", "c")}
        for i in range(2, 5):
            for n in ("a", "b"):
                heads[n] = self.extend(b, heads[n], f"{n}{i}".encode())
        self.extend(b, heads["c"], b"c2", tombstone=True)  # ended, not purged: still fed
        rows = self.settled_feed(b, 4 + 4 + 2)
        got = [(r.name, r.event.seq, r.event.frame) for r in rows]
        assert sorted(got) == sorted({*got}) and len(got) == 4 + 4 + 2
        for n in ("a", "b", "c"):
            assert [f for m, _, f in got if m == n] == [f"{n}{i}".encode() for i in range(1, 5 if n != "c" else 2)] + (
                [b"c2"] if n == "c" else []
            )
        assert all(r.sid == heads[r.name].sid and r.key == heads[r.name].key for r in rows)
        for i, r in enumerate(rows):  # resumable from any cursor, in pages of any size
            assert [x.event.pos for x in b.feed(r.cursor, 1000)] == [x.event.pos for x in rows[i + 1 :]]
        paged, cursor = [], ""
        while page := b.feed(cursor, 3):
            assert len(page) <= 3
            paged += page
            cursor = page[-1].cursor
        assert paged == rows
        for bad in ("x", "-1", " 1", 7, None, "1" * 40):
            with pytest.raises(InvalidValueError):
                b.feed(bad, 10)  # type: ignore[arg-type]
        with pytest.raises(InvalidValueError):
            b.feed("", 0)

    def test_a_watcher_wakes_at_another_handles_commit(self) -> None:
        b = self.backend()
        head = self.create(b, "a")
        other = self.handle(b)
        watcher = b.watcher()
        try:
            watcher.wait(0)  # (whatever came before)
            done = threading.Event()

            def write() -> None:
                done.wait(5)
                self.extend(other, head, b"from another handle")

            t = threading.Thread(target=write)
            t.start()
            done.set()
            start = time.monotonic()
            woke = False
            while not woke and time.monotonic() - start < 10:
                woke = watcher.wait(5) and bool(b.last_seq(head.sid) == 2)
            t.join()
            assert woke and time.monotonic() - start < 3, "the watcher did not wake at the commit"
        finally:
            watcher.close()
        watcher.close()  # (idempotent)

    @staticmethod
    def settled_feed(b: Backend, count: int, after: str = "", timeout: float = 60.0) -> list[Any]:
        """``b.feed(after, ...)`` once it gives ``count`` events: a backend may hold
        committed events back while a transaction that could come before them runs
        (on a server, anyone's), so the suite waits for it, as a reader would."""
        deadline = time.monotonic() + timeout
        while True:
            rows = b.feed(after, 1000)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    # ------------------------------------------------------------------ damaged storage

    def _damaged(self, kind: str) -> tuple[Backend, Head, Chunk]:
        b = self.backend()
        c = chunk_for("damaged")
        head = self.create(b, "a", refs=[c])
        head = self.extend(b, head, b"two", refs=[c], give=False)
        head = self.extend(b, head, b"three")
        assert self.snapshot_of(b, head, 2, refs=[c], give=False)
        self.create(b, "intact")
        self.damage(b, kind, sid=head.sid, seq=2, hash=c.hash)
        return b, head, c

    def _reports(self, b: Backend) -> None:
        problems = b.integrity(50)
        assert problems and all(isinstance(p, str) for p in problems), "integrity() did not report the damage"

    def test_damaged_event_columns(self) -> None:
        b, head, _ = self._damaged("event_column")
        with pytest.raises(CorruptionError):
            list(b.events(head.sid, 0))
        assert self.frames(b, head.sid, 2) == [(3, b"three")]
        self._reports(b)

    def test_damaged_event_frame(self) -> None:
        b, head, _ = self._damaged("event_frame")
        try:  # a backend returns bytes as stored, or says the row is damaged
            got = list(b.events(head.sid, 0))
        except CorruptionError:
            pass
        else:
            assert all(type(e) is StoredEvent and type(e.frame) is bytes for e in got)
        self._reports(b)

    def test_missing_event(self) -> None:
        b, head, _ = self._damaged("event_missing")
        assert [q for q, _ in self.frames(b, head.sid)] == [1, 3]
        self._reports(b)

    def test_damaged_session_row(self) -> None:
        b, _, _ = self._damaged("session_column")
        for read in (lambda: b.head("a"), lambda: b.heads(0, 10), lambda: b.info("a"), lambda: b.listing()):
            with pytest.raises(CorruptionError):
                read()
        assert b.head("intact") is not None
        self._reports(b)

    def test_damaged_snapshot_position_is_left_out(self) -> None:
        b, head, _ = self._damaged("snapshot_seq")
        assert b.snapshot_seqs(head.sid, 10) == []
        self._reports(b)

    def test_damaged_snapshot_frame(self) -> None:
        b, head, _ = self._damaged("snapshot_frame")
        try:
            got = b.snapshot(head.sid, 2)
        except CorruptionError:
            pass
        else:
            assert type(got) is bytes
        self._reports(b)

    def test_damaged_chunk_row(self) -> None:
        b, _, c = self._damaged("chunk_column")
        for read in (lambda: b.chunks([c.hash]), lambda: b.chunk_sizes([c.hash]), lambda: b.chunk_page(b"", 10)):
            with pytest.raises(CorruptionError):
                read()
        self._reports(b)

    def test_missing_chunk(self) -> None:
        b, head, c = self._damaged("chunk_missing")
        assert b.chunks([c.hash]) == {} and b.chunk_sizes([c.hash]) == {}
        self._reports(b)
        with pytest.raises(MissingChunks):
            self.extend(b, head, refs=[c], give=False)
        self.extend(b, head, refs=[c])  # given again: stored again
        assert b.chunks([c.hash]) == {c.hash: c}

    # ------------------------------------------------------------------ read-only handles

    def test_every_write_of_a_readonly_handle_raises(self) -> None:
        b = self.backend()
        c = chunk_for("c")
        head = self.extend(b, self.create(b, "a", refs=[c]))
        assert self.snapshot_of(b, head, 1)
        dead = self.extend(b, self.create(b, "d"), tombstone=True)
        ro = self.handle(b, readonly=True)
        assert ro.readonly and not b.readonly
        before = self.state(b)
        assert self.state(ro) == before, "a read-only handle reads the store"
        for write in (
            lambda: self.extend(ro, head),
            lambda: self.create(ro, "new"),
            lambda: self.snapshot_of(ro, head, 2),
            lambda: ro.rewrite_chunk(c),
            lambda: ro.purge(dead.sid, 10),
            lambda: ro.trim(head.sid, 10),
            lambda: ro.free_chunks(b"", 10),
            lambda: ro.adopt_refs(head.sid, {1: [c.hash]}, {}),
            lambda: ro.scrub(),
        ):
            with pytest.raises(ReadOnlyError):
                write()
        self.assert_unchanged(b, before)


class _ModelMachine(RuleBasedStateMachine):
    """Random operations on two handles of one store against a model: per live
    session its sid, head and the references of each event and snapshot; the
    ended incarnations' the same until purged."""

    def make(self) -> tuple[Backend, Backend]:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.handles = self.make()
        self.pool = [chunk_for(f"m{i}", 30 + i) for i in range(8)]
        self.by_hash = {c.hash: c for c in self.pool}
        #: sid -> {"name", "seq", "base", "events": {seq: refs}, "snapshots": {seq: refs}, "live"}
        self.model: dict[int, dict[str, Any]] = {}
        self.live: dict[str, int] = {}
        self.cursor: bytes | None = b""

    def _refs(self, data: st.DataObject) -> frozenset[bytes]:
        return frozenset(c.hash for c in data.draw(st.lists(st.sampled_from(self.pool), max_size=3)))

    @rule(name=st.sampled_from("abc"), second=st.booleans(), data=st.data())
    def append(self, name: str, second: bool, data: st.DataObject) -> None:
        b = self.handles[second]
        refs = self._refs(data)
        sid = self.live.get(name)
        seq = 1 if sid is None else self.model[sid]["seq"] + 1
        ev = new_event(name, sid, seq, seq, b"%s-%d" % (name.encode(), seq), 1, refs)
        (head,) = write_with_chunks(b, refs, self.by_hash, lambda give: b.append([ev], give))[0]
        assert head.seq == seq
        if sid is None:
            assert head.sid not in self.model, "an incarnation id was given again"
            self.live[name] = sid = head.sid
            self.model[sid] = {"name": name, "seq": 0, "base": 0, "events": {}, "snapshots": {}, "live": True}
        self.model[sid]["seq"] = seq
        self.model[sid]["events"][seq] = refs

    @rule(name=st.sampled_from("abc"), back=st.integers(0, 2))
    def stale_append_conflicts(self, name: str, back: int) -> None:
        sid = self.live.get(name)
        if sid is None:
            return
        seq = self.model[sid]["seq"] - back  # at the head (taken) or below it
        with pytest.raises(ConflictError) as e:
            self.handles[0].append([new_event(name, sid, max(seq, 1), 1, b"stale", 1)])
        assert e.value.seq == self.model[sid]["seq"]

    @rule(name=st.sampled_from("abc"), data=st.data(), keep=st.none() | st.integers(1, 2), floor=st.booleans())
    def snapshot(self, name: str, data: st.DataObject, keep: int | None, floor: bool) -> None:
        sid = self.live.get(name)
        if sid is None:
            return
        m = self.model[sid]
        seq = data.draw(st.integers(1, m["seq"] + 1))
        refs = self._refs(data)
        b = self.handles[data.draw(st.booleans())]
        snap = NewSnapshot(sid, seq, b"snap", 1, refs, keep, floor)
        ok = write_with_chunks(b, refs, self.by_hash, lambda give: b.put_snapshot(snap, give))[0]
        expected = seq <= m["seq"] and not (floor and m["base"] >= seq)
        assert ok == expected
        if not ok:
            return
        m["snapshots"][seq] = refs
        if floor:
            m["base"] = seq
        if keep is not None:
            newest = sorted(m["snapshots"], reverse=True)[:keep]
            for q in [q for q in m["snapshots"] if q != m["base"] and q < min(newest)]:
                del m["snapshots"][q]

    @rule(name=st.sampled_from("abc"), second=st.booleans())
    def tombstone(self, name: str, second: bool) -> None:
        sid = self.live.pop(name, None)
        if sid is None:
            return
        m = self.model[sid]
        self.handles[second].append([new_event(name, sid, m["seq"] + 1, 1, b"end", 0, tombstone=True)])
        m["seq"] += 1
        m["events"][m["seq"]] = frozenset()
        m["live"] = False

    def _removed(self, b: Backend, sid: int, events: list[int], snapshots: list[int], removed: Purged,
                 batch: int) -> None:  # fmt: skip
        """Check a purge or trim step that could remove ``events`` and ``snapshots``
        (positions), up to ``batch`` of each, against what is left, and update the
        model."""
        m = self.model[sid]
        assert (removed.events, removed.snapshots) == (min(batch, len(events)), min(batch, len(snapshots)))
        left_events = {e.seq for e in b.events(sid, 0)}
        left_snaps = set(b.snapshot_seqs(sid, 1 << 62))
        assert left_events <= set(m["events"]) and set(m["events"]) - left_events <= set(events)
        assert left_snaps <= set(m["snapshots"]) and set(m["snapshots"]) - left_snaps <= set(snapshots)
        m["events"] = {q: r for q, r in m["events"].items() if q in left_events}
        m["snapshots"] = {q: r for q, r in m["snapshots"].items() if q in left_snaps}

    @rule(batch=st.integers(1, 3), second=st.booleans())
    def purge_step(self, batch: int, second: bool) -> None:
        b = self.handles[second]
        dead = b.dead(10)
        assert sorted(dead) == sorted(sid for sid, m in self.model.items() if not m["live"])
        if not dead:
            return
        sid = dead[0]
        m = self.model[sid]
        step = b.purge(sid, batch)
        self._removed(b, sid, list(m["events"]), list(m["snapshots"]), step, batch)
        assert step.done == (not step.events and not step.snapshots)
        if step.done:
            assert not m["events"] and not m["snapshots"]
            del self.model[sid]

    @rule(name=st.sampled_from("abc"), batch=st.integers(1, 3))
    def trim_step(self, name: str, batch: int) -> None:
        sid = self.live.get(name)
        if sid is None:
            return
        m = self.model[sid]
        step = self.handles[1].trim(sid, batch)
        base = m["base"]
        events = [q for q in m["events"] if q <= base] if base else []
        snapshots = [q for q in m["snapshots"] if q < base] if base else []
        self._removed(self.handles[1], sid, events, snapshots, step, batch)
        assert step.done == (not step.events and not step.snapshots)

    @rule(batch=st.integers(1, 4))
    def free_step(self, batch: int) -> None:
        if self.cursor is None:
            self.cursor = b""
        step = self.handles[0].free_chunks(self.cursor, batch)
        self.cursor = step.cursor

    def _used(self) -> set[bytes]:
        return {h for m in self.model.values() for held in (*m["events"].values(), *m["snapshots"].values())
                for h in held}  # fmt: skip

    @rule()
    def compact_all(self) -> None:
        _compact_once(self.handles[1])
        self.model = {sid: m for sid, m in self.model.items() if m["live"]}
        stored = {c.hash for c in self.handles[0].chunk_page(b"", 100)}
        assert stored == self._used(), "after a whole compaction, exactly the chunks in use are stored"

    @invariant()
    def matches_the_model(self) -> None:
        b = self.handles[0]
        with b.reading():
            assert [h.name for h in b.heads(0, 100)] == [m["name"] for m in self.model.values() if m["live"]]
            for sid, m in self.model.items():
                if m["live"]:
                    head = b.head(m["name"])
                    assert head is not None and (head.sid, head.seq, head.base) == (sid, m["seq"], m["base"])
                assert sorted(e.seq for e in b.events(sid, 0)) == sorted(m["events"])
                assert b.snapshot_seqs(sid, 1 << 62) == sorted(m["snapshots"], reverse=True)
                for q, refs in m["events"].items():
                    assert b.refs(RefKind.EVENT, sid, q) == refs
                for q, refs in m["snapshots"].items():
                    assert b.refs(RefKind.SNAPSHOT, sid, q) == refs
            used = self._used()
            assert b.chunk_sizes(used).keys() == used, "a chunk in use was freed"

    def teardown(self) -> None:
        assert self.handles[0].integrity(20) == []
