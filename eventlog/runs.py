"""A session read as a run of an agent: when each item of its conversation was
written, what the model calls cost, and the tool calls paired with their results
and timed.  ``eventlog stats SESSION``, ``compare``, ``grep``, ``export --otel``
and the viewer read sessions through :func:`read_run`.

Times: an item's own timestamp where its dialect carries one (pi entries'
``timestamp``; ``timestamp``, ``created_at`` or ``createdAt`` on an item, its
``message`` or, for LangChain, its fields), else the commit time of the event
that wrote the item (:func:`item_origins`): every stack gets per-step times, as
fine as it saved.  Usage: pi's ``usage`` (``input`` + ``cacheRead`` +
``cacheWrite`` in, ``output`` out, ``cost.total``), OpenAI's and chat
completions' ``usage`` (``input_tokens`` / ``prompt_tokens``, ``output_tokens`` /
``completion_tokens``), LangChain's ``usage_metadata`` or
``response_metadata.token_usage``.

Pure reads over the public :class:`~eventlog.Store` API and loaded values; what
a dialect does not carry is ``None``, never a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import dialects, render
from .codec import ENTRIES
from .dialects import Conversation, Message
from .fold import At, Delete, Event, Insert, Replace, SetFields

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True)
class Usage:
    """What one model call cost: tokens in (cached ones included) and out, cost in
    the currency the stack records (USD for pi), the model; ``None`` where unknown."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    model: str | None = None


@dataclass
class Step:
    """One item of the conversation: ``message`` (as :mod:`eventlog.dialects` reads
    it), ``seq`` of the event that wrote it as it now is (``None`` for an item older
    than the history kept after ``compact --retain``), ``time_ms`` (its own
    timestamp, else that event's commit time; ``None`` if neither is known),
    ``usage`` and ``size`` (bytes of its JSON, images counted decoded)."""

    message: Message
    seq: int | None
    time_ms: int | None
    usage: Usage | None
    size: int


@dataclass
class Call:
    """A tool call and its result: ``step`` and ``result`` are positions in
    :attr:`Run.steps` (``result`` ``None`` while unanswered); ``error`` whether the
    result is marked an error; times from the two steps."""

    tool: str | None
    call_id: str | None
    arguments: Any
    step: int
    result: int | None = None
    error: bool = False
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def duration_ms(self) -> int | None:
        """From the call to its result, when both times are known."""
        if self.start_ms is None or self.end_ms is None:
            return None
        return max(0, self.end_ms - self.start_ms)


@dataclass
class Run:
    """A session as a run: its conversation (:class:`~eventlog.dialects.Conversation`),
    one :class:`Step` per item, ``active`` (positions on the conversation as it
    stands: a pi session's active path), its tool ``calls``, its ``parent`` and
    ``children`` (sub-agent sessions), read at ``seq``."""

    session: str
    seq: int
    data: dict[str, Any]
    conv: Conversation
    steps: list[Step]
    active: list[int]
    calls: list[Call]
    parent: str | None = None
    children: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- when items were written


class _Tracked:
    """A list's items with the seq of the event that wrote each.  An item that an
    event removes (replaced or deleted) and writes again elsewhere (a move, or an
    insert that the diff wrote as replacements) keeps its seq: see :meth:`end`."""

    def __init__(self, items: list[Any], seqs: list[int | None]) -> None:
        self.items, self.seqs = items, seqs
        self.removed: list[tuple[Any, int | None]] = []

    def edit(self, op: Insert | Replace | Delete, seq: int) -> None:
        n = len(self.items)
        if type(op) is Insert and 0 <= op.index <= n:
            self.items[op.index : op.index] = op.entries
            self.seqs[op.index : op.index] = [seq] * len(op.entries)
        elif type(op) is Replace and 0 <= op.index < n:
            self.removed.append((self.items[op.index], self.seqs[op.index]))
            self.items[op.index], self.seqs[op.index] = op.entry, seq
        elif type(op) is Delete and 0 <= op.index <= n - op.count:
            end = op.index + op.count
            self.removed += zip(self.items[op.index : end], self.seqs[op.index : end], strict=True)
            del self.items[op.index : op.index + op.count]
            del self.seqs[op.index : op.index + op.count]

    def end(self, seq: int) -> None:
        """After event ``seq``: an item it wrote that equals one it removed is that
        one, moved."""
        if not self.removed:
            return
        pool: dict[str, list[int | None]] = {}
        for value, was in self.removed:
            if was != seq:
                pool.setdefault(_key(value), []).append(was)
        self.removed = []
        if not pool:
            return
        for i, s in enumerate(self.seqs):
            if s == seq:
                found = pool.get(_key(self.items[i]))
                if found:
                    self.seqs[i] = found.pop(0)

    def reset(self, items: list[Any], seq: int) -> None:
        """The list set whole: an item equal to one it held before keeps that one's
        seq (a runtime that rewrites the list to append to or reorder it)."""
        old, seqs = self.items, self.seqs
        out: list[int | None] = [seqs[i] if i < len(old) and _equal(old[i], v) else -1 for i, v in enumerate(items)]
        if -1 in out:
            pool: dict[str, list[int | None]] = {}
            for j, w in enumerate(old):
                if j >= len(out) or out[j] == -1:
                    pool.setdefault(_key(w), []).append(seqs[j])
            for i, v in enumerate(items):
                if out[i] == -1:
                    found = pool.get(_key(v))
                    out[i] = found.pop(0) if found else seq
        self.items, self.seqs = list(items), out


def _key(value: Any) -> str:
    return json.dumps(value, default=repr, allow_nan=True)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # (a value whose == raises: not the same)
        return False


def _down(value: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if type(value) is not dict:
            return None
        value = value.get(k)
    return value


def item_origins(
    path: tuple[str, ...], start: list[Any] | None, start_seq: int | None, events: Iterable[Event]
) -> list[int | None]:
    """The seq of the event that wrote each item of the list at ``path`` as it is
    after ``events`` (a session's events in order, from just after ``start_seq``,
    when the list held ``start``: those items get ``start_seq``).  Follows the list
    operations at ``path`` (the managed ``entries`` list's own, or those at a path)
    and the fields that set it whole; an operation that does not fit is skipped (a
    debugging aid reads what it can)."""
    tracked = _Tracked(list(start or []), [start_seq] * len(start or []))
    for event in events:
        for op in event.ops:
            if type(op) in (Insert, Replace, Delete):
                if path == ("entries",):
                    tracked.edit(op, event.seq)  # type: ignore[arg-type]
                continue
            if type(op) is At:
                assert isinstance(op, At)
                inner, at = op.op, op.path
                if at == path and type(inner) is not SetFields:
                    tracked.edit(inner, event.seq)  # type: ignore[arg-type]
                elif type(inner) is SetFields and len(at) < len(path) and path[: len(at)] == at:
                    _set(tracked, inner, path[len(at) :], event.seq)
            elif type(op) is SetFields:
                _set(tracked, op, path, event.seq)
        tracked.end(event.seq)
    return tracked.seqs


def _set(tracked: _Tracked, op: SetFields, rest: tuple[str, ...], seq: int) -> None:
    """``op`` sets keys of the dict that holds (through ``rest``) the list."""
    key = rest[0]
    if key not in op.changed:
        if op.order is not None and key not in op.order:  # the key was removed
            tracked.reset([], seq)
        return
    value = op.changed[key]
    if value is ENTRIES:  # the managed entries list: filled by its own operations
        return
    found = _down(value, rest[1:])
    tracked.reset(found if type(found) is list else [], seq)


# ----------------------------------------------------------------------------- what items say of themselves


def _ms(value: Any) -> int | None:
    """A timestamp as Unix ms: seconds or ms as a number (told apart by size; a
    number that is neither, such as a step counter, is not a time), or ISO 8601
    text with a zone."""
    if type(value) in (int, float) and math.isfinite(value):
        if 1e9 <= value < 1e10:  # seconds (2001 to 2286)
            return int(value * 1000)
        if 1e11 <= value < 1e13:  # ms (1973 to 2286)
            return int(value)
        return None  # (a counter, or some other unit: not a time we can tell)
    if type(value) is str and 10 <= len(value) <= 40:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            return None  # (a local time: which zone is not known)
        ms = int(when.timestamp() * 1000)
        return ms if 1e11 <= ms < 1e13 else None  # (Go's zero time, year 1, is not a time)
    return None


_TIME_KEYS = ("timestamp", "created_at", "createdAt")


def holders(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The item and the dicts in it where a dialect keeps a message's details."""
    out = [item]
    for k in ("message", "data", "kwargs"):
        v = item.get(k)
        if type(v) is dict:
            out.append(v)
    for d in list(out):
        v = d.get("response_metadata")
        if type(v) is dict:
            out.append(v)
    return out


def item_time(item: Any) -> int | None:
    """An item's own timestamp as Unix ms (see the module docstring), else ``None``."""
    if type(item) is not dict:
        return None
    for d in holders(item):
        for k in _TIME_KEYS:
            if k in d:
                ms = _ms(d[k])
                if ms is not None:
                    return ms
    return None


def _int(d: dict[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` that holds a count (an int, 0 to 2**53: a larger one is
    no token count)."""
    for k in keys:
        v = d.get(k)
        if type(v) is int and 0 <= v <= 2**53:
            return v
    return None


def _cost(d: dict[str, Any]) -> float | None:
    v: Any = d.get("cost")
    if type(v) is dict:
        v = v.get("total")
    if type(v) in (int, float) and math.isfinite(v) and v >= 0:
        return float(v)
    return None


def item_usage(item: Any) -> Usage | None:
    """The usage an item records (see the module docstring), else ``None``."""
    if type(item) is not dict:
        return None
    for d in holders(item):
        for key in ("usage", "usage_metadata", "token_usage"):
            u = d.get(key)
            if type(u) is not dict:
                continue
            out = _int(u, "output", "output_tokens", "completion_tokens", "outputTokens", "completionTokens")
            inp = _int(u, "input", "input_tokens", "prompt_tokens", "inputTokens", "promptTokens")
            if inp is not None and type(u.get("input")) is int:  # pi: cache reads and writes are input too
                inp += sum(_int(u, k) or 0 for k in ("cacheRead", "cacheWrite"))
            cost = _cost(u)
            if inp is None and out is None and cost is None:
                continue
            return Usage(inp, out, cost, _model(item))
    return None


def _model(item: dict[str, Any]) -> str | None:
    for d in holders(item):
        for k in ("model", "model_name"):
            if type(d.get(k)) is str and d[k]:
                return str(d[k])
    return None


# ----------------------------------------------------------------------------- a run


def read_run(store: Store, session_id: str, fmt: str = "auto", at: int | None = None) -> Run:
    """``session_id`` at ``at`` (default: its head) as a :class:`Run`.  Reads the
    session's kept history once (for when each item was written).  Raises what
    :meth:`~eventlog.Store.fold` raises (:class:`~eventlog.NotFoundError` for an
    unknown session or position, ...) and :class:`~eventlog.InvalidValueError` for
    an unknown ``fmt``."""
    seq = store.seq(session_id) if at is None else at
    data = store.fold(session_id, at=seq)
    conv = dialects.locate(data, fmt)
    info = store.info(session_id)
    times: dict[int, int] = {}
    origins = item_seqs(store, session_id, conv, seq, times)
    msgs = dialects.messages(conv)
    steps = []
    for m, item, origin in zip(msgs, conv.items, origins, strict=True):
        own = item_time(item)
        when = own if own is not None else (times.get(origin) if origin is not None else None)
        steps.append(Step(m, origin, when, item_usage(item), render.size_of(item)))
    return Run(session_id, seq, data, conv, steps, dialects.active_indexes(conv, data),
               _calls(steps, conv.items, conv.dialect),
               info.parent_id, store.children(session_id))  # fmt: skip


def item_seqs(
    store: Store, session_id: str, conv: Conversation, seq: int, times: dict[int, int] | None = None
) -> list[int | None]:
    """The seq of the event that wrote each item of ``conv`` (the conversation of
    ``session_id`` folded at ``seq``), by :func:`item_origins` over its kept
    history; all ``None`` when they cannot be followed.  ``times`` gets each
    event's commit time by seq."""
    if times is None:
        times = {}
    start = store.info(session_id).history_start
    events = _timed(store._events_unread(session_id, since=start), seq, times)
    if conv.path is None:  # the session itself is the one item
        for _ in events:
            pass
        return [seq] * len(conv.items)
    before = dialects.at_path(store._fold_unread(session_id, start), conv.path) if start else None
    origins = item_origins(conv.path, before, None, events)
    return origins if len(origins) == len(conv.items) else [None] * len(conv.items)


def _timed(events: Iterable[Event], seq: int, times: dict[int, int]) -> Iterator[Event]:
    """``events`` up to ``seq``, each one's commit time noted in ``times``."""
    for e in events:
        if e.seq > seq:
            return
        times[e.seq] = e.timestamp_ms
        yield e


def _calls(steps: list[Step], items: list[Any], dialect: str) -> list[Call]:
    """The tool calls of ``steps``, each paired with the first result after it
    that names its call id (a result message answers each id once, however many
    parts it has).  A call that carries its own result (an OpenAI hosted tool:
    ``web_search_call``, ``mcp_call``, ... with no ``call_id``) is answered by its
    own item."""
    calls: list[Call] = []
    waiting: dict[str, list[Call]] = {}
    for i, step in enumerate(steps):
        m = step.message
        mine: list[Call] = []
        for p in m.parts:
            if p["kind"] == "tool_call":
                call = Call(p.get("tool"), p.get("tool_call_id"), p.get("arguments"), i, start_ms=step.time_ms)
                calls.append(call)
                mine.append(call)
        item = items[i]
        if mine and dialect == "openai" and type(item) is dict and "call_id" not in item:
            for call in mine:  # a hosted tool's call, done where it is
                call.result, call.end_ms, call.error = i, step.time_ms, m.error
            continue
        # results first (of calls made earlier), then this message's own calls wait
        errors: dict[str, bool] = {}
        for p in m.parts:
            cid = p.get("tool_call_id") if p["kind"] in ("tool_result", "image") else None
            if cid is None and p["kind"] == "tool_result":
                cid = m.result_of
            if cid is not None:
                errors[cid] = errors.get(cid, False) or bool(p.get("is_error"))
        if m.result_of is not None and m.result_of not in errors:
            errors[m.result_of] = False
        for cid, error in errors.items():
            queue = waiting.get(cid)
            if queue:
                call = queue.pop(0)
                call.result, call.end_ms, call.error = i, step.time_ms, error or m.error
        for call in mine:
            if call.call_id is not None:
                waiting.setdefault(call.call_id, []).append(call)
    return calls


# ----------------------------------------------------------------------------- figures


def _total(costs: list[float]) -> float | None:
    """The sum of ``costs``, ``None`` when there are none or it is not finite."""
    total = sum(costs)
    return round(total, 6) if costs and math.isfinite(total) else None


def stats(run: Run, largest: int = 5) -> dict[str, Any]:
    """A run's figures, as data (``eventlog stats SESSION --json``): ``items``,
    ``user_messages``, ``turns`` (model messages), ``tool_calls`` (total,
    ``errors``, ``unanswered`` and ``by_tool``: for each tool ``count``,
    ``errors``, ``total_ms``, ``mean_ms``, ``max_ms`` over the calls with both
    times known), ``errors`` (items marked as errors), ``tokens`` (``input``,
    ``output``: sums over the items that record them, ``None`` when none does),
    ``cost``, ``models`` (model -> turns), ``start_ms``, ``end_ms``, ``wall_ms``
    (first to last item time), ``timed_by`` (``"entries"`` when every item carries
    its own time, ``"events"`` when none does, else ``"both"``; ``None`` when no
    item has a time), ``outcome`` (the
    last message of the conversation: speaker, kind, a summary, whether an error)
    and the ``largest`` items.  Counted over every item, abandoned pi branches too
    (they were paid for)."""
    steps = run.steps
    by_tool: dict[str, dict[str, Any]] = {}
    for call in run.calls:
        t = by_tool.setdefault(call.tool or "?", {"tool": call.tool or "?", "count": 0, "errors": 0, "timed": 0,
                                                  "total_ms": 0, "max_ms": None})  # fmt: skip
        t["count"] += 1
        t["errors"] += call.error
        if call.duration_ms is not None:
            t["timed"] += 1
            t["total_ms"] += call.duration_ms
            t["max_ms"] = max(t["max_ms"] or 0, call.duration_ms)
    tools = []
    for t in sorted(by_tool.values(), key=lambda t: (-t["count"], t["tool"])):
        timed = t.pop("timed")
        t["mean_ms"] = round(t["total_ms"] / timed) if timed else None
        if not timed:
            t["total_ms"] = None
        tools.append(t)
    usages = [s.usage for s in steps if s.usage is not None]
    ins = [u.input_tokens for u in usages if u.input_tokens is not None]
    outs = [u.output_tokens for u in usages if u.output_tokens is not None]
    costs = [u.cost for u in usages if u.cost is not None]
    models: dict[str, int] = {}
    for u in usages:
        if u.model:
            models[u.model] = models.get(u.model, 0) + 1
    times = [s.time_ms for s in steps if s.time_ms is not None]
    own = sum(1 for s in steps if item_time(run.conv.items[s.message.index]) is not None)
    last = steps[run.active[-1]].message if run.active else None
    big = sorted(range(len(steps)), key=lambda i: -steps[i].size)[:largest]
    return {
        "session": run.session,
        "seq": run.seq,
        "dialect": run.conv.dialect,
        "list": list(run.conv.path) if run.conv.path is not None else None,
        "items": len(steps),
        "user_messages": sum(1 for s in steps if s.message.speaker == "user"),
        "turns": sum(1 for s in steps if s.message.speaker == "assistant"),
        "tool_calls": {
            "total": len(run.calls),
            "errors": sum(1 for c in run.calls if c.error),
            "unanswered": sum(1 for c in run.calls if c.result is None),
            "by_tool": tools,
        },
        "errors": sum(1 for s in steps if s.message.error),
        "tokens": {"input": sum(ins) if ins else None, "output": sum(outs) if outs else None},
        "cost": _total(costs),
        "models": models,
        "start_ms": min(times) if times else None,
        "end_ms": max(times) if times else None,
        "wall_ms": max(times) - min(times) if times else None,
        "timed_by": None if not times else "entries" if own == len(steps) else "events" if not own else "both",
        "outcome": None if last is None else {
            "index": last.index, "speaker": last.speaker, "kind": last.kind, "error": last.error,
            "note": last.note, "summary": render.message_summary(last, 200),
        },
        "largest": [{"index": i, "entry": steps[i].message.id, "kind": steps[i].message.kind,
                     "bytes": steps[i].size} for i in big],
        "parent": run.parent,
        "children": run.children,
    }  # fmt: skip
