"""Fast proof that a caller's entries did not change since the last save.

Runtimes hand ``save()`` the whole session every time, usually the same objects with a
few entries appended.  Comparing every entry strictly (:func:`eventlog.values.same`)
is a Python walk over the whole session on every save.  A :class:`Mirror` instead
remembers every container of the entries the caller passed last time (the caller's
own objects), its length, and the very key and value objects it held.  If all of
them are still the same objects, nothing in those entries can have changed: leaves
are immutable, and the mirror's references keep them alive, so an identity cannot be
reused by a new object.  Identity, never ``==``: an equal but different object (1.0
for 1, a str subclass, a bytearray) might store differently or not at all.  The
check runs in C-level loops (``map``, ``itertools.chain``), a few nanoseconds per
value.

Any difference at all, even a value replaced by an equal one, makes the check fail
and ``save()`` falls back to the strict comparison: the mirror can only make saving
faster, never different.
"""

from __future__ import annotations

from itertools import chain
from operator import is_, is_not
from typing import Any


class Mirror:
    """Identity snapshot of the caller's entries as of the last save."""

    __slots__ = (
        "dict_keys", "dict_lens", "dict_vals", "dicts", "entries", "full", "list_items", "list_lens", "lists"
    )  # fmt: skip

    def __init__(self, entries: list[Any], *, full: bool) -> None:
        """Mirror ``entries``.  A shallow mirror (``full=False``) records only the
        entry objects: cheap, for callers that pass new objects every time, and
        never :meth:`unchanged`; it only tells whether a full one is worth making."""
        self.full = full
        self.entries: list[Any] = []
        self.dicts: list[dict[str, Any]] = []  # every container of the entries
        self.lists: list[list[Any]] = []
        self.dict_lens: list[int] = []
        self.list_lens: list[int] = []
        self.dict_keys: list[str] = []  # every key, in order: the very objects
        self.dict_vals: list[Any] = []  # every value and item: the very objects
        self.list_items: list[Any] = []
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
        self.dicts += dicts
        self.lists += lists
        self.dict_lens += map(len, dicts)
        self.list_lens += map(len, lists)
        self.dict_keys += chain.from_iterable(dicts)
        self.dict_vals += chain.from_iterable(map(dict.values, dicts))
        self.list_items += chain.from_iterable(lists)

    def unchanged(self, entries: list[Any]) -> bool:
        """Whether ``entries`` starts with exactly the recorded entries, untouched:
        every container still holds the very same keys and values, by identity
        (never ``==``, which a str subclass, a bytearray or 1.0 could satisfy)."""
        return (
            self.full
            and self.same_entry_objects(entries)
            and list(map(len, self.dicts)) == self.dict_lens
            and list(map(len, self.lists)) == self.list_lens
            and not any(map(is_not, chain.from_iterable(map(dict.values, self.dicts)), self.dict_vals))
            and not any(map(is_not, chain.from_iterable(self.lists), self.list_items))
            and not any(map(is_not, chain.from_iterable(self.dicts), self.dict_keys))
        )
