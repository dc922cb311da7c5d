"""The event model: operations, the session state they build, and the diff of two
states.

A session is ``fields`` (its top-level keys in order, the managed entries list
standing as :data:`~eventlog.codec.ENTRIES`) plus ``entries``.  An event is one
``save()`` or ``append()``: a list of operations applied in order.

* :class:`Insert` puts entries at an index (at the end: an append),
* :class:`Replace` swaps the entry at an index (changed in place),
* :class:`Delete` removes a run of entries,
* :class:`SetFields` sets top-level fields and, when keys came or went or moved,
  gives the full key order,
* :class:`At` applies one of those to a list or dict *inside* the fields: the value
  at a path of keys from the top-level dict down through dicts (``("messages",)``,
  ``("state", "messages")``; at most :data:`MAX_PATH` keys).  So any list of a
  session, whatever it is called and wherever it sits in dicts, is kept item by
  item like ``entries``, and a nested dict key by key.

``entries`` (the managed top-level list, standing as the marker in ``fields``) keeps
its own operations, as before lists at paths existed: ``append()`` adds to it and old
files hold it.  Every other list and dict lives in ``fields`` itself; the containers
:func:`apply` changes in place are always its own (it copies the "spine" of every
value it sets: :func:`_own`), never an operation's value or a caller's.

:func:`diff` finds the operations that turn one state into a session dict, using
strict equality (:func:`eventlog.values.same`); :func:`apply` replays them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import ENTRIES, DecodeError, Ref
from .values import MAX_DEPTH, decoded_ok, same


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert ``entries`` before position ``index`` (``index == len``: append)."""

    index: int
    entries: list[Any]


@dataclass(frozen=True, slots=True)
class Replace:
    """Replace the entry at ``index`` with ``entry``."""

    index: int
    entry: Any


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``count`` entries starting at ``index``."""

    index: int
    count: int


@dataclass(frozen=True, slots=True)
class SetFields:
    """Set top-level fields; ``order`` (all keys, in order) when the key set or order
    changed, else ``None``.  The value :data:`~eventlog.codec.ENTRIES` marks where
    the entries list sits."""

    changed: dict[str, Any]
    order: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The session was deleted, as part of deleting the tree rooted at ``root``.
    Always a session's last event; folding past it is an error."""

    root: str


#: The most keys in the path of an :class:`At`: lists at most this deep in dicts are
#: kept item by item, dicts less deep key by key; deeper values are set whole.
MAX_PATH = 4

#: What an :class:`At` applies to the value at its path.
Edit = Insert | Replace | Delete | SetFields


@dataclass(frozen=True, slots=True)
class At:
    """Apply ``op`` to the value at ``path`` (keys from the top-level dict down,
    through dicts): :class:`Insert`, :class:`Replace` or :class:`Delete` to a list
    there, :class:`SetFields` (its keys, in order) to a dict there (then the path
    is shorter than :data:`MAX_PATH`)."""

    path: tuple[str, ...]
    op: Edit


Op = Insert | Replace | Delete | SetFields | Tombstone | At


class ListLike:
    """Base of the list stand-ins :func:`apply` may edit at a path besides ``list``
    (the snapshot builder's layout of positions: :mod:`eventlog.snapshots`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event: the operations one ``save()`` or ``append()`` wrote.

    ``seq`` is its position in the session (1, 2, ...), ``position`` its global
    position in the store (increasing, never reused), ``timestamp_ms`` when it was
    written (Unix milliseconds)."""

    session_id: str
    seq: int
    position: int
    timestamp_ms: int
    ops: tuple[Op, ...]


@dataclass(slots=True)
class State:
    """A session as folded so far.  Owned by whoever folded it: never shared."""

    fields: dict[str, Any] = field(default_factory=dict)
    entries: list[Any] = field(default_factory=list)

    @property
    def managed(self) -> bool:
        """Whether ``entries`` is a list kept entry by entry."""
        return self.fields.get("entries") is ENTRIES

    def session(self) -> dict[str, Any]:
        """The session dict (sharing this state's objects: copy before handing out)."""
        return {k: (self.entries if v is ENTRIES else v) for k, v in self.fields.items()}

    def clone(self) -> State:
        """A state of its own with the same values (the containers :func:`apply`
        changes copied, the rest shared)."""
        return State({k: _own(v, MAX_PATH - 1) for k, v in self.fields.items()}, list(self.entries))

    def list_at(self, path: tuple[str, ...]) -> Any:
        """The list at ``path`` (``("entries",)``: the managed entries), else ``None``."""
        if path == ("entries",) and self.managed:
            return self.entries
        v: Any = self.fields
        for k in path:
            if type(v) is not dict:
                return None
            v = v.get(k)
        return v if type(v) is list else None


def _own(v: Any, room: int) -> Any:
    """``v`` (set at a path with ``room`` keys left to :data:`MAX_PATH`) with the
    containers an :class:`At` may change copied: lists and dicts it can reach."""
    t = type(v)
    if t is list:
        return list(v)
    if t is dict and room > 0:
        return {k: _own(x, room - 1) for k, x in v.items()}
    return v


def lists_in(data: dict[str, Any]) -> dict[tuple[str, ...], list[Any]]:
    """The lists of a session dict that :func:`diff` keeps item by item, by path
    (``("entries",)`` for the managed entries)."""
    found: dict[tuple[str, ...], list[Any]] = {}
    stack: list[tuple[tuple[str, ...], dict[str, Any]]] = [((), data)]
    while stack:
        path, d = stack.pop()
        for k, v in d.items():
            t = type(v)
            if t is list:
                found[(*path, k)] = v
            elif t is dict and len(path) + 1 < MAX_PATH:
                stack.append(((*path, k), v))
    return found


def apply(state: State, ops: tuple[Op, ...] | list[Op]) -> None:
    """Apply ``ops`` to ``state`` in place.  Raises ``ValueError`` for an operation
    that does not fit the state (a damaged or foreign log)."""
    entries = state.entries
    for op in ops:
        t = type(op)
        if t is Insert or t is Replace or t is Delete:
            _edit_list(entries, op)  # type: ignore[arg-type]
        elif t is At:
            assert isinstance(op, At)
            _apply_at(state.fields, op)
        elif t is Tombstone:
            raise ValueError("the session was deleted")
        else:
            assert isinstance(op, SetFields)
            state.fields = fields = _set_keys(state.fields, op, MAX_PATH - 1)
            if fields.get("entries") is not ENTRIES and entries:
                raise ValueError("entries left behind when the entries field stopped being a list")


def _edit_list(items: Any, op: Insert | Replace | Delete) -> None:
    """Apply a list operation to ``items`` (a list or :class:`ListLike`) in place."""
    n = len(items)
    if type(op) is Insert:
        if not 0 <= op.index <= n:
            raise ValueError(f"insert at {op.index} into {n} entries")
        items[op.index : op.index] = op.entries
    elif type(op) is Replace:
        if not 0 <= op.index < n:
            raise ValueError(f"replace at {op.index} of {n} entries")
        items[op.index] = op.entry
    else:
        assert isinstance(op, Delete)
        if op.count < 1 or not 0 <= op.index <= n - op.count:
            raise ValueError(f"delete {op.count} at {op.index} of {n} entries")
        del items[op.index : op.index + op.count]


def _set_keys(d: dict[str, Any], op: SetFields, room: int) -> dict[str, Any]:
    """``d`` (changed in place) with ``op``'s keys set and, given an order, a new
    dict in that order; the values set are made the state's own (:func:`_own`)."""
    for k, v in op.changed.items():
        d[k] = _own(v, room)
    if op.order is not None:
        if len(set(op.order)) != len(op.order) or not set(op.order) <= d.keys():
            raise ValueError("field order names unknown or repeated keys")
        d = {k: d[k] for k in op.order}
    return d


def _apply_at(fields: dict[str, Any], op: At) -> None:
    path = op.path
    if not 0 < len(path) <= MAX_PATH:
        raise ValueError(f"a path of {len(path)} keys")
    parent = fields
    for k in path[:-1]:
        parent = parent.get(k)  # type: ignore[assignment]
        if type(parent) is not dict:
            raise ValueError(f"no dict at {'.'.join(path)}")
    key = path[-1]
    target = parent.get(key)
    inner = op.op
    if type(inner) is SetFields:
        if type(target) is not dict or len(path) >= MAX_PATH:
            raise ValueError(f"no dict at {'.'.join(path)}")
        parent[key] = _set_keys(target, inner, MAX_PATH - 1 - len(path))
    else:
        if not (type(target) is list or isinstance(target, ListLike)):
            raise ValueError(f"no list at {'.'.join(path)}")
        _edit_list(target, inner)  # type: ignore[arg-type]


def diff(
    old: State, data: dict[str, Any], known_same: int = 0, known: Mapping[tuple[str, ...], int] | None = None
) -> list[Op]:
    """The operations that turn ``old`` into ``data`` (a session dict), minimal for
    appends and in-place changes.  Values in the result are ``data``'s own objects.

    The list ``entries`` is diffed entry by entry with its own operations; every
    other list that stays a list (at a path through dicts, see :class:`At`) item
    by item, and every dict that stays a dict key by key (:func:`_diff_in`).

    ``known_same`` is a count of leading entries the caller has already proven
    unchanged (see :class:`eventlog.mirror.Mirror`); they are not compared again.
    ``known`` gives the same for the lists at paths."""
    new_entries = data.get("entries")
    managed = type(new_entries) is list
    old_entries = old.entries
    ops: list[Op] = []
    if managed:
        assert isinstance(new_entries, list)
        ops += _diff_entries(old_entries, new_entries, known_same)
    elif old_entries:
        ops.append(Delete(0, len(old_entries)))
    old_fields = old.fields
    changed: dict[str, Any] = {}
    for k, v in data.items():
        if managed and k == "entries":
            if old_fields.get(k) is not ENTRIES:
                changed[k] = ENTRIES
        elif k not in old_fields or old_fields[k] is ENTRIES or not _in_place((k,), old_fields[k], v, known, ops):
            changed[k] = v
    order = list(data) if list(data) != list(old_fields) else None
    if changed or order is not None:
        ops.append(SetFields(changed, order))
    return ops


def _in_place(
    path: tuple[str, ...], old: Any, new: Any, known: Mapping[tuple[str, ...], int] | None, ops: list[Op]
) -> bool:
    """Whether ``new`` at ``path`` is kept from ``old``: the same, or changed in
    place by the operations appended to ``ops``."""
    return _diff_in(path, old, new, known, ops) or same(new, old)


def _diff_in(
    path: tuple[str, ...], old: Any, new: Any, known: Mapping[tuple[str, ...], int] | None, ops: list[Op]
) -> bool:
    """Append to ``ops`` the :class:`At` operations that turn ``old`` (the value at
    ``path``) into ``new`` in place, if both are lists, or both dicts and the path
    leaves room for keys below it; else ``False`` (the value is set whole)."""
    to, tn = type(old), type(new)
    if to is list and tn is list:
        edits = _diff_entries(old, new, known.get(path, 0) if known else 0)
        ops += [At(path, e) for e in edits]  # type: ignore[arg-type]
        return True
    if to is not dict or tn is not dict or len(path) >= MAX_PATH:
        return False
    changed: dict[str, Any] = {}
    for k, v in new.items():
        if k not in old or (not _diff_in((*path, k), old[k], v, known, ops) and not same(v, old[k])):
            changed[k] = v
    order = list(new) if list(new) != list(old) else None
    if changed or order is not None:
        ops.append(At(path, SetFields(changed, order)))
    return True


def _diff_entries(old: list[Any], new: list[Any], known_same: int) -> list[Op]:
    n_old, n_new = len(old), len(new)
    m = min(n_old, n_new)
    p = min(known_same, m)
    while p < m and same(new[p], old[p]):
        p += 1
    if p == n_old:
        return [Insert(p, new[p:])] if n_new > p else []
    s = 0
    while s < m - p and same(new[n_new - 1 - s], old[n_old - 1 - s]):
        s += 1
    a, b = n_old - s - p, n_new - s - p  # old[p:p+a] becomes new[p:p+b]
    k = min(a, b)
    ops: list[Op] = [Replace(p + i, new[p + i]) for i in range(k) if i == 0 or not same(new[p + i], old[p + i])]
    if a > k:
        ops.append(Delete(p + k, a - k))
    elif b > k:
        ops.append(Insert(p + k, new[p + k : p + b]))
    return ops


# --------------------------------------------------------------------- wire form

_INSERT, _REPLACE, _DELETE, _SET, _TOMBSTONE, _AT = 0, 1, 2, 3, 4, 5


def uses_paths(ops: list[Op] | tuple[Op, ...]) -> bool:
    """Whether ``ops`` hold an :class:`At`: their event frame is then version 6
    (:data:`~eventlog.codec.FRAME_VERSION_PATHS`), refused as newer by readers
    that do not know it."""
    return any(type(op) is At for op in ops)


def ops_to_wire(ops: list[Op]) -> list[Any]:
    """The CBOR-ready form of ``ops`` (values already prepared for encoding)."""
    return [_op_to_wire(op) for op in ops]


def _op_to_wire(op: Op) -> list[Any]:
    if type(op) is Insert:
        return [_INSERT, op.index, op.entries]
    if type(op) is Replace:
        return [_REPLACE, op.index, op.entry]
    if type(op) is Delete:
        return [_DELETE, op.index, op.count]
    if type(op) is Tombstone:
        return [_TOMBSTONE, op.root, None]
    if type(op) is At:
        return [_AT, list(op.path), _op_to_wire(op.op)]
    assert isinstance(op, SetFields)
    return [_SET, op.changed, op.order]


def _nat(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise DecodeError("malformed operation")
    return v


def _fields_ok(fields: dict[Any, Any]) -> bool:
    """Top-level fields: ``str`` keys, each value storable or the entries marker."""
    return all(type(k) is str and (v is ENTRIES or decoded_ok(v, MAX_DEPTH, Ref)) for k, v in fields.items())


def ops_from_wire(wire: Any) -> tuple[Op, ...]:
    """Operations from their decoded CBOR form; :class:`DecodeError` if malformed,
    also when a value in them is not one ``save()`` could have written."""
    if type(wire) is not list:
        raise DecodeError("event body is not a list of operations")
    return tuple(_op_from_wire(item, 0) for item in wire)


def _op_from_wire(item: Any, depth: int) -> Op:
    """One operation; ``depth``: the keys of the path it applies at (0: the top level
    and ``entries``), which its values' nesting counts from."""
    if type(item) is not list or len(item) != 3 or type(item[0]) is not int:
        raise DecodeError("malformed operation")
    kind, a, b = item
    if kind == _INSERT:
        if type(b) is not list or not decoded_ok(b, MAX_DEPTH + 1 - depth, Ref):
            raise DecodeError("malformed insert")
        return Insert(_nat(a), b)
    if kind == _REPLACE:
        if not decoded_ok(b, MAX_DEPTH - depth, Ref):
            raise DecodeError("malformed replace")
        return Replace(_nat(a), b)
    if kind == _DELETE:
        return Delete(_nat(a), _nat(b))
    if kind == _SET:
        if type(a) is not dict or not (b is None or (type(b) is list and all(type(k) is str for k in b))):
            raise DecodeError("malformed field update")
        if not (_fields_ok(a) if depth == 0 else decoded_ok(a, MAX_DEPTH + 1 - depth, Ref)):
            raise DecodeError("malformed field update")
        return SetFields(a, b)
    if kind == _TOMBSTONE and depth == 0:
        if type(a) is not str or b is not None:
            raise DecodeError("malformed tombstone")
        return Tombstone(a)
    if kind == _AT and depth == 0:
        if type(a) is not list or not 0 < len(a) <= MAX_PATH or any(type(k) is not str for k in a):
            raise DecodeError("malformed path")
        inner = _op_from_wire(b, len(a))
        if type(inner) is At or (type(inner) is SetFields and len(a) >= MAX_PATH):
            raise DecodeError("malformed operation at a path")
        return At(tuple(a), inner)  # type: ignore[arg-type]
    raise DecodeError(f"unknown operation kind {kind}")


def state_to_wire(state: State) -> list[Any]:
    """The CBOR-ready form of a whole state (for snapshots)."""
    return [state.fields, state.entries]


def state_from_wire(wire: Any) -> State:
    """A state from its decoded CBOR form; :class:`DecodeError` if malformed (as for
    :func:`ops_from_wire`)."""
    if type(wire) is not list or len(wire) != 2 or type(wire[0]) is not dict or type(wire[1]) is not list:
        raise DecodeError("malformed snapshot body")
    if not _fields_ok(wire[0]) or not decoded_ok(wire[1], MAX_DEPTH + 1, Ref):
        raise DecodeError("malformed snapshot body")
    state = State(wire[0], wire[1])
    if state.fields.get("entries") is not ENTRIES and state.entries:
        raise DecodeError("malformed snapshot body")
    return state
