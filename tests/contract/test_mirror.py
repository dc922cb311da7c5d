"""The identity mirror says "unchanged" only when nothing at all changed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from eventlog import mirror
from eventlog.mirror import Mirror


class Key(str):
    """A str subclass: equal to the plain key, but not storable as one."""


@pytest.fixture(params=["c", "gc", "portable"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs on each way of checking: the C extension, one gc.get_referents
    call, and plain Python (used where neither is available)."""
    if request.param == "c" and mirror._c_unchanged is None:
        pytest.skip("the C extension is not in use (tests/contract/test_speedups.py says why)")
    monkeypatch.setattr(mirror, "MODE", request.param)


def test_the_fast_path_is_used_on_cpython() -> None:
    import platform

    assert mirror._referents_are_values() is (platform.python_implementation() == "CPython")


def entries() -> list[Any]:
    return [
        {"id": "a", "message": {"role": "user", "content": [{"type": "text", "text": "hi"}], "n": 1}},
        {"id": "b", "x": [1, [2, 3]], "y": {"z": 0.0}, "w": 1},
    ]


EDITS: list[Callable[[list[Any]], Any]] = [
    lambda es: es[0]["message"].__setitem__("n", 1.0),  # == but another type
    lambda es: es[0]["message"].__setitem__("n", True),
    lambda es: es[1]["y"].__setitem__("z", -0.0),
    lambda es: es[1].__setitem__("id", es[1].pop("id")),  # key order
    lambda es: es[1].__setitem__("v", es[1].pop("w")),  # key renamed, same value object
    lambda es: (es[1]["y"].__setitem__("q", 1), es[1].pop("w")),  # moved between dicts
    lambda es: es[1]["x"][1].append(4),
    lambda es: es[1]["x"].__setitem__(1, [2, 3]),  # replaced by an equal list
    lambda es: es.__setitem__(0, copy.deepcopy(es[0])),
    lambda es: es.pop(),
    lambda es: es[1].__setitem__(Key("v"), es[1].pop("w")),  # renamed to an equal-looking key
    lambda es: (es[1].pop("w"), es[1].__setitem__(Key("w"), 1)),  # re-keyed by a str subclass
    lambda es: (es[0]["message"].clear(), es[0]["message"].update(role="user", content=[], n=1)),
]


def test_untouched_entries_are_unchanged_and_appends_are_fine() -> None:
    es = entries()
    m = Mirror(es, full=True)
    assert m.unchanged(es)
    es.append({"id": "c"})
    assert m.unchanged(es)
    assert not Mirror(es, full=False).unchanged(es)  # a shallow mirror never vouches


@pytest.mark.parametrize("edit", EDITS)
def test_any_edit_is_noticed(edit: Callable[[list[Any]], Any]) -> None:
    es = entries()
    m = Mirror(es, full=True)
    edit(es)
    assert not m.unchanged(es)


@pytest.mark.parametrize(
    "edit",
    [
        lambda es: es[1].__setitem__("w", es[1].pop("w")),  # the last key moved to the end: same order
        lambda es: es[1].__setitem__("id", es[1]["id"]),  # the same object assigned again
        lambda es: es[1].__setitem__("id", "b"),  # the same value assigned again
    ],
)
def test_edits_that_store_the_same_value_change_nothing(edit: Callable[[list[Any]], Any]) -> None:
    es = entries()
    m = Mirror(es, full=True)
    edit(es)
    assert m.unchanged(es)


def test_a_dict_that_once_held_a_non_str_key_is_not_vouched_for_by_the_gc_path() -> None:
    es = entries()
    es[1][0] = 0
    del es[1][0]
    m = Mirror(es, full=True)
    # The gc path cannot prove such a dict's keys are exact str; the others compare
    # keys by identity and can.
    assert m.unchanged(es) is (mirror.MODE != "gc")
    es[1][Key("v")] = es[1].pop("w")
    assert not m.unchanged(es)


def test_items_moved_between_containers_are_noticed() -> None:
    x = "same"
    es: list[Any] = [{"a": [x], "b": [x, x]}, {"p": {"k": x}, "q": {"l": x, "m": x}}]
    m = Mirror(es, full=True)
    es[0]["a"].append(es[0]["b"].pop())
    assert not m.unchanged(es)
    es = [{"p": {"k": x}, "q": {"l": x, "m": x}}]
    m = Mirror(es, full=True)
    es[0]["p"]["l"] = es[0]["q"].pop("l")
    assert not m.unchanged(es)


@pytest.mark.parametrize("edit", [e for e in EDITS if e is not EDITS[8] and e is not EDITS[9]])
def test_what_a_mirror_keeps_is_untouched_until_an_edit_below_it(edit: Callable[[list[Any]], Any]) -> None:
    """``untouched()`` (the guard of what a load lent) checks the kept entries
    themselves, whatever list now holds them; a clone extends apart from its origin."""
    es = entries()
    m = Mirror(es, full=True)
    twin = m.clone()
    assert twin.origin is m and m.untouched() and twin.untouched()
    twin.extend([{"id": "c", "d": {}}])
    assert len(twin.entries) == 3 and len(m.entries) == 2
    twin.entries[2]["d"]["k"] = 1
    assert m.untouched() and not twin.untouched()
    edit(es)
    assert not m.untouched()


@pytest.mark.parametrize("edit", EDITS)
def test_a_clone_checks_its_origin_record_and_the_origin_stays_as_it_was(edit: Callable[[list[Any]], Any]) -> None:
    """A clone records nothing again: it checks its origin's record as the start of
    its own, so an edit to what the origin recorded fails the clone too, and the
    origin, whose record its clones rely on, can no longer be extended."""
    es = entries()
    m = Mirror(es, full=True)
    twin = m.clone()
    assert twin.unchanged(es) and not twin.containers  # nothing recorded twice
    grown = [*es, {"id": "c", "d": {"k": [1]}}]
    twin.extend(grown[2:])
    assert twin.unchanged(grown) and not twin.unchanged(es)  # (es lacks the appended entry)
    with pytest.raises(RuntimeError):
        m.extend([{"id": "d"}])
    assert len(m.entries) == 2 and m.untouched()
    edit(es)
    if len(es) == 2 and es[0] is grown[0] and es[1] is grown[1]:  # an edit below the entries
        assert not twin.unchanged(grown) and not twin.untouched()
    grown[2]["d"]["k"].append(2)
    assert not twin.untouched()
