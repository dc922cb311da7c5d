"""Rows of the log: frames, events and folding.

This is where the pure codec meets storage (through the protocol of
:mod:`eventlog.backend`): it externalises large values into chunks while encoding
(collected in a :class:`~eventlog.chunks.ChunkWrites`, written with the event or
snapshot), spills a frame that would not fit in one cell into chunks as well, and
on reading verifies, decompresses (bounded), decodes and rehydrates (reading the
chunks a snapshot's segments need in batches before decoding them), and folds a
session from its newest readable snapshot and the events after it.  How a snapshot
is laid out and built (segments, reusing those of the snapshot before) is
:class:`eventlog.snapshots.SnapshotBuilder`.  Every failure to read comes out as
:class:`~eventlog.errors.CorruptionError` (or
:class:`~eventlog.errors.UnsupportedVersionError`) naming the session and position.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from . import codec, fold, speedups
from .backend import Backend, StoredEvent
from .chunks import AHEAD_BYTES, Chunks, ChunkWrites, hashes_of
from .codec import ENTRIES, DecodeError, Framer, Ref, VersionError
from .codec import EVENT as EVENT
from .codec import SNAPSHOT as SNAPSHOT
from .errors import CorruptionError, InvalidValueError, UnsupportedVersionError
from .fold import Event, State
from .snapshots import Manifest, Segment, with_lists
from .values import externalise_large, validate, validate_each

logger = logging.getLogger(__name__)



#: A snapshot of at least this many segments has its later ones decompressed on a
#: worker thread (see :meth:`Log._ahead`).
AHEAD_MIN_SEGMENTS = 8
#: Where the worker's runs start and split, in percent of the segments: this thread
#: decompresses the first tenth itself; the worker a short run, then the rest.
AHEAD_A, AHEAD_B = 10, 40


def _cores() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1



class Encoded:
    """A body encoded for a frame, not yet bound to its place: what
    :meth:`Log.encode` gives; :meth:`seal` makes the frame.  ``refs``: the addresses
    of every chunk it uses; ``size``: its stored size (the compressed body, counted
    in full when spilled to chunks: what the snapshot policy weighs)."""

    __slots__ = ("flags", "paths", "payload", "refs", "size")

    def __init__(self, flags: int, payload: bytes, refs: frozenset[bytes], size: int, paths: bool = False) -> None:
        self.flags = flags
        self.payload = payload
        self.refs = refs
        self.size = size
        self.paths = paths

    def seal(self, kind: bytes, key: bytes | None, seq: int, ts: int | None = None) -> bytes:
        """The frame (format version 3 or 4, or 6 for a body using the forms of
        lists at paths: see :data:`~eventlog.codec.FRAME_VERSION_PATHS`), bound to
        its session's ``key``, its position and, given ``ts`` (an event's
        timestamp), to that.  A session
        without a key (``None``: only from a file of an older schema, which is
        migrated before anything is written) is :class:`CorruptionError`."""
        if key is None:
            raise CorruptionError("the session has no key (its sessions row is damaged)", seq=seq)
        flags = self.flags | (codec.FLAG_TIMED if ts is not None else 0)
        return Framer.seal(flags, self.payload, codec.key_binding(kind, key, seq, ts), keyed=True, paths=self.paths)


class Log:
    """Encodes and decodes the rows of one store.  Not thread-safe (zstd contexts)."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_cell_bytes: int,
        chunk_bytes: int,
        large_value_bytes: int,
        max_body_bytes: int,
        chunk_key: bytes | None = None,
    ) -> None:
        self.backend = backend
        self.framer = Framer()
        self.chunks = Chunks(backend, self.framer, chunk_bytes, key=chunk_key)
        # Room for the other columns of an event or snapshot row (a few integers).
        self.inline_limit = max_cell_bytes - 256
        # Snapshots a fold found unreadable, ``(sid, seq)``: a new snapshot is not
        # built on them but on a full fold (which rewrites the damaged chunks).
        self.damaged: set[tuple[int, int]] = set()
        self.cores = _cores()
        self.large_value_bytes = large_value_bytes
        self.max_body_bytes = max_body_bytes
        speedups.note()  # once per process: running without the C extension

    # ------------------------------------------------------------------ writing

    def _externalise(self, value: str | bytes, writes: ChunkWrites) -> Ref:
        limit = self.max_body_bytes
        # The value as the caller sees it (a str in UTF-8 bytes, base64 as text) is
        # what max_body_bytes bounds, so that what is read back is bounded too.
        size = len(value)
        if type(value) is str and not value.isascii():
            if size > limit:
                raise InvalidValueError(
                    f"a str of {size} characters is over the limit of {limit} bytes (max_body_bytes)"
                )
            if 4 * size > limit:
                try:
                    size = len(value.encode("utf-8"))
                except UnicodeEncodeError as e:
                    raise InvalidValueError(f"string is not valid Unicode text: {e}") from None
        if size > limit:
            raise InvalidValueError(f"a value of {size} bytes is over the limit of {limit} (max_body_bytes)")
        try:
            kind, raw, prefix, form = codec.split_large(value)
        except UnicodeEncodeError as e:
            raise InvalidValueError(f"string is not valid Unicode text: {e}") from None
        hashes = self.chunks.put(raw, writes)
        return Ref(kind, len(raw), hashes, prefix, form)

    def encodable(self, value: Any, writes: ChunkWrites, within: int = 0) -> Any:
        """A caller's value, validated (nested ``within`` levels down in a field:
        see :func:`~eventlog.values.validate`), with its large strings and bytes cut
        into chunks (for ``writes``) and replaced by refs."""
        if validate(value, self.large_value_bytes, within):
            return externalise_large(value, self.large_value_bytes, lambda v: self._externalise(v, writes))
        return value

    def encodable_each(self, items: list[Any], writes: ChunkWrites, within: int = 0) -> list[Any]:
        """:meth:`encodable` of each value in ``items`` (appended entries), validated
        in one walk: ``items`` itself when none holds a large value."""
        if validate_each(items, self.large_value_bytes, within):
            put = lambda v: self._externalise(v, writes)  # noqa: E731
            return [externalise_large(v, self.large_value_bytes, put) for v in items]
        return items

    def encode(
        self,
        kind: bytes,
        wire: Any,
        writes: ChunkWrites,
        *,
        seq: int | None = None,
        segments: bool = False,
        paths: bool = False,
    ) -> Encoded:
        """Encode an event or snapshot body for a frame that fits one cell (a body
        too large for one is spilled into chunks, for ``writes``); ``seq`` names the
        position in errors.  ``segments``: the body is a manifest; ``paths``: it
        uses the forms of lists at paths (an event with an ``At``, a manifest with
        lists at paths), so its frame is version 6."""
        refs: list[Ref] = []
        try:
            body = codec.dumps(wire, refs)
        except ValueError as e:
            raise InvalidValueError(str(e), seq=seq) from None
        if len(body) > self.max_body_bytes:
            raise InvalidValueError(
                f"one write of {len(body)} encoded bytes is over the limit of {self.max_body_bytes}; "
                "split it into several",
                seq=seq,
            )
        used = hashes_of(refs)
        flags, payload = self.framer.compress(body, fast=kind == EVENT)
        size = len(payload)
        if size > self.inline_limit:
            hashes = self.chunks.put(payload, writes)
            used |= hashes_of([Ref(codec.KIND_BYTES, size, hashes)])
            payload = codec.dumps([flags, len(payload), hashes])
            flags = codec.FLAG_SPILL
        if segments:
            flags |= codec.FLAG_SEGMENTS
        return Encoded(flags, payload, used, size, paths)

    def frame(
        self,
        kind: bytes,
        key: bytes | None,
        seq: int,
        wire: Any,
        ts: int | None = None,
        *,
        writes: ChunkWrites,
        segments: bool = False,
        paths: bool = False,
    ) -> tuple[bytes, frozenset[bytes], int]:
        """:meth:`encode` and :meth:`Encoded.seal`: the frame, the chunks it uses
        (to be recorded as its refs) and its stored size."""
        encoded = self.encode(kind, wire, writes, seq=seq, segments=segments, paths=paths)
        return encoded.seal(kind, key, seq, ts), encoded.refs, encoded.size

    # ------------------------------------------------------------------ reading

    def body(
        self,
        kind: bytes,
        name: str,
        sid: int,
        key: bytes | None,
        seq: int,
        frame: bytes,
        rehydrate: bool,
        seen: list[Ref] | None = None,
        ts: int | None = None,
    ) -> tuple[int, Any, int]:
        """Decode a frame: whether it is a segmented snapshot's manifest (0: no; else
        its frame version, which says what the manifest may hold: see
        :meth:`manifest`), the wire value (not yet checked: see
        :func:`eventlog.values.decoded_ok`), and the ENTRIES markers seen.  Every
        reference to chunks in the frame (large values, and the pointer of a spilled
        frame) is appended to ``seen`` when given."""
        resolve = self._rehydrate if rehydrate else None
        if seen is not None:

            def resolve(ref: Ref) -> Any:
                seen.append(ref)
                return self._rehydrate(ref) if rehydrate else ref

        try:
            flags, payload = Framer.open(frame, codec.Place(kind, sid, key, seq, ts))
            segmented = frame[0] if flags & codec.FLAG_SEGMENTS else 0
            if segmented and kind != SNAPSHOT:
                raise DecodeError("an event frame flagged as a snapshot manifest")
            flags &= ~codec.FLAG_SEGMENTS
            if flags & codec.FLAG_SPILL:
                (spill, _) = codec.loads(payload)
                if (
                    type(spill) is not list
                    or len(spill) != 3
                    or type(spill[0]) is not int
                    or type(spill[1]) is not int
                    or type(spill[2]) is not bytes
                ):
                    raise DecodeError("malformed spill pointer")
                flags = spill[0]
                if flags & ~codec.FLAG_ZSTD:
                    raise DecodeError("malformed spill pointer")
                pointer = Ref(codec.KIND_BYTES, spill[1], spill[2])
                if seen is not None:
                    seen.append(pointer)
                payload = self._read_large(pointer)
                if len(payload) != spill[1]:
                    raise DecodeError("spilled frame has the wrong length")
            body = self.framer.decompress(flags, payload, self.max_body_bytes)
            return (segmented, *codec.loads(body, resolve))
        except VersionError as e:
            raise UnsupportedVersionError(str(e), session_id=name, seq=seq) from None
        except DecodeError as e:
            what = "event" if kind == EVENT else "snapshot"
            raise CorruptionError(f"{what} is damaged: {e}", session_id=name, seq=seq) from None

    def _read_large(self, ref: Ref) -> bytes:
        if ref.length > self.max_body_bytes:
            raise DecodeError(f"a large value claims {ref.length} bytes, over the limit of {self.max_body_bytes}")
        return self.chunks.get(ref.chunk_hashes(), ref.length)

    def rehydrate(self, ref: Ref) -> str | bytes:
        """The large value ``ref`` stands for, read and verified
        (:class:`~eventlog.codec.DecodeError` when it cannot be)."""
        return self._rehydrate(ref)

    def _rehydrate(self, ref: Ref) -> str | bytes:
        size = codec.value_bytes(ref)
        if size > self.max_body_bytes:
            raise DecodeError(f"a large value of {size} bytes is over the limit of {self.max_body_bytes}")
        return codec.join_large(ref, self._read_large(ref))

    def event(
        self,
        name: str,
        sid: int,
        key: bytes | None,
        seq: int,
        pos: int,
        ts: int,
        frame: bytes,
        rehydrate: bool,
        seen: list[Ref] | None = None,
    ) -> Event:
        _, wire, markers = self.body(EVENT, name, sid, key, seq, frame, rehydrate, seen, ts)
        try:
            ops = fold.ops_from_wire(wire)
            legit = sum(1 for op in ops if type(op) is fold.SetFields and op.changed.get("entries") is ENTRIES)
            # (an At's values are checked without the marker: one there is damage)
            if markers != legit:
                raise DecodeError("entries marker inside a value")
        except DecodeError as e:
            raise CorruptionError(f"event is damaged: {e}", session_id=name, seq=seq) from None
        return Event(name, seq, pos, ts, ops)

    def events(
        self, name: str, sid: int, key: bytes | None, after: int, upto: int | None, rehydrate: bool
    ) -> Iterator[Event]:
        """Events ``after < seq <= upto``; :class:`CorruptionError` when one is missing."""
        for stored in self.stored(name, sid, after, upto):
            yield self.event(name, sid, key, stored.seq, stored.pos, stored.ts_ms, stored.frame, rehydrate)

    def stored(self, name: str, sid: int, after: int, upto: int | None) -> Iterator[StoredEvent]:
        """The stored events ``after < seq <= upto``, not decoded;
        :class:`CorruptionError` when one is missing."""
        expected = after + 1
        for stored in self.backend.events(sid, after, upto):
            if stored.seq != expected:
                raise CorruptionError(f"event {expected} is missing", session_id=name, seq=expected)
            yield stored
            expected += 1
        if upto is not None and expected <= upto:  # the last ones are gone
            raise CorruptionError(f"event {expected} is missing", session_id=name, seq=expected)

    def snapshot_state(
        self,
        name: str,
        sid: int,
        key: bytes | None,
        seq: int,
        frame: bytes,
        rehydrate: bool,
        seen: list[Ref] | None = None,
    ) -> State:
        """The state a snapshot holds, its segments (those of the entries and of the
        lists at paths) read, verified and decoded."""
        segmented, wire, markers = self.body(SNAPSHOT, name, sid, key, seq, frame, rehydrate, seen)
        expected = 0
        try:
            if segmented:
                found = self.manifest(wire, segmented)
                with self.chunks.reading_ahead():
                    items = self._segments(found.all_segments(), rehydrate, seen)
                entries, lists = found.split(items)
                wire = [with_lists(found.fields, lists), entries]
                expected = len(lists)
            state = fold.state_from_wire(wire)
            if markers != expected + (1 if state.managed else 0):
                raise DecodeError("entries marker inside a value")
        except VersionError as e:
            raise UnsupportedVersionError(str(e), session_id=name, seq=seq) from None
        except DecodeError as e:
            raise CorruptionError(f"snapshot is damaged: {e}", session_id=name, seq=seq) from None
        return state

    def _segments(self, segments: list[Segment], rehydrate: bool, seen: list[Ref] | None) -> list[Any]:
        """The entries of a segmented snapshot, in two phases: the manifest says
        which chunks the segments are stored in and which the large values inside
        them use, so those are read in a few batched calls before anything is
        decoded, never one by one (within :meth:`Chunks.reading_ahead`)."""
        entries: list[Any] = []
        self.chunks.prefetch([h for s in segments for h in s.pointer().chunk_hashes()])
        windows = self._windows(segments) if rehydrate else {}
        ahead = self._ahead(segments) if seen is None else []
        starts = dict(ahead)
        done: list[Any] | None = None
        base = 0
        try:
            for i, segment in enumerate(segments):
                if i in windows:
                    self.chunks.prefetch(windows[i])
                if i in starts:
                    done, base = starts[i].result(), i  # None: one by one, to name what is wrong
                body = None
                if done is not None and i - base < len(done):  # a run's memory goes back as it is decoded
                    body, done[i - base] = done[i - base], None
                try:
                    part = self.segment(segment, rehydrate, seen, body)
                except DecodeError as e:  # (a VersionError stays one)
                    raise type(e)(f"segment {i} (entries {len(entries)}+): {e}") from None
                entries += part
        finally:
            wait([job for _, job in ahead])  # no worker outlives the load
        return entries

    def _windows(self, segments: list[Segment]) -> dict[int, list[bytes]]:
        """The chunks of the large values inside the segments, by the segment to
        read them ahead at: runs of segments whose large values come to at most
        half of :data:`~eventlog.chunks.AHEAD_BYTES` (each chunk counted at its
        largest), so that what is held stays bounded however large the session."""
        out: dict[int, list[bytes]] = {}
        room = (AHEAD_BYTES // 2) // max(self.chunks.chunk_bytes, 1)
        start, run = 0, list[bytes]()
        for i, segment in enumerate(segments):
            inner = segment.inner_hashes()
            if run and len(run) + len(inner) > room:
                out[start] = run
                start, run = i, []
            run += inner[: max(room - len(run), 0)]  # the rest of a segment with more: read as met
        if run:
            out[start] = run
        return out

    def manifest(self, wire: Any, version: int) -> Manifest:
        """A segmented snapshot's manifest from its frame of ``version``;
        :class:`DecodeError` if malformed or if its segments add up to more than
        ``max_body_bytes`` (see :meth:`Manifest.from_wire`)."""
        return Manifest.from_wire(wire, version, self.max_body_bytes)

    def _ahead(self, segments: list[Segment]) -> list[tuple[int, Future[list[bytes] | None]]]:
        """With several cores and many segments: ``(start, job)`` for runs of the later
        segments, read here and decompressed on a worker thread outside the GIL
        (:func:`~eventlog.codec.decompress_run`, into new ``bytes`` that the decoder
        then reads without a copy: their page faults land on the worker's core), while
        this thread decompresses and decodes the first ones itself.  Each run is handed over as soon as it is read;
        decoding takes about three times as long as decompressing, so the worker keeps
        ahead.  A run shares nothing with this thread (its decompression context is
        made for it, its payloads are immutable bytes); still, a load waits for the
        runs it started before it returns or raises.  Empty otherwise, or as far as it
        got when no thread can be started (the interpreter shutting down): the rest is
        read in order."""
        n = len(segments)
        if n < AHEAD_MIN_SEGMENTS or self.cores < 2:
            return []
        cuts = sorted({max(1, n * AHEAD_A // 100), max(2, n * AHEAD_B // 100), n})
        pool = ThreadPoolExecutor(1, thread_name_prefix="eventlog-zstd")
        jobs: list[tuple[int, Future[list[bytes] | None]]] = []
        try:
            for a, b in itertools.pairwise(cuts):
                items = [(s.compression, self._payload(s, None)) for s in segments[a:b]]
                try:
                    job = pool.submit(codec.decompress_run, items, [s.raw for s in segments[a:b]])
                except RuntimeError:  # no new thread now: read in order
                    break
                jobs.append((a, job))
        except DecodeError:
            pass  # the rest is read in order, to name the damaged segment
        except BaseException:
            wait([job for _, job in jobs])
            raise
        finally:
            pool.shutdown(wait=False)  # the thread ends with its jobs
        return jobs

    def _payload(self, segment: Segment, seen: list[Ref] | None) -> bytes:
        """A segment's stored (compressed) bytes, read and verified."""
        pointer = segment.pointer()
        if seen is not None:
            seen.append(pointer)
        payload = self._read_large(pointer)
        if len(payload) != segment.length:
            raise DecodeError("segment has the wrong length")
        return payload

    def segment(
        self,
        segment: Segment,
        rehydrate: bool,
        seen: list[Ref] | None,
        body: Any = None,
    ) -> list[Any]:
        """A segment's entries, read, verified, decompressed (exactly one zstd frame of
        its size) and decoded (their values are checked with the rest of the
        snapshot), unless ``body`` is given: its bytes already read, verified and
        decompressed."""
        if body is None:
            body = self.framer.decompress_exact(segment.compression, self._payload(segment, seen), segment.raw)
        return self._segment_entries(segment, body, rehydrate, seen)

    def _segment_entries(self, segment: Segment, body: Any, rehydrate: bool, seen: list[Ref] | None) -> list[Any]:
        found: list[Ref] = []

        def resolve(ref: Ref) -> Any:
            found.append(ref)
            return self._rehydrate(ref) if rehydrate else ref

        value, markers = codec.loads(body, resolve, stringref=segment.stringref)
        if type(value) is not list or len(value) != segment.count or markers:
            raise DecodeError("malformed snapshot segment")
        if {h for ref in found for h in ref.chunk_hashes()} != set(segment.inner_hashes()):
            raise DecodeError("segment's list of the large values inside does not match them")
        if seen is not None:
            seen += found
        return value

    def fold(
        self,
        name: str,
        sid: int,
        key: bytes | None,
        upto: int,
        rehydrate: bool,
        floor: int = 0,
        read: Callable[[int, bytes], State] | None = None,
    ) -> State:
        """The state after event ``upto``: the newest readable snapshot at or below it
        plus the events after.  A damaged snapshot is skipped (snapshots are a
        cache), except the one at ``floor``: when history before it was compacted
        away it is the only copy.  Damaged events raise :class:`CorruptionError`.
        ``read(seq, frame)`` makes the state a snapshot holds (default:
        :meth:`snapshot_state`, every segment decoded), raising
        :class:`CorruptionError` or :class:`UnsupportedVersionError` for one that
        cannot be built on."""
        if read is None:

            def read(seq: int, frame: bytes) -> State:
                return self.snapshot_state(name, sid, key, seq, frame, rehydrate)

        state, base = State(), 0
        found = False
        skipped: list[tuple[int, str]] = []
        for snap_seq in self.backend.snapshot_seqs(sid, upto):
            if snap_seq < floor:
                continue  # left over from compaction, about to be removed
            frame = self.backend.snapshot(sid, snap_seq)
            try:
                if frame is None:
                    raise CorruptionError("snapshot is missing", session_id=name, seq=snap_seq)
                state = read(snap_seq, frame)
                base, found = snap_seq, True
                break
            except (CorruptionError, UnsupportedVersionError) as e:
                self.damaged.add((sid, snap_seq))  # not to be built on
                if snap_seq == floor:
                    raise
                skipped.append((snap_seq, e.message))
        if floor and not found:
            raise CorruptionError("the snapshot holding the compacted history is missing", session_id=name, seq=floor)
        for snap_seq, why in skipped:
            logger.warning(
                "snapshot of session %r at %d skipped (%s): folded from %s instead",
                name,
                snap_seq,
                why,
                f"the snapshot at {base}" if found else "its first event",
            )
        self.replay(state, name, sid, key, base, upto, rehydrate)
        return state

    def replay(
        self, state: State, name: str, sid: int, key: bytes | None, after: int, upto: int, rehydrate: bool
    ) -> None:
        """Apply the events ``after < seq <= upto`` to ``state``; an event that is
        missing, damaged or does not apply is a :class:`CorruptionError`."""
        for event in self.events(name, sid, key, after, upto, rehydrate):
            try:
                fold.apply(state, event.ops)
            except ValueError as e:
                raise CorruptionError(f"event does not apply: {e}", session_id=name, seq=event.seq) from None
