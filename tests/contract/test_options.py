"""The options of a store: one :class:`eventlog.Options`, every option checked in one
place before any file is touched, shared by ``open``, ``open_async`` and the Agents
SDK session; and every bad argument is an :class:`eventlog.InvalidValueError`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog import options as opts
from eventlog.agents import EventlogSession
from eventlog.options import AsyncOptionValues, Options, OptionValues

ROOT = Path(__file__).resolve().parents[2]
NAMES = Options.names()


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


# ---------------------------------------------------------------------- bad values

#: Values that are not ints, whatever an int option's range (True is not 1 here).
NOT_INTS = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.builds(object),
)


def _ints(lo: int, hi: int | None, *, none_ok: bool = False) -> st.SearchStrategy[Any]:
    bad = [NOT_INTS, st.integers(max_value=lo - 1)]
    if hi is not None:
        bad.append(st.integers(min_value=hi + 1))
    if not none_ok:
        bad.append(st.none())
    return st.one_of(*bad)


BAD: dict[str, st.SearchStrategy[Any]] = {
    "max_cell_bytes": _ints(opts.MIN_CELL_BYTES, opts.MAX_CELL_BYTES),
    "synchronous": st.one_of(
        st.text(max_size=8).filter(lambda s: s.upper() not in opts.SYNCHRONOUS or not s.isascii()),
        st.sampled_from(["full ", " OFF", "MEDIUM", "", "oﬀ"]),  # the last: "o", then the ligature "ff"
        st.binary(max_size=6),
        st.integers(),
        st.booleans(),
        st.none(),
    ),
    "snapshot_every": _ints(0, None),
    "snapshot_bytes": _ints(0, None),
    "large_value_bytes": _ints(opts.MIN_LARGE_VALUE_BYTES, opts.MAX_SIZE),
    # Over the default max_cell_bytes - 512 (and over SQLite's largest cell).
    "chunk_bytes": _ints(opts.MIN_CHUNK_BYTES, 2_000_000 - opts.CHUNK_ROOM, none_ok=True),
    "max_body_bytes": _ints(opts.MIN_BODY_BYTES, opts.MAX_SIZE),
    "cache_sessions": _ints(0, opts.MAX_SIZE),
    "busy_timeout": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not 0 <= x <= opts.MAX_BUSY_TIMEOUT),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.001, 10**400]),
        st.integers(max_value=-1),
        st.integers(min_value=opts.MAX_BUSY_TIMEOUT + 1),
        st.booleans(),
        st.text(max_size=4),
        st.none(),
    ),
    "chunk_key": st.one_of(
        st.binary(max_size=64).filter(lambda b: len(b) != 32),
        st.binary(min_size=32, max_size=32).map(memoryview),  # not bytes
        st.text(min_size=32, max_size=32),
        st.integers(),
        st.booleans(),
        st.lists(st.integers(0, 255), min_size=32, max_size=32),
    ),
    "readonly": st.one_of(st.integers(), st.none(), st.text(max_size=4), st.floats()),
}

KEYS = st.binary(min_size=32, max_size=32)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "max_cell_bytes": st.integers(opts.MIN_CELL_BYTES, opts.MAX_CELL_BYTES),
    "synchronous": st.sampled_from(opts.SYNCHRONOUS).flatmap(lambda s: st.sampled_from([s, s.lower(), s.title()])),
    "snapshot_every": st.integers(0, 1 << 40),
    "snapshot_bytes": st.integers(0, 1 << 40),
    "large_value_bytes": st.integers(opts.MIN_LARGE_VALUE_BYTES, opts.MAX_SIZE),
    "chunk_bytes": st.one_of(st.none(), st.integers(opts.MIN_CHUNK_BYTES, 2_000_000 - opts.CHUNK_ROOM)),
    "max_body_bytes": st.integers(opts.MIN_BODY_BYTES, opts.MAX_SIZE),
    "cache_sessions": st.integers(0, 1000),
    "busy_timeout": st.one_of(st.integers(0, opts.MAX_BUSY_TIMEOUT), st.floats(0, opts.MAX_BUSY_TIMEOUT)),
    "chunk_key": st.one_of(st.none(), KEYS, KEYS.map(bytearray)),
    "readonly": st.booleans(),
}


def test_every_option_has_its_strategies() -> None:
    assert set(BAD) == set(GOOD) == set(NAMES)


def _openers(path: str, given: dict[str, Any]) -> list[Callable[[], Any]]:
    """Every way of giving options to eventlog, with ``given``."""
    return [
        lambda: eventlog.open(path, **given),
        lambda: eventlog.Store(path, **given),
        lambda: eventlog.open_async(path, **given),
        lambda: eventlog.AsyncStore(path, readers=0, **given),
        lambda: EventlogSession("conv", path, **given),
        lambda: Options(**given),
        lambda: Options().replace(**given),
        lambda: eventlog.open(path, Options(), **given),
    ]


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_a_bad_value_of_any_option_is_refused_naming_it_before_the_file_is_touched(name: str, data: Any) -> None:
    """Before, busy_timeout, cache_sessions, snapshot_every, snapshot_bytes and
    max_body_bytes were never checked (a negative, NaN or True opened the store), and
    a bad one reached SQLite or C code (an OverflowError, a hang)."""
    bad = data.draw(BAD[name], label="bad")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.db")
        for make in _openers(path, {name: bad}):
            with pytest.raises(eventlog.InvalidValueError) as raised:
                make()
            message = str(raised.value)
            assert message.startswith(f"{name} must be "), message
            if name == "chunk_key":  # a secret, even a malformed one, is never shown
                assert not isinstance(bad, bytes) or len(bad) < 4 or repr(bad)[2:-1] not in message
            else:
                assert opts.shown(bad) in message, message
            assert os.listdir(d) == []  # nothing created: no store file, no -wal, -shm or -lock


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_a_good_value_of_any_option_is_taken(name: str, data: Any) -> None:
    good = data.draw(GOOD[name], label="good")
    o = Options(**{name: good})
    want = good
    if name == "synchronous":
        want = good.upper()
    elif name == "chunk_key" and good is not None:
        want = bytes(good)
    elif name == "busy_timeout":
        want = float(good)
    value = getattr(o, name)
    assert value == want and type(value) is type(want)
    assert o == Options().replace(**{name: good}) == opts.resolve(None, {name: good})
    if name != "readonly":  # (readonly needs a store file)
        with eventlog.open(":memory:", o) as store:
            assert store.options is o
            store.save("s", {"entries": [{"id": "a", "text": "x" * 100}]})
            assert store.load("s") == {"entries": [{"id": "a", "text": "x" * 100}]}


def test_the_keywords_still_work_and_override_an_options_object(tmp_path: Path) -> None:
    base = Options(synchronous="normal", cache_sessions=4)
    assert base.synchronous == "NORMAL"
    with eventlog.open(tmp_path / "a.db", synchronous="NORMAL") as store:
        assert store.options == Options(synchronous="NORMAL")
    with eventlog.open(tmp_path / "a.db", base, cache_sessions=0, snapshot_every=3) as store:
        assert store.options == Options(synchronous="NORMAL", cache_sessions=0, snapshot_every=3)
        for i in range(7):
            store.append("s", [{"id": str(i)}])
        assert store.stats()["snapshots"]["rows"] == 2  # at 3 and 6: the option took effect
    assert base == Options(synchronous="NORMAL", cache_sessions=4)  # unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.cache_sessions = 1  # type: ignore[misc]


@pytest.mark.parametrize("wrong", ["snapshot_evry", "journal_mode", "options_", "Synchronous"])
def test_a_name_that_is_not_an_option_is_an_invalid_value_everywhere(tmp_path: Path, wrong: str) -> None:
    """Before, an unknown option was a TypeError from open(), open_async() and the
    Agents session."""
    path = str(tmp_path / "s.db")
    for make in _openers(path, {wrong: 1}):
        with pytest.raises(eventlog.InvalidValueError, match=f"^'{wrong}' is not an option") as raised:
            make()
        assert "the options are: max_cell_bytes, synchronous" in str(raised.value)
    # readers is the async store's own: not an option of a Store.
    for make in (lambda: eventlog.open(path, readers=1), lambda: Options(readers=1)):
        with pytest.raises(eventlog.InvalidValueError, match=r"^'readers' is not an option"):
            make()
    assert os.listdir(tmp_path) == []
    with pytest.raises(eventlog.InvalidValueError, match="did you mean 'snapshot_every'"):
        eventlog.open(path, snapshot_evry=10)  # type: ignore[call-arg]
    with pytest.raises(eventlog.InvalidValueError, match="did you mean 'readers'"):
        eventlog.open_async(path, reader=1)  # type: ignore[call-arg]
    with pytest.raises(eventlog.InvalidValueError, match="takes the options as keywords"):
        Options(2_000_000)  # type: ignore[misc]


@pytest.mark.parametrize("wrong", [{"synchronous": "NORMAL"}, "NORMAL", 3, Options])
def test_the_options_argument_must_be_an_options_object(tmp_path: Path, wrong: Any) -> None:
    path = str(tmp_path / "s.db")
    for make in (
        lambda: eventlog.open(path, wrong),
        lambda: eventlog.open_async(path, wrong),
        lambda: EventlogSession("conv", path, wrong),
    ):
        with pytest.raises(eventlog.InvalidValueError, match=r"options must be an eventlog\.Options or None") as e:
            make()
        assert ("**options" in str(e.value)) == isinstance(wrong, dict)
    assert os.listdir(tmp_path) == []


def test_one_options_object_serves_open_open_async_and_the_agents_session(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    key = os.urandom(32)
    shared = Options(synchronous="NORMAL", snapshot_every=2, chunk_key=key, max_cell_bytes=100_000)
    image = "data:image/png;base64," + "A" * 50_000  # a large value: chunks keyed with the key
    with eventlog.open(path, shared) as store:
        assert store.options is shared
        store.append("conv", [{"id": "1", "role": "user", "content": image}])

    async def main() -> None:
        astore = eventlog.open_async(path, shared, readers=1)
        assert astore.options is shared and astore.readers == 1
        async with astore:
            assert (await astore.load("conv"))["entries"][0]["content"] == image  # type: ignore[index]
        async with EventlogSession("conv", path, shared, readers=0) as session:
            assert session.store.options is shared and session.store.readers == 0
            await session.add_items([{"id": "2", "role": "assistant", "content": "ok"}])
            assert [item["id"] for item in await session.get_items()] == ["1", "2"]
        # Overrides go on top of the shared object, for each alike.
        async with EventlogSession("conv", path, shared, cache_sessions=0) as session:
            assert session.store.options == shared.replace(cache_sessions=0)
            assert len(await session.get_items()) == 2
        # The same options without the key do not open it, wherever given.
        for astore in (
            eventlog.open_async(path, shared.replace(chunk_key=None)),
            EventlogSession("conv", path, shared, chunk_key=None).store,
        ):
            with pytest.raises(eventlog.KeyMismatchError):
                await astore
            await astore.close()

    run(main)
    with eventlog.open(path, shared, readonly=True) as store:
        assert store.seq("conv") == 2 and store.stats()["snapshots"]["rows"] >= 1


def test_an_agents_session_on_a_shared_store_takes_no_options(tmp_path: Path) -> None:
    async def main() -> None:
        async with eventlog.open_async(str(tmp_path / "s.db")) as store:
            for bad in ({"options": Options()}, {"synchronous": "OFF"}, {"readers": 1}):
                with pytest.raises(eventlog.InvalidValueError, match="store options are for a path"):
                    EventlogSession("conv", store, **bad)
            for parent in (5, "", "conv"):
                with pytest.raises(eventlog.InvalidValueError):
                    EventlogSession("conv", store, parent_id=parent)  # type: ignore[arg-type]

    run(main)


@pytest.mark.parametrize("readers", [-1, True, 1.0, "2", None, opts.MAX_READERS + 1])
def test_readers_is_checked(tmp_path: Path, readers: Any) -> None:
    path = str(tmp_path / "s.db")
    for make in (
        lambda: eventlog.open_async(path, readers=readers),
        lambda: EventlogSession("c", path, readers=readers),
    ):
        with pytest.raises(eventlog.InvalidValueError, match=r"^readers must be an int from 0 to 256"):
            make()
    assert os.listdir(tmp_path) == []


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("bad", [10**5000, -(10**5000), Unprintable()], ids=["huge", "-huge", "unprintable"])
def test_a_value_that_cannot_be_printed_is_still_an_invalid_value(open_store: Callable[..., Any], bad: Any) -> None:
    """An int over Python's 4,300 digits cannot be put in a message with repr(): the
    message says what it is instead (no ValueError from the message itself)."""
    for name in ("snapshot_every", "busy_timeout", "readonly"):
        with pytest.raises(eventlog.InvalidValueError, match=f"^{name} must be .*, not (an int of|a Unprintable)"):
            Options(**{name: bad})
    store = open_store(":memory:")
    store.save("s", {})
    for call in (
        lambda: store.compact(retain=-bad if type(bad) is int and bad > 0 else bad),
        lambda: store.load(bad),
        lambda: store.save("t", {bad: 1}),
        lambda: store.save("t", {}, parent_id=bad),
        lambda: store.fold(bad, at=-1),
        lambda: store.events(bad, since=-1),
    ):
        with pytest.raises(eventlog.InvalidValueError):
            call()
    past_the_head = type(bad) is int and bad > 0
    error = eventlog.NotFoundError if past_the_head else eventlog.InvalidValueError
    with pytest.raises(error, match=r"an int of \d+ bits|a Unprintable"):
        store.fold("s", at=bad)


def test_the_key_is_never_shown() -> None:
    key = b"k" * 32
    o = Options(chunk_key=key)
    assert "kkkk" not in repr(o) and "chunk_key" not in repr(o)
    assert o.chunk_key == key


def test_the_typed_keywords_are_the_options() -> None:
    """``OptionValues`` (what type checkers see for ``**overrides``) cannot drift from
    ``Options``: the same names, in the same order, with the same types."""
    fields = typing.get_type_hints(Options)
    assert list(fields) == list(NAMES)
    assert typing.get_type_hints(OptionValues) == fields
    assert typing.get_type_hints(AsyncOptionValues) == {**fields, "readers": int}
    for f in dataclasses.fields(Options):
        assert f.metadata["doc"], f.name
        assert f"``{f.name}``" in (Options.__doc__ or "")


def test_the_api_page_has_a_row_for_every_option_with_its_default() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = page.split("## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| `([^`]+)`", section, re.M)
    assert [name for name, _, _ in rows] == list(NAMES)
    defaults = Options()
    for name, _, default in rows:
        assert eval(default, {"__builtins__": {}}) == getattr(defaults, name), name


# ---------------------------------------------------------------------- other arguments


def test_bad_arguments_to_the_calls_are_invalid_values(open_store: Callable[..., Any], db_path: str) -> None:
    """compact() raised a bare ValueError for retain and batch, fold(at=-1 or "1")
    NotFoundError, parent(5) returned None, and vacuum and progress went unchecked."""
    store = open_store(db_path, synchronous="NORMAL")
    store.save("s", {"entries": [{"id": "a"}]})
    calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: store.compact(retain=-1), "retain must be"),
        (lambda: store.compact(retain=True), "retain must be"),
        (lambda: store.compact(retain=1.0), "retain must be"),
        (lambda: store.compact(batch=0), "batch must be"),
        (lambda: store.compact(batch="500"), "batch must be"),
        (lambda: store.compact(vacuum=1), "vacuum must be True or False"),
        (lambda: store.compact(progress=5), "progress must be a callable"),
        (lambda: store.verify(progress="yes"), "progress must be a callable"),
        (lambda: store.fold("s", at=-1), "at must be"),
        (lambda: store.fold("s", at="1"), "at must be"),
        (lambda: store.fold("s", at=True), "at must be"),
        (lambda: store.fold("s", at=1.0), "at must be"),
        (lambda: store.events("s", since=-1), "since must be"),
        (lambda: store.parent(5), "session id must be"),
        (lambda: store.delete("s", tree=0), "tree must be"),
    ]
    for call, message in calls:
        with pytest.raises(eventlog.InvalidValueError, match=message):
            call()
    assert store.seq("s") == 1 and store.fold("s", at=1) == {"entries": [{"id": "a"}]}
    with pytest.raises(eventlog.NotFoundError):  # a position past the head is not found, as before
        store.fold("s", at=2)


def test_no_bare_value_or_type_errors_are_raised_about_arguments() -> None:
    """Every ``raise ValueError``/``raise TypeError`` left in eventlog is internal:
    caught and turned into an eventlog error, or JSON's hook in the CLI."""
    allowed = {
        ("cli.py", "TypeError"),  # json.dumps' default hook: its contract
        ("codec.py", "TypeError"),  # caught by the encoder, turned into InvalidValueError
        ("codec.py", "ValueError"),
        ("fold.py", "ValueError"),  # an event that does not apply: CorruptionError when read
    }
    found = set()
    for path in (ROOT / "eventlog").glob("*.py"):
        for kind in re.findall(r"raise (ValueError|TypeError)\(", path.read_text(encoding="utf-8")):
            found.add((path.name, kind))
    assert found <= allowed, found - allowed
