"""Fast proof that a caller's entries did not change since the last save.

Runtimes hand ``save()`` the whole session every time, usually the same objects with a
few entries appended.  Comparing every entry strictly (:func:`eventlog.values.same`)
is a Python walk over the whole session on every save.  A :class:`Mirror` instead
remembers every container of the entries the caller passed last time (the caller's
own objects), its length, its keys, and the very value objects it held.  If all of
them are still the same, nothing in those entries can have changed: leaves are
immutable, and the mirror's references keep them alive, so an identity cannot be
reused by a new object.  Values are compared by identity, never ``==``: an equal but
different object (1.0 for 1, -0.0 for 0.0, an equal dict in another key order)
might store differently.  Keys may be compared with ``==`` because they are proven
to be exact ``str`` (see below), and equal exact strings store the same.

On CPython the values of all containers come from one C call,
``gc.get_referents(*containers)``: for a list its items, for a dict whose keys are all
exact ``str`` (CPython's "unicode" key table) its values, in a fixed order; a dict that ever
held another kind of key switches to a general table and reports its keys too.  So
when every container has its recorded length and the total count of referents is the
recorded one, every dict still has a unicode table, hence only exact ``str`` keys.
An import-time self-test checks this behaviour and, where it does not hold, the
mirror walks ``dict.values`` instead (same answers, about half the speed).

Fastest of all, the optional C extension ``eventlog._speedups`` (compiled at install
where a C compiler exists; see :mod:`eventlog.speedups`) walks the containers
comparing key and value pointers, about ten times faster again.  :data:`MODE` says
which of the three is in use: ``"c"``, ``"gc"`` or ``"portable"``; all give the same
answers (``gc.get_referents`` only reads: nothing here changes the collector).

Any difference at all, even a value replaced by an equal one, makes the check fail
and ``save()`` falls back to the strict comparison: the mirror can only make saving
faster, never different.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from itertools import chain
from operator import is_
from typing import Any

from . import speedups


def _referents_are_values() -> bool:
    """Whether ``gc.get_referents`` reports exactly what :class:`Mirror` relies on."""

    class Key(str):
        pass

    d: dict[Any, Any] = {"a": None, "b": True, "c": 1, "d": "x", "e": 1.5, "f": []}
    del d["c"]
    d["g"] = -0.0
    items = [None, d, 2, "y"]
    general: dict[Any, Any] = {"a": 1}
    general[Key("b")] = 2
    try:
        in_dict, in_list = gc.get_referents(d), gc.get_referents(items)
        return (
            len(in_dict) == len(d)
            and all(map(is_, in_dict, d.values()))
            and len(in_list) == len(items)
            and (all(map(is_, in_list, items)) or all(map(is_, in_list, reversed(items))))  # CPython: reversed
            and len(gc.get_referents(d, items)) == len(d) + len(items)
            and len(gc.get_referents(general)) == 2 * len(general)
        )
    except Exception:  # pragma: no cover - another interpreter
        return False


#: Whether the fast path through ``gc.get_referents`` is sound on this interpreter.
FAST = _referents_are_values()

_c_unchanged: Callable[[list[Any], list[int], list[Any], list[Any]], bool] | None = None
_c_record: Callable[[list[Any], list[Any], list[int], list[Any], list[Any]], bool] | None = None
if speedups.ext is not None:
    _c_unchanged, _c_record = speedups.ext.unchanged, speedups.ext.record

#: How :meth:`Mirror.unchanged` checks: ``"c"`` (the C extension), ``"gc"`` (one
#: ``gc.get_referents`` call) or ``"portable"``.  Tests set it to cover each.
MODE = "c" if _c_unchanged is not None else "gc" if FAST else "portable"


class Mirror:
    """Identity snapshot of the caller's entries as of the last save."""

    __slots__ = (
        "base", "cloned", "containers", "dicts", "entries", "full", "keys", "lens", "origin", "values", "views"
    )  # fmt: skip

    def __init__(self, entries: list[Any], *, full: bool) -> None:
        """Mirror ``entries``.  A shallow mirror (``full=False``) records only the
        entry objects: cheap, for callers that pass new objects every time, and
        never :meth:`unchanged`; it only tells whether a full one is worth making."""
        self.full = full
        self.origin: Mirror | None = None  # the mirror this one was cloned from
        # What this one records below ``entries`` starts after what ``base`` (its
        # origin) records: a clone checks its origin's record, never copies it.
        self.base: Mirror | None = None
        self.cloned = False  # a clone's base: never extended again
        self.entries: list[Any] = []
        self.containers: list[Any] = []  # every dict and list of the entries
        self.lens: list[int] = []
        self.keys: list[str] = []  # every key, in order
        self.values: list[Any] = []  # every value and item, in order: the very objects
        # Without the C walk: the dicts among the containers, and for each container
        # what holds its values (a dict's live values view, or the list itself), so
        # that a check runs its loops in C (chain, map), not in Python.
        self.dicts: list[dict[str, Any]] = []
        self.views: list[Any] = []
        self.extend(entries)

    def same_entry_objects(self, entries: list[Any]) -> bool:
        """Whether ``entries`` starts with the very entry objects recorded."""
        n = len(self.entries)
        return len(entries) >= n and all(map(is_, entries[:n], self.entries))

    def extend(self, entries: list[Any]) -> None:
        """Record ``entries`` (already validated: acyclic, storable) as appended."""
        if self.cloned:  # its clones check its record as theirs: it cannot grow
            raise RuntimeError("a mirror that was cloned is not extended")
        self.entries += entries
        if not self.full:
            return
        if MODE == "c":
            assert _c_record is not None
            if not _c_record(entries, self.containers, self.lens, self.keys, self.values):
                self.full = False  # a key that is not an exact str: the strict path
            return
        dicts: list[dict[str, Any]] = []
        containers: list[Any] = []
        stack = list(entries)
        while stack:
            v = stack.pop()
            t = type(v)
            if t is dict:
                dicts.append(v)
                containers.append(v)
                stack.extend(v.values())
            elif t is list:
                containers.append(v)
                stack.extend(v)
        values = _values(containers)
        lens = list(map(len, containers))
        if len(values) != sum(lens):
            # A dict with a general key table (it once held a non-str key): the
            # referents would include keys.  Rare; such a caller gets the strict path.
            self.full = False
            return
        self.containers += containers
        self.lens += lens
        self.keys += chain.from_iterable(dicts)
        self.values += values
        self.dicts += dicts
        if MODE != "gc":
            self.views += [c.values() if type(c) is dict else c for c in containers]

    def clone(self) -> Mirror:
        """A mirror of the same objects that extends apart from this one (its
        ``origin``: this one, whose entries it starts with, whatever it records next).
        Nothing is recorded again or copied but the list of entries: the clone checks
        this one's record as the start of its own (so this one is never extended
        after: :meth:`extend` refuses)."""
        twin = Mirror.__new__(Mirror)
        twin.full, twin.origin, twin.base, twin.cloned = self.full, self, self, False
        twin.entries = list(self.entries)
        twin.containers, twin.lens, twin.keys, twin.values, twin.dicts, twin.views = [], [], [], [], [], []
        self.cloned = True
        return twin

    def unchanged(self, entries: list[Any]) -> bool:
        """Whether ``entries`` starts with exactly the recorded entries, untouched:
        every container still holds the same keys and the very same values, by
        identity (never ``==``, which 1.0, -0.0 or an equal dict could satisfy)."""
        return self.full and self.same_entry_objects(entries) and self.untouched()

    def untouched(self) -> bool:
        """Whether the recorded entries (the very objects, which the mirror keeps) are
        untouched: what :meth:`unchanged` checks below the top-level list."""
        if not self.full:
            return False
        if self.base is not None and not self.base.untouched():
            return False
        if MODE == "c":
            assert _c_unchanged is not None
            return _c_unchanged(self.containers, self.lens, self.keys, self.values)
        if list(map(len, self.containers)) != self.lens:
            return False
        values = gc.get_referents(*self.containers) if MODE == "gc" else list(chain.from_iterable(self.views))
        return (
            len(values) == len(self.values)
            and all(map(is_, values, self.values))
            and _same_keys(list(chain.from_iterable(self.dicts)), self.keys)
        )


def _same_keys(keys: list[Any], recorded: list[str]) -> bool:
    """Whether ``keys`` are the recorded ones.  On the ``"gc"`` path they are proven
    exact ``str`` (see the module docstring), so ``==`` is exact; else by identity."""
    if MODE == "gc":
        return keys == recorded
    return len(keys) == len(recorded) and all(map(is_, keys, recorded))


def _values(containers: list[Any]) -> list[Any]:
    """The values of the dicts and items of the lists among ``containers``: in
    ``gc.get_referents`` order on the ``"gc"`` path, else in container order (what
    the C extension walks)."""
    if MODE == "gc":
        return gc.get_referents(*containers)
    return list(chain.from_iterable(c.values() if type(c) is dict else c for c in containers))
