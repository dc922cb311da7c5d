"""Partial reads: ``Store.items`` and ``Store.tail`` give exactly the slice of what a
load gives, decoding only the part of the newest snapshot they need."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import log as log_module
from eventlog.testing import histories
from eventlog.values import same

from .test_lists import at as lists_at
from .test_lists import containers
from .test_lists import histories as lists_histories

SMALL = {"image_size": 40_000, "big": 40_000}
#: Segments of about 1 KB, so that small sessions have snapshots of many segments.
TINY = {"chunk_bytes": 2048, "max_cell_bytes": 16_384, "synchronous": "OFF"}
INDEX = st.one_of(st.none(), st.integers(-15, 15))


def _decoded_segments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of items of each snapshot segment decoded from now on."""
    decoded: list[int] = []
    segment = log_module.Log.segment

    def spy(self: Any, seg: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(seg.count)
        return segment(self, seg, *args, **kwargs)

    monkeypatch.setattr(log_module.Log, "segment", spy)
    return decoded


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "s.db")


def _entry(i: int, **extra: Any) -> dict[str, Any]:
    text = f"hello {i} " * 30
    return {"id": f"e{i}", "message": {"role": "user", "content": [{"type": "text", "text": text}]}, **extra}


@settings(max_examples=40, deadline=None)
@given(histories(**SMALL), st.integers(0, 3), st.lists(st.tuples(INDEX, INDEX), min_size=1, max_size=4))
def test_a_slice_is_the_slice_of_a_load(history: list[Any], every: int, slices: list[tuple[Any, Any]]) -> None:
    """Any history, snapshots taken often or never, read cold (a new handle) and
    warm: ``items(id, a, b)`` equals ``load(id)["entries"][a:b]`` strictly."""
    path = _path()
    with eventlog.open(path, snapshot_every=every, **TINY) as s:
        for state in history:
            s.save("s", state)
    want = history[-1]
    for cache in (0, 8):
        with eventlog.open(path, cache_sessions=cache, **TINY) as s:
            for a, b in slices:
                if type(want.get("entries")) is list:
                    assert same(s.items("s", a, b), want["entries"][a:b])
                    n = b if b is not None and b >= 0 else 3
                    assert same(s.tail("s", n), want["entries"][-n:] if n else [])
                elif "entries" in want:
                    with pytest.raises(eventlog.InvalidValueError):
                        s.items("s", a, b)
                else:
                    with pytest.raises(eventlog.NotFoundError):
                        s.items("s", a, b)
                s.load("s")  # the next slices come from the cache


def test_a_slice_after_edits_past_the_snapshot_decodes_only_its_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inserts, replacements and deletes after the snapshot move the entries as a
    full fold would; only the segments holding the wanted entries are decoded."""
    path = _path()
    entries = [_entry(i) for i in range(400)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": entries, "title": "t"})
        s.snapshot("s")
        entries = [_entry(-1), *entries[:10], *entries[12:], _entry(400)]
        entries[50] = _entry(50, edited=True)
        s.save("s", {"entries": entries, "title": "t"})
        s.append("s", [_entry(401)])
        entries.append(_entry(401))
    decoded = _decoded_segments(monkeypatch)
    with eventlog.open(path, **TINY) as s:
        assert s.tail("s", 5) == entries[-5:]
        assert s.items("s", 0, 3) == entries[:3]
        assert s.items("s", 49, 52) == entries[49:52]
        assert s.items("s", -500) == entries
        few = len(decoded)
        assert s.load("s") == {"entries": entries, "title": "t", "leafId": "e401"}
    assert 0 < sum(decoded[:3]) < 60 and len(decoded) > few + 20  # the load decoded them all


@pytest.mark.parametrize("where", [("messages",), ("state", "messages")])
def test_a_slice_of_a_list_at_a_path_decodes_only_its_segments(
    monkeypatch: pytest.MonkeyPatch, where: tuple[str, ...]
) -> None:
    """The same for a list at a path that the snapshot keeps in segments: edits after
    the snapshot move its items as a full fold would, and a slice decodes only the
    segments holding the wanted items (of that list, not of another one)."""
    path = _path()

    def shaped(messages: list[Any]) -> dict[str, Any]:
        other = [_entry(i) for i in range(100, 200)]  # a second large list, never wanted
        if where == ("messages",):
            return {"messages": messages, "other": other, "title": "t"}
        return {"state": {"messages": messages, "other": other}, "title": "t"}

    messages = [_entry(i) for i in range(400)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", shaped(messages))
        s.snapshot("s")
        for edited in (
            [_entry(-1), *messages],  # inserted at the front
            [_entry(-1), *messages[:10], *messages[12:]],  # two removed
            [_entry(-1), *messages[:10], *messages[12:], _entry(400)],  # appended
        ):
            messages = edited
            s.save("s", shaped(messages))
        messages[50] = _entry(50, edited=True)  # replaced
        s.save("s", shaped(messages))
        messages.append(_entry(401))
        s.save("s", shaped(messages))
    decoded = _decoded_segments(monkeypatch)
    with eventlog.open(path, **TINY) as s:
        assert s.tail("s", 5, field=where) == messages[-5:]
        assert s.items("s", 0, 3, field=where) == messages[:3]
        assert s.items("s", 49, 52, field=where) == messages[49:52]
        some = len(decoded)
        assert s.items("s", -500, field=where) == messages
        few = len(decoded)
        assert s.load("s") == shaped(messages)
    assert 0 < sum(decoded[:some]) < 60 and len(decoded) > few + 20  # the load decoded them all
    assert sum(decoded[some:few]) == 400  # the whole list: all of its segments, none of the other's


def test_items_of_other_lists_and_bad_arguments() -> None:
    with eventlog.open(_path()) as s:
        s.save("s", {"state": {"messages": [1, 2, 3], "n": 1}, "entries": "text"})
        assert s.items("s", 1, field=("state", "messages")) == [2, 3]
        assert s.tail("s", 2, field=["state", "messages"]) == [2, 3]
        got = s.items("s", field=("state", "messages"))
        got.append(4)  # the caller's own
        assert s.items("s", field=("state", "messages")) == [1, 2, 3]
        with pytest.raises(eventlog.InvalidValueError, match="not a list"):
            s.items("s")
        with pytest.raises(eventlog.InvalidValueError, match="not a list"):
            s.items("s", field=("state", "n"))
        with pytest.raises(eventlog.NotFoundError, match=r"state\.other"):
            s.items("s", field=("state", "other", "x"))
        with pytest.raises(eventlog.NotFoundError):
            s.items("nope")
        for bad in ({"start": "1"}, {"stop": 1.0}, {"start": True}, {"field": ()}, {"field": [1]}, {"field": 3}):
            with pytest.raises(eventlog.InvalidValueError):
                s.items("s", **bad)
        for n in (-1, 1.5, None):
            with pytest.raises(eventlog.InvalidValueError):
                s.tail("s", n)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(lists_histories(steps=6), st.integers(0, 2), st.lists(st.tuples(INDEX, INDEX), min_size=1, max_size=3))
def test_a_slice_of_any_list_is_the_slice_of_a_load(
    history: list[dict[str, Any]], every: int, slices: list[tuple[Any, Any]]
) -> None:
    """Lists at any path (``messages``, ``state.messages``, ...), edited in any way
    between saves: every list's slice, read cold, equals the loaded list's."""
    path = _path()
    with eventlog.open(path, snapshot_every=every, **TINY) as s:
        for state in history:
            s.save("s", state)
    want = history[-1]
    with eventlog.open(path, cache_sessions=0, **TINY) as s:
        for where in containers(want)[1:]:
            value = lists_at(want, where)
            for a, b in slices:
                if type(value) is list:
                    assert same(s.items("s", a, b, field=where), value[a:b]), where
                else:
                    with pytest.raises(eventlog.InvalidValueError):
                        s.items("s", a, b, field=where)


def test_items_and_tail_through_both_apis(open_store: Any, db_path: str) -> None:
    """The same answers from ``Store`` and ``AsyncStore``."""
    with open_store(db_path, **TINY) as s:
        entries = [_entry(i) for i in range(30)]
        s.save("s", {"entries": entries, "messages": [1, 2, 3]})
        assert s.items("s", 5, 8) == entries[5:8]
        assert s.tail("s", 2) == entries[-2:]
        assert s.tail("s", 0) == []
        assert s.items("s", field="messages") == [1, 2, 3]
        with pytest.raises(eventlog.NotFoundError):
            s.tail("other", 3)


def _events_decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions of the events decoded from now on."""
    seqs: list[int] = []
    event = log_module.Log.event

    def spy(self: Any, name: str, sid: int, key: Any, seq: int, *args: Any, **kwargs: Any) -> Any:
        seqs.append(seq)
        return event(self, name, sid, key, seq, *args, **kwargs)

    monkeypatch.setattr(log_module.Log, "event", spy)
    return seqs


def _growing(path: str, n: int, **options: Any) -> tuple[list[Any], int]:
    """A conversation of ``n`` entries grown four at a time, by ``append()`` and by
    saves that append (its entries and head)."""
    entries: list[Any] = []
    with eventlog.open(path, **options) as s:
        for i in range(0, n, 4):
            batch = [_entry(j, image="iVBORw0KGgo" + "A" * 30_000 + str(j)) for j in range(i, i + 4)]
            if i % 8:
                s.append("s", batch)
            else:
                s.save("s", {**s.load("s"), "entries": entries + batch, "title": f"t{i}"} if i else {"entries": batch})
            entries += batch
        return entries, s.seq("s")


def test_the_tail_of_a_growing_conversation_reads_only_its_newest_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversation that only ever grows at the end (what a runtime appending
    turns writes): its last items come from its last few events alone, neither the
    snapshot nor an older event decoded, however long it is."""
    path = _path()
    entries, head = _growing(path, 400, snapshot_every=50, **TINY)
    decoded, events = _decoded_segments(monkeypatch), _events_decoded(monkeypatch)
    with eventlog.open(path, **TINY) as s:
        assert s.tail("s", 10) == entries[-10:]
        assert s.items("s", -6, -2) == entries[-6:-2]
        assert s.items("s", -9, -8) == entries[-9:-8]
    assert decoded == [] and sorted(set(events)) == [head - 2, head - 1, head]
    with eventlog.open(path, **TINY) as s:  # more than the events since the snapshot hold: as before
        assert s.tail("s", 300) == entries[-300:]
    assert decoded


@pytest.mark.parametrize("count", ["entries + 1", "entries - 1", "entries - 4", "0", "NULL", "1000000"])
def test_a_wrong_entries_count_never_gives_wrong_items(count: str) -> None:
    """The entries count recorded with the head only says where to start: the newest
    insert must end exactly at it, so a damaged one makes the read fold as before."""
    path = _path()
    entries, _ = _growing(path, 40, snapshot_every=3, **TINY)
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE sessions SET entries = {count}")
    con.close()
    with eventlog.open(path, **TINY) as s:
        for n in (1, 4, 5, 12, 40, 41):
            assert s.tail("s", n) == entries[-n:]
            assert s.items("s", -n, -1) == entries[-n:-1]


def test_a_missing_newest_event_is_named_by_a_tail() -> None:
    path = _path()
    _, head = _growing(path, 40, snapshot_every=0, **TINY)
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM events WHERE seq = ?", (head - 1,))
    con.close()
    with eventlog.open(path, **TINY) as s, pytest.raises(eventlog.CorruptionError) as e:
        s.tail("s", 8)
    assert e.value.session_id == "s" and e.value.seq == head - 1


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["append", "append", "save-append", "replace", "delete", "insert", "field"]),
            st.integers(1, 4),
            st.integers(0, 1000),
        ),
        min_size=1,
        max_size=25,
    ),
    st.integers(0, 4),
)
def test_a_tail_after_appends_and_edits_is_the_tail_of_a_load(steps: list[tuple[str, int, int]], every: int) -> None:
    """Appends, saves that append, and edits anywhere (replacements, deletions,
    inserts, other fields), snapshots often or never: every tail and every slice
    from the end, read cold, equals that of a load."""
    path = _path()
    with eventlog.open(path, snapshot_every=every, **TINY) as s:
        data: dict[str, Any] = {"entries": [_entry(0)]}
        s.save("s", data)
        for i, (kind, k, where) in enumerate(steps):
            entries = data["entries"]
            if kind == "append":
                s.append("s", [_entry(i * 10 + j) for j in range(k)])
                data = s.load("s")
                continue
            if kind == "save-append" or not entries:
                entries += [_entry(i * 10 + j) for j in range(k)]
            elif kind == "replace":
                entries[where % len(entries)] = _entry(-i)
            elif kind == "delete":
                del entries[where % len(entries)]
            elif kind == "insert":
                entries.insert(where % len(entries), _entry(-i))
            else:
                data[f"f{where % 3}"] = i
            s.save("s", data)
        want = s.load("s")["entries"]
    with eventlog.open(path, **TINY) as s:
        for n in range(len(want) + 2):
            assert same(s.tail("s", n), want[-n:] if n else [])
            assert same(s.items("s", -n - 1, -1), want[-n - 1 : -1])


@pytest.mark.parametrize(
    "edit",
    ["insert-middle", "insert-first", "delete", "replace", "entries-removed", "entries-removed-then-back",
     "entries-not-a-list", "entries-new-list", "other-field"],
)  # fmt: skip
def test_a_tail_goes_back_only_through_inserts_at_the_end(edit: str) -> None:
    """Whatever the newest event did to the entries, a tail read cold is the tail of a
    load (or the same error)."""
    path = _path()
    _growing(path, 24, snapshot_every=0, **TINY)
    with eventlog.open(path, **TINY) as s:
        data = s.load("s")
        if edit == "insert-middle":
            data["entries"].insert(20, _entry(-1))
        elif edit == "insert-first":
            data["entries"].insert(0, _entry(-1))
        elif edit == "delete":
            del data["entries"][22]
        elif edit == "replace":
            data["entries"][23] = _entry(-1)
        elif edit in ("entries-removed", "entries-removed-then-back"):
            del data["entries"]
        elif edit == "entries-not-a-list":
            data["entries"] = {"a": 1}
        elif edit == "entries-new-list":
            data["entries"] = [_entry(-2), _entry(-3)]
        else:
            data["title"] = "changed"
        s.save("s", data)
        if edit == "entries-removed-then-back":
            s.save("s", {**data, "entries": [_entry(-4)]})
            s.append("s", [_entry(-5)])
        want = s.load("s")
    with eventlog.open(path, **TINY) as s:
        for n in (1, 2, 3, 5, 30):
            if type(want.get("entries")) is list:
                assert s.tail("s", n) == want["entries"][-n:]
                assert s.items("s", -n, -1) == want["entries"][-n:-1]
            else:
                error = eventlog.InvalidValueError if "entries" in want else eventlog.NotFoundError
                with pytest.raises(error):
                    s.tail("s", n)
