"""Write the on-disk format test vectors in ``tests/vectors/`` (see its README.md).

Run from the repository root with the dev install active::

    python tools/make_vectors.py              # rewrites tests/vectors/stores and tests/vectors/frames
    python tools/make_vectors.py --out DIR    # writes them under DIR instead

The vectors are committed: they are what eventlog must go on reading, whatever it
writes later.  **Regenerating them must not be needed unless the on-disk format
changes.**  A change that makes ``tests/test_vectors.py`` fail against the committed
files breaks every store already written; when the format changes on purpose (a new
frame or schema version), keep the old vectors (they must still read) and add new
ones beside them.

What is written is deterministic where it can be: the clock is fixed (every call of
``time.time_ns`` while a store is written advances a fake clock by one second,
from 2026-01-01T00:00:00Z for each store), the chunk key is fixed (bytes 0..31), and the values come
from a seeded ``random.Random``.  The bytes of the files still depend on the SQLite
and zstd libraries that write them, so the test that reruns this script
(``test_the_generator_still_writes_what_the_vectors_expect``) compares what the new
files decode to with the committed expectations, not their bytes.

Each store's expectations (``stores/<name>.json``) are derived from what this script
wrote (the session dicts it saved, its own replay of each ``append()``), then checked
against what eventlog reads back before anything is written; only the events' ops,
the timestamps and ``verify()``'s counts are recorded as read back.

Older schema versions (1, 2, 3) are made as the tests make them: a current store is
rewritten with ``sqlite3`` into the older layout, and (for versions 1 and 2, whose
writers predated timestamped frames) its event frames are resealed without the
timestamp, with the CRC computed as docs/format.md specifies, independently of
eventlog's code.
"""

from __future__ import annotations

import argparse
import base64
import copy
import itertools
import json
import math
import os
import random
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import zstandard

import eventlog
from eventlog import codec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "vectors"

#: The chunk key of the keyed store (a test key: never use a known key for real).
CHUNK_KEY = bytes(range(32))
#: The fake clock's start, Unix ms (2026-01-01T00:00:00Z), and its step per call.
CLOCK_START_MS = 1_767_225_600_000
CLOCK_STEP_MS = 1_000


# ----------------------------------------------------------------------------- JSON


def to_json(value: Any) -> Any:
    """A storable value (or a decoded body: refs and the entries marker too) in the
    tagged JSON of tests/vectors/README.md."""
    t = type(value)
    if t is dict:
        out = {k: to_json(v) for k, v in value.items()}
        if len(value) == 1 and next(iter(value)).startswith("$"):
            return {"$map": out}
        return out
    if t is list or t is tuple:
        return [to_json(v) for v in value]
    if t is bool or value is None or t is str:
        return value
    if t is int:
        return value if -(2**53) < value < 2**53 else {"$int": str(value)}
    if t is float:
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        if value == 0.0 and math.copysign(1.0, value) < 0:
            return {"$float": "-0.0"}
        return value
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode()}
    if value is eventlog.ENTRIES:
        return {"$entries": None}
    if t is codec.Ref:
        ref: dict[str, Any] = {"kind": value.kind, "length": value.length, "hashes": value.hashes.hex()}
        if value.prefix or value.form:
            ref["prefix"] = value.prefix
        if value.form:
            ref["form"] = value.form
        return {"$ref": ref}
    raise TypeError(f"no JSON form for {t.__name__}")


def op_to_json(op: eventlog.Op) -> list[Any]:
    """An operation as its wire form ``[kind, a, b]`` (docs/format.md), in tagged JSON."""
    if type(op) is eventlog.Insert:
        return [0, op.index, to_json(op.entries)]
    if type(op) is eventlog.Replace:
        return [1, op.index, to_json(op.entry)]
    if type(op) is eventlog.Delete:
        return [2, op.index, op.count]
    if type(op) is eventlog.SetFields:
        return [3, to_json(op.changed), op.order]
    assert type(op) is eventlog.Tombstone
    return [4, op.root, None]


def same(a: Any, b: Any) -> bool:
    """Strict equality: types, key order, -0.0; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


# ----------------------------------------------------------------------------- writing stores


@contextmanager
def fixed_clock() -> Iterator[None]:
    ticks = itertools.count()

    def time_ns() -> int:
        return (CLOCK_START_MS + next(ticks) * CLOCK_STEP_MS) * 1_000_000

    with mock.patch.object(time, "time_ns", time_ns):
        yield


class Recorder:
    """Writes sessions through the public API and keeps, from its own inputs, what
    each session must fold to at every position."""

    def __init__(self, store: eventlog.Store) -> None:
        self.store = store
        self.states: dict[str, list[dict[str, Any]]] = {}
        self.parents: dict[str, str | None] = {}
        self.deleted: list[str] = []

    def _record(self, name: str, seq: int, state: dict[str, Any]) -> None:
        states = self.states.setdefault(name, [{}])
        assert seq == len(states), (name, seq, len(states))
        states.append(state)

    def _new(self, name: str, parent: str | None) -> None:
        if name not in self.states:
            self.parents[name] = parent
            if name in self.deleted:
                self.deleted.remove(name)

    def save(self, name: str, data: dict[str, Any], parent: str | None = None) -> None:
        self._new(name, parent)
        seq = self.store.save(name, data, parent_id=parent)
        self._record(name, seq, copy.deepcopy(data))

    def append(self, name: str, entries: list[Any], parent: str | None = None) -> None:
        self._new(name, parent)
        state = copy.deepcopy(self.states[name][-1]) if name in self.states else {}
        seq = self.store.append(name, entries, parent_id=parent)
        state.setdefault("entries", [])
        state["entries"] += copy.deepcopy(entries)
        if entries and type(entries[-1]) is dict and "id" in entries[-1]:
            state["leafId"] = entries[-1]["id"]
        self._record(name, seq, state)

    def delete(self, name: str, tree: bool = True) -> list[str]:
        gone = self.store.delete(name, tree=tree)
        for n in gone:
            del self.states[n]
            del self.parents[n]
            self.deleted.append(n)
        return gone

    def compacted(self, name: str, start: int) -> None:
        """History before ``start`` was compacted away: those positions read as ``None``."""
        states: list[Any] = self.states[name]
        for k in range(1, start):
            states[k] = None

    def expectations(self, about: str, options: dict[str, Any]) -> dict[str, Any]:
        """Check the store against the recorded states; the JSON expectations."""
        store = self.store
        assert store.sessions() == list(self.states), (store.sessions(), list(self.states))
        sessions = []
        for name, states in self.states.items():
            info = store.info(name)
            assert info.parent_id == self.parents[name] and info.seq == len(states) - 1
            assert same(store.load(name), states[-1]), name
            for k, state in enumerate(states):
                if state is not None:
                    assert same(store.fold(name, at=k), state), (name, k)
            events = [
                {"seq": e.seq, "timestamp_ms": e.timestamp_ms, "ops": [op_to_json(op) for op in e.ops]}
                for e in store.events(name, since=info.history_start)
            ]
            sessions.append(
                {
                    "id": name,
                    "parent": self.parents[name],
                    "seq": info.seq,
                    "history_start": info.history_start,
                    "entries": info.entries,
                    "created_ms": info.created_ms,
                    "updated_ms": info.updated_ms,
                    "events": events,
                    "folds": [None if s is None else to_json(s) for s in states],
                }
            )
        for name in self.deleted:
            assert store.load(name) is None
        report = store.verify()
        assert report.ok, report.problems
        return {
            "about": about,
            "open": to_json(options),
            "schema_version": 4,
            "sessions": sessions,
            "deleted": list(self.deleted),
            "verify": {
                "sessions": report.sessions,
                "events": report.events,
                "snapshots": report.snapshots,
                "chunks": report.chunks,
                "garbage_chunks": report.garbage_chunks,
            },
        }


def entry(i: int, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {"id": f"e{i}", "role": role, "content": f"message {i}", **extra}


#: Values that JSON, CBOR or a careless comparison could get wrong.
ODD_VALUES: dict[str, Any] = {
    "ints": [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32, 2**53, -(2**53), 2**63 - 1, -(2**63)],
    "bignums": [2**64 - 1, 2**64, -(2**64), -(2**64) - 1, 2**100, -(2**100)],
    "floats": [0.0, -0.0, 1.0, 1.5, -2.25, 0.1, 1e300, 5e-324, float("inf"), float("-inf"), float("nan")],
    "look_alike": [1, 1.0, True, False, None, "1", b"1", [], {}],
    "text": ["", "plain", "ünïcødé", "😀 outside the BMP", "line\nbreak\ttab\u0000nul", "\ufeffbom"],
    "bytes": [b"", b"\x00\xff", bytes(range(32))],
    "order": {"b": 1, "a": 2, "c": {"z": 0, "y": 1}},
    "nested": [[[]], {"": ""}, [{"k": [1, [2, [3]]]}]],
    "dollar": {"$bytes": "AA=="},
    "deep": {"a": {"b": {"c": {"d": {"e": {"f": [[[[["bottom"]]]]]}}}}}},
}


def build_plain(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        e = [entry(i) for i in range(8)]
        r.save("chat", {"version": 3, "title": "vectors", "entries": e[:2], "leafId": "e1"})  # Insert + SetFields
        r.append("chat", [e[2], e[3]])  # Insert at the end + SetFields(leafId)
        changed = dict(e[1], content="edited")
        r.save("chat", {"version": 3, "title": "vectors", "entries": [e[0], changed, e[2], e[3]], "leafId": "e3"})
        r.save("chat", {"version": 3, "title": "vectors", "entries": [e[0], changed, e[3]], "leafId": "e3"})
        r.save("chat", {"version": 3, "title": "vectors", "entries": [e[0], e[4], changed, e[3]], "leafId": "e3"})
        # Fields changed, added, removed and reordered: SetFields with an order.
        entries = [e[0], e[4], changed, e[3]]
        r.save("chat", {"leafId": "e3", "entries": entries, "title": "renamed", "tags": ["a", "b"]})
        r.save("chat", {"leafId": "e3", "entries": entries, "title": "renamed", "tags": ["a", "b"]})  # no ops
        r.append("chat", [])  # no ops either
        # Several operations in one event: a replace, a delete at the end, another field.
        r.save("chat", {"leafId": "e4", "entries": [dict(e[0], content="x"), e[4]], "title": "renamed", "n": 1})
        r.append("chat", [e[5], e[6], e[7], "not a dict", 42])  # leafId stays
        r.save("odd", {"entries": [ODD_VALUES], "meta": ODD_VALUES})
        r.save("odd", {"entries": [ODD_VALUES, {"id": "x", "bytes": rng.randbytes(40)}], "meta": {"-0": -0.0}})
        # "entries" that is not a list is a plain field; then a list; then not again.
        r.save("fields", {"entries": "not a list", "n": 1})
        r.save("fields", {"entries": [{"id": "a"}, {"id": "b"}], "n": 1})
        r.save("fields", {"n": 2, "entries": None})
        r.save("fields", {"n": 2, "entries": [{"id": "c"}]})
        r.save("empty", {})  # an event with no operations
        r.save("empty", {"k": "v"})
        r.save("empty", {})
        return r.expectations(
            "A plain store (no chunk key, default options): events of every operation and values of every kind.",
            options,
        )


def big_text(rng: random.Random, n: int) -> str:
    words = ["the", "agent", "called", "a", "tool", "über", "résultat", "→", "ok", "🙂", "line\n"]
    return "".join(rng.choice(words) + " " for _ in range(n))


def build_large(path: str, rng: random.Random, key: bytes | None) -> dict[str, Any]:
    options: dict[str, Any] = {"large_value_bytes": 256, "chunk_bytes": 1024, "snapshot_every": 0}
    if key is not None:
        options["chunk_key"] = key
    image = rng.randbytes(1200)
    other = rng.randbytes(900)
    canonical = base64.b64encode(image).decode()
    mime = base64.encodebytes(other).decode().replace("\n", "\r\n")  # 76-char lines, CRLF, final break
    urlsafe = base64.urlsafe_b64encode(rng.randbytes(701)).decode().rstrip("=")
    pem = "\n".join(canonical[i : i + 64] for i in range(0, len(canonical), 64))  # 64-char lines, no final break
    text = big_text(rng, 300)  # several chunks, compressible
    blob = rng.randbytes(2500)  # several chunks, incompressible
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        first = {
            "id": "u1",
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image", "data": canonical},
                {"type": "image_url", "url": "data:image/png;base64," + canonical},  # the same bytes: dedup
            ],
        }
        r.append("media", [first])
        r.append(
            "media",
            [
                {"id": "t1", "role": "tool", "output": blob, "mime": mime},
                {"id": "t2", "role": "tool", "urlsafe": urlsafe, "pem": pem, "again": canonical},
                {"id": "t3", "role": "tool", "almost": "x" * 300 + "=", "short": "small"},
            ],
        )
        store.snapshot("media")  # a snapshot holding refs
        session = store.load("media")
        assert session is not None
        session["system"] = text + "(system prompt)"  # a large value in a top-level field
        session["entries"][0] = {"id": "u1", "role": "user", "content": "redacted"}  # its chunks stay: event 1
        r.save("media", session)
        r.append("media", [{"id": "a1", "role": "assistant", "content": "done"}])
        which = "a keyed store (chunk_key = bytes 0..31)" if key else "an unkeyed store (plain BLAKE3 addresses)"
        return r.expectations(
            f"Large values as chunks in {which}: text, bytes, canonical base64, a data: URL, MIME (CRLF, 76), "
            "PEM (64), URL-safe unpadded base64, a value repeated (stored once), a snapshot holding refs, "
            "large_value_bytes=256 and chunk_bytes=1024.",
            options,
        )


def build_segmented(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {"chunk_bytes": 1024, "large_value_bytes": 512, "snapshot_every": 0, "snapshot_bytes": 0}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        n = 0
        for _ in range(4):
            r.append("long", [entry(n + i, note=rng.randbytes(8).hex()) for i in range(10)])
            n += 10
        r.append("long", [entry(n, attachment=big_text(rng, 120))])  # a large value inside a segment
        n += 1
        store.snapshot("long")  # every segment written
        state = copy.deepcopy(r.states["long"][-1])
        state["entries"][5] = dict(state["entries"][5], content="edited after the first snapshot")
        r.save("long", state)
        r.append("long", [entry(n + i) for i in range(10)])
        n += 10
        store.snapshot("long")  # reuses the segments the edit did not touch
        r.append("long", [entry(n), entry(n + 1)])
        state = copy.deepcopy(r.states["long"][-1])
        state["title"] = "events after the newest snapshot"
        del state["entries"][0]
        r.save("long", state)
        return r.expectations(
            "Segmented snapshots (chunk_bytes=1024: segments of about 1 KiB of CBOR): 41 entries, a snapshot "
            "at 5, an edit and 10 more entries, a snapshot at 7 reusing untouched segments, then 2 events after it.",
            options,
        )


def build_spilled(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {"max_cell_bytes": 16384, "snapshot_every": 0}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        # 20 KB of incompressible values, each under large_value_bytes (32 KiB): an
        # event frame over the 16 KB cell budget, spilled into chunks.  They are in
        # top-level fields, so the snapshot is one frame (entries would be cut into
        # segments), spilled too.
        blobs = {f"b{i}": rng.randbytes(1000) for i in range(20)}
        r.save("big", {"blobs": blobs, "entries": [{"id": "first"}]})
        store.snapshot("big")
        r.append("big", [{"id": "after"}])
        return r.expectations(
            "Frames over the cell budget (max_cell_bytes=16384) spilled into chunks: an event, and a snapshot "
            "frame (the session's bulk is in a top-level field, so its snapshot is one frame).",
            options,
        )


def build_tree(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        r.append("root", [entry(0)])
        r.append("a", [entry(1)], parent="root")
        r.append("a1", [entry(2)], parent="a")
        r.append("b", [entry(3)], parent="root")
        r.append("b1", [entry(4)], parent="b")
        r.append("gone", [entry(5, secret=rng.randbytes(4).hex())])
        r.append("root", [entry(6)])
        assert r.delete("a") == ["a", "a1"]  # the tree: tombstones in both
        assert r.delete("b", tree=False) == ["b"]  # b1 stays, its parent link names "b"
        assert r.delete("gone") == ["gone"]
        r.save("b", {"entries": [entry(7)], "leafId": "e7", "again": True}, parent="root")  # a new session, old id
        assert store.children("b") == ["b1"] and store.tree("root") == ["b", "b1"]
        return r.expectations(
            "Parent links and deletion: root > a > a1 and root > b > b1; a deleted with its tree, b alone "
            "(b1 keeps its link), gone alone, then b written again as a new session. Tombstones kept (not compacted).",
            options,
        )


def build_compacted(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {"large_value_bytes": 256, "snapshot_every": 0}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        dropped, kept = big_text(rng, 100), big_text(rng, 100)
        r.append("trimmed", [entry(0, old=dropped)])
        r.save("trimmed", {"entries": [entry(0)], "leafId": "e0"})
        r.append("trimmed", [entry(1, keep=kept)])
        for i in range(2, 5):
            r.append("trimmed", [entry(i)])
        r.append("short", [entry(9)])
        r.append("doomed", [entry(10, old=dropped)])
        r.delete("doomed")
        report = store.compact(retain=2)
        assert report.sessions_truncated == 1 and report.sessions_removed == 1 and report.chunks_freed == 1
        r.compacted("trimmed", 4)
        r.deleted.remove("doomed")  # removed from the file altogether
        return r.expectations(
            "History compaction: 'trimmed' kept its last 2 events (compact(retain=2)); its history starts at 4, "
            "the floor snapshot there; a deleted session and the chunk only it and the dropped events used are gone.",
            options,
        )


def build_legacy(path: str, rng: random.Random) -> dict[str, Any]:
    """The content every older-schema vector holds (what those versions could write)."""
    options: dict[str, Any] = {"large_value_bytes": 256, "snapshot_every": 2}
    image = base64.b64encode(rng.randbytes(600)).decode()
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        first = entry(1, img=image)
        r.save("root", {"version": 5, "entries": [first], "leafId": "e1"})
        r.save("root", {"version": 5, "entries": [first, entry(2, "assistant")], "leafId": "e2"})  # snapshot at 2
        r.save("root", {"version": 5, "entries": [first, entry(3, "assistant")], "leafId": "e3"})
        r.save("child", {"version": 5, "entries": [entry(4, text="sub-task")], "leafId": "e4"}, parent="root")
        return r.expectations("", {})


def _events_untimed(con: sqlite3.Connection, only_first: bool = False) -> None:
    """Reseal event frames without FLAG_TIMED, as writers before it sealed them
    (docs/format.md, "Frames"): CRC32 over binding | version | flags | payload."""
    rows = con.execute("SELECT pos, sid, seq, ts_ms, frame FROM events ORDER BY pos").fetchall()
    for pos, sid, seq, ts, frame in rows:
        if only_first and seq != 1:
            continue
        version, flags, crc = struct.unpack_from("<BBI", frame)
        payload = frame[6:]
        if not flags & 4:
            continue  # untimed already
        timed = b"E" + struct.pack("<qqq", sid, seq, ts)
        assert zlib.crc32(timed + bytes((version, flags)) + payload) == crc, "not a timed frame"
        flags &= ~4
        crc = zlib.crc32(b"E" + struct.pack("<qq", sid, seq) + bytes((version, flags)) + payload)
        con.execute(
            "UPDATE events SET frame = ? WHERE pos = ?", (struct.pack("<BBI", version, flags, crc) + payload, pos)
        )


def to_version_3(path: str) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("BEGIN; ALTER TABLE sessions DROP COLUMN entries; PRAGMA user_version = 3;")
    _events_untimed(con, only_first=True)  # a file upgraded to 3 before frames were timed holds both kinds
    con.execute("COMMIT")
    con.close()


def to_version_2(path: str) -> None:
    to_version_3(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("BEGIN; DROP TABLE meta; PRAGMA user_version = 2;")
    _events_untimed(con)
    con.execute("COMMIT")
    con.close()


def to_version_1(path: str) -> None:
    to_version_2(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("""
        BEGIN;
        CREATE TABLE s1 (sid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, parent TEXT,
            seq INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
            snap_seq INTEGER NOT NULL DEFAULT 0, snap_bytes INTEGER NOT NULL DEFAULT 0,
            snap_bytes_since INTEGER NOT NULL DEFAULT 0);
        INSERT INTO s1 SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes,
            snap_bytes_since FROM sessions;
        CREATE TABLE r1 (sid INTEGER NOT NULL, cid INTEGER NOT NULL, PRIMARY KEY (sid, cid)) WITHOUT ROWID;
        INSERT OR IGNORE INTO r1 SELECT e.sid, r.cid FROM refs r JOIN events e ON r.kind = 0 AND r.holder = e.pos;
        INSERT OR IGNORE INTO r1 SELECT n.sid, r.cid FROM refs r JOIN snapshots n ON r.kind = 1 AND r.holder = n.id;
        CREATE TABLE n1 (sid INTEGER NOT NULL, seq INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (sid, seq));
        INSERT INTO n1 SELECT sid, seq, frame FROM snapshots;
        DROP TABLE sessions; DROP TABLE refs; DROP TABLE snapshots;
        ALTER TABLE s1 RENAME TO sessions; ALTER TABLE r1 RENAME TO refs; ALTER TABLE n1 RENAME TO snapshots;
        CREATE INDEX sessions_parent ON sessions(parent) WHERE parent IS NOT NULL;
        CREATE INDEX refs_cid ON refs(cid);
        PRAGMA user_version = 1;
        COMMIT;
    """)
    con.close()


def build_version(version: int) -> Callable[[str, random.Random], dict[str, Any]]:
    downgrade = {1: to_version_1, 2: to_version_2, 3: to_version_3}[version]

    def build(path: str, rng: random.Random) -> dict[str, Any]:
        expected = build_legacy(path, rng)
        downgrade(path)
        copied = path + ".copy"  # (a read-only open may leave -wal and -shm files next to what it reads)
        shutil.copyfile(path, copied)
        with eventlog.open(copied, readonly=True) as store:  # what verify counts in the older layout
            report = store.verify()
            assert report.ok, report.problems
        assert expected["verify"]["snapshots"] == report.snapshots
        expected["schema_version"] = version
        for session in expected["sessions"]:
            session["entries"] = None  # not recorded before version 4
        expected["about"] = (
            f"A schema version {version} file (written by this release, then rewritten into that version's "
            "layout): a session with a large value and a snapshot, and a child. "
            + {
                1: "Refs per session (kind 2), no meta table, no base_seq/deleted_ms; event frames untimed.",
                2: "No meta table (plain BLAKE3 addresses); event frames untimed.",
                3: "No sessions.entries; the first event of each session untimed, the others timed.",
            }[version]
        )
        return expected

    return build


STORES: dict[str, Callable[[str, random.Random], dict[str, Any]]] = {
    "plain": build_plain,
    "large_plain": lambda path, rng: build_large(path, rng, None),
    "large_keyed": lambda path, rng: build_large(path, rng, CHUNK_KEY),
    "segmented": build_segmented,
    "spilled": build_spilled,
    "tree": build_tree,
    "compacted": build_compacted,
    "schema_v1": build_version(1),
    "schema_v2": build_version(2),
    "schema_v3": build_version(3),
}


# ----------------------------------------------------------------------------- raw frames


def seal(version: int, flags: int, payload: bytes, binding: bytes) -> bytes:
    """A frame as docs/format.md specifies it (not eventlog's code)."""
    crc = zlib.crc32(binding + bytes((version, flags)) + payload)
    return struct.pack("<BBI", version, flags, crc) + payload


def binding(kind: str, sid: int, seq: int, ts: int | None) -> bytes:
    out = kind.encode() + struct.pack("<qq", sid, seq)
    return out if ts is None else out + struct.pack("<q", ts)


class Frames:
    """Collects raw frames: their bytes, binding and what they decode to."""

    def __init__(self, out: Path) -> None:
        self.dir = out
        self.index: list[dict[str, Any]] = []

    def add(
        self, name: str, about: str, frame: bytes, kind: str, sid: int, seq: int, ts: int | None, expect: Any
    ) -> None:
        (self.dir / f"{name}.frame").write_bytes(frame)
        self.index.append(
            {
                "name": name,
                "about": about,
                "file": f"{name}.frame",
                "binding": {"kind": kind, "sid": sid, "seq": seq, "ts": ts},
                # What the CRC covers before version and flags: the timestamp is in it
                # only for a frame flagged timed (4).
                "binding_bytes": binding(kind, sid, seq, ts if len(frame) > 1 and frame[1] & 4 else None).hex(),
                "expect": expect,
            }
        )


def decode(frame: bytes, kind: str, sid: int, seq: int, ts: int | None) -> dict[str, Any]:
    """What eventlog's codec makes of a frame: its flags (as opened: without the
    timestamp flag) and body (spill pointer or CBOR value), or the error class."""
    try:
        timed = codec.binding(kind.encode(), sid, seq, ts) if ts is not None else None
        flags, payload = codec.Framer.open(frame, codec.binding(kind.encode(), sid, seq), timed)
        if not flags & codec.FLAG_SPILL:
            payload = codec.Framer().decompress(flags, payload, 1 << 20)
        value, markers = codec.loads(payload)
    except codec.DecodeError as e:
        return {"error": type(e).__name__}
    return {"flags": flags, "markers": markers, "body": to_json(value)}


def store_frames(path: Path, table: str) -> list[tuple[int, int, int | None, bytes]]:
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # (no side files made)
    try:
        if table == "events":
            return [tuple(r) for r in con.execute("SELECT sid, seq, ts_ms, frame FROM events ORDER BY pos")]
        return [(sid, seq, None, frame) for sid, seq, frame in con.execute("SELECT sid, seq, frame FROM snapshots")]
    finally:
        con.close()


def pick(
    frames: list[tuple[int, int, int | None, bytes]], test: Callable[[int, int, bytes], bool]
) -> tuple[int, int, int | None, bytes]:
    """The first frame whose (version, flags, payload) pass ``test``."""
    for f in frames:
        if test(f[3][0], f[3][1], f[3][6:]):
            return f
    raise AssertionError("no such frame in the vectors")


def build_frames(stores: Path, out: Path) -> None:
    frames = Frames(out)
    plain = store_frames(stores / "plain.eventlog", "events")
    large = store_frames(stores / "large_plain.eventlog", "events")
    spilled = store_frames(stores / "spilled.eventlog", "events")
    tree = store_frames(stores / "tree.eventlog", "events")
    v2 = store_frames(stores / "schema_v2.eventlog", "events")
    snaps = store_frames(stores / "segmented.eventlog", "snapshots")
    snaps_small = store_frames(stores / "schema_v3.eventlog", "snapshots")
    spilled_snaps = store_frames(stores / "spilled.eventlog", "snapshots")

    def ok(name: str, about: str, f: tuple[int, int, int | None, bytes], kind: str = "E") -> None:
        sid, seq, ts, frame = f
        expect = decode(frame, kind, sid, seq, ts)
        assert "error" not in expect, (name, expect)
        frames.add(name, about, frame, kind, sid, seq, ts, expect)

    def bad(name: str, about: str, frame: bytes, kind: str, sid: int, seq: int, ts: int | None, error: str) -> None:
        found = decode(frame, kind, sid, seq, ts)
        assert found == {"error": error}, (name, found)
        frames.add(name, about, frame, kind, sid, seq, ts, {"error": error})

    raw = pick(plain, lambda v, f, p: f == codec.FLAG_TIMED and len(p) > 20)
    ok("event_raw", "An event frame, uncompressed (flags: timed), from plain.eventlog.", raw)
    packed = pick(plain, lambda v, f, p: f == codec.FLAG_TIMED | codec.FLAG_ZSTD)
    ok("event_zstd", "An event frame, zstd-compressed (flags: zstd, timed), from plain.eventlog.", packed)
    empty = pick(plain, lambda v, f, p: p == b"\x80")
    ok("event_no_ops", "An event with no operations: the body is an empty CBOR array.", empty)
    ok("event_untimed", "An event frame from before timestamps were bound (schema_v2.eventlog).", v2[0])
    refs = pick(large, lambda v, f, p: f == codec.FLAG_TIMED and b"\xd9\xe8\x6d" in p)
    ok("event_refs", "An event holding large values as refs (tag 59501) and the entries marker (tag 59502).", refs)
    forms = pick(large, lambda v, f, p: b"\xd9\xe8\x6d\x85" in p or b"\xd9\xe8\x6d\x85" in _unzstd(f, p))
    ok("event_base64_forms", "An event with refs of base64 in non-canonical forms (5-field refs).", forms)
    spill = pick(spilled, lambda v, f, p: bool(f & codec.FLAG_SPILL))
    ok("event_spilled", "An event spilled into chunks: the payload is the pointer [flags, length, hashes].", spill)
    tomb = pick(tree, lambda v, f, p: p[:2] == b"\x81\x83" and p[2] == 4)
    ok("event_tombstone", "A tombstone event: [[4, root, null]].", tomb)
    single = pick(snaps_small, lambda v, f, p: v == 1 and not f & codec.FLAG_SPILL)
    ok("snapshot_single", "A snapshot in one frame (format version 1): [fields, entries].", single, "S")
    manifest = pick(snaps, lambda v, f, p: v == 2)
    ok("snapshot_manifest", "A segmented snapshot's manifest (format version 2, flag segments).", manifest, "S")
    ok("snapshot_spilled", "A one-frame snapshot spilled into chunks.", spilled_snaps[0], "S")

    sid, seq, ts, frame = raw
    flags = frame[1]
    payload = frame[6:]
    assert ts is not None
    timed = binding("E", sid, seq, ts)
    flipped = bytearray(frame)
    flipped[-1] ^= 0x01
    bad(
        "reject_flipped_byte", "event_raw with its last byte flipped.", bytes(flipped), "E", sid, seq, ts, "DecodeError"
    )
    bad("reject_other_position", "event_raw read at seq + 1.", frame, "E", sid, seq + 1, ts, "DecodeError")
    bad("reject_other_session", "event_raw read as session sid + 1's.", frame, "E", sid + 1, seq, ts, "DecodeError")
    bad("reject_as_snapshot", "event_raw read as a snapshot row.", frame, "S", sid, seq, None, "DecodeError")
    bad("reject_other_time", "event_raw read with another timestamp.", frame, "E", sid, seq, ts + 1, "DecodeError")
    bad("reject_timed_without_time", "A timed frame where the row keeps no timestamp.", frame, "E", sid, seq, None,
        "DecodeError")  # fmt: skip
    for n in (0, 1, 5):
        bad(f"reject_truncated_{n}", f"The first {n} bytes of event_raw.", frame[:n], "E", sid, seq, ts, "DecodeError")
    bad("reject_version_3", "Format version 3, CRC valid: a newer release wrote it.",
        seal(3, flags, payload, timed), "E", sid, seq, ts, "VersionError")  # fmt: skip
    bad("reject_version_0", "Format version 0, CRC valid.", seal(0, flags, payload, timed), "E", sid, seq, ts,
        "VersionError")  # fmt: skip
    newer = bytearray(seal(3, flags, payload, timed))
    newer[-1] ^= 0x01
    bad("reject_version_3_damaged", "Format version 3 with a bad CRC: damage, not a newer format.", bytes(newer),
        "E", sid, seq, ts, "DecodeError")  # fmt: skip
    bad("reject_segments_flag_in_version_1", "Flag segments (8) in a version 1 frame, CRC valid.",
        seal(1, flags | 8, payload, timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    bad("reject_version_2_without_segments", "A version 2 frame without flag segments, CRC valid.",
        seal(2, flags, payload, timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    bad("reject_unknown_flag", "Flag 16 (unknown), CRC valid.", seal(1, flags | 16, payload, timed), "E", sid, seq,
        ts, "DecodeError")  # fmt: skip
    bad("reject_trailing_bytes", "A valid body followed by a byte, CRC valid.",
        seal(1, flags, payload + b"\x00", timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    bad("reject_foreign_tag", "A body holding CBOR tag 1 (an epoch date), CRC valid.",
        seal(1, flags, bytes.fromhex("81c11a5f000000"), timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    marker = bytes.fromhex("81 83 03 a1 67") + b"entries" + bytes.fromhex("d9e86e 00 f6")
    bad("reject_marker_not_null", "The entries marker (tag 59502) over 0 instead of null, CRC valid.",
        seal(1, flags, marker, timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    ref = bytes.fromhex("81 83 00 00 81 d9e86d 85 02 18 30 58 20") + bytes(32) + bytes.fromhex("60 19 0110")
    bad("reject_ref_newer_form", "A ref whose base64 form has flag 0x10 (unknown: a newer release), CRC valid.",
        seal(1, flags, ref, timed), "E", sid, seq, ts, "VersionError")  # fmt: skip
    ref = bytes.fromhex("81 83 00 00 81 d9e86d 83 00 01 58 1f") + bytes(31)
    bad("reject_ref_short_hash", "A ref whose hashes are not a multiple of 32 bytes, CRC valid.",
        seal(1, flags, ref, timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    zsid, zseq, zts, zframe = packed
    zversion, zflags = zframe[0], zframe[1]
    zpayload = zframe[6:]
    zbind = binding("E", zsid, zseq, zts)
    bad("reject_zstd_cut", "event_zstd with its zstd payload cut short, CRC valid.",
        seal(zversion, zflags, zpayload[:-3], zbind), "E", zsid, zseq, zts, "DecodeError")  # fmt: skip
    bad("reject_zstd_flag_on_cbor", "A plain CBOR body flagged zstd, CRC valid.",
        seal(1, flags | codec.FLAG_ZSTD, payload, timed), "E", sid, seq, ts, "DecodeError")  # fmt: skip
    written = {"zstd": zstandard.ZSTD_VERSION, "sqlite": sqlite3.sqlite_version}
    text = json.dumps({"written_with": written, "frames": frames.index}, indent=1, ensure_ascii=False)
    (out / "frames.json").write_text(text + "\n", encoding="utf-8")


def _unzstd(flags: int, payload: bytes) -> bytes:
    if not flags & codec.FLAG_ZSTD:
        return b""
    return codec.Framer().decompress(codec.FLAG_ZSTD, payload, 1 << 20)


# ----------------------------------------------------------------------------- main


def pack(path: str) -> None:
    """Rewrite a closed store with 1 KiB pages (VACUUM), back in WAL mode: SQLite's
    default 4 KiB pages would make every vector at least 60 KB, one page per table
    and index.  (eventlog sets no page size and reads any.)"""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA page_size=1024")
        con.execute("VACUUM")
        assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    finally:
        con.close()


def generate(out: Path) -> None:
    stores, frames = out / "stores", out / "frames"
    for d in (stores, frames):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in STORES.items():
            work = os.path.join(tmp, f"{name}.eventlog")
            with fixed_clock():  # each store's clock starts at CLOCK_START_MS
                expected = build(work, random.Random(f"eventlog vectors: {name}"))
            expected = {"name": name, **expected}
            for side in ("-wal", "-shm", "-journal"):
                assert not os.path.exists(work + side), f"{name}: {side} left behind"
            pack(work)
            shutil.copyfile(work, stores / f"{name}.eventlog")
            text = json.dumps(expected, indent=1, ensure_ascii=False)
            (stores / f"{name}.json").write_text(text + "\n", encoding="utf-8")
    build_frames(stores, frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: tests/vectors)")
    args = parser.parse_args(argv)
    generate(args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
