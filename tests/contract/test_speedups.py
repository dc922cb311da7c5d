"""The optional C extension: each of its walkers gives exactly the answers of its
pure-Python twin (the oracle), and it is only walkers, on the public C API.

The property tests run where the extension is in use; CI runs the whole suite once
with it (``EVENTLOG_REQUIRE_SPEEDUPS=1``: not having it there is an error) and once
without it (``EVENTLOG_NO_SPEEDUPS=1``), where eventlog runs on the twins alone."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import mirror, speedups, values
from eventlog.codec import Ref
from eventlog.errors import InvalidValueError
from eventlog.mirror import Mirror
from eventlog.testing import json_values

SOURCE = Path(speedups.__file__).with_name("_speedups.c")

needs_ext = pytest.mark.skipif(not speedups.ACTIVE, reason=f"the C extension is not in use: {speedups.why_not}")


def test_the_required_extension_is_in_use() -> None:
    """CI's first run requires the extension (a build that silently failed would
    otherwise leave the C walkers untested); its second run switches it off."""
    if os.environ.get("EVENTLOG_REQUIRE_SPEEDUPS"):
        assert speedups.ACTIVE, f"EVENTLOG_REQUIRE_SPEEDUPS is set but {speedups.why_not}"
    if os.environ.get(speedups.ENV, "") not in ("", "0"):
        assert not speedups.ACTIVE and values._c_scan is None and mirror.MODE != "c"


def test_the_extension_holds_only_walkers_on_the_public_api() -> None:
    """No CBOR codec, no private CPython API or internal header, nothing that
    changes the interpreter's state (the collector, memory advice)."""
    text = SOURCE.read_text()
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments may name what is not there
    names = re.findall(r'\{"(\w+)"', code)
    assert sorted(names) == ["copy", "copy_models", "count", "record", "scan", "unchanged"]
    assert not re.findall(r"\b_Py\w*", code)
    assert "internal/" not in code and "Py_BUILD_CORE" not in code
    for word in ("PyGC_", "madvise", "decode", "encode", "gc.", "PyEval_", "threshold("):
        assert word not in code, word


def test_the_switch_makes_eventlog_ignore_the_extension() -> None:
    """EVENTLOG_NO_SPEEDUPS=1 (a fresh process): the twins run, and the first store
    opened logs once, at INFO on ``eventlog.speedups``, that the extension is not in
    use and why."""
    code = (
        "import logging, eventlog\n"
        "from eventlog import speedups, values, mirror\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(levelname)s %(message)s')\n"
        "assert not speedups.ACTIVE and values._c_scan is None and mirror.MODE != 'c'\n"
        "for _ in range(3):\n"
        "    with eventlog.open(':memory:') as s:\n"
        "        s.save('s', {'entries': [{'id': 1}]})\n"
        "        assert s.load('s') == {'entries': [{'id': 1}]}\n"
    )
    env = {**os.environ, speedups.ENV: "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("eventlog")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("eventlog.speedups INFO") and f"{speedups.ENV} is set" in lines[0]


def test_running_with_the_extension_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="eventlog")
    speedups.note()
    if speedups.ACTIVE:
        assert not caplog.records


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
    [Ref(0, 1, b"\0" * 32)], {"r": Ref(0, 1, b"\0" * 32), "n": nested(150)},
]  # fmt: skip

storable = st.recursive(
    json_values(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@needs_ext
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_scan_agrees_on_hostile_values(value: Any) -> None:
    assert speedups.ext is not None
    for threshold in (64, 1 << 15):
        assert speedups.ext.scan(value, threshold, values.MAX_DEPTH) == python_answer(value, threshold)


def shared(depth: int) -> Any:
    """A value of ``2 ** depth`` leaves as a tree, built of ``depth`` containers
    each holding the one below twice (what CBOR's value sharing can decode to)."""
    v: Any = "leaf"
    for i in range(depth):
        v = [v, v] if i % 2 else {"a": v, "b": v}
    return v


def tree(depth: int) -> Any:
    """``shared(depth)`` without the sharing: ``2 ** depth`` leaves in new containers."""
    if depth == 0:
        return "leaf"
    return [tree(depth - 1), tree(depth - 1)] if (depth - 1) % 2 else {"a": tree(depth - 1), "b": tree(depth - 1)}


def tree_size(value: Any) -> int:
    """The oracle of the oracle: values counted by plain recursion."""
    if type(value) is dict:
        return 1 + sum(tree_size(v) for v in value.values())
    if type(value) is list:
        return 1 + sum(tree_size(v) for v in value)
    return 1


@given(value=storable, slack=st.integers(-3, 3), twice=st.booleans())
def test_count_is_the_tree_size_within_its_budget(value: Any, slack: int, twice: bool) -> None:
    if twice and type(value) in (dict, list):  # one container in two places: never a tree
        for holder in ([value, value], {"x": value, "y": [value]}):
            assert values._count(holder, 1 << 20, values.MAX_DEPTH + 1) == -1
            if speedups.ext is not None:
                assert speedups.ext.count(holder, 1 << 20, values.MAX_DEPTH + 1) == -1
    n = tree_size(value)
    budget = max(n + slack, 0)
    want = n if n <= budget else -1
    assert values._count(value, budget, values.MAX_DEPTH + 1) == want
    if speedups.ext is not None:
        assert speedups.ext.count(value, budget, values.MAX_DEPTH + 1) == want


@pytest.mark.parametrize("count", [values._count, speedups.ext.count if speedups.ext else None], ids=["python", "c"])
def test_count_of_shared_values_stops_at_its_budget(count: Any) -> None:
    """A value that would take 2**60 steps to walk as a tree is refused after about
    its budget's worth (a hang otherwise)."""
    if count is None:
        pytest.skip("no C extension")
    assert count(shared(60), 10_000, 220) == -1
    assert count(shared(10), 1 << 30, 220) == -1  # within any budget, still not a tree
    assert count(tree(10), 1 << 11, 220) == (1 << 11) - 1  # 1023 containers, 1024 leaves
    assert count(tree(10), (1 << 11) - 2, 220) == -1
    loop: list[Any] = [1]
    loop.append(loop)
    assert count(loop, 100, 220) == -1 and count({"a": [loop]}, 100, 220) == -1
    leaf = "the same str in many places is a tree"
    assert count([leaf] * 10, 100, 220) == 11
    assert count(nested(200), 1000, 200) == 201 and count(nested(201), 1000, 200) == -1  # too deep
    assert count([], -1, 10) == -1


@needs_ext
@given(value=storable | st.sampled_from(HOSTILE), threshold=st.integers(64, 200_000), size=st.integers(0, 60_000))
def test_scan_agrees_on_any_value(value: Any, threshold: int, size: int) -> None:
    assert speedups.ext is not None
    for v in (value, [value, "é" * size], {"big": b"\0" * size, "v": value}):
        assert speedups.ext.scan(v, threshold, values.MAX_DEPTH) == python_answer(v, threshold)


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


@needs_ext
@given(value=storable | st.sampled_from(HOSTILE[:12]))
def test_copy_has_new_containers_and_shared_leaves(value: Any) -> None:
    """The C copy and the Python twin make the same copy: new dicts and lists (exact
    ones only; anything else is shared), the same leaves, in the same order."""
    assert speedups.ext is not None
    copied = speedups.ext.copy(value)
    twin = values._copy(value)
    assert shape(copied) == shape(twin) == shape(value)
    assert not {id(c) for c in containers(copied)} & {id(c) for c in containers(value)}


def shape(v: Any) -> Any:
    """``v`` as nested tuples naming each container's type, with leaves by identity."""
    if type(v) is dict:
        return ("dict", tuple((k, shape(x)) for k, x in v.items()))
    if type(v) is list:
        return ("list", tuple(shape(x) for x in v))
    return ("leaf", id(v))


def trapped(setup: str, change: str, walk: str) -> str:
    """A script that runs ``walk`` twenty times while collections keep starting (a
    threshold of 5), each running a finalizer that makes ``change`` to what is
    walked (after ``setup``, which names it ``walked``), and asserts one ran."""
    return f"""
import gc
from eventlog import speedups
{setup}
hits = []
class Trap:
    def __del__(self):
        if walked:
            hits.append(1)
            {change}
gc.collect()
gc.set_threshold(5)
for _ in range(20):
    t = Trap()
    t.cycle = t
    del t
    {walk}
assert hits
"""


TRAP = trapped(
    'walked = [{"k": [i, {"x": [i]}]} for i in range(2000)]',
    # frees the list being walked, if it is
    'walked[len(walked) // 2]["k"] = None; del walked[len(walked) // 3 :]',
    "speedups.ext.copy(walked)",
)


@needs_ext
def test_copy_survives_a_value_changed_while_it_is_copied() -> None:
    """On Python 3.11 an allocation in the copy may run a collection, whose finalizers
    are Python code that may change the value being copied: the copy is then a mix of
    before and after, never a crash (the walk holds what it is inside, and reads a
    list within its current length).  The copy of eventlog 0.1 walked borrowed
    references and crashed here (SIGSEGV); in a subprocess, so that a crash is a
    failure, not the end of the test run."""
    done = subprocess.run([sys.executable, "-X", "dev", "-c", TRAP], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------- the mirror


entry_lists = st.lists(
    st.recursive(
        json_values(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=30,
    ),
    max_size=6,
)


@needs_ext
@given(entry_lists, st.data())
def test_the_c_mirror_records_and_checks_as_the_python_one(entries: list[Any], data: st.DataObject) -> None:
    """``record`` records the containers the portable walk records, each with its
    length, and ``unchanged`` answers as the portable check over the same record,
    before and after any one change."""
    assert speedups.ext is not None
    lists: tuple[list[Any], list[int], list[Any], list[Any]] = ([], [], [], [])
    assert speedups.ext.record(entries, *lists)
    python = _portable(Mirror, entries)
    assert sorted((id(c), n) for c, n in zip(python.containers, python.lens, strict=True)) == sorted(
        (id(c), n) for c, n in zip(lists[0], lists[1], strict=True)
    )
    assert speedups.ext.unchanged(*lists) and _portable(_check, lists)
    inner = [c for c in lists[0] if len(c)]
    if inner:
        target = data.draw(st.sampled_from(inner))
        if type(target) is dict:
            target[data.draw(st.sampled_from(sorted(target)))] = object()
        else:
            target[data.draw(st.integers(0, len(target) - 1))] = object()
        assert not speedups.ext.unchanged(*lists) and not _portable(_check, lists)


def _check(lists: tuple[list[Any], list[int], list[Any], list[Any]]) -> bool:
    m = Mirror([], full=True)
    m.containers, m.lens, m.keys, m.values = lists
    m.dicts = [c for c in m.containers if type(c) is dict]
    m.views = [c.values() if type(c) is dict else c for c in m.containers]
    return m.unchanged([])


def _portable(fn: Any, arg: Any) -> Any:
    """``fn(arg)`` with the mirror on its portable path (the pure-Python twin)."""
    saved = mirror.MODE
    mirror.MODE = "portable"
    try:
        return fn(arg) if fn is not Mirror else Mirror(arg, full=True)
    finally:
        mirror.MODE = saved


def _models() -> list[Any]:
    """Deserialized items as the LangGraph saver keeps them: pydantic 2 models (with
    and without extra fields and private attributes), dicts, lists and leaves."""
    pydantic = pytest.importorskip("pydantic")

    class Message(pydantic.BaseModel):
        content: Any
        tool_calls: list[dict[str, Any]] = pydantic.Field(default_factory=list)
        id: str | None = None

    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        role: str

    class Private(pydantic.BaseModel):
        x: int
        _seen: int = 0

    loose = Loose(role="tool", detail={"rows": [1, 2]}, note="n")
    empty_extra = Loose(role="user")
    private = Private(x=1)
    return [
        Message(content="hi", tool_calls=[{"name": "search", "args": {"q": "x"}}], id="m1"),
        Message(content=[{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:"}}]),
        loose,
        empty_extra,
        private,
        {"a": [1, {"b": 2}]},
        [1, "two", None],
        "leaf",
        3,
        None,
    ]


def _model_shape(v: Any) -> Any:
    """``shape`` of a value, or of a pydantic model: its class and what its slots hold."""
    import pydantic

    if isinstance(v, pydantic.BaseModel):
        extra = v.__pydantic_extra__
        fields_set = sorted(v.__pydantic_fields_set__)
        return (type(v), shape(v.__dict__), None if extra is None else shape(extra), fields_set, v.__pydantic_private__)
    return shape(v)


@needs_ext
def test_copy_models_makes_the_copies_its_twin_makes() -> None:
    """``copy_models`` and its pure-Python twin (``_copies``) copy the same items the
    same way: new instances of the same classes, new containers (the ``__dict__``, the
    extra, the fields set, the private dict), the same leaves, the same holders; and
    where an item is not one it copies, C gives up and the twin copies them all."""
    from eventlog import langgraph_objects as lo

    privates = [lo.fresh(m) if not isinstance(m, (dict, list)) else values.copy(m) for m in _models()]
    assert all(p is not None for p in privates[:4])
    # A model whose private attributes are an empty dict (fresh() declines one holding
    # any: copies() meets only what fresh() made), copied with a new empty dict.
    privates[4] = _models()[4]
    object.__setattr__(privates[4], "__pydantic_private__", {})
    lo._KINDS[type(privates[4])] = 1
    assert speedups.ext is not None
    done = speedups.ext.copy_models(privates, lo._KINDS, lo.LEAVES, lo._OBJECT_NEW)
    twin = lo._copies(privates)
    assert done is not None and twin[1] is not None
    assert [_model_shape(v) for v in done[0]] == [_model_shape(v) for v in twin[0]]
    assert [shape(h) for h in done[1]] == [shape(h) for h in twin[1]]
    assert (
        done[0][4].__pydantic_private__ == {}
        and done[0][4].__pydantic_private__ is not privates[4].__pydantic_private__
    )
    for copied, original in zip(done[0], privates, strict=True):
        if type(original) in lo.LEAVES:
            assert copied is original
            continue
        assert copied is not original and copied == original
        if not isinstance(original, (dict, list)):
            assert copied.__dict__ is not original.__dict__
            assert copied.__pydantic_fields_set__ is not original.__pydantic_fields_set__
            assert not {id(c) for c in containers(copied.__dict__)} & {id(c) for c in containers(original.__dict__)}
    # An item of a class it does not copy (kind 0): C gives up, the twin copies all.
    other = object()
    assert speedups.ext.copy_models([*privates, other], lo._KINDS, lo.LEAVES, lo._OBJECT_NEW) is None
    assert lo.copies([privates[0], {"x": 1}])[0][1] == {"x": 1}


MODELS_TRAP = trapped(
    "import pydantic\n"
    "from eventlog import langgraph_objects as lo\n"
    "class M(pydantic.BaseModel):\n"
    "    content: list\n"
    'walked = [lo.fresh(M(content=[{"i": i}])) for i in range(3000)]',
    "del walked[len(walked) // 3 :]",  # frees the models being walked, if it is
    "speedups.ext.copy_models(walked, lo._KINDS, lo.LEAVES, lo._OBJECT_NEW)",
)


@needs_ext
def test_copy_models_survives_the_list_changed_while_it_is_copied() -> None:
    """As copy(): finalizers run by a collection inside the walk may shorten the
    list being walked; the walk holds the item it is in and reads within the list's
    current length: never a crash (in a subprocess, so that a crash is a failure)."""
    pytest.importorskip("pydantic")
    done = subprocess.run([sys.executable, "-X", "dev", "-c", MODELS_TRAP], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
