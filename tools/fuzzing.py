"""Fuzzing machinery shared by ``tests/robustness/test_fuzz.py`` and
``tests/robustness/test_damage.py`` (short runs in CI) and ``tools/fuzz`` (long,
time-bounded runs).

Each ``check_*`` target feeds one input to a decoding entry point and checks what
eventlog promises about hostile and damaged bytes: only documented errors come out
(``codec.DecodeError`` inside the pure codec, which every path from storage turns
into :class:`eventlog.CorruptionError` naming the session and position), never
another exception, and never data other than what was written.  A violation raises
:class:`Finding`.  Hangs are caught by the callers (a time limit per input).

Inputs come from a :class:`Corpus` of real rows: event frames (raw and zstd),
snapshot frames, frames spilled into chunks, chunk rows, CBOR bodies, spill
pointers, mutated by :func:`mutate`.
"""

from __future__ import annotations

import copy
import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2

import eventlog
from eventlog import codec, fold, samples
from eventlog.chunks import Chunks
from eventlog.codec import DecodeError, Framer, Ref
from eventlog.log import EVENT, SNAPSHOT
from eventlog.values import validate


class Finding(AssertionError):
    """A promise broken: a foreign exception, wrong data, a hang."""


#: What a decoding path from storage may raise.
DOCUMENTED = (eventlog.CorruptionError, eventlog.UnsupportedVersionError)

# ----------------------------------------------------------------------------- mutations

#: A mutation: ``(operation, position, byte)``; positions wrap around the input.
Mutation = tuple[int, int, int]
FLIP, SET, INSERT, DELETE, TRUNCATE, DUPLICATE, INTERESTING = range(7)
OPERATIONS = 7
#: Bytes that mean much in CBOR and frames: huge lengths, indefinite lengths, tags,
#: simple values, breaks, our own tags' first byte.
INTERESTING_BYTES = bytes([0x00, 0x01, 0x02, 0x18, 0x1B, 0x3B, 0x5B, 0x5F, 0x7B, 0x7F, 0x9B, 0x9F, 0xBB, 0xBF,
                           0xC2, 0xD9, 0xE8, 0xF4, 0xF7, 0xF8, 0xFB, 0xFF, 0x28, 0xB5, 0x2F, 0xFD])  # fmt: skip


def mutate(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    """``data`` after each mutation in turn: flip a bit, set a byte, insert or delete
    one, truncate, duplicate a slice, or put a meaningful byte."""
    b = bytearray(data)
    for op, pos, byte in mutations:
        n = len(b)
        at = pos % (n + 1)
        op %= OPERATIONS
        if op == FLIP and n:
            b[at % n] ^= 1 << (byte % 8)
        elif op == SET and n:
            b[at % n] = byte & 0xFF
        elif op == INSERT:
            b[at:at] = bytes([byte & 0xFF])
        elif op == DELETE and n:
            del b[at % n]
        elif op == TRUNCATE:
            del b[at:]
        elif op == DUPLICATE and n:
            b[at:at] = b[at : at + 1 + byte % 64]
        elif op == INTERESTING and n:
            b[at % n] = INTERESTING_BYTES[byte % len(INTERESTING_BYTES)]
    return bytes(b)


def random_mutations(rng: random.Random) -> list[Mutation]:
    """One to four mutations, mostly single byte changes."""
    return [
        (rng.randrange(OPERATIONS), rng.randrange(1 << 24), rng.randrange(256))
        for _ in range(rng.choice((1, 1, 1, 2, 4)))
    ]


def _head(rng: random.Random, major: int, n: int) -> bytes:
    """A CBOR item head for ``n``, sometimes in a longer form than needed."""
    m = major << 5
    if n < 24 and rng.random() < 0.8:
        return bytes([m | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width) and (rng.random() < 0.7 or width == 8):
            return bytes([m | info]) + n.to_bytes(width, "big")
    return bytes([m | 27]) + (n & (1 << 64) - 1).to_bytes(8, "big")


def _length(rng: random.Random) -> int:
    return rng.choice((0, 1, 2, 3, rng.randrange(40), rng.randrange(300), 1 << 31, 1 << 60, (1 << 64) - 1))


def random_cbor(rng: random.Random, depth: int = 0) -> bytes:
    """Random CBOR, mostly well formed, with lying lengths, deep nesting, foreign
    and own tags, simple values, indefinite lengths and breaks in it."""
    r = rng.random()
    if depth > 6 or r < 0.25:  # a leaf
        kind = rng.randrange(8)
        if kind == 0:
            return _head(rng, rng.choice((0, 1)), rng.choice((0, 1, 23, 24, 255, 1 << 32, (1 << 64) - 1)))
        if kind in (1, 2):  # bytes or text, maybe lying about the length
            body = (
                rng.randbytes(rng.randrange(12))
                if kind == 1
                else "".join(rng.choice("aé日\x00🚀") for _ in range(5)).encode()
            )
            n = len(body) if rng.random() < 0.8 else _length(rng)
            return _head(rng, 2 if kind == 1 else 3, n) + body
        if kind == 3:
            return bytes([rng.choice((0xF4, 0xF5, 0xF6, 0xF7, 0xF0, 0xF3))])
        if kind == 4:
            return bytes([0xF8, rng.randrange(256)])
        if kind == 5:
            width = rng.choice((2, 4, 8))
            return bytes([{2: 0xF9, 4: 0xFA, 8: 0xFB}[width]]) + rng.randbytes(width)
        if kind == 6:
            return b"\xff"
        return rng.randbytes(rng.randrange(1, 4))
    if r < 0.55:  # an array
        n = rng.randrange(5)
        items = b"".join(random_cbor(rng, depth + 1) for _ in range(n))
        if rng.random() < 0.15:
            return b"\x9f" + items + (b"\xff" if rng.random() < 0.9 else b"")
        return _head(rng, 4, n if rng.random() < 0.9 else _length(rng)) + items
    if r < 0.8:  # a map
        n = rng.randrange(4)
        items = b"".join(
            (_head(rng, 3, 1) + b"k" if rng.random() < 0.7 else random_cbor(rng, depth + 1))
            + random_cbor(rng, depth + 1)
            for _ in range(n)
        )
        if rng.random() < 0.15:
            return b"\xbf" + items + b"\xff"
        return _head(rng, 5, n if rng.random() < 0.9 else _length(rng)) + items
    if r < 0.9:  # eventlog's own tags, plausible or not
        if rng.random() < 0.3:
            return _head(rng, 6, codec.ENTRIES_TAG) + rng.choice((b"\xf6", random_cbor(rng, depth + 1)))
        fields = [_head(rng, 0, rng.randrange(4)), _head(rng, 0, rng.choice((0, 5, 4096, 1 << 40))),
                  _head(rng, 2, 32 * rng.randrange(3)) + rng.randbytes(32) * 2]  # fmt: skip
        fields = fields[: rng.randrange(2, 5)] + ([_head(rng, 3, 5) + b"data:"] if rng.random() < 0.2 else [])
        if rng.random() < 0.3:
            fields[rng.randrange(len(fields))] = random_cbor(rng, depth + 1)
        return _head(rng, 6, codec.REF_TAG) + _head(rng, 4, len(fields)) + b"".join(fields)
    tag = rng.choice((0, 1, 2, 3, 4, 5, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261,
                      262, 263, 270, 1004, 1040, 43000, 55799, rng.randrange(1 << 16), (1 << 64) - 1))  # fmt: skip
    return _head(rng, 6, tag) + random_cbor(rng, depth + 1)


def random_body(rng: random.Random) -> bytes:
    """Random CBOR shaped like an event or a snapshot body, so that the readers of
    operations and states get past their first checks."""
    if rng.random() < 0.6:
        ops = []
        for _ in range(rng.randrange(1, 4)):
            index = _head(rng, 0, rng.randrange(3)) if rng.random() < 0.8 else random_cbor(rng)
            ops.append(_head(rng, 4, 3) + _head(rng, 0, rng.randrange(6)) + index + random_cbor(rng))
        return _head(rng, 4, len(ops)) + b"".join(ops)
    fields = [_head(rng, 3, 1) + bytes([97 + i]) + random_cbor(rng) for i in range(rng.randrange(3))]
    if rng.random() < 0.7:
        fields.append(_head(rng, 3, 7) + b"entries" + _head(rng, 6, codec.ENTRIES_TAG) + b"\xf6")
    entries = [random_cbor(rng) for _ in range(rng.randrange(3))]
    return b"\x82" + _head(rng, 5, len(fields)) + b"".join(fields) + _head(rng, 4, len(entries)) + b"".join(entries)


# ----------------------------------------------------------------------------- corpus

#: Store options for the corpus and the damaged-file store: a small cell budget so
#: frames spill into chunks, small chunks so large values use several.
OPTIONS: dict[str, Any] = {"max_cell_bytes": 16_384, "chunk_bytes": 4096, "synchronous": "OFF"}


def canon(value: Any) -> bytes:
    """Exact bytes of a decoded value (tells ``1`` from ``1.0``, sees key order)."""
    return codec.dumps(value)


@dataclass
class Sample:
    """One stored frame and what it decodes to."""

    what: str  # "event", "snapshot", "spilled event", "spilled snapshot"
    kind: bytes  # EVENT or SNAPSHOT
    name: str
    sid: int
    seq: int
    frame: bytes
    decoded: bytes  # canon() of the ops or of the state, large values rehydrated
    body: bytes  # the CBOR body (of a spilled frame: the body in its chunks)
    pointer: bytes | None = None  # the CBOR spill pointer of a spilled frame
    ts: int = 0  # the event row's timestamp (event frames are bound to it)
    key: bytes = b""  # the session's key (frames are bound to it)

    def seal(self, flags: int, payload: bytes) -> bytes:
        """A frame around ``payload`` with a valid checksum in this sample's place."""
        return Framer.seal(flags, payload, codec.key_binding(self.kind, self.key, self.seq), keyed=True)


@dataclass
class ChunkSample:
    digest: bytes
    flags: int
    size: int
    data: bytes
    raw: bytes


@dataclass
class Corpus:
    """An in-memory store holding every kind of row, and its rows as samples."""

    store: eventlog.Store
    frames: list[Sample] = field(default_factory=list)
    chunks: list[ChunkSample] = field(default_factory=list)

    @property
    def log(self) -> Any:
        return self.store._log

    @property
    def db(self) -> Any:
        return self.store._backend.db  # (the SQLite backend's connection)

    def decode(self, sample: Sample, frame: bytes) -> Any:
        """What eventlog makes of ``frame`` in ``sample``'s place."""
        with self.db.read():
            if sample.kind == EVENT:
                return self.log.event(sample.name, sample.sid, sample.key, sample.seq, 0, sample.ts, frame,
                                      rehydrate=True).ops  # fmt: skip
            return self.log.snapshot_state(sample.name, sample.sid, sample.key, sample.seq, frame, rehydrate=True)


def _canon_decoded(kind: bytes, decoded: Any) -> bytes:
    if kind == EVENT:
        return canon(fold.ops_to_wire(list(decoded)))
    return canon(fold.state_to_wire(decoded))


def build_corpus() -> Corpus:
    """A store with small and large events (raw and zstd frames), base64 images and
    bytes in chunks, frames and snapshots too large for a cell (spilled into
    chunks), a tombstone, and snapshots; and its rows."""
    store = eventlog.open(":memory:", **OPTIONS, snapshot_every=0)
    rng = random.Random(6)
    for data in samples.coding_session(6, seed=1):
        store.save("chat", data)
    store.append("chat", [{"id": "log", "output": "build ok\n" * 8000}])  # a compressible large value
    for data in samples.browser_session(2, seed=2, image_bytes=30_000):
        store.save("images", data)
    store.append("images", [{"id": "raw", "blob": rng.randbytes(40_000), "n": [1, 1.0, True, -0.0, None]}])
    big: dict[str, Any] = {
        "entries": [{"id": "x", "noise": [rng.randbytes(5000) for _ in range(4)]}],
        "notes": [rng.randbytes(5000) for _ in range(4)],  # a list at a path: in snapshot segments (version 6)
        "more": {f"n{i}": rng.randbytes(5000) for i in range(4)},  # in the snapshot's manifest: it spills too
    }
    store.save("big", big)  # 40 KB of incompressible bytes inline: the frame spills
    store.save("big", {**big, "leafId": "x"})
    store.save("gone", {"entries": [{"id": "g"}]})
    store.delete("gone")
    for name in ("chat", "images", "big"):
        store.snapshot(name)
    corpus = Corpus(store)
    db, log = corpus.db, corpus.log
    con: sqlite3.Connection = db.con
    rows = con.execute(
        "SELECT 'e', s.name, s.sid, s.key, e.seq, e.frame, e.ts_ms FROM events e JOIN sessions s ON s.sid = e.sid "
        "UNION ALL SELECT 's', s.name, s.sid, s.key, n.seq, n.frame, 0 FROM snapshots n JOIN sessions s "
        "ON s.sid = n.sid"
    ).fetchall()
    for k, name, sid, key, seq, frame, ts in rows:
        kind = EVENT if k == "e" else SNAPSHOT
        what = "event" if kind == EVENT else "snapshot"
        flags, payload = Framer.open(frame, codec.Place(kind, sid, key, seq, ts))
        pointer = None
        if flags & codec.FLAG_SPILL:
            pointer = payload
            spill, _ = codec.loads(payload)
            payload = log.chunks.get(Ref(codec.KIND_BYTES, spill[1], spill[2]).chunk_hashes(), spill[1])
            flags, what = spill[0], "spilled " + what
        body = log.framer.decompress(flags, payload, 1 << 30)
        if name == "gone":
            decoded = canon(fold.ops_to_wire(list(fold.ops_from_wire(codec.loads(body)[0]))))
        else:
            sample = Sample(what, kind, name, sid, seq, frame, b"", body, pointer, ts, key)
            decoded = _canon_decoded(kind, corpus.decode(sample, frame))
        corpus.frames.append(Sample(what, kind, name, sid, seq, frame, decoded, body, pointer, ts, key))
    for _cid, digest, flags, size, data in con.execute("SELECT cid, hash, flags, size, data FROM chunks"):
        corpus.chunks.append(ChunkSample(digest, flags, size, data, log.chunks.open(digest, flags, size, data)))
    kinds = {s.what for s in corpus.frames}
    assert kinds == {"event", "snapshot", "spilled event", "spilled snapshot"}, kinds
    assert {c.flags for c in corpus.chunks} == {0, codec.FLAG_ZSTD}
    assert {f.frame[1] & codec.FLAG_ZSTD for f in corpus.frames} == {0, codec.FLAG_ZSTD}
    return corpus


# ----------------------------------------------------------------------------- targets


def _foreign(where: str, e: BaseException) -> Finding:
    return Finding(f"{where} raised {type(e).__name__}: {e!r:.300}")


def _storable_result(where: str, result: Any, kind: bytes) -> None:
    """A decoded event's values or snapshot's state are values ``save()`` accepts."""
    values: list[Any] = []
    if kind == EVENT:
        for op in result:
            if type(op) is fold.Insert:
                values += op.entries
            elif type(op) is fold.Replace:
                values.append(op.entry)
            elif type(op) is fold.SetFields:
                values += [v for v in op.changed.values() if v is not codec.ENTRIES]
                if any(type(k) is not str for k in op.changed):
                    raise Finding(f"{where}: a field name is not a str")
    else:
        values += result.entries
        values += [v for v in result.fields.values() if v is not codec.ENTRIES]
        if any(type(k) is not str for k in result.fields):
            raise Finding(f"{where}: a field name is not a str")
    for v in values:
        try:
            validate(v, 1 << 40)
        except eventlog.InvalidValueError as e:
            raise Finding(f"{where}: decoded a value save() refuses: {e}") from None


def check_loads(data: bytes) -> None:
    """``codec.loads`` raises only ``DecodeError``; what it decodes, the event and
    snapshot readers either refuse with ``DecodeError`` or turn into storable values."""
    for resolve in (None, lambda ref: ref.hashes):
        try:
            value, _ = codec.loads(data, resolve)
        except DecodeError:
            continue
        except Exception as e:
            raise _foreign("codec.loads", e) from e
        check_wire(value)


def check_wire(value: Any) -> None:
    """``fold.ops_from_wire`` and ``fold.state_from_wire`` raise only ``DecodeError``
    and return only storable values (large values may stay references)."""
    for reader, kind in ((fold.ops_from_wire, EVENT), (fold.state_from_wire, SNAPSHOT)):
        try:
            result = reader(value)
        except DecodeError:
            continue
        except Exception as e:
            raise _foreign(reader.__name__, e) from e
        _storable_result(reader.__name__, _without_refs(result), kind)
        try:  # applying them raises ValueError at worst (the store reports corruption)
            if kind == EVENT:
                fold.apply(fold.State(), result)
            else:
                result.session()
        except ValueError:
            pass
        except Exception as e:
            raise _foreign("applying decoded operations", e) from e


def _without_refs(result: Any) -> Any:
    """``result`` with each :class:`Ref` replaced by bytes (refs are legitimate
    leaves of an undecoded value)."""

    def swap(v: Any) -> Any:
        t = type(v)
        if t is Ref:
            return b""
        if t is dict:
            return {k: swap(x) for k, x in v.items()}
        if t is list:
            return [swap(x) for x in v]
        return v

    if isinstance(result, fold.State):
        return fold.State(swap(result.fields), swap(result.entries))
    out: list[fold.Op] = []
    for op in result:
        if type(op) is fold.Insert:
            out.append(fold.Insert(op.index, swap(op.entries)))
        elif type(op) is fold.Replace:
            out.append(fold.Replace(op.index, swap(op.entry)))
        elif type(op) is fold.SetFields:
            out.append(fold.SetFields(swap(op.changed), op.order))
        else:
            out.append(op)
    return tuple(out)


def _decode_checked(corpus: Corpus, sample: Sample, frame: bytes, where: str) -> Any | None:
    """Decode ``frame`` in ``sample``'s place: ``None`` for a documented error (which
    must name the session and position), else the result."""
    try:
        return corpus.decode(sample, frame)
    except DOCUMENTED as e:
        if e.session_id != sample.name or e.seq != sample.seq:
            raise Finding(f"{where}: {type(e).__name__} names {e.session_id!r}/{e.seq}: {e}") from None
        return None
    except Exception as e:
        raise _foreign(where, e) from e


def check_frame(corpus: Corpus, sample: Sample, frame: bytes) -> None:
    """A stored frame, however damaged, decodes to what was written or raises
    ``CorruptionError``/``UnsupportedVersionError`` naming the session and position."""
    result = _decode_checked(corpus, sample, frame, f"decoding a damaged {sample.what}")
    if result is not None and _canon_decoded(sample.kind, result) != sample.decoded:
        raise Finding(f"a damaged {sample.what} (seq {sample.seq}) decoded to different data")


def reseal(corpus: Corpus, sample: Sample, body: bytes, compress: bool) -> bytes:
    """A frame for ``body`` in ``sample``'s place with a valid checksum: what a
    hostile writer (or damage the CRC misses) would leave."""
    flags, payload = corpus.log.framer.compress(body) if compress else (0, body)
    flags |= sample.frame[1] & codec.FLAG_SEGMENTS  # a snapshot's manifest stays one
    return sample.seal(flags, payload)


def check_resealed(corpus: Corpus, sample: Sample, body: bytes, compress: bool) -> None:
    """A frame with a valid checksum around any body raises a documented error or
    decodes to values ``save()`` would accept."""
    frame = reseal(corpus, sample, body, compress)
    result = _decode_checked(corpus, sample, frame, f"decoding a resealed {sample.what}")
    if result is not None:
        _storable_result(f"a resealed {sample.what}", result, sample.kind)


def check_spill_pointer(corpus: Corpus, sample: Sample, pointer: bytes) -> None:
    """A spilled frame whose pointer (valid checksum) is anything: a documented error
    or the right data, in bounded time and memory."""
    flags = codec.FLAG_SPILL | (sample.frame[1] & codec.FLAG_SEGMENTS)
    frame = sample.seal(flags, pointer)
    result = _decode_checked(corpus, sample, frame, f"decoding a {sample.what} with a hostile pointer")
    if result is not None:
        _storable_result(f"a {sample.what} with a hostile pointer", result, sample.kind)


def check_chunk(chunks: Chunks, sample: ChunkSample, flags: Any, size: Any, data: Any) -> None:
    """A chunk row, however damaged, reads as its bytes or raises ``DecodeError``."""
    try:
        raw = chunks.open(sample.digest, flags, size, data)
    except DecodeError:
        return
    except Exception as e:
        raise _foreign("Chunks.open", e) from e
    if raw != sample.raw:
        raise Finding("a damaged chunk was read as other bytes")


def check_decompress(data: bytes, limit: int) -> None:
    """zstd input of any shape: ``DecodeError``, or at most ``limit`` bytes out."""
    try:
        out = Framer().decompress(codec.FLAG_ZSTD, data, limit)
    except DecodeError:
        return
    except Exception as e:
        raise _foreign("Framer.decompress", e) from e
    if len(out) > limit:
        raise Finding(f"decompressed {len(out)} bytes, over the limit of {limit}")


def hostile_pointers(sample: Sample) -> Iterator[bytes]:
    """Spill pointers that claim much: a chunk named a million times, huge lengths,
    unknown flags, missing chunks."""
    assert sample.pointer is not None
    flags, length, hashes = codec.loads(sample.pointer)[0]
    first = hashes[:32]
    yield cbor2.dumps([flags, length, first * 100_000])
    yield cbor2.dumps([flags, 1 << 62, hashes])
    yield cbor2.dumps([flags, -1, hashes])
    yield cbor2.dumps([flags | 0x80, length, hashes])
    yield cbor2.dumps([flags, length, b"\x00" * 32 + hashes[32:]])
    yield cbor2.dumps([flags, length, hashes + hashes])
    yield cbor2.dumps([flags, length])


# ----------------------------------------------------------------------------- damaged files

#: Store options of the damaged-file tests (snapshots every 3 events).
FILE_OPTIONS: dict[str, Any] = {**OPTIONS, "snapshot_every": 3}

#: Columns a flipped byte can change without ``verify`` seeing it: nothing checksums
#: them and no index repeats them.  None of them is part of what ``load()`` returns.
UNCHECKED_COLUMNS = {
    ("sessions", "created_ms"),
    ("sessions", "updated_ms"),
    ("sessions", "snap_seq"),  # snapshot policy bookkeeping
    ("sessions", "snap_bytes"),
    ("sessions", "snap_bytes_since"),
    ("sessions", "deleted_ms"),  # only whether it is set matters, and two indexes say that
    ("sqlite_sequence", "seq"),  # an AUTOINCREMENT counter moved up (one moved below the largest id is reported)
}


def _checked(part: Any) -> bool:
    """Whether a change in this part of :func:`logical_content` must show in
    ``verify``: not the unchecked columns, not schema text (compared by meaning
    elsewhere), and not a table's ``*`` (its first two columns, which the per-column
    parts already cover: for ``sqlite_sequence`` that is name and the unchecked seq)."""
    if part == "schema" or part in UNCHECKED_COLUMNS:
        return False
    return not (type(part) is tuple and part[1] == "*")


def build_file(path: str) -> dict[str, dict[str, Any]]:
    """A store file with several sessions (small values, base64 images in chunks, a
    frame spilled into chunks, a child session, snapshots) and a deleted, compacted
    session (zeroed free space), checkpointed so that everything is in the main file.
    Returns what each session loads as."""
    rng = random.Random(1)
    expected: dict[str, dict[str, Any]] = {}
    with eventlog.open(path, **FILE_OPTIONS) as s:
        data: dict[str, Any] = {}
        for i in range(4):
            data = {"entries": [{"id": f"e{j}", "t": "hi " * j} for j in range(i + 1)], "title": "small"}
            s.save("small", data)
        expected["small"] = copy.deepcopy(data)
        for data in samples.browser_session(3, seed=2, image_bytes=30_000):
            s.save("browser", data)
        expected["browser"] = copy.deepcopy(data)
        big: dict[str, Any] = {"entries": [{"id": "x", "parts": [random.Random(k).randbytes(6000) for k in range(4)]}]}
        s.save("spill", big)
        big["entries"].append({"id": "y", "n": 1})
        s.save("spill", big)
        expected["spill"] = copy.deepcopy(big)
        s.save("child", {"entries": [{"id": "c"}]}, parent_id="small")
        expected["child"] = {"entries": [{"id": "c"}]}
        s.save("doomed", {"entries": [{"id": "d", "blob": rng.randbytes(40_000)}]})
        s.delete("doomed")
        s.compact()
        s.snapshot("small")
    return expected


def logical_content(path: str) -> dict[Any, Any]:
    """Everything SQLite reads from the file: header fields, schema, and every row
    of every table, by table and column.  Raises ``sqlite3.Error`` if it cannot."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.text_factory = bytes
    try:
        out: dict[Any, Any] = {}
        for pragma in ("application_id", "user_version", "page_size", "auto_vacuum", "encoding"):
            out[pragma] = con.execute(f"PRAGMA {pragma}").fetchall()
        out["schema"] = con.execute(
            "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            name = table.decode()
            cur = con.execute(f'SELECT * FROM "{name}"')
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
            for i, column in enumerate(columns):
                out[(name, column)] = sorted(repr((r[0], r[i])) for r in rows)  # with the first column as key
            out[(name, "*")] = sorted(repr(r[:2]) for r in rows)
        return out
    finally:
        con.close()


def changed_parts(before: dict[Any, Any], path: str) -> set[Any] | None:
    """What a damaged copy reads differently from the original (``None``: SQLite
    cannot read it)."""
    try:
        after = logical_content(path)
    except (sqlite3.Error, UnicodeDecodeError):
        return None
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@dataclass
class FlipOutcome:
    opened: bool
    loads: dict[str, str]  # session -> "same", "error", "missing" or "different"
    verify_ok: bool | None
    changed: set[Any] | None


def check_flipped_file(original: bytes, expected: dict[str, dict[str, Any]], path: Path, pos: int, xor: int,
                       before: dict[Any, Any]) -> FlipOutcome:  # fmt: skip
    """Flip ``original[pos] ^= xor`` in a copy at ``path`` and check the promises:

    * opening gives a store or a documented error;
    * each ``load`` gives the original data or raises a documented error naming the
      session; anything else (``None`` for a session whose index entry is damaged,
      other data) is allowed only if ``verify`` reports a problem;
    * ``verify`` never raises; it reports a problem whenever ``load`` raised, and
      whenever the flip changed what SQLite reads, except in the columns of
      :data:`UNCHECKED_COLUMNS` (and schema text that still means the same).
    """
    damaged = bytearray(original)
    damaged[pos] ^= xor
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(damaged)
    changed = changed_parts(before, str(path))
    where = f"byte {pos} ^ {xor:#x} (page {pos // 4096 + 1}, offset {pos % 4096})"
    try:
        store = eventlog.open(str(path), **FILE_OPTIONS)
    except eventlog.EventLogError:
        return FlipOutcome(False, {}, None, changed)
    except Exception as e:
        raise _foreign(f"open after {where}", e) from e
    loads: dict[str, str] = {}
    with store:
        for sid, want in expected.items():
            try:
                got = store.load(sid)
            except eventlog.EventLogError as e:
                if e.session_id != sid:
                    raise Finding(f"load({sid!r}) after {where}: {type(e).__name__} names {e.session_id!r}") from None
                loads[sid] = "error"
                continue
            except Exception as e:
                raise _foreign(f"load({sid!r}) after {where}", e) from e
            loads[sid] = (
                "same" if got is not None and canon(got) == canon(want) else "missing" if got is None else "different"
            )
        try:
            report = store.verify()
        except Exception as e:
            raise _foreign(f"verify after {where}", e) from e
    outcome = FlipOutcome(True, loads, report.ok, changed)
    if report.ok:
        wrong = sorted(sid for sid, result in loads.items() if result != "same")
        if wrong:
            raise Finding(f"after {where}: load of {wrong} gave {[loads[s] for s in wrong]}, yet verify is ok")
        visible = None if changed is None else {c for c in changed if _checked(c)}
        if visible is None or visible:
            raise Finding(
                f"after {where}: SQLite reads {sorted(map(str, visible or ['nothing']))} changed, yet verify is ok"
            )
    return outcome


def describe(outcome: FlipOutcome) -> str:
    """What a byte flip did, in words (for summaries)."""
    if not outcome.opened:
        return "refused at open (documented error)"
    loads = set(outcome.loads.values())
    if outcome.verify_ok:
        return (
            "changed nothing SQLite reads; verify ok"
            if not outcome.changed
            else "changed an unchecked column; verify ok"
        )
    if "error" in loads:
        return "a load raised a documented error; verify reports"
    if loads - {"same"}:
        return "a load gave None or other data (damaged index); verify reports"
    return "loads unaffected; verify reports"


# ----------------------------------------------------------------------------- time limits


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`Finding` if the body runs longer than ``seconds`` (a hang)."""
    import signal

    def alarm(*_: Any) -> None:
        raise Finding(f"{what} took more than {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
