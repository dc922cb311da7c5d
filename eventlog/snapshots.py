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

from dataclasses import dataclass
from typing import Any

from .codec import FLAG_ZSTD, KIND_BYTES, DecodeError, Ref

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
