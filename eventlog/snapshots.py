"""Snapshots: when to take one, and how one is laid out.

A snapshot is the whole folded state of a session at one position, so that loading
reads the newest snapshot and replays only the events after it.  Snapshots are a
cache: a missing or damaged one falls back to an older one or to full replay (see
:meth:`eventlog.log.Log.fold`), except the floor of a compacted history.

**Layout.**  A snapshot row holds a small *manifest*: the session's top-level fields
and a list of :class:`Segment`.  Each segment is a run of consecutive entries,
encoded as one CBOR array, compressed, and stored as content-addressed chunks like a
large value.  A new snapshot reuses, unread and unwritten, every segment of the
previous one whose entries are still there unchanged, in the same order (appends and
in-place edits leave all but the segments they touch alone), and writes only the
rest.  So taking a snapshot costs about what was written since the last one, not the
session's size, and snapshots can be taken often, which keeps the replay of a load
short.  Snapshots written before segments (one frame holding everything) are still
read.

**String references.**  A segment's entries repeat the same keys and short values
over and over (``"type"``, ``"role"``, ``"content"``, a model's name...), and a load
spends most of its time making a new ``str`` for each.  Segments are therefore
written with CBOR string references (tags 256 and 25, `the stringref extension
<http://cbor.schmorp.de/stringref>`_, which ``cbor2`` reads and writes itself):
each string after its first use in the segment is a reference to it, and decodes
to the very same object.  That makes a load about a third faster and the session
it returns smaller; the segment's flags say so (:data:`FLAG_STRINGREF`), and a
segment without it (written before) is read as it always was.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from . import codec, fold
from .chunks import ChunkWrites
from .codec import ENTRIES, FLAG_ZSTD, KIND_BYTES, SNAPSHOT, DecodeError, Ref
from .errors import CorruptionError, InvalidValueError, UnsupportedVersionError
from .fold import State

if TYPE_CHECKING:
    from .log import Log

logger = logging.getLogger(__name__)

#: A segment flag: its CBOR uses string references (see the module documentation).
FLAG_STRINGREF = 2
#: The segment flags a reader knows.
SEGMENT_FLAGS = FLAG_ZSTD | FLAG_STRINGREF

#: A new segment is closed once its CBOR reaches this many bytes.
SEGMENT_BYTES = 512 << 10
#: Segments smaller than this are not reused but rewritten together with their
#: neighbours, so a session does not end up in many small segments.
MIN_REUSE_BYTES = SEGMENT_BYTES // 4


@dataclass(frozen=True, slots=True)
class Segment:
    """``count`` consecutive entries as a CBOR array of ``raw`` bytes, stored as
    ``length`` bytes (zstd-compressed when ``flags`` has ``FLAG_ZSTD``; its strings
    after the first of each referenced when it has :data:`FLAG_STRINGREF`) in the
    chunks ``hashes``; ``inner`` lists the chunks that large values inside refer to
    (sorted, without repeats), so a reusing snapshot records them without reading
    it."""

    count: int
    flags: int
    raw: int
    length: int
    hashes: bytes
    inner: bytes

    @property
    def compression(self) -> int:
        """How the stored bytes are compressed (the frame flags of :class:`~eventlog.codec.Framer`)."""
        return self.flags & FLAG_ZSTD

    @property
    def stringref(self) -> bool:
        """Whether the CBOR uses string references."""
        return bool(self.flags & FLAG_STRINGREF)

    def pointer(self) -> Ref:
        """Where the stored bytes are, as a reference to chunks."""
        return Ref(KIND_BYTES, self.length, self.hashes)

    def inner_hashes(self) -> list[bytes]:
        return [self.inner[i : i + 32] for i in range(0, len(self.inner), 32)]

    def to_wire(self) -> list[Any]:
        return [self.count, self.flags, self.raw, self.length, self.hashes, self.inner]

    @classmethod
    def from_wire(cls, wire: Any, limit: int) -> Segment:
        """A segment from its decoded manifest form; :class:`DecodeError` if malformed
        or if it claims more than ``limit`` bytes."""
        if type(wire) is not list or len(wire) != 6:
            raise DecodeError("malformed snapshot segment")
        count, flags, raw, length, hashes, inner = wire
        if (
            type(count) is not int
            or type(flags) is not int
            or type(raw) is not int
            or type(length) is not int
            or type(hashes) is not bytes
            or type(inner) is not bytes
            or not 0 < count <= raw  # an entry takes a byte at least
            or flags & ~SEGMENT_FLAGS
            or not 0 < raw <= limit
            or not 0 < length <= raw  # stored compressed only when that is smaller
            or (not flags & FLAG_ZSTD and length != raw)
            or not hashes
            or len(hashes) % 32
            or len(inner) % 32
        ):
            raise DecodeError("malformed snapshot segment")
        return cls(count, flags, raw, length, hashes, inner)


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Snapshot a session once ``every`` events, or ``bytes`` of event frames, have
    been written since its last snapshot (0 disables either trigger), but only when
    those frames add up to at least ``tail_ratio`` of what the last snapshot wrote.
    Keep the newest ``keep``.

    The event count bounds what a load replays event by event (each event has a
    fixed cost, about as much as decoding a few kilobytes of snapshot); the byte
    count bounds the bytes it replays.  The size condition keeps snapshot writing
    proportional to what is appended, so saving never grows with the square of the
    session's length: a snapshot of a small session rewrites it whole, one of a
    large session writes its manifest (which grows with the session) and the
    segments that changed (see the module docstring).
    """

    every: int = 200
    bytes: int = 64 << 20
    tail_ratio: float = 0.5
    keep: int = 2

    def due(self, seq: int, snap_seq: int, snap_bytes: int, bytes_since: int) -> bool:
        """Whether a session now at ``seq`` should be snapshotted (``snap_bytes``:
        what its last snapshot wrote)."""
        triggered = (self.every > 0 and seq - snap_seq >= self.every) or (0 < self.bytes <= bytes_since)
        return triggered and bytes_since >= self.tail_ratio * snap_bytes


class _Layout:
    """The entry list of a snapshot being built, as pieces: a ``range`` of positions
    in the snapshot it builds on (their values still unread in its segments) or one
    new wire value.  Supports what :func:`eventlog.fold.apply` does to a list, in
    time that grows with the pieces, not with the entries."""

    __slots__ = ("n", "pieces")

    def __init__(self, n: int) -> None:
        self.n = n
        self.pieces: list[Any] = [range(n)] if n else []

    def __len__(self) -> int:
        return self.n

    def _at(self, i: int) -> int:
        """The index of the piece starting at position ``i`` (splitting a range)."""
        if i == self.n:
            return len(self.pieces)
        pos = 0
        for k, piece in enumerate(self.pieces):
            size = len(piece) if type(piece) is range else 1
            if pos == i:
                return k
            if pos + size > i:
                self.pieces[k : k + 1] = [piece[: i - pos], piece[i - pos :]]
                return k + 1
            pos += size
        raise IndexError(i)

    def __setitem__(self, key: int | slice, value: Any) -> None:
        if type(key) is slice:  # fold.apply inserts: entries[i:i] = values
            assert key.start == key.stop
            k = self._at(key.start)
            self.pieces[k:k] = value
            self.n += len(value)
        else:
            assert isinstance(key, int)
            k = self._at(key)
            self._at(key + 1)
            self.pieces[k] = value

    def __delitem__(self, key: slice) -> None:
        k, j = self._at(key.start), self._at(key.stop)
        del self.pieces[k:j]
        self.n -= key.stop - key.start



class SnapshotBuilder:
    """Builds the snapshots of one store (see the module documentation for their
    layout), reading the frames, events and chunks it needs through ``log`` (a
    :class:`~eventlog.log.Log`) and encoding with it.  Not thread-safe (its log)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        # A snapshot segment aims at half a chunk of CBOR: compressed, one chunk.
        self.segment_bytes = min(SEGMENT_BYTES, max(log.chunks.chunk_bytes // 2, 1024))
        self.min_reuse_bytes = self.segment_bytes * MIN_REUSE_BYTES // SEGMENT_BYTES

    def snapshot(
        self, name: str, sid: int, key: bytes | None, seq: int, floor: int, writes: ChunkWrites, *, reuse: bool = True
    ) -> tuple[bytes, frozenset[bytes], int]:
        """A snapshot of the session at ``seq``, its chunks collected in ``writes``:
        its frame, the addresses of every chunk it uses (segments, large values, a
        spilled manifest), to be recorded as its refs in the same unit of work, and
        the bytes it wrote (what the snapshot policy
        weighs: its frame, or spilled manifest, and the segments not kept from the
        snapshot it builds on).

        With ``reuse``, it builds on the newest segmented snapshot at or below
        ``seq``: replays the events since over that snapshot's entry positions and
        keeps each of its segments whose entries all came through unchanged and in
        order, without reading it.  Without ``reuse`` (or with nothing to build on,
        or when what it builds on turns out damaged) it folds the session and writes
        every segment, rewriting a damaged chunk it would share: what compaction
        wants for the floor of a shortened history (large values inside are not
        read: they are stored once, whatever refers to them)."""
        base = self._base(name, sid, key, seq, floor) if reuse else None
        try:
            return self._build(name, sid, key, seq, floor, base, writes)
        except CorruptionError as e:
            if base is None:
                raise
            why = e.message
        # Something it would keep or read is damaged: fold everything, and rewrite
        # what it would share, rather than carry the damage into every snapshot.
        self.log.damaged.add((sid, base[0]))
        logger.warning(
            "snapshot of session %r at %d: what it would reuse of the snapshot at %d is damaged (%s);"
            " writing every segment anew",
            name,
            seq,
            base[0],
            why,
        )
        writes.pieces.clear()  # (what the failed build cut is not used)
        writes.repairs.clear()
        return self._build(name, sid, key, seq, floor, None, writes)

    def _build(
        self,
        name: str,
        sid: int,
        key: bytes | None,
        seq: int,
        floor: int,
        base: tuple[int, dict[str, Any], list[Segment]] | None,
        writes: ChunkWrites,
    ) -> tuple[bytes, frozenset[bytes], int]:
        old: list[Segment] = []
        if base is None:
            state = self.log.fold(name, sid, key, seq, False, floor)
            items: Any = state.entries
        else:
            base_seq, fields, old = base
            items = _Layout(sum(s.count for s in old))
            state = State(fields, items)
            for event in self.log.events(name, sid, key, base_seq, seq, rehydrate=False):
                try:
                    fold.apply(state, event.ops)
                except ValueError as e:
                    raise CorruptionError(f"event does not apply: {e}", session_id=name, seq=event.seq) from None
        pieces = items.pieces if base is not None else items
        return self.snapshot_of(name, key, seq, state.fields, pieces, old, writes, repair=base is None)

    def snapshot_of(
        self,
        name: str,
        key: bytes | None,
        seq: int,
        fields: dict[str, Any],
        pieces: list[Any],
        old: list[Segment],
        writes: ChunkWrites,
        *,
        repair: bool = True,
    ) -> tuple[bytes, frozenset[bytes], int]:
        """The snapshot frame of a state: its ``fields`` and its entries as
        ``pieces`` (wire values, or ranges of positions in ``old``, the segments of
        the snapshot it builds on: see :meth:`_cut`); returns what
        :meth:`snapshot` does."""
        segments, inline = self._cut(name, seq, pieces, old, writes, repair=repair)
        if inline is not None:  # a small session: one frame, as before segments
            return self.log.frame(SNAPSHOT, key, seq, fold.state_to_wire(State(fields, inline)), writes=writes)
        limit = self.log.max_body_bytes
        if sum(s.raw for s in segments) > limit:
            raise InvalidValueError(f"the session's entries encode to more than the limit of {limit} bytes", seq=seq)
        wire = [fields, [s.to_wire() for s in segments]]
        frame, refs, written = self.log.frame(SNAPSHOT, key, seq, wire, writes=writes, segments=True)
        wanted = {h for s in segments for h in (*s.pointer().chunk_hashes(), *s.inner_hashes())}
        # What it keeps or refers to without having written it must be stored (else
        # the snapshot it builds on is damaged: see snapshot()).
        unwritten = [h for h in wanted if h not in writes.pieces]
        found = self.log.backend.chunk_sizes(unwritten) if unwritten else {}
        if len(found) != len(unwritten):
            missing = min(h for h in unwritten if h not in found)
            raise CorruptionError(f"chunk {missing.hex()} is missing", session_id=name, seq=seq)
        kept = set(old)
        return frame, refs | wanted, written + sum(s.length for s in segments if s not in kept)

    def _base(
        self, name: str, sid: int, key: bytes | None, seq: int, floor: int
    ) -> tuple[int, dict[str, Any], list[Segment]] | None:
        """The newest snapshot at or below ``seq`` (and at or above ``floor``) if it
        is segmented, its manifest reads and no load found it damaged: its position,
        fields and segments."""
        seqs = [s for s in self.log.backend.snapshot_seqs(sid, seq) if s >= floor]
        frame = self.log.backend.snapshot(sid, seqs[0]) if seqs else None
        if frame is None or (sid, seqs[0]) in self.log.damaged:
            return None
        try:
            segmented, wire, markers = self.log.body(SNAPSHOT, name, sid, key, seqs[0], frame, False)
            if not segmented:
                return None
            fields, segments = self.log.manifest(wire)
            fold.state_from_wire([fields, []])
            if markers != (1 if fields.get("entries") is ENTRIES else 0):
                return None
        except (CorruptionError, UnsupportedVersionError, DecodeError):
            return None
        return seqs[0], fields, segments

    def _reusable(self, old: list[Segment]) -> list[int]:
        """Which of ``old`` may be kept: all but the runs of small segments (under
        ``min_reuse_bytes``) that add up to ``min_reuse_bytes``; those are merged
        into one.  So a snapshot writes about what is new (the new entries form a
        small segment at the end), each byte is merged at most once, and the small
        segments of a session add up to less than ``min_reuse_bytes`` per run."""
        keep: list[int] = []
        run: list[int] = []
        total = 0
        for k, segment in enumerate([*old, None]):
            if segment is not None and segment.raw < self.min_reuse_bytes:
                run.append(k)
                total += segment.raw
                continue
            if total < self.min_reuse_bytes:
                keep += run
            run, total = [], 0
            if segment is not None:
                keep.append(k)
        return keep

    def _cut(
        self, name: str, seq: int, pieces: list[Any], old: list[Segment], writes: ChunkWrites, *, repair: bool = False
    ) -> tuple[list[Segment], list[Any] | None]:
        """Segments holding the entries ``pieces`` (wire values, and ``range`` of
        positions in the snapshot built on, whose segments are ``old``): each old
        segment that :meth:`_reusable` allows and whose positions a range covers
        whole is kept as it is; the other entries are encoded into new segments of
        about ``segment_bytes``.  When all of them would make one small segment,
        nothing is written and their values are returned instead, to be kept in the
        snapshot's own row.  ``repair``: see :meth:`~eventlog.chunks.Chunks.put`."""
        starts = list(accumulate((s.count for s in old), initial=0))
        reusable = {starts[k]: k for k in self._reusable(old)}
        decoded: dict[int, list[Any]] = {}
        out: list[Segment] = []
        encoded: list[bytes] = []
        values: list[Any] = []
        refs: list[Ref] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if not encoded:
                return
            # A segment large enough to be reused (kept by every later snapshot until
            # its entries change) is encoded again as one value, with string
            # references: a load reads it about a third faster (see
            # eventlog.snapshots).  A smaller one is rewritten as its neighbours
            # grow: its entries' own encodings will do.
            full = size >= self.min_reuse_bytes
            raw = codec.dumps(values, stringref=True) if full else codec.array_head(len(encoded)) + b"".join(encoded)
            flags, payload = self.log.framer.compress(raw)
            hashes = self.log.chunks.put(payload, writes, compress=False, repair=repair)
            inner = b"".join(sorted({h for ref in refs for h in ref.chunk_hashes()}))
            flags |= FLAG_STRINGREF if full else 0
            out.append(Segment(len(encoded), flags, len(raw), len(payload), hashes, inner))
            encoded.clear()
            values.clear()
            refs.clear()
            size = 0

        def add(wire: Any) -> None:
            nonlocal size
            try:
                piece = codec.dumps(wire, refs)
            except ValueError as e:
                raise InvalidValueError(str(e), session_id=name, seq=seq) from None
            encoded.append(piece)
            values.append(wire)
            size += len(piece)
            if size >= self.segment_bytes:
                flush()

        def old_value(q: int) -> Any:
            k = bisect_right(starts, q) - 1
            if k not in decoded:
                try:
                    decoded[k] = self.log.segment(old[k], False, None)
                except DecodeError as e:
                    raise CorruptionError(f"snapshot segment {k} is damaged: {e}", session_id=name, seq=seq) from None
            return decoded[k][q - starts[k]]

        for piece in pieces:
            if type(piece) is not range:
                add(piece)
                continue
            q, stop = piece.start, piece.stop
            while q < stop:
                k = reusable.get(q)
                if k is not None and starts[k + 1] <= stop:
                    flush()
                    out.append(old[k])
                    q = starts[k + 1]
                else:
                    add(old_value(q))
                    q += 1
        if not out and size < self.min_reuse_bytes:
            return [], values
        flush()
        return out, None

