"""Fast proof that a caller's entries did not change since the last save.

Runtimes hand ``save()`` the whole session every time, usually the same objects with a
few entries appended.  Comparing every entry strictly (:func:`eventlog.values.same`)
is a Python walk over the whole session on every save.  A :class:`Mirror` instead
remembers every container of the entries the caller passed last time (the caller's
own objects) with a shallow copy of what each held, its key order, and, for the
values where ``==`` is too loose (numbers, booleans, containers), the very objects.
If each container still equals its copy, its keys are in the same order and those
values are still the same objects, nothing in those entries can have changed: a str,
bytes or None that is ``==`` is the same stored value, and leaves are immutable (the
mirror's references keep them alive, so an identity cannot be reused by a new
object).  The check runs in C-level loops (list and dict ``==``, ``map``,
``itertools.chain``), a few nanoseconds per value.

Any difference at all, even a value replaced by an equal one, makes the check fail
and ``save()`` falls back to the strict comparison: the mirror can only make saving
faster, never different.
"""

from __future__ import annotations

from itertools import chain
from operator import getitem, is_, is_not
from typing import Any

_SENSITIVE = frozenset((int, float, bool, dict, list))


class Mirror:
    """Identity snapshot of the caller's entries as of the last save."""

    __slots__ = (
        "dict_copies", "dict_keys", "dicts", "entries", "full", "list_copies", "lists",
        "slot_keys", "slot_owners", "slot_values",
    )  # fmt: skip

    def __init__(self, entries: list[Any], *, full: bool) -> None:
        """Mirror ``entries``.  A shallow mirror (``full=False``) records only the
        entry objects: cheap, for callers that pass new objects every time, and
        never :meth:`unchanged`; it only tells whether a full one is worth making."""
        self.full = full
        self.entries: list[Any] = []
        self.dicts: list[dict[str, Any]] = []  # every container of the entries
        self.lists: list[list[Any]] = []
        self.dict_copies: list[dict[str, Any]] = []  # shallow copies: what each held
        self.list_copies: list[list[Any]] = []
        self.dict_keys: list[str] = []  # every key, in order
        # Slots whose value ``==`` could call equal to a different stored value
        # (1 == 1.0 == True, 0.0 == -0.0, a container replaced by an equal one):
        # these must still hold the very same object.
        self.slot_owners: list[Any] = []
        self.slot_keys: list[Any] = []
        self.slot_values: list[Any] = []
        self.extend(entries)

    def same_entry_objects(self, entries: list[Any]) -> bool:
        """Whether ``entries`` starts with the very entry objects recorded."""
        n = len(self.entries)
        return len(entries) >= n and all(map(is_, entries[:n], self.entries))

    def extend(self, entries: list[Any]) -> None:
        """Record ``entries`` (already validated: acyclic, storable) as appended."""
        self.entries += entries
        if not self.full:
            return
        dicts: list[dict[str, Any]] = []
        lists: list[list[Any]] = []
        stack = list(entries)
        while stack:
            v = stack.pop()
            t = type(v)
            if t is dict:
                dicts.append(v)
                stack.extend(v.values())
            elif t is list:
                lists.append(v)
                stack.extend(v)
        owners, keys, values = self.slot_owners, self.slot_keys, self.slot_values
        for d in dicts:
            for k, x in d.items():
                if type(x) in _SENSITIVE:
                    owners.append(d)
                    keys.append(k)
                    values.append(x)
        for lst in lists:
            for i, x in enumerate(lst):
                if type(x) in _SENSITIVE:
                    owners.append(lst)
                    keys.append(i)
                    values.append(x)
        self.dicts += dicts
        self.lists += lists
        self.dict_copies += map(dict, dicts)
        self.list_copies += map(list, lists)
        self.dict_keys += chain.from_iterable(dicts)

    def unchanged(self, entries: list[Any]) -> bool:
        """Whether ``entries`` starts with exactly the recorded entries, untouched."""
        return (
            self.full
            and self.same_entry_objects(entries)
            # same key sets; each value the same object or == to it (C loops)
            and self.dicts == self.dict_copies
            and self.lists == self.list_copies
            # same key order
            and list(chain.from_iterable(self.dicts)) == self.dict_keys
            # where == is not enough, the same object
            and not any(map(is_not, map(getitem, self.slot_owners, self.slot_keys), self.slot_values))
        )
