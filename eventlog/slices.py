"""Partial reads: a run of a session's list without decoding the rest.

A load decodes the whole newest snapshot (every segment) and the events after it,
and reads every large value.  :func:`list_slice` decodes only what a slice of one
list needs: the snapshot's manifest (its fields and the list of its segments, never
their bytes), the events after it with their large values left as references, then
just the segments that hold the wanted items the snapshot had (of ``entries``, or
of a list at a path that the snapshot keeps in segments), and only the large
values inside the wanted items.  The events are applied to stand-in lists, one
:class:`_Slot` per item of the snapshot's segmented lists, so that inserts,
replacements and deletions after the snapshot move the items exactly as a full
fold would; what is left in the wanted range says which snapshot items to decode.

A slice of ``entries`` counted from the end may not need the snapshot at all:
:func:`entries_tail` reads the newest events back from the head and takes the
entries they appended, when that is all they did to the entries.

A snapshot whose manifest turns out damaged is a cache like any other: the fold
skips it (see :meth:`eventlog.log.Log.fold`).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from . import fold
from .codec import KIND_BASE64, KIND_STR, SNAPSHOT, DecodeError, Ref, VersionError
from .errors import CorruptionError, InvalidValueError, NotFoundError, UnsupportedVersionError
from .fold import At, Insert, SetFields, State
from .log import Log
from .snapshots import Segment, with_lists
from .values import MAX_DEPTH, decoded_ok

_log = logging.getLogger(__name__)


class _Slot:
    """Stands for entry ``index`` of the snapshot, not decoded."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def list_at(state: State, path: tuple[str, ...], name: str) -> list[Any]:
    """The list at ``path`` (keys from the session dict down through dicts) in
    ``state``, shared, not copied.  Raises :class:`~eventlog.NotFoundError` when
    there is no value there, :class:`~eventlog.InvalidValueError` when it is not a
    list."""
    value: Any = state.session()
    for depth, k in enumerate(path):
        if type(value) is not dict or k not in value:
            where = ".".join(path[: depth + 1])
            raise NotFoundError(f"the session has no value at {where!r}", session_id=name)
        value = value[k]
    if type(value) is not list:
        raise InvalidValueError(f"the session's {'.'.join(path)!r} is not a list", session_id=name)
    return value


def list_slice(
    log: Log,
    name: str,
    sid: int,
    key: bytes | None,
    upto: int,
    floor: int,
    path: tuple[str, ...],
    start: int | None,
    stop: int | None,
) -> list[Any]:
    """``list[start:stop]`` (Python's slice rules) of the list at ``path`` of the
    session's state after event ``upto``, large values rehydrated: a new list of
    new values.  Raises what :func:`list_at` raises, and
    :class:`~eventlog.CorruptionError` (or
    :class:`~eventlog.UnsupportedVersionError`) for damage a full fold would
    also meet."""
    state, segments = _lazy_state(log, name, sid, key, upto, floor)
    chosen = list_at(state, path, name)[start:stop]
    wanted = sorted({x.index for x in chosen if type(x) is _Slot})
    decoded: dict[int, Any] = {}
    if wanted:
        try:
            # (items of a list at a path of k keys are nested k levels deeper in the session)
            depth = MAX_DEPTH + 1 - (0 if path == ("entries",) else len(path))
            decoded = _snapshot_entries(log, segments, wanted, depth)
        except VersionError as e:
            raise UnsupportedVersionError(f"snapshot segment: {e}", session_id=name) from None
        except (DecodeError, CorruptionError) as e:
            # A snapshot is a cache: read as load() would, from an older snapshot or
            # the log (which names the damage itself where the snapshot is a floor).
            _log.warning("session %r: the newest snapshot is damaged (%s); reading from the log", name, e)
            full = log.fold(name, sid, key, upto, True, floor)
            return list_at(full, path, name)[start:stop]
    return _rehydrated_all(log, name, [decoded[x.index] if type(x) is _Slot else x for x in chosen])


#: How many events :func:`entries_tail` reads back at first (then four times as
#: many each time, up to the newest snapshot).
TAIL_FIRST_READ = 8


def entries_tail(
    log: Log,
    name: str,
    sid: int,
    key: bytes | None,
    upto: int,
    since: int,
    count: int | None,
    start: int | None,
    stop: int | None,
) -> list[Any] | None:
    """``entries[start:stop]`` of the session's state after event ``upto`` read from
    its newest events alone, backwards, when they appended every wanted entry:
    large values rehydrated, a new list of new values.  ``None`` when that cannot
    be known from the events after ``since`` (the newest snapshot, or the start of
    the history) and the entries count the store recorded with the head
    (``count``; ``None`` when unknown): the caller then reads as a full slice does.

    Going back from the head, an event whose operations on the entries are only
    inserts, each at the end of the list as it stood (its index plus its number of
    entries is the length after it, starting from ``count``), holds the last
    entries as they are now; any other change to the entries (a replacement, a
    deletion, an insert elsewhere, the field set) ends the walk.  So a conversation
    that only ever grows at the end (what a runtime appending turns writes) gives
    its last items from the last few events, however long it is, without its
    snapshot.  A wrong ``count`` cannot give wrong items: the newest insert must end
    exactly at it."""
    if not count:  # (0: no entries, or none recorded: the full read says which)
        return None
    a, b, _ = slice(start, stop).indices(count)
    if b <= a:
        return None
    cur = count
    found: list[Any] = []  # newest first, each event's entries reversed
    top, window = upto, TAIL_FIRST_READ
    while cur > a:
        if top <= since:
            return None
        low = max(since, top - window)
        # read in one go, decoded newest first only as far as needed
        for row in reversed(list(log.stored(name, sid, low, top))):
            event = log.event(name, sid, key, row.seq, row.pos, row.ts_ms, row.frame, False)
            for op in reversed(event.ops):
                if isinstance(op, Insert):
                    n = len(op.entries)
                    if op.index + n != cur:
                        return None
                    found += reversed(op.entries)
                    cur -= n
                elif isinstance(op, SetFields):  # other fields set, or the keys reordered
                    if "entries" in op.changed or (op.order is not None and "entries" not in op.order):
                        return None
                elif isinstance(op, At):
                    if op.path[0] == "entries":
                        return None
                else:  # Replace, Delete (of the entries), Tombstone
                    return None
            if cur <= a:
                break
        top, window = low, window * 4
    # found[i] is entry count - 1 - i
    wanted = [found[count - 1 - i] for i in range(a, b)]
    return _rehydrated_all(log, name, wanted)


def _rehydrated_all(log: Log, name: str, values: list[Any]) -> list[Any]:
    """``values`` with their large values read (in one batch) and put in place, in
    new containers."""
    refs: list[Ref] = []
    _refs_in(values, refs)
    try:
        with log.chunks.reading_ahead():
            log.chunks.prefetch({h for ref in refs for h in ref.chunk_hashes()})
            return [_rehydrated(log, v) for v in values]
    except DecodeError as e:
        raise CorruptionError(f"a large value is damaged: {e}", session_id=name) from None


def _lazy_state(log: Log, name: str, sid: int, key: bytes | None, upto: int, floor: int) -> tuple[State, list[Segment]]:
    """The state after ``upto`` (:meth:`Log.fold`, which skips a damaged snapshot)
    with the newest snapshot's segmented lists (the entries, and those at paths) as
    slots, numbered across all its segments (see
    :meth:`~eventlog.snapshots.Manifest.all_segments`), and the events after it
    applied, their large values as references; the snapshot's segments, in that
    order."""
    used: list[Segment] = []

    def read(snap_seq: int, frame: bytes) -> State:
        segmented, wire, markers = log.body(SNAPSHOT, name, sid, key, snap_seq, frame, False)
        segments: list[Segment] = []
        try:
            expected = 0
            if segmented:
                manifest = log.manifest(wire, segmented)
                state = fold.state_from_wire([with_lists(manifest.fields, [(p, []) for p, _ in manifest.lists]), []])
                segments = manifest.all_segments()
                slots, lists = manifest.split([_Slot(i) for i in range(sum(s.count for s in segments))])
                if slots and not state.managed:
                    raise DecodeError("malformed snapshot body")
                state = State(with_lists(manifest.fields, lists), slots)
                expected = len(lists)
            else:
                state = fold.state_from_wire(wire)
            if markers != expected + (1 if state.managed else 0):
                raise DecodeError("entries marker inside a value")
        except VersionError as e:
            raise UnsupportedVersionError(str(e), session_id=name, seq=snap_seq) from None
        except DecodeError as e:
            raise CorruptionError(f"snapshot is damaged: {e}", session_id=name, seq=snap_seq) from None
        used[:] = segments  # (the snapshot built on: the last one read)
        return state

    state = log.fold(name, sid, key, upto, False, floor, read=read)
    return state, used


def _snapshot_entries(log: Log, segments: list[Segment], wanted: list[int], depth: int) -> dict[int, Any]:
    """The snapshot items at the ``wanted`` indexes (sorted), decoding only the
    segments that hold them (read in one batch), large values as references; each
    segment nested at most ``depth`` levels."""
    ends = list(accumulate(s.count for s in segments))
    needed = sorted({bisect_right(ends, i) for i in wanted})
    out: dict[int, Any] = {}
    with log.chunks.reading_ahead():
        log.chunks.prefetch([h for i in needed for h in segments[i].pointer().chunk_hashes()])
        for i in needed:
            segment = segments[i]
            try:
                entries = log.segment(segment, False, None)
            except DecodeError as e:  # (a VersionError stays one)
                raise type(e)(f"segment {i}: {e}") from None
            if not decoded_ok(entries, depth, Ref):
                raise DecodeError(f"segment {i}: malformed snapshot segment")
            first = ends[i] - segment.count
            for j in range(first, ends[i]):
                out[j] = entries[j - first]
    return {j: out[j] for j in wanted}


def _refs_in(value: Any, out: list[Ref]) -> None:
    """Append every large value reference inside ``value`` to ``out``."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is Ref:
            out.append(v)
        elif t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)


def _rehydrated(log: Log, value: Any) -> Any:
    """``value`` with every large value reference replaced by the value it stands
    for, in new containers."""
    t = type(value)
    if t is Ref:
        return log.rehydrate(value)
    if t is dict:
        return {k: _rehydrated(log, v) for k, v in value.items()}
    if t is list:
        return [_rehydrated(log, v) for v in value]
    return value


def text_session(
    log: Log, name: str, sid: int, key: bytes | None, upto: int, floor: int, marker: str
) -> tuple[dict[str, Any], list[Ref]]:
    """The session after event ``upto`` as the debugging tools search it, and the
    large values not read: its large text values read (in one batch), each large
    bytes value left as ``b""`` and each large base64 text (images, files, but
    also a hex dump or a long token that happens to be base64) left as its prefix
    followed by ``marker.format(i)``, ``i`` its position in the list returned, to be
    read only where it is searched (:meth:`Log.rehydrate`).  Not the stored value:
    never cached, never handed out as a session."""
    state = log.fold(name, sid, key, upto, rehydrate=False, floor=floor)
    data = state.session()
    refs: list[Ref] = []
    _refs_in(data, refs)
    texts = [r for r in refs if r.kind == KIND_STR]
    later: list[Ref] = []
    try:
        with log.chunks.reading_ahead():
            log.chunks.prefetch({h for ref in texts for h in ref.chunk_hashes()})
            return (_placed(log, data, marker, later) if refs else data), later
    except DecodeError as e:
        raise CorruptionError(f"a large value is damaged: {e}", session_id=name) from None


def _placed(log: Log, value: Any, marker: str, later: list[Ref]) -> Any:
    t = type(value)
    if t is Ref:
        if value.kind == KIND_STR:
            return log.rehydrate(value)
        if value.kind == KIND_BASE64:
            later.append(value)
            return value.prefix + marker.format(len(later) - 1)
        return b""
    if t is dict:
        return {k: _placed(log, v, marker, later) for k, v in value.items()}
    if t is list:
        return [_placed(log, v, marker, later) for v in value]
    return value
