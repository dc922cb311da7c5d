"""The values eventlog stores, and the two walks over them.

A storable value is JSON-like plus ``bytes``: ``dict`` (``str`` keys, order kept),
``list``, ``str``, ``bytes``, ``int``, ``float``, ``bool`` and ``None``, nested at most
:data:`MAX_DEPTH` deep.  Anything else (tuples, sets, subclasses, non-string keys) is
refused with :class:`~eventlog.errors.InvalidValueError` rather than silently turned
into something else, because a store must give back exactly what it was given.

:func:`validate` checks a value, :func:`externalise_large` swaps its large strings
and bytes for references, :func:`copy` copies its containers (leaves are immutable
and shared).
:func:`same` is the strict equality the change detection of ``save()`` relies on:
unlike ``==`` it tells ``1`` from ``1.0`` and ``True``, ``0.0`` from ``-0.0``, and
``{"a": 1, "b": 2}`` from ``{"b": 2, "a": 1}``, all of which ``json.dumps`` tells apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import speedups
from .errors import InvalidValueError

#: Deepest nesting accepted in one value (a dict or list inside another counts one).
MAX_DEPTH = 200


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same storable value, types and key order
    included.  NaN equals NaN here (it is the same stored value)."""
    t = type(a)
    if t is not type(b):
        return False
    if t is dict:
        # keys: the same, in order, and plain str (an equal str subclass is not)
        if len(a) != len(b) or list(a) != list(b) or list(map(type, a)).count(str) != len(a):
            return False
        xs, ys = a.values(), b.values()
    elif t is list:
        if len(a) != len(b):
            return False
        xs, ys = a, b
    elif t is float:
        if a == b:
            return bool(a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))
        return bool(a != a and b != b)
    else:
        return a == b  # type: ignore[no-any-return]
    for x, y in zip(xs, ys, strict=False):  # lengths checked above
        if x is y:
            continue
        if type(x) is str:
            if type(y) is not str or x != y:
                return False
        elif not same(x, y):
            return False
    return True


def copy(value: Any) -> Any:
    """A copy of ``value`` whose containers are new and whose leaves are shared (in C
    with the optional extension; :func:`_copy` is its pure-Python twin)."""
    if _c_copy is not None:
        return _c_copy(value)
    return _copy(value)


def copier() -> Callable[[Any], Any]:
    """:func:`copy` itself, without its dispatch (the C walk, or its twin), for a
    caller that copies many values in a loop."""
    return _c_copy if _c_copy is not None else _copy


def _copy(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return {k: _copy(v) for k, v in value.items()}
    if t is list:
        return [_copy(v) for v in value]
    return value


_ATOMS = frozenset((int, float, bool, type(None)))

# The C twins (eventlog._speedups) of the walks below, when in use (see eventlog.speedups).
_c_scan: Callable[[Any, int, int], bool | None] | None = None
_c_copy: Callable[[Any], Any] | None = None
_c_count: Callable[[Any, int, int], int] | None = None
if speedups.ext is not None:
    _c_scan, _c_copy, _c_count = speedups.ext.scan, speedups.ext.copy, speedups.ext.count
#: Whether :func:`count` runs in C (fast enough to bound every decoded segment).
COUNT_IN_C = _c_count is not None


def count(value: Any, budget: int, max_depth: int) -> int:
    """The number of values in ``value`` (each dict, list and leaf; keys are not
    counted), or ``-1`` as soon as it is more than ``budget``, when dicts and lists
    nest ``max_depth`` levels or more, or when one dict or list is met twice (held in
    two places, as CBOR's shared values can make it, or inside itself): a value
    that is not a plain tree is refused after at most ``budget + 1`` steps, however
    it is shared."""
    if _c_count is not None:
        return _c_count(value, budget, max_depth)
    return _count(value, budget, max_depth)


def _count(value: Any, budget: int, max_depth: int) -> int:
    """:func:`count` in Python (the C walk's twin and test oracle)."""
    if budget < 0:
        return -1
    left = budget
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        left -= 1
        if left < 0:
            return -1
        t = type(v)
        if t is dict or t is list:
            if depth >= max_depth or id(v) in seen:
                return -1
            seen.add(id(v))
            stack.extend((x, depth + 1) for x in (v.values() if t is dict else v))
    return budget - left


def validate(value: Any, threshold: int, within: int = 0) -> bool:
    """Check that ``value`` is storable; return whether it may hold a large leaf (a
    ``str`` or ``bytes`` that :func:`externalise_large` would swap: a str is at most
    4 UTF-8 bytes a character, so this is a cheap over-estimate).

    Raises :class:`InvalidValueError` for an unsupported type (subclasses included),
    a non-``str`` key or nesting deeper than :data:`MAX_DEPTH` (counting ``within``
    levels above the value: the keys of the path of a value inside a field).  With
    the optional C extension the walk runs in C; the Python walk then only words
    the error.
    """
    if _c_scan is not None:
        found = _c_scan(value, threshold, MAX_DEPTH - within)
        if found is not None:
            return found
    return _validate(value, threshold, within)


def validate_each(items: list[Any], threshold: int, within: int = 0) -> bool:
    """:func:`validate` of every value in the list ``items`` (each nested at most
    :data:`MAX_DEPTH` deep on its own, less ``within``): whether any may hold a large
    leaf.  With the C extension, one walk over the whole list (a batch of appended
    entries)."""
    if _c_scan is not None:
        found = _c_scan(items, threshold, MAX_DEPTH + 1 - within)
        if found is not None:
            return found
    large = False
    for v in items:
        if validate(v, threshold, within):
            large = True
    return large


def _validate(v: Any, threshold: int, depth: int) -> bool:
    # The dict and list loops are written out twice on purpose: this is the hot path
    # of every write, and one shared loop (keys checked in a separate pass) measured
    # ~15% slower on batched appends.
    t = type(v)
    large = False
    if t is dict:
        if depth >= MAX_DEPTH:
            raise InvalidValueError(f"value nested deeper than {MAX_DEPTH} levels")
        for k, x in v.items():
            if type(k) is not str:
                raise InvalidValueError(f"dict key {k!r:.40} is a {type(k).__name__}, not a str")
            tx = type(x)
            if tx is str:
                if len(x) * 4 >= threshold:
                    large = True
            elif tx not in _ATOMS and _validate(x, threshold, depth + 1):
                large = True
        return large
    if t is list:
        if depth >= MAX_DEPTH:
            raise InvalidValueError(f"value nested deeper than {MAX_DEPTH} levels")
        for x in v:
            tx = type(x)
            if tx is str:
                if len(x) * 4 >= threshold:
                    large = True
            elif tx not in _ATOMS and _validate(x, threshold, depth + 1):
                large = True
        return large
    if t is str:
        return len(v) * 4 >= threshold
    if t is bytes:
        return len(v) >= threshold
    if t in _ATOMS:
        return False
    raise InvalidValueError(
        f"cannot store a value of type {t.__name__}: eventlog stores dict, list, str, bytes, int, float, bool and None"
    )


def decoded_ok(value: Any, max_depth: int = MAX_DEPTH, leaf: type | None = None) -> bool:
    """Whether a value decoded from storage is one :func:`validate` accepts (so that
    what ``load()`` returns can always be saved again): the storable types, ``str``
    keys, containers nested fewer than ``max_depth`` deep; ``leaf`` (a reference to
    chunks, when large values are not rehydrated) is allowed as a leaf too.

    CBOR can say more than a stored value can (integer, bytes or array keys,
    ``undefined``, simple values); a frame that does is damaged or hostile."""
    if _c_scan is not None and _c_scan(value, 1 << 62, max_depth) is not None:
        return True
    return _decoded_ok(value, max_depth, leaf, _c_scan)


def _decoded_ok(v: Any, depth: int, leaf: type | None, scan: Callable[[Any, int, int], bool | None] | None) -> bool:
    """:func:`decoded_ok` in Python, with ``scan`` (the C walk) settling each part
    without a reference in it, or alone (``scan=None``: the pure-Python twin)."""
    t = type(v)
    if t is not dict and t is not list:
        return t is str or t is bytes or t in _ATOMS or (leaf is not None and t is leaf)
    if depth <= 0 or (t is dict and any(type(k) is not str for k in v)):
        return False
    for x in v.values() if t is dict else v:
        tx = type(x)
        if tx is dict or tx is list:
            # The C walk settles every part without a reference in it; only the
            # parts with one are walked here.
            if (scan is None or scan(x, 1 << 62, depth - 1) is None) and not _decoded_ok(x, depth - 1, leaf, scan):
                return False
        elif not (tx is str or tx is bytes or tx in _ATOMS or (leaf is not None and tx is leaf)):
            return False
    return True


def _is_large(v: Any, threshold: int) -> bool:
    t = type(v)
    if t is bytes:
        return len(v) >= threshold
    if t is str and len(v) * 4 >= threshold:
        if len(v) >= threshold:
            return True
        try:
            return len(v.encode("utf-8")) >= threshold
        except UnicodeEncodeError:
            return True  # let the externaliser report it
    return False


def externalise_large(v: Any, threshold: int, externalise: Callable[[str | bytes], Any]) -> Any:
    """``v`` (valid) with every large leaf replaced by ``externalise(leaf)``: a str of at
    least ``threshold`` UTF-8 bytes or bytes of at least ``threshold`` bytes.  New
    containers only on the paths to a swapped leaf; ``v`` itself is never mutated."""
    t = type(v)
    if t is dict:
        out = None
        for k, x in v.items():
            y = externalise_large(x, threshold, externalise)
            if y is not x:
                if out is None:
                    out = dict(v)
                out[k] = y
        return v if out is None else out
    if t is list:
        outl = None
        for i, x in enumerate(v):
            y = externalise_large(x, threshold, externalise)
            if y is not x:
                if outl is None:
                    outl = list(v)
                outl[i] = y
        return v if outl is None else outl
    return externalise(v) if _is_large(v, threshold) else v
