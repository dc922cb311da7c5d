"""A rule-based state machine: save, append, delete, compact, reopen and a second
writer on the same store, against a plain in-memory model of what each session must
be, on every backend (an SQLite file; an in-memory store, kept alive across reopens
by a handle of its own; a PostgreSQL schema, see tests/postgres.py).  After every
step the store verifies clean (no dangling reference, every chunk matching its hash,
every live session replaying), deleted sessions are gone, and right after a
compaction no chunk is left that nothing refers to."""

from __future__ import annotations

import copy
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import eventlog
from eventlog.backends.memory import MemoryBackend
from eventlog.testing import entries, mutate, sessions
from eventlog.values import same

from ..helpers import largest_cell_and_row
from ..postgres import admin_url as postgres_url
from ..postgres import drop_schemas, in_schema, new_schema

NAMES = st.sampled_from(["a", "b", 'agent-session:["i","default","default"]', "c", "d"])
#: Parent given when each session is created: c is a's child, d is c's.
PARENT = {"c": "a", "d": "c"}
SMALL = {"image_size": 60_000, "big": 60_000}
BUDGET = 40_000


class StoreMachine(RuleBasedStateMachine):
    #: The backend: "sqlite" (a file), "memory" or "postgres".
    backend = "sqlite"

    @initialize()
    def open_store(self) -> None:
        self.anchor: MemoryBackend | None = None
        self.schema: str | None = None
        if self.backend == "sqlite":
            self.path = str(Path(tempfile.mkdtemp()) / "m.db")
        elif self.backend == "postgres":
            self.schema = new_schema()
            self.path = in_schema(postgres_url(), self.schema)
        else:
            self.path = f"memory:machine-{uuid.uuid4().hex}"
        self.store = eventlog.open(
            self.path, max_cell_bytes=BUDGET, chunk_bytes=2048, synchronous="OFF", snapshot_every=3
        )
        if self.backend == "memory":  # the store lives while a handle is open: keep one across reopens
            self.anchor = MemoryBackend(self.path.removeprefix("memory:"))
        self.other: eventlog.Store | None = None
        self.model: dict[str, dict[str, Any]] = {}
        self.live: dict[str, dict[str, Any]] = {}  # the caller's own objects, mutated in place
        self.seqs: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.compacted = False

    def _writer(self, second: bool) -> eventlog.Store:
        if second:
            if self.other is None:
                self.other = eventlog.open(
                    self.path, max_cell_bytes=BUDGET, chunk_bytes=2048, synchronous="OFF", snapshot_every=3
                )
            return self.other
        return self.store

    @rule(name=NAMES, data=st.data(), second=st.booleans())
    def save(self, name: str, data: st.DataObject, second: bool) -> None:
        state = self.live.get(name)
        state = data.draw(sessions(max_entries=4, **SMALL)) if state is None else mutate(data.draw, state)
        self.live[name] = state
        seq = self._writer(second).save(name, state, parent_id=PARENT.get(name))
        self.seqs[name] = self.seqs.get(name, 0) + 1
        assert seq == self.seqs[name]
        self.model[name] = copy.deepcopy(state)

    @rule(name=st.sampled_from(["m", "n"]), data=st.data(), second=st.booleans())
    def save_list_at_a_path(self, name: str, data: st.DataObject, second: bool) -> None:
        """A session whose conversation is ``messages`` (``m``) or ``state.messages``
        (``n``): its snapshots keep that list in segments, which compaction must
        never free while a snapshot refers to them."""
        state = self.live.get(name)
        state = data.draw(sessions(max_entries=4, **SMALL)) if state is None else mutate(data.draw, state)
        self.live[name] = state
        where = "messages" if name == "m" else "state"
        shaped = {where if k == "entries" else k: v for k, v in state.items()}
        if name == "n" and "entries" in state:
            shaped["state"] = {"messages": state["entries"], "step": len(shaped)}
        seq = self._writer(second).save(name, shaped)
        self.seqs[name] = self.seqs.get(name, 0) + 1
        assert seq == self.seqs[name]
        self.model[name] = copy.deepcopy(shaped)

    @rule(name=NAMES, batch=st.lists(entries(**SMALL), max_size=3), second=st.booleans())
    def append(self, name: str, batch: list[dict[str, Any]], second: bool) -> None:
        expected = self.model.get(name)
        if expected is not None and not isinstance(expected.get("entries"), list):
            try:
                self._writer(second).append(name, batch)
            except eventlog.InvalidValueError:
                return
            raise AssertionError("append to a session without an entries list must fail")
        seq = self._writer(second).append(name, batch, expected_seq=self.seqs.get(name, 0), parent_id=PARENT.get(name))
        self.seqs[name] = self.seqs.get(name, 0) + 1
        assert seq == self.seqs[name]
        if expected is None:
            expected = {"entries": []}
        expected["entries"] += copy.deepcopy(batch)
        if batch:
            expected["leafId"] = batch[-1]["id"]
        self.model[name] = expected
        self.live.pop(name, None)  # the caller's object no longer matches: start again from a load
        live = self.store.load(name)
        assert live is not None
        self.live[name] = live

    @rule(name=NAMES)
    def stale_append_conflicts(self, name: str) -> None:
        if name in self.seqs:
            try:
                self.store.append(name, [{"id": "x"}], expected_seq=self.seqs[name] - 1)
            except eventlog.ConflictError:
                return
            raise AssertionError("a stale expected_seq must conflict")

    def _tree(self, name: str) -> list[str]:
        """The model's live descendants of ``name`` (through live sessions only)."""
        out: list[str] = []
        level = [name]
        while level:
            level = [n for n in self.model if PARENT.get(n) in level and n not in out and n != name]
            out += level
        return out

    @rule(name=NAMES, second=st.booleans())
    def delete(self, name: str, second: bool) -> None:
        gone = ([name] if name in self.model else []) + self._tree(name)
        assert sorted(self._writer(second).delete(name)) == sorted(gone)
        for n in gone:
            del self.model[n], self.seqs[n]
            self.live.pop(n, None)
            self.deleted.add(n)

    @rule(retain=st.none() | st.integers(0, 3), second=st.booleans())
    def compact(self, retain: int | None, second: bool) -> None:
        self._writer(second).compact(retain=retain, batch=3)
        self.compacted = True

    @precondition(lambda self: True)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = eventlog.open(
            self.path, max_cell_bytes=BUDGET, chunk_bytes=2048, synchronous="OFF", snapshot_every=3
        )

    @invariant()
    def every_session_loads_as_modelled(self) -> None:
        if not hasattr(self, "store"):
            return
        for name, want in self.model.items():
            assert same(self.store.load(name), want), name
            assert self.store.seq(name) == self.seqs[name]

    @invariant()
    def deleted_sessions_are_gone(self) -> None:
        if not hasattr(self, "store"):
            return
        for name in self.deleted - self.model.keys():
            assert self.store.load(name) is None
            assert self.store.seq(name) == 0
        assert sorted(self.store.sessions()) == sorted(self.model)
        for name in self.model:
            assert sorted(self.store.tree(name)) == sorted(self._tree(name))

    @invariant()
    def verifies_clean(self) -> None:
        if not hasattr(self, "store"):
            return
        report = self.store.verify()
        assert report.ok, [str(p) for p in report.problems]
        if self.compacted:
            assert report.garbage_chunks == 0
            self.compacted = False

    @invariant()
    def no_cell_over_budget(self) -> None:
        if getattr(self, "anchor", None) is not None or getattr(self, "schema", None) is not None:
            stats = self.anchor.stats() if self.anchor is not None else self.store._backend.stats()  # type: ignore[union-attr]
            assert max(stats[t]["largest"] for t in ("events", "snapshots", "chunks")) <= BUDGET
        elif hasattr(self, "path"):
            cell, row = largest_cell_and_row(self.path)
            assert cell <= BUDGET and row <= BUDGET

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
        if getattr(self, "other", None) is not None:
            self.other.close()  # type: ignore[union-attr]
        if getattr(self, "anchor", None) is not None:
            self.anchor.close()  # type: ignore[union-attr]
        if getattr(self, "schema", None) is not None:
            drop_schemas([self.schema])  # type: ignore[list-item]


class MemoryStoreMachine(StoreMachine):
    backend = "memory"


class PostgresStoreMachine(StoreMachine):
    backend = "postgres"


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = __import__("hypothesis").settings(stateful_step_count=25, deadline=None)
TestMemoryStoreMachine = MemoryStoreMachine.TestCase
TestMemoryStoreMachine.settings = TestStoreMachine.settings
TestPostgresStoreMachine = PostgresStoreMachine.TestCase
TestPostgresStoreMachine.settings = TestStoreMachine.settings
