"""LangGraph checkpoints as an event log: :class:`EventlogSaver`, a
``BaseCheckpointSaver`` that stores what changed (needs ``langgraph``, an optional
extra: ``pip install 'eventlog[langgraph]'``).

A thread's checkpoints in one namespace (``checkpoint_ns``) are one eventlog
session, ``langgraph:["THREAD","NS"]``; the sessions of a thread's subgraphs are
children of its root namespace's session, so deleting the root deletes the thread.
The session's ``entries`` are a log of what the saver was given (the layout:
:mod:`eventlog.langgraph_log`): every ``put`` and ``put_writes`` appends one entry
holding only what changed: the new checkpoint's record, the channels in
``new_versions`` and the new writes.  A channel whose value is a list
(``messages``) is kept item by item, each item serialized with the saver's ``serde``
once, so a step that appends messages stores those messages, not the channel again;
unchanged channels are not written; large values go to eventlog's deduplicated
chunks.  Appending costs what the entry holds, whatever the thread's length.

A step starts by reading the newest checkpoint: the saver keeps the items of its
list channels deserialized (:class:`_Decoded`) and hands out copies of them
(:func:`fresh`), so a long conversation is not deserialized again at each step
while no two reads share an object.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import suppress
from itertools import repeat
from operator import is_, is_not
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)

from . import store as _store
from .errors import ConflictError, CorruptionError, EventLogError, InvalidValueError
from .fold import State, apply
from .langgraph_log import ThreadLog, entries_of_state
from .langgraph_objects import Known, copies, fresh
from .mirror import Mirror

__all__ = ["PREFIX", "EventlogSaver"]

#: What the session ids of LangGraph threads start with.
PREFIX = "langgraph:"
#: The value of a channel named in ``new_versions`` without a value.
_EMPTY: dict[str, Any] = {"empty": True}
_TRIES = 16


def session_id(thread_id: str, ns: str = "") -> str:
    """The eventlog session of a thread's namespace."""
    return PREFIX + json.dumps([thread_id, ns], ensure_ascii=False)


def _parse(sid: str) -> tuple[str, str] | None:
    if not sid.startswith(PREFIX):
        return None
    try:
        tid, ns = json.loads(sid[len(PREFIX) :])
    except (ValueError, TypeError):
        return None
    return (tid, ns) if type(tid) is str and type(ns) is str else None


def _vkey(version: Any) -> str:
    """A channel version as a dict key (versions are str, int or float; 1 and "1"
    stay apart)."""
    return json.dumps(version)


#: Base64 text inside a serialized value long enough to be worth storing apart (a
#: screenshot in a message): stored as its own value, which eventlog keeps decoded
#: in deduplicated chunks, so an image resent in many messages is stored once.
_BASE64 = re.compile(rb"(?:data:[\w.+-]+/[\w.+-]+;base64,)?[A-Za-z0-9+/]{4096,}={0,2}")


def _split(data: bytes) -> Any:
    """Serialized bytes as stored: as they are, or, where they hold long base64
    text, a list of the bytes around it and the text itself (``str``); joined back
    byte for byte by :func:`_join`."""
    pieces: list[Any] = []
    at = 0
    for m in _BASE64.finditer(data):
        pieces += [data[at : m.start()], m.group().decode("ascii")]
        at = m.end()
    if not pieces:
        return data
    pieces.append(data[at:])
    return pieces


def _join(stored: Any) -> bytes:
    if type(stored) is list:
        return b"".join(p.encode("ascii") if type(p) is str else bytes(p) for p in stored)
    return bytes(stored)


def _typed(pair: Any) -> Any:
    """``(type, bytes)`` of a serialized value as stored."""
    return pair[0], _join(pair[1])


#: Checkpoints picked by ``list``: ``(id, session, thread, ns, the session's log)``.
_Picked = list[tuple[str, str, str, str, ThreadLog]]
#: What a write appends: the entry, and the lists of the channels it writes (see
#: :meth:`ThreadLog.add`).
_Made = tuple[dict[str, Any], dict[str, list[Any]]]
#: Entries of a session written per event when a whole history is written (a copy).
_BATCH = 128


class _Thread:
    """What a saver remembers of one session between calls: its log as last read or
    written (``log``), and for each list channel the items last stored or handed
    out (``known``) and the deserialized items of its newest value (``decoded``)."""

    __slots__ = ("decoded", "known", "log")

    def __init__(self) -> None:
        self.log: ThreadLog | None = None
        self.known: dict[str, Known] = {}
        self.decoded: dict[str, _Decoded] = {}


class _Shared:
    """What every copy of a saver shares (``with_allowlist`` makes shallow copies):
    the lock, and what is remembered of the ``size`` sessions used last (the store's
    ``cache_sessions``)."""

    def __init__(self, size: int) -> None:
        self.lock = threading.RLock()
        self.size = size
        self.threads: OrderedDict[str, _Thread] = OrderedDict()

    def of(self, sid: str) -> _Thread:
        """What is remembered of session ``sid`` (the most recently used now; with
        ``size`` 0 nothing is remembered past the call)."""
        t = self.threads.get(sid)
        if t is None:
            t = _Thread()
            if self.size <= 0:
                return t
            self.threads[sid] = t
            while len(self.threads) > self.size:
                self.threads.popitem(last=False)
        else:
            self.threads.move_to_end(sid)
        return t

    def forget(self, sid: str) -> None:
        self.threads.pop(sid, None)


def _share_large(private: Any, stored: Any) -> bool:
    """Make the long strings of ``private`` (a copy made by :func:`fresh`) that
    equal the base64 text kept apart in ``stored`` (see :func:`_split`) that very
    text, so that a screenshot is held once in memory, not twice; whether
    ``stored`` has such text."""
    pieces = {p: p for p in stored[1] if type(p) is str} if type(stored[1]) is list else None
    if not pieces:
        return False

    def walk(v: Any) -> None:
        items = v.items() if type(v) is dict else enumerate(v)
        for k, x in items:
            if type(x) is str and len(x) >= 4096:
                v[k] = pieces.get(x, x)
            elif type(x) is dict or type(x) is list:
                walk(x)

    walk(private if type(private) in (dict, list) else [private.__dict__])
    return True


class _Decoded:
    """The newest value of a list channel deserialized, item by item: the stored
    items as last read (``stored``, kept alive here) and for each a private copy of
    what it deserialized to (``privates``; ``None`` where it cannot be copied),
    never handed out, of which each later read hands out a copy, so that a step
    reading a long conversation deserializes only the items added since, and what
    it gets shares nothing with an earlier read."""

    __slots__ = ("privates", "serde", "stored")

    def __init__(self, stored: list[Any], privates: list[Any], serde: Any) -> None:
        self.stored = stored
        self.privates = privates
        #: What deserialized them: the copies ``with_allowlist`` makes share this
        #: cache but not their serde, which decides what an item deserializes to.
        self.serde = serde


class EventlogSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on an eventlog store: ``EventlogSaver("checkpoints.db")``,
    ``EventlogSaver("postgresql://...")`` (options as for :func:`eventlog.open`), or
    ``EventlogSaver(store)`` on an open :class:`eventlog.Store` (left open by
    :meth:`close`).  Use it as ``graph.compile(checkpointer=saver)``; it is a
    context manager.  Beyond the base methods it implements ``delete_for_runs``,
    ``copy_thread`` and ``prune``, sync and async."""

    def __init__(self, store: str | os.PathLike[str] | _store.Store, *, serde: Any = None, **options: Any) -> None:
        super().__init__(serde=serde)
        if isinstance(store, _store.Store):
            if options:
                raise InvalidValueError("options are given to open a store, not with an open one")
            self.store, self._owned = store, False
        else:
            self.store, self._owned = _store.open(store, **options), True
        self._shared = _Shared(self.store.options.cache_sessions)

    def close(self) -> None:
        """Close the store if this saver opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> EventlogSaver:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ versions

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``"<n>.<random>"``: increasing, and apart for forks of one step (as the
        savers LangGraph ships)."""
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(str(current).split(".")[0])
        return f"{n + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------ reading and writing states

    def _log(self, sid: str) -> ThreadLog | None:
        """The session's log as stored now (``None``: no session)."""
        seq, incarnation = self.store._head_of(sid)
        if seq == 0:
            self._shared.forget(sid)
            return None
        thread = self._shared.of(sid)
        log = thread.log
        if log is not None and log.seq == seq and log.incarnation == incarnation:
            return log
        state = self.store.fold(sid, at=seq)
        if "checkpoints" in state:  # the older layout
            entries = entries_of_state(sid, state, lambda: self._states(sid))
            thread.log = ThreadLog.of(sid, seq, entries)
            thread.log.legacy = True
        else:
            entries = state.get("entries", [])
            thread.log = ThreadLog.of(sid, seq, entries if type(entries) is list else [None])
        thread.log.incarnation = incarnation
        thread.known, thread.decoded = {}, {}
        return thread.log

    def _states(self, sid: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """The channels of a session in the older layout after each of its events
        (from the start of its history: with a history shortened by compaction, the
        state there)."""
        start = self.store.info(sid).history_start
        replay = State()
        if start > 0:
            replay = State(dict(self.store.fold(sid, at=start)))
            yield start, replay.fields.get("channels", {})
        for event in self.store.events(sid, since=start):
            apply(replay, event.ops)
            yield event.seq, replay.fields.get("channels", {})

    def _update(self, tid: str, ns: str, make: Callable[[ThreadLog], _Made]) -> None:
        """Append the entry ``make(log)`` gives (with the lists it holds for the
        channels it writes, see :meth:`ThreadLog.add`) to the session's log,
        conditional on the head it read (made again on a conflict)."""
        sid = session_id(tid, ns)
        parent = session_id(tid, "") if ns else None
        with self._shared.lock:
            for _ in range(_TRIES):
                log = self._log(sid)
                if log is None and parent is not None and self.store.seq(parent) == 0:
                    with suppress(ConflictError):  # the root first: deleting it deletes the thread
                        self.store.append(parent, [], expected_seq=0)
                try:
                    if log is not None and log.legacy:  # rewritten in the log layout, once
                        self.store.save(sid, {"entries": log.entries}, expected_seq=log.seq)
                        self._shared.forget(sid)
                        continue
                    if log is None:
                        log = ThreadLog(sid, 0)
                    entry, lists = make(log)
                    seq = self.store.append(sid, [entry], parent_id=parent, expected_seq=log.seq)
                except ConflictError:
                    self._shared.forget(sid)
                    continue
                log.add(entry, lists)
                log.seq = seq
                if log.incarnation == 0:  # a new session: its incarnation, once
                    log.incarnation = self.store._head_of(sid)[1]
                self._shared.of(sid).log = log
                return
        raise ConflictError("other writers kept changing the thread", session_id=sid)

    def _anew(self, sid: str, parent: str | None, entries: list[dict[str, Any]]) -> None:
        """Write ``entries`` as the session's whole log, a new incarnation of it (its
        history dropped), in events of :data:`_BATCH` entries."""
        self._shared.forget(sid)
        self.store.delete(sid, tree=False)
        seq = 0
        for i in range(0, max(len(entries), 1), _BATCH):
            seq = self.store.append(sid, entries[i : i + _BATCH], parent_id=parent, expected_seq=seq)

    def _repr(
        self, sid: str, channel: str, value: Any, before: list[Any] | None
    ) -> tuple[dict[str, Any], list[Any] | None]:
        """A channel's value as stored, and for a list the list of all its stored
        items: item by item, the items of the list last stored or read for the
        channel (``before``, as stored) reused where they are the very objects
        known, unchanged; else one serialized value."""
        if type(value) is not list:
            return {"value": self._dump(value)}, None
        thread = self._shared.of(sid)
        known = thread.known.get(channel)
        old = known.objects if known is not None and before is not None and known.reusable(before) else []
        if old and len(old) <= len(value) and all(map(is_, value, old)):  # the known objects, then new ones
            assert known is not None and before is not None
            added = value[len(old) :]
            out = before[: len(old)] + [self._dump(item) for item in added]
            thread.known[channel] = known.extended(added, out)
        else:
            out = []
            for i, item in enumerate(value):
                if i < len(old) and old[i] is item:
                    out.append(before[i])  # type: ignore[index]
                    continue
                dumped = self._dump(item)
                # (the same bytes as stored: the stored item, so that "from" keeps it, not the list again)
                out.append(before[i] if before is not None and i < len(before) and before[i] == dumped else dumped)
            thread.known[channel] = Known.of(list(value), out)
        n = 0
        if before:
            top = min(len(before), len(out))
            if out[:top] and all(map(is_, out[:top], before[:top])):
                n = top
            else:
                while n < top and out[n] is before[n]:
                    n += 1
        return {"list": out[n:], "from": n}, out

    def _dump(self, value: Any) -> list[Any]:
        t, b = self.serde.dumps_typed(value)
        return [t, _split(b)]

    def _load(self, pair: Any) -> Any:
        return self.serde.loads_typed(_typed(pair))

    def _private(self, item: Any) -> Any:
        """A stored item deserialized, as a private copy to hand out copies of
        (``None``: it cannot be copied; see :func:`~eventlog.langgraph_objects.fresh`)."""
        private = fresh(self._load(item))
        if private is not None:
            _share_large(private, item)
        return private

    def _items(self, thread: _Thread, channel: str, stored: list[Any]) -> tuple[list[Any], list[Any] | None]:
        """The items of a channel's newest value (``stored``, its serialized items):
        the items read before (the very stored items, at the start of the list) a
        copy of their private deserialized copies, the others deserialized (and a
        private copy kept)."""
        old = thread.decoded.get(channel)
        if old is not None and old.serde is not self.serde:
            old = None
        k = 0
        if old is not None:
            m = min(len(old.stored), len(stored))
            if all(map(is_, stored[:m], old.stored[:m])):
                k = m
            else:
                while old.stored[k] is stored[k]:
                    k += 1
        privates = old.privates[:k] if old is not None else []
        privates += map(self._private, stored[k:])
        thread.decoded[channel] = _Decoded(stored, privates, self.serde)
        return self._handed(stored, privates)

    def _handed(self, stored: list[Any], privates: list[Any]) -> tuple[list[Any], list[Any] | None]:
        """What a read hands out of items ``stored`` with their ``privates``: copies,
        or where an item has none, the item deserialized; and what :func:`watched`
        would find in them (``None``: not known)."""
        if all(map(is_not, privates, repeat(None))):
            return copies(privates)
        out = [self._load(item) if p is None else copies([p])[0][0] for item, p in zip(stored, privates, strict=True)]
        return out, None

    def _older(self, stored: list[Any], kept: dict[int, tuple[Any, Any]]) -> list[Any]:
        """The items of an older list value (``stored``), each stored item
        deserialized once per ``list()`` call (``kept``: by the identity of the
        stored item, which it keeps alive) and handed out as copies, so a history
        of many checkpoints of a long conversation deserializes each message once,
        and shares its screenshots between them."""
        privates = []
        for item in stored:
            hit = kept.get(id(item))
            if hit is not None and hit[0] is item:
                privates.append(hit[1])
                continue
            private = self._private(item)
            if private is not None:
                kept[id(item)] = (item, private)
            privates.append(private)
        return self._handed(stored, privates)[0]

    def _values(self, sid: str, log: ThreadLog, versions: dict[str, str], memo: dict[Any, Any]) -> dict[str, Any]:
        """The channel values of a checkpoint (its ``versions``)."""
        out = {}
        for channel, vk in versions.items():
            stored = log.value(channel, vk, memo)
            if stored is None or stored == _EMPTY:
                continue
            if "list" in stored and log.is_newest(channel, vk):
                thread = self._shared.of(sid)
                out[channel], holders = self._items(thread, channel, stored["list"])
                # (what the graph saves next starts with these very objects: not serialized again)
                objects = list(out[channel])
                thread.known[channel] = (
                    Known.of(objects, stored["list"])
                    if holders is None
                    else Known(objects, stored["list"], Mirror(holders, full=True))
                )
            elif "list" in stored:
                out[channel] = self._older(stored["list"], memo.setdefault("kept", {}))
            else:
                out[channel] = self._load(stored["value"])
        return out

    def _tuple(self, sid: str, tid: str, ns: str, log: ThreadLog, cid: str, memo: dict[Any, Any]) -> CheckpointTuple:
        put = log.checkpoint(cid)
        try:
            checkpoint = self._load(put["checkpoint"])
            checkpoint["channel_values"] = self._values(sid, log, put["versions"], memo)
            metadata = self._load(put["metadata"])
            pending = [(w[0], w[1], self._load(w[2:4])) for w in log.pending(cid)]
        except EventLogError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # what the serde makes of damage
            message = f"checkpoint {cid!r:.80} cannot be read: {type(e).__name__}: {e}"
            raise CorruptionError(message, session_id=sid) from None
        config: RunnableConfig = {"configurable": {"thread_id": tid, "checkpoint_ns": ns, "checkpoint_id": cid}}
        parent: RunnableConfig | None = None
        if put["parent"] is not None:
            parent = {"configurable": {"thread_id": tid, "checkpoint_ns": ns, "checkpoint_id": put["parent"]}}
        return CheckpointTuple(config, checkpoint, metadata, parent, pending)

    def _sessions(self, tid: str | None) -> list[tuple[str, str, str]]:
        """``(session, thread, ns)`` of a thread (``None``: of every thread)."""
        if tid is None:
            names = self.store.sessions()
        else:
            root = session_id(tid, "")
            if self.store.seq(root) == 0:
                return []
            names = [root, *self.store.children(root)]
        out = []
        for name in names:
            parsed = _parse(name)
            if parsed is not None and (tid is None or parsed[0] == tid):
                out.append((name, *parsed))
        return out

    # ------------------------------------------------------------------ the saver

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        c = config["configurable"]
        tid, ns, cid = str(c["thread_id"]), c.get("checkpoint_ns", ""), get_checkpoint_id(config)
        sid = session_id(tid, ns)
        with self._shared.lock:
            log = self._log(sid)
            if log is None or not log.puts:
                return None
            if cid is None:
                cid = max(log.puts)
            elif cid not in log.puts:
                return None
            return self._tuple(sid, tid, ns, log, cid, {})

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        c = (config or {}).get("configurable", {})
        tid = str(c["thread_id"]) if c.get("thread_id") is not None else None
        ns, cid = c.get("checkpoint_ns"), c.get("checkpoint_id")
        bound = get_checkpoint_id(before) if before else None
        with self._shared.lock:
            found: _Picked = []
            for sid, t, n in self._sessions(tid):
                if ns is not None and n != ns:
                    continue
                log = self._log(sid)
                if log is None:
                    continue
                for k in log.puts:
                    if (cid is None or k == cid) and (bound is None or k < bound):
                        found.append((k, sid, t, n, log))
            found.sort(key=lambda f: f[0], reverse=True)
            picked: _Picked = []
            for item in found:
                if limit is not None and len(picked) >= limit:
                    break
                if filter:
                    meta = self._load(item[4].checkpoint(item[0])["metadata"])
                    if not all(meta.get(key) == v for key, v in filter.items()):
                        continue
                picked.append(item)
            memos: dict[str, dict[Any, Any]] = {}
            for sid in {p[1] for p in picked}:  # the lists the picked checkpoints read, rebuilt in one pass
                mine = [p for p in picked if p[1] == sid]
                log = mine[0][4]
                memos[sid] = {}
                log.prefill([pair for p in mine for pair in log.checkpoint(p[0])["versions"].items()], memos[sid])
        for k, sid, t, n, log in picked:  # one at a time: a long history is never held whole
            with self._shared.lock:
                found_one = self._tuple(sid, t, n, log, k, memos[sid])
            yield found_one

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        c = config["configurable"]
        tid, ns, parent = str(c["thread_id"]), c.get("checkpoint_ns", ""), c.get("checkpoint_id")
        cp: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = cp.pop("channel_values", {}) or {}
        meta = get_checkpoint_metadata(config, metadata)
        sid = session_id(tid, ns)
        put = {
            "k": "put",
            "cid": cp["id"],
            "parent": parent,
            "checkpoint": self._dump(cp),
            "metadata": self._dump(meta),
            "versions": {ch: _vkey(v) for ch, v in cp.get("channel_versions", {}).items()},
        }

        def make(log: ThreadLog) -> _Made:
            written: dict[str, Any] = {}
            lists: dict[str, list[Any]] = {}
            for channel, version in new_versions.items():
                vk = _vkey(version)
                if channel in values:
                    stored, items = self._repr(sid, channel, values[channel], log.lists.get(channel))
                    written[channel] = {"v": vk, **stored}
                    if items is not None:
                        lists[channel] = items
                else:
                    written[channel] = {"v": vk, **_EMPTY}
            return {**put, "values": written}, lists

        self._update(tid, ns, make)
        return {"configurable": {"thread_id": tid, "checkpoint_ns": ns, "checkpoint_id": cp["id"]}}

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        c = config["configurable"]
        tid, ns, cid = str(c["thread_id"]), c.get("checkpoint_ns", ""), c["checkpoint_id"]
        new: list[list[Any]] = []
        for i, (channel, value) in enumerate(writes):
            t, b = self._dump(value)
            new.append([channel, t, b, WRITES_IDX_MAP.get(channel, i)])
        entry = {"k": "writes", "cid": cid, "task": task_id, "path": task_path, "w": new}
        self._update(tid, ns, lambda log: (entry, {}))

    def delete_thread(self, thread_id: str) -> None:
        with self._shared.lock:
            tid = str(thread_id)
            for sid, _, _ in self._sessions(tid):
                self._shared.forget(sid)
            self.store.delete(session_id(tid, ""))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of ``run_ids``
        (in every thread and namespace), with their pending writes."""
        wanted = set(run_ids)
        if not wanted:
            return
        with self._shared.lock:
            for sid, _, _ in self._sessions(None):
                for _ in range(_TRIES):
                    log = self._log(sid)
                    if log is None:
                        break
                    metadata = {cid: self._load(log.checkpoint(cid)["metadata"]) for cid in log.puts}
                    gone = {cid for cid, meta in metadata.items() if meta.get("run_id") in wanted}
                    if not gone:
                        break
                    try:  # one event rewriting the log, conditional on the head it read
                        self.store.save(sid, {"entries": log.without(gone)}, expected_seq=log.seq)
                    except ConflictError:
                        continue
                    finally:
                        self._shared.forget(sid)
                    break
                else:
                    raise ConflictError("other writers kept changing the thread", session_id=sid)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread with its whole history (the same checkpoint ids, values,
        metadata and writes) to a thread that has none."""
        src, dst = str(source_thread_id), str(target_thread_id)
        with self._shared.lock:
            if self._sessions(dst):
                raise InvalidValueError(f"thread {dst!r} has checkpoints: copy_thread copies into a new thread")
            sessions = self._sessions(src)
            sessions.sort(key=lambda s: s[2] != "")  # the root first: the others are its children
            for sid, _, ns in sessions:
                log = self._log(sid)
                entries = [] if log is None else log.entries
                self._anew(session_id(dst, ns), session_id(dst, "") if ns else None, entries)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (with its
        pending writes) and drop the rest of the thread's history; ``"delete"``:
        delete the threads.  The space is given back by compaction, at once."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidValueError(f"strategy must be 'keep_latest' or 'delete', not {strategy!r:.40}")
        with self._shared.lock:
            for thread_id in thread_ids:
                tid = str(thread_id)
                if strategy == "delete":
                    self.delete_thread(tid)
                    continue
                for _ in range(_TRIES):
                    sessions = self._sessions(tid)
                    sessions.sort(key=lambda s: s[2] != "")
                    kept = []
                    for sid, _, ns in sessions:
                        log = self._log(sid)
                        if log is not None:
                            kept.append((sid, ns, log))
                    # (what was read must still be the head: a put meanwhile is read again, not lost;
                    # the store's delete takes no expected seq, so a put right between is still lost)
                    if all(self.store._head_of(sid) == (log.seq, log.incarnation) for sid, _, log in kept):
                        for sid, ns, log in kept:
                            self._anew(sid, session_id(tid, "") if ns else None, log.latest_only())
                        break
                else:
                    raise ConflictError("other writers kept changing the thread", session_id=session_id(tid, ""))
            self.store.compact()

    # ------------------------------------------------------------------ async: the same, on a worker thread

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = self.list(config, filter=filter, before=before, limit=limit)
        while True:  # one checkpoint at a time, each read on a worker thread
            item = await asyncio.to_thread(next, found, None)
            if item is None:
                return
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
