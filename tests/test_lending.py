"""A load hands the caller the entries it decoded (lent, with a record of them) rather
than copies: whatever the caller then does to them, the store stores and loads
exactly what it is given, and never what it was not."""

from __future__ import annotations

import copy
import gc
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import mirror
from eventlog import store as store_module
from eventlog.testing import histories, mutate
from eventlog.values import same

SMALL = {"image_size": 40_000, "big": 40_000}
#: Segments of about 1 KB, so that small sessions have segmented snapshots.
TINY = {"chunk_bytes": 2048, "max_cell_bytes": 16_384, "synchronous": "OFF"}

if mirror.MODE != "c":
    pytest.skip("loads lend their entries only with the C extension", allow_module_level=True)


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "s.db")


def _entry(i: int) -> dict[str, Any]:
    return {"id": f"e{i}", "message": {"role": "user", "content": [{"type": "text", "text": f"hello {i}" * 40}]}}


@settings(max_examples=60, deadline=None)
@given(st.data(), histories(**SMALL), st.integers(1, 3))
def test_a_loaded_session_edited_in_place_is_stored_exactly(
    data: st.DataObject, history: list[Any], every: int
) -> None:
    """Loaded in a fresh process (entries recorded from the snapshot's segments and
    the events since), then edited in place, saved, loaded, folded, in any order: the
    store always holds exactly what was last saved, here and after reopening."""
    path = _path()
    with eventlog.open(path, snapshot_every=every, **TINY) as s:
        for state in history:
            s.save("s", state)
    expected = copy.deepcopy(history[-1])
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None and same(loaded, expected)
        for _ in range(data.draw(st.integers(1, 8), label="steps")):
            step = data.draw(st.sampled_from(["edit", "edit", "save", "load", "fold"]))
            if step == "edit":
                loaded = mutate(data.draw, loaded)
            elif step == "save":
                s.save("s", loaded)
                expected = copy.deepcopy(loaded)
            elif step == "load":
                again = s.load("s")
                assert same(again, expected)
                if data.draw(st.booleans(), label="use the new load"):
                    loaded = again
            else:
                assert same(s.fold("s"), expected)
        assert same(s.load("s"), expected)
    with eventlog.open(path, **TINY) as s:
        assert same(s.load("s"), expected)
        report = s.verify()
        assert report.ok, report.problems


def _known_same(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The count of entries each save() took as proven unchanged."""
    seen: list[int] = []
    diff = store_module.diff

    def spy(old: Any, data: dict[str, Any], known_same: int = 0) -> Any:
        seen.append(known_same)
        return diff(old, data, known_same)

    monkeypatch.setattr(store_module, "diff", spy)
    return seen


@pytest.mark.parametrize("events_after_snapshot", [False, True])
def test_the_first_save_after_a_load_does_not_compare_what_was_loaded(
    monkeypatch: pytest.MonkeyPatch, events_after_snapshot: bool
) -> None:
    """The record made while loading proves the loaded entries untouched: appending to
    them and saving compares nothing old, and neither does the next save."""
    path = _path()
    entries = [_entry(i) for i in range(300)]
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": entries})
        s.snapshot("s")
        if events_after_snapshot:  # entries the load folds from events, not the snapshot
            s.save("s", {"entries": [_entry(-1), *entries[1:], _entry(300)]})
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        seen = _known_same(monkeypatch)
        n = len(loaded["entries"])
        loaded["entries"].append(_entry(1000))
        s.save("s", loaded)
        loaded["entries"].append(_entry(1001))
        s.save("s", loaded)
        assert seen == [n, n + 1]
        loaded["entries"][5]["message"]["content"][0]["text"] = "changed"  # in place, deep
        s.save("s", loaded)
        assert seen[-1] == 0  # the strict comparison, which finds the change
    with eventlog.open(path, **TINY) as s:
        again = s.load("s")
        assert again is not None and again["entries"][5]["message"]["content"][0]["text"] == "changed"
        assert same(again, loaded)


def test_what_a_load_lent_is_not_lent_again_nor_changed_by_the_store() -> None:
    """Two loads get objects of their own; the store's later work (saves of other
    values, appends) never touches what it lent."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(50)], "title": {"t": "x"}})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as s:
        first = s.load("s")
        second = s.load("s")
        assert first is not None and second is not None
        for a, b in zip(first["entries"], second["entries"], strict=True):
            assert a is not b and a["message"] is not b["message"]
        assert first["entries"] is not second["entries"] and first["title"] is not second["title"]
        kept = copy.deepcopy(first)
        s.append("s", [_entry(99)])
        s.save("s", {"entries": [_entry(7)]})
        assert first == kept
        assert s.load("s") == {"entries": [_entry(7)]}
        assert same(s.fold("s"), s.load("s"))


def test_a_loaded_session_edited_in_place_then_appended_to_by_another_call() -> None:
    """An append() after the load moves the stored entries; the edited loaded value,
    saved, is then stored exactly (the lent entries are taken back first)."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(40)]})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        loaded["entries"][3]["message"]["role"] = "edited"
        s.append("s", [_entry(40)])
        assert s.load("s")["entries"][3]["message"]["role"] == "user"  # type: ignore[index]
        assert s.fold("s")["entries"][40] == _entry(40)
        s.save("s", loaded)
    with eventlog.open(path, **TINY) as s:
        assert same(s.load("s"), loaded)


def test_events_from_another_writer_do_not_move_lent_entries_out_of_reach() -> None:
    """Another writer inserts before the loaded entries; catching up takes back what
    was lent before moving it, so a later load shares nothing with the first."""
    path = _path()
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(30)]})
        s.snapshot("s")
    with eventlog.open(path, **TINY) as a, eventlog.open(path, **TINY) as b:
        first = a.load("s")
        assert first is not None
        b.save("s", {"entries": [_entry(-1), *(_entry(i) for i in range(30))]})
        second = a.load("s")
        assert second is not None and len(second["entries"]) == 31
        assert not {id(e) for e in first["entries"]} & {id(e) for e in second["entries"]}
        first["entries"][-1]["message"]["role"] = "edited"
        assert second["entries"][-1] == _entry(29)
        assert a.load("s")["entries"][-1] == _entry(29)  # type: ignore[index]


def test_taking_back_lent_entries_cannot_copy_an_edit_made_meanwhile(tmp_path: Path) -> None:
    """Mirror.take() checks then copies in one C call.  Were a collection to run
    during the copy (on Python 3.11 an allocation can start one), a finalizer's Python
    code, or another thread the GIL passes to meanwhile, could edit the lent entries
    after the check: the edit would be copied into the store's private state without
    ever being saved, and the next save() of the edited value would write nothing.
    (Found by a second review.)"""
    path = str(tmp_path / "s.db")
    with eventlog.open(path, snapshot_every=0, **TINY) as s:
        s.save("s", {"entries": [_entry(i) for i in range(300)]})
    with eventlog.open(path, **TINY) as s:
        loaded = s.load("s")
        assert loaded is not None
        target = loaded["entries"][-1]["message"]  # copied last
        in_take = []

        class Trap:  # stands for any finalizer / weakref callback, or a GIL switch
            def __del__(self) -> None:
                caller = sys._getframe(0).f_back
                if caller is not None and caller.f_code.co_name == "take":
                    in_take.append(1)
                    if len(in_take) == 2:  # surely past the check, inside the copy
                        target["role"] = "edited by another thread"
                        return
                if len(in_take) < 2:
                    arm()

        def arm() -> None:
            t = Trap()
            t.cycle = t  # type: ignore[attr-defined]

        old = gc.get_threshold()
        gc.collect()
        gc.set_threshold(50)
        try:
            arm()
            s.fold("s")  # takes the lent entries back (check + copy)
        finally:
            gc.set_threshold(*old)
        gc.collect()
        if len(in_take) < 2:  # the collector did not run inside take(): the edit lands after it
            target["role"] = "edited by another thread"
        # The caller keeps its edit and saves it.
        assert loaded["entries"][-1]["message"]["role"] == "edited by another thread"
        s.save("s", loaded)
    with eventlog.open(path, **TINY) as s:
        again = s.load("s")
        assert again is not None
        assert again["entries"][-1]["message"]["role"] == "edited by another thread"
