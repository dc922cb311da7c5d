"""Rows of the log: turning event and snapshot bodies into frames and back.

This is the only place that combines the pure codec with storage: it externalises
large values into chunks while encoding, spills a frame that would not fit in one
cell into chunks as well, and on reading verifies, decompresses (bounded), decodes
and rehydrates.  Every failure to read comes out as
:class:`~eventlog.errors.CorruptionError` (or
:class:`~eventlog.errors.UnsupportedVersionError`) naming the session and position.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import codec, fold
from .chunks import Chunks
from .codec import ENTRIES, DecodeError, Framer, Ref, VersionError
from .errors import CorruptionError, InvalidValueError, UnsupportedVersionError
from .fold import Event, State
from .sql import Database
from .values import externalise_large, gc_paused, validate

EVENT = b"E"
SNAPSHOT = b"S"


class Log:
    """Encodes and decodes the rows of one store.  Not thread-safe (zstd contexts)."""

    def __init__(
        self,
        db: Database,
        *,
        max_cell_bytes: int,
        chunk_bytes: int,
        large_value_bytes: int,
        max_body_bytes: int,
        chunk_key: bytes | None = None,
    ) -> None:
        self.db = db
        self.framer = Framer()
        self.chunks = Chunks(db, self.framer, chunk_bytes, key=chunk_key)
        # Room for the other columns of an event or snapshot row (a few integers).
        self.inline_limit = max_cell_bytes - 256
        self.large_value_bytes = large_value_bytes
        self.max_body_bytes = max_body_bytes

    # ------------------------------------------------------------------ writing

    def _externalise(self, value: str | bytes) -> Ref:
        try:
            kind, raw, prefix = codec.split_large(value)
        except UnicodeEncodeError as e:
            raise InvalidValueError(f"string is not valid Unicode text: {e}") from None
        if len(raw) > self.max_body_bytes:
            raise InvalidValueError(f"a value of {len(raw)} bytes is over the limit of {self.max_body_bytes}")
        hashes, _ = self.chunks.put(raw)
        return Ref(kind, len(raw), hashes, prefix)

    def encodable(self, value: Any) -> Any:
        """A caller's value, validated, with its large strings and bytes now stored
        as chunks (inside the caller's write transaction) and replaced by refs."""
        if validate(value, self.large_value_bytes):
            return externalise_large(value, self.large_value_bytes, self._externalise)
        return value

    def chunk_ids_of(self, refs: list[Ref], name: str | None, seq: int) -> list[int]:
        """Ids of the chunks ``refs`` use; :class:`CorruptionError` if one is missing."""
        wanted = list({h for ref in refs for h in ref.chunk_hashes()})
        found = self.db.chunk_ids(wanted)
        if len(found) != len(wanted):
            missing = next(h for h in wanted if h not in found)
            raise CorruptionError(f"chunk {missing.hex()} is missing", session_id=name, seq=seq)
        return list(found.values())

    def frame(self, kind: bytes, sid: int, seq: int, wire: Any, ts: int | None = None) -> tuple[bytes, list[int], int]:
        """Encode an event or snapshot body into a frame that fits one cell, bound to
        its row's place and, given ``ts`` (an event's timestamp), to that; returns
        it with the ids of every chunk it refers to (large values, spilled bytes),
        to be recorded as its refs in the same transaction, and its stored size (the
        compressed body, counted in full when spilled to chunks: what the snapshot
        policy weighs)."""
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
        cids: list[int] = []
        flags, payload = self.framer.compress(body)
        size = len(payload)
        if size > self.inline_limit:
            hashes, cids = self.chunks.put(payload)
            payload = codec.dumps([flags, len(payload), hashes])
            flags = codec.FLAG_SPILL
        if refs:
            cids += self.chunk_ids_of(refs, None, seq)
        if ts is not None:
            flags |= codec.FLAG_TIMED
        return Framer.seal(flags, payload, codec.binding(kind, sid, seq, ts)), cids, size

    # ------------------------------------------------------------------ reading

    def body(
        self,
        kind: bytes,
        name: str,
        sid: int,
        seq: int,
        frame: bytes,
        rehydrate: bool,
        seen: list[Ref] | None = None,
        ts: int | None = None,
    ) -> codec.Decoded:
        """Decode a frame: the wire value, the ENTRIES markers seen, and whether its
        values are known storable.  Every reference to chunks in the frame (large
        values, and the pointer of a spilled frame) is appended to ``seen`` when
        given."""
        resolve = self._rehydrate if rehydrate else None
        if seen is not None:

            def resolve(ref: Ref) -> Any:
                seen.append(ref)
                return self._rehydrate(ref) if rehydrate else ref

        try:
            timed = None if ts is None else codec.binding(kind, sid, seq, ts)
            flags, payload = Framer.open(frame, codec.binding(kind, sid, seq), timed)
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
            return codec.decode(body, resolve)
        except VersionError as e:
            raise UnsupportedVersionError(str(e), session_id=name, seq=seq) from None
        except DecodeError as e:
            what = "event" if kind == EVENT else "snapshot"
            raise CorruptionError(f"{what} is damaged: {e}", session_id=name, seq=seq) from None

    def _read_large(self, ref: Ref) -> bytes:
        if ref.length > self.max_body_bytes:
            raise DecodeError(f"a large value claims {ref.length} bytes, over the limit of {self.max_body_bytes}")
        return self.chunks.get(ref.chunk_hashes(), ref.length)

    def _rehydrate(self, ref: Ref) -> str | bytes:
        return codec.join_large(ref, self._read_large(ref))

    def event(
        self,
        name: str,
        sid: int,
        seq: int,
        pos: int,
        ts: int,
        frame: bytes,
        rehydrate: bool,
        seen: list[Ref] | None = None,
    ) -> Event:
        wire, markers, storable = self.body(EVENT, name, sid, seq, frame, rehydrate, seen, ts)
        try:
            ops = fold.ops_from_wire(wire, storable)
            legit = sum(1 for op in ops if type(op) is fold.SetFields and op.changed.get("entries") is ENTRIES)
            if markers != legit:
                raise DecodeError("entries marker inside a value")
        except DecodeError as e:
            raise CorruptionError(f"event is damaged: {e}", session_id=name, seq=seq) from None
        return Event(name, seq, pos, ts, ops)

    def events(self, name: str, sid: int, after: int, upto: int | None, rehydrate: bool) -> Iterator[Event]:
        """Events ``after < seq <= upto``; :class:`CorruptionError` when one is missing."""
        expected = after + 1
        for seq, pos, ts, frame in self.db.events(sid, after, upto):
            if seq != expected:
                raise CorruptionError(f"event {expected} is missing", session_id=name, seq=expected)
            yield self.event(name, sid, seq, pos, ts, frame, rehydrate)
            expected += 1
        if upto is not None and expected <= upto:  # the last ones are gone
            raise CorruptionError(f"event {expected} is missing", session_id=name, seq=expected)

    def snapshot_state(
        self, name: str, sid: int, seq: int, frame: bytes, rehydrate: bool, seen: list[Ref] | None = None
    ) -> State:
        wire, markers, storable = self.body(SNAPSHOT, name, sid, seq, frame, rehydrate, seen)
        try:
            state = fold.state_from_wire(wire, storable)
            if markers != (1 if state.managed else 0):
                raise DecodeError("entries marker inside a value")
        except DecodeError as e:
            raise CorruptionError(f"snapshot is damaged: {e}", session_id=name, seq=seq) from None
        return state

    def fold(self, name: str, sid: int, upto: int, rehydrate: bool, floor: int = 0) -> State:
        """The state after event ``upto``: the newest readable snapshot at or below it
        plus the events after.  A damaged snapshot is skipped (snapshots are a
        cache), except the one at ``floor``: when history before it was compacted
        away it is the only copy.  Damaged events raise :class:`CorruptionError`."""
        with gc_paused():
            return self._fold(name, sid, upto, rehydrate, floor)

    def _fold(self, name: str, sid: int, upto: int, rehydrate: bool, floor: int) -> State:
        state, base = State(), 0
        found = False
        for snap_seq in self.db.snapshot_seqs(sid, upto):
            if snap_seq < floor:
                continue  # left over from compaction, about to be removed
            frame = self.db.snapshot(sid, snap_seq)
            try:
                if frame is None:
                    raise CorruptionError("snapshot is missing", session_id=name, seq=snap_seq)
                state, base = self.snapshot_state(name, sid, snap_seq, frame, rehydrate), snap_seq
                found = True
                break
            except (CorruptionError, UnsupportedVersionError):
                if snap_seq == floor:
                    raise
        if floor and not found:
            raise CorruptionError("the snapshot holding the compacted history is missing", session_id=name, seq=floor)
        for event in self.events(name, sid, base, upto, rehydrate):
            try:
                fold.apply(state, event.ops)
            except ValueError as e:
                raise CorruptionError(f"event does not apply: {e}", session_id=name, seq=event.seq) from None
        return state
