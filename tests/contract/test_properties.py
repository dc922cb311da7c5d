"""Property tests of the invariants eventlog promises, on both backends: the SQLite
file and the in-memory store (the same engine above the seam; the memory backend
makes them fast)."""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog.backends.memory import MemoryBackend
from eventlog.testing import histories, json_values, mutate, sessions
from eventlog.values import same

from ..helpers import dump, largest_cell_and_row

SMALL = {"image_size": 120_000, "big": 120_000}
BUDGETS = st.sampled_from([16_384, 40_000, 2_000_000])
#: The backends the properties are checked on.
BACKENDS = pytest.mark.parametrize("kind", ["sqlite", "memory"])
#: A private store of each backend (gone when closed).
PRIVATE = {"sqlite": ":memory:", "memory": "memory:"}


class Stores:
    """New store locations of one backend; an in-memory store is kept alive (by a
    handle of its own) until the end, so that it can be closed and opened again."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._anchors: dict[str, MemoryBackend] = {}

    def new(self) -> str:
        if self.kind == "sqlite":
            return str(Path(tempfile.mkdtemp()) / "p.db")
        return f"memory:properties-{uuid.uuid4().hex}"

    def open(self, location: str, **options: Any) -> eventlog.Store:
        store = eventlog.open(location, **options)
        if self.kind == "memory" and location not in self._anchors:
            self._anchors[location] = MemoryBackend(location.removeprefix("memory:"))
        return store

    def largest_cell_and_row(self, location: str) -> tuple[int, int]:
        if self.kind == "sqlite":
            return largest_cell_and_row(location)
        stats = self._anchors[location].stats()
        cell = max(stats[t]["largest"] for t in ("events", "snapshots", "chunks"))
        return cell, cell  # (a row of the memory backend is held to the budget with its other fields)

    def damage_snapshots(self, location: str) -> None:
        """Flip byte 7 of every snapshot frame to 0 (as a damaged disk would)."""
        if self.kind == "sqlite":
            con = sqlite3.connect(location)
            con.execute("UPDATE snapshots SET frame = substr(frame, 1, 6) || x'00' || substr(frame, 8)")
            con.commit()
            con.close()
            return

        def flip(s: Any) -> None:
            for x in s.sessions.values():
                for q, (frame, refs) in list(x.snapshots.items()):
                    x.snapshots[q] = (frame[:6] + b"\x00" + frame[7:], refs)

        self._anchors[location].poke(flip)

    def close(self) -> None:
        for anchor in self._anchors.values():
            anchor.close()


@contextmanager
def stores(kind: str) -> Iterator[Stores]:
    s = Stores(kind)
    try:
        yield s
    finally:
        s.close()


@BACKENDS
@given(histories(**SMALL), BUDGETS)
def test_round_trip_after_every_save_and_reopen(kind: str, history: list[dict[str, Any]], budget: int) -> None:
    with stores(kind) as at:
        path = at.new()
        with at.open(path, max_cell_bytes=budget, synchronous="OFF") as store:
            for k, state in enumerate(history, 1):
                assert store.save("s", state) == k
                loaded = store.load("s")
                assert same(loaded, state)
                assert dump(loaded) == dump(state)
        with at.open(path, max_cell_bytes=budget) as store:
            assert same(store.load("s"), history[-1])
        cell, row = at.largest_cell_and_row(path)
        assert cell <= budget and row <= budget


@BACKENDS
@given(st.data(), st.integers(1, 12))
def test_saving_one_object_mutated_in_place(kind: str, data: st.DataObject, steps: int) -> None:
    """The runtime pattern: one live session object, edited in place and saved again
    and again (what the identity mirror speeds up and must never get wrong)."""
    import copy

    state = data.draw(sessions(**SMALL))
    expected = []
    with eventlog.open(PRIVATE[kind], max_cell_bytes=40_000) as store:
        for _ in range(steps):
            store.save("s", state)
            expected.append(copy.deepcopy(state))
            assert same(store.load("s"), state)
            state = mutate(data.draw, state)
        for k, want in enumerate(expected, 1):
            assert same(store.fold("s", at=k), want)


@BACKENDS
@given(histories(**SMALL))
def test_fold_at_k_is_the_state_after_the_kth_save(kind: str, history: list[dict[str, Any]]) -> None:
    with stores(kind) as at:
        path = at.new()
        with at.open(path, synchronous="OFF", snapshot_every=2) as store:
            for state in history:
                store.save("s", state)
        with at.open(path) as store:
            for k, state in enumerate(history, 1):
                assert same(store.fold("s", at=k), state)


@BACKENDS
@given(histories(**SMALL), st.integers(1, 4), st.integers(0, 8))
def test_snapshot_load_equals_full_replay(kind: str, history: list[dict[str, Any]], every: int, forced: int) -> None:
    with stores(kind) as at:
        snap_path, plain_path = at.new(), at.new()
        with (
            at.open(snap_path, synchronous="OFF", snapshot_every=every, max_cell_bytes=16_384) as snap,
            at.open(plain_path, synchronous="OFF", snapshot_every=0) as plain,
        ):
            for k, state in enumerate(history, 1):
                snap.save("s", state)
                plain.save("s", state)
                if k == forced:
                    snap.snapshot("s")
        with at.open(snap_path, max_cell_bytes=16_384) as snap, at.open(plain_path) as plain:
            assert same(snap.load("s"), plain.load("s"))
            assert same(snap.load("s"), history[-1])
            for k in range(1, len(history) + 1):
                assert same(snap.fold("s", at=k), plain.fold("s", at=k))
        # A snapshot is a cache: damaged or gone, loading falls back and is still right.
        at.damage_snapshots(snap_path)
        with at.open(snap_path, max_cell_bytes=16_384) as snap:
            assert same(snap.load("s"), history[-1])


@BACKENDS
@given(st.lists(sessions(max_entries=6, **SMALL), min_size=1, max_size=3))
def test_identical_content_is_stored_once(kind: str, states: list[dict[str, Any]]) -> None:
    """What is promised is of values of ``large_value_bytes`` or more (here every
    value of 1 KiB or more, each cut into chunks of 4 KiB): a frame too large for
    a cell is spilled into chunks of its own bytes, which differ between a save
    and an append of the same entries, so the budget leaves every frame room."""
    options = {"snapshot_every": 0, "large_value_bytes": 1024, "chunk_bytes": 4096}
    with stores(kind) as at, at.open(at.new(), synchronous="OFF", **options) as store:
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


@BACKENDS
@given(st.dictionaries(st.text(max_size=5), json_values(30), max_size=6), BUDGETS)
def test_arbitrary_values_round_trip(kind: str, data: dict[str, Any], budget: int) -> None:
    with eventlog.open(PRIVATE[kind], max_cell_bytes=budget) as store:
        store.save("s", data)
        assert same(store.load("s"), data)
        assert same(store.fold("s", at=1), data)
