"""Behaviour of the public API, case by case."""

from __future__ import annotations

import base64
import copy
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.samples import SessionBuilder, coding_session
from eventlog.testing import BASE64_FORMS, base64_text, json_values

from ..helpers import dump, largest_cell_and_row


def session(n: int = 3, seed: int = 0) -> dict[str, Any]:
    b = SessionBuilder(seed)
    b.user("hello 👋")
    while len(b.data["entries"]) < n:
        b.assistant()
    return copy.deepcopy(b.data)


def test_save_load_round_trip_with_key_order(store: eventlog.Store) -> None:
    data = session(5)
    data = {k: data[k] for k in reversed(list(data))}  # unusual key order
    store.save("s", data)
    loaded = store.load("s")
    assert loaded == data
    assert dump(loaded) == dump(data)
    assert list(loaded) == list(data)


def test_load_unknown_session_is_none(store: eventlog.Store) -> None:
    assert store.load("nope") is None


def test_reopen_keeps_everything(db_path: str) -> None:
    states = []
    with eventlog.open(db_path) as s:
        for data in coding_session(50, seed=3):
            s.save("s", data)
            states.append(dump(data))
    with eventlog.open(db_path) as s:
        assert dump(s.load("s")) == states[-1]
        assert [dump(s.fold("s", at=k)) for k in (1, 10, 50)] == [states[0], states[9], states[49]]


def test_loaded_value_is_the_callers_own(store: eventlog.Store) -> None:
    data = session(3)
    store.save("s", data)
    loaded = store.load("s")
    assert loaded is not None
    loaded["entries"][0]["message"]["content"] = "mutated"
    loaded["entries"].append({"id": "x"})
    assert store.load("s") == data
    # the caller's mutated object, saved again, is a real change
    store.save("s", loaded)
    assert store.load("s") == loaded


def test_in_place_mutation_of_saved_object_is_detected(store: eventlog.Store) -> None:
    data = session(4)
    store.save("s", data)
    data["entries"][1]["message"]["usage"]["input"] = 1
    store.save("s", data)
    data["entries"][1]["message"]["usage"]["input"] = 1.0  # equal under ==, not in JSON
    store.save("s", data)
    assert dump(store.load("s")) == dump(data)
    data["entries"][1]["message"]["usage"]["input"] = True
    store.save("s", data)
    assert dump(store.load("s")) == dump(data)
    data["entries"][0]["x"] = -0.0
    store.save("s", data)
    data["entries"][0]["x"] = 0.0
    store.save("s", data)
    assert dump(store.load("s")) == dump(data)
    e = data["entries"][2]
    e["id"] = e.pop("id")  # same keys and values, new order
    store.save("s", data)
    assert dump(store.load("s")) == dump(data)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["entries"].pop(1),
        lambda d: d["entries"].insert(0, {"type": "custom", "id": "00000000"}),
        lambda d: d["entries"].reverse(),
        lambda d: d["entries"].clear(),
        lambda d: d.__setitem__("leafId", d["entries"][0]["id"]),
        lambda d: d["metadata"].__setitem__("taskSessions", [{"session": "t", "taskId": "1"}]),
        lambda d: d.pop("affinityKey"),
        lambda d: d.__setitem__("entries", "not a list any more"),
        lambda d: d.pop("entries"),
        lambda d: d.__setitem__("new", {"nested": [1, 2.5, None, b"bytes"]}),
    ],
)
def test_any_change_is_stored(store: eventlog.Store, change: Any) -> None:
    data = session(6)
    store.save("s", data)
    change(data)
    store.save("s", data)
    assert dump(store.load("s")) == dump(data)
    assert dump(store.fold("s")) == dump(data)


def test_entries_list_can_come_back(store: eventlog.Store) -> None:
    data = session(3)
    store.save("s", data)
    store.save("s", {**data, "entries": None})
    store.save("s", data)
    assert store.load("s") == data
    assert store.fold("s", at=2) == {**data, "entries": None}


def test_every_save_is_one_event(store: eventlog.Store) -> None:
    data = session(3)
    assert store.save("s", data) == 1
    assert store.save("s", data) == 2  # unchanged: an empty event, so seq counts saves
    assert [len(e.ops) for e in store.events("s")] == [2, 0]
    assert store.fold("s", at=0) == {}


def test_save_appends_only_the_new_entries(store: eventlog.Store) -> None:
    data = session(3)
    store.save("s", data)
    data["entries"].append({"type": "custom", "id": "abcdef12"})
    data["leafId"] = "abcdef12"
    store.save("s", data)
    (event,) = list(store.events("s", since=1))
    assert event.seq == 2
    insert, fields = event.ops
    assert insert == eventlog.Insert(3, [{"type": "custom", "id": "abcdef12"}])
    assert fields == eventlog.SetFields({"leafId": "abcdef12"}, None)


def test_expected_seq_conflicts(store: eventlog.Store) -> None:
    assert store.append("s", [{"id": "a"}], expected_seq=0) == 1
    with pytest.raises(eventlog.ConflictError) as err:
        store.append("s", [{"id": "b"}], expected_seq=0)
    assert err.value.session_id == "s" and err.value.seq == 1
    assert store.append("s", [{"id": "b"}], expected_seq=1) == 2
    with pytest.raises(eventlog.ConflictError):
        store.save("s", {"entries": []}, expected_seq=1)
    assert store.load("s") == {"entries": [{"id": "a"}, {"id": "b"}], "leafId": "b"}


def test_append_moves_leaf_and_keeps_fields(store: eventlog.Store) -> None:
    data = session(2)
    store.save("s", data)
    seq = store.append("s", [{"type": "custom", "id": "1"}, {"type": "label", "id": "2", "label": "x"}])
    assert seq == 2
    loaded = store.load("s")
    assert loaded is not None
    assert loaded["leafId"] == "2"
    assert loaded["entries"][-2:] == [{"type": "custom", "id": "1"}, {"type": "label", "id": "2", "label": "x"}]
    assert list(loaded) == list(data)


def test_append_to_non_list_entries_is_refused(store: eventlog.Store) -> None:
    store.save("s", {"entries": "text"})
    with pytest.raises(eventlog.InvalidValueError):
        store.append("s", [{"id": "a"}])
    assert store.seq("s") == 1


class EntryList(list[Any]):
    """A list subclass: refused like the other non-lists (values are exact types)."""


NOT_LISTS: list[Any] = [
    {"id": "x"}, "hello", b"ab", ({"id": "x"},), None, 3, {"a"}, range(2), {"id": "x"}.keys(),
    EntryList([{"id": "x"}]),
]  # fmt: skip


@pytest.mark.parametrize("entries", NOT_LISTS, ids=lambda v: type(v).__name__)
def test_append_takes_only_a_list(store: eventlog.Store, entries: Any) -> None:
    """append("s", {"id": "x"}) stored the entries ['id'], append("s", "hello") five
    one-letter entries: anything but a list is refused, and nothing is written."""
    store.append("s", [{"id": "a"}])
    for sid in ("s", "new"):
        with pytest.raises(eventlog.InvalidValueError, match="entries must be a list") as e:
            store.append(sid, entries)
        assert e.value.session_id == sid
    assert store.load("s") == {"entries": [{"id": "a"}], "leafId": "a"} and store.seq("s") == 1
    assert store.sessions() == ["s"] and store.stats()["events"]["rows"] == 1


def test_append_does_not_consume_a_generator(store: eventlog.Store) -> None:
    taken: list[int] = []

    def gen() -> Any:
        for i in range(3):
            taken.append(i)
            yield {"id": str(i)}

    with pytest.raises(eventlog.InvalidValueError):
        store.append("s", gen())
    assert taken == [] and store.sessions() == []


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=(
        json_values(4).filter(lambda v: type(v) is not list)
        | st.tuples(json_values(3))
        | st.frozensets(st.text(max_size=3))
        | st.builds(iter, st.lists(json_values(2), max_size=3))
        | st.builds(lambda v: v.values(), st.dictionaries(st.text(max_size=3), json_values(2), max_size=3))
    )
)
def test_append_refuses_any_non_list_and_leaves_the_store_unchanged(entries: Any) -> None:
    with eventlog.open(":memory:") as store:
        store.save("s", {"entries": [{"id": "a"}], "leafId": "a", "title": "t"})
        before = (store.load("s"), store.seq("s"), store.stats()["events"], store.stats()["chunks"])
        for sid in ("s", "new"):
            with pytest.raises(eventlog.InvalidValueError):
                store.append(sid, entries)
        assert (store.load("s"), store.seq("s"), store.stats()["events"], store.stats()["chunks"]) == before
        assert store.sessions() == ["s"]


@pytest.mark.parametrize(
    "bad",
    [
        {"entries": [(1, 2)]},
        {"entries": [{1: "int key"}]},
        {"x": {1, 2}},
        {"x": bytearray(b"no")},
        {"x": "\ud800 lone surrogate"},
        {"x": "\ud800" * 40_000},
        {"x": float},
    ],
)
def test_unstorable_values_are_refused_and_nothing_is_written(store: eventlog.Store, bad: Any) -> None:
    store.save("s", {"entries": [{"id": "a"}]})
    with pytest.raises(eventlog.InvalidValueError) as err:
        store.save("s", bad)
    assert err.value.session_id in (None, "s")
    assert store.seq("s") == 1
    assert store.load("s") == {"entries": [{"id": "a"}]}


def test_too_deep_is_refused(store: eventlog.Store) -> None:
    v: Any = "leaf"
    for _ in range(300):
        v = [v]
    with pytest.raises(eventlog.InvalidValueError, match="deeper"):
        store.save("s", {"v": v})
    assert store.load("s") is None


@pytest.mark.parametrize("how", ["append", "save"])
def test_each_appended_entry_may_nest_to_the_limit_and_no_deeper(store: eventlog.Store, how: str) -> None:
    """Appended entries are validated as one batch (one walk over the list): each
    entry keeps its own limit of MAX_DEPTH levels, the list around them not counted."""
    from eventlog.values import MAX_DEPTH

    def nested(levels: int) -> Any:
        v: Any = "leaf"
        for _ in range(levels):
            v = {"k": v}
        return v

    ok = [{"id": "a"}, nested(MAX_DEPTH)]
    if how == "append":
        store.append("s", ok)
    else:
        store.save("s", {"entries": ok})
    assert store.load("s")["entries"] == ok  # type: ignore[index]
    with pytest.raises(eventlog.InvalidValueError, match="deeper"):
        if how == "append":
            store.append("s", [{"id": "b"}, nested(MAX_DEPTH + 1)])
        else:
            store.save("s", {"entries": [*ok, nested(MAX_DEPTH + 1)]})
    assert store.seq("s") == 1


def test_bad_ids_and_data(store: eventlog.Store) -> None:
    for bad_id in ("", 5, None, "x" * 5000):
        with pytest.raises(eventlog.InvalidValueError):
            store.save(bad_id, {})  # type: ignore[arg-type]
    with pytest.raises(eventlog.InvalidValueError):
        store.save("s", [])  # type: ignore[arg-type]


def test_unknown_session_and_position(store: eventlog.Store) -> None:
    with pytest.raises(eventlog.NotFoundError):
        store.fold("nope")
    with pytest.raises(eventlog.NotFoundError):
        store.events("nope")
    store.save("s", {"a": 1})
    with pytest.raises(eventlog.NotFoundError) as err:
        store.fold("s", at=2)
    assert err.value.session_id == "s"


def test_closed_store(db_path: str) -> None:
    s = eventlog.open(db_path)
    s.close()
    s.close()
    with pytest.raises(eventlog.StoreClosedError):
        s.load("x")


def image(seed: int, n: int) -> str:
    return base64.b64encode(random.Random(seed).randbytes(n)).decode()


def test_big_values_anywhere_round_trip_under_budget(db_path: str) -> None:
    big_text = ("tool output ✓ 日本語 " * 400_000)[:5_000_000]  # ~5M chars, more bytes
    data = {
        "entries": [
            {"type": "message", "id": "1", "message": {"role": "user", "content": [
                {"type": "image", "data": image(1, 14 * 1024 * 1024 * 3 // 4), "mimeType": "image/png"}]}},
            {"type": "message", "id": "2", "message": {"role": "toolResult", "content": [
                {"type": "text", "text": big_text}], "details": {"raw": random.Random(2).randbytes(3_000_000),
                "url": "data:image/png;base64," + image(3, 900_000)}}},
        ],
        "metadata": {"huge": "x" * 2_500_000},
    }  # fmt: skip
    with eventlog.open(db_path) as s:
        s.save("s", data)
    with eventlog.open(db_path) as s:
        assert s.load("s") == data
    cell, row = largest_cell_and_row(db_path)
    assert cell <= 2_000_000 and row <= 2_000_000


def test_budget_is_enforced_by_sqlite_itself(db_path: str) -> None:
    with eventlog.open(db_path, max_cell_bytes=100_000) as s:
        con = s._backend.db.con
        assert con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == 100_000
        con.execute("CREATE TEMP TABLE probe(a BLOB, b BLOB)")
        with pytest.raises(sqlite3.DataError):  # one cell at the limit
            con.execute("INSERT INTO probe VALUES (?, NULL)", (b"x" * 100_000,))
        with pytest.raises(sqlite3.DataError):  # a row of two cells over it
            con.execute("INSERT INTO probe VALUES (?, ?)", (b"x" * 60_000, b"y" * 60_000))
        s.save("s", {"entries": [{"id": str(i), "t": "x" * 500} for i in range(2000)]})  # ~1 MB in one save
        s.save("s", {"v": image(0, 1_000_000)})
    _, row = largest_cell_and_row(db_path)
    assert row < 100_000


def test_identical_images_are_stored_once(store: eventlog.Store) -> None:
    raw = random.Random(9).randbytes(1_500_000)
    b64 = base64.b64encode(raw).decode()
    store.save("a", {"entries": [{"id": "1", "data": b64}]})
    chunks = store.stats()["chunks"]["rows"]
    store.save("b", {"entries": [{"id": "1", "data": b64}, {"id": "2", "data": b64}]})
    store.save("c", {"url": "data:image/png;base64," + b64, "raw": raw})
    assert store.stats()["chunks"]["rows"] == chunks
    assert store.load("c") == {"url": "data:image/png;base64," + b64, "raw": raw}


def test_one_image_in_every_base64_form_is_stored_once(db_path: str) -> None:
    """The same image sent as canonical base64, MIME lines (LF and CRLF), PEM lines,
    base64url without padding and with a final newline, bare or in a data URL: each
    is stored decoded, so its chunks are written once, and each comes back as the
    very text it was sent as."""
    raw = random.Random(9).randbytes(1_500_000)
    texts = [base64_text(raw, **args) for args in BASE64_FORMS.values()]
    texts += ["data:image/png;base64," + t for t in texts]
    with eventlog.open(db_path, synchronous="NORMAL") as store:
        store.save("first", {"entries": [{"id": "1", "data": base64.b64encode(raw).decode()}]})
        before = store.stats()["chunks"]
        for i, text in enumerate(texts):
            store.save(f"s{i}", {"entries": [{"id": "1", "data": text}]})
        after = store.stats()["chunks"]
        assert (after["rows"], after["raw_bytes"]) == (before["rows"], before["raw_bytes"])
        assert after["referenced_raw_bytes"] == (len(texts) + 1) * before["raw_bytes"]
    with eventlog.open(db_path) as store:
        for i, text in enumerate(texts):
            assert store.load(f"s{i}") == {"entries": [{"id": "1", "data": text}]}
            assert store.events(f"s{i}").__next__().ops[0].entries == [{"id": "1", "data": text}]
        assert store.verify().ok


def test_non_canonical_base64_is_kept_exactly(store: eventlog.Store) -> None:
    raw = random.Random(1).randbytes(60_000)
    b64 = base64.b64encode(raw).decode()
    for text in (b64 + "\n", b64[:-4] + "AB==" if b64.endswith("=") else b64 + "====", b64.replace("A", "-")):
        store.save("s", {"v": text})
        assert store.load("s") == {"v": text}


def test_many_entries(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=0) as s:
        entries = [{"type": "custom", "id": f"{i:08x}", "n": i} for i in range(100_000)]
        s.append("s", entries)
        loaded = s.load("s")
        assert loaded is not None and loaded["entries"] == entries
    _, row = largest_cell_and_row(db_path)
    assert row <= 2_000_000


def test_snapshots_are_built_and_used(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=10) as s:
        for data in coding_session(60, seed=5):
            s.save("s", data)
        assert s.stats()["snapshots"]["rows"] == 2  # the newest two are kept
    with eventlog.open(db_path, snapshot_every=10) as s:
        assert dump(s.load("s")) == dump(data)
        assert dump(s.fold("s", at=3)) != dump(data)


@pytest.mark.parametrize("cell", [2_000_000, 16384], ids=["big-cells", "small-cells"])
def test_snapshots_do_not_grow_with_the_square_of_the_session(
    db_path: str, monkeypatch: pytest.MonkeyPatch, cell: int
) -> None:
    """A snapshot every 5 events of a growing session: rewriting the whole session
    each time would write about 40 times the event bytes.  A segmented snapshot
    writes only its manifest and the segments that changed; a session small enough
    for one row is rewritten whole, but only once its tail is half that size.
    Either way everything snapshots ever wrote stays within a small multiple of the
    event bytes, and what a snapshot records for the policy counts its spilled
    bytes, not only the row."""
    from eventlog.backend import NewSnapshot
    from eventlog.backends.sqlite import SQLiteBackend

    written = {"snapshots": 0, "chunks": 0}
    sizes: list[tuple[int, int]] = []
    put_snapshot, append = SQLiteBackend.put_snapshot, SQLiteBackend.append

    def counting_snapshot(self: SQLiteBackend, snap: NewSnapshot, chunks: Any = ()) -> bool:
        written["snapshots"] += len(snap.frame)
        written["chunks"] += sum(len(c.data) for c in chunks)  # (the chunks given are the ones not stored)
        sizes.append((len(snap.frame), snap.size))
        return put_snapshot(self, snap, chunks)

    def counting_append(self: SQLiteBackend, events: Any, chunks: Any = (), **kw: Any) -> Any:
        written["chunks"] += sum(len(c.data) for c in chunks)
        return append(self, events, chunks, **kw)

    monkeypatch.setattr(SQLiteBackend, "put_snapshot", counting_snapshot)
    monkeypatch.setattr(SQLiteBackend, "append", counting_append)
    with eventlog.open(db_path, snapshot_every=5, max_cell_bytes=cell) as s:
        for i in range(400):
            s.append("s", [{"id": f"{i:08x}", "text": f"entry {i} " * 50 + random.Random(i).randbytes(200).hex()}])
        st = s.stats()
        events = st["events"]["bytes"]
        assert s.load("s") == s.fold("s")
    assert written["snapshots"] + written["chunks"] <= 3 * events
    assert all(size + 16 >= row for row, size in sizes)  # (the frame header aside)
    assert 0 < st["snapshots"]["rows"] <= 2
    if cell < 2_000_000:  # segments of a few entries: snapshots every 5 or 10 events
        assert len(sizes) >= 40
        assert st["chunks"]["rows"] > 10
    else:  # one small session in one row: rewritten whole, so less often
        assert 8 <= len(sizes) <= 30


def test_snapshot_by_bytes(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=0, snapshot_bytes=20_000) as s:
        for i in range(30):
            s.append("s", [{"id": str(i), "text": f"{i} " * 2000 + random.Random(i).randbytes(1000).hex()}])
        assert s.stats()["snapshots"]["rows"] >= 1
        loaded = s.load("s")
    with eventlog.open(db_path) as s:
        assert s.load("s") == loaded


class _CaseInsensitive(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e.__setitem__("role", _CaseInsensitive("USER")),  # == the stored "user"
        lambda e: e.__setitem__("blob", bytearray(b"abc")),  # == the stored b"abc"
        lambda e: e.__setitem__("meta", {_CaseInsensitive("ROLE"): 1}),  # key == "role"
    ],
)
def test_equal_but_unstorable_replacements_are_refused(store: eventlog.Store, edit: Any) -> None:
    """Found in review: the change detection trusted == and skipped validation."""
    e = {"id": "a", "role": "user", "blob": b"abc", "meta": {"role": 1}}
    data = {"entries": [e]}
    store.save("s", data)
    store.save("s", data)  # the second save makes the identity mirror
    edit(e)
    with pytest.raises(eventlog.InvalidValueError):
        store.save("s", data)
    assert store.load("s") == {"entries": [{"id": "a", "role": "user", "blob": b"abc", "meta": {"role": 1}}]}


@pytest.mark.parametrize("bad", [{"entries": [], 1: "x"}, {"entries": [{"id": "a"}], "x": eventlog.ENTRIES}])
def test_top_level_keys_and_marker_are_checked(db_path: str, bad: dict[Any, Any]) -> None:
    with eventlog.open(db_path) as s:
        with pytest.raises(eventlog.InvalidValueError):
            s.save("s", bad)
        s.save("s", {"entries": []})
    with eventlog.open(db_path) as s:
        assert s.load("s") == {"entries": []}


def test_a_storage_error_reading_a_large_value_is_not_called_damage(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cbor2 wraps what its hooks raise; a failure to read a chunk that is not about
    its bytes (SQLite busy, I/O) must come out as itself, not as a
    ``CorruptionError`` (which would also make a snapshot be skipped as damaged)."""
    from eventlog.backends.sqlite import SQLiteBackend

    with eventlog.open(db_path) as s:
        s.save("s", {"entries": [{"content": "x" * 100_000}]})
        s.snapshot("s")

    def busy(self: SQLiteBackend, hashes: Any) -> Any:
        raise eventlog.StorageError("database is locked")

    monkeypatch.setattr(SQLiteBackend, "chunks", busy)
    with eventlog.open(db_path) as s:
        with pytest.raises(eventlog.StorageError, match="locked") as caught:
            s.load("s")
        assert not isinstance(caught.value, eventlog.CorruptionError)


def test_expected_seq_holds_against_a_session_made_again_by_another_handle(tmp_path: Path) -> None:
    """Regression: a handle that had cached a session deleted and made again by
    another handle raised "expected seq 1, found 1" for an append whose
    expectation held: the conflict was its cached incarnation's, not the caller's."""
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as one, eventlog.open(path) as two:
        two.append("d", [{"id": "old"}])
        one.delete("d")
        one.append("d", [{"id": "new"}])
        assert two.append("d", [{"id": "more"}], expected_seq=1) == 2
        assert one.load("d") == {"entries": [{"id": "new"}, {"id": "more"}], "leafId": "more"}
        with pytest.raises(eventlog.ConflictError, match="expected seq 1, found 2"):
            two.append("d", [{"id": "late"}], expected_seq=1)
