"""``eventlog view``: one self-contained HTML file that replays a session.

The page carries the session's events (and, for a history shortened by
``compact(retain=...)``, the state it starts from) as JSON, and folds them in the
browser: a slider picks a point in the timeline and the page shows the session as it
was then: the conversation on the active path (tool calls and results, long ones
collapsed, images as images) and the whole entry tree with abandoned branches marked.
Large strings (images) are stored once in a table, however often they recur.  No
network access is needed; all text is inserted as text, never as HTML.  The page
itself is ``viewer.html`` next to this module.
``#seq=N`` in the address opens the page at event N.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from typing import Any

from .codec import ENTRIES
from .fold import Delete, Insert, Op, Replace, SetFields, Tombstone
from .store import Store

_BLOB_MIN = 4096


class _Blobs:
    """Long strings, each stored once, referenced as ``{"$blob": n}``."""

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
            return {k: self.value(x) for k, x in v.items()}
        if t is list:
            return [self.value(x) for x in v]
        if v is ENTRIES:
            return {"$entries": True}
        return v


def _op(op: Op, blobs: _Blobs) -> list[Any]:
    if type(op) is Insert:
        return ["insert", op.index, blobs.value(op.entries)]
    if type(op) is Replace:
        return ["replace", op.index, blobs.value(op.entry)]
    if type(op) is Delete:
        return ["delete", op.index, op.count]
    if type(op) is SetFields:
        return ["fields", blobs.value(op.changed), op.order]
    assert isinstance(op, Tombstone)
    return ["tombstone", op.root, None]


def page(store: Store, session_id: str) -> str:
    """The HTML page for ``session_id`` (raises :class:`NotFoundError` if unknown)."""
    info = store.info(session_id)
    blobs = _Blobs()
    start = store.fold(session_id, at=info.history_start) if info.history_start else {}
    events = [
        {"seq": e.seq, "ms": e.timestamp_ms, "ops": [_op(op, blobs) for op in e.ops]}
        for e in store.events(session_id, since=info.history_start)
    ]
    data = {
        "session": session_id,
        "parent": info.parent_id,
        "start_seq": info.history_start,
        "start": blobs.value(start),
        "events": events,
        "blobs": blobs.items,
    }
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    template = resources.files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", html.escape(session_id)).replace("{{DATA}}", payload)
