"""eventlog against the on-disk format's test vectors (tests/vectors/, see its README).

Every committed store must open, read-only and (a copy) read-write, and give back
exactly the values recorded with it: ``load()``, ``fold(at=k)`` for every ``k``,
each event's operations and timestamp, the session bookkeeping, and a clean
``verify()``.  Every raw frame must decode, through :mod:`eventlog.codec`, to the
recorded body or fail with the recorded error.  And the generator, run now, must
still write stores that decode to the committed expectations: a change in what
eventlog writes is noticed here, not by a user whose old store stops reading.

Only the public API is used (``eventlog.open``, the ``Store`` methods, the
``eventlog.codec`` frame functions), and ``sqlite3`` for the one column the API does
not show (``sessions.key``, which frames of versions 3 and 4 are bound to), so these
tests hold across refactors of the storage code; the format itself is specified in
docs/format.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog import codec

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = VECTORS.parent.parent
STORES = sorted(p.stem for p in (VECTORS / "stores").glob("*.eventlog"))
_INDEX = json.loads((VECTORS / "frames" / "frames.json").read_text(encoding="utf-8"))
FRAMES: list[dict[str, Any]] = _INDEX["frames"]
WRITTEN_WITH: dict[str, str] = _INDEX["written_with"]


# ----------------------------------------------------------------------------- the tagged JSON (README.md)


def from_json(value: Any) -> Any:
    """A value from the tagged JSON of tests/vectors/README.md."""
    if type(value) is list:
        return [from_json(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag.startswith("$"):
            if tag == "$map":
                return {k: from_json(v) for k, v in inner.items()}
            if tag == "$bytes":
                return base64.b64decode(inner, validate=True)
            if tag == "$int":
                return int(inner)
            if tag == "$float":
                return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0.0": -0.0}[inner]
            if tag == "$entries":
                assert inner is None
                return eventlog.ENTRIES
            if tag == "$ref":
                return codec.Ref(
                    inner["kind"],
                    inner["length"],
                    bytes.fromhex(inner["hashes"]),
                    inner.get("prefix", ""),
                    inner.get("form", 0),
                )
            raise AssertionError(f"unknown tag {tag}")
    return {k: from_json(v) for k, v in value.items()}


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Strict equality, saying where it fails: types (1, 1.0 and True differ), key
    order, -0.0 against 0.0; NaN equals NaN (it is the value stored)."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} {got!r:.80}, expected {want!r:.80}"
    if type(want) is dict:
        assert list(got) == list(want), f"{where}: keys {list(got)!r:.200}, expected {list(want)!r:.200}"
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif type(want) is list:
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif type(want) is float:
        if math.isnan(want):
            assert math.isnan(got), f"{where}: {got!r}, expected nan"
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want), f"{where}: {got!r}, not {want!r}"
    else:
        assert got == want, f"{where}: {got!r:.200}, expected {want!r:.200}"


def op_wire(op: eventlog.Op) -> list[Any]:
    """An operation as ``[kind, a, b]`` (docs/format.md, "Operations")."""
    if type(op) is eventlog.Insert:
        return [0, op.index, op.entries]
    if type(op) is eventlog.Replace:
        return [1, op.index, op.entry]
    if type(op) is eventlog.Delete:
        return [2, op.index, op.count]
    if type(op) is eventlog.SetFields:
        return [3, op.changed, op.order]
    if type(op) is eventlog.At:
        return [5, list(op.path), op_wire(op.op)]
    assert type(op) is eventlog.Tombstone
    return [4, op.root, None]


def test_the_tagged_json_reads_what_json_cannot_hold() -> None:
    text = '{"$map": {"$bytes": 1}}'
    assert from_json(json.loads(text)) == {"$bytes": 1}
    got = from_json(json.loads('[{"$bytes": "AP8="}, {"$int": "18446744073709551616"}, {"$float": "-0.0"}, 1.0, 1]'))
    assert_same(got, [b"\x00\xff", 2**64, -0.0, 1.0, 1])
    with pytest.raises(AssertionError):
        assert_same([1], [1.0])
    with pytest.raises(AssertionError):
        assert_same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    with pytest.raises(AssertionError):
        assert_same(0.0, -0.0)


# ----------------------------------------------------------------------------- stores


def expectations(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / "stores" / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def open_options(expected: dict[str, Any]) -> dict[str, Any]:
    return from_json(expected["open"])  # type: ignore[no-any-return]


def check_store(store: eventlog.Store, expected: dict[str, Any], where: str) -> None:
    """``store`` holds exactly what ``expected`` records."""
    sessions = expected["sessions"]
    assert store.sessions() == [s["id"] for s in sessions], where
    for s in sessions:
        name = s["id"]
        at = f"{where}: session {name!r}"
        folds = [None if f is None else from_json(f) for f in s["folds"]]
        assert store.seq(name) == s["seq"] == len(folds) - 1, at
        info = store.info(name)
        assert (info.parent_id, info.seq, info.history_start) == (s["parent"], s["seq"], s["history_start"]), at
        assert (info.created_ms, info.updated_ms, info.entries) == (s["created_ms"], s["updated_ms"], s["entries"]), at
        assert store.parent(name) == s["parent"], at
        assert_same(store.load(name), folds[-1], f"{at} load()")
        for k, state in enumerate(folds):
            if state is None:  # compacted away
                with pytest.raises(eventlog.NotFoundError):
                    store.fold(name, at=k)
            else:
                assert_same(store.fold(name, at=k), state, f"{at} fold(at={k})")
        events = list(store.events(name, since=s["history_start"]))
        assert [e.seq for e in events] == [e["seq"] for e in s["events"]], at
        for event, want in zip(events, s["events"], strict=True):
            assert event.session_id == name and event.timestamp_ms == want["timestamp_ms"], at
            assert_same([op_wire(op) for op in event.ops], from_json(want["ops"]), f"{at} event {event.seq}")
    for name in expected["deleted"]:
        assert store.load(name) is None, f"{where}: deleted session {name!r} loads"
        with pytest.raises(eventlog.NotFoundError):
            store.fold(name)
    report = store.verify()
    assert report.ok, f"{where}: {report.problems}"
    counts = {k: getattr(report, k) for k in expected["verify"]}
    assert counts == expected["verify"], where


def stored_keys(path: Path) -> dict[str, bytes | None] | None:
    """``sessions.key`` of each live session in the (closed) store file at ``path``,
    read with ``sqlite3``; ``None`` when the file has no such column (schema 4 and older)."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        if "key" not in [r[1] for r in con.execute("PRAGMA table_info(sessions)")]:
            return None
        return dict(con.execute("SELECT name, key FROM sessions WHERE deleted_ms IS NULL"))
    finally:
        con.close()


def check_keys(path: Path, expected: dict[str, Any]) -> None:
    """The sessions' keys in the file are those recorded (none before schema 5)."""
    keys = stored_keys(path)
    if expected["schema_version"] < 5:
        assert keys is None, path
        assert all(s["key"] is None for s in expected["sessions"])
        return
    assert keys == {s["id"]: bytes.fromhex(s["key"]) for s in expected["sessions"]}, path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", STORES)
def test_a_vector_store_reads_as_recorded(name: str, tmp_path: Path) -> None:
    """Read-only (the file unchanged, an older schema not upgraded), then a copy
    opened for writing (an older schema upgraded), then written to."""
    expected = expectations(name)
    options = open_options(expected)
    source = VECTORS / "stores" / f"{name}.eventlog"
    # Copies: a read-only open may leave -wal and -shm files next to what it reads.
    readonly, writable = tmp_path / "ro" / source.name, tmp_path / "rw" / source.name
    for path in (readonly, writable):
        path.parent.mkdir()
        shutil.copyfile(source, path)
    before = digest(readonly)
    check_keys(readonly, expected)
    with eventlog.open(readonly, readonly=True, **options) as store:
        check_store(store, expected, f"{name} (read-only)")
    assert digest(readonly) == before
    with eventlog.open(writable, **options) as store:
        check_store(store, expected, f"{name} (read-write)")
        live = [s["id"] for s in expected["sessions"]]
        if live:  # it takes new writes, on top of what it held
            state = from_json(expected["sessions"][0]["folds"][-1])
            seq = store.save(live[0], {**state, "written": "after"})
            assert_same(store.fold(live[0], at=seq - 1), state)
        assert store.verify().ok
    with eventlog.open(writable, readonly=True, **options) as store:
        assert store.stats()["sessions"]["count"] == len(live)
    keys = stored_keys(writable)  # upgraded to schema 5: every session has a key, the recorded one if any
    assert keys is not None and set(keys) == set(live)
    for s in expected["sessions"]:
        assert keys[s["id"]] == (bytes.fromhex(s["key"]) if s["key"] else keys[s["id"]]) and len(keys[s["id"]]) == 16


def test_every_kind_of_store_has_a_vector() -> None:
    kinds = {"plain", "large_plain", "large_keyed", "segmented", "spilled", "tree", "compacted"}
    assert set(STORES) >= kinds | {"copied", "schema_v1", "schema_v2", "schema_v3"}
    assert set(STORES) >= {f"v4_{kind}" for kind in kinds}  # each as the releases before keys wrote it
    versions = {name: expectations(name)["schema_version"] for name in STORES}
    assert set(versions.values()) == {1, 2, 3, 4, 5}
    assert all(versions[kind] == 5 and versions[f"v4_{kind}"] == 4 for kind in kinds), versions


def test_a_keyed_vector_needs_its_key(tmp_path: Path) -> None:
    path = tmp_path / "keyed.eventlog"
    shutil.copyfile(VECTORS / "stores" / "large_keyed.eventlog", path)
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(path, readonly=True)
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(path, readonly=True, chunk_key=bytes(32))
    plain = tmp_path / "plain.eventlog"
    shutil.copyfile(VECTORS / "stores" / "large_plain.eventlog", plain)
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(plain, readonly=True, chunk_key=bytes(range(32)))


def test_the_directory_stays_small() -> None:
    total = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert total < 1_500_000, total  # two generations of stores: the current format and the one before keys


# ----------------------------------------------------------------------------- raw frames


def place(binding: dict[str, Any]) -> codec.Place:
    """The row a frame vector is read at."""
    key = None if binding["key"] is None else bytes.fromhex(binding["key"])
    return codec.Place(binding["kind"].encode(), binding["sid"], key, binding["seq"], binding["ts"])


def covered(frame: bytes, binding: dict[str, Any]) -> bytes | None:
    """What the CRC of ``frame`` read at ``binding`` covers before its version and
    flags (docs/format.md, "Frame binding"), built here from the spec: kind, the
    row id (versions 1 and 2) or the session key (any other version), seq, and the
    timestamp when the flags have TIMED; ``None`` when there is no version byte or
    the row lacks what the binding needs."""
    if not frame:
        return None
    timed = len(frame) > 1 and frame[1] & codec.FLAG_TIMED
    if timed and binding["ts"] is None:
        return None
    out = binding["kind"].encode()
    if frame[0] in (1, 2):
        out += struct.pack("<q", binding["sid"])
    elif binding["key"] is None:
        return None
    else:
        out += bytes.fromhex(binding["key"])
    out += struct.pack("<q", binding["seq"])
    return out + struct.pack("<q", binding["ts"]) if timed else out


def decode_frame(frame: bytes, binding: dict[str, Any]) -> tuple[int, Any, int]:
    """A frame as eventlog's codec opens it at its row: its flags (without the
    timestamp flag), its body (for a spilled frame, the pointer in its payload), and
    the number of entries markers in it.  Raises what the codec raises."""
    flags, payload = codec.Framer.open(frame, place(binding))
    if not flags & codec.FLAG_SPILL:
        payload = codec.Framer().decompress(flags, payload, 1 << 20)
    value, markers = codec.loads(payload)
    return flags, value, markers


@pytest.mark.parametrize("vector", FRAMES, ids=[f["name"] for f in FRAMES])
def test_a_vector_frame_decodes_as_recorded(vector: dict[str, Any]) -> None:
    frame = (VECTORS / "frames" / vector["file"]).read_bytes()
    binding = vector["binding"]
    expect = vector["expect"]
    bound = covered(frame, binding)
    assert vector["binding_bytes"] == (None if bound is None else bound.hex())
    if bound is not None:  # eventlog's binding is the spec's
        timed = bool(frame[1] & codec.FLAG_TIMED) if len(frame) > 1 else False
        assert place(binding).binding(frame[0] not in (1, 2), timed) == bound
    if "error" in expect:
        error = {"DecodeError": codec.DecodeError, "VersionError": codec.VersionError}[expect["error"]]
        with pytest.raises(codec.DecodeError) as caught:
            decode_frame(frame, binding)
        assert type(caught.value) is error, caught.value  # damage is not a newer version, nor the reverse
        return
    assert bound is not None
    flags, value, markers = decode_frame(frame, binding)
    assert (flags, markers) == (expect["flags"], expect["markers"])
    assert_same(value, from_json(expect["body"]), vector["name"])


def test_every_kind_of_frame_has_a_vector() -> None:
    names = {f["name"] for f in FRAMES}
    for v in (1, 3):  # bound to the row id, and to the session key
        kinds = {"event_raw", "event_zstd", "event_spilled", "event_tombstone", "snapshot_single", "snapshot_spilled"}
        assert {f"v{v}_{kind}" for kind in kinds} | {f"v{v + 1}_snapshot_manifest"} <= names
    assert "v1_event_untimed" in names
    assert {"v6_event_at", "v6_snapshot_manifest"} <= names  # the forms of lists at paths
    versions = {f["name"]: (VECTORS / "frames" / f["file"]).read_bytes()[:1] for f in FRAMES}
    accepted = {versions[f["name"]][0] for f in FRAMES if "error" not in f["expect"]}
    assert accepted == {1, 2, 3, 4, 6}
    newer = {
        versions[f["name"]][0]
        for f in FRAMES
        if f["expect"].get("error") == "VersionError" and f["name"].startswith("reject_version")
    }
    assert 5 in newer
    errors = {f["expect"].get("error") for f in FRAMES}
    assert errors == {None, "DecodeError", "VersionError"}


def test_the_manifest_vector_has_segments_of_both_kinds() -> None:
    """The current format's manifest names segments with string references (flag 2)
    and without (the small tail): a reader meets both in one snapshot."""
    vector = next(f for f in FRAMES if f["name"] == "v4_snapshot_manifest")
    segments = from_json(vector["expect"]["body"])[1]
    flags = [segment[1] for segment in segments]
    assert flags[-1] & 2 == 0 and all(f & 2 for f in flags[:-1]) and len(flags) > 1, flags


def test_the_version_6_vectors_hold_the_forms_of_lists_at_paths() -> None:
    """The version 6 event holds an At (kind 5); the version 6 manifest has a third
    element naming lists at paths, with the entries marker at each path."""
    event = next(f for f in FRAMES if f["name"] == "v6_event_at")
    assert any(op[0] == 5 for op in from_json(event["expect"]["body"]))
    manifest = next(f for f in FRAMES if f["name"] == "v6_snapshot_manifest")
    fields, _, lists = from_json(manifest["expect"]["body"])
    assert lists and manifest["expect"]["markers"] == len(lists) + (1 if "entries" in fields else 0)
    for path, segments in lists:
        value = fields
        for k in path:
            value = value[k]
        assert value is codec.ENTRIES and segments


# ----------------------------------------------------------------------------- drift


#: What the generator's fake clock gives: how many times a writer reads the clock is
#: not part of the format (each call advances it).
_TIMES = ("created_ms", "updated_ms", "timestamp_ms", "ts")


def untimed(value: Any) -> Any:
    """``value`` (decoded JSON) without the times in it."""
    if type(value) is dict:
        return {k: untimed(v) for k, v in value.items() if k not in _TIMES}
    if type(value) is list:
        return [untimed(v) for v in value]
    return value


def test_the_generator_still_writes_what_the_vectors_expect(tmp_path: Path) -> None:
    """tools/make_vectors.py, run now, writes stores and frames that decode to the
    committed expectations (not necessarily the same bytes: SQLite and zstd may
    lay them out otherwise, and times depend on how often the writer reads the
    clock).  Fails when what eventlog writes has drifted from
    what the vectors record: a format change, to be made on purpose (see the
    generator's docstring)."""
    out = tmp_path / "vectors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_vectors.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    made = sorted(p.stem for p in (out / "stores").glob("*.eventlog"))
    assert made == STORES
    for name in STORES:
        fresh = json.loads((out / "stores" / f"{name}.json").read_text(encoding="utf-8"))
        assert untimed(fresh) == untimed(expectations(name)), f"{name}: the generator now records other expectations"
        with eventlog.open(out / "stores" / f"{name}.eventlog", **open_options(fresh)) as store:
            check_store(store, fresh, f"{name} (written now)")
    fresh = json.loads((out / "frames" / "frames.json").read_text(encoding="utf-8"))
    assert [f["name"] for f in fresh["frames"]] == [f["name"] for f in FRAMES]
    # Compressed bytes (and so the hashes of a manifest's segments) are zstd's own:
    # the same only from the same zstd.
    exact = fresh["written_with"]["zstd"] == WRITTEN_WITH["zstd"]
    for new, old in zip(fresh["frames"], FRAMES, strict=True):
        assert untimed(new["binding"]) == untimed(old["binding"]), new["name"]
        if exact:
            assert new["expect"] == old["expect"], new["name"]
        else:
            assert new["expect"].get("error") == old["expect"].get("error"), new["name"]
            assert new["expect"].get("flags") == old["expect"].get("flags"), new["name"]


def test_bytes_after_the_zstd_frame_of_a_frame_payload_are_refused() -> None:
    """Regression: Framer.decompress read the first zstd frame of an event or snapshot
    payload and ignored what followed; the payload is exactly one zstd frame."""
    vector = next(f for f in FRAMES if f["name"] == "v3_event_zstd")
    frame = (VECTORS / "frames" / vector["file"]).read_bytes()
    bound = covered(frame, vector["binding"])
    assert bound is not None
    resealed = codec.Framer.seal(frame[1], frame[6:] + frame[6:], bound, keyed=True)  # a second frame, CRC valid
    with pytest.raises(codec.DecodeError):
        decode_frame(resealed, vector["binding"])


def test_shared_values_in_a_string_referencing_segment_are_refused() -> None:
    """The same bytes get the same answer with and without the C extension: a
    string-referencing segment body ([28(["a"]), 29(0)]: a value shared, then
    referred to) is damage, as the spec says."""
    body = bytes.fromhex("82d81c816161d81d00")
    with pytest.raises(codec.DecodeError):
        codec.loads(body, stringref=True)
