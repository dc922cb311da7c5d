"""Portable sessions: frames bound to a stable session key (format versions 3 and
4, schema version 5), files from before keys, and copying sessions between stores
with their whole history (``Store.copy_to``, ``eventlog copy``)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import codec
from eventlog.backend import (
    KEY_BYTES,
    CopiedEvent,
    CopiedSnapshot,
    KeyInUse,
    NewEvent,
    WholeSession,
)
from eventlog.backends.memory import MemoryBackend
from eventlog.backends.sqlite import SQLiteBackend
from eventlog.backends.sqlite.schema import SCHEMA_VERSION
from eventlog.cli import main

from ..helpers import to_version_4

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
BIG = "data:image/png;base64," + "QUJD" * 3000  # a large value: chunks
TEXT = "lorem ipsum " * 400  # large, as UTF-8


def entry(i: int, extra: Any = None) -> dict[str, Any]:
    e: dict[str, Any] = {"id": str(i), "role": "user" if i % 2 else "assistant", "text": f"entry {i}"}
    if extra is not None:
        e["extra"] = extra
    return e


def fill(store: eventlog.Store) -> None:
    """A root session (large values, edits, a rewind), a child and a grandchild."""
    entries = [entry(0, BIG)]
    for i in range(1, 7):
        entries.append(entry(i, TEXT if i == 3 else None))
        store.save("root", {"title": f"t{i}", "entries": entries})
    entries[2] = entry(2, "changed")
    store.save("root", {"title": "edited", "entries": entries})
    store.save("root", {"title": "rewound", "entries": entries[:3]})
    store.append("child", [entry(10, BIG)], parent_id="root")
    store.append("child", [entry(11)])
    store.save("grandchild", {"entries": [entry(20)]}, parent_id="child")
    store.save("other", {"note": "no entries list", "n": 1})


def user_version(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def keys(path: str) -> dict[str, bytes | None]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT name, key FROM sessions WHERE deleted_ms IS NULL").fetchall())
    finally:
        con.close()


def frame_versions(path: str) -> set[int]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT frame FROM events UNION ALL SELECT frame FROM snapshots").fetchall()
        return {r[0][0] for r in rows}
    finally:
        con.close()


def same_history(a: eventlog.Store, b: eventlog.Store, name: str) -> None:
    """``fold(at=k)`` agrees for every position ``a`` can fold, and so do the
    events (but for their global position) and the bookkeeping."""
    ia, ib = a.info(name), b.info(name)
    assert (ia.parent_id, ia.seq, ia.created_ms, ia.updated_ms, ia.history_start, ia.entries) == (
        ib.parent_id, ib.seq, ib.created_ms, ib.updated_ms, ib.history_start, ib.entries
    )  # fmt: skip
    for k in range(ia.history_start, ia.seq + 1):
        assert a.fold(name, at=k) == b.fold(name, at=k), k
    if ia.history_start > 1:  # (at=0 is {} in any case)
        with pytest.raises(eventlog.NotFoundError):
            b.fold(name, at=ia.history_start - 1)
    ea = [(e.seq, e.timestamp_ms, e.ops) for e in a.events(name, since=ia.history_start)]
    eb = [(e.seq, e.timestamp_ms, e.ops) for e in b.events(name, since=ib.history_start)]
    assert ea == eb
    assert a.load(name) == b.load(name)


# ----------------------------------------------------------------------------- frames bound to the key


def test_new_frames_are_bound_to_the_session_key(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=3) as store:
        fill(store)
    assert frame_versions(db_path) <= {codec.FRAME_VERSION_KEYED, codec.FRAME_VERSION_KEYED_SEGMENTS}
    found = keys(db_path)
    assert all(type(k) is bytes and len(k) == KEY_BYTES for k in found.values())
    assert len(set(found.values())) == len(found)
    con = sqlite3.connect(db_path)
    sid, key, ts, frame = con.execute(
        "SELECT s.sid, s.key, e.ts_ms, e.frame FROM events e JOIN sessions s USING (sid) WHERE e.seq = 1 "
        "AND s.name = 'root'"
    ).fetchone()
    con.close()
    assert codec.Framer.open(frame, codec.Place(b"E", sid, key, 1, ts))  # the key, not the row id
    with pytest.raises(codec.DecodeError, match="checksum"):
        codec.Framer.open(frame, codec.Place(b"E", sid, os.urandom(KEY_BYTES), 1, ts))
    with pytest.raises(codec.DecodeError, match="checksum"):
        codec.Framer.open(frame, codec.Place(b"E", sid, key, 2, ts))


def test_a_frame_moved_to_another_session_is_damage(db_path: str) -> None:
    with eventlog.open(db_path) as store:
        store.save("a", {"entries": [entry(1)]})
        store.save("b", {"entries": [entry(2)]})
    con = sqlite3.connect(db_path)
    con.execute("UPDATE events SET frame = (SELECT frame FROM events e JOIN sessions s USING (sid) WHERE s.name = 'a')"
                " WHERE sid = (SELECT sid FROM sessions WHERE name = 'b')")  # fmt: skip
    con.commit()
    con.close()
    with eventlog.open(db_path) as store, pytest.raises(eventlog.CorruptionError, match="checksum") as err:
        store.load("b")
    assert (err.value.session_id, err.value.seq) == ("b", 1)


def test_a_row_bound_frame_of_an_unknown_version_is_damage_not_newer(db_path: str) -> None:
    """Versions after 4 are bound to the key: one bound to the row id is damage."""
    with eventlog.open(db_path) as store:
        store.save("s", {"a": 1})
    con = sqlite3.connect(db_path)
    sid, frame, ts = con.execute("SELECT sid, frame, ts_ms FROM events").fetchone()
    flags, payload = frame[1], frame[6:]
    import zlib

    crc = zlib.crc32(payload, zlib.crc32(codec.binding(b"E", sid, 1, ts) + bytes([9, flags])))
    con.execute("UPDATE events SET frame = ?", (bytes([9, flags]) + struct.pack("<I", crc) + payload,))
    con.commit()
    con.close()
    with eventlog.open(db_path) as store, pytest.raises(eventlog.CorruptionError, match="checksum"):
        store.load("s")


# ----------------------------------------------------------------------------- files from before keys


def test_a_version_4_store_reads_read_only_then_migrates_and_keeps_reading(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=3) as store:
        fill(store)
        expected = {n: [store.fold(n, at=k) for k in range(1, store.seq(n) + 1)] for n in store.sessions()}
    to_version_4(db_path)
    assert user_version(db_path) == 4
    assert frame_versions(db_path) <= {codec.FRAME_VERSION, codec.FRAME_VERSION_SEGMENTS}
    with eventlog.open(db_path, readonly=True) as store:  # through the read shim: no keys
        for name, folds in expected.items():
            assert [store.fold(name, at=k) for k in range(1, len(folds) + 1)] == folds
        assert store.verify().ok
    assert user_version(db_path) == 4
    with eventlog.open(db_path) as store:  # a writer migrates it; old frames still read
        assert user_version(db_path) == SCHEMA_VERSION
        found = keys(db_path)
        assert all(type(k) is bytes and len(k) == KEY_BYTES for k in found.values())
        assert len(set(found.values())) == len(found)
        for name, folds in expected.items():
            assert [store.fold(name, at=k) for k in range(1, len(folds) + 1)] == folds
        store.save("root", {"title": "after", "entries": [entry(0, BIG)]})  # a key-bound frame after row-bound ones
        assert store.fold("root", at=len(expected["root"])) == expected["root"][-1]
        store.delete("child")
        assert store.verify().ok
        store.compact(retain=2)
        assert store.load("root") == {"title": "after", "entries": [entry(0, BIG)]}
        assert store.verify().ok
    versions = frame_versions(db_path)
    assert codec.FRAME_VERSION_KEYED in versions


def test_an_old_session_keeps_the_key_the_migration_gave_it(db_path: str) -> None:
    with eventlog.open(db_path) as store:
        store.save("s", {"entries": [entry(1)]})
    to_version_4(db_path)
    with eventlog.open(db_path) as store:
        first = keys(db_path)["s"]
        store.save("s", {"entries": [entry(1), entry(2)]})
        store.save("s", {"entries": [entry(1), entry(2), entry(3)]})
        assert keys(db_path)["s"] == first
        assert store.fold("s", at=1) == {"entries": [entry(1)]}


# ----------------------------------------------------------------------------- copy_to


@pytest.fixture
def src(tmp_path: Path) -> Any:
    with eventlog.open(str(tmp_path / "src.db"), snapshot_every=3, large_value_bytes=1024, chunk_bytes=4096) as s:
        fill(s)
        yield s


def test_copy_keeps_every_session_with_its_history_and_key(src: eventlog.Store, tmp_path: Path) -> None:
    path = str(tmp_path / "dst.db")
    with eventlog.open(path) as dst:
        assert src.copy_to(dst) == ["root", "child", "grandchild", "other"]
        for name in src.sessions():
            same_history(src, dst, name)
        assert dst.children("root") == ["child"] and dst.tree("root") == ["child", "grandchild"]
        assert dst.verify().ok
    assert keys(path) == keys(str(tmp_path / "src.db"))
    assert frame_versions(path) <= {codec.FRAME_VERSION_KEYED, codec.FRAME_VERSION_KEYED_SEGMENTS}


@pytest.mark.parametrize("dst_key", [None, KEY_A, KEY_B], ids=["dst-plain", "dst-key-a", "dst-key-b"])
@pytest.mark.parametrize("src_key", [None, KEY_A], ids=["src-plain", "src-key-a"])
def test_copy_between_stores_with_other_chunk_keys_readdresses_chunks(
    tmp_path: Path, src_key: bytes | None, dst_key: bytes | None
) -> None:
    with eventlog.open(str(tmp_path / "a.db"), chunk_key=src_key, snapshot_every=2) as a:
        fill(a)
        with eventlog.open(str(tmp_path / "b.db"), chunk_key=dst_key) as b:
            a.copy_to(b)
            for name in a.sessions():
                same_history(a, b, name)
            report = b.verify()
            assert report.ok, report.problems
            assert b.stats()["chunk_addresses"] == ("blake3" if dst_key is None else "blake3-keyed")


def test_a_compacted_history_copies_from_its_start(src: eventlog.Store, tmp_path: Path) -> None:
    src.compact(retain=3)
    assert src.info("root").history_start > 0
    with eventlog.open(str(tmp_path / "dst.db")) as dst:
        src.copy_to(dst)
        for name in src.sessions():
            same_history(src, dst, name)
        assert dst.verify().ok
        dst.save("root", {"title": "on", "entries": []})  # the copy goes on as any session
        assert dst.fold("root", at=src.seq("root")) == src.load("root")


def test_a_compacted_history_with_nothing_after_its_start_copies(tmp_path: Path) -> None:
    with eventlog.open(str(tmp_path / "a.db")) as a, eventlog.open("memory:") as b:
        a.save("s", {"entries": [entry(1, BIG)]})
        a.save("s", {"entries": [entry(1, BIG), entry(2)]})
        a.compact(retain=0)
        assert a.info("s").history_start == 2
        a.copy_to(b)
        same_history(a, b, "s")


def test_a_compacted_history_of_lists_at_paths_copies_exactly(tmp_path: Path) -> None:
    """Regression: the events after a compacted history's start were applied (to
    prove they fold) over the start's own nested lists, so the start written to the
    copy already held the messages of later events."""
    with eventlog.open(str(tmp_path / "a.db")) as a, eventlog.open("memory:") as b:
        data: dict[str, Any] = {"state": {"messages": [entry(0)]}, "messages": [entry(1)]}
        for i in range(2, 8):
            data["state"]["messages"].append(entry(i))
            data["messages"].append(entry(100 + i))
            a.save("s", data)
            if i == 4:
                a.snapshot("s")
                a.compact(retain=0)
        assert a.info("s").history_start == 3
        a.copy_to(b)
        same_history(a, b, "s")
        assert b.load("s") == data


def test_copy_to_memory_and_back(src: eventlog.Store, tmp_path: Path) -> None:
    name = f"memory:{uuid.uuid4().hex}"
    with eventlog.open(name, chunk_key=KEY_B) as mem, eventlog.open(str(tmp_path / "back.db")) as back:
        src.copy_to(mem)
        mem.copy_to(back)
        for session in src.sessions():
            same_history(src, mem, session)
            same_history(src, back, session)
        assert back.verify().ok and mem.verify().ok
    assert keys(str(tmp_path / "back.db")) == keys(src._backend.path)  # type: ignore[attr-defined]


def test_a_named_session_brings_its_tree_unless_told(src: eventlog.Store) -> None:
    with eventlog.open("memory:") as dst:
        assert src.copy_to(dst, ["root"]) == ["root", "child", "grandchild"]
    with eventlog.open("memory:") as dst:
        assert src.copy_to(dst, ["root"], tree=False) == ["root"]
        assert dst.sessions() == ["root"] and dst.children("root") == []
        assert src.copy_to(dst, ["child"]) == ["child", "grandchild"]  # its parent is there now
        assert dst.children("root") == ["child"] and dst.parent("grandchild") == "child"


def test_a_parent_neither_copied_nor_there_is_refused(src: eventlog.Store) -> None:
    with eventlog.open("memory:") as dst:
        with pytest.raises(eventlog.InvalidValueError, match=r"'child'.*copy it too") as err:
            src.copy_to(dst, ["grandchild"], tree=False)
        assert err.value.session_id == "grandchild"
        with pytest.raises(eventlog.InvalidValueError, match=r"'root'.*copy it too"):
            src.copy_to(dst, ["child"])
        assert dst.sessions() == []
        src.save("orphan", {"x": 1}, parent_id="gone")  # a parent not live in the source: the link is copied
        assert src.copy_to(dst, ["orphan"]) == ["orphan"] and dst.parent("orphan") == "gone"


def test_a_session_already_there_is_refused_and_nothing_written(src: eventlog.Store) -> None:
    with eventlog.open("memory:") as dst:
        dst.save("child", {"mine": True})
        with pytest.raises(eventlog.ConflictError, match="'child'") as err:
            src.copy_to(dst)
        assert err.value.session_id == "child"
        assert dst.sessions() == ["child"] and dst.load("child") == {"mine": True}
        with pytest.raises(eventlog.NotFoundError):
            src.copy_to(dst, ["nope"])


def test_a_deleted_copy_not_yet_compacted_gets_a_new_key(src: eventlog.Store, tmp_path: Path) -> None:
    path = str(tmp_path / "dst.db")
    with eventlog.open(path) as dst:
        src.copy_to(dst, ["other"])
        dst.delete("other")
        src.copy_to(dst, ["other"])
        same_history(src, dst, "other")
        assert keys(path)["other"] != keys(src._backend.path)["other"]  # type: ignore[attr-defined]
        dst.compact()
        assert dst.verify().ok


def test_copy_of_a_damaged_session_names_it_and_leaves_it_out(tmp_path: Path) -> None:
    path = str(tmp_path / "src.db")
    with eventlog.open(path) as s:
        fill(s)
    con = sqlite3.connect(path)
    (frame,) = con.execute("SELECT e.frame FROM events e JOIN sessions s USING (sid) WHERE s.name = 'child' "
                           "AND e.seq = 2").fetchone()  # fmt: skip
    bad = bytearray(frame)
    bad[-1] ^= 0x40
    con.execute("UPDATE events SET frame = ? WHERE frame = ?", (bytes(bad), frame))
    con.commit()
    con.close()
    with eventlog.open(path, readonly=True) as s, eventlog.open(str(tmp_path / "dst.db")) as dst:
        with pytest.raises(eventlog.CorruptionError) as err:
            s.copy_to(dst)
        assert (err.value.session_id, err.value.seq) == ("child", 2)
        assert dst.sessions() == ["root"]  # copied before it, whole; child is not there at all
        assert dst.verify().ok


def test_copy_from_a_read_only_version_4_store(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with eventlog.open(path, snapshot_every=3) as s:
        fill(s)
        s.compact(retain=4)
    to_version_4(path)
    before = Path(path).read_bytes()
    with eventlog.open(path, readonly=True) as old, eventlog.open(str(tmp_path / "new.db")) as new:
        old.copy_to(new)
        for name in old.sessions():
            same_history(old, new, name)
    assert Path(path).read_bytes() == before and user_version(path) == 4


def test_copy_arguments_are_checked(src: eventlog.Store) -> None:
    with eventlog.open("memory:") as dst:
        for bad in ("root", [1], [""]):
            with pytest.raises(eventlog.InvalidValueError):
                src.copy_to(dst, bad)  # type: ignore[arg-type]
        with pytest.raises(eventlog.InvalidValueError):
            src.copy_to(dst, tree=1)  # type: ignore[arg-type]
        with pytest.raises(eventlog.InvalidValueError):
            src.copy_to(src)
        with pytest.raises(eventlog.InvalidValueError):
            src.copy_to("memory:")  # type: ignore[arg-type]
    with eventlog.open("memory:x-ro-target") as made, eventlog.open("memory:x-ro-target", readonly=True) as ro:
        with pytest.raises(eventlog.ReadOnlyError):
            src.copy_to(ro)
        assert made.sessions() == []


# ----------------------------------------------------------------------------- the property


EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("edit"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("cut"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("field"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("child"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("delete"), st.integers(0, 2), st.booleans()),
    ),
    min_size=1,
    max_size=14,
)


def _play(store: eventlog.Store, edits: list[tuple[str, int, bool]]) -> None:
    entries: list[Any] = []
    fields: dict[str, Any] = {}
    n = 0
    for what, arg, large in edits:
        value: Any = (BIG if arg % 2 else TEXT + str(n)) if large else n
        if what == "append":
            new = [entry(n + i, value) for i in range(arg)]
            n += arg
            entries += new
            store.append("s", new)
            continue
        if what == "edit" and entries:
            entries[arg % len(entries)] = entry(n, value)
        elif what == "cut":
            del entries[arg % (len(entries) + 1) :]
        elif what == "field":
            fields[f"f{arg}"] = value
        elif what == "child":
            store.save(f"c{arg}", {"entries": [entry(arg, value)]}, parent_id="s")
            continue
        elif what == "delete":
            store.delete(f"c{arg}")
            continue
        n += 1
        store.save("s", {**fields, "entries": list(entries)})


@settings(max_examples=25)
@given(edits=EDITS, retain=st.one_of(st.none(), st.integers(0, 4)), src_key=st.booleans(), dst_key=st.booleans())
def test_every_fold_agrees_after_a_copy(
    edits: list[tuple[str, int, bool]], retain: int | None, src_key: bool, dst_key: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        opts: dict[str, Any] = {"snapshot_every": 2, "large_value_bytes": 512, "chunk_bytes": 2048}
        with eventlog.open(os.path.join(tmp, "a.db"), chunk_key=KEY_A if src_key else None, **opts) as a:
            _play(a, [("append", 1, False), *edits])
            if retain is not None:
                a.compact(retain=retain)
            targets = [
                eventlog.open(os.path.join(tmp, "b.db"), chunk_key=KEY_B if dst_key else None),
                eventlog.open(f"memory:{uuid.uuid4().hex}", chunk_key=KEY_B if dst_key else None),
            ]
            try:
                for b in targets:
                    assert a.copy_to(b) == a.sessions()
                    for name in a.sessions():
                        same_history(a, b, name)
                        assert b.children(name) == a.children(name)
                with eventlog.open(os.path.join(tmp, "c.db"), **opts) as c:  # and back from memory
                    targets[1].copy_to(c)
                    for name in a.sessions():
                        same_history(a, c, name)
                    assert c.verify().ok
            finally:
                for b in targets:
                    b.close()


# ----------------------------------------------------------------------------- the backends


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    b: Any = (
        SQLiteBackend(str(tmp_path / "b.db"), max_cell_bytes=2_000_000)
        if request.param == "sqlite"
        else MemoryBackend(max_cell_bytes=2_000_000)
    )
    yield b
    b.close()


def test_put_session_is_all_or_nothing_and_keeps_keys_unique(backend: Any) -> None:
    key, other = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    whole = WholeSession("s", key, None, 5, 9, 2, 0, 1,
                         (CopiedEvent(1, 5, b"one", 3), CopiedEvent(2, 9, b"two", 4)), (CopiedSnapshot(1, b"snap", 7),))
    head = backend.put_session(whole)
    assert (head.name, head.key, head.seq) == ("s", key, 2)
    assert (head.snap_seq, head.snap_bytes, head.snap_bytes_since) == (1, 7, 4)
    assert backend.head("s") == head
    assert [(e.seq, e.ts_ms, e.frame) for e in backend.events(head.sid, 0)] == [(1, 5, b"one"), (2, 9, b"two")]
    with pytest.raises(eventlog.ConflictError):
        backend.put_session(whole)  # the name is live
    with pytest.raises(KeyInUse):
        backend.put_session(WholeSession("t", key, None, 1, 1, 1, 0, None, (CopiedEvent(1, 1, b"x", 1),)))
    with pytest.raises(KeyInUse):
        backend.append([NewEvent("t", None, 1, 1, b"x", 1, key=key)])
    from eventlog.backend import MissingChunks

    with pytest.raises(MissingChunks):
        backend.put_session(WholeSession("t", other, None, 1, 1, 1, 0, None,
                                         (CopiedEvent(1, 1, b"x", 1, frozenset({b"\1" * 32})),)))  # fmt: skip
    assert backend.head("t") is None
    [made] = backend.append([NewEvent("t", None, 1, 1, b"x", 1, key=other)])
    assert made.key == other and backend.head("t").key == other


def test_whole_sessions_are_checked() -> None:
    key = os.urandom(KEY_BYTES)
    ev = (CopiedEvent(1, 1, b"x", 1),)
    with pytest.raises(eventlog.InvalidValueError):
        WholeSession("s", b"short", None, 1, 1, 1, 0, None, ev)
    with pytest.raises(eventlog.InvalidValueError):
        WholeSession("s", key, None, 1, 1, 2, 0, None, ev)  # event 2 missing
    with pytest.raises(eventlog.InvalidValueError):
        WholeSession("s", key, None, 1, 1, 2, 1, None, (CopiedEvent(2, 1, b"x", 1),))  # no snapshot at the base
    with pytest.raises(eventlog.InvalidValueError):
        NewEvent("s", None, 1, 1, b"x", 1)  # a new session without a key
    with pytest.raises(eventlog.InvalidValueError):
        NewEvent("s", 3, 2, 1, b"x", 1, key=key)  # a key for a session that exists


# ----------------------------------------------------------------------------- the command


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1"}, catch_exceptions=False)


def one_line_error(res: Any, *fragments: str) -> None:
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr.startswith("eventlog: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


def digest(path: str) -> tuple[str, int]:
    """A hash of the store file's bytes, and the length of its ``-wal`` (a read-only
    open may leave an empty one, and the ``-shm`` index, as documented: nothing
    written)."""
    wal = path + "-wal"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), os.path.getsize(wal) if os.path.exists(wal) else 0


@pytest.fixture
def src_file(tmp_path: Path) -> str:
    d = tmp_path / "src"
    d.mkdir()
    path = str(d / "src.db")
    with eventlog.open(path, snapshot_every=3) as s:
        fill(s)
    return path


def test_the_command_copies_into_a_new_store_and_never_changes_src(src_file: str, tmp_path: Path) -> None:
    before = digest(src_file)
    dst = str(tmp_path / "dst.db")
    res = cli("copy", src_file, dst)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "copied 4 sessions: root, child, grandchild, other\n"
    assert digest(src_file) == before
    with eventlog.open(src_file, readonly=True) as a, eventlog.open(dst) as b:
        for name in a.sessions():
            same_history(a, b, name)
    res = cli("copy", src_file, dst)  # again: all there, refused, nothing written
    one_line_error(res, "already in the destination store", "'root'")
    assert digest(src_file) == before


def test_the_command_adds_named_sessions_to_an_existing_store(src_file: str, tmp_path: Path) -> None:
    dst = str(tmp_path / "dst.db")
    with eventlog.open(dst) as b:
        b.save("mine", {"x": 1})
    one_line_error(cli("copy", src_file, dst, "child"), "its parent 'root'", "copy it too")
    res = cli("copy", "--no-tree", src_file, dst, "root")
    assert res.exit_code == 0 and res.stdout == "copied 1 session: root\n", res.stderr
    res = cli("copy", src_file, dst, "child")
    assert res.exit_code == 0 and res.stdout == "copied 2 sessions: child, grandchild\n", res.stderr
    with eventlog.open(dst) as b:
        assert b.sessions() == ["mine", "root", "child", "grandchild"]
        assert b.load("mine") == {"x": 1}
    one_line_error(cli("copy", src_file, dst, "nope"), "no such session")


def test_the_command_copies_between_chunk_keys(src_file: str, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY_A.hex().encode())
    keyed = str(tmp_path / "keyed.db")
    res = cli("copy", "--dst-chunk-key-file", str(key_file), src_file, keyed)
    assert res.exit_code == 0, res.stderr
    back = str(tmp_path / "back.db")
    one_line_error(cli("copy", keyed, back), "chunk_key")
    assert not os.path.exists(back)
    res = cli("copy", "--src-chunk-key-file", str(key_file), keyed, back)
    assert res.exit_code == 0, res.stderr
    with eventlog.open(src_file, readonly=True) as a, eventlog.open(back) as b:
        for name in a.sessions():
            same_history(a, b, name)


def test_the_command_refuses_a_dst_that_is_not_a_store(src_file: str, tmp_path: Path) -> None:
    for content in (b"", b"just some notes\n", b"SQLite format 3\x00" + bytes(200)):
        other = tmp_path / "notes.txt"
        other.write_bytes(content)
        one_line_error(cli("copy", src_file, str(other)), "not an eventlog store")
        assert other.read_bytes() == content
        assert sorted(os.listdir(tmp_path)) == ["notes.txt", "src"]
    one_line_error(cli("copy", src_file, str(tmp_path)), "is a directory")
    one_line_error(cli("copy", str(tmp_path / "missing.db"), str(tmp_path / "new.db")), "no such store file")
    assert not os.path.exists(tmp_path / "new.db")


def _damage(path: str, name: str) -> None:
    con = sqlite3.connect(path)
    (frame,) = con.execute("SELECT e.frame FROM events e JOIN sessions s USING (sid) WHERE s.name = ? "
                           "AND e.seq = 1", (name,)).fetchone()  # fmt: skip
    con.execute("UPDATE events SET frame = ? WHERE frame = ?", (frame[:-1] + bytes([frame[-1] ^ 1]), frame))
    con.commit()
    con.close()


def test_the_command_removes_a_dst_it_made_when_nothing_was_copied(src_file: str, tmp_path: Path) -> None:
    _damage(src_file, "root")
    dst = str(tmp_path / "dst.db")
    one_line_error(cli("copy", src_file, dst), "session 'root', seq 1")
    assert not [n for n in os.listdir(tmp_path) if n.startswith("dst.db")]


def test_the_command_keeps_a_dst_it_made_with_what_was_copied(src_file: str, tmp_path: Path) -> None:
    _damage(src_file, "other")  # the last one copied
    dst = str(tmp_path / "dst.db")
    one_line_error(cli("copy", src_file, dst), "session 'other', seq 1")
    with eventlog.open(dst) as b:  # what was copied before the failure stays
        assert b.sessions() == ["root", "child", "grandchild"]


def test_async_stores_copy_too(tmp_path: Path) -> None:
    import asyncio

    async def run() -> None:
        async with eventlog.open_async(str(tmp_path / "a.db")) as a, eventlog.open_async(str(tmp_path / "b.db")) as b:
            await a.save("s", {"entries": [entry(1, BIG)]})
            await a.append("t", [entry(2)], parent_id="s")
            assert await a.copy_to(b) == ["s", "t"]
            assert await b.fold("s", at=1) == await a.fold("s", at=1)
            assert await b.parent("t") == "s"
            with eventlog.open("memory:") as m:
                with pytest.raises(eventlog.InvalidValueError):
                    await a.copy_to(m, ["t"], tree=False)  # its parent is neither copied nor there
                assert await b.copy_to(m) == ["s", "t"] and m.load("t") == {"entries": [entry(2)], "leafId": "2"}

    asyncio.run(run())
