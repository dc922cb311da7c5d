"""Two runs of the same task compared (``eventlog compare``): where their
conversations first diverge, and how their tool mix, duration, tokens, cost and
outcome differ.

Items are compared as the debugging tools show them (:mod:`eventlog.dialects`):
who spoke, the text, each tool call's tool and arguments, each result's text and
error mark, images by size.  What differs between any two runs of the same thing
is left out: ids, call ids, timestamps, usage and thinking.  So two runs of
different stacks (or dialects) compare by what was said and done.
"""

from __future__ import annotations

import json
from typing import Any

from . import render
from .dialects import Message
from .runs import Run, stats


def signature(m: Message) -> tuple[Any, ...]:
    """What :func:`compare` compares of an item (see the module docstring)."""
    parts: list[Any] = []
    for p in m.parts:
        kind = p["kind"]
        if kind == "thinking":
            continue
        if kind == "tool_call":
            args = json.dumps(p.get("arguments"), sort_keys=True, ensure_ascii=False, default=repr)
            parts.append((kind, p.get("tool"), args))
        elif kind == "tool_result":
            parts.append((kind, p.get("tool"), p.get("text"), bool(p.get("is_error"))))
        elif kind == "image":
            parts.append((kind, p.get("mime_type"), p.get("bytes"), p.get("url")))
        elif kind == "item":
            parts.append((kind, p.get("type"), json.dumps(p.get("value"), sort_keys=True, default=repr)))
        else:
            parts.append((kind, p.get("text"), p.get("type"), p.get("name")))
    return (m.speaker, m.kind if m.speaker == "other" else None, tuple(parts), m.error)


def _item(run: Run, at: int) -> dict[str, Any] | None:
    """The item at position ``at`` of the run's active conversation, as data."""
    if at >= len(run.active):
        return None
    step = run.steps[run.active[at]]
    m = step.message
    return {"index": m.index, "entry": m.id, "seq": step.seq, "speaker": m.speaker, "kind": m.kind,
            "error": m.error, "summary": render.message_summary(m, 200)}  # fmt: skip


def _pair(a: Any, b: Any) -> dict[str, Any]:
    delta = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
    if isinstance(delta, float):
        delta = round(delta, 6)
    return {"a": a, "b": b, "delta": delta}


def compare(a: Run, b: Run, *, context: int = 3) -> dict[str, Any]:
    """Runs ``a`` and ``b`` compared, as data (``eventlog compare --json``):

    ``common`` (how many items of their active conversations are the same, from the
    start), ``diverge`` (``None`` when the conversations are the same; else
    ``{"at", "a", "b"}``: the position and, for each run, the ``context`` items
    from there, each ``{"index", "entry", "seq", "speaker", "kind", "error",
    "summary"}``), ``tools`` (per tool: calls in a and b and the difference),
    and for ``items``, ``turns``, ``tool_calls``, ``tool_errors``, ``errors``,
    ``wall_ms``, ``input_tokens``, ``output_tokens`` and ``cost``: ``{"a", "b",
    "delta"}`` (``delta`` is b - a; ``None`` when either is unknown); ``outcome``:
    the last message of each (see :func:`eventlog.runs.stats`) and whether they
    say the same (``same_outcome``)."""
    sa, sb = stats(a), stats(b)
    ma = [signature(a.steps[i].message) for i in a.active]
    mb = [signature(b.steps[i].message) for i in b.active]
    common = 0
    while common < min(len(ma), len(mb)) and ma[common] == mb[common]:
        common += 1
    diverge = None
    if common < max(len(ma), len(mb)):
        diverge = {
            "at": common,
            "a": [x for x in (_item(a, common + k) for k in range(context)) if x is not None],
            "b": [x for x in (_item(b, common + k) for k in range(context)) if x is not None],
        }
    ta = {t["tool"]: t["count"] for t in sa["tool_calls"]["by_tool"]}
    tb = {t["tool"]: t["count"] for t in sb["tool_calls"]["by_tool"]}
    tools = [{"tool": t, **_pair(ta.get(t, 0), tb.get(t, 0))} for t in sorted(ta.keys() | tb.keys())]
    oa, ob = sa["outcome"], sb["outcome"]
    if oa is None or ob is None:
        same_outcome = oa is None and ob is None  # (two empty conversations end the same)
    else:
        same_outcome = signature(a.steps[oa["index"]].message) == signature(b.steps[ob["index"]].message)
    return {
        "a": a.session,
        "b": b.session,
        "common": common,
        "diverge": diverge,
        "tools": tools,
        "items": _pair(len(a.active), len(b.active)),
        "turns": _pair(sa["turns"], sb["turns"]),
        "tool_calls": _pair(sa["tool_calls"]["total"], sb["tool_calls"]["total"]),
        "tool_errors": _pair(sa["tool_calls"]["errors"], sb["tool_calls"]["errors"]),
        "errors": _pair(sa["errors"], sb["errors"]),
        "wall_ms": _pair(sa["wall_ms"], sb["wall_ms"]),
        "input_tokens": _pair(sa["tokens"]["input"], sb["tokens"]["input"]),
        "output_tokens": _pair(sa["tokens"]["output"], sb["tokens"]["output"]),
        "cost": _pair(sa["cost"], sb["cost"]),
        "outcome": {"a": oa, "b": ob},
        "same_outcome": same_outcome,
    }
