"""The stored form of a LangGraph thread's checkpoints, and its reading
(:class:`ThreadLog`), for :mod:`eventlog.langgraph`; no LangGraph needed here.

A thread's namespace is one eventlog session whose ``entries`` are a log of what
the saver was given, one entry per ``put`` or ``put_writes``, each written by
``Store.append`` (so a step costs what it adds, however long the thread)::

    {"k": "put", "cid": id, "parent": id or None, "checkpoint": [type, bytes],
     "metadata": [type, bytes], "versions": {channel: version},
     "values": {channel: {"v": version, and one of
                          "list": [item, ...], "from": n   (the first n items of the
                                                             channel's list before, then these)
                          "value": [type, bytes]
                          "empty": true}}}
    {"k": "writes", "cid": id, "task": task_id, "path": task_path,
     "w": [[channel, type, bytes, idx], ...]}
    {"k": "values", "values": {...}}     (a put whose checkpoint was deleted: its
                                          values stay, later checkpoints may read them)

``[type, bytes]`` is a value serialized by the saver's ``serde``; ``bytes`` may be
a list of bytes and ``str`` (long base64 text kept apart: see
:func:`eventlog.langgraph._split`).  Versions are written as JSON text
(``_vkey``).  A put's ``"from"`` counts items of the channel's list as the
previous entry writing the channel left it, so a step appending messages stores
those messages only.

Sessions written before this layout hold one state dict (``checkpoints``,
``channels``, ``latest``, ``at``, ``writes``, each event the state after a put):
:func:`entries_of_state` turns such a session's history into entries; the saver
rewrites it in this layout at its first write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .errors import CorruptionError, EventLogError


class _Malformed(Exception):
    """An entry that is not one this module writes (a :class:`CorruptionError` out)."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise _Malformed(what)


def _pair(p: Any) -> bool:
    """Whether ``p`` is a value serialized by the saver: ``[type, bytes]``, the bytes
    possibly a list of bytes and base64 text (see ``eventlog.langgraph._split``)."""
    if type(p) is not list or len(p) != 2 or type(p[0]) is not str:
        return False
    b = p[1]
    return type(b) is bytes or (type(b) is list and all(type(x) is bytes or type(x) is str for x in b))


#: A channel value as the saver reads it: ``{"list": items}``, ``{"value": pair}``
#: or ``{"empty": True}``.
Stored = dict[str, Any]


class ThreadLog:
    """A thread namespace's entries, read: where each checkpoint, channel version
    and pending write is.  ``seq``: the session's seq it reflects; entries are added
    with :meth:`add` as the saver appends them."""

    def __init__(self, name: str, seq: int) -> None:
        self.name = name
        self.seq = seq
        #: The session's incarnation (``Store._head_of``; 0: not known yet).
        self.incarnation = 0
        #: Whether the session is in the older layout (rewritten at the first write).
        self.legacy = False
        self.entries: list[dict[str, Any]] = []
        #: checkpoint id -> the position of its put
        self.puts: dict[str, int] = {}
        #: (channel, version) -> the position of the entry that wrote it
        self.wrote: dict[tuple[str, str], int] = {}
        #: channel -> the positions of the entries that wrote it, in order, and
        #: the place of each position in that list
        self.chain: dict[str, list[int]] = {}
        self._place: dict[tuple[str, int], int] = {}
        #: channel -> its newest version, and its items when that is a list
        self.latest: dict[str, str] = {}
        self.lists: dict[str, list[Any]] = {}
        #: checkpoint id -> its writes ``[task_id, channel, type, bytes, task_path, idx]``
        self.writes: dict[str, list[list[Any]]] = {}
        self._where: dict[str, dict[tuple[Any, Any], int]] = {}

    @classmethod
    def of(cls, name: str, seq: int, entries: list[Any]) -> ThreadLog:
        """The log of ``entries`` as stored; :class:`CorruptionError` if one is not
        an entry this module writes."""
        log = cls(name, seq)
        for entry in entries:
            log.add(entry)
        return log

    def add(self, entry: Any, lists: dict[str, list[Any]] | None = None) -> None:
        """Take in the next entry.  ``lists``: the lists of the channels it writes as
        the saver already holds them (equal to what the entry makes of them), kept
        as they are so that their identity keeps telling what was stored."""
        try:
            self._add(entry, lists or {})
        except (_Malformed, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CorruptionError(
                f"checkpoint log entry {len(self.entries)} is malformed: {e}", session_id=self.name
            ) from None

    def _add(self, entry: Any, lists: dict[str, list[Any]]) -> None:
        _need(type(entry) is dict, "not a dict")
        kind = entry.get("k")
        pos = len(self.entries)
        if kind in ("put", "values"):
            values = entry["values"]
            _need(type(values) is dict and all(type(c) is str for c in values), "values is not a dict by channel")
            if kind == "put":
                cid, parent, versions = entry["cid"], entry["parent"], entry["versions"]
                _need(type(cid) is str and (parent is None or type(parent) is str), "a checkpoint id not a str")
                _need(_pair(entry["checkpoint"]) and _pair(entry["metadata"]), "a record not serialized")
                _need(type(versions) is dict and all(type(c) is str and type(v) is str for c, v in versions.items()),
                      "versions not str by channel")  # fmt: skip
            for channel, v in values.items():
                self._value(pos, channel, v, lists.get(channel))
            if kind == "put":
                self.puts[entry["cid"]] = pos
        elif kind == "writes":
            cid, task, path, ws = entry["cid"], entry["task"], entry["path"], entry["w"]
            _need(type(cid) is str and type(task) is str and type(path) is str and type(ws) is list, "writes")
            for w in ws:
                _need(type(w) is list and len(w) == 4 and type(w[0]) is str and _pair(w[1:3]) and type(w[3]) is int,
                      "a write not [channel, type, bytes, idx]")  # fmt: skip
            stored = self.writes.setdefault(cid, [])
            where = self._where.setdefault(cid, {})
            for channel, t, b, idx in ws:
                w = [task, channel, t, b, path, idx]
                n = where.get((task, idx))
                if n is None:
                    where[(task, idx)] = len(stored)
                    stored.append(w)
                elif idx < 0:  # a special write replaces; a regular one is kept as first written
                    stored[n] = w
        else:
            raise _Malformed(f"unknown kind {kind!r:.40}")
        self.entries.append(entry)

    def _value(self, pos: int, channel: str, v: Any, held: list[Any] | None) -> None:
        _need(type(v) is dict and type(v.get("v")) is str, "a value without its version")
        vk = v["v"]
        if "list" in v:
            n = v.get("from", 0)
            before = self.lists.get(channel, [])
            items = v["list"]
            _need(
                type(n) is int and 0 <= n <= len(before), f"a list value starting from item {n!r:.20} of {len(before)}"
            )
            _need(type(items) is list and all(map(_pair, items)), "a list value of items not serialized")
            self.lists[channel] = held if held is not None else before[:n] + items
        elif "value" in v:
            _need(_pair(v["value"]), "a value not serialized")
            self.lists.pop(channel, None)
        elif v.get("empty") is True:
            self.lists.pop(channel, None)
        else:
            raise _Malformed("a value of no known form")
        self.latest[channel] = vk
        self.wrote[(channel, vk)] = pos
        chain = self.chain.setdefault(channel, [])
        self._place[(channel, pos)] = len(chain)
        chain.append(pos)

    # ------------------------------------------------------------------ reading

    def checkpoint(self, cid: str) -> dict[str, Any]:
        """The put entry of checkpoint ``cid`` (which must exist)."""
        return self.entries[self.puts[cid]]

    def is_newest(self, channel: str, vk: str) -> bool:
        """Whether ``vk`` is the channel's value as the log's last writer of it left it."""
        pos = self.wrote.get((channel, vk))
        return pos is not None and self.chain[channel][-1] == pos and self.latest.get(channel) == vk

    def value(self, channel: str, vk: str, memo: dict[tuple[str, int], list[Any]]) -> Stored | None:
        """The channel's value at version ``vk`` (``None``: never written); a list
        is rebuilt from the entries (``memo``: lists rebuilt before, by position,
        which a later call starts from)."""
        pos = self.wrote.get((channel, vk))
        if pos is None:
            return None
        if self.is_newest(channel, vk) and channel in self.lists:
            return {"list": self.lists[channel]}
        v = self.entries[pos]["values"][channel]
        if "list" not in v:
            return {"value": v["value"]} if "value" in v else {"empty": True}
        return {"list": self._list_at(channel, pos, memo)}

    def prefill(self, wanted: list[tuple[str, str]], memo: dict[tuple[str, int], list[Any]]) -> None:
        """Rebuild the lists of the (channel, version) pairs ``wanted`` into
        ``memo`` in the order they were written, so that each starts from the one
        before it rather than from the start of the log."""
        found = sorted({(self.wrote[w], w[0]) for w in wanted if w in self.wrote})
        for pos, channel in found:
            v = self.entries[pos]["values"][channel]
            if "list" in v and (channel, pos) not in memo:
                self._list_at(channel, pos, memo)

    def _list_at(self, channel: str, pos: int, memo: dict[tuple[str, int], list[Any]]) -> list[Any]:
        chain = self.chain[channel]
        i = self._place[(channel, pos)]
        j = i
        while j > 0 and (channel, chain[j]) not in memo and self._from(channel, chain[j]) > 0:
            j -= 1
        known = memo.get((channel, chain[j]))
        items: list[Any] = list(known) if known is not None else []
        for p in chain[j + 1 if known is not None else j : i + 1]:
            v = self.entries[p]["values"][channel]
            if "list" in v:
                del items[v.get("from", 0) :]
                items += v["list"]
            else:
                items = []
        memo[(channel, pos)] = items
        return items

    def _from(self, channel: str, pos: int) -> int:
        v = self.entries[pos]["values"][channel]
        return int(v.get("from", 0)) if "list" in v else 0

    def pending(self, cid: str) -> list[list[Any]]:
        """The writes of checkpoint ``cid``, in LangGraph's order (task path, task, idx)."""
        return sorted(self.writes.get(cid, []), key=lambda w: (w[4], w[0], w[5]))

    # ------------------------------------------------------------------ rewriting

    def without(self, gone: set[str]) -> list[dict[str, Any]]:
        """The entries without the checkpoints ``gone`` and their writes: their puts
        become ``values`` entries (later checkpoints may read what they wrote)."""
        out: list[dict[str, Any]] = []
        for e in self.entries:
            if e["k"] == "values" or e["cid"] not in gone:
                out.append(e)
            elif e["k"] == "put":
                out.append({"k": "values", "values": e["values"]})
        return out

    def latest_only(self) -> list[dict[str, Any]]:
        """Entries holding only the newest checkpoint (its values whole) and its writes."""
        if not self.puts:
            return []
        cid = max(self.puts)
        put = self.checkpoint(cid)
        memo: dict[tuple[str, int], list[Any]] = {}
        values: dict[str, Any] = {}
        for channel, vk in put["versions"].items():
            found = self.value(channel, vk, memo)
            if found is not None:
                values[channel] = {"v": vk, **({"list": list(found["list"]), "from": 0} if "list" in found else found)}
        out: list[dict[str, Any]] = [{**put, "parent": put["parent"], "values": values}]
        for task_id, channel, t, b, path, idx in self.writes.get(cid, []):
            out.append({"k": "writes", "cid": cid, "task": task_id, "path": path, "w": [[channel, t, b, idx]]})
        return out


def entries_of_state(
    name: str, state: dict[str, Any], events: Callable[[], Iterator[tuple[int, dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """The entries of a session in the older layout: ``state`` (its state now) and
    ``events()`` (its ``channels`` after each of its events, with the seq, in order:
    replayed once)."""
    try:
        checkpoints = state["checkpoints"]
        at: dict[tuple[str, str], int] = {}
        for channel, pairs in state.get("at", {}).items():
            for vk, seq in pairs:
                at[(channel, vk)] = int(seq)
        wanted = {seq for seq in at.values()}
        by_seq: dict[int, dict[str, Any]] = {}
        if wanted:
            last = max(wanted)
            for seq, channels in events():
                if seq in wanted:  # (the replay goes on changing what it yields: copied)
                    by_seq[seq] = {c: {k: list(x) if type(x) is list else x for k, x in v.items()}
                                   for c, v in channels.items()}  # fmt: skip
                if seq >= last:
                    break
        written: dict[int, list[tuple[str, str]]] = {}
        for (channel, vk), seq in at.items():
            written.setdefault(seq, []).append((channel, vk))
        records = {record["seq"]: (cid, record) for cid, record in checkpoints}
        latest = state.get("latest", {})

        def readable(channel: str, vk: str) -> bool:
            """Whether the channel's value at ``vk`` is still there: a checkpoint
            reading one whose event a shortened history lost is left out (the saver
            that wrote it could not read it either), as ``prune`` would."""
            seq = at.get((channel, vk))
            return seq is None or channel in by_seq.get(seq, {}) or latest.get(channel) == vk

        out: list[dict[str, Any]] = []
        before: dict[str, list[Any]] = {}
        for seq in sorted(set(written) | set(records)):  # the order the puts were made
            values: dict[str, Any] = {}
            for channel, vk in written.get(seq, []):
                v = by_seq.get(seq, {}).get(channel)
                if v is None and latest.get(channel) == vk:
                    v = state["channels"].get(channel)  # (the newest value: there, whatever the history kept)
                if v is None:
                    continue  # written before the history kept starts: gone, as it was
                if "list" in v:
                    items, prev = list(v["list"]), before.get(channel, [])
                    n = 0
                    while n < min(len(items), len(prev)) and items[n] == prev[n]:
                        n += 1
                    values[channel] = {"v": vk, "list": items[n:], "from": n}
                    before[channel] = items
                else:
                    values[channel] = {"v": vk, **v}
                    before.pop(channel, None)
            if seq in records and all(readable(c, vk) for c, vk in records[seq][1]["versions"].items()):
                cid, record = records[seq]
                put = {k: record[k] for k in ("parent", "checkpoint", "metadata", "versions")}
                out.append({"k": "put", "cid": cid, **put, "values": values})
            elif values:
                out.append({"k": "values", "values": values})
        for cid, task_id, channel, t, b, path, idx in state.get("writes", []):
            out.append({"k": "writes", "cid": cid, "task": task_id, "path": path, "w": [[channel, t, b, idx]]})
        return out
    except EventLogError:
        raise  # (a storage error or the session gone while replayed: not damage)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CorruptionError(f"checkpoints in the older layout are malformed: {e}", session_id=name) from None
