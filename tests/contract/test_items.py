"""Partial reads: ``Store.items`` and ``Store.tail`` give exactly the slice of what a
load gives, decoding only the part of the newest snapshot they need."""

from __future__ import annotations

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
