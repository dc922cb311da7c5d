"""The event model: operations, the session state they build, and the diff of two
states.

A session is ``fields`` (its top-level keys in order, the managed entries list
standing as :data:`~eventlog.codec.ENTRIES`) plus ``entries``.  An event is one
``save()`` or ``append()``: a list of operations applied in order.

* :class:`Insert` puts entries at an index (at the end: an append),
* :class:`Replace` swaps the entry at an index (changed in place),
* :class:`Delete` removes a run of entries,
* :class:`SetFields` sets top-level fields and, when keys came or went or moved,
  gives the full key order.

:func:`diff` finds the operations that turn one state into a session dict, using
strict equality (:func:`eventlog.values.same`); :func:`apply` replays them.
"""

from __future__ import annotations

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


Op = Insert | Replace | Delete | SetFields | Tombstone


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


def apply(state: State, ops: tuple[Op, ...] | list[Op]) -> None:
    """Apply ``ops`` to ``state`` in place.  Raises ``ValueError`` for an operation
    that does not fit the state (a damaged or foreign log)."""
    entries = state.entries
    for op in ops:
        t = type(op)
        if t is Insert:
            assert isinstance(op, Insert)
            if not 0 <= op.index <= len(entries):
                raise ValueError(f"insert at {op.index} into {len(entries)} entries")
            entries[op.index : op.index] = op.entries
        elif t is Replace:
            assert isinstance(op, Replace)
            if not 0 <= op.index < len(entries):
                raise ValueError(f"replace at {op.index} of {len(entries)} entries")
            entries[op.index] = op.entry
        elif t is Delete:
            assert isinstance(op, Delete)
            if op.count < 1 or not 0 <= op.index <= len(entries) - op.count:
                raise ValueError(f"delete {op.count} at {op.index} of {len(entries)} entries")
            del entries[op.index : op.index + op.count]
        elif t is Tombstone:
            raise ValueError("the session was deleted")
        else:
            assert isinstance(op, SetFields)
            fields = state.fields
            fields.update(op.changed)
            if op.order is not None:
                if len(set(op.order)) != len(op.order) or not set(op.order) <= fields.keys():
                    raise ValueError("field order names unknown or repeated keys")
                state.fields = fields = {k: fields[k] for k in op.order}
            if fields.get("entries") is not ENTRIES and entries:
                raise ValueError("entries left behind when the entries field stopped being a list")


def diff(old: State, data: dict[str, Any], known_same: int = 0) -> list[Op]:
    """The operations that turn ``old`` into ``data`` (a session dict), minimal for
    appends and in-place changes.  Values in the result are ``data``'s own objects.

    ``known_same`` is a count of leading entries the caller has already proven
    unchanged (see :class:`eventlog.mirror.Mirror`); they are not compared again."""
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
        elif k not in old_fields or old_fields[k] is ENTRIES or not same(v, old_fields[k]):
            changed[k] = v
    order = list(data) if list(data) != list(old_fields) else None
    if changed or order is not None:
        ops.append(SetFields(changed, order))
    return ops


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

_INSERT, _REPLACE, _DELETE, _SET, _TOMBSTONE = 0, 1, 2, 3, 4


def ops_to_wire(ops: list[Op]) -> list[Any]:
    """The CBOR-ready form of ``ops`` (values already prepared for encoding)."""
    out: list[Any] = []
    for op in ops:
        if type(op) is Insert:
            out.append([_INSERT, op.index, op.entries])
        elif type(op) is Replace:
            out.append([_REPLACE, op.index, op.entry])
        elif type(op) is Delete:
            out.append([_DELETE, op.index, op.count])
        elif type(op) is Tombstone:
            out.append([_TOMBSTONE, op.root, None])
        else:
            assert isinstance(op, SetFields)
            out.append([_SET, op.changed, op.order])
    return out


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
    ops: list[Op] = []
    for item in wire:
        if type(item) is not list or len(item) != 3 or type(item[0]) is not int:
            raise DecodeError("malformed operation")
        kind, a, b = item
        if kind == _INSERT:
            if type(b) is not list or not decoded_ok(b, MAX_DEPTH + 1, Ref):
                raise DecodeError("malformed insert")
            ops.append(Insert(_nat(a), b))
        elif kind == _REPLACE:
            if not decoded_ok(b, MAX_DEPTH, Ref):
                raise DecodeError("malformed replace")
            ops.append(Replace(_nat(a), b))
        elif kind == _DELETE:
            ops.append(Delete(_nat(a), _nat(b)))
        elif kind == _SET:
            if type(a) is not dict or not (b is None or (type(b) is list and all(type(k) is str for k in b))):
                raise DecodeError("malformed field update")
            if not _fields_ok(a):
                raise DecodeError("malformed field update")
            ops.append(SetFields(a, b))
        elif kind == _TOMBSTONE:
            if type(a) is not str or b is not None:
                raise DecodeError("malformed tombstone")
            ops.append(Tombstone(a))
        else:
            raise DecodeError(f"unknown operation kind {kind}")
    return tuple(ops)


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
