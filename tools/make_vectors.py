"""Write the on-disk format test vectors in ``tests/vectors/`` (see its README.md).

Run from the repository root with the dev install active::

    python tools/make_vectors.py --keep-old   # rewrites tests/vectors, keeping its compatibility stores
    python tools/make_vectors.py --out DIR    # writes them all under DIR instead

The vectors are committed: they are what eventlog must go on reading, whatever it
writes later.  **Regenerating them must not be needed unless the on-disk format
changes.**  A change that makes ``tests/contract/test_vectors.py`` fail against the committed
files breaks every store already written; when the format changes on purpose (a new
frame or schema version), keep the old vectors (they must still read) and add new
ones beside them.

What is written is deterministic where it can be: the clock is fixed (every call of
``time.time_ns`` while a store is written advances a fake clock by one second,
from 2026-01-01T00:00:00Z for each store), the chunk key is fixed (bytes 0..31),
session keys come from a seeded ``random.Random`` (one per store), and so do the
values.  The bytes of the files still depend on the SQLite and zstd libraries that
write them, so the test that reruns this script
(``test_the_generator_still_writes_what_the_vectors_expect``) compares what the new
files decode to with the committed expectations, not their bytes.

Each store's expectations (``stores/<name>.json``) are derived from what this script
wrote (the session dicts it saved, its own replay of each ``append()``), then checked
against what eventlog reads back before anything is written; only the events' ops,
the timestamps, the session keys and ``verify()``'s counts are recorded as read back.

Two generations of stores are written:

* The current format (schema version 5): frames of format versions 3 and 4, bound
  to each session's key, and segments large enough to be reused written with
  string references (segment flag 2).  Written by eventlog as it is.
* The compatibility vectors, as the releases before session keys wrote them
  (``v4_*``: schema version 4; ``schema_v1`` to ``schema_v3``): written by eventlog
  as those releases did (:func:`before_keys`: segments without string references),
  then rewritten with ``sqlite3`` into the older layout: every frame resealed bound
  to its session's row id (format versions 1 and 2, the same steps as
  ``tests/helpers.py``'s ``to_version_4``), the ``key`` column dropped, and for
  schema versions 1 to 3 the later tables and columns dropped and (for versions 1
  and 2, whose writers predated timestamped frames) event frames resealed without
  the timestamp.  Every CRC is computed as docs/format.md specifies it,
  independently of eventlog's code, after checking the one it replaces.  The
  committed files of that generation are those the releases before keys wrote
  (tools/make_vectors.py of then); this script makes their equivalents, which the
  drift test compares with them.
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
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import zstandard

import eventlog
import eventlog.cache
import eventlog.copying
import eventlog.fold
import eventlog.log
import eventlog.snapshots
import eventlog.store
from eventlog import codec
from eventlog.snapshots import FLAG_STRINGREF

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
    if type(op) is eventlog.At:
        return [5, list(op.path), op_to_json(op.op)]
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
def fixed_clock(keys: random.Random) -> Iterator[None]:
    """A fake clock, and session keys (16 bytes of ``os.urandom`` in eventlog's
    ``store``, ``cache`` and ``copying`` modules) drawn from ``keys``."""
    ticks = itertools.count()

    def time_ns() -> int:
        return (CLOCK_START_MS + next(ticks) * CLOCK_STEP_MS) * 1_000_000

    class Os:  # the os module, but for its session keys
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def urandom(n: int) -> bytes:
            assert n == codec.KEY_BYTES, n
            return keys.randbytes(n)

    with (
        mock.patch.object(time, "time_ns", time_ns),
        mock.patch.object(eventlog.store, "os", Os()),
        mock.patch.object(eventlog.cache, "os", Os()),
        mock.patch.object(eventlog.copying, "os", Os()),
    ):
        yield


@contextmanager
def before_keys() -> Iterator[None]:
    """Write as the releases before session keys (schema version 4) did, apart from
    the frames' binding (resealed after, by :func:`to_version_4`): segments without
    string references, whatever their size (their entries' own encodings one after
    the other, segment flag 2 never set)."""
    dumps = codec.dumps

    def plain_dumps(value: Any, refs: list[codec.Ref] | None = None, *, stringref: bool = False) -> bytes:
        return dumps(value, refs)

    with mock.patch.object(eventlog.snapshots, "FLAG_STRINGREF", 0), mock.patch.object(codec, "dumps", plain_dumps):
        yield


@contextmanager
def before_lists() -> Iterator[None]:
    """Write as the releases before lists at paths did: every top-level field but
    ``entries`` set whole when it changes (no :class:`eventlog.At` operations).  The
    stores written before those existed are made so, to record what they hold."""
    with mock.patch.object(eventlog.fold, "_diff_in", lambda *args: False):
        yield


@contextmanager
def before_paths() -> Iterator[None]:
    """Write as the releases before format version 6 did: lists at paths stay in a
    snapshot's fields (never in segments) and events holding At operations are
    version 3 frames.  Every store but those of :data:`PATH_SEGMENTS` is made so:
    they are the bytes those releases wrote (``lists`` has At in version 3 frames)."""
    with (
        mock.patch.object(eventlog.snapshots, "_lists", lambda fields: []),
        mock.patch.object(eventlog.writer, "uses_paths", lambda ops: False),
        mock.patch.object(eventlog.copying, "uses_paths", lambda ops: False),
    ):
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

    def expectations(self, about: str, options: dict[str, Any], path: str) -> dict[str, Any]:
        """Check the store (at ``path``) against the recorded states; the JSON expectations."""
        store = self.store
        keys = session_keys(path)
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
                    "key": keys[name].hex(),
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
            "schema_version": 5,
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


def session_keys(path: str) -> dict[str, bytes]:
    """The key of each live session in the store file at ``path`` (``sessions.key``),
    open in a store (its WAL is read: the store's connection removes it when closed)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, key FROM sessions WHERE deleted_ms IS NULL").fetchall()
    finally:
        con.close()
    assert all(type(key) is bytes and len(key) == codec.KEY_BYTES for _, key in rows), rows
    return dict(rows)


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
            path,
        )


def build_lists(path: str, rng: random.Random) -> dict[str, Any]:
    """Lists and dicts at paths, kept item by item and key by key (At, kind 5)."""
    options: dict[str, Any] = {"snapshot_every": 3}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        m = [entry(i, note=rng.randbytes(4).hex()) for i in range(6)]
        r.save("chat", {"messages": m[:2], "model": "m1"})  # a new field: set whole
        r.save("chat", {"messages": m[:4], "model": "m1"})  # At Insert at the end
        r.save("chat", {"messages": [m[0], dict(m[1], content="edited"), m[3]], "model": "m2"})  # Replace, Delete
        r.save("chat", {"messages": [m[5], m[0], dict(m[1], content="edited"), m[3]], "model": "m2"})  # Insert at 0
        r.save("graph", {"state": {"messages": m[:1], "step": 0}, "thread": "t"})
        r.save("graph", {"state": {"messages": m[:3], "step": 1}, "thread": "t"})  # At Insert + At SetFields
        r.save("graph", {"thread": "t", "state": {"step": 2, "messages": m[:3], "extra": [1]}})  # orders
        r.save("graph", {"thread": "t", "state": {"step": 2, "messages": "not a list now"}})  # key dropped
        r.save("graph", {"thread": "t", "state": {"step": 2, "messages": m[:2]}})  # a list again: set whole
        deep = {"checkpoint": {"channel_values": {"messages": m[:1], "n": 1}}}
        r.save("deep", deep)
        r.save("deep", {"checkpoint": {"channel_values": {"messages": m[:2], "n": 1}}})  # a path of 3 keys
        r.save("deep", {"checkpoint": "replaced by a string"})
        return r.expectations(
            "Lists and dicts at paths (At, kind 5): a top-level messages list edited item by item, "
            "state.messages beside a sibling key and a key order change, a list turning into a string and back, "
            "checkpoint.channel_values.messages; snapshots every 3 events.",
            options,
            path,
        )


def build_segmented_lists(path: str, rng: random.Random) -> dict[str, Any]:
    """Lists at paths kept in snapshot segments (format version 6)."""
    options: dict[str, Any] = {"chunk_bytes": 1024, "large_value_bytes": 512, "snapshot_every": 0, "snapshot_bytes": 0}
    with eventlog.open(path, **options) as store:
        r = Recorder(store)
        m = [entry(i, note=rng.randbytes(8).hex()) for i in range(60)]
        r.save("chat", {"model": "m1", "messages": m[:40]})  # a new field, set whole: version 3
        store.snapshot("chat")  # messages in segments: a version 6 manifest
        edited = [*m[:5], dict(m[5], content="edited after the first snapshot"), *m[6:50]]
        r.save("chat", {"model": "m1", "messages": edited})  # At Replace and Insert: version 6
        store.snapshot("chat")  # reuses the segments the edit did not touch
        r.save("chat", {"model": "m2", "messages": [*edited[1:], *m[50:52]]})  # events after the newest snapshot
        state = {"entries": [entry(100)], "state": {"step": 0, "messages": m[:30]}}
        r.save("graph", state)
        state = copy.deepcopy(state)
        state["state"]["messages"].append(entry(101, attachment=big_text(rng, 120)))  # a large value inside
        state["state"]["step"] = 1
        r.save("graph", state)
        store.snapshot("graph")  # small entries in a segment of their own, state.messages in segments
        return r.expectations(
            "Lists at paths in snapshot segments (format version 6; chunk_bytes=1024: segments of about "
            "1 KiB): chat.messages, 40 messages set whole (a version 3 event), a snapshot at 1 keeping them "
            "in segments (the manifest's third element), an edit and 10 more (At, a version 6 event), a "
            "snapshot at 2 reusing untouched segments, one more event after it; graph.state.messages with a "
            "large value inside, beside a one-entry entries list (a segment of its own).",
            options,
            path,
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
            path,
        )


def build_segmented(path: str, rng: random.Random, last: bool = False) -> dict[str, Any]:
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
        about = (
            "Segmented snapshots (chunk_bytes=1024: segments of about 1 KiB of CBOR): 41 entries, a snapshot "
            "at 5, an edit and 10 more entries, a snapshot at 7 reusing untouched segments, then 2 events after it."
        )
        if last:
            store.snapshot("long")  # a small new tail segment, under a quarter of segment_bytes
            about += (
                " Then a snapshot at 9 (the one at 5 dropped), its last segment (the 2 new entries) written "
                "without string references (segment flags 1), the others with them (3)."
            )
        return r.expectations(
            about,
            options,
            path,
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
            path,
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
            path,
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
            path,
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
        return r.expectations("", {}, path)


def build_copied(path: str, rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {"chunk_key": CHUNK_KEY, "large_value_bytes": 256}
    image = base64.b64encode(rng.randbytes(600)).decode()
    text = big_text(rng, 100)
    source_path = path + ".source"
    with eventlog.open(source_path, large_value_bytes=256, snapshot_every=0) as source:
        src = Recorder(source)
        src.append("agent", [entry(0, img=image)])
        src.append("agent", [entry(1, "assistant", text=text)])
        src.append("agent/sub", [entry(2, img=image)], parent="agent")
        src.append("trimmed", [entry(3, text=text)])
        for i in range(4, 8):
            src.append("trimmed", [entry(i)])
        assert source.compact(retain=2).sessions_truncated == 1
        src.compacted("trimmed", 3)
        keys = session_keys(source_path)
        with eventlog.open(path, **options) as store:
            r = Recorder(store)
            r.save("local", {"entries": [entry(9)], "leafId": "e9"})  # row 1 here: the copies' row ids differ
            copied = source.copy_to(store)
            assert copied == ["agent", "agent/sub", "trimmed"], copied
            for name in copied:
                r.states[name], r.parents[name] = src.states[name], src.parents[name]
            expected = r.expectations(
                "Sessions copied (Store.copy_to) from an unkeyed store, where they were rows 1 to 3, into a keyed "
                "one (chunk_key = bytes 0..31) after a session of its own: same keys (so their frames, all written "
                "anew, are bound as in the source), positions, times and history start ('trimmed' was compacted "
                "with retain=2 before the copy: its floor snapshot came with it); the large values stored again "
                "under this store's chunk key, large_value_bytes=256.",
                options,
                path,
            )
    for session in expected["sessions"]:
        if session["id"] in copied:
            assert session["key"] == keys[session["id"]].hex(), session["id"]
    for side in ("", "-wal", "-shm", "-lock"):
        if os.path.exists(source_path + side):
            os.remove(source_path + side)
    return expected


def _reseal(frame: bytes, old: bytes, new: bytes, version: int, flags: int) -> bytes:
    """``frame`` with its CRC, found over the binding ``old``, made over the binding
    ``new`` with ``version`` and ``flags`` instead (docs/format.md, "Frames"): CRC32
    over binding | version | flags | payload."""
    was, had, crc = struct.unpack_from("<BBI", frame)
    payload = frame[6:]
    assert zlib.crc32(old + bytes((was, had)) + payload) == crc, "not bound as expected"
    return struct.pack("<BBI", version, flags, zlib.crc32(new + bytes((version, flags)) + payload)) + payload


def to_version_4(path: str) -> None:
    """Make a closed store file of schema version 5 into a version 4 one, as the
    releases before session keys wrote it (the steps of tests/helpers.py's
    ``to_version_4``): every frame of format version 3 or 4, bound to its session's
    key, resealed as version 1 or 2, bound to its row id; no ``sessions.key``."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN")
    keys = dict(con.execute("SELECT sid, key FROM sessions"))
    rows = con.execute("SELECT pos, sid, seq, ts_ms, frame FROM events").fetchall()
    for pos, sid, seq, ts, frame in rows:
        version, flags = frame[0], frame[1]
        assert version == 3, (version, flags)
        time = struct.pack("<q", ts) if flags & codec.FLAG_TIMED else b""
        old, new = b"E" + keys[sid] + struct.pack("<q", seq) + time, b"E" + struct.pack("<qq", sid, seq) + time
        con.execute("UPDATE events SET frame = ? WHERE pos = ?", (_reseal(frame, old, new, 1, flags), pos))
    for nid, sid, seq, frame in con.execute("SELECT id, sid, seq, frame FROM snapshots").fetchall():
        version, flags = frame[0], frame[1]
        assert version in (3, 4), (version, flags)
        old, new = b"S" + keys[sid] + struct.pack("<q", seq), b"S" + struct.pack("<qq", sid, seq)
        con.execute("UPDATE snapshots SET frame = ? WHERE id = ?", (_reseal(frame, old, new, version - 2, flags), nid))
    con.execute("DROP INDEX sessions_key")
    con.execute("ALTER TABLE sessions DROP COLUMN key")
    con.execute("PRAGMA user_version = 4")
    con.execute("COMMIT")
    con.close()


def _events_untimed(con: sqlite3.Connection, only_first: bool = False) -> None:
    """Reseal event frames (of version 1) without FLAG_TIMED, as writers before it
    sealed them."""
    rows = con.execute("SELECT pos, sid, seq, ts_ms, frame FROM events ORDER BY pos").fetchall()
    for pos, sid, seq, ts, frame in rows:
        if only_first and seq != 1:
            continue
        version, flags = frame[0], frame[1]
        assert version == 1, version
        if not flags & codec.FLAG_TIMED:
            continue  # untimed already
        bound = b"E" + struct.pack("<qq", sid, seq)
        frame = _reseal(frame, bound + struct.pack("<q", ts), bound, version, flags & ~codec.FLAG_TIMED)
        con.execute("UPDATE events SET frame = ? WHERE pos = ?", (frame, pos))


def to_version_3(path: str) -> None:
    to_version_4(path)
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


def read_back(path: str, expected: dict[str, Any]) -> None:
    """The store file at ``path`` (rewritten into an older layout), read-only, holds
    what ``expected`` records, as the JSON this script writes says it."""
    copied = path + ".copy"  # (a read-only open may leave -wal and -shm files next to what it reads)
    shutil.copyfile(path, copied)
    with eventlog.open(copied, readonly=True, **expected["open_options"]) as store:
        assert store.sessions() == [s["id"] for s in expected["sessions"]]
        for s in expected["sessions"]:
            for k, state in enumerate(s["folds"]):
                if state is not None:
                    assert json.dumps(to_json(store.fold(s["id"], at=k))) == json.dumps(state), (s["id"], k)
            events = list(store.events(s["id"], since=s["history_start"]))
            assert [[op_to_json(op) for op in e.ops] for e in events] == [e["ops"] for e in s["events"]]
        report = store.verify()
        assert report.ok, report.problems
        assert {k: getattr(report, k) for k in expected["verify"]} == expected["verify"]
    for side in ("", "-wal", "-shm"):
        if os.path.exists(copied + side):
            os.remove(copied + side)


def before_keys_store(
    build: Callable[[str, random.Random], dict[str, Any]], version: int = 4
) -> Callable[[str, random.Random], dict[str, Any]]:
    """``build``, written as the releases before session keys wrote it
    (:func:`before_keys`), made into a file of schema ``version`` (4 or older)."""
    downgrade = {1: to_version_1, 2: to_version_2, 3: to_version_3, 4: to_version_4}[version]

    def built(path: str, rng: random.Random) -> dict[str, Any]:
        with before_keys():
            expected = build(path, rng)
        downgrade(path)
        expected["schema_version"] = version
        for session in expected["sessions"]:
            session["key"] = None  # none before version 5: frames are bound to the row id
            if version < 4:
                session["entries"] = None  # not recorded before version 4
        read_back(path, {**expected, "open_options": from_options(expected["open"])})
        return expected

    return built


def from_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options recorded in tagged JSON, as given to ``eventlog.open``."""
    return {k: base64.b64decode(v["$bytes"]) if type(v) is dict else v for k, v in options.items()}


def build_v4(build: Callable[[str, random.Random], dict[str, Any]]) -> Callable[[str, random.Random], dict[str, Any]]:
    made = before_keys_store(build)

    def built(path: str, rng: random.Random) -> dict[str, Any]:
        expected = made(path, rng)
        expected["about"] = (
            "As the releases before session keys wrote it (schema version 4: no sessions.key; frames of format "
            "versions 1 and 2, bound to the row id; segments without string references). " + expected["about"]
        )
        return expected

    return built


def build_version(version: int) -> Callable[[str, random.Random], dict[str, Any]]:
    made = before_keys_store(build_legacy, version)

    def build(path: str, rng: random.Random) -> dict[str, Any]:
        expected = made(path, rng)
        expected["about"] = (
            f"A schema version {version} file (written by eventlog as the releases before session keys did, then "
            "rewritten into that version's layout, frames bound to the row id): a session with a large value and "
            "a snapshot, and a child. "
            + {
                1: "Refs per session (kind 2), no meta table, no base_seq/deleted_ms; event frames untimed.",
                2: "No meta table (plain BLAKE3 addresses); event frames untimed.",
                3: "No sessions.entries; the first event of each session untimed, the others timed.",
            }[version]
        )
        return expected

    return build


def segment_flags(path: str) -> list[int]:
    """The flags of every segment of every segmented snapshot in the store file at
    ``path`` (read with ``sqlite3`` and :mod:`eventlog.codec`)."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # (closed: no side files made)
    try:
        rows = con.execute("SELECT frame FROM snapshots").fetchall()
    finally:
        con.close()
    found: list[int] = []
    for (frame,) in rows:
        if frame[1] & codec.FLAG_SEGMENTS and not frame[1] & codec.FLAG_SPILL:
            body = codec.Framer().decompress(frame[1], frame[6:], 1 << 20)
            found += [segment[1] for segment in codec.loads(body)[0][1]]
    return found


def build_segmented_now(path: str, rng: random.Random) -> dict[str, Any]:
    expected = build_segmented(path, rng, last=True)
    flags = segment_flags(path)
    assert any(f & FLAG_STRINGREF for f in flags) and any(not f & FLAG_STRINGREF for f in flags), flags
    return expected


def build_segmented_before_keys(path: str, rng: random.Random) -> dict[str, Any]:
    expected = build_segmented(path, rng)
    flags = segment_flags(path)
    assert flags and not any(f & FLAG_STRINGREF for f in flags), flags
    return expected


STORES: dict[str, Callable[[str, random.Random], dict[str, Any]]] = {
    # The current format (schema version 5).
    "plain": build_plain,
    "large_plain": lambda path, rng: build_large(path, rng, None),
    "large_keyed": lambda path, rng: build_large(path, rng, CHUNK_KEY),
    "segmented": build_segmented_now,
    "spilled": build_spilled,
    "tree": build_tree,
    "compacted": build_compacted,
    "copied": build_copied,
    "lists": build_lists,
    "segmented_lists": build_segmented_lists,
    # As the releases before session keys wrote them: the compatibility vectors.
    "v4_plain": build_v4(build_plain),
    "v4_large_plain": build_v4(lambda path, rng: build_large(path, rng, None)),
    "v4_large_keyed": build_v4(lambda path, rng: build_large(path, rng, CHUNK_KEY)),
    "v4_segmented": build_v4(build_segmented_before_keys),
    "v4_spilled": build_v4(build_spilled),
    "v4_tree": build_v4(build_tree),
    "v4_compacted": build_v4(build_compacted),
    "schema_v1": build_version(1),
    "schema_v2": build_version(2),
    "schema_v3": build_version(3),
}


# ----------------------------------------------------------------------------- raw frames


def seal(version: int, flags: int, payload: bytes, binding: bytes) -> bytes:
    """A frame as docs/format.md specifies it (not eventlog's code)."""
    crc = zlib.crc32(binding + bytes((version, flags)) + payload)
    return struct.pack("<BBI", version, flags, crc) + payload


def row_binding(kind: str, sid: int, seq: int, ts: int | None) -> bytes:
    """What a frame of version 1 or 2 binds its CRC to (docs/format.md, "Frame binding")."""
    out = kind.encode() + struct.pack("<qq", sid, seq)
    return out if ts is None else out + struct.pack("<q", ts)


def key_binding(kind: str, key: bytes, seq: int, ts: int | None) -> bytes:
    """What a frame of any other version binds its CRC to."""
    out = kind.encode() + key + struct.pack("<q", seq)
    return out if ts is None else out + struct.pack("<q", ts)


#: A frame vector's row: kind ("E" or "S"), sid, key (None before schema 5), seq, ts.
Row = tuple[str, int, bytes | None, int, int | None]


def covered(frame: bytes, row: Row) -> bytes | None:
    """What a reader at ``row`` computes the CRC of ``frame`` over, before its version
    and flags bytes: the binding its version calls for, with the timestamp when its
    flags have TIMED; ``None`` when it has no version byte or the row lacks what
    the binding needs (a reader refuses the frame before any CRC)."""
    kind, sid, key, seq, ts = row
    if not frame:
        return None
    timed = len(frame) > 1 and bool(frame[1] & codec.FLAG_TIMED)
    if timed and ts is None:
        return None
    if frame[0] in (1, 2):
        return row_binding(kind, sid, seq, ts if timed else None)
    if key is None:
        return None
    return key_binding(kind, key, seq, ts if timed else None)


class Frames:
    """Collects raw frames: their bytes, binding and what they decode to."""

    def __init__(self, out: Path) -> None:
        self.dir = out
        self.index: list[dict[str, Any]] = []

    def add(self, name: str, about: str, frame: bytes, row: Row, expect: Any) -> None:
        (self.dir / f"{name}.frame").write_bytes(frame)
        kind, sid, key, seq, ts = row
        bound = covered(frame, row)
        self.index.append(
            {
                "name": name,
                "about": about,
                "file": f"{name}.frame",
                "binding": {"kind": kind, "sid": sid, "key": None if key is None else key.hex(), "seq": seq, "ts": ts},
                "binding_bytes": None if bound is None else bound.hex(),
                "expect": expect,
            }
        )


def decode(frame: bytes, row: Row) -> dict[str, Any]:
    """What eventlog's codec makes of a frame read at ``row``: its flags (as opened:
    without the timestamp flag) and body (spill pointer or CBOR value), or the error
    class."""
    kind, sid, key, seq, ts = row
    try:
        flags, payload = codec.Framer.open(frame, codec.Place(kind.encode(), sid, key, seq, ts))
        if not flags & codec.FLAG_SPILL:
            payload = codec.Framer().decompress(flags, payload, 1 << 20)
        value, markers = codec.loads(payload)
    except codec.DecodeError as e:
        return {"error": type(e).__name__}
    return {"flags": flags, "markers": markers, "body": to_json(value)}


Found = tuple[Row, bytes]


def store_frames(path: Path, table: str) -> list[Found]:
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # (no side files made)
    try:
        has_key = any(r[1] == "key" for r in con.execute("PRAGMA table_info(sessions)"))
        key = "s.key" if has_key else "NULL"
        if table == "events":
            sql = f"SELECT 'E', t.sid, {key}, t.seq, t.ts_ms, t.frame FROM events t JOIN sessions s USING (sid)"
            sql += " ORDER BY pos"
        else:
            sql = f"SELECT 'S', t.sid, {key}, t.seq, NULL, t.frame FROM snapshots t JOIN sessions s USING (sid)"
        return [((r[0], r[1], r[2], r[3], r[4]), r[5]) for r in con.execute(sql)]
    finally:
        con.close()


def pick(frames: list[Found], test: Callable[[int, int, bytes], bool]) -> Found:
    """The first frame whose (version, flags, payload) pass ``test``."""
    for f in frames:
        if test(f[1][0], f[1][1], f[1][6:]):
            return f
    raise AssertionError("no such frame in the vectors")


def build_frames(stores: Path, out: Path) -> None:
    frames = Frames(out)

    def ok(name: str, about: str, found: Found) -> None:
        row, frame = found
        expect = decode(frame, row)
        assert "error" not in expect, (name, expect)
        frames.add(name, about, frame, row, expect)

    def bad(name: str, about: str, frame: bytes, row: Row, error: str) -> None:
        found = decode(frame, row)
        assert found == {"error": error}, (name, found)
        frames.add(name, about, frame, row, {"error": error})

    def accepted(prefix: str, v: int, generation: str) -> tuple[Found, Found]:
        """The frames of one generation (``""``: the current format, ``"v4_"``: before
        keys) that every reader must accept; ``v`` their one-body version.  Returns
        a raw and a compressed event frame to damage."""
        plain = store_frames(stores / f"{prefix}plain.eventlog", "events")
        large = store_frames(stores / f"{prefix}large_plain.eventlog", "events")
        spilled = store_frames(stores / f"{prefix}spilled.eventlog", "events")
        tree = store_frames(stores / f"{prefix}tree.eventlog", "events")
        snaps = store_frames(stores / f"{prefix}segmented.eventlog", "snapshots")
        small = "schema_v3" if prefix else "compacted"  # (large_plain's snapshot is segmented)
        small_snaps = store_frames(stores / f"{small}.eventlog", "snapshots")
        spilled_snaps = store_frames(stores / f"{prefix}spilled.eventlog", "snapshots")
        at = f"v{v}_"
        raw = pick(plain, lambda ver, f, p: f == codec.FLAG_TIMED and len(p) > 20)
        ok(f"{at}event_raw", f"An event frame, uncompressed (flags: timed), from {prefix}plain.eventlog; {generation}.",
            raw)  # fmt: skip
        packed = pick(plain, lambda ver, f, p: f == codec.FLAG_TIMED | codec.FLAG_ZSTD)
        ok(f"{at}event_zstd", f"An event frame, zstd-compressed (flags: zstd, timed), from {prefix}plain.eventlog.",
            packed)  # fmt: skip
        empty = pick(plain, lambda ver, f, p: p == b"\x80")
        ok(f"{at}event_no_ops", "An event with no operations: the body is an empty CBOR array.", empty)
        refs = pick(large, lambda ver, f, p: f == codec.FLAG_TIMED and b"\xd9\xe8\x6d" in p)
        ok(f"{at}event_refs",
            "An event holding large values as refs (tag 59501) and the entries marker (tag 59502).", refs)  # fmt: skip
        forms = pick(large, lambda ver, f, p: b"\xd9\xe8\x6d\x85" in p or b"\xd9\xe8\x6d\x85" in _unzstd(f, p))
        ok(f"{at}event_base64_forms", "An event with refs of base64 in non-canonical forms (5-field refs).", forms)
        spill = pick(spilled, lambda ver, f, p: bool(f & codec.FLAG_SPILL))
        ok(f"{at}event_spilled",
            f"An event spilled into chunks: the payload is the pointer [flags, length, hashes] (the chunks are in "
            f"{prefix}spilled.eventlog).", spill)  # fmt: skip
        tomb = pick(tree, lambda ver, f, p: p[:2] == b"\x81\x83" and p[2] == 4)
        ok(f"{at}event_tombstone", "A tombstone event: [[4, root, null]].", tomb)
        single = pick(small_snaps, lambda ver, f, p: ver == v and not f & codec.FLAG_SPILL)
        ok(f"{at}snapshot_single", f"A snapshot in one frame (format version {v}): [fields, entries], from "
            f"{small}.eventlog.", single)  # fmt: skip
        manifest = pick(snaps, lambda ver, f, p: ver == v + 1 and (v == 1 or len(set(segment_kinds(f, p))) == 2))
        segments = "some with string references (segment flags 3), the last without (1)" if v == 3 else "flags 1"
        ok(f"v{v + 1}_snapshot_manifest",
            f"A segmented snapshot's manifest (format version {v + 1}, flag segments), from "
            f"{prefix}segmented.eventlog; its segments: {segments}.", manifest)  # fmt: skip
        ok(f"{at}snapshot_spilled", "A one-frame snapshot spilled into chunks.", spilled_snaps[0])
        return raw, packed

    raw1, packed1 = accepted("v4_", 1, "as the releases before session keys wrote it, bound to the row id")
    v2 = store_frames(stores / "schema_v2.eventlog", "events")
    ok("v1_event_untimed", "An event frame from before timestamps were bound (schema_v2.eventlog).", v2[0])
    raw3, _ = accepted("", 3, "bound to the session's key")

    # Damage and newer versions, from a version 1 frame (row-bound) ...
    row, frame = raw1
    kind, sid, key, seq, ts = row
    assert ts is not None and key is None
    flags, payload = frame[1], frame[6:]
    timed = row_binding("E", sid, seq, ts)
    flipped = bytearray(frame)
    flipped[-1] ^= 0x01
    bad("reject_flipped_byte", "v1_event_raw with its last byte flipped.", bytes(flipped), row, "DecodeError")
    bad("reject_other_position", "v1_event_raw read at seq + 1.", frame, (kind, sid, key, seq + 1, ts), "DecodeError")
    bad("reject_other_session", "v1_event_raw read as session sid + 1's.", frame, (kind, sid + 1, key, seq, ts),
        "DecodeError")  # fmt: skip
    bad("reject_as_snapshot", "v1_event_raw read as a snapshot row.", frame, ("S", sid, key, seq, None), "DecodeError")
    bad("reject_other_time", "v1_event_raw read with another timestamp.", frame, (kind, sid, key, seq, ts + 1),
        "DecodeError")  # fmt: skip
    bad("reject_timed_without_time", "A timed frame where the row keeps no timestamp.", frame,
        (kind, sid, key, seq, None), "DecodeError")  # fmt: skip
    for n in (0, 1, 5):
        bad(f"reject_truncated_{n}", f"The first {n} bytes of v1_event_raw.", frame[:n], row, "DecodeError")
    bad("reject_segments_flag_in_version_1", "Flag segments (8) in a version 1 frame, CRC valid.",
        seal(1, flags | 8, payload, timed), row, "DecodeError")  # fmt: skip
    bad("reject_version_2_without_segments", "A version 2 frame without flag segments, CRC valid.",
        seal(2, flags, payload, timed), row, "DecodeError")  # fmt: skip
    bad("reject_unknown_flag", "Flag 16 (unknown), CRC valid.", seal(1, flags | 16, payload, timed), row,
        "DecodeError")  # fmt: skip
    bad("reject_trailing_bytes", "A valid body followed by a byte, CRC valid.",
        seal(1, flags, payload + b"\x00", timed), row, "DecodeError")  # fmt: skip
    bad("reject_foreign_tag", "A body holding CBOR tag 1 (an epoch date), CRC valid.",
        seal(1, flags, bytes.fromhex("81c11a5f000000"), timed), row, "DecodeError")  # fmt: skip
    marker = bytes.fromhex("81 83 03 a1 67") + b"entries" + bytes.fromhex("d9e86e 00 f6")
    bad("reject_marker_not_null", "The entries marker (tag 59502) over 0 instead of null, CRC valid.",
        seal(1, flags, marker, timed), row, "DecodeError")  # fmt: skip
    ref = bytes.fromhex("81 83 00 00 81 d9e86d 85 02 18 30 58 20") + bytes(32) + bytes.fromhex("60 19 0110")
    bad("reject_ref_newer_form", "A ref whose base64 form has flag 0x10 (unknown: a newer release), CRC valid.",
        seal(1, flags, ref, timed), row, "VersionError")  # fmt: skip
    ref = bytes.fromhex("81 83 00 00 81 d9e86d 83 00 01 58 1f") + bytes(31)
    bad("reject_ref_short_hash", "A ref whose hashes are not a multiple of 32 bytes, CRC valid.",
        seal(1, flags, ref, timed), row, "DecodeError")  # fmt: skip
    zrow, zframe = packed1
    zbind = row_binding("E", zrow[1], zrow[3], zrow[4])
    bad("reject_zstd_cut", "v1_event_zstd with its zstd payload cut short, CRC valid.",
        seal(zframe[0], zframe[1], zframe[6:][:-3], zbind), zrow, "DecodeError")  # fmt: skip
    bad("reject_zstd_flag_on_cbor", "A plain CBOR body flagged zstd, CRC valid.",
        seal(1, flags | codec.FLAG_ZSTD, payload, timed), row, "DecodeError")  # fmt: skip

    # ... and from a version 3 frame (key-bound): what the key binding adds.
    row, frame = raw3
    kind, sid, key, seq, ts = row
    assert ts is not None and key is not None
    flags, payload = frame[1], frame[6:]
    keyed = key_binding("E", key, seq, ts)
    other = bytes(b ^ 0xFF for b in key)
    bad("reject_v3_other_key", "v3_event_raw read as the session whose key is its key's complement.", frame,
        (kind, sid, other, seq, ts), "DecodeError")  # fmt: skip
    bad("reject_v3_other_position", "v3_event_raw read at seq + 1.", frame, (kind, sid, key, seq + 1, ts),
        "DecodeError")  # fmt: skip
    ok("v3_event_other_row",
        "v3_event_raw read in another row (sid + 1) of the same session key, as in a copy: accepted.",
        ((kind, sid + 1, key, seq, ts), frame))  # fmt: skip
    bad("reject_v3_without_key", "v3_event_raw read where the session has no key (a row of schema 4).", frame,
        (kind, sid, None, seq, ts), "DecodeError")  # fmt: skip
    bad("reject_v3_bound_to_row_id", "Format version 3 with the CRC over the row-id binding (that of version 1).",
        seal(3, flags, payload, row_binding("E", sid, seq, ts)), row, "DecodeError")  # fmt: skip
    bad("reject_v1_bound_to_key", "Format version 1 with the CRC over the key binding (that of version 3).",
        seal(1, flags, payload, keyed), row, "DecodeError")  # fmt: skip
    bad("reject_segments_flag_in_version_3", "Flag segments (8) in a version 3 frame, CRC valid.",
        seal(3, flags | 8, payload, keyed), row, "DecodeError")  # fmt: skip
    bad("reject_version_4_without_segments", "A version 4 frame without flag segments, CRC valid.",
        seal(4, flags, payload, keyed), row, "DecodeError")  # fmt: skip
    bad("reject_v3_unknown_flag", "Flag 16 (unknown) in a version 3 frame, CRC valid.",
        seal(3, flags | 16, payload, keyed), row, "DecodeError")  # fmt: skip
    bad("reject_version_5", "Format version 5, CRC valid over the key binding: a newer release wrote it.",
        seal(5, flags, payload, keyed), row, "VersionError")  # fmt: skip
    newer = bytearray(seal(5, flags, payload, keyed))
    newer[-1] ^= 0x01
    bad("reject_version_5_damaged", "Format version 5 with a bad CRC: damage, not a newer format.", bytes(newer),
        row, "DecodeError")  # fmt: skip
    bad("reject_version_5_bound_to_row_id",
        "Format version 5 with the CRC over the row-id binding: versions above 4 are checked with the key "
        "binding, so this is damage.", seal(5, flags, payload, row_binding("E", sid, seq, ts)), row,
        "DecodeError")  # fmt: skip
    bad("reject_version_255", "Format version 255, CRC valid over the key binding.",
        seal(255, flags, payload, keyed), row, "VersionError")  # fmt: skip
    bad("reject_version_0", "Format version 0, CRC valid over the key binding: not a version this format has.",
        seal(0, flags, payload, keyed), row, "VersionError")  # fmt: skip
    # Format version 6: the forms of lists at paths (added after the ones above).
    events6 = store_frames(stores / "segmented_lists.eventlog", "events")
    at6 = pick(events6, lambda ver, f, p: ver == 6)
    ok("v6_event_at", "An event holding At operations (kind 5): format version 6, from segmented_lists.eventlog.",
       at6)  # fmt: skip
    snaps6 = store_frames(stores / "segmented_lists.eventlog", "snapshots")
    manifest6 = pick(snaps6, lambda ver, f, p: ver == 6 and bool(f & codec.FLAG_SEGMENTS))
    ok("v6_snapshot_manifest",
       "A segmented snapshot's manifest with lists at paths in segments: [fields, segments, [[path, segments], "
       "...]], the entries marker at each such path (format version 6, flag segments), from "
       "segmented_lists.eventlog.", manifest6)  # fmt: skip
    (kind, sid, key, seq, ts), frame = at6
    assert key is not None
    bad("reject_version_6_bound_to_row_id", "v6_event_at with the CRC over the row-id binding: damage.",
        seal(6, frame[1], frame[6:], row_binding("E", sid, seq, ts)), at6[0], "DecodeError")  # fmt: skip
    written = {"zstd": zstandard.ZSTD_VERSION, "sqlite": sqlite3.sqlite_version}
    text = json.dumps({"written_with": written, "frames": frames.index}, indent=1, ensure_ascii=False)
    (out / "frames.json").write_text(text + "\n", encoding="utf-8")


def segment_kinds(flags: int, payload: bytes) -> list[int]:
    """Whether each segment of a manifest frame's payload has string references."""
    body = codec.Framer().decompress(flags, payload, 1 << 20)
    return [segment[1] & FLAG_STRINGREF for segment in codec.loads(body)[0][1]]


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


#: The compatibility vectors: as the releases before session keys wrote them.
#: The stores written with operations at paths (the others: :func:`before_lists`).
AT_PATHS: tuple[str, ...] = ("lists", "segmented_lists")
#: The stores written with format version 6 (the others: :func:`before_paths`).
PATH_SEGMENTS: tuple[str, ...] = ("segmented_lists",)
BEFORE_KEYS = tuple(name for name in STORES if name.startswith(("v4_", "schema_v")))
#: What the fake clock gives: how many times a writer reads it is not part of the format.
_TIMES = ("created_ms", "updated_ms", "timestamp_ms", "ts")


def untimed(value: Any) -> Any:
    """``value`` (decoded JSON) without the times in it (as tests/contract/test_vectors.py)."""
    if type(value) is dict:
        return {k: untimed(v) for k, v in value.items() if k not in _TIMES}
    if type(value) is list:
        return [untimed(v) for v in value]
    return value


def generate(out: Path, keep: bool = False) -> None:
    """Write every store and frame vector under ``out``.  With ``keep``, the
    compatibility stores already there are kept as they are (the bytes the releases
    before session keys wrote), once what this script makes instead is found to
    record the same expectations (times aside), and the frame vectors are taken
    from them."""
    stores, frames = out / "stores", out / "frames"
    kept: dict[str, tuple[bytes, str]] = {}
    for name in BEFORE_KEYS if keep else ():
        path = stores / f"{name}.eventlog"
        if path.exists():
            kept[name] = (path.read_bytes(), (stores / f"{name}.json").read_text(encoding="utf-8"))
    for d in (stores, frames):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in STORES.items():
            work = os.path.join(tmp, f"{name}.eventlog")
            seed = name.removeprefix("v4_")  # a v4_ store holds the same values as its current twin
            with (
                fixed_clock(random.Random(f"eventlog vectors, session keys: {name}")),  # from CLOCK_START_MS
                nullcontext() if name in AT_PATHS else before_lists(),
                nullcontext() if name in PATH_SEGMENTS else before_paths(),
            ):
                expected = build(work, random.Random(f"eventlog vectors: {seed}"))
            expected = {"name": name, **expected}
            for side in ("-wal", "-shm", "-journal"):
                assert not os.path.exists(work + side), f"{name}: {side} left behind"
            text = json.dumps(expected, indent=1, ensure_ascii=False) + "\n"
            if name in kept:
                data, text = kept[name]
                assert untimed(json.loads(text)) == untimed(expected), (
                    f"{name}: other expectations than the kept file's"
                )
                (stores / f"{name}.eventlog").write_bytes(data)
            else:
                pack(work)
                shutil.copyfile(work, stores / f"{name}.eventlog")
            (stores / f"{name}.json").write_text(text, encoding="utf-8")
    build_frames(stores, frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: tests/vectors)")
    parser.add_argument(
        "--keep-old",
        action="store_true",
        help="keep the compatibility stores (v4_*, schema_v*) already in --out, checked against what would be "
        "written instead",
    )
    args = parser.parse_args(argv)
    generate(args.out, args.keep_old)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
