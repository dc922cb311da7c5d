"""The session cache: what a store remembers of its sessions between calls.

For each of the sessions used last (up to the ``cache_sessions`` option), a store
keeps the incarnation it knows, its head with what ``append()`` needs of its shape,
its state folded up to some position (caught up from the log when a call needs it:
events written since by ``append()`` or by other handles are read and applied), and
the mirrors of the caller's lists (``entries`` and the lists at paths: see
:func:`eventlog.fold.lists_in`) as of the last ``save()`` (see :mod:`eventlog.mirror`).

**The rule.**  No object of the cache is ever handed to a caller, and no caller's
object is ever kept in it: a caller may change what it got or what it gave at will,
and the store must never see that.  The rule is kept here, at two doors:
:meth:`SessionCache.session` is the only way a cached session goes out to a caller
(as a copy), and :meth:`SessionCache.saved` the only way written values come in (as
copies, lists and dicts at paths included: see :func:`private`; ``append()`` leaves
the state behind with :meth:`SessionCache.appended`, to be caught up from the log).
The writer reads a cached state to diff against it (:attr:`Cached.state`), never
keeps or hands out what it reads.  The mirror is the one exception, by design: it
records the identity of the caller's objects (and keeps them alive), but never
reads or returns them.  It vouches only for a list
whose mirror has exactly as many items as the cached state's list at the same path
(the state was made equal to the caller's session by the save that recorded it).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .backend import KEY_BYTES, Backend, Head
from .codec import ENTRIES
from .errors import ConflictError, CorruptionError
from .fold import At, Delete, Insert, Op, Replace, SetFields, State, apply
from .log import Log
from .mirror import Mirror
from .values import copy


class Incarnation(NamedTuple):
    """Which incarnation of a session is cached: the backend's ``sid`` (``None`` for
    one being created) and its ``key`` (made here for one being created)."""

    sid: int | None
    key: bytes | None


class Tip(NamedTuple):
    """A session at its head ``seq``: its number of entries, whether its
    ``entries`` field is a list kept entry by entry (``managed``) and whether it has
    any field (all that ``append()`` needs)."""

    seq: int
    entries: int
    managed: bool
    has_fields: bool

    @classmethod
    def of(cls, seq: int, state: State) -> Tip:
        return cls(seq, len(state.entries), state.managed, bool(state.fields))

    def after(self, ops: list[Op]) -> Tip:
        """The tip after ``ops``, as the next event (from this one's shape)."""
        n, managed, has_fields = self.entries, self.managed, self.has_fields
        for op in ops:
            if type(op) is Insert:
                n += len(op.entries)
            elif type(op) is Delete:
                n -= op.count
            elif type(op) is SetFields:
                has_fields = True
                if "entries" in op.changed:
                    managed = op.changed["entries"] is ENTRIES
        return Tip(self.seq + 1, n, managed, has_fields)


@dataclass(slots=True)
class Cached:
    """What the store remembers of one session (see the module documentation):
    ``who``, its ``tip`` (both replaced whole), its ``state`` folded up to
    ``state_seq`` (at most the tip's: changed only by :class:`SessionCache`) and the
    ``mirrors`` of the caller's lists by path (``("entries",)``: the entries)."""

    who: Incarnation
    tip: Tip
    state: State
    state_seq: int
    mirrors: dict[tuple[str, ...], Mirror] = field(default_factory=dict)

    @classmethod
    def of(cls, who: Incarnation, seq: int, state: State) -> Cached:
        return cls(who, Tip.of(seq, state), state, seq)

    @property
    def current(self) -> bool:
        """Whether the state is folded up to the head."""
        return self.state_seq == self.tip.seq

    def known_same(self, path: tuple[str, ...], items: Any) -> int:
        """How many of the caller's list ``items`` at ``path`` the mirror proves
        unchanged since the last save (all or none: 0 when it cannot say)."""
        mirror = self.mirrors.get(path)
        if mirror is None or type(items) is not list:
            return 0
        mine = self.state.list_at(path)
        if mine is not None and len(mirror.entries) == len(mine) and mirror.unchanged(items):
            return len(mine)
        return 0


def private(ops: list[Op]) -> list[Op]:
    """``ops`` with private copies (new containers, shared immutable leaves) of the
    caller's values in them."""
    return [_private(op) for op in ops]


def _private(op: Op) -> Op:
    if type(op) is Insert:
        return Insert(op.index, [copy(e) for e in op.entries])
    if type(op) is Replace:
        return Replace(op.index, copy(op.entry))
    if type(op) is SetFields:
        return SetFields({k: v if v is ENTRIES else copy(v) for k, v in op.changed.items()}, op.order)
    if type(op) is At:
        return At(op.path, _private(op.op))  # type: ignore[arg-type]
    return op


def check_head(backend: Backend, row: Head) -> None:
    """The session's head (a plain column, no checksum) must be its last event: a
    damaged head would otherwise fold to an older state without a word."""
    last = backend.last_seq(row.sid)
    if last == row.seq or (row.base == row.seq and (last is None or last < row.seq)):
        return  # (with retain=0 every event may be folded into the snapshot at the head)
    raise CorruptionError(f"the session's head says {row.seq}, its log ends at {last}", session_id=row.name)


class SessionCache:
    """The sessions a store remembers, the ``size`` used last (none with 0),
    caught up through ``log`` from ``backend``.  Not thread-safe: the store's lock
    is held around every call."""

    def __init__(self, size: int, backend: Backend, log: Log) -> None:
        self.size = size
        self._backend = backend
        self._log = log
        self._kept: OrderedDict[str, Cached] = OrderedDict()

    def clear(self) -> None:
        """Forget every session (a write whose outcome is unknown may be stored)."""
        self._kept.clear()

    def drop(self, name: str) -> None:
        self._kept.pop(name, None)

    def _keep(self, name: str, cached: Cached) -> None:
        if self.size <= 0:
            return
        kept = self._kept
        kept[name] = cached
        kept.move_to_end(name)
        while len(kept) > self.size:
            kept.popitem(last=False)

    # ------------------------------------------------------------------ reading

    def caught_up(self, row: Head, *, full: bool) -> Cached:
        """The cached session with its head at the row's and, with ``full``, its
        state caught up to it.  Events written since (by ``append()`` or another
        handle) are read from the log and applied; with nothing usable cached, the
        session is folded from its newest snapshot.  Within a read of the backend."""
        name, sid, seq = row.name, row.sid, row.seq
        c = self._kept.get(name)
        if (
            c is None
            or c.who.sid != sid
            or c.state_seq > seq
            or c.tip.seq > seq
            or c.state_seq < row.base
            or (full and row.snap_seq > c.state_seq + 64)  # far behind a snapshot (many append() calls)
        ):
            check_head(self._backend, row)
            c = Cached.of(Incarnation(sid, row.key), seq, self._log.fold(name, sid, row.key, seq, True, row.base))
            self._keep(name, c)
            return c
        self._kept.move_to_end(name)
        if c.state_seq < seq and (full or c.tip.seq < seq):
            try:
                for event in self._log.events(name, sid, row.key, c.state_seq, seq, rehydrate=True):
                    try:
                        apply(c.state, event.ops)
                    except ValueError as e:
                        raise CorruptionError(f"event does not apply: {e}", session_id=name, seq=event.seq) from None
                    c.state_seq = event.seq
            except BaseException:
                self.drop(name)
                raise
            c.tip, c.mirrors = Tip.of(seq, c.state), {}
        return c

    def session(self, row: Head) -> dict[str, Any]:
        """The session at ``row`` for a caller, who may change it at will: a copy (new
        containers, shared immutable leaves) of the state the cache keeps, or the
        state itself when the cache does not keep it (folded for this call alone).
        The only way a session leaves the cache for a caller."""
        return self._handed_out(row.name, self.caught_up(row, full=True))

    def session_at_head(self, row: Head) -> dict[str, Any] | None:
        """:meth:`session`, if the cached state of the session is at ``row``'s head
        already (nothing read), else ``None``."""
        c = self._kept.get(row.name)
        if c is not None and c.who.sid == row.sid and c.state_seq == row.seq:
            return self._handed_out(row.name, c)
        return None

    def _handed_out(self, name: str, c: Cached) -> dict[str, Any]:
        if self._kept.get(name) is not c:
            return c.state.session()  # folded for this call alone: the caller's already
        return copy(c.state.session())  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ writing

    def for_write(self, name: str, expected_seq: int | None, *, full: bool) -> Cached:
        """The cached session to make a write from: as cached when its head (and,
        with ``full``, its state) is the last this store wrote or read and
        ``expected_seq`` agrees (the backend checks the head when it appends), else
        from the head read now (:class:`ConflictError` when it is not
        ``expected_seq``), caught up; a session that does not exist yet gets its
        new key here."""
        c = self._kept.get(name)
        if c is not None and (not full or c.current) and expected_seq in (None, c.tip.seq):
            self._kept.move_to_end(name)
            return c
        with self._backend.reading():
            row = self._backend.head(name)
            seq = 0 if row is None else row.seq
            if expected_seq is not None and expected_seq != seq:
                raise ConflictError(f"expected seq {expected_seq}, found {seq}", session_id=name, seq=seq)
            if row is None:  # a new session: its key is made now, before its first event
                return Cached.of(Incarnation(None, os.urandom(KEY_BYTES)), 0, State())
            return self.caught_up(row, full=full)

    def saved(
        self,
        name: str,
        c: Cached,
        after: Head,
        ops: list[Op],
        lists: dict[tuple[str, ...], list[Any]],
        known: dict[tuple[str, ...], int],
    ) -> None:
        """``c`` after ``save()`` wrote ``ops`` (made from it) as the head ``after``:
        its state caught up with private copies of the values written, its mirrors
        of the caller's ``lists`` by path (``known``: as many items of each as its
        mirror vouched for).  The only way written values come into the cache."""
        apply(c.state, private(ops))
        c.state_seq = after.seq
        c.who, c.tip = Incarnation(after.sid, after.key), Tip.of(after.seq, c.state)
        mirrors: dict[tuple[str, ...], Mirror] = {}
        for path, items in lists.items():
            mirror = c.mirrors.get(path)
            if known.get(path) and mirror is not None:
                mirror.extend(items[known[path] :])
            else:  # mirror fully only a caller that passes the same item objects again
                mirror = Mirror(items, full=mirror is not None and mirror.same_entry_objects(items))
            mirrors[path] = mirror
        c.mirrors = mirrors
        self._keep(name, c)

    def appended(self, name: str, c: Cached, after: Head, tip: Tip) -> None:
        """``c`` after ``append()`` wrote the head ``after``: only its tip moves
        (nothing of the caller's is kept); its state is caught up from the log when
        a later call needs it."""
        c.who, c.tip, c.mirrors = Incarnation(after.sid, after.key), tip, {}
        self._keep(name, c)
