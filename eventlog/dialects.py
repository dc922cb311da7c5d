"""Message dialects: where a session's conversation is, and what each item of it says.

The debugging tools (``eventlog replay``, ``show``, ``log``, ``diff``, ``view``) read
the sessions of several agent stacks.  This module finds the conversation in a
session (:func:`locate`: a list such as ``entries``, ``messages``, ``items``,
``state.messages`` or ``channel_values.messages``), tells its dialect, and turns each
item into a :class:`Message`: who spoke and a list of parts (text, thinking, tool
calls with their arguments, tool results, images, errors), the same for every
dialect.  The dialects (see ``docs/sessions.md``):

* ``pi``: pi / Flue entries ``{"type": "message", "id", "parentId", "message":
  {"role": "user" | "assistant" | "toolResult", "content": [...]}}`` and other entry
  types; a tree through ``parentId``, whose active path ends at ``leafId``;
* ``openai``: OpenAI Responses / Agents SDK items: ``{"role", "content"}`` and
  ``{"type": "message"}`` with ``input_text`` / ``output_text`` / ``input_image``
  parts, ``function_call`` (``arguments`` a JSON string), ``function_call_output``,
  ``reasoning``, ``computer_call`` and its ``computer_call_output`` screenshot, and
  the other ``*_call`` / ``*_call_output`` items;
* ``chat``: chat-completions messages ``{"role": "system" | "user" | "assistant" |
  "tool", "content": str or parts, "tool_calls": [{"id", "type": "function",
  "function": {"name", "arguments"}}], "tool_call_id"}``;
* ``langchain``: LangChain messages as ``messages_to_dict`` writes them (``{"type":
  "human" | "ai" | "tool" | "system", "data": {"content", "tool_calls",
  "tool_call_id", ...}}``), as a message's own dict (``model_dump()``: the same
  fields with ``type`` among them) or as ``dumpd`` writes them (``{"lc": 1, "type":
  "constructor", "id": [..., "AIMessage"], "kwargs": {...}}``);
* ``generic``: anything else; each item is shown by its label and its fields.

Pure functions over loaded values (no storage, no I/O).  Nothing here raises on
unexpected shapes: what a dialect does not know is shown generically.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidValueError
from .values import same

#: What ``--format`` accepts: a dialect, or ``auto`` (detect it).
FORMATS = ("auto", "pi", "openai", "chat", "langchain", "generic")

#: Names a conversation list is commonly given, best first (a tie-breaker only).
_LIST_NAMES = ("entries", "messages", "items", "history", "conversation", "input", "events", "turns", "steps")
#: How deep :func:`locate` looks into nested dicts for the list.
_MAX_DEPTH = 4


def words(text: str, limit: int = 60) -> str:
    """The start of ``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


# ----------------------------------------------------------------------------- the model


@dataclass
class Message:
    """One item of a conversation, as every dialect is shown.

    ``index`` is its position in the conversation list; ``id`` its id (``None``
    without one); ``parent_id`` its parent in a tree of entries (pi only);
    ``role`` the speaker as the dialect names it (``"toolResult"``, ``"human"``,
    ``"ai"``, ...; ``None`` for an item without one, such as a ``function_call``);
    ``speaker`` one of ``user``, ``assistant``, ``system``, ``tool`` and ``other``;
    ``kind`` a short label of the item (``"message/user"``, ``"function_call"``,
    ``"ai"``); ``result_of`` the call id a tool result answers; ``error`` whether it
    is marked as an error; ``note`` a stop reason or status worth showing (pi's
    ``stopReason`` other than ``stop`` and ``toolUse``, an OpenAI item's ``status``
    ``incomplete``).

    ``parts`` are dicts with a ``kind``:

    * ``"text"``, ``"thinking"``, ``"error"``: ``text``;
    * ``"tool_call"``: ``tool``, ``tool_call_id``, ``arguments`` (a JSON string of
      arguments parsed; one that does not parse, as it is);
    * ``"tool_result"``: ``text``, ``tool``, ``tool_call_id``, ``is_error``;
    * ``"image"``: ``mime_type``, ``bytes`` (decoded size), ``url`` (an image that is
      not inline: its address), and internally ``source`` (the inline data: base64
      text, a ``data:`` URL or bytes); in a tool result also ``tool`` and
      ``tool_call_id``;
    * ``"attachment"``: a file or audio part: ``type``, ``name``, ``bytes``;
    * ``"entry"``: an entry that is not a message (pi): ``type``, ``text``;
    * ``"item"``: anything else, shown generically: ``type`` (its label), ``text``
      (the text found in it, or ``None``) and ``value`` (the item whole).
    """

    index: int
    id: str | None
    role: str | None
    speaker: str
    kind: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    parent_id: str | None = None
    result_of: str | None = None
    error: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Conversation:
    """Where a session's conversation is: ``path`` (the keys from the session down
    to the list, e.g. ``("state", "messages")``; ``None`` when the session has no
    list, and then ``items`` is the session itself as one item), its ``dialect`` and
    its ``items`` (the list itself, not a copy)."""

    dialect: str
    path: tuple[str, ...] | None
    items: list[Any]

    @property
    def where(self) -> str:
        """The path as text: ``entries``, ``state.messages``, ``(the session)``."""
        return ".".join(self.path) if self.path is not None else "(the session)"

    @property
    def tree(self) -> bool:
        """Whether the items form a tree through ``parentId`` (pi)."""
        return self.dialect == "pi"


# ----------------------------------------------------------------------------- detection

_LC_TYPES = {"human", "ai", "tool", "system", "chat", "function", "developer", "remove"}
_LC_CLASSES = {"HumanMessage": "human", "AIMessage": "ai", "ToolMessage": "tool", "SystemMessage": "system",
               "ChatMessage": "chat", "FunctionMessage": "function", "RemoveMessage": "remove"}  # fmt: skip
_CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_OPENAI_ROLES = {"system", "developer", "user", "assistant"}
_OPENAI_TYPES = {
    "function_call", "function_call_output", "reasoning", "computer_call", "computer_call_output",
    "file_search_call", "web_search_call", "image_generation_call", "code_interpreter_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output",
    "mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "custom_tool_call",
    "custom_tool_call_output", "item_reference", "tool_search_call", "tool_search_output",
}  # fmt: skip
_OPENAI_PARTS = {"input_text", "output_text", "input_image", "input_file", "input_audio", "refusal", "summary_text"}
#: pi entry types other than "message" (an entry of another type is pi's too when it has a parentId)
_PI_TYPES = {"compaction", "branch_summary", "model_change", "thinking_level_change", "custom", "custom_message",
             "label", "session_info"}  # fmt: skip


def _lc_unwrap(item: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(type, fields)`` of a LangChain message in any of its dict forms, else ``None``."""
    kind, data = item.get("type"), item.get("data")
    if type(kind) is str and type(data) is dict and "content" in data:
        return _lc_type(kind), data  # messages_to_dict
    if item.get("lc") == 1 and kind == "constructor" and type(item.get("kwargs")) is dict:
        ident = item.get("id")
        name = ident[-1] if type(ident) is list and ident and type(ident[-1]) is str else ""
        name = name.removesuffix("Chunk")
        if name in _LC_CLASSES:
            return _LC_CLASSES[name], item["kwargs"]  # dumpd
        return None
    if type(kind) is str and "content" in item and "role" not in item and _lc_type(kind) in _LC_TYPES:
        return _lc_type(kind), item  # a message's own fields (model_dump)
    return None


def _lc_type(kind: str) -> str:
    """``AIMessageChunk`` -> ``ai``: a chunk's type as its message's."""
    if kind.endswith("MessageChunk"):
        return _LC_CLASSES.get(kind.removesuffix("Chunk"), kind)
    return kind


def _parts_typed(content: Any, types: set[str]) -> bool:
    return type(content) is list and any(type(p) is dict and p.get("type") in types for p in content)


def _score(item: Any) -> dict[str, int]:
    """How well ``item`` fits each dialect: 2 (only that dialect has it), 1 (it fits,
    as it fits others) or missing."""
    if type(item) is not dict:
        return {}
    out: dict[str, int] = {}
    kind, role = item.get("type"), item.get("role")
    message = item.get("message")
    if ("parentId" in item and type(kind) is str) or (
        kind == "message" and type(message) is dict and "role" in message
    ):
        out["pi"] = 2
    elif kind in _PI_TYPES and "id" in item:
        out["pi"] = 1
    if _lc_unwrap(item) is not None:
        out["langchain"] = 2
    if kind in _OPENAI_TYPES or (kind == "message" and type(role) is str and "message" not in item):
        out["openai"] = 2
    elif kind is None and role in _OPENAI_ROLES and "content" in item:
        content = item["content"]
        if _parts_typed(content, _OPENAI_PARTS):
            out["openai"] = 2
        elif type(content) is str and not item.keys() - {"role", "content", "id", "status"}:
            out["openai"] = 1
    if kind is None and role in _CHAT_ROLES and "data" not in item:
        content = item.get("content")
        calls = "tool_calls" in item or "tool_call_id" in item or "function_call" in item
        if calls or role in ("tool", "function") or _parts_typed(content, {"text", "image_url", "input_audio", "file"}):
            out["chat"] = 2
        elif type(content) is str or content is None:
            out["chat"] = 1
    return out


def detect(items: list[Any], path: tuple[str, ...] | None = None) -> tuple[str, int]:
    """The dialect of a list of items and how many items fit it (``("generic",
    0)`` when none fits any; a list where fewer than half the items fit is
    ``generic`` too).  ``path`` (where the list is) breaks a tie between OpenAI
    items and chat messages, which look alike when they only hold text."""
    fit: dict[str, int] = {}
    only: dict[str, int] = {}
    dicts = 0
    for item in items:
        if type(item) is dict:
            dicts += 1
        for dialect, how in _score(item).items():
            fit[dialect] = fit.get(dialect, 0) + 1
            if how == 2:
                only[dialect] = only.get(dialect, 0) + 1
    if not fit:
        return "generic", 0
    name = path[-1] if path else None
    prefer = ("pi", "langchain", "chat", "openai") if name == "messages" else ("pi", "langchain", "openai", "chat")
    best = max(fit, key=lambda d: (fit[d], only.get(d, 0), -prefer.index(d)))
    if 2 * fit[best] < max(dicts, 1):
        return "generic", 0
    return best, fit[best]


def _lists(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], list[Any]]]:
    """Every list of dicts in the dicts of ``value`` (not inside lists), to a depth."""
    if type(value) is not dict or len(path) >= _MAX_DEPTH:
        return
    for key, v in value.items():
        if type(key) is not str:
            continue
        if type(v) is list:
            if any(type(x) is dict for x in v):
                yield (*path, key), v
        elif type(v) is dict:
            yield from _lists(v, (*path, key))


def locate(session: Any, fmt: str = "auto") -> Conversation:
    """The conversation in ``session`` and its dialect (``fmt`` forces the dialect:
    one of :data:`FORMATS`).

    Every list of dicts in the session's dicts is a candidate (``entries``,
    ``messages``, ``state.messages``, ``channel_values.messages``, ...); the one with
    the most items of a known dialect wins, then a usual name (``entries``,
    ``messages``, ``items``, ...), then the longest.  With a forced dialect, the list
    with the most items of that dialect (else the same choice).  A session with no
    list at all is one ``generic`` item (none when it is empty)."""
    if fmt not in FORMATS:
        raise InvalidValueError(f"unknown format {fmt!r:.40}: one of {', '.join(FORMATS)}")
    if type(session) is not dict:
        return Conversation("generic", None, [session] if session is not None else [])
    best: tuple[tuple[int, int, int, int], str, tuple[str, ...], list[Any]] | None = None
    for path, items in _lists(session):
        dialect, fits = detect(items, path)
        if fmt not in ("auto", "generic"):
            fits = sum(1 for item in items if fmt in _score(item))
            dialect = fmt
        elif fmt == "generic":
            fits, dialect = 0, "generic"
        named = len(_LIST_NAMES) - _LIST_NAMES.index(path[-1]) if path[-1] in _LIST_NAMES else 0
        rank = (fits, named, -len(path), len(items))
        if best is None or rank > best[0]:
            best = (rank, dialect, path, items)
    if best is None:
        return Conversation("generic", None, [session] if session else [])
    _, dialect, path, items = best
    return Conversation(dialect, path, items)


def at_path(session: Any, path: tuple[str, ...] | None) -> list[Any] | None:
    """The list at ``path`` in ``session``, or ``None`` when there is none."""
    if path is None:
        return None
    value = session
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value if type(value) is list else None


def same_prefix(old: list[Any], new: list[Any]) -> int:
    """How many leading items ``old`` and ``new`` have in common, compared strictly
    (:func:`eventlog.values.same`); items that are the same objects (a list folded in
    place) are not compared at all."""
    n = min(len(old), len(new))
    k = 0
    while k < n and (old[k] is new[k] or same(old[k], new[k])):
        k += 1
    return k


def without(session: dict[str, Any], path: tuple[str, ...] | None, marker: Any) -> dict[str, Any]:
    """``session`` with the list at ``path`` replaced by ``marker`` (copies of the
    dicts on the way only; nothing else is copied)."""
    if not path or at_path(session, path) is None:
        return session
    key, rest = path[0], path[1:]
    out = dict(session)
    out[key] = without(session[key], rest, marker) if rest else marker
    return out


# ----------------------------------------------------------------------------- parts


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_size(text: str) -> int:
    """Decoded bytes of base64 text (the text's length when it is not base64):
    ``len(base64.b64decode(text, validate=True))``, without decoding where the
    text is canonical (whole quads of the alphabet, padding only at the end: what
    screenshots are), which is several times faster on megabytes of image."""
    if text.isascii() and len(text) % 4 == 0:
        rest = text.encode("ascii").translate(None, _B64_ALPHABET)
        pad = len(rest)
        # (padding only at the end: what is left is all "=", and it is the text's end)
        if pad <= 2 and rest == b"=" * pad and text.endswith("=" * pad) and (pad == 0 or text[-pad - 1] != "="):
            return (len(text) - pad) * 3 // 4
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return len(text)


def data_size(data: Any) -> int:
    """Decoded bytes of inline image data: base64 text, a ``data:`` URL, or bytes."""
    if type(data) is bytes:
        return len(data)
    if type(data) is str:
        if data.startswith("data:") and "," in data:
            head, body = data.split(",", 1)
            return _b64_size(body) if head.endswith(";base64") else len(body.encode("utf-8", "surrogatepass"))
        return _b64_size(data)
    return 0


def _data_url_mime(url: str) -> str | None:
    head = url[5 : url.find(",")] if url.startswith("data:") and "," in url else ""
    mime = head.split(";", 1)[0]
    return mime or None


def image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    """An ``image`` part for an image block of any dialect (``None`` when the block
    holds no image): pi ``{data, mimeType}``, LangChain ``{base64 | data | url,
    mime_type}``, Anthropic ``{source: {data, media_type}}``, OpenAI ``{image_url:
    str}``, chat ``{image_url: {url}}``, or a ``file_id``."""
    mime = _str(block.get("mimeType")) or _str(block.get("mime_type")) or _str(block.get("media_type"))
    source = block.get("source")
    if type(source) is dict:  # Anthropic, in LangChain content
        mime = mime or _str(source.get("media_type"))
        data: Any = source.get("data")
        url = _str(source.get("url"))
    else:
        data = block.get("data") if "data" in block else block.get("base64")
        if data is None and block.get("type") == "image_generation_call":
            data = block.get("result")
            mime = mime or f"image/{block.get('output_format') or 'png'}"
        image_url = block.get("image_url")
        if type(image_url) is dict:
            image_url = image_url.get("url")
        url = _str(image_url) or _str(block.get("url"))
    if type(data) in (str, bytes) and data:
        if type(data) is str and data.startswith("data:"):
            mime = mime or _data_url_mime(data)
        return {"kind": "image", "mime_type": mime, "bytes": data_size(data), "source": data}
    if url:
        if url.startswith("data:"):
            return {"kind": "image", "mime_type": mime or _data_url_mime(url), "bytes": data_size(url), "source": url}
        return {"kind": "image", "mime_type": mime, "bytes": 0, "url": url}
    file_id = _str(block.get("file_id"))
    if file_id:
        return {"kind": "image", "mime_type": mime, "bytes": 0, "url": f"file:{file_id}"}
    return None


def parse_arguments(args: Any) -> Any:
    """A tool call's arguments as data: a JSON string parsed (as it is when it does
    not parse as JSON), anything else as it is."""
    if type(args) is str:
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


_EXCEPTION = re.compile(r"\A\s*(Traceback \(most recent call last\)|[A-Za-z_.]*(Error|Exception)\b[:(]|error:|"
                        r"An error occurred while running the tool)")  # fmt: skip


def looks_like_error(text: str) -> bool:
    """Whether a tool's output reads as an error: a traceback, ``ValueError: ...``,
    ``Error: ...``, or the OpenAI Agents SDK's message for a tool that raised."""
    return bool(_EXCEPTION.match(text[:200]))


def value_text(value: Any) -> str:
    """A value as a person reads it: a string as it is, anything else as JSON (bytes
    as their length)."""
    if type(value) is str:
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=lambda b: f"<{len(b)} bytes>")
    except (TypeError, ValueError):  # pragma: no cover - nothing storable gets here
        return repr(value)


def _label(item: Any) -> str:
    if type(item) is not dict:
        return type(item).__name__
    for key in ("type", "role", "kind", "event", "name"):
        if type(item.get(key)) is str and item[key]:
            return str(item[key])
    return "item"


_TEXT_KEYS = ("content", "text", "message", "output", "result", "summary", "input", "prompt", "response", "value",
              "body", "query", "description")  # fmt: skip


def _item_text(item: Any) -> str | None:
    """The text a person would look for in an item of unknown shape."""
    if type(item) is str:
        return item
    if type(item) is not dict:
        return None
    for key in _TEXT_KEYS:
        v = item.get(key)
        if type(v) is str and v and not v.startswith("data:"):
            return v
        if type(v) is list:
            texts = [p["text"] for p in v if type(p) is dict and type(p.get("text")) is str]
            if texts:
                return "\n".join(texts)
        if type(v) is dict and key in ("message", "data"):
            inner = _item_text(v)
            if inner:
                return inner
    return None


def _images_in(value: Any, limit: int = 16) -> list[dict[str, Any]]:
    """Images anywhere in a value of unknown shape: ``data:image/`` URLs and dicts
    with base64 data and a mime type (at most ``limit``)."""
    out: list[dict[str, Any]] = []
    stack = [value]
    while stack and len(out) < limit:
        v = stack.pop()
        if type(v) is str:
            if v.startswith("data:image/"):
                out.append({"kind": "image", "mime_type": _data_url_mime(v), "bytes": data_size(v), "source": v})
        elif type(v) is dict:
            mime = v.get("mimeType") or v.get("mime_type") or v.get("media_type")
            if type(mime) is str and mime.startswith("image/") and type(v.get("data") or v.get("base64")) is str:
                part = image_part(v)
                if part is not None:
                    out.append(part)
                    continue
            stack.extend(reversed(list(v.values())))
        elif type(v) is list:
            stack.extend(reversed(v))
    return out


def generic_parts(item: Any) -> list[dict[str, Any]]:
    """An item of unknown shape: its label, its text (if any) and the item itself,
    then the images found in it."""
    return [{"kind": "item", "type": _label(item), "text": _item_text(item), "value": item}, *_images_in(item)]


def _content(content: Any, *, calls: bool = True) -> list[dict[str, Any]]:
    """The parts of a message's content in any dialect: a str, or a list of blocks
    (text, thinking, images, files, tool calls); tool-call blocks are left out
    unless ``calls``.  A block of no known type is an ``item`` part."""
    if type(content) is str:
        return [{"kind": "text", "text": content}] if content else []
    if type(content) is dict:
        content = [content]
    if type(content) is not list:
        return [] if content is None else generic_parts(content)
    out: list[dict[str, Any]] = []
    for block in content:
        if type(block) is str:
            out.append({"kind": "text", "text": block})
            continue
        if type(block) is not dict:
            out.extend(generic_parts(block))
            continue
        kind = block.get("type")
        if kind in ("text", "input_text", "output_text", "summary_text") and type(block.get("text")) is str:
            out.append({"kind": "text", "text": block["text"]})
        elif kind == "refusal":
            out.append({"kind": "text", "text": f"(refusal) {value_text(block.get('refusal', ''))}"})
        elif kind in ("thinking", "reasoning", "reasoning_text", "redacted_thinking"):
            text = block.get("thinking", block.get("reasoning", block.get("text")))
            out.append({"kind": "thinking", "text": text if type(text) is str else "(redacted)"})
        elif kind in ("image", "input_image", "image_url", "computer_screenshot", "image_generation_call"):
            part = image_part(block)
            out.extend([part] if part is not None else generic_parts(block))
        elif kind in ("input_file", "file", "input_audio", "audio"):
            out.append(_attachment(block))
        elif kind in ("toolCall", "tool_use", "tool_call", "function_call", "server_tool_use"):
            if calls:
                args = block.get("arguments", block.get("input", block.get("args")))
                ident = block.get("id", block.get("call_id"))
                out.append({"kind": "tool_call", "tool": _str(block.get("name")), "tool_call_id": _str(ident),
                            "arguments": parse_arguments(args)})  # fmt: skip
        elif type(block.get("text")) is str:
            out.append({"kind": "text", "text": block["text"]})
        else:
            out.extend(generic_parts(block))
    return out


def _attachment(block: dict[str, Any]) -> dict[str, Any]:
    inner = block.get("file") if type(block.get("file")) is dict else block.get("input_audio")
    src = inner if type(inner) is dict else block
    name = _str(src.get("filename")) or _str(src.get("file_id")) or _str(src.get("file_url")) or _str(src.get("format"))
    data = src.get("file_data", src.get("data", src.get("base64")))
    return {"kind": "attachment", "type": _str(block.get("type")), "name": name, "bytes": data_size(data)}


def _as_result(parts: list[dict[str, Any]], tool: str | None, call_id: str | None, is_error: bool) -> None:
    """Make ``parts`` the parts of a tool's result, in place."""
    for p in parts:
        if p["kind"] == "text":
            p["kind"] = "tool_result"
        if p["kind"] in ("tool_result", "image"):
            if p["kind"] == "tool_result":
                p["is_error"] = is_error
            p["tool"] = tool
            p["tool_call_id"] = call_id


def _result_error(parts: list[dict[str, Any]]) -> bool:
    return any(p["kind"] == "text" and looks_like_error(p["text"]) for p in parts)


_SPEAKERS = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "model": "assistant",
             "system": "system", "developer": "system", "tool": "tool", "toolResult": "tool",
             "function": "tool"}  # fmt: skip


# ----------------------------------------------------------------------------- one item, by dialect


def _pi(item: dict[str, Any], index: int) -> Message:
    ident, parent = _str(item.get("id")), _str(item.get("parentId"))
    m = item.get("message")
    if type(m) is not dict:
        text = next((item[k] for k in ("summary", "text", "content", "customType", "label")
                     if type(item.get(k)) is str), None)  # fmt: skip
        kind = str(item.get("type", "entry"))
        return Message(index, ident, None, "other", kind, [{"kind": "entry", "type": item.get("type"), "text": text}],
                       parent_id=parent)  # fmt: skip
    role = _str(m.get("role"))
    msg = Message(index, ident, role, _SPEAKERS.get(role or "", "other"), f"message/{role}" if role else "message",
                  parent_id=parent)  # fmt: skip
    if role == "toolResult":
        call, tool, is_error = _str(m.get("toolCallId")), _str(m.get("toolName")), bool(m.get("isError"))
        msg.parts = _content(m.get("content"))
        _as_result(msg.parts, tool, call, is_error)
        msg.result_of, msg.error = call, is_error
    else:
        msg.parts = _content(m.get("content"))
    if m.get("errorMessage"):
        msg.parts.append({"kind": "error", "text": str(m["errorMessage"])})
        msg.error = True
    elif m.get("stopReason") in ("error", "aborted"):
        msg.error = True
    if m.get("stopReason") not in (None, "stop", "toolUse"):
        msg.note = str(m["stopReason"])
    return msg


def _openai(item: dict[str, Any], index: int) -> Message:
    kind, role, ident = item.get("type"), _str(item.get("role")), _str(item.get("id"))
    if kind in (None, "message") and role is not None:
        parts = _content(item.get("content"))
        msg = Message(index, ident, role, _SPEAKERS.get(role, "other"), f"message/{role}", parts)
        msg.error = item.get("status") == "failed"
        if item.get("status") in ("incomplete", "failed"):
            msg.note = str(item["status"])
        return msg
    label = str(kind)
    call_id = _str(item.get("call_id"))
    status_error = item.get("status") in ("failed", "error")
    if kind == "reasoning":
        texts = [p["text"] for key in ("summary", "content") for p in item.get(key) or ()
                 if type(p) is dict and type(p.get("text")) is str]  # fmt: skip
        text = "\n".join(texts) if texts else ("(encrypted)" if item.get("encrypted_content") else "(no summary)")
        return Message(index, ident, None, "assistant", label, [{"kind": "thinking", "text": text}])
    if (type(kind) is str and kind.endswith("_call_output")) or kind == "tool_search_output":
        output = item.get("output")
        parts = _output_parts(output)
        is_error = status_error or _result_error(parts)
        _as_result(parts, None, call_id, is_error)
        return Message(index, ident, None, "tool", label, parts, result_of=call_id, error=is_error)
    if type(kind) is str and kind.endswith("_call"):
        tool = _str(item.get("name")) or kind.removesuffix("_call")
        if "arguments" in item:
            args = parse_arguments(item["arguments"])
        elif "input" in item:
            args = item["input"]
        else:
            skip = {"type", "id", "call_id", "status", "name", "pending_safety_checks", "result", "output", "outputs",
                    "error", "server_label", "output_format", "revised_prompt", "results"}  # fmt: skip
            rest = {k: v for k, v in item.items() if k not in skip}
            args = rest.get("action", rest) if len(rest) == 1 else rest
        if kind == "mcp_call" and type(item.get("server_label")) is str:
            tool = f"{item['server_label']}.{tool}"
        call: dict[str, Any] = {"kind": "tool_call", "tool": tool, "tool_call_id": call_id or ident, "arguments": args}
        # calls that carry their own result
        results: list[dict[str, Any]] = []
        if item.get("error"):
            results = [{"kind": "text", "text": value_text(item["error"])}]
            status_error = True
        elif kind == "image_generation_call":
            results = [p for p in [image_part(item)] if p is not None]
        elif item.get("output") is not None:
            results = _output_parts(item["output"])
        elif item.get("outputs") or item.get("results"):
            results = _output_parts(item.get("outputs") or item.get("results"))
        _as_result(results, tool, call_id or ident, status_error)
        return Message(index, ident, None, "assistant", label, [call, *results], error=status_error)
    if kind in ("compaction", "item_reference"):
        return Message(index, ident, None, "other", label, [{"kind": "entry", "type": kind, "text": ident}])
    return Message(index, ident, role, _SPEAKERS.get(role or "", "other"), _label(item), generic_parts(item))


def _output_parts(output: Any) -> list[dict[str, Any]]:
    """A tool's output (OpenAI): text, a list of parts, a screenshot, or any value."""
    if type(output) is str:
        return [{"kind": "text", "text": output}]
    if type(output) is dict and output.get("type") in ("computer_screenshot", "input_image", "image", "logs"):
        if output.get("type") == "logs":
            return [{"kind": "text", "text": value_text(output.get("logs"))}]
        part = image_part(output)
        return [part] if part is not None else [{"kind": "text", "text": value_text(output)}]
    if type(output) is list and all(type(p) is dict and "type" in p for p in output):
        parts = _content(output)
        if all(p["kind"] in ("text", "image", "attachment") for p in parts):
            return parts
    if output is None:
        return []
    return [{"kind": "text", "text": value_text(output)}]


def _chat(item: dict[str, Any], index: int) -> Message:
    role = _str(item.get("role"))
    if role is None:
        return _generic(item, index)
    speaker = _SPEAKERS.get(role or "", "other")
    msg = Message(index, _str(item.get("id")), role, speaker, f"message/{role}" if role else _label(item))
    for key in ("reasoning_content", "reasoning"):
        if type(item.get(key)) is str and item[key]:
            msg.parts.append({"kind": "thinking", "text": item[key]})
    msg.parts += _content(item.get("content"))
    if type(item.get("refusal")) is str and item["refusal"]:
        msg.parts.append({"kind": "text", "text": f"(refusal) {item['refusal']}"})
    calls = item.get("tool_calls")
    if type(calls) is list:
        msg.parts += [_chat_call(c) for c in calls]
    if type(item.get("function_call")) is dict:
        msg.parts.append(_chat_call({"function": item["function_call"]}))
    if role in ("tool", "function"):
        call_id = _str(item.get("tool_call_id"))
        msg.error = _result_error(msg.parts)
        _as_result(msg.parts, _str(item.get("name")), call_id, msg.error)
        msg.result_of = call_id
    return msg


def _chat_call(call: Any) -> dict[str, Any]:
    fn = call.get("function") if type(call) is dict else None
    if type(fn) is not dict:
        return {"kind": "tool_call", "tool": None, "tool_call_id": None, "arguments": call}
    return {"kind": "tool_call", "tool": _str(fn.get("name")), "tool_call_id": _str(call.get("id")),
            "arguments": parse_arguments(fn.get("arguments"))}  # fmt: skip


def _langchain(item: dict[str, Any], index: int) -> Message:
    unwrapped = _lc_unwrap(item)
    if unwrapped is None:
        return Message(index, _str(item.get("id")), None, "other", _label(item), generic_parts(item))
    kind, d = unwrapped
    role = _str(d.get("role")) if kind == "chat" else kind
    msg = Message(index, _str(d.get("id")), kind, _SPEAKERS.get(role or "", "other"), kind)
    if kind == "remove":
        msg.parts = [{"kind": "entry", "type": "remove", "text": msg.id}]
        return msg
    calls = d.get("tool_calls")
    has_calls = type(calls) is list and bool(calls)
    extra = d.get("additional_kwargs")
    extra = extra if type(extra) is dict else {}
    if type(extra.get("reasoning_content")) is str and extra["reasoning_content"]:
        msg.parts.append({"kind": "thinking", "text": extra["reasoning_content"]})
    msg.parts += _content(d.get("content"), calls=not has_calls)
    if has_calls:
        assert type(calls) is list
        for c in calls:
            if type(c) is dict:
                msg.parts.append({"kind": "tool_call", "tool": _str(c.get("name")), "tool_call_id": _str(c.get("id")),
                                  "arguments": c.get("args")})  # fmt: skip
    elif type(extra.get("tool_calls")) is list:
        msg.parts += [_chat_call(c) for c in extra["tool_calls"]]
    for bad in d.get("invalid_tool_calls") or ():
        if type(bad) is dict:
            msg.parts.append({"kind": "tool_call", "tool": _str(bad.get("name")), "tool_call_id": _str(bad.get("id")),
                              "arguments": parse_arguments(bad.get("args"))})  # fmt: skip
            msg.parts.append({"kind": "error", "text": f"invalid tool call: {value_text(bad.get('error'))}"})
            msg.error = True
    if kind in ("tool", "function"):
        call_id = _str(d.get("tool_call_id"))
        msg.error = d.get("status") == "error" or _result_error(msg.parts)
        _as_result(msg.parts, _str(d.get("name")), call_id, msg.error)
        msg.result_of = call_id
    return msg


def _generic(item: Any, index: int) -> Message:
    ident = _str(item.get("id")) if type(item) is dict else None
    role = _str(item.get("role")) if type(item) is dict else None
    return Message(index, ident, role, _SPEAKERS.get(role or "", "other"), _label(item), generic_parts(item))


_BY_DIALECT = {"pi": _pi, "openai": _openai, "chat": _chat, "langchain": _langchain}


def message(item: Any, dialect: str, index: int = 0) -> Message:
    """One item as a :class:`Message`, read in ``dialect``; an item that is not a
    dict, or that the dialect does not know, is shown generically."""
    reader = _BY_DIALECT.get(dialect)
    if reader is None or type(item) is not dict:
        return _generic(item, index)
    msg = reader(item, index)
    if not msg.parts:
        # Nothing the dialect knows (a message without content): its other
        # fields, so that nothing it holds is hidden behind "(empty)".
        rest = {k: v for k, v in item.items() if k not in ("id", "role", "type", "content")}
        if rest:
            msg.parts = [{"kind": "item", "type": msg.kind, "text": _item_text(rest), "value": rest},
                         *_images_in(rest)]  # fmt: skip
    return msg


def item_id(item: Any, dialect: str) -> str | None:
    """An item's id in ``dialect`` (a LangChain message's is in its fields), or ``None``."""
    if type(item) is not dict:
        return None
    if dialect == "langchain":
        unwrapped = _lc_unwrap(item)
        if unwrapped is not None:
            return _str(unwrapped[1].get("id"))
    return _str(item.get("id"))


def messages(conv: Conversation, indexes: list[int] | None = None) -> list[Message]:
    """The items of ``conv`` as messages (those at ``indexes`` only, when given),
    tool results given the name of the tool whose call they answer."""
    chosen = range(len(conv.items)) if indexes is None else indexes
    out = [message(conv.items[i], conv.dialect, i) for i in chosen]
    names = {p["tool_call_id"]: p["tool"] for m in out for p in m.parts
             if p["kind"] == "tool_call" and p["tool_call_id"] is not None}  # fmt: skip
    for m in out:
        if m.result_of is not None and m.result_of in names:
            for p in m.parts:
                if p.get("tool_call_id") == m.result_of and p.get("tool") is None:
                    p["tool"] = names[m.result_of]
    return out


def active_indexes(conv: Conversation, session: Any) -> list[int]:
    """The positions of the items on the conversation as it stands: for pi, the
    walk from ``leafId`` to the root (all entries, in order, without a usable
    ``leafId``); for the other dialects, every item."""
    items = conv.items
    if not conv.tree:
        return list(range(len(items)))
    dicts = [i for i, e in enumerate(items) if type(e) is dict]
    by_id = {items[i].get("id"): i for i in dicts if "id" in items[i]}
    leaf = session.get("leafId") if type(session) is dict else None
    if leaf not in by_id:
        return dicts
    path: list[int] = []
    seen: set[Any] = set()
    node: int | None = by_id[leaf]
    while node is not None and items[node].get("id") not in seen:
        seen.add(items[node].get("id"))
        path.append(node)
        node = by_id.get(items[node].get("parentId"))
    return path[::-1]


def pairs(msgs: list[Message]) -> dict[int, int]:
    """Tool results matched to their calls: position in ``msgs`` of a result ->
    position of the message that made the call (the first result after a call
    with its id, each used once)."""
    waiting: dict[str, list[int]] = {}
    out: dict[int, int] = {}
    for i, m in enumerate(msgs):
        if m.result_of is not None and waiting.get(m.result_of):
            out[i] = waiting[m.result_of].pop(0)
        for p in m.parts:
            if p["kind"] == "tool_call" and p["tool_call_id"] is not None:
                waiting.setdefault(p["tool_call_id"], []).append(i)
    return out


def public(part: dict[str, Any]) -> dict[str, Any]:
    """A part as data: without the inline image data (``source``)."""
    return {k: v for k, v in part.items() if k != "source"} if "source" in part else part
