"""``eventlog view``: one self-contained HTML file that replays a session.

The session's history is folded here, event by event, and the page gets, for each
point of its timeline, how the conversation changed (items kept, items added) and
which fields changed; each distinct item of the conversation is read once, in the
session's message dialect (see :mod:`eventlog.dialects`: pi / Flue entries, OpenAI
Responses / Agents SDK items, chat-completions messages, LangChain messages, or
anything else generically), into who spoke and a list of parts.  In the browser a
slider picks a point and the page shows the session as it was then: the
conversation (for pi, its active path), each tool call side by side with its result
(paired by call id), long text collapsed, errors marked, images painted; the
items (pi: the entry tree, abandoned branches struck through); and the other
fields.  Large strings (images) are stored once in a table, however often they
recur.  No network access is needed: images that are not inline are named, never
fetched, and all text is inserted as text, never as HTML.  The page itself is
``viewer.html`` next to this module.  ``#seq=N`` in the address opens the page at
event N.

Each item also carries when it was written (its own timestamp, else the commit
time of the event that wrote it), the usage its model call records, and for a
tool result how long the call took; the page's header has the run's figures
(:func:`eventlog.runs.stats`: turns, tool calls by tool, tokens, cost, wall
time) and the session's parent and sub-agents: links when the page is served
(``eventlog serve``, :mod:`eventlog.serve`), names in a file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources
from typing import Any

from . import dialects
from .codec import ENTRIES
from .fold import State, Tombstone, apply, diff
from .render import CONVERSATION
from .runs import Run, item_time, item_usage, read_run, stats
from .store import Store
from .values import same

_BLOB_MIN = 4096


#: The keys of the one-key dicts the page reads as markers, not as values.
_MARKERS = frozenset({"$blob", "$bytes", "$entries", "$dict"})


class _Blobs:
    """Long strings, each stored once, referenced as ``{"$blob": n}``; bytes as
    ``{"$bytes": base64}``; a dict with a key of those as ``{"$dict": dict}``."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def value(self, v: Any) -> Any:
        t = type(v)
        if t is str:
            if len(v) < _BLOB_MIN:
                return v
            n = self.index.get(v)
            if n is None:
                n = self.index[v] = len(self.items)
                self.items.append(v)
            return {"$blob": n}
        if t is bytes:
            return {"$bytes": base64.b64encode(v).decode("ascii")}
        if t is dict:
            out = {k: self.value(x) for k, x in v.items()}
            # A dict of the session's own that has a key the page reads as a marker
            # ({"$blob": ...}) is wrapped, so that it is shown as it is.
            return {"$dict": out} if _MARKERS.intersection(v) else out
        if t is list:
            return [self.value(x) for x in v]
        if t is float and not math.isfinite(v):  # JSON has no NaN or infinity: shown as text
            return str(v)
        if v is ENTRIES:  # pragma: no cover - a folded session holds the list itself
            return {"$entries": True}
        return v


class _Timeline:
    """The steps of the page: each point of the history as a change to the last."""

    def __init__(self, fmt: str, conv: dialects.Conversation) -> None:
        self.fmt = fmt
        self.where = (conv.path, conv.dialect)
        self.blobs = _Blobs()
        self.items: list[dict[str, Any]] = []
        self.known: dict[int, tuple[Any, str, int]] = {}  # id(item) -> (item, dialect, its number)
        self.last: tuple[tuple[str, ...] | None, str] | None = None
        self.last_items: list[Any] = []
        self.last_numbers: list[int] = []
        self.last_fields: dict[str, Any] = {}

    def number(self, item: Any, dialect: str, ms: int | None = None) -> int:
        """The number of ``item`` (read in ``dialect``) in the table of items;
        ``ms``: the commit time of the event that first showed it."""
        hit = self.known.get(id(item))
        if hit is not None and hit[0] is item and hit[1] == dialect:
            return hit[2]
        m = dialects.message(item, dialect)
        n = len(self.items)
        self.items.append(
            {"id": m.id, "parent": m.parent_id, "role": m.role, "speaker": m.speaker, "kind": m.kind,
             "result_of": m.result_of, "error": m.error, "note": m.note, "parts": [self.part(p) for p in m.parts]}
        )  # fmt: skip
        own = item_time(item)
        self.items[n]["time"] = own if own is not None else ms
        self.items[n]["usage"] = _usage(item_usage(item))
        self.known[id(item)] = (item, dialect, n)  # (the item is kept: its id() stays its own)
        return n

    def part(self, p: dict[str, Any]) -> Any:
        if p["kind"] == "image":
            out = {k: v for k, v in p.items() if k != "source"}
            source = p.get("source")
            if type(source) is bytes:
                source = base64.b64encode(source).decode("ascii")
            if source is not None:
                out["data"] = self.blobs.value(source)
            return out
        return self.blobs.value(p)

    def step(self, seq: int, ms: int | None, session: dict[str, Any]) -> dict[str, Any]:
        path, dialect = self.where
        items = dialects.at_path(session, path)
        if items is None:
            conv = dialects.locate(session, self.fmt)
            path, dialect, items = conv.path, conv.dialect, conv.items
        out: dict[str, Any] = {"seq": seq, "ms": ms}
        keep = 0
        if (path, dialect) == self.last:
            keep = dialects.same_prefix(self.last_items, items)
        else:
            out["dialect"], out["list"] = dialect, list(path) if path is not None else None
        numbers = self.last_numbers[:keep] + [self.number(item, dialect, ms) for item in items[keep:]]
        out["keep"], out["add"] = keep, numbers[keep:]
        fields = dialects.without(session, path, CONVERSATION) if path is not None else {}
        changed = {k: v for k, v in fields.items() if k not in self.last_fields or not same(self.last_fields[k], v)}
        if changed:
            out["set"] = self.blobs.value(changed)
        if list(fields) != list(self.last_fields):
            out["order"] = list(fields)
        self.last, self.last_items, self.last_numbers, self.last_fields = (path, dialect), list(items), numbers, fields
        return out


def _usage(u: Any) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"input": u.input_tokens, "output": u.output_tokens, "cost": u.cost, "model": u.model}


#: The figures of :func:`eventlog.runs.stats` the page's header shows.
_STATS = ("items", "user_messages", "turns", "tool_calls", "errors", "tokens", "cost", "models", "start_ms", "end_ms",
          "wall_ms", "timed_by")  # fmt: skip


def _timed(timeline: _Timeline, run: Run) -> None:
    """The items of the conversation at the run's head dated as :func:`read_run`
    dates them (the event that wrote each, followed through moves), and each tool
    result given its call's duration."""
    numbers = timeline.last_numbers
    if len(numbers) != len(run.steps):  # pragma: no cover - the same fold, read twice
        return
    for n, step in zip(numbers, run.steps, strict=True):
        item = timeline.items[n]
        if step.time_ms is not None:
            item["time"] = step.time_ms
        item["seq"] = step.seq
    for call in run.calls:
        if call.result is not None and call.duration_ms is not None:
            timeline.items[numbers[call.result]]["took"] = call.duration_ms


def page_data(store: Store, session_id: str, fmt: str = "auto") -> dict[str, Any]:
    """The data of the page for ``session_id`` (see :func:`page`), as JSON-ready
    values: ``session``, ``parent``, ``children``, ``start_seq``, ``steps`` (each
    point of the timeline as a change to the last), ``items`` (each distinct item
    as read in its dialect, with ``time``, ``usage``, ``seq`` and, for a tool
    result, ``took``), ``blobs`` (long strings) and ``stats``."""
    info = store.info(session_id)
    begin = info.history_start
    start = store.fold(session_id, at=begin) if begin else {}
    events = list(store.events(session_id, since=begin))
    head = events[-1].seq if events else begin
    conv = dialects.locate(store.fold(session_id, at=head) if head else {}, fmt)
    timeline = _Timeline(fmt, conv)
    state = State()
    apply(state, diff(State(), start))
    # Each step sees a spine of its own (State.clone): apply() changes the lists and
    # dicts at paths in place, which the timeline keeps to compare with the next step.
    steps = [timeline.step(begin, None, state.clone().session())]
    for event in events:
        if any(type(op) is Tombstone for op in event.ops):  # pragma: no cover - deleted meanwhile
            break
        apply(state, event.ops)
        steps.append(timeline.step(event.seq, event.timestamp_ms, state.clone().session()))
    figures: dict[str, Any] = {}
    children: list[str] = []
    if head:
        run = read_run(store, session_id, fmt, at=head)
        _timed(timeline, run)
        whole = stats(run)
        figures = {k: whole[k] for k in _STATS}
        children = run.children
    return {
        "session": session_id,
        "parent": info.parent_id,
        "children": children,
        "start_seq": begin,
        "steps": steps,
        "items": timeline.items,
        "blobs": timeline.blobs.items,
        "stats": figures,
    }


def to_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element (no ``<``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=repr)
    return text.replace("<", "\\u003c")


def page(store: Store, session_id: str, fmt: str = "auto", *, served: bool = False) -> str:
    """The HTML page for ``session_id`` (raises :class:`NotFoundError` if unknown),
    its conversation read in the dialect ``fmt`` (``"auto"``: detected on the
    session's latest state; see :data:`eventlog.dialects.FORMATS`).  ``served``:
    the page is served by :mod:`eventlog.serve`, so it links to the sessions page,
    the parent and sub-agent sessions, and follows the session live; otherwise it
    is self-contained and needs no network."""
    data = page_data(store, session_id, fmt)
    data["served"] = served
    template = resources.files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")
    fill = {"{{TITLE}}": html.escape(session_id), "{{DATA}}": to_json(data)}
    # One pass: an id holding "{{DATA}}" stays text in the title.
    return re.sub(r"\{\{(?:TITLE|DATA)\}\}", lambda m: fill[m.group(0)], template)
