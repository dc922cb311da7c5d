"""Copies of what :class:`eventlog.langgraph.EventlogSaver` deserialized, handed to
callers, and the mirror that proves at the next ``put`` that what a caller holds
is unchanged (so its stored form can be reused).  Pure Python over objects; no
LangGraph needed here (pydantic, which LangChain's messages are made with, is).

A read must give objects of its own (a caller may change them in place), and a
long conversation should not be deserialized again at every step: the saver keeps
a private deserialized copy of each item, never handed out, and hands out
:func:`copies` of it, made the way pydantic 2 copies a model (its four slots) with
new containers and the same immutable leaves.  :func:`fresh` decides what can be
copied faithfully; anything else is deserialized again.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import speedups, values
from .mirror import Mirror

#: Leaves a deserialized item may hold and share with its copies.
LEAVES = frozenset((str, bytes, int, float, bool, type(None)))


class Known:
    """The items of a list channel's value as last stored or handed out (``objects``),
    the list of their serialized forms in the session's log (``stored``, by
    identity), and a :class:`~eventlog.mirror.Mirror` of what the objects hold (see
    :func:`watched`; no mirror when one holds what it cannot watch): an item is
    reused unserialized only while it is the very object and nothing in any of them
    changed, so an edit made in place (a message's content changed, then the message
    saved again) is serialized, never lost."""

    __slots__ = ("guard", "objects", "stored")

    def __init__(self, objects: list[Any], stored: list[Any], guard: Mirror | None) -> None:
        self.objects = objects
        self.stored = stored
        self.guard = guard if guard is not None and guard.full else None

    @classmethod
    def of(cls, objects: list[Any], stored: list[Any]) -> Known:
        holders = watched(objects)
        return cls(objects, stored, None if holders is None else Mirror(holders, full=True))

    def extended(self, added: list[Any], stored: list[Any]) -> Known:
        """This one (:meth:`reusable` just now) with ``added`` after its objects: its
        mirror extended by what they hold, not made again (it is replaced)."""
        holders, guard = watched(added), self.guard
        if holders is not None and guard is not None:
            guard.extend(holders)
        return Known(self.objects + added, stored, None if holders is None else guard)

    def reusable(self, stored: Any) -> bool:
        """Whether the objects can stand for the serialized ``stored`` list."""
        return stored is self.stored and self.guard is not None and self.guard.untouched()


def watched(objects: list[Any]) -> list[Any] | None:
    """What :class:`Known` watches of ``objects``: each dict or list, each object's
    ``__dict__`` and pydantic extra (immutable leaves need nothing); ``None`` if one
    cannot be watched whole: an object without a ``__dict__``, or holding anything
    but dicts, lists and immutable leaves (an object inside could change unseen)."""
    holders = []
    for o in objects:
        t = type(o)
        if t is dict or t is list:
            if not values.decoded_ok(o):
                return None
            holders.append(o)
        elif t not in LEAVES:
            d = getattr(o, "__dict__", None)
            if type(d) is not dict or not values.decoded_ok(d):
                return None  # what it holds cannot be watched: never reused
            holders.append(d)
            extra = getattr(o, "__pydantic_extra__", None)
            if extra is not None:
                if type(extra) is not dict or not values.decoded_ok(extra):
                    return None
                holders.append(extra)
    return holders


#: What a pydantic 2 model holds, all of which its ``__copy__`` copies: where a
#: model class holds exactly these, :func:`fresh` copies them itself.
_PYDANTIC_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_DIRECT = getattr(BaseModel, "__slots__", None) == _PYDANTIC_SLOTS
_set = object.__setattr__
_OBJECT_NEW: Any = object.__new__


#: How :func:`fresh` copies an instance of a class (see :func:`_kind`).
_KINDS: dict[type, int] = {}


def _kind(t: type) -> int:
    """0: not a pydantic model keeping pydantic's ``__copy__`` (not copied); 1: one
    holding exactly what that copies (copied directly); 2: another (by its
    ``__copy__``).  Remembered for the classes met last."""
    if not issubclass(t, BaseModel) or getattr(t, "__copy__", None) is not BaseModel.__copy__:
        kind = 0
    elif _DIRECT and getattr(t, "__slots__", None) == _PYDANTIC_SLOTS and getattr(t, "__new__", None) is _OBJECT_NEW:
        kind = 1
    else:
        kind = 2
    if len(_KINDS) >= 256:
        _KINDS.clear()
    _KINDS[t] = kind
    return kind


def fresh(obj: Any) -> Any:
    """A copy of a deserialized item that shares nothing mutable with it (new
    containers, the same immutable leaves), equal to what deserializing it again
    gives; ``None`` where that cannot be promised.  Copied: plain dicts and lists
    (:func:`eventlog.values.decoded_ok`), and pydantic models (LangChain messages)
    that keep pydantic's own ``__copy__`` and no private attributes, whose fields
    hold only those."""
    t = type(obj)
    if t in LEAVES:
        return obj
    if t is dict or t is list:
        return values.copy(obj) if values.decoded_ok(obj) else None
    kind = _KINDS.get(t)
    if kind is None:
        kind = _kind(t)
    if kind == 0 or getattr(obj, "__pydantic_private__", None):
        return None
    fields, extra = obj.__dict__, getattr(obj, "__pydantic_extra__", None)
    if not values.decoded_ok(fields) or (extra and not values.decoded_ok(extra)):
        return None
    if kind == 1:  # checked: copied as copies() copies what fresh() made
        return copies([obj])[0][0]
    new = t.__copy__(obj)  # pydantic's: a new __dict__, fields set and extra, the values shared
    new.__dict__.update(values.copy(fields))
    if extra and new.__pydantic_extra__ is not None:
        new.__pydantic_extra__.update(values.copy(extra))
    return new


def copies(privates: list[Any]) -> tuple[list[Any], list[Any] | None]:
    """A copy of each of ``privates`` (what :func:`fresh` made, never handed out, so
    already proven copyable): :func:`fresh` without its checks; and what
    :func:`watched` would find in the copies, gathered as they are made (``None``
    where a copy was made another way).  In C with the optional extension
    (``copy_models``) where every item is a model copied directly, a dict, a list
    or a leaf; :func:`_copies` is its pure-Python twin."""
    if _c_copy_models is not None:
        done: tuple[list[Any], list[Any]] | None = _c_copy_models(privates, _KINDS, LEAVES, _OBJECT_NEW)
        if done is not None:
            return done
    return _copies(privates)


_c_copy_models = None if speedups.ext is None else speedups.ext.copy_models


def _copies(privates: list[Any]) -> tuple[list[Any], list[Any] | None]:
    out: list[Any] = []
    holders: list[Any] = []
    complete = True
    add, hold, kinds, new_object, copy = out.append, holders.append, _KINDS, _OBJECT_NEW, values.copier()
    for p in privates:
        t = type(p)
        if kinds.get(t) == 1:
            new = new_object(t)
            fields = copy(p.__dict__)
            _set(new, "__dict__", fields)
            hold(fields)
            extra = p.__pydantic_extra__
            if extra is not None:
                extra = copy(extra) if extra else {}
                hold(extra)
            _set(new, "__pydantic_extra__", extra)
            _set(new, "__pydantic_fields_set__", set(p.__pydantic_fields_set__))
            _set(new, "__pydantic_private__", None if p.__pydantic_private__ is None else {})
            add(new)
        elif t in LEAVES:
            add(p)
        elif t is dict or t is list:
            c = copy(p)
            hold(c)
            add(c)
        else:
            add(fresh(p))
            complete = False
    return out, holders if complete else None
