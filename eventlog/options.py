"""The options of a store, in one place: :class:`Options`.

Every option has its name, type, default and meaning here (the field's ``doc``
metadata, from which the class docstring is made), and is checked here, when an
:class:`Options` is made, before any file is touched.  :func:`eventlog.open`,
:func:`eventlog.open_async` and :class:`eventlog.agents.EventlogSession` all take an
``Options`` and/or the same options as keywords::

    opts = eventlog.Options(synchronous="NORMAL", cache_sessions=64)
    store = eventlog.open("a.db", opts)
    other = eventlog.open("b.db", opts, readonly=True)   # keywords override
    astore = eventlog.open_async("a.db", opts, readers=4)

**Errors.**  Every bad option raises :class:`~eventlog.InvalidValueError` (also a
``ValueError``) naming the option, the value given and what is allowed: a value of
the wrong type (``True`` is not an int here, nor ``1`` a bool), out of range, not a
number (``NaN``), and a name that is not an option at all (``eventlog.open(path,
snapshot_evry=10)``, and ``Options(snapshot_evry=10)``), never a ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .errors import InvalidValueError

#: SQLite's ``synchronous`` settings, weakest first.
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Smallest ``max_cell_bytes`` accepted.
MIN_CELL_BYTES = 16_384
#: Largest ``max_cell_bytes`` accepted: SQLite's largest string or blob
#: (``SQLITE_MAX_LENGTH``); SQLite would silently lower a larger limit to it.
MAX_CELL_BYTES = 1_000_000_000
#: Room a chunk leaves in a cell for the other columns of its row.
CHUNK_ROOM = 512
#: Smallest ``chunk_bytes`` accepted.
MIN_CHUNK_BYTES = 1024
#: Smallest ``large_value_bytes`` accepted.
MIN_LARGE_VALUE_BYTES = 64
#: Smallest ``max_body_bytes`` accepted (a smaller one would refuse every write).
MIN_BODY_BYTES = 1024
#: Largest value accepted for the sizes with no other bound (they reach C code as a
#: ``Py_ssize_t``).
MAX_SIZE = (1 << 62) - 1
#: Longest ``busy_timeout`` accepted, in seconds: SQLite counts it in milliseconds,
#: in a 32-bit int.
MAX_BUSY_TIMEOUT = (2**31 - 1) // 1000
#: Most reader threads (and connections) of :func:`eventlog.open_async`.
MAX_READERS = 256
#: Length of a ``chunk_key``.
KEY_BYTES = 32


def _doc(text: str) -> dict[str, str]:
    return {"doc": " ".join(text.split())}


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The options of a store (see :mod:`eventlog.options`).  Immutable, checked when
    made (:class:`~eventlog.InvalidValueError` naming the option); make a changed
    copy with :meth:`replace`.  ``Options()`` is every default.
    """

    max_cell_bytes: int = field(
        default=2_000_000,
        metadata=_doc(
            f"""No cell or row is ever larger; SQLite's own length limit
            (``SQLITE_LIMIT_LENGTH``) is set to it, so an oversized cell would fail for
            real.  From {MIN_CELL_BYTES:,} to {MAX_CELL_BYTES:,}."""
        ),
    )
    synchronous: str = field(
        default="FULL",
        metadata=_doc(
            """SQLite's setting: ``"OFF"``, ``"NORMAL"``, ``"FULL"`` or ``"EXTRA"`` (any
            case; kept upper case).  With each a returned write survives a process
            crash (``kill -9``); with FULL and EXTRA also an OS crash or power loss,
            while NORMAL may lose the last writes then and OFF may also damage the
            file."""
        ),
    )
    snapshot_every: int = field(
        default=200,
        metadata=_doc(
            """Snapshot a session after this many events since its last snapshot (0:
            never by count), which bounds what a load replays (see
            :class:`eventlog.snapshots.SnapshotPolicy`).  An int, 0 or more."""
        ),
    )
    snapshot_bytes: int = field(
        default=64 << 20,
        metadata=_doc(
            """Snapshot a session after this many bytes of event frames since its last
            snapshot (0: never by size).  An int, 0 or more."""
        ),
    )
    large_value_bytes: int = field(
        default=32 << 10,
        metadata=_doc(
            f"""Strings and bytes this large are stored once, in content-addressed
            chunks, and referred to.  An int, at least {MIN_LARGE_VALUE_BYTES}."""
        ),
    )
    chunk_bytes: int | None = field(
        default=None,
        metadata=_doc(
            f"""Size of a chunk (a snapshot segment holds about half as many bytes of
            entries); ``None``: 1 MiB, or ``max_cell_bytes - {CHUNK_ROOM}`` if that is
            smaller.  An int from {MIN_CHUNK_BYTES:,} to ``max_cell_bytes - {CHUNK_ROOM}``."""
        ),
    )
    max_body_bytes: int = field(
        default=256 << 20,
        metadata=_doc(
            f"""The largest single value (a str counted in UTF-8 bytes, base64 as the
            text it is, though stored decoded) and the largest encoded write; a write
            over it raises :class:`~eventlog.InvalidValueError`, and a value or body
            read back over it (written under a larger setting) raises
            :class:`~eventlog.CorruptionError`.  An int, at least {MIN_BODY_BYTES:,}."""
        ),
    )
    cache_sessions: int = field(
        default=16,
        metadata=_doc(
            """Sessions kept folded in memory between calls, the most recently used (0:
            none, every call reads the session from the file).  An int, 0 or more."""
        ),
    )
    busy_timeout: float = field(
        default=10.0,
        metadata=_doc(
            f"""Seconds a write waits for its turn while other writers write (writers
            take turns through the file ``PATH-lock``, see :mod:`eventlog.turnstile`;
            one that waits longer raises :class:`~eventlog.StorageError`).  An int or
            float from 0 to {MAX_BUSY_TIMEOUT:,} (not NaN, not infinite)."""
        ),
    )
    chunk_key: bytes | None = field(
        default=None,
        repr=False,  # a secret: never shown
        metadata=_doc(
            f"""A secret of exactly {KEY_BYTES} bytes (e.g. ``os.urandom(32)``; a
            ``bytearray`` is taken as bytes).  A store created with a key addresses its
            chunks by ``blake3(data, key=chunk_key)``, so addresses cannot be used to
            probe whether it holds a given file, and dedups only with itself.  The
            store records a fingerprint of the key (never the key) and must always be
            opened with the same key: without it, with another, or with a key for a
            store created without one, :class:`~eventlog.KeyMismatchError`.  Keep the
            key: without it the store cannot be read.  Never shown in a ``repr`` or an
            error message."""
        ),
    )
    readonly: bool = field(
        default=False,
        metadata=_doc(
            """Open an existing file read-only (SQLite ``mode=ro``): reads work as
            usual, and ``save``, ``append``, ``delete``, ``snapshot`` and ``compact``
            raise :class:`~eventlog.ReadOnlyError`.  The store is never changed, and a
            file from an older eventlog is read as it is, not upgraded.  Not for
            ``":memory:"``.  See :func:`eventlog.open` for where side files may
            appear.  ``True`` or ``False``."""
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _CHECKS[f.name](getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # normalised (an upper-case synchronous, bytes)
        chunk = self.chunk_bytes
        if chunk is not None and chunk > self.max_cell_bytes - CHUNK_ROOM:
            raise InvalidValueError(
                f"chunk_bytes must be at most max_cell_bytes - {CHUNK_ROOM} "
                f"({self.max_cell_bytes - CHUNK_ROOM}), not {chunk}"
            )

    @property
    def chunk_size(self) -> int:
        """``chunk_bytes``, or what ``None`` stands for under ``max_cell_bytes``."""
        if self.chunk_bytes is not None:
            return self.chunk_bytes
        return min(1 << 20, self.max_cell_bytes - CHUNK_ROOM)

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` (option names as keywords), checked as when made."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every option's name, in the order they are documented."""
        return tuple(f.name for f in dataclasses.fields(cls))


class OptionValues(TypedDict, total=False):
    """The options as keywords (``**overrides`` of :func:`eventlog.open`), for type
    checkers; the same names and types as :class:`Options`."""

    max_cell_bytes: int
    synchronous: str
    snapshot_every: int
    snapshot_bytes: int
    large_value_bytes: int
    chunk_bytes: int | None
    max_body_bytes: int
    cache_sessions: int
    busy_timeout: float
    chunk_key: bytes | None
    readonly: bool


class AsyncOptionValues(OptionValues, total=False):
    """:class:`OptionValues` and the one option of :func:`eventlog.open_async` alone:
    ``readers``."""

    readers: int


def resolve(options: Any, overrides: Mapping[str, Any], extra: tuple[str, ...] = ()) -> Options:
    """The :class:`Options` that ``options`` (an ``Options`` or ``None``: every
    default) with ``overrides`` (keywords) make; :class:`InvalidValueError` for
    anything else, an unknown name or a bad value.  ``extra``: the names of the
    caller's own options, told of in the error for an unknown name."""
    if options is None:
        base = _DEFAULTS
    elif isinstance(options, Options):
        base = options
    else:
        raise InvalidValueError(
            f"options must be an eventlog.Options or None, not {type(options).__name__}"
            + (" (pass a dict's items as keywords: **options)" if isinstance(options, Mapping) else "")
        )
    if not overrides:
        return base
    _check_names(overrides, extra)
    return dataclasses.replace(base, **overrides)


def check_readers(readers: Any) -> int:
    """``readers`` of :func:`eventlog.open_async`, checked."""
    return _int("readers", readers, 0, MAX_READERS)


# ---------------------------------------------------------------------- checks


def shown(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters, for an error message: never
    raising (an int too long to print, a ``__repr__`` that fails) nor taking long."""
    if type(value) is int and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return text[:width]


def _bad(name: str, value: Any, allowed: str) -> InvalidValueError:
    return InvalidValueError(f"{name} must be {allowed}, not {shown(value)} ({type(value).__name__})")


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        if hi < MAX_SIZE:
            allowed = f"an int from {lo:,} to {hi:,}"
        else:
            allowed = "an int, 0 or more" if lo == 0 else f"an int, at least {lo:,}"
        raise _bad(name, value, allowed)
    return value


def _sized(name: str, lo: int, hi: int = MAX_SIZE) -> Callable[[Any], int]:
    return functools.partial(_int, name, lo=lo, hi=hi)


def _synchronous(value: Any) -> str:
    if type(value) is not str or not value.isascii() or value.upper() not in SYNCHRONOUS:
        raise _bad("synchronous", value, f"one of {', '.join(SYNCHRONOUS)}")
    return value.upper()


def _chunk_bytes(value: Any) -> int | None:
    if value is None:
        return None
    return _int("chunk_bytes", value, MIN_CHUNK_BYTES, MAX_CELL_BYTES - CHUNK_ROOM)


def _busy_timeout(value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value <= MAX_BUSY_TIMEOUT:  # NaN compares False
        raise _bad("busy_timeout", value, f"an int or float from 0 to {MAX_BUSY_TIMEOUT:,} (seconds)")
    return float(value)


def _chunk_key(value: Any) -> bytes | None:
    if value is None:
        return None
    if type(value) not in (bytes, bytearray) or len(value) != KEY_BYTES:
        size = f", {len(value)} bytes" if isinstance(value, bytes | bytearray) else ""
        raise InvalidValueError(f"chunk_key must be {KEY_BYTES} bytes or None, not a {type(value).__name__}{size}")
    return bytes(value)


def _readonly(value: Any) -> bool:
    if type(value) is not bool:
        raise _bad("readonly", value, "True or False")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "max_cell_bytes": _sized("max_cell_bytes", MIN_CELL_BYTES, MAX_CELL_BYTES),
    "synchronous": _synchronous,
    "snapshot_every": _sized("snapshot_every", 0),
    "snapshot_bytes": _sized("snapshot_bytes", 0),
    "large_value_bytes": _sized("large_value_bytes", MIN_LARGE_VALUE_BYTES),
    "chunk_bytes": _chunk_bytes,
    "max_body_bytes": _sized("max_body_bytes", MIN_BODY_BYTES),
    "cache_sessions": _sized("cache_sessions", 0),
    "busy_timeout": _busy_timeout,
    "chunk_key": _chunk_key,
    "readonly": _readonly,
}


def _check_names(given: Mapping[str, Any], extra: tuple[str, ...] = ()) -> None:
    """:class:`InvalidValueError` for a name in ``given`` that is not an option (the
    message lists the options, and the caller's own ``extra`` ones)."""
    names = Options.names()
    for name in given:
        if name not in names:
            known = (*names, *extra)
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidValueError(f"{name!r} is not an option{hint}; the options are: {', '.join(known)}")


def _keywords_only(init: Callable[..., None]) -> Callable[..., None]:
    """``Options(...)`` with a name that is not an option raises
    :class:`InvalidValueError`, as everywhere else options are given."""

    @functools.wraps(init)
    def __init__(self: Options, *args: Any, **values: Any) -> None:
        if args:
            raise InvalidValueError("Options takes the options as keywords: Options(name=value, ...)")
        _check_names(values)
        init(self, **values)

    return __init__


setattr(Options, "__init__", _keywords_only(Options.__init__))  # noqa: B010 (mypy: a method is not assignable)


def _document() -> str:
    lines = []
    for f in dataclasses.fields(Options):
        default = "None" if f.default is None else f"{f.default!r}"
        lines.append(f"``{f.name}`` ({f.type}, default ``{default}``): {f.metadata['doc']}")
    return "\n\n".join(lines)


Options.__doc__ = f"{Options.__doc__}\n{_document()}\n"
_DEFAULTS = Options()
