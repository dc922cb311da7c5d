"""A rule-based state machine: save, append, load, reopen and a second writer on the
same file, against a plain in-memory model of what each session must be."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import eventlog
from eventlog.testing import entries, mutate, sessions
from eventlog.values import same

from .helpers import largest_cell_and_row

NAMES = st.sampled_from(["a", "b", 'agent-session:["i","default","default"]'])
SMALL = {"image_size": 60_000, "big": 60_000}
BUDGET = 40_000


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def open_store(self) -> None:
        self.path = str(Path(tempfile.mkdtemp()) / "m.db")
        self.store = eventlog.open(self.path, max_cell_bytes=BUDGET, synchronous="OFF", snapshot_every=3)
        self.other: eventlog.Store | None = None
        self.model: dict[str, dict[str, Any]] = {}
        self.live: dict[str, dict[str, Any]] = {}  # the caller's own objects, mutated in place
        self.seqs: dict[str, int] = {}

    def _writer(self, second: bool) -> eventlog.Store:
        if second:
            if self.other is None:
                self.other = eventlog.open(self.path, max_cell_bytes=BUDGET, synchronous="OFF", snapshot_every=3)
            return self.other
        return self.store

    @rule(name=NAMES, data=st.data(), second=st.booleans())
    def save(self, name: str, data: st.DataObject, second: bool) -> None:
        state = self.live.get(name)
        state = data.draw(sessions(max_entries=4, **SMALL)) if state is None else mutate(data.draw, state)
        self.live[name] = state
        seq = self._writer(second).save(name, state)
        self.seqs[name] = self.seqs.get(name, 0) + 1
        assert seq == self.seqs[name]
        self.model[name] = copy.deepcopy(state)

    @rule(name=NAMES, batch=st.lists(entries(**SMALL), max_size=3), second=st.booleans())
    def append(self, name: str, batch: list[dict[str, Any]], second: bool) -> None:
        expected = self.model.get(name)
        if expected is not None and not isinstance(expected.get("entries"), list):
            try:
                self._writer(second).append(name, batch)
            except eventlog.InvalidValueError:
                return
            raise AssertionError("append to a session without an entries list must fail")
        seq = self._writer(second).append(name, batch, expected_seq=self.seqs.get(name, 0))
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

    @precondition(lambda self: True)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = eventlog.open(self.path, max_cell_bytes=BUDGET, synchronous="OFF", snapshot_every=3)

    @invariant()
    def every_session_loads_as_modelled(self) -> None:
        if not hasattr(self, "store"):
            return
        for name, want in self.model.items():
            assert same(self.store.load(name), want), name
            assert self.store.seq(name) == self.seqs[name]

    @invariant()
    def no_cell_over_budget(self) -> None:
        if hasattr(self, "path"):
            cell, row = largest_cell_and_row(self.path)
            assert cell <= BUDGET and row <= BUDGET

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
        if getattr(self, "other", None) is not None:
            self.other.close()  # type: ignore[union-attr]


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = __import__("hypothesis").settings(stateful_step_count=25, deadline=None)
