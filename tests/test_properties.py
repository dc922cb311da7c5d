"""Property tests of the invariants eventlog promises."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog.testing import histories, json_values, mutate, sessions
from eventlog.values import same

from .helpers import dump, largest_cell_and_row

SMALL = {"image_size": 120_000, "big": 120_000}
BUDGETS = st.sampled_from([16_384, 40_000, 2_000_000])


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "p.db")


@given(histories(**SMALL), BUDGETS)
def test_round_trip_after_every_save_and_reopen(history: list[dict[str, Any]], budget: int) -> None:
    path = _path()
    with eventlog.open(path, max_cell_bytes=budget, synchronous="OFF") as store:
        for k, state in enumerate(history, 1):
            assert store.save("s", state) == k
            loaded = store.load("s")
            assert same(loaded, state)
            assert dump(loaded) == dump(state)
    with eventlog.open(path, max_cell_bytes=budget) as store:
        assert same(store.load("s"), history[-1])
    cell, row = largest_cell_and_row(path)
    assert cell <= budget and row <= budget


@given(st.data(), st.integers(1, 12))
def test_saving_one_object_mutated_in_place(data: st.DataObject, steps: int) -> None:
    """The runtime pattern: one live session object, edited in place and saved again
    and again (what the identity mirror speeds up and must never get wrong)."""
    import copy

    state = data.draw(sessions(**SMALL))
    expected = []
    with eventlog.open(":memory:", max_cell_bytes=40_000) as store:
        for _ in range(steps):
            store.save("s", state)
            expected.append(copy.deepcopy(state))
            assert same(store.load("s"), state)
            state = mutate(data.draw, state)
        for k, want in enumerate(expected, 1):
            assert same(store.fold("s", at=k), want)


@given(histories(**SMALL))
def test_fold_at_k_is_the_state_after_the_kth_save(history: list[dict[str, Any]]) -> None:
    path = _path()
    with eventlog.open(path, synchronous="OFF", snapshot_every=2) as store:
        for state in history:
            store.save("s", state)
    with eventlog.open(path) as store:
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state)


@given(histories(**SMALL), st.integers(1, 4), st.integers(0, 8))
def test_snapshot_load_equals_full_replay(history: list[dict[str, Any]], every: int, forced: int) -> None:
    snap_path, plain_path = _path(), _path()
    with (
        eventlog.open(snap_path, synchronous="OFF", snapshot_every=every, max_cell_bytes=16_384) as snap,
        eventlog.open(plain_path, synchronous="OFF", snapshot_every=0) as plain,
    ):
        for k, state in enumerate(history, 1):
            snap.save("s", state)
            plain.save("s", state)
            if k == forced:
                snap.snapshot("s")
    with eventlog.open(snap_path) as snap, eventlog.open(plain_path) as plain:
        assert same(snap.load("s"), plain.load("s"))
        assert same(snap.load("s"), history[-1])
        for k in range(1, len(history) + 1):
            assert same(snap.fold("s", at=k), plain.fold("s", at=k))
    # A snapshot is a cache: damaged or gone, loading falls back and is still right.
    con = sqlite3.connect(snap_path)
    con.execute("UPDATE snapshots SET frame = substr(frame, 1, 6) || x'00' || substr(frame, 8)")
    con.commit()
    con.close()
    with eventlog.open(snap_path) as snap:
        assert same(snap.load("s"), history[-1])


@given(st.lists(sessions(max_entries=6, **SMALL), min_size=1, max_size=3))
def test_identical_content_is_stored_once(states: list[dict[str, Any]]) -> None:
    with eventlog.open(_path(), synchronous="OFF", snapshot_every=0, max_cell_bytes=40_000) as store:
        for i, state in enumerate(states):
            store.save(f"a{i}", state)
        before = store.stats()["chunks"]
        for i, state in enumerate(states):
            store.save(f"b{i}", state)  # the same content again, under other ids
            store.append(f"c{i}", state["entries"])  # and as an event-level append
        after = store.stats()["chunks"]
        assert after["rows"] == before["rows"] and after["bytes"] == before["bytes"]
        for i, state in enumerate(states):
            assert same(store.load(f"b{i}"), state)


@given(st.dictionaries(st.text(max_size=5), json_values(30), max_size=6), BUDGETS)
def test_arbitrary_values_round_trip(data: dict[str, Any], budget: int) -> None:
    with eventlog.open(":memory:", max_cell_bytes=budget) as store:
        store.save("s", data)
        assert same(store.load("s"), data)
        assert same(store.fold("s", at=1), data)
