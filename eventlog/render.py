"""Plain descriptions of sessions, entries and events for people reading them.

Pure functions over loaded values (no storage): one-line summaries of entries and
events for ``eventlog log``, the active path of a session's entry tree and a readable
transcript for ``eventlog replay``, and the differences between two states for
``eventlog diff``.  Entries follow the Flue / pi shapes (see
``shared/reference/session-model.md``); anything else is described by its ``type``.
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
            parts.append(f"{block.get('name', '?')}({words(_args(block.get('arguments')), 40)})")
    return " ".join(p for p in parts if p)


def _args(args: Any) -> str:
    if type(args) is dict:
        return ", ".join(f"{k}={words(v if type(v) is str else repr(v), 30)}" for k, v in args.items())
    return "" if args is None else words(repr(args), 40)


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
    if value is ENTRIES:
        return "[entries]"
    if type(value) is str:
        return words(value, limit)
    try:
        return words(json.dumps(value, ensure_ascii=False, default=lambda b: f"<{len(b)} bytes>"), limit)
    except (TypeError, ValueError):
        return words(repr(value), limit)


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


def transcript(entries: list[dict[str, Any]], *, full: bool = False, width: int = 400) -> list[tuple[str, str]]:
    """``(speaker, text)`` lines for a list of entries: messages, tool calls and
    results (long text shortened unless ``full``), images as a note."""
    out: list[tuple[str, str]] = []
    limit = 10**9 if full else width
    for entry in entries:
        message = entry.get("message")
        if type(message) is not dict:
            out.append((entry_kind(entry), entry_summary(entry, limit) or "(no text)"))
            continue
        role = str(message.get("role", "?"))
        speaker = {"toolResult": f"result {message.get('toolName', '?')}"}.get(role, role)
        if message.get("isError"):
            speaker += " (error)"
        for block in _blocks(message.get("content")):
            if type(block) is not dict:
                continue
            kind = block.get("type")
            if kind == "text" and type(block.get("text")) is str:
                text = block["text"] if full else _shorten(block["text"], limit)
                out.append((speaker, text))
            elif kind == "thinking" and type(block.get("thinking")) is str:
                out.append((f"{speaker} thinking", _shorten(block["thinking"], limit)))
            elif kind == "toolCall":
                out.append((f"{speaker} → {block.get('name', '?')}", _args(block.get("arguments"))))
            elif kind == "image":
                out.append((speaker, f"[image {block.get('mimeType', '?')}, {human_bytes(image_size(block))}]"))
        if message.get("errorMessage"):
            out.append((f"{speaker} error", str(message["errorMessage"])))
    return out


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … ({len(text) - limit} more characters)"


# ----------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    kind: str  # added, removed, changed, field
    key: str  # entry id (or #index) or field name
    summary: str


def diff_sessions(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """What changed from ``a`` to ``b``: entries added, removed or changed (matched
    by ``id``, else by position) and top-level fields."""
    changes: list[Change] = []
    old, new = _keyed(entries_of(a)), _keyed(entries_of(b))
    for key, entry in new.items():
        if key not in old:
            changes.append(Change("added", key, f"{entry_kind(entry)}: {entry_summary(entry)}"))
        elif not same(old[key], entry):
            changes.append(Change("changed", key, f"{entry_kind(entry)}: {entry_summary(entry)}"))
    for key, entry in old.items():
        if key not in new:
            changes.append(Change("removed", key, f"{entry_kind(entry)}: {entry_summary(entry)}"))
    for field in dict.fromkeys([*a, *b]):
        if field == "entries" and type(a.get(field)) is list and type(b.get(field)) is list:
            continue
        if field not in b:
            changes.append(Change("field", field, "removed"))
        elif field not in a:
            changes.append(Change("field", field, f"set to {words(repr(b[field]), 60)}"))
        elif not same(a[field], b[field]):
            changes.append(Change("field", field, f"{words(repr(a[field]), 28)} → {words(repr(b[field]), 28)}"))
    return changes


def _keyed(entries: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, e in enumerate(entries):
        key = e.get("id") if type(e) is dict and type(e.get("id")) is str else None
        out[key if key is not None and key not in out else f"#{i}"] = e
    return out
