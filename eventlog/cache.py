"""The session cache: what a store remembers of its sessions between calls.

For each of the sessions used last (up to the ``cache_sessions`` option), a store
keeps the incarnation it knows, its head with what ``append()`` needs of its shape,
its state folded up to some position (caught up from the log when a call needs it:
events written since by ``append()`` or by other handles are read and applied), and
the mirrors of the caller's lists (``entries`` and the lists at paths: see
:func:`eventlog.fold.lists_in`) as of the last ``save()`` (see :mod:`eventlog.mirror`).

**The rule.**  A caller may change what it got or what it gave at will, and the
store must never see that: no caller's object is ever kept in the cache as a value,
and nothing of the cache that a caller holds is ever used unproven.  The rule is
kept here, at three doors:

* :meth:`SessionCache.session` is the only way a cached session goes out to a
  caller (and :meth:`SessionCache.part_at_head`, for a part of it, copied).  A
  state that nobody holds any part of (folded from the log, or made of the private
  copies a save keeps) is *lent*: the caller gets the state itself (no copy of its
  ~70,000 containers on a cold load of 10,000 entries), and the cache keeps its own
  *spine* over the same values (:meth:`~eventlog.fold.State.clone`: the top-level
  dict and every list and dict an operation may change in place), with a
  :class:`~eventlog.mirror.Mirror` of the items of each list and of the other
  containers below the spine: ``Cached.lent``.  Every later handout is a copy.
* :meth:`SessionCache.trusted` is the only way a kept state is used (handed out
  again, or diffed against by a save): the mirrors of what was lent must prove it
  untouched, by identity; if the caller changed any of it, the state is dropped and
  folded again from the log.
* :meth:`SessionCache.saved` is the only way written values come in (as copies,
  lists and dicts at paths included: see :func:`private`; ``append()`` leaves the
  state behind with :meth:`SessionCache.appended`, to be caught up from the log).

The writer reads a cached state to diff against it (:attr:`Cached.state`), never
keeps or hands out what it reads.  The mirrors record the identity of objects a
caller holds (and keep them alive), but never read or return them.  The mirror of
a caller's list vouches only for a list whose mirror has exactly as many items as
the cached state's list at the same path (the state was made equal to the caller's
session by the save that recorded it, or lent to it by a load).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .backend import KEY_BYTES, Backend, Head
from .codec import ENTRIES
from .errors import ConflictError, CorruptionError
from .fold import MAX_PATH, At, Delete, Insert, Op, Replace, SetFields, State, apply, lists_in
from .log import Log
from .mirror import Mirror
from .values import copy

log = logging.getLogger(__name__)

#: What a load lent a caller: mirrors of the items of each list of the spine, by
#: path, and of the other containers below the spine.
Lent = tuple[dict[tuple[str, ...], Mirror], Mirror]


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
    ``state_seq`` (at most the tip's: changed only by :class:`SessionCache`), the
    ``mirrors`` of the caller's lists by path (``("entries",)``: the entries) and
    what of the state was ``lent`` to a caller (``None``: nothing, the state is all
    the cache's own)."""

    who: Incarnation
    tip: Tip
    state: State
    state_seq: int
    mirrors: dict[tuple[str, ...], Mirror] = field(default_factory=dict)
    lent: Lent | None = None

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


def _known(c: Cached, lists: dict[tuple[str, ...], list[Any]] | None) -> dict[tuple[str, ...], int]:
    """How many items of each of the caller's ``lists`` the mirrors of ``c`` prove
    unchanged (see :meth:`Cached.known_same`)."""
    return {path: c.known_same(path, items) for path, items in (lists or {}).items()}


def _below_spine(data: dict[str, Any]) -> list[Any]:
    """The dicts of a session dict just below its spine (the dicts an operation may
    change in place: those fewer than :data:`~eventlog.fold.MAX_PATH` keys deep),
    which a lent state shares with the caller besides the items of its lists."""
    out: list[Any] = []
    stack: list[tuple[int, dict[str, Any]]] = [(0, data)]
    while stack:
        depth, d = stack.pop()
        for v in d.values():
            if type(v) is dict:
                if depth + 1 < MAX_PATH:
                    stack.append((depth + 1, v))
                else:
                    out.append(v)
    return out


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
        """The session at ``row`` for a caller, who may change it at will: the state
        itself when the cache does not keep it (folded for this call alone) or when
        nobody holds any of it yet (then lent: see the module documentation), else a
        copy (new containers, shared immutable leaves).  The only way a session
        leaves the cache for a caller."""
        c = self.trusted(row.name, self.caught_up(row, full=True))
        if c is None:  # what was lent was changed: folded again (and kept) from the log
            c = self.caught_up(row, full=True)
        return self._handed_out(row.name, c)

    def session_at_head(self, row: Head) -> dict[str, Any] | None:
        """:meth:`session`, if the cached state of the session is at ``row``'s head
        already (nothing read), else ``None``."""
        c = self.trusted(row.name, self._kept.get(row.name))
        if c is not None and c.who.sid == row.sid and c.state_seq == row.seq:
            return self._handed_out(row.name, c)
        return None

    def part_at_head(self, row: Head, pick: Callable[[State], list[Any]]) -> list[Any] | None:
        """A copy of ``pick(state)`` (a part of the session, such as a slice of a
        list) of the cached state, if it is at ``row``'s head already, else ``None``
        (nothing read).  What ``pick`` raises comes out."""
        c = self.trusted(row.name, self._kept.get(row.name))
        if c is not None and c.who.sid == row.sid and c.state_seq == row.seq:
            self._kept.move_to_end(row.name)
            return copy(pick(c.state))  # type: ignore[no-any-return]
        return None

    def trusted(
        self, name: str, c: Cached | None, *, known: dict[tuple[str, ...], int] | None = None
    ) -> Cached | None:
        """``c``, unless part of its state was lent to a caller who changed it since
        (then it is forgotten: ``None``).  Every use of a kept state passes here.
        ``known``: what :meth:`Cached.known_same` proved of a caller's lists just
        now, which vouches for a lent list's items too when the list's mirror
        started as the one made when it was lent."""
        lent = None if c is None else c.lent
        if lent is None:
            return c
        assert c is not None
        lists, others = lent
        for path, m in lists.items():
            mirror = c.mirrors.get(path)
            if known and known.get(path) and mirror is not None and mirror.origin is m:
                continue
            if not m.untouched():
                break
        else:
            if others.untouched():
                return c
        log.debug("session %r: a loaded value was changed in place; folding it again from the log", name)
        if self._kept.get(name) is c:
            del self._kept[name]
        return None

    def _handed_out(self, name: str, c: Cached) -> dict[str, Any]:
        state = c.state
        if self._kept.get(name) is not c:
            return state.session()  # folded for this call alone: the caller's already
        if c.lent is None:  # nobody holds any of it: lend it, guarded
            out = state.session()
            lists = {path: Mirror(items, full=True) for path, items in lists_in(out).items()}
            others = Mirror(_below_spine(out), full=True)
            if others.full and all(m.full for m in lists.values()):  # (else a key that is not an exact str)
                c.state, c.lent = state.clone(), (lists, others)
                for path, m in lists.items():  # what vouches for the first save's lists
                    c.mirrors.setdefault(path, m.clone())
                return out
        return copy(state.session())  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ writing

    def for_write(
        self,
        name: str,
        expected_seq: int | None,
        *,
        full: bool,
        lists: dict[tuple[str, ...], list[Any]] | None = None,
    ) -> tuple[Cached, dict[tuple[str, ...], int]]:
        """The cached session to make a write from, and how many items of each of
        the caller's ``lists`` (by path; with ``full``) its mirrors prove unchanged:
        as cached when its head (and, with ``full``, its state) is the last this
        store wrote or read and ``expected_seq`` agrees (the backend checks the head
        when it appends), else from the head read now (:class:`ConflictError` when
        it is not ``expected_seq``), caught up; a session that does not exist yet
        gets its new key here."""
        c = self._kept.get(name)
        if c is not None and (not full or c.current) and expected_seq in (None, c.tip.seq):
            known = _known(c, lists) if full else {}
            if not full or self.trusted(name, c, known=known) is not None:
                self._kept.move_to_end(name)
                return c, known
        with self._backend.reading():
            row = self._backend.head(name)
            seq = 0 if row is None else row.seq
            if expected_seq is not None and expected_seq != seq:
                raise ConflictError(f"expected seq {expected_seq}, found {seq}", session_id=name, seq=seq)
            if row is None:  # a new session: its key is made now, before its first event
                return Cached.of(Incarnation(None, os.urandom(KEY_BYTES)), 0, State()), {}
            c = self.caught_up(row, full=full)
            if not full:
                return c, {}
            known = _known(c, lists)
            if self.trusted(name, c, known=known) is None:  # folded again from the log
                c, known = self.caught_up(row, full=True), {}
            return c, known

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
