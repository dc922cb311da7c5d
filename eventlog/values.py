"""The values eventlog stores, and the two walks over them.

A storable value is JSON-like plus ``bytes``: ``dict`` (``str`` keys, order kept),
``list``, ``str``, ``bytes``, ``int``, ``float``, ``bool`` and ``None``, nested at most
:data:`MAX_DEPTH` deep.  Anything else (tuples, sets, subclasses, non-string keys) is
refused with :class:`~eventlog.errors.InvalidValueError` rather than silently turned
into something else, because a store must give back exactly what it was given.

:func:`prepare` validates a value, copies its containers (leaves are immutable and
shared) and swaps large strings and bytes for references, in one walk.
:func:`same` is the strict equality the change detection of ``save()`` relies on:
unlike ``==`` it tells ``1`` from ``1.0`` and ``True``, ``0.0`` from ``-0.0``, and
``{"a": 1, "b": 2}`` from ``{"b": 2, "a": 1}``, all of which ``json.dumps`` tells apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .errors import InvalidValueError

#: Deepest nesting accepted in one value (a dict or list inside another counts one).
MAX_DEPTH = 200

_LEAVES = frozenset((str, bytes, int, float, bool, type(None)))


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same storable value, types and key order
    included.  NaN equals NaN here (it is the same stored value)."""
    t = type(a)
    if t is not type(b):
        return False
    if t is dict:
        if len(a) != len(b) or list(a) != list(b):
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
    """A copy of ``value`` whose containers are new and whose leaves are shared."""
    t = type(value)
    if t is dict:
        return {k: copy(v) for k, v in value.items()}
    if t is list:
        return [copy(v) for v in value]
    return value


def prepare(
    value: Any,
    threshold: int,
    externalise: Callable[[str | bytes], Any],
    *,
    depth: int = 0,
) -> tuple[Any, Any]:
    """Validate ``value`` and return ``(encodable, private_copy)``.

    ``encodable`` is ``value`` with every ``str`` of at least ``threshold`` UTF-8 bytes
    (a quick character count bounds that) and every ``bytes`` of at least ``threshold``
    bytes replaced by ``externalise(v)``.  ``private_copy`` has fresh containers and
    the original leaves.  Where a container holds no large value the two are the same
    object: neither is ever mutated.

    Raises :class:`InvalidValueError` for an unsupported type, a non-``str`` key or
    nesting deeper than :data:`MAX_DEPTH`.
    """
    t = type(value)
    if t is str:
        # len(str) <= UTF-8 length <= 4 * len(str): encode only when it may matter.
        if len(value) * 4 >= threshold and (
            len(value) >= threshold or len(value.encode("utf-8", "surrogatepass")) >= threshold
        ):
            return externalise(value), value
        return value, value
    if t is bytes:
        if len(value) >= threshold:
            return externalise(value), value
        return value, value
    if t in _LEAVES:
        return value, value
    if depth >= MAX_DEPTH:
        raise InvalidValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if t is dict:
        enc: dict[str, Any] = {}
        cpy: dict[str, Any] = {}
        shared = True
        for k, v in value.items():
            if type(k) is not str:
                raise InvalidValueError(f"dict key {k!r} is a {type(k).__name__}, not a str")
            e, c = prepare(v, threshold, externalise, depth=depth + 1)
            enc[k] = e
            cpy[k] = c
            shared = shared and e is c
        return (cpy if shared else enc), cpy
    if t is list:
        encl: list[Any] = []
        cpyl: list[Any] = []
        shared = True
        for v in value:
            e, c = prepare(v, threshold, externalise, depth=depth + 1)
            encl.append(e)
            cpyl.append(c)
            shared = shared and e is c
        return (cpyl if shared else encl), cpyl
    raise InvalidValueError(
        f"cannot store a value of type {t.__name__}: eventlog stores dict, list, str, bytes, int, float, bool and None"
    )
