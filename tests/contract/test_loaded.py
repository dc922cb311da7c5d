"""What a load hands the caller is the caller's own: whatever the caller then does
to it, the store stores and loads exactly what it is given, and never what it was
not.  The first load of a state nobody holds yet lends the caller the decoded state
itself, the cache keeping a mirror that must prove it untouched before the state is
used again (see :mod:`eventlog.cache`); later loads are copies.  (Until eventlog 0.1
a load also lent the decoded entries, to be taken back by hand at four call sites
before the store read them: gone, with the C decoder that recorded them.)"""

from __future__ import annotations

import copy
import gc
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import writer as writer_module
from eventlog.testing import histories, mutate
from eventlog.values import same

from .test_lists import edit as list_edit
from .test_lists import histories as list_histories

SMALL = {"image_size": 40_000, "big": 40_000}
#: Segments of about 1 KB, so that small sessions have segmented snapshots.
TINY = {"chunk_bytes": 2048, "max_cell_bytes": 16_384, "synchronous": "OFF"}


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "s.db")


def _entry(i: int) -> dict[str, Any]:
    return {"id": f"e{i}", "message": {"role": "user", "content": [{"type": "text", "text": f"hello {i}" * 40}]}}


@settings(max_examples=60, deadline=None)
@given(st.data(), histories(**SMALL), st.integers(1, 3))
def test_a_loaded_session_edited_in_place_is_stored_exactly(
    data: st.DataObject, history: list[Any], every: int
) -> None:
    """Loaded in a fresh process (entries recorded from the snapshot's segments and
    the events since), then edited in place, saved, loaded, folded, in any order: the
    store always holds exactly what was last saved, here and after reopening."""
    path = _path()
    with eventlog.open(path, snapshot_every=every, **TINY) as s:
        for state in history:
            s.save("s", state)
    expected = copy.deepcopy(history[-1])
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None and same(loaded, expected)
        for _ in range(data.draw(st.integers(1, 8), label="steps")):
            step = data.draw(st.sampled_from(["edit", "edit", "save", "load", "fold"]))
            if step == "edit":
                loaded = mutate(data.draw, loaded)
            elif step == "save":
                s.save("s", loaded)
                expected = copy.deepcopy(loaded)
            elif step == "load":
                again = s.load("s")
                assert same(again, expected)
                if data.draw(st.booleans(), label="use the new load"):
                    loaded = again
            else:
                assert same(s.fold("s"), expected)
        assert same(s.load("s"), expected)
    with eventlog.open(path, **TINY) as s:
        assert same(s.load("s"), expected)
        report = s.verify()
        assert report.ok, report.problems


def _known_same(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The count of entries each save() took as proven unchanged."""
    seen: list[int] = []
    diff = writer_module.diff

    def spy(old: Any, data: dict[str, Any], known_same: int = 0, known: Any = None) -> Any:
        seen.append(known_same)
        return diff(old, data, known_same, known)

    monkeypatch.setattr(writer_module, "diff", spy)
    return seen


@pytest.mark.parametrize("events_after_snapshot", [False, True])
def test_saves_after_a_load_compare_only_once_what_was_loaded(
    monkeypatch: pytest.MonkeyPatch, events_after_snapshot: bool
) -> None:
    """The mirror made when the load lent its entries vouches for them from the
    first save on (no save compares what was loaded, strictly), until the caller
    changes one in place."""
    path = _path()
    entries = [_entry(i) for i in range(300)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": entries})
        s.snapshot("s")
        if events_after_snapshot:  # entries the load folds from events, not the snapshot
            s.save("s", {"entries": [_entry(-1), *entries[1:], _entry(300)]})
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        seen = _known_same(monkeypatch)
        n = len(loaded["entries"])
        for k in range(3):
            loaded["entries"].append(_entry(1000 + k))
            s.save("s", loaded)
        assert seen == [n, n + 1, n + 2]
        loaded["entries"][5]["message"]["content"][0]["text"] = "changed"  # in place, deep
        s.save("s", loaded)
        assert seen[-1] == 0  # the strict comparison, which finds the change
    with eventlog.open(path, **TINY) as s:
        again = s.load("s")
        assert again is not None and again["entries"][5]["message"]["content"][0]["text"] == "changed"
        assert same(again, loaded)


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        data = data[k]
    return data


@pytest.mark.parametrize("where", [("entries",), ("messages",), ("state", "messages"), ("a", "b", "c", "msgs")])
@pytest.mark.parametrize(
    "then", ["load", "fold", "save-other", "save-it", "save-equal", "save-it-fields-only", "load-deep", "save-it-deep"]
)
def test_what_a_load_lent_and_the_caller_changed_is_never_used(then: str, where: tuple[str, ...]) -> None:
    """The first load lends the decoded state: changed in place afterwards (deep in
    an item of a list, wherever the list is, in a nested field, and in a dict below
    the lists and dicts kept item by item), it must never be handed out again,
    diffed against or stored unless it is what is saved."""
    path = _path()
    stored: dict[str, Any] = {"meta": {"tags": ["a", "b"], "n": 1}, "deep": {"b": {"c": {"d": {"x": 1}}}}}
    holder = stored
    for k in where[:-1]:
        holder = holder.setdefault(k, {})
    holder[where[-1]] = [_entry(i) for i in range(40)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", stored)
        s.snapshot("s")
    expected = copy.deepcopy(stored)
    with eventlog.open(path, **TINY) as s:
        lent = s.load("s")
        assert lent is not None and lent == expected
        if then != "save-it-fields-only" and not then.endswith("deep"):  # (else the list's mirror vouches for it)
            _at(lent, where)[7]["message"]["content"][0]["text"] = "changed"
        if then != "save-it-fields-only":
            lent["deep"]["b"]["c"]["d"]["x"] = 2  # below the dicts kept key by key
        lent["meta"]["tags"].append("c")
        lent["meta"]["n"] = 2
        if then in ("load", "load-deep"):
            assert s.load("s") == expected
        elif then == "fold":
            assert s.fold("s") == expected
        elif then == "save-other":  # a value equal to what is stored, plus one item
            expected = copy.deepcopy(expected)
            _at(expected, where).append(_entry(99))
            s.save("s", copy.deepcopy(expected))
        elif then == "save-equal":  # exactly what is stored: nothing to write
            s.save("s", copy.deepcopy(expected))
        else:
            s.save("s", lent)
            expected = copy.deepcopy(lent)
        assert s.load("s") == expected
        assert s.fold("s") == expected
    with eventlog.open(path, **TINY) as s:
        assert s.load("s") == expected


@pytest.mark.parametrize("where", [("messages",), ("state", "messages")])
def test_saves_after_a_load_vouch_for_the_loaded_items_of_any_list(
    monkeypatch: pytest.MonkeyPatch, where: tuple[str, ...]
) -> None:
    """The mirrors made when a load lent its lists vouch for their items from the
    first save on, wherever the list is."""
    path = _path()
    data: dict[str, Any] = {}
    holder = data
    for k in where[:-1]:
        holder = holder.setdefault(k, {})
    holder[where[-1]] = [_entry(i) for i in range(100)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", data)
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        seen: list[int] = []
        diff = writer_module.diff

        def spy(old: Any, new: dict[str, Any], known_same: int = 0, known: Any = None) -> Any:
            seen.append((known or {}).get(where, 0))
            return diff(old, new, known_same, known)

        monkeypatch.setattr(writer_module, "diff", spy)
        for k in range(3):
            _at(loaded, where).append(_entry(1000 + k))
            s.save("s", loaded)
        assert seen == [100, 101, 102]
    with eventlog.open(path, **TINY) as s:
        assert s.load("s") == loaded


def test_two_loads_share_nothing_and_the_store_never_changes_what_it_gave() -> None:
    """Two loads get containers of their own; the store's later work (saves of other
    values, appends) never touches what it handed out."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(50)], "title": {"t": "x"}})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as s:
        first = s.load("s")
        second = s.load("s")
        assert first is not None and second is not None
        for a, b in zip(first["entries"], second["entries"], strict=True):
            assert a is not b and a["message"] is not b["message"]
        assert first["entries"] is not second["entries"] and first["title"] is not second["title"]
        kept = copy.deepcopy(first)
        s.append("s", [_entry(99)])
        s.save("s", {"entries": [_entry(7)]})
        assert first == kept
        assert s.load("s") == {"entries": [_entry(7)]}
        assert same(s.fold("s"), s.load("s"))


def test_a_loaded_session_edited_in_place_then_appended_to_by_another_call() -> None:
    """An append() after the load moves the stored entries; the edited loaded value,
    saved, is then stored exactly."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(40)]})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        loaded["entries"][3]["message"]["role"] = "edited"
        s.append("s", [_entry(40)])
        assert s.load("s")["entries"][3]["message"]["role"] == "user"  # type: ignore[index]
        assert s.fold("s")["entries"][40] == _entry(40)
        s.save("s", loaded)
    with eventlog.open(path, **TINY) as s:
        assert same(s.load("s"), loaded)


def test_events_from_another_writer_change_nothing_a_load_gave() -> None:
    """Another writer inserts before the loaded entries; catching up moves the store's
    own entries, and a later load shares nothing with the first."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(30)]})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as a, eventlog.open(path, **TINY) as b:
        first = a.load("s")
        assert first is not None
        b.save("s", {"entries": [_entry(-1), *(_entry(i) for i in range(30))]})
        second = a.load("s")
        assert second is not None and len(second["entries"]) == 31
        assert not {id(e) for e in first["entries"]} & {id(e) for e in second["entries"]}
        first["entries"][-1]["message"]["role"] = "edited"
        assert second["entries"][-1] == _entry(29)
        assert a.load("s")["entries"][-1] == _entry(29)  # type: ignore[index]


@pytest.mark.parametrize("how", ["save", "append"])
def test_what_a_caller_wrote_and_then_changes_never_reaches_the_store(how: str) -> None:
    """The other door of the session cache: the values a write was given are never
    kept (a save keeps copies; an append keeps nothing of them)."""
    entries = [_entry(i) for i in range(3)]
    with eventlog.open(_path()) as s:
        if how == "save":
            s.save("s", {"entries": entries})
        else:
            s.append("s", entries)
        kept = copy.deepcopy(s.load("s"))
        entries[0]["message"]["role"] = "changed"  # in place, deep
        entries.append(_entry(9))
        assert s.load("s") == kept
        assert s.fold("s") == kept
        s.append("s", [_entry(10)])
        assert s.load("s") == {**kept, "entries": [*kept["entries"], _entry(10)], "leafId": "e10"}


@pytest.mark.parametrize("edit", ["replace", "delete"])
def test_a_save_made_again_after_a_conflict_compares_what_the_other_writer_changed(edit: str) -> None:
    """Regression: when another handle had moved the session on, ``save()`` made
    its event again from the new head but kept the count of entries the mirror had
    vouched for on the first try (against the head it had cached), so it skipped
    comparing them with what the other writer changed: the store then held, and
    loaded, the other writer's entries instead of the ones saved."""
    path = _path()
    entries = [_entry(i) for i in range(5)]
    data = {"entries": entries}
    with eventlog.open(path) as a, eventlog.open(path) as b:
        a.save("s", data)
        a.save("s", data)  # the same entry objects again: the mirror vouches for them next time
        other = b.load("s")
        assert other is not None
        if edit == "replace":
            other["entries"][0] = _entry(100)
        else:
            del other["entries"][1]
        b.save("s", other)
        entries.append(_entry(5))
        a.save("s", data)  # its cached head is stale: the backend refuses, and it is made again
        assert a.load("s") == data
        assert b.load("s") == data
    with eventlog.open(path) as fresh:
        assert fresh.load("s") == data


def test_the_store_never_changes_the_collector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A library shares the interpreter with its application: loading, saving,
    snapshotting, folding, verifying and compacting never pause, freeze or tune the
    cyclic garbage collector (eventlog 0.1 paused it on every load and moved the
    application's young objects to the oldest generation)."""
    path = str(tmp_path / "s.db")

    def forbidden(*_: Any) -> None:
        raise AssertionError("eventlog changed the collector")

    enabled, threshold = gc.isenabled(), gc.get_threshold()
    for name in ("disable", "enable", "freeze", "unfreeze", "set_threshold", "collect"):
        monkeypatch.setattr(gc, name, forbidden)
    entries = [_entry(i) for i in range(3000)]
    with eventlog.open(path, snapshot_every=50, **TINY) as s:
        for i in range(0, 3000, 300):
            s.save("s", {"entries": entries[: i + 300]})
        s.append("t", entries[:100])
        s.delete("t")
    with eventlog.open(path, **TINY) as s:
        assert s.load("s") == {"entries": entries}
        assert len(s.fold("s", at=3)["entries"]) == 900
        s.snapshot("s")
        assert s.verify().ok
        s.compact(retain=2)
    assert gc.isenabled() is enabled and gc.get_threshold() == threshold


@settings(max_examples=40, deadline=None)
@given(st.data(), list_histories(steps=5))
def test_a_loaded_session_with_lists_at_paths_edited_in_place_is_stored_exactly(
    data: st.DataObject, history: list[Any]
) -> None:
    """The same for sessions whose lists sit anywhere (``messages``,
    ``state.messages``, ...): whatever the caller does in place to what a load lent
    it (items, nested dicts, lists turning into other values), the store holds and
    hands out exactly what was last saved."""
    path = _path()
    with eventlog.open(path, snapshot_every=2, **TINY) as s:
        for state in history:
            s.save("s", state)
    expected = copy.deepcopy(history[-1])
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None and same(loaded, expected)
        for _ in range(data.draw(st.integers(1, 8), label="steps")):
            step = data.draw(st.sampled_from(["edit", "edit", "save", "load", "fold"]))
            if step == "edit":
                data.draw(list_edit(loaded))
            elif step == "save":
                s.save("s", loaded)
                expected = copy.deepcopy(loaded)
            elif step == "load":
                again = s.load("s")
                assert same(again, expected)
                if data.draw(st.booleans(), label="use the new load"):
                    loaded = again
            else:
                assert same(s.fold("s"), expected)
        assert same(s.load("s"), expected)
    with eventlog.open(path, **TINY) as s:
        assert same(s.load("s"), expected)
