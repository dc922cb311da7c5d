"""The optional C extension gives exactly the answers of the Python code it speeds up."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import values
from eventlog.errors import InvalidValueError
from eventlog.testing import json_values

if values._c_scan is None:
    if os.environ.get("EVENTLOG_REQUIRE_SPEEDUPS"):
        raise RuntimeError("EVENTLOG_REQUIRE_SPEEDUPS is set but eventlog._speedups is not built")
    pytest.skip("eventlog._speedups is not built here", allow_module_level=True)


class Text(str):
    pass


def python_answer(value: Any, threshold: int) -> bool | None:
    try:
        return values._validate(value, threshold, 0)
    except InvalidValueError:
        return None


def nested(depth: int) -> Any:
    v: Any = "leaf"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


HOSTILE: list[Any] = [
    (1, 2), {1: "int key"}, {True: "bool key"}, {Text("k"): 1}, Text("s"), bytearray(b"x"), memoryview(b"x"),
    {"a": [1, 2, {3}]}, [frozenset()], 1 + 2j, object(), {"a": {"b": [None, 1.5, -0.0, True, b"x", (1,)]}},
    nested(199), nested(200), nested(201), nested(400), [nested(199)], {"x": nested(199)},
]  # fmt: skip

storable = st.recursive(
    json_values(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_scan_agrees_on_hostile_values(value: Any) -> None:
    for threshold in (64, 1 << 15):
        assert values._c_scan(value, threshold, values.MAX_DEPTH) == python_answer(value, threshold)


@given(value=storable | st.sampled_from(HOSTILE), threshold=st.integers(64, 200_000), size=st.integers(0, 60_000))
def test_scan_agrees_on_any_value(value: Any, threshold: int, size: int) -> None:
    for v in (value, [value, "é" * size], {"big": b"\0" * size, "v": value}):
        assert values._c_scan(v, threshold, values.MAX_DEPTH) == python_answer(v, threshold)


def test_validate_still_words_the_error() -> None:
    with pytest.raises(InvalidValueError, match="dict key 1 is a int"):
        values.validate({"a": {1: 2}}, 1 << 15)
    with pytest.raises(InvalidValueError, match="nested deeper than 200"):
        values.validate(nested(250), 1 << 15)


def containers(value: Any) -> list[Any]:
    out: list[Any] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) in (dict, list):
            out.append(v)
            stack.extend(v.values() if type(v) is dict else v)
    return out


@given(value=storable)
def test_copy_has_new_containers_and_shared_leaves(value: Any) -> None:
    assert values._c_copy is not None
    copied = values._c_copy(value)
    assert values.same(copied, value) and values.same(values._copy(value), copied)
    assert not {id(c) for c in containers(copied)} & {id(c) for c in containers(value)}
    if type(value) is dict:
        for k, v in value.items():
            if type(v) not in (dict, list):
                assert copied[k] is v
