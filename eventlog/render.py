"""Plain descriptions of sessions, entries and events for people reading them.

Pure functions over loaded values (no storage): one-line summaries of entries and
events for ``eventlog log``, the active path of a session's entry tree and a readable
transcript for ``eventlog replay``, and the differences between two states for
``eventlog diff``.  Entries follow the Flue / pi shapes (see
``docs/sessions.md``); anything else is described by its ``type``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .codec import ENTRIES
from .fold import Delete, Event, Insert, Op, Replace, SetFields, Tombstone
from .values import same


def size_of(value: Any) -> int:
    """About the bytes of ``value`` as JSON text (bytes counted raw)."""
    t = type(value)
    if t is str:
        return len(value.encode("utf-8", "surrogatepass")) + 2
    if t is bytes:
        return len(value)
    if t is dict:
        return 2 + sum(size_of(k) + 1 + size_of(v) + 1 for k, v in value.items())
    if t is list:
        return 2 + sum(size_of(v) + 1 for v in value)
    return len(repr(value))


def human_bytes(n: int) -> str:
    """``n`` bytes in decimal units: ``512 B``, ``1.5 KB``, ``632.0 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def words(text: str, limit: int = 60) -> str:
    """The start of ``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def image_size(block: dict[str, Any]) -> int:
    """Decoded bytes of an image block's data (base64 text or raw bytes)."""
    data = block.get("data")
    if type(data) is bytes:
        return len(data)
    if type(data) is str:
        text = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
        try:
            return len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return len(text)
    return 0


def _blocks(content: Any) -> list[Any]:
    if type(content) is str:
        return [{"type": "text", "text": content}]
    return content if type(content) is list else []


def content_summary(content: Any, limit: int = 60) -> str:
    parts: list[str] = []
    for block in _blocks(content):
        if type(block) is not dict:
            continue
        kind = block.get("type")
        if kind == "text" and type(block.get("text")) is str:
            parts.append(words(block["text"], limit))
        elif kind == "image":
            parts.append(f"[image {block.get('mimeType', '?')} {human_bytes(image_size(block))}]")
        elif kind == "thinking":
            parts.append("(thinking)")
        elif kind == "toolCall":
            parts.append(f"{block.get('name', '?')}({words(arguments_text(block.get('arguments'), 30), 40)})")
    return " ".join(p for p in parts if p)


def value_text(value: Any) -> str:
    """A value as a person reads it: a string as it is, anything else as JSON (bytes
    as their length)."""
    if type(value) is str:
        return value
    if value is ENTRIES:
        return "[entries]"
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda b: f"<{len(b)} bytes>")
    except (TypeError, ValueError):  # pragma: no cover - nothing storable gets here
        return repr(value)


def arguments_text(args: Any, limit: int | None = None) -> str:
    """A tool call's arguments as ``key=value, ...``, each value cut to ``limit``
    characters on one line, or whole (newlines kept) when ``limit`` is ``None``."""
    if type(args) is dict:
        shown = ((k, value_text(v)) for k, v in args.items())
        return ", ".join(f"{k}={v if limit is None else words(v, limit)}" for k, v in shown)
    if args is None:
        return ""
    return value_text(args) if limit is None else words(value_text(args), limit)


def entry_kind(entry: Any) -> str:
    """``type`` of an entry, with the message's role: ``message/assistant``."""
    if type(entry) is not dict:
        return type(entry).__name__
    kind = str(entry.get("type", "entry"))
    message = entry.get("message")
    if kind == "message" and type(message) is dict and "role" in message:
        return f"message/{message['role']}"
    return kind


def entry_summary(entry: Any, limit: int = 60) -> str:
    """One line saying what an entry holds."""
    if type(entry) is not dict:
        return words(repr(entry), limit)
    message = entry.get("message")
    if type(message) is dict:
        role = message.get("role")
        if role == "toolResult":
            error = " (error)" if message.get("isError") else ""
            return f"{message.get('toolName', '?')}{error}: {content_summary(message.get('content'), limit)}"
        if role == "assistant" and message.get("stopReason") not in (None, "stop", "toolUse"):
            return f"{content_summary(message.get('content'), limit)} [{message['stopReason']}]"
        return content_summary(message.get("content"), limit)
    for key in ("summary", "text", "content", "customType", "label"):
        if type(entry.get(key)) is str:
            return words(entry[key], limit)
    return ""


@dataclass(frozen=True)
class OpLine:
    """One operation of an event, described."""

    kind: str  # insert, replace, delete, fields, tombstone
    index: int | None
    entry_kind: str
    size: int
    summary: str


def op_lines(op: Op) -> Iterator[OpLine]:
    if type(op) is Insert:
        for i, e in enumerate(op.entries):
            yield OpLine("insert", op.index + i, entry_kind(e), size_of(e), entry_summary(e))
    elif type(op) is Replace:
        yield OpLine("replace", op.index, entry_kind(op.entry), size_of(op.entry), entry_summary(op.entry))
    elif type(op) is Delete:
        yield OpLine("delete", op.index, "", 0, f"{op.count} entries from #{op.index}")
    elif type(op) is SetFields:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in op.changed.items())
        if op.order is not None:
            shown += (" " if shown else "") + "(key order)"
        yield OpLine("fields", None, "", size_of(op.changed), shown)
    elif type(op) is Tombstone:
        yield OpLine("tombstone", None, "", 0, f"deleted with {op.root!r}")


def _short(value: Any, limit: int = 32) -> str:
    return words(value_text(value), limit)


def op_data(op: Op) -> dict[str, Any]:
    """An operation as data (for ``eventlog log --json``): ``{"op": "insert",
    "index", "entries"}``, ``{"op": "replace", "index", "entry"}``, ``{"op":
    "delete", "index", "count"}``, ``{"op": "fields", "set", "order"}`` (a field
    set to ``{"$entries": true}`` is the entries list, which the other operations
    build) or ``{"op": "tombstone", "root"}``."""
    if type(op) is Insert:
        return {"op": "insert", "index": op.index, "entries": op.entries}
    if type(op) is Replace:
        return {"op": "replace", "index": op.index, "entry": op.entry}
    if type(op) is Delete:
        return {"op": "delete", "index": op.index, "count": op.count}
    if type(op) is SetFields:
        changed = {k: {"$entries": True} if v is ENTRIES else v for k, v in op.changed.items()}
        return {"op": "fields", "set": changed, "order": op.order}
    assert isinstance(op, Tombstone)
    return {"op": "tombstone", "root": op.root}


def event_lines(event: Event) -> list[OpLine]:
    lines = [line for op in event.ops for line in op_lines(op)]
    return lines or [OpLine("empty", None, "", 0, "no change")]


# ----------------------------------------------------------------------------- the tree


def entries_of(session: dict[str, Any]) -> list[Any]:
    entries = session.get("entries")
    return entries if type(entries) is list else []


def active_path(session: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries from the root to ``leafId`` (the conversation as it stands); all
    entries in order when there is no usable ``leafId``."""
    entries = [e for e in entries_of(session) if type(e) is dict]
    by_id = {e.get("id"): e for e in entries if "id" in e}
    leaf = session.get("leafId")
    if leaf not in by_id:
        return entries
    path: list[dict[str, Any]] = []
    seen: set[Any] = set()
    node: dict[str, Any] | None = by_id[leaf]
    while node is not None and node.get("id") not in seen:
        seen.add(node.get("id"))
        path.append(node)
        node = by_id.get(node.get("parentId"))
    return path[::-1]


def transcript_items(entries: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The transcript of ``(index, entry)`` pairs as data (``eventlog replay
    --json``), one item per block of a message, nothing shortened.  Every item has
    ``index`` (the entry's position in ``entries``), ``entry`` (its ``id`` or
    ``None``), ``role`` (the message's, ``None`` for an entry that is not a message)
    and ``kind``:

    * ``"text"``: ``text``; ``"thinking"``: ``text``;
    * ``"tool_call"``: ``tool``, ``tool_call_id``, ``arguments`` (as stored);
    * ``"tool_result"``: a text block of a tool result: ``text``, ``tool``,
      ``tool_call_id``, ``is_error``;
    * ``"image"``: ``mime_type``, ``bytes`` (decoded size; the data is left out: see
      ``eventlog export``), and for a tool result's image ``tool``;
    * ``"error"``: an assistant message's ``errorMessage`` as ``text``;
    * ``"entry"``: an entry that is not a message: ``type`` and ``text`` (its
      summary, text or label, whole; ``None`` when it has none).
    """
    out: list[dict[str, Any]] = []
    for index, entry in entries:
        ident = entry.get("id")
        base: dict[str, Any] = {"index": index, "entry": ident if type(ident) is str else None}
        message = entry.get("message")
        if type(message) is not dict:
            text = next((entry[k] for k in ("summary", "text", "content", "customType", "label")
                         if type(entry.get(k)) is str), None)  # fmt: skip
            out.append({**base, "role": None, "kind": "entry", "type": entry.get("type"), "text": text})
            continue
        role = message.get("role")
        base["role"] = role if type(role) is str else None
        result: dict[str, Any] = {}
        if role == "toolResult":
            result = {"tool": message.get("toolName"), "tool_call_id": message.get("toolCallId"),
                      "is_error": bool(message.get("isError"))}  # fmt: skip
        for block in _blocks(message.get("content")):
            if type(block) is not dict:
                continue
            kind = block.get("type")
            if kind == "text" and type(block.get("text")) is str:
                out.append({**base, "kind": "tool_result" if result else "text", "text": block["text"], **result})
            elif kind == "thinking" and type(block.get("thinking")) is str:
                out.append({**base, "kind": "thinking", "text": block["thinking"]})
            elif kind == "toolCall":
                out.append({**base, "kind": "tool_call", "tool": block.get("name"), "tool_call_id": block.get("id"),
                            "arguments": block.get("arguments")})  # fmt: skip
            elif kind == "image":
                image = {"mime_type": block.get("mimeType"), "bytes": image_size(block)}
                out.append({**base, "kind": "image", **image, **({"tool": result["tool"]} if result else {})})
        if message.get("errorMessage"):
            out.append({**base, "kind": "error", "text": str(message["errorMessage"])})
    return out


def transcript(entries: list[dict[str, Any]], *, full: bool = False, width: int = 400) -> list[tuple[str, str]]:
    """``(speaker, text)`` lines for a list of entries, for people: messages, tool
    calls and results, long text (and each tool-call argument) shortened unless
    ``full``, images as a note."""
    out: list[tuple[str, str]] = []
    limit = None if full else width
    errors = {i: bool(e["message"].get("isError")) for i, e in enumerate(entries) if type(e.get("message")) is dict}
    for item in transcript_items(list(enumerate(entries))):
        kind, text = item["kind"], str(item.get("text") or "")
        if kind == "entry":
            out.append((entry_kind(entries[item["index"]]), text or "(no text)"))
            continue
        role = str(item["role"] if item["role"] is not None else "?")
        speaker = f"result {_name(item.get('tool'))}" if role == "toolResult" else role
        if errors.get(item["index"]):
            speaker += " (error)"
        if kind in ("text", "tool_result"):
            out.append((speaker, text if limit is None else _shorten(text, limit)))
        elif kind == "thinking":
            out.append((f"{speaker} thinking", text if limit is None else _shorten(text, limit)))
        elif kind == "tool_call":
            args = item["arguments"]
            out.append((f"{speaker} → {_name(item['tool'])}", arguments_text(args, None if full else 30)))
        elif kind == "image":
            out.append((speaker, f"[image {_name(item['mime_type'])}, {human_bytes(item['bytes'])}]"))
        elif kind == "error":
            out.append((f"{speaker} error", text))
    return out


def _name(value: Any) -> str:
    return value if type(value) is str else "?"


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … ({len(text) - limit} more characters)"


# ----------------------------------------------------------------------------- diff


#: The side of a :class:`Change` that does not exist (an entry added has no before).
ABSENT: Any = object()


@dataclass(frozen=True)
class Change:
    """One difference between two states of a session: ``kind`` is ``added``,
    ``removed`` or ``changed`` (an entry) or ``field`` (a top-level field); ``key``
    the entry's ``id`` (``#index`` without one) or the field's name; ``before`` and
    ``after`` the values (:data:`ABSENT` on the side where there is none); ``index``
    the entry's position (in the later state, the earlier one for a removal)."""

    kind: str
    key: str
    before: Any = ABSENT
    after: Any = ABSENT
    index: int | None = None

    @property
    def summary(self) -> str:
        """The change on one line, for people."""
        if self.kind != "field":
            entry = self.before if self.after is ABSENT else self.after
            return f"{entry_kind(entry)}: {entry_summary(entry)}"
        if self.after is ABSENT:
            return "removed"
        if self.before is ABSENT:
            return f"set to {_short(self.after, 60)}"
        return f"{_short(self.before, 28)} → {_short(self.after, 28)}"

    def data(self) -> dict[str, Any]:
        """The change as data (``eventlog diff --json``): ``kind``, ``key``,
        ``index`` (entries only), and ``before`` and ``after`` where they exist."""
        out: dict[str, Any] = {"kind": self.kind, "key": self.key}
        if self.index is not None:
            out["index"] = self.index
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = self.after
        return out


def diff_sessions(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """What changed from ``a`` to ``b``: entries added, removed or changed (matched
    by ``id``, else by position) and top-level fields."""
    changes: list[Change] = []
    old, new = _keyed(entries_of(a)), _keyed(entries_of(b))
    for key, (i, entry) in new.items():
        if key not in old:
            changes.append(Change("added", key, after=entry, index=i))
        elif not same(old[key][1], entry):
            changes.append(Change("changed", key, old[key][1], entry, index=i))
    for key, (i, entry) in old.items():
        if key not in new:
            changes.append(Change("removed", key, before=entry, index=i))
    for field in dict.fromkeys([*a, *b]):
        if field == "entries" and type(a.get(field)) is list and type(b.get(field)) is list:
            continue
        if field not in b:
            changes.append(Change("field", field, before=a[field]))
        elif field not in a:
            changes.append(Change("field", field, after=b[field]))
        elif not same(a[field], b[field]):
            changes.append(Change("field", field, a[field], b[field]))
    return changes


def _keyed(entries: list[Any]) -> dict[str, tuple[int, Any]]:
    out: dict[str, tuple[int, Any]] = {}
    for i, e in enumerate(entries):
        key = e.get("id") if type(e) is dict and type(e.get("id")) is str else None
        out[key if key is not None and key not in out else f"#{i}"] = (i, e)
    return out
