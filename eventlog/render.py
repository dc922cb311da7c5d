"""Plain descriptions of sessions, entries and events for people reading them.

Pure functions over loaded values (no storage): one-line summaries of entries and
events for ``eventlog log``, the conversation as it stands (a pi session's active
path) and a readable transcript for ``eventlog replay``, and the differences
between two states for ``eventlog diff``.  Every message dialect that
:mod:`eventlog.dialects` reads is described (pi / Flue entries, OpenAI Responses /
Agents SDK items, chat-completions messages, LangChain messages), anything else
generically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import dialects
from .codec import ENTRIES
from .dialects import Conversation, Message, data_size
from .dialects import words as words
from .fold import At, Delete, Event, Insert, Op, Replace, SetFields, Tombstone
from .values import same


def size_of(value: Any) -> int:
    """About the bytes of ``value`` as JSON text (bytes counted raw)."""
    if type(value) in (dict, list):  # its JSON text, made in C
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=lambda b: "#" * (len(b) - 2))
            return len(text.encode("utf-8", "surrogatepass"))
        except (TypeError, ValueError, RecursionError):  # pragma: no cover - a value json cannot walk
            pass
    return _size_of(value)


def _size_of(value: Any) -> int:
    t = type(value)
    if t is str:
        return len(value.encode("utf-8", "surrogatepass")) + 2
    if t is bytes:
        return len(value)
    if t is dict:
        return 2 + sum(_size_of(k) + 1 + _size_of(v) + 1 for k, v in value.items())
    if t is list:
        return 2 + sum(_size_of(v) + 1 for v in value)
    return len(repr(value))


def human_bytes(n: int) -> str:
    """``n`` bytes in decimal units: ``512 B``, ``1.5 KB``, ``632.0 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def image_size(block: dict[str, Any]) -> int:
    """Decoded bytes of an image block's data (base64 text, a ``data:`` URL or raw
    bytes)."""
    return data_size(block.get("data"))


def content_summary(content: Any, limit: int = 60) -> str:
    """One line for a message's content (a str or a list of blocks, any dialect)."""
    return parts_summary(dialects._content(content), limit)


def arguments_text(args: Any, limit: int | None = None) -> str:
    """A tool call's arguments as ``key=value, ...``, each value cut to ``limit``
    characters on one line, or whole (newlines kept) when ``limit`` is ``None``."""
    if type(args) is dict:
        shown = ((k, value_text(v)) for k, v in args.items())
        return ", ".join(f"{k}={v if limit is None else words(v, limit)}" for k, v in shown)
    if args is None:
        return ""
    return value_text(args) if limit is None else words(value_text(args), limit)


def _image_note(part: dict[str, Any], sep: str = " ") -> str:
    """``[image image/png 1.2 KB]``, or the address of an image that is not inline."""
    if part.get("url"):
        return f"[image {part['url'] if len(part['url']) <= 80 else part['url'][:79] + '…'}]"
    return f"[image {part.get('mime_type') or '?'}{sep}{human_bytes(part.get('bytes') or 0)}]"


def parts_summary(parts: list[dict[str, Any]], limit: int = 60) -> str:
    """The parts of a :class:`~eventlog.dialects.Message` on one line."""
    out: list[str] = []
    for p in parts:
        kind = p["kind"]
        if kind in ("text", "tool_result"):
            out.append(words(p["text"], limit))
        elif kind == "image":
            out.append(_image_note(p))
        elif kind == "thinking":
            alone = all(q["kind"] == "thinking" for q in parts)
            out.append(f"(thinking) {words(p['text'], limit)}" if alone else "(thinking)")
        elif kind == "tool_call":
            out.append(f"{p.get('tool') or '?'}({words(arguments_text(p.get('arguments'), 30), 40)})")
        elif kind == "error":
            out.append(f"error: {words(p['text'], limit)}")
        elif kind == "attachment":
            out.append(f"[{p.get('type') or 'file'} {p.get('name') or ''} {human_bytes(p.get('bytes') or 0)}]")
        elif kind in ("entry", "item"):
            text = p.get("text")
            if kind == "item" and not text:
                value = p.get("value")
                text = arguments_text({k: v for k, v in value.items() if k != p.get("type")}
                                      if type(value) is dict else value, 30)  # fmt: skip
            out.append(words(text or "", limit))
    return " ".join(x for x in out if x)


def message_summary(m: Message, limit: int = 60) -> str:
    """One line saying what an item holds (a tool result: the tool's name first)."""
    text = parts_summary(m.parts, limit)
    if m.speaker == "tool":
        tool = next((p.get("tool") for p in m.parts if p.get("tool")), None) or m.result_of or "?"
        text = f"{tool}{' (error)' if m.error else ''}: {text}"
    if m.note:
        text += f" [{m.note}]"
    return text


def entry_kind(entry: Any, dialect: str = "pi") -> str:
    """A label for an entry or item: for pi, ``type`` with the message's role
    (``message/assistant``); for the others, ``message/<role>``, the item's
    ``type`` (``function_call``) or LangChain's (``ai``)."""
    if type(entry) is not dict:
        return type(entry).__name__
    return dialects.message(entry, dialect).kind


def entry_summary(entry: Any, limit: int = 60, dialect: str = "pi", names: dict[str, str] | None = None) -> str:
    """One line saying what an entry (an item, in ``dialect``) holds; ``names``
    (call id -> tool name) names the tool of a result that does not say it."""
    if type(entry) is not dict:
        return words(repr(entry), limit)
    m = dialects.message(entry, dialect)
    if names:
        for p in m.parts:
            if p.get("tool") is None and p.get("tool_call_id") in names:
                p["tool"] = names[p["tool_call_id"]]
    return message_summary(m, limit)


def tool_names(items: list[Any], dialect: str) -> dict[str, str]:
    """Call id -> tool name, for every tool call in ``items``."""
    return {p["tool_call_id"]: p["tool"] for item in items for p in dialects.message(item, dialect).parts
            if p["kind"] == "tool_call" and p["tool_call_id"] is not None and p["tool"] is not None}  # fmt: skip


def value_text(value: Any) -> str:
    """A value as a person reads it: a string as it is, anything else as JSON (bytes
    as their length)."""
    if value is ENTRIES:
        return "[entries]"
    return dialects.value_text(value)


def _lists_counted(value: Any, depth: int = 3) -> Any:
    """``value`` with each non-empty list of dicts, in it or in its dicts, as ``"[N
    items]"`` (a field that holds a conversation, on one line)."""
    if type(value) is list and value and any(type(x) is dict for x in value):
        return f"[{len(value)} item{'' if len(value) == 1 else 's'}]"
    if type(value) is dict and depth > 0:
        return {k: _lists_counted(v, depth - 1) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class OpLine:
    """One operation of an event, described (``kind`` ``item``: an item of the
    conversation that a ``fields`` operation added or changed, in a session whose
    conversation list is rewritten whole by each save)."""

    kind: str  # insert, replace, delete, fields, tombstone, item
    index: int | None
    entry_kind: str
    size: int
    summary: str


def op_lines(op: Op, dialect: str = "pi", names: dict[str, str] | None = None) -> Iterator[OpLine]:
    """The lines of one operation, its entries read in ``dialect``.  ``names`` (call
    id -> tool name), when given, collects the tool calls seen so far and names the
    tools whose results follow."""
    if type(op) is Insert:
        for i, e in enumerate(op.entries):
            yield _item_line("insert", op.index + i, e, dialect, names)
    elif type(op) is Replace:
        yield _item_line("replace", op.index, op.entry, dialect, names)
    elif type(op) is Delete:
        yield OpLine("delete", op.index, "", 0, f"{op.count} entries from #{op.index}")
    elif type(op) is SetFields:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in op.changed.items())
        if op.order is not None:
            shown += (" " if shown else "") + "(key order)"
        yield OpLine("fields", None, "", size_of(op.changed), shown)
    elif type(op) is Tombstone:
        yield OpLine("tombstone", None, "", 0, f"deleted with {op.root!r}")
    elif type(op) is At:  # an operation on the list or dict at a path: said with the path
        where = ".".join(op.path)
        for line in op_lines(op.op, dialect, names):
            yield dataclasses.replace(line, summary=f"{where}: {line.summary}")


def _item_line(kind: str, index: int, item: Any, dialect: str, names: dict[str, str] | None) -> OpLine:
    m = dialects.message(item, dialect, index)
    if names is not None:
        for p in m.parts:
            if p["kind"] == "tool_call" and p["tool_call_id"] is not None and p["tool"] is not None:
                names[p["tool_call_id"]] = p["tool"]
            elif p.get("tool_call_id") in names and p.get("tool") is None:
                p["tool"] = names[p["tool_call_id"]]
    return OpLine(kind, index, m.kind, size_of(item), message_summary(m))


def item_lines(old: list[Any], new: list[Any], dialect: str, names: dict[str, str] | None = None) -> list[OpLine]:
    """``item`` lines for the items of ``new`` that ``old`` (the list before) did not
    hold at the same position, and one for items removed from its end."""
    k = dialects.same_prefix(old, new)
    changed = (i for i in range(k, len(new)) if i >= len(old) or not same(old[i], new[i]))
    lines = [_item_line("item", i, new[i], dialect, names) for i in changed]
    if len(new) < len(old):
        lines.append(OpLine("item", len(new), "", 0, f"{len(old) - len(new)} items removed from #{len(new)}"))
    return lines


def _short(value: Any, limit: int = 32) -> str:
    if value == CONVERSATION:
        return "[the conversation]"
    counted = _lists_counted(value)
    return counted if type(counted) is str and counted is not value else words(value_text(counted), limit)


def op_data(op: Op) -> dict[str, Any]:
    """An operation as data (for ``eventlog log --json``): ``{"op": "insert",
    "index", "entries"}``, ``{"op": "replace", "index", "entry"}``, ``{"op":
    "delete", "index", "count"}``, ``{"op": "fields", "set", "order"}`` (a field
    set to ``{"$entries": true}`` is the entries list, which the other operations
    build), ``{"op": "tombstone", "root"}``, or ``{"op": "at", "path", "do"}``
    (one of the first four applied to the list or dict at ``path``, a list of keys)."""
    if type(op) is Insert:
        return {"op": "insert", "index": op.index, "entries": op.entries}
    if type(op) is Replace:
        return {"op": "replace", "index": op.index, "entry": op.entry}
    if type(op) is Delete:
        return {"op": "delete", "index": op.index, "count": op.count}
    if type(op) is SetFields:
        changed = {k: {"$entries": True} if v is ENTRIES else v for k, v in op.changed.items()}
        return {"op": "fields", "set": changed, "order": op.order}
    if type(op) is At:
        return {"op": "at", "path": list(op.path), "do": op_data(op.op)}
    assert isinstance(op, Tombstone)
    return {"op": "tombstone", "root": op.root}


def event_lines(event: Event, dialect: str = "pi") -> list[OpLine]:
    """The lines of one event, its entries read in ``dialect``."""
    lines = [line for op in event.ops for line in op_lines(op, dialect)]
    return lines or [OpLine("empty", None, "", 0, "no change")]


def log_lines(events: Iterable[Event], conv: Conversation, before: list[Any] | None = None) -> Iterator[
        tuple[Event, OpLine]]:  # fmt: skip
    """The lines of ``events`` (``eventlog log``), their items read in ``conv``'s
    dialect.  Where the conversation list is a field that each save rewrites whole
    (not the managed ``entries`` list), every ``fields`` operation that sets it is
    followed by ``item`` lines for the items it added or changed, compared with the
    list before (``before``: the list as it was before the first event)."""
    top = conv.path[0] if conv.path else None
    prev = list(before or [])
    names: dict[str, str] = {}
    for m in dialects.messages(Conversation(conv.dialect, conv.path, prev)):
        names.update((p["tool_call_id"], p["tool"]) for p in m.parts if p["kind"] == "tool_call" and p["tool_call_id"])
    for event in events:
        lines: list[OpLine] = []
        for op in event.ops:
            lines.extend(op_lines(op, conv.dialect, names))
            if top is not None and type(op) is SetFields and top in op.changed and op.changed[top] is not ENTRIES:
                new = dialects.at_path({top: op.changed[top]}, conv.path) or []
                lines.extend(item_lines(prev, new, conv.dialect, names))
                prev = new
        for line in lines or [OpLine("empty", None, "", 0, "no change")]:
            yield event, line


# ----------------------------------------------------------------------------- the conversation


def entries_of(session: dict[str, Any]) -> list[Any]:
    """A session's ``entries`` list (``[]`` when it has none)."""
    entries = session.get("entries")
    return entries if type(entries) is list else []


def active_path(session: dict[str, Any]) -> list[dict[str, Any]]:
    """The pi entries from the root to ``leafId`` (the conversation as it stands);
    all entries in order when there is no usable ``leafId``."""
    conv = Conversation("pi", ("entries",), entries_of(session))
    return [conv.items[i] for i in dialects.active_indexes(conv, session)]


def transcript_items(conv: Conversation, msgs: list[Message]) -> list[dict[str, Any]]:
    """The transcript as data (``eventlog replay --json``): one item per part of
    each message (see :class:`~eventlog.dialects.Message`), nothing shortened,
    inline image data left out (``eventlog export`` has it).  Every item has
    ``index`` (the message's position in the conversation list), ``entry`` (its id
    or ``None``), ``role`` (as the dialect names it, ``None`` for an item without
    one), ``speaker`` (``user``, ``assistant``, ``system``, ``tool`` or ``other``),
    the part's ``kind`` and fields, then ``dialect`` and ``list`` (the path of the
    conversation list in the session, e.g. ``["state", "messages"]``; ``None`` when
    the session has none and is shown as one item)."""
    where = list(conv.path) if conv.path is not None else None
    out: list[dict[str, Any]] = []
    for m in msgs:
        base = {"index": m.index, "entry": m.id, "role": m.role, "speaker": m.speaker}
        for p in m.parts:
            out.append({**base, **dialects.public(p), "dialect": conv.dialect, "list": where})
    return out


def who(m: Message) -> str:
    """Who speaks in a message: ``user``, ``assistant``, ``system``, ``result
    <tool>``, or the item's role or label."""
    if m.speaker == "tool":
        tool = next((p.get("tool") for p in m.parts if p.get("tool")), None)
        return f"result {tool or '?'}"
    if m.speaker in ("user", "assistant", "system"):
        return m.speaker
    return m.role or m.kind


def transcript(msgs: list[Message], *, full: bool = False, width: int = 400) -> list[tuple[str, str]]:
    """``(speaker, text)`` lines for a conversation, for people: messages, tool
    calls each followed by its result (paired by call id, indented), long text
    (and each tool-call argument) shortened unless ``full``, images as a note."""
    out: list[tuple[str, str]] = []
    limit = None if full else width
    paired = dialects.pairs(msgs)
    answers: dict[tuple[int, str | None], list[int]] = {}
    for r, c in paired.items():
        answers.setdefault((c, msgs[r].result_of), []).append(r)

    def emit(at: int, indent: str) -> None:
        m = msgs[at]
        speaker = indent + who(m) + (" (error)" if m.error and m.speaker == "tool" else "")
        if not m.parts:
            out.append((speaker, "(empty)"))
        for p in m.parts:
            kind = p["kind"]
            if kind in ("text", "tool_result"):
                inner = kind == "tool_result" and m.speaker != "tool"  # a call's own result (mcp_call)
                name = f"{indent}  result {p.get('tool') or '?'}" + (" (error)" if p.get("is_error") else "")
                text = _cut(p["text"], limit)
                if indent or inner:  # a result under its call: every line indented
                    text = text.replace("\n", "\n" + (indent + "  " if inner else indent))
                out.append((name if inner else speaker, text))
            elif kind == "thinking":
                out.append((f"{speaker} thinking", _cut(p["text"], limit)))
            elif kind == "tool_call":
                args = arguments_text(p.get("arguments"), None if full else 30) or "(no arguments)"
                out.append((f"{speaker} → {p.get('tool') or '?'}", args))
                for r in answers.get((at, p.get("tool_call_id")), ()):
                    emit(r, indent + "  ")
            elif kind == "image":
                out.append((speaker, _image_note(p, ", ")))
            elif kind == "error":
                out.append((f"{speaker} error", p["text"]))
            elif kind == "attachment":
                out.append((speaker, f"[{p.get('type') or 'file'} {p.get('name') or '?'}, "
                                     f"{human_bytes(p.get('bytes') or 0)}]"))  # fmt: skip
            elif kind == "entry":
                out.append((indent + m.kind, p.get("text") or "(no text)"))
            elif kind == "item":
                out.append((indent + str(p.get("type")), _item_text(p, limit)))

    for i in range(len(msgs)):
        if i not in paired:
            emit(i, "")
    return out


def _item_text(part: dict[str, Any], limit: int | None) -> str:
    """An item of unknown shape: its text, else its fields as ``key=value``."""
    if part.get("text"):
        return _cut(part["text"], limit)
    value = _elided(part.get("value"))
    if type(value) is dict:
        value = {k: v for k, v in value.items() if not (type(v) is str and v == part.get("type"))}
    return arguments_text(value, None if limit is None else 60) or "(empty)"


def _elided(value: Any, depth: int = 20) -> Any:
    """``value`` with each ``data:`` URL as a note of its type and size (the images
    of an item of unknown shape get lines of their own)."""
    if type(value) is str and value.startswith("data:") and len(value) > 80:
        head = value[5 : value.find(",")] if "," in value else ""
        return f"[{head.split(';', 1)[0] or 'data'}, {human_bytes(data_size(value))}]"
    if depth and type(value) is dict:
        return {k: _elided(v, depth - 1) for k, v in value.items()}
    if depth and type(value) is list:
        return [_elided(v, depth - 1) for v in value]
    return value


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … ({len(text) - limit} more characters)"


# ----------------------------------------------------------------------------- diff


#: The side of a :class:`Change` that does not exist (an entry added has no before).
ABSENT: Any = object()

#: What stands for the conversation list in the fields of ``diff`` and ``view``.
CONVERSATION: dict[str, Any] = {"$conversation": True}


@dataclass(frozen=True)
class Change:
    """One difference between two states of a session: ``kind`` is ``added``,
    ``removed`` or ``changed`` (an item of the conversation) or ``field`` (a
    top-level field); ``key`` the item's id (``#index`` without one) or the field's
    name; ``before`` and ``after`` the values (:data:`ABSENT` on the side where
    there is none); ``index`` the item's position (in the later state, the earlier
    one for a removal); ``dialect`` and ``path`` those of the conversation."""

    kind: str
    key: str
    before: Any = ABSENT
    after: Any = ABSENT
    index: int | None = None
    dialect: str = "pi"
    path: tuple[str, ...] | None = ("entries",)
    names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def summary(self) -> str:
        """The change on one line, for people (a tool result named after its call)."""
        if self.kind != "field":
            entry = self.before if self.after is ABSENT else self.after
            return f"{entry_kind(entry, self.dialect)}: {entry_summary(entry, dialect=self.dialect, names=self.names)}"
        if self.after is ABSENT:
            return "removed"
        if self.before is ABSENT:
            return f"set to {_short(self.after, 60)}"
        return f"{_short(self.before, 28)} → {_short(self.after, 28)}"

    def data(self) -> dict[str, Any]:
        """The change as data (``eventlog diff --json``): ``kind``, ``key``,
        ``index``, ``dialect`` and ``list`` (items only), and ``before`` and
        ``after`` where they exist."""
        out: dict[str, Any] = {"kind": self.kind, "key": self.key}
        if self.index is not None:
            out["index"] = self.index
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = self.after
        if self.kind != "field":
            out["dialect"] = self.dialect
            out["list"] = list(self.path) if self.path is not None else None
        return out


def diff_sessions(a: dict[str, Any], b: dict[str, Any], fmt: str = "auto") -> list[Change]:
    """What changed from ``a`` to ``b``: items of the conversation (found in ``b``,
    else in ``a``, read in ``fmt``) added, removed or changed, matched by id, else
    by position; and the other fields (the conversation list in them standing as
    :data:`CONVERSATION`)."""
    conv = dialects.locate(b, fmt)
    if conv.path is None:
        conv = dialects.locate(a, fmt)
    path, dialect = conv.path, conv.dialect
    changes: list[Change] = []
    before, after = dialects.at_path(a, path) or [], dialects.at_path(b, path) or []
    old, new = _keyed(before, dialect), _keyed(after, dialect)
    names = {**tool_names(before, dialect), **tool_names(after, dialect)}
    for key, (i, entry) in new.items():
        if key not in old:
            changes.append(Change("added", key, after=entry, index=i, dialect=dialect, path=path, names=names))
        elif not same(old[key][1], entry):
            changes.append(Change("changed", key, old[key][1], entry, i, dialect, path, names))
    for key, (i, entry) in old.items():
        if key not in new:
            changes.append(Change("removed", key, before=entry, index=i, dialect=dialect, path=path, names=names))
    fa, fb = dialects.without(a, path, CONVERSATION), dialects.without(b, path, CONVERSATION)
    for name in dict.fromkeys([*fa, *fb]):
        if name not in fb:
            changes.append(Change("field", name, before=fa[name]))
        elif name not in fa:
            changes.append(Change("field", name, after=fb[name]))
        elif not same(fa[name], fb[name]):
            changes.append(Change("field", name, fa[name], fb[name]))
    return changes


def _keyed(entries: list[Any], dialect: str) -> dict[str, tuple[int, Any]]:
    out: dict[str, tuple[int, Any]] = {}
    for i, e in enumerate(entries):
        key = dialects.item_id(e, dialect)
        out[key if key is not None and key not in out else f"#{i}"] = (i, e)
    return out
