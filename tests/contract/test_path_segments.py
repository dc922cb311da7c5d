"""Snapshot segments for lists at paths: a large list at a path (``messages``,
``state.messages``, ...) is kept in segments like the entries, reused unread by
later snapshots, read back exactly, known to verify, compaction and copies; and the
frames that use these forms (events holding an ``At``, manifests with lists at
paths) are format version 6, which a reader that does not know them refuses as
newer, while sessions that do not use them are written as before."""

from __future__ import annotations

import copy
import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import codec
from eventlog.codec import ENTRIES, SNAPSHOT, Framer
from eventlog.errors import CorruptionError, UnsupportedVersionError
from eventlog.fold import MAX_PATH
from eventlog.snapshots import Manifest
from eventlog.values import same

from ..helpers import largest_cell_and_row
from .test_lists import histories as lists_histories
from .test_segments import _Writes

#: Segments of about 1 KB (chunk_bytes // 2), kept from 256 bytes up.
TINY = {"chunk_bytes": 2048, "max_cell_bytes": 16_384, "synchronous": "OFF"}
SHAPES = {
    "messages": ("messages",),
    "state.messages": ("state", "messages"),
    "channel_values.messages": ("channel_values", "x", "y", "messages"),
}


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "s.db")


def _message(i: int, size: int = 300) -> dict[str, Any]:
    return {"role": "user" if i % 2 else "assistant", "content": random.Random(i).randbytes(size // 2).hex()}


def _shaped(path: tuple[str, ...], messages: list[Any], **top: Any) -> dict[str, Any]:
    value: Any = messages
    for k in reversed(path[1:]):
        value = {k: value, "n": len(messages)}
    return {path[0]: value, **top}


def _snapshot(path: str, name: str = "s") -> tuple[int, Manifest]:
    """The newest snapshot of ``name``: its frame version and (if segmented) manifest."""
    con = sqlite3.connect(path)
    sid, seq, frame, key = con.execute(
        "SELECT n.sid, n.seq, n.frame, s.key FROM snapshots n JOIN sessions s ON s.sid = n.sid WHERE s.name = ? "
        "ORDER BY n.seq DESC LIMIT 1",
        (name,),
    ).fetchone()
    con.close()
    flags, payload = Framer.open(frame, codec.Place(SNAPSHOT, sid, key, seq))
    wire, _ = codec.loads(Framer().decompress(flags & ~codec.FLAG_SEGMENTS, payload, 1 << 30))
    if not flags & codec.FLAG_SEGMENTS:
        return frame[0], Manifest(wire[0], [], [])
    return frame[0], Manifest.from_wire(wire, frame[0], 1 << 30)


def _versions(path: str, table: str) -> list[int]:
    con = sqlite3.connect(path)
    try:
        return [row[0][0] for row in con.execute(f"SELECT frame FROM {table} ORDER BY rowid")]
    finally:
        con.close()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_snapshot_of_a_list_at_a_path_writes_what_changed_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """The list at a path is cut into segments (the manifest's third element, the
    marker standing at its path); a later snapshot keeps every segment the saves
    since left alone and writes about what they added, as for ``entries``."""
    where = SHAPES[shape]
    path = _path()
    writes = _Writes(monkeypatch)
    messages = [_message(i) for i in range(300)]
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", _shaped(where, messages, title="t"))
        store.snapshot("s")
        first = writes.take()
        version, before = _snapshot(path)
        assert version == codec.FRAME_VERSION_PATHS
        [(listed, segments)] = before.lists
        assert listed == where and len(segments) > 50 and sum(s.count for s in segments) == 300
        value: Any = before.fields
        for k in where:
            value = value[k]
        assert value is ENTRIES and before.segments == []

        messages += [_message(i) for i in range(300, 303)]
        store.save("s", _shaped(where, messages, title="t"))
        writes.take()
        store.snapshot("s")
        [(_, after)] = _snapshot(path)[1].lists
        assert after[: len(segments) - 1] == segments[:-1]  # all kept but, at most, the last
        assert writes.take() < first / 10

        messages[7] = {**messages[7], "content": "edited"}  # changed in place
        store.save("s", _shaped(where, messages, title="t"))
        del messages[150]  # one removed in the middle
        store.save("s", _shaped(where, messages, title="t"))
        messages.insert(200, _message(999))  # one inserted
        store.save("s", _shaped(where, messages, title="t"))
        writes.take()
        store.snapshot("s")
        [(_, edited)] = _snapshot(path)[1].lists
        assert len(set(after) & set(edited)) >= len(after) - 4
        assert writes.take() < first / 5
        assert store.load("s") == _shaped(where, messages, title="t")
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == _shaped(where, messages, title="t")
        report = store.verify()
        assert report.ok, report.problems
        assert report.garbage_chunks == 0


def test_entries_and_lists_at_paths_in_one_snapshot() -> None:
    """Large entries and large lists at two paths, and small ones beside them
    (kept in the fields): every list reads back in its place."""
    path = _path()
    data = {
        "entries": [_message(i) for i in range(40)],
        "messages": [_message(i) for i in range(40, 80)],
        "small": [1, 2],
        "state": {"messages": [_message(i) for i in range(80, 120)], "tools": ["a"]},
    }
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.snapshot("s")
        version, manifest = _snapshot(path)
        assert version == codec.FRAME_VERSION_PATHS
        assert [p for p, _ in manifest.lists] == [("messages",), ("state", "messages")]
        assert manifest.fields["small"] == [1, 2] and manifest.fields["state"]["tools"] == ["a"]
        assert sum(s.count for s in manifest.segments) == 40
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data)
        assert same(store.items("s", 3, 9, field="messages"), data["messages"][3:9])  # type: ignore[index]
        assert store.verify().ok


def test_a_large_list_at_a_path_beside_small_entries_puts_the_entries_in_a_segment() -> None:
    path = _path()
    data = {"entries": [{"id": "e1"}], "messages": [_message(i) for i in range(40)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.snapshot("s")
        manifest = _snapshot(path)[1]
        assert sum(s.count for s in manifest.segments) == 1 and manifest.lists
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data
        assert store.items("s") == [{"id": "e1"}]


def test_sessions_without_the_new_forms_are_written_as_before() -> None:
    """Only frames that need it are version 6: an entries session's events and
    snapshots stay 3 and 4, a small list at a path stays in a one-frame snapshot
    (version 3), an event without an At is version 3."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("e", {"entries": [_message(i) for i in range(40)]})
        store.append("e", [{"id": "x"}])
        store.snapshot("e")
        assert _snapshot(path, "e")[0] == codec.FRAME_VERSION_KEYED_SEGMENTS
        store.save("m", {"messages": [1, 2]})
        store.save("m", {"messages": [1, 2, 3]})  # an At
        store.save("m", {"messages": [1, 2, 3], "title": "x"})  # a SetFields only
        store.snapshot("m")
        assert _snapshot(path, "m")[0] == codec.FRAME_VERSION_KEYED
    assert _versions(path, "events") == [3, 3, 3, 6, 3]
    assert _versions(path, "snapshots") == [4, 3]


def test_a_reader_that_does_not_know_version_6_refuses_it_as_newer(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a release before lists at paths meets (it reads versions 1 to 4): a
    session using the new forms is refused as newer, not as damage; one that does
    not, and an older snapshot before the new forms, still read."""
    path = _path()
    messages = [_message(i) for i in range(40)]
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("e", {"entries": messages})
        store.snapshot("e")
        store.save("m", {"messages": messages})  # a SetFields: version 3
        store.snapshot("m")  # the list in segments: version 6
        store.save("n", {"messages": messages[:2]})
        store.save("n", {"messages": messages})  # an At: version 6
    monkeypatch.setattr(codec, "KNOWN_VERSIONS", (1, 2, 3, 4))
    with eventlog.open(path, **TINY) as store:
        assert store.load("e") == {"entries": messages}
        assert store.load("m") == {"messages": messages}  # the snapshot skipped as a cache, the event replayed
        with pytest.raises(UnsupportedVersionError) as raised:
            store.load("n")
        assert raised.value.session_id == "n" and raised.value.seq == 2
    with eventlog.open(path, **TINY) as store:
        store.compact(retain=0)  # the version 6 snapshot becomes the only copy
    with eventlog.open(path, **TINY) as store, pytest.raises(UnsupportedVersionError):
        store.load("m")


def _reseal(path: str, edit: Any, version: int = codec.FRAME_VERSION_PATHS) -> None:
    """Rewrite the newest snapshot's manifest through ``edit(wire)``, CRC valid."""
    con = sqlite3.connect(path)
    sid, seq, frame, key = con.execute(
        "SELECT n.sid, n.seq, n.frame, s.key FROM snapshots n JOIN sessions s USING (sid) ORDER BY n.seq DESC"
    ).fetchone()
    flags, payload = Framer.open(frame, codec.Place(SNAPSHOT, sid, key, seq))
    wire, _ = codec.loads(Framer().decompress(flags & ~codec.FLAG_SEGMENTS, payload, 1 << 30))
    edit(wire)
    new = Framer.seal(
        codec.FLAG_SEGMENTS, codec.dumps(wire), codec.key_binding(SNAPSHOT, key, seq), keyed=True,
        paths=version == codec.FRAME_VERSION_PATHS,
    )  # fmt: skip
    con.execute("UPDATE snapshots SET frame = ? WHERE sid = ? AND seq = ?", (new, sid, seq))
    con.commit()
    con.close()


def _fields(edit: Any) -> Any:
    return lambda wire: edit(wire[0])


@pytest.mark.parametrize(
    ("edit", "version", "message"),
    [
        (lambda wire: None, codec.FRAME_VERSION_KEYED_SEGMENTS, "manifest"),  # lists at paths in a version 4 frame
        (lambda wire: wire[2].append(wire[2][0]), 6, "twice"),
        (lambda wire: wire[2][0].__setitem__(0, ["entries"]), 6, "malformed list"),
        (lambda wire: wire[2][0].__setitem__(0, ["a"] * (MAX_PATH + 1)), 6, "malformed list"),
        (lambda wire: wire[2][0].__setitem__(0, []), 6, "malformed list"),
        (lambda wire: wire[2][0].__setitem__(0, [1]), 6, "malformed list"),
        (lambda wire: wire[2][0].__setitem__(1, []), 6, "malformed list"),
        (lambda wire: wire[2][0].append(1), 6, "malformed list"),
        (lambda wire: wire.__setitem__(2, []), 6, "malformed snapshot manifest"),
        (lambda wire: wire[2][0].__setitem__(0, ["state", "other"]), 6, "no marker"),
        (lambda wire: wire[2][0].__setitem__(0, ["title", "x"]), 6, "no map"),
        (_fields(lambda f: f["state"].__setitem__("messages", [])), 6, "no marker"),
        (_fields(lambda f: f.__setitem__("extra", ENTRIES)), 6, "marker"),  # a marker no list stands for
        (_fields(lambda f: f["state"].__setitem__("more", ENTRIES)), 6, "malformed snapshot body"),
        (lambda wire: wire[2][0][1][0].__setitem__(0, 10_000), 6, "malformed snapshot segment"),
        (lambda wire: wire[2][0][1][0].__setitem__(5, b"\x02" * 32), 6, "large values inside"),
    ],
)
def test_a_hostile_manifest_with_lists_at_paths_is_refused(edit: Any, version: int, message: str) -> None:
    path = _path()
    data = {"title": "t", "state": {"messages": [_message(i) for i in range(40)]}}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.compact(retain=0)  # the snapshot is the only copy: its errors surface
    assert _snapshot(path)[0] == codec.FRAME_VERSION_PATHS
    _reseal(path, edit, version)
    with eventlog.open(path, **TINY) as store:
        with pytest.raises(CorruptionError, match=message) as raised:
            store.load("s")
        assert raised.value.session_id == "s" and raised.value.seq == 1
        with pytest.raises(CorruptionError):
            store.items("s", field=("state", "messages"))
        assert not store.verify().ok


def test_a_damaged_snapshot_of_a_list_at_a_path_falls_back_and_is_not_built_on() -> None:
    path = _path()
    messages = [_message(i) for i in range(60)]
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", {"messages": messages})
        store.snapshot("s")
    _reseal(path, lambda wire: wire[2][0][1][0].__setitem__(4, b"\x01" * 32))  # a segment's chunk missing
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        assert store.load("s") == {"messages": messages}  # from the event
        assert store.items("s", 2, 4, field="messages") == messages[2:4]
        messages.append(_message(60))
        store.save("s", {"messages": messages})
        store.snapshot("s")  # written anew, not on the damaged one
        assert store.load("s") == {"messages": messages}
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == {"messages": messages}


def test_a_copy_and_a_compacted_floor_keep_lists_at_paths_in_segments() -> None:
    src, dst = _path(), _path()
    messages = [_message(i) for i in range(60)]
    with eventlog.open(src, snapshot_every=0, **TINY) as store:
        for n in (20, 40, 60):
            store.save("s", {"state": {"messages": messages[:n]}})
        store.compact(retain=1)
        assert _snapshot(src)[1].lists
        with eventlog.open(dst, snapshot_every=0, chunk_key=bytes(range(32)), **TINY) as other:
            store.copy_to(other, ["s"])
            assert other.load("s") == {"state": {"messages": messages}}
            assert other.fold("s", at=2) == {"state": {"messages": messages[:40]}}
            report = other.verify()
            assert report.ok, report.problems
        report = store.verify()
        assert report.ok and report.garbage_chunks == 0, report.problems
    assert _snapshot(dst)[1].lists


def _padded(state: Any, depth: int = 0) -> Any:
    """``state`` with each item of each list at a path padded (about 150 bytes),
    so that small histories make lists of many segments."""
    if type(state) is dict:
        return {k: _padded(v, depth + 1) if depth < MAX_PATH else v for k, v in state.items()}
    if type(state) is list:
        return [{"item": x, "pad": "p" * 150} for x in state]
    return state


@settings(max_examples=30, deadline=None)
@given(lists_histories(steps=6), st.sampled_from([0, 1, 3]), st.integers(0, 3))
def test_segmented_lists_at_paths_round_trip_fold_and_compact(history: list[Any], every: int, retain: int) -> None:
    """Any edits to lists at any paths, snapshots after every save (or never, or
    every third), lists over many tiny segments: every position folds to the state
    saved there, a cold load and every slice equal it, no cell is over the budget,
    and compaction frees nothing a snapshot still uses (verify, then load again)."""
    history = [_padded(state) for state in history]
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        for state in history:
            store.save("s", copy.deepcopy(state))
            if every and store.seq("s") % every == 0:
                store.snapshot("s")
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state), k
    cell, row = largest_cell_and_row(path)
    assert cell <= TINY["max_cell_bytes"] and row <= TINY["max_cell_bytes"]
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), history[-1])
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state), k
        store.compact(retain=min(retain, len(history)))
        report = store.verify()
        assert report.ok and report.garbage_chunks == 0, report.problems
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), history[-1])
        floor = len(history) - min(retain, len(history))
        for k, state in enumerate(history, 1):
            if k >= max(floor, 1):
                assert same(store.fold("s", at=k), state), k
