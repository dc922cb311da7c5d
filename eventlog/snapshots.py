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

Any other large list of the session at a path (``messages``, ``state.messages``:
up to :data:`~eventlog.fold.MAX_PATH` keys through dicts) is kept the same way: the
manifest's third element lists each such path with its segments, and the entries
marker stands at the path in the fields (:class:`Manifest`, :func:`with_lists`).
Those segments are reused as the entries' are, for a list the events since edited in
place (a list set anew is written anew).  Such a snapshot is a version 6 frame
(:data:`~eventlog.codec.FRAME_VERSION_PATHS`), which readers that do not know it
refuse as newer; one without stays version 4 (or 3: one frame).

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


#: A path of keys, from the session's top-level fields down through dicts.
Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A segmented snapshot's manifest: its ``fields`` (with the entries marker at
    ``"entries"`` when the session has an entries list, and at each path of
    ``lists``), the ``segments`` of its entries, and ``lists``: each list at a path
    that is stored in segments too, with its segments (version 6 frames only)."""

    fields: dict[str, Any]
    segments: list[Segment]
    lists: list[tuple[Path, list[Segment]]]

    def all_segments(self) -> list[Segment]:
        """Every segment: the entries', then each list's, in order (what
        :meth:`split` cuts a decoded run of them back into)."""
        return [*self.segments, *(s for _, segments in self.lists for s in segments)]

    def split(self, items: list[Any]) -> tuple[list[Any], list[tuple[Path, list[Any]]]]:
        """The entries and each list at a path (``(path, items)``), from the items of
        :meth:`all_segments` in order."""
        if not self.lists:
            return items, []
        start = sum(s.count for s in self.segments)
        out = []
        for path, segments in self.lists:
            stop = start + sum(s.count for s in segments)
            out.append((path, items[start:stop]))
            start = stop
        return items[: sum(s.count for s in self.segments)], out

    @property
    def markers(self) -> int:
        """How many entries markers its frame holds: one per list at a path, and
        one at ``"entries"`` when it has an entries list."""
        return len(self.lists) + (1 if self.fields.get("entries") is ENTRIES else 0)

    @classmethod
    def from_wire(cls, wire: Any, version: int, limit: int) -> Manifest:
        """A manifest from its decoded form in a frame of format ``version``:
        ``[fields, segments]``, or in a version 6 frame also ``[fields, segments,
        lists]``, ``lists`` a non-empty array of ``[path, segments]`` (a path of 1
        to :data:`~eventlog.fold.MAX_PATH` text keys, not ``["entries"]``, each once;
        segments not empty).  :class:`DecodeError` if malformed, or if its segments
        add up to more than ``limit`` bytes.  (That a marker stands at each path is
        checked when the lists are put there: :func:`with_lists`.)"""
        if (
            type(wire) is not list
            or len(wire) not in (2, 3)
            or type(wire[0]) is not dict
            or type(wire[1]) is not list
            or (len(wire) == 3 and (version != codec.FRAME_VERSION_PATHS or type(wire[2]) is not list or not wire[2]))
        ):
            raise DecodeError("malformed snapshot manifest")
        segments = [Segment.from_wire(w, limit) for w in wire[1]]
        lists: list[tuple[Path, list[Segment]]] = []
        for item in wire[2] if len(wire) == 3 else ():
            if type(item) is not list or len(item) != 2 or type(item[0]) is not list or type(item[1]) is not list:
                raise DecodeError("malformed list in a snapshot manifest")
            path = tuple(item[0])
            if (
                not 0 < len(path) <= fold.MAX_PATH
                or any(type(k) is not str for k in path)
                or path == ("entries",)
                or not item[1]
            ):
                raise DecodeError("malformed list in a snapshot manifest")
            lists.append((path, [Segment.from_wire(w, limit) for w in item[1]]))
        if len({path for path, _ in lists}) != len(lists):
            raise DecodeError("a list twice in a snapshot manifest")
        manifest = cls(wire[0], segments, lists)
        if sum(s.raw for s in manifest.all_segments()) > limit:
            raise DecodeError(f"snapshot segments add up to more than the limit of {limit} bytes")
        return manifest


def with_lists(fields: dict[str, Any], lists: list[tuple[Path, Any]], *, marked: bool = True) -> dict[str, Any]:
    """``fields`` with each ``(path, value)`` of ``lists`` put at its path (through
    dicts), in new dicts along the way (``fields`` and its values are left as they
    are).  With ``marked``, the entries marker must stand at each path (else
    :class:`DecodeError`: a damaged manifest)."""
    if not lists:
        return fields
    out = dict(fields)
    own = {id(out)}
    for path, value in lists:
        d = out
        for k in path[:-1]:
            child = d.get(k)
            if type(child) is not dict:
                raise DecodeError(f"no map on the way to the list at {'.'.join(path)} in a snapshot manifest")
            if id(child) not in own:
                d[k] = child = dict(child)
                own.add(id(child))
            d = child
        if marked and d.get(path[-1]) is not ENTRIES:
            raise DecodeError(f"no marker at the list at {'.'.join(path)} in a snapshot manifest")
        d[path[-1]] = value
    return out


def _lists(fields: dict[str, Any]) -> list[tuple[Path, Any]]:
    """The lists (or layouts) of a state's fields that may be stored in segments:
    at paths of up to :data:`~eventlog.fold.MAX_PATH` keys through dicts, in the
    fields' order, but not a top-level ``"entries"`` (which is the managed list, or
    an ordinary value of an old file: kept in the manifest as it is)."""
    out: list[tuple[Path, Any]] = []

    def walk(path: Path, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if type(v) is list or type(v) is _Layout:
                if (*path, k) != ("entries",):
                    out.append(((*path, k), v))
            elif type(v) is dict and len(path) + 1 < fold.MAX_PATH:
                walk((*path, k), v)

    walk((), fields)
    return out


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


class _Layout(fold.ListLike):
    """A list of a snapshot being built (the entries, or a list at a path), as
    pieces: a ``range`` of positions in the segments ``old`` of the snapshot it
    builds on (their values still unread) or one new wire value.  Supports what
    :func:`eventlog.fold.apply` does to a list, in time that grows with the pieces,
    not with the items."""

    __slots__ = ("n", "old", "pieces")

    def __init__(self, n: int, old: list[Segment] | None = None) -> None:
        self.n = n
        self.old = old or []
        self.pieces: list[Any] = [range(n)] if n else []

    @classmethod
    def of(cls, old: list[Segment]) -> _Layout:
        """The layout of a list whose items are those of the segments ``old``."""
        return cls(sum(s.count for s in old), old)

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
        base: tuple[int, Manifest] | None,
        writes: ChunkWrites,
    ) -> tuple[bytes, frozenset[bytes], int]:
        if base is None:
            state = self.log.fold(name, sid, key, seq, False, floor)
            return self.snapshot_of(name, key, seq, state.fields, state.entries, [], writes)
        # Each segmented list of the base (the entries, and those at paths) becomes
        # a layout of its positions, which the events since then edit in place: a
        # list set anew replaces its layout, and is written whole.
        base_seq, manifest = base
        items = _Layout.of(manifest.segments)
        fields = with_lists(manifest.fields, [(path, _Layout.of(old)) for path, old in manifest.lists])
        state = State(fields, items)  # type: ignore[arg-type]
        self.log.replay(state, name, sid, key, base_seq, seq, rehydrate=False)
        return self.snapshot_of(name, key, seq, state.fields, items.pieces, items.old, writes, repair=False)

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
        :meth:`snapshot` does.  Each list in ``fields`` at a path (a list, or a
        layout of the snapshot built on) is cut into segments as well, and left in
        the fields when small: a snapshot with such segments is a version 6 frame,
        one without is as before lists at paths."""
        lists: list[tuple[Path, list[Segment]]] = []
        placed: list[tuple[Path, Any]] = []
        kept = set(old)
        for path, value in _lists(fields):
            layout = value if type(value) is _Layout else None
            cut, inline = self._cut(
                name, seq, value if layout is None else layout.pieces, [] if layout is None else layout.old, writes,
                repair=repair,
            )  # fmt: skip
            if inline is None:
                lists.append((path, cut))
                placed.append((path, ENTRIES))
                kept.update(layout.old if layout is not None else ())
            elif layout is not None:
                placed.append((path, inline))
        fields = with_lists(fields, placed, marked=False)
        segments, inline = self._cut(name, seq, pieces, old, writes, repair=repair, small=not lists)
        if inline is not None:  # a small session: one frame, as before segments
            return self.log.frame(SNAPSHOT, key, seq, fold.state_to_wire(State(fields, inline)), writes=writes)
        every = [*segments, *(s for _, cut in lists for s in cut)]
        limit = self.log.max_body_bytes
        if sum(s.raw for s in every) > limit:
            raise InvalidValueError(f"the session's lists encode to more than the limit of {limit} bytes", seq=seq)
        wire = [fields, [s.to_wire() for s in segments]]
        if lists:
            wire.append([[list(path), [s.to_wire() for s in cut]] for path, cut in lists])
        frame, refs, written = self.log.frame(SNAPSHOT, key, seq, wire, writes=writes, segments=True, paths=bool(lists))
        wanted = {h for s in every for h in (*s.pointer().chunk_hashes(), *s.inner_hashes())}
        # What it keeps or refers to without having written it must be stored (else
        # the snapshot it builds on is damaged: see snapshot()).
        unwritten = [h for h in wanted if h not in writes.pieces]
        found = self.log.backend.chunk_sizes(unwritten) if unwritten else {}
        if len(found) != len(unwritten):
            missing = min(h for h in unwritten if h not in found)
            raise CorruptionError(f"chunk {missing.hex()} is missing", session_id=name, seq=seq)
        return frame, refs | wanted, written + sum(s.length for s in every if s not in kept)

    def _base(
        self, name: str, sid: int, key: bytes | None, seq: int, floor: int
    ) -> tuple[int, Manifest] | None:
        """The newest snapshot at or below ``seq`` (and at or above ``floor``) if it
        is segmented, its manifest reads and no load found it damaged: its position
        and manifest."""
        seqs = [s for s in self.log.backend.snapshot_seqs(sid, seq) if s >= floor]
        frame = self.log.backend.snapshot(sid, seqs[0]) if seqs else None
        if frame is None or (sid, seqs[0]) in self.log.damaged:
            return None
        try:
            segmented, wire, markers = self.log.body(SNAPSHOT, name, sid, key, seqs[0], frame, False)
            if not segmented:
                return None
            manifest = self.log.manifest(wire, segmented)
            fold.state_from_wire([with_lists(manifest.fields, [(path, []) for path, _ in manifest.lists]), []])
            if markers != manifest.markers:
                return None
        except (CorruptionError, UnsupportedVersionError, DecodeError):
            return None
        return seqs[0], manifest

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
        self,
        name: str,
        seq: int,
        pieces: list[Any],
        old: list[Segment],
        writes: ChunkWrites,
        *,
        repair: bool = False,
        small: bool = True,
    ) -> tuple[list[Segment], list[Any] | None]:
        """Segments holding the entries ``pieces`` (wire values, and ``range`` of
        positions in the snapshot built on, whose segments are ``old``): each old
        segment that :meth:`_reusable` allows and whose positions a range covers
        whole is kept as it is; the other entries are encoded into new segments of
        about ``segment_bytes``.  When all of them would make one small segment,
        nothing is written and their values are returned instead, to be kept in the
        snapshot's own row (not without ``small``: then they are one segment, and
        none when there are none).  ``repair``: see :meth:`~eventlog.chunks.Chunks.put`."""
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
        if small and not out and size < self.min_reuse_bytes:
            return [], values
        flush()
        return out, None

