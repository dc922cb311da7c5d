"""Any list is a log (issue 17, item 1): ``save()`` keeps every list of a session (a
top-level value, or one in dicts, such as ``state.messages``) item by item, and
nested dicts key by key, whatever the list is called; ``entries`` stays the special
case of ``append()``.  Round trips, positions, the size of what each save encodes,
damaged forms of the new operation, and the cache's rule for the new lists."""

from __future__ import annotations

import copy
import itertools
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog import codec
from eventlog.fold import MAX_PATH, At, Insert, SetFields, State, apply, diff, lists_in, ops_from_wire, ops_to_wire
from eventlog.testing import json_values
from eventlog.values import same

BACKENDS = pytest.mark.parametrize("kind", ["sqlite", "memory"])


def location(kind: str) -> str:
    if kind == "sqlite":
        return str(Path(tempfile.mkdtemp()) / "lists.db")
    return f"memory:lists-{uuid.uuid4().hex}"


# ----------------------------------------------------------------------------- histories

KEYS = ["messages", "entries", "state", "meta", "channel_values", "x"]
leaves = json_values(max_leaves=3)
items = st.one_of(leaves, st.fixed_dictionaries({"role": st.sampled_from(["user", "ai"]), "content": leaves}))


def values(depth: int) -> st.SearchStrategy[Any]:
    """A value that may hold lists and dicts down to ``depth`` more keys."""
    base = st.one_of(leaves, st.lists(items, max_size=4))
    if depth <= 0:
        return base
    return st.one_of(base, st.dictionaries(st.sampled_from(KEYS), values(depth - 1), max_size=3))


def containers(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of the dicts and lists in a session dict (the dict itself: ``()``)."""
    found = [path]
    if type(value) is dict:
        for k, v in value.items():
            if type(v) in (dict, list) and len(path) < MAX_PATH + 1:
                found += containers(v, (*path, k))
    return found


def at(value: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        value = value[k]
    return value


@st.composite
def edit(draw: st.DrawFn, state: dict[str, Any]) -> None:
    """Change ``state`` in place, as a runtime does between saves."""
    path = draw(st.sampled_from(containers(state)))
    target = at(state, path)
    if type(target) is list:
        n = len(target)
        how = draw(st.sampled_from(["append", "insert", "delete", "replace", "inner", "clear", "swap"]))
        if how == "append":
            target.extend(draw(st.lists(items, min_size=1, max_size=4)))
        elif how == "insert":
            target.insert(draw(st.integers(0, n)), draw(items))
        elif how == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del target[i : i + draw(st.integers(1, n - i))]
        elif how == "replace" and n:
            target[draw(st.integers(0, n - 1))] = draw(items)
        elif how == "inner" and n and type(target[-1]) is dict:
            target[-1]["content"] = draw(leaves)  # an item changed in place
        elif how == "clear":
            target.clear()
        elif how == "swap" and n > 1:
            target[0], target[-1] = target[-1], target[0]
        return
    how = draw(st.sampled_from(["set", "drop", "reorder", "to_scalar", "to_list", "to_dict"]))
    key = draw(st.sampled_from(KEYS))
    if how == "set":
        target[key] = draw(values(max(0, MAX_PATH - len(path) - 1)))
    elif how == "drop" and target:
        del target[draw(st.sampled_from(list(target)))]
    elif how == "reorder" and len(target) > 1:
        first = next(iter(target))
        target[first] = target.pop(first)  # the first key moved to the end
    elif how == "to_scalar" and target:
        target[draw(st.sampled_from(list(target)))] = draw(leaves)  # a list or dict becomes a non-container
    elif how == "to_list":
        target[key] = draw(st.lists(items, max_size=3))
    elif how == "to_dict":
        target[key] = {"messages": draw(st.lists(items, max_size=3)), "other": draw(leaves)}


@st.composite
def histories(draw: st.DrawFn, steps: int = 10) -> list[dict[str, Any]]:
    """Session dicts as saved one after the other, edited in place between saves
    (each recorded as a deep copy)."""
    state: dict[str, Any] = {
        "messages": draw(st.lists(items, max_size=3)),
        "state": {"messages": draw(st.lists(items, max_size=3)), "other": 1},
    }
    saved = [copy.deepcopy(state)]
    for _ in range(draw(st.integers(1, steps))):
        for _ in range(draw(st.integers(1, 3))):
            draw(edit(state))
        saved.append(copy.deepcopy(state))
    return saved


def replay(kind: str, history: list[dict[str, Any]], snap: bool = False, **options: Any) -> None:
    """Save ``history`` (editing one dict in place, as runtimes do; with ``snap`` a
    snapshot after every save), then check the load and every position, in a new
    handle too."""
    where = location(kind)
    with eventlog.open(where, **options) as store:
        live = copy.deepcopy(history[0])
        for k, state in enumerate(history):
            if k:  # the caller's own dict, changed in place toward the next state
                live.clear()
                live.update(copy.deepcopy(state))
            store.save("s", state if k % 2 else live)
            if snap:
                store.snapshot("s")
            assert same(store.load("s"), state)
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state), k
        if kind == "memory":
            return
    with eventlog.open(where, **options) as store:
        assert same(store.load("s"), history[-1])
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state), k
        assert store.verify().ok


@BACKENDS
@given(history=histories())
def test_any_edit_to_lists_and_dicts_round_trips(kind: str, history: list[dict[str, Any]]) -> None:
    replay(kind, history, snapshot_every=2)


@BACKENDS
@given(history=histories(steps=6))
def test_round_trips_with_segmented_snapshots(kind: str, history: list[dict[str, Any]]) -> None:
    """Snapshots after every event, segments of about 1 KiB: lists at paths are cut
    into segments and reused."""
    replay(kind, history, snap=True, snapshot_every=0, chunk_bytes=2048)


def test_same_objects_edited_in_place_are_seen(tmp_path: Path) -> None:
    """The mirror vouches only for what is unchanged: an item changed in place, an
    equal but other value (1.0 for 1), a list emptied and refilled."""
    with eventlog.open(tmp_path / "m.db") as store:
        msgs: list[Any] = [{"n": 1}, {"n": 2}]
        data = {"state": {"messages": msgs}}
        store.save("s", data)
        store.save("s", data)  # the mirror is full from here
        msgs[0]["n"] = 1.0
        store.save("s", data)
        assert same(store.load("s"), {"state": {"messages": [{"n": 1.0}, {"n": 2}]}})
        msgs.append({"n": 3})
        store.save("s", data)
        msgs[:] = [{"n": 9}]
        store.save("s", data)
        assert same(store.load("s"), data)
        assert same(store.fold("s", at=4), {"state": {"messages": [{"n": 1.0}, {"n": 2}, {"n": 3}]}})


# ----------------------------------------------------------------------------- what a save encodes


@pytest.mark.parametrize("shape", ["entries", "messages", "state.messages", "channel_values.messages"])
def test_a_save_appending_k_items_encodes_those_items(tmp_path: Path, shape: str) -> None:
    """Each save of a growing conversation writes an event about the size of the
    items it adds, whatever the list is called and where it sits: flat as it grows."""
    with eventlog.open(tmp_path / "k.db", snapshot_every=0) as store:
        msgs: list[Any] = []
        sizes = []
        for turn in range(120):
            msgs += [{"role": "user", "content": f"question {turn} " + "x" * 200}, {"role": "ai", "content": "y" * 300}]
            if shape == "entries" or shape == "messages":
                data: dict[str, Any] = {shape: msgs, "turn": turn}
            else:
                outer, inner = shape.split(".")
                data = {outer: {inner: msgs, "turn": turn}, "v": 1}
            store.save("s", data)
            sizes.append(store.info("s").stored_bytes)
        per_save = [b - a for a, b in itertools.pairwise(sizes)]
        assert max(per_save[-20:]) < 1000, per_save[-20:]  # 2 items of ~550 bytes of JSON, compressed
        assert max(per_save[-20:]) <= max(per_save[:20]) + 64  # flat, not growing with the session
        events = list(store.events("s"))
        last = events[-1].ops
        inserted = [op for op in last if type(op) is Insert or (type(op) is At and type(op.op) is Insert)]
        assert len(inserted) == 1
        op = inserted[0]
        assert len(op.entries if type(op) is Insert else op.op.entries) == 2  # type: ignore[union-attr]
        assert same(store.load("s"), data)


def test_a_sibling_key_change_does_not_rewrite_the_list() -> None:
    old = State()
    data: dict[str, Any] = {"state": {"messages": [1, 2, 3], "other": "a"}, "top": 1}
    apply(old, diff(State(), data))
    ops = diff(old, {"state": {"messages": [1, 2, 3], "other": "b"}, "top": 1})
    assert ops == [At(("state",), SetFields({"other": "b"}, None))]
    ops = diff(old, {"state": {"other": "a", "messages": [1, 2, 3, 4]}, "top": 1})
    assert ops == [At(("state", "messages"), Insert(3, [4])), At(("state",), SetFields({}, ["other", "messages"]))]


def test_apply_never_changes_the_values_of_an_operation() -> None:
    """An event's values (kept by a reader, such as the viewer) are not the state's:
    an edit at a path applies to the state's own copy."""
    value = {"messages": [1, 2]}
    first = [SetFields({"state": value})]
    state = State()
    apply(state, first)
    apply(state, [At(("state", "messages"), Insert(2, [3])), At(("state",), SetFields({"k": 1}))])
    assert value == {"messages": [1, 2]}
    assert state.session() == {"state": {"messages": [1, 2, 3], "k": 1}}
    clone = state.clone()
    apply(clone, [At(("state", "messages"), Insert(0, [0]))])
    assert state.session() == {"state": {"messages": [1, 2, 3], "k": 1}}


def test_lists_in_finds_lists_down_to_the_deepest_path() -> None:
    deep: dict[str, Any] = {"l": []}
    for k in "cba":
        deep = {k: deep}
    found = lists_in({"entries": [1], "m": [2], "s": {"m": [3], "x": 1}, **deep})
    assert set(found) == {("entries",), ("m",), ("s", "m"), ("a", "b", "c", "l")}
    assert ("a", "b", "c", "d", "l") not in lists_in({"a": {"b": {"c": {"d": {"l": []}}}}})


def test_values_at_a_path_keep_the_depth_limit(tmp_path: Path) -> None:
    """An item appended at a path is held to the nesting limit it has inside the
    session, as it would be if the field were set whole."""
    deep: Any = "leaf"
    for _ in range(eventlog.values.MAX_DEPTH - 1):
        deep = [deep]
    with eventlog.open(tmp_path / "d.db") as store:
        store.save("s", {"state": {"messages": []}})
        with pytest.raises(eventlog.InvalidValueError):
            store.save("s", {"state": {"messages": [deep]}})  # appended at a path
        with pytest.raises(eventlog.InvalidValueError):
            store.save("t", {"state": {"messages": [deep]}})  # the field set whole
        store.save("s", {"state": {"messages": [deep[0]]}})  # one level less: fits both ways
        store.save("t", {"state": {"messages": [deep[0]]}})
        assert same(store.load("s"), store.load("t"))


# ----------------------------------------------------------------------------- damaged forms


@pytest.mark.parametrize(
    "wire",
    [
        [[5, [], [0, 0, [1]]]],  # an empty path
        [[5, ["a", "b", "c", "d", "e"], [0, 0, [1]]]],  # too deep
        [[5, ["a", 1], [0, 0, [1]]]],  # a key that is not a str
        [[5, "a", [0, 0, [1]]]],  # a path that is not a list
        [[5, ["a"], [4, "root", None]]],  # a tombstone at a path
        [[5, ["a"], [5, ["b"], [0, 0, [1]]]]],  # a path in a path
        [[5, ["a"], [0, -1, [1]]]],  # a negative index
        [[5, ["a"], [0, 0, "no list"]]],
        [[5, ["a"], [3, {"k": 1}, [1]]]],  # an order of other than str
        [[5, ["a", "b", "c", "d"], [3, {"k": 1}, None]]],  # keys of a dict too deep to have them
        [[5, ["a"], [9, 0, 0]]],
        [[5, ["a"], [0, 0]]],
    ],
)
def test_malformed_operations_at_a_path_are_decode_errors(wire: Any) -> None:
    with pytest.raises(codec.DecodeError):
        ops_from_wire(wire)


def test_the_entries_marker_inside_an_operation_at_a_path_is_damage() -> None:
    with pytest.raises(codec.DecodeError):
        ops_from_wire([[5, ["state"], [3, {"k": eventlog.ENTRIES}, None]]])


def test_operations_at_a_path_that_do_not_fit_raise_value_error() -> None:
    state = State()
    apply(state, [SetFields({"a": [1], "d": {"x": 1}, "s": "str"})])
    for op in (
        At(("b",), Insert(0, [1])),  # nothing there
        At(("a",), Insert(5, [1])),  # past the end
        At(("a",), SetFields({"k": 1})),  # a list, not a dict
        At(("d",), Insert(0, [1])),  # a dict, not a list
        At(("s", "t"), Insert(0, [1])),  # through a str
        At(("d",), SetFields({}, ["nope"])),
    ):
        with pytest.raises(ValueError):
            apply(state.clone(), [op])


def test_a_damaged_event_at_a_path_is_a_corruption_error(tmp_path: Path) -> None:
    """A well-formed operation that does not fit (an insert past the end) in a
    stored event: load() raises CorruptionError, never returns other data."""
    path = tmp_path / "c.db"
    with eventlog.open(path) as store:
        store.save("s", {"messages": [1]})
        store.save("s", {"messages": [1, 2]})
    from eventlog.store import Store

    with eventlog.open(path) as store:
        assert isinstance(store, Store)
        log, backend = store._log, store._backend
        row = backend.head("s")
        assert row is not None
        [stored] = list(backend.events(row.sid, 1, 2))
        event = log.event("s", row.sid, row.key, 2, stored.pos, stored.ts_ms, stored.frame, True)
        assert event.ops == (At(("messages",), Insert(1, [2])),)
    assert ops_to_wire([At(("messages",), Insert(1, [2]))]) == [[5, ["messages"], [0, 1, [2]]]]
    assert ops_from_wire([[5, ["messages"], [0, 1, [2]]]]) == (At(("messages",), Insert(1, [2])),)


# ----------------------------------------------------------------------------- the cache's rule


def test_nothing_of_a_callers_lists_is_kept_or_handed_out(tmp_path: Path) -> None:
    """Lists at paths follow the cache's rule: what a caller gave or got may be
    changed at will, and the store never sees it."""
    with eventlog.open(tmp_path / "r.db") as store:
        msgs: list[Any] = [{"a": 1}]
        store.save("s", {"state": {"messages": msgs}})
        msgs[0]["a"] = 2  # changed after the save, not saved
        msgs.append("later")
        got = store.load("s")
        assert got == {"state": {"messages": [{"a": 1}]}}
        got["state"]["messages"].append("mine")  # changed by the reader
        got["state"]["x"] = 1
        assert store.load("s") == {"state": {"messages": [{"a": 1}]}}
        store.save("s", {"state": {"messages": [{"a": 1}, "b"]}})
        assert store.load("s") == {"state": {"messages": [{"a": 1}, "b"]}}
        assert got == {"state": {"messages": [{"a": 1}, "mine"], "x": 1}}


def test_append_still_works_on_entries_beside_other_lists(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "a.db") as store:
        store.save("s", {"entries": [{"id": "a"}], "messages": [1]})
        store.append("s", [{"id": "b"}])
        store.save("s", {**store.load("s"), "messages": [1, 2]})  # type: ignore[dict-item]
        assert same(store.load("s"), {"entries": [{"id": "a"}, {"id": "b"}], "messages": [1, 2], "leafId": "b"})


@given(st.lists(st.sampled_from([[1], [1, 2], {"m": [1]}, {"m": [2, 1]}, "x", None]), min_size=1, max_size=6))
def test_a_list_turning_into_other_values_and_back(seq: list[Any]) -> None:
    state = State()
    for v in seq:
        data = {"a": copy.deepcopy(v), "b": {"inner": copy.deepcopy(v)}}
        apply(state, ops_from_wire(ops_to_wire(diff(state, data))))
        assert same(state.session(), data)
