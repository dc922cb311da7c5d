"""Searching the text of sessions (``eventlog grep``): messages, thinking, tool-call
names and arguments, tool results and errors, read in each session's message
dialect; never image or attachment data.

:func:`grep` yields a :class:`Hit` per matching line of a part, naming the
session, the event that wrote the item (seq), the item's position and id, who
spoke and a line of context around the match.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import dialects
from .dialects import Message
from .errors import CorruptionError, NotFoundError
from .progress import Progress
from .runs import item_seqs

if TYPE_CHECKING:
    from .store import Store

#: Characters of context shown around a match, each side.
CONTEXT = 60


@dataclass(frozen=True)
class Hit:
    """One matching line: ``session``; ``seq`` of the event that wrote the item
    (``None`` when older than the kept history); ``index`` of the item in the
    conversation list and its ``entry`` id; ``speaker``, ``role``; the part's
    ``kind`` (``text``, ``thinking``, ``tool_call``, ``tool_result``, ``error``,
    ``entry``, ``item``) and ``tool`` (for calls and results); ``line`` (the
    matching line, shortened to the match with :data:`CONTEXT` characters each
    side) and ``match`` (the matched text)."""

    session: str
    seq: int | None
    index: int
    entry: str | None
    speaker: str
    role: str | None
    kind: str
    tool: str | None
    line: str
    match: str

    def data(self) -> dict[str, Any]:
        """As ``eventlog grep --json`` writes it."""
        return asdict(self)


def part_texts(part: dict[str, Any]) -> list[str]:
    """The searchable text of a message part (never inline image data): its text;
    a tool call as ``tool({arguments})``; every string inside an item of no known
    shape."""
    kind = part["kind"]
    if kind == "tool_call":
        args = part.get("arguments")
        shown = args if type(args) is str else json.dumps(args, ensure_ascii=False, default=repr)
        return [f"{part.get('tool') or '?'}({shown})"]
    if kind in ("image", "attachment"):
        return [part["name"]] if type(part.get("name")) is str else []
    if kind == "item":
        return _strings(part.get("value"))
    text = part.get("text")
    return [text] if type(text) is str else []


def _strings(value: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every string inside ``value`` (not dict keys; not the values of ``skip``'s keys
    at the top), in order."""
    out: list[str] = []
    stack = [value]
    top = True
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            out.append(v)
        elif t is dict:
            stack.extend(reversed([x for k, x in v.items() if not (top and k in skip)]))
        elif t is list:
            stack.extend(reversed(v))
        top = False
    return out


#: Fields of a pi entry that are not its text.
_ENTRY_FIELDS = frozenset({"type", "id", "parentId", "timestamp"})


def _line(text: str, m: re.Match[str]) -> str:
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    end = len(text) if end < 0 else end
    a, b = max(start, m.start() - CONTEXT), min(end, m.end() + CONTEXT)
    return ("…" if a > start else "") + text[a:b].replace("\t", " ") + ("…" if b < end else "")


class _Texts:
    """The texts of one session's parts, with the large base64 values that
    :meth:`Store._text_session` left unread put back where they are searched
    (never in images and attachments, nor in items of no known shape)."""

    def __init__(self, store: Store, name: str, item_of: Any, refs: list[Any], nonce: str) -> None:
        self.store, self.name, self.item_of, self.refs = store, name, item_of, refs
        self.pattern = re.compile(re.escape(_MARK_OPEN + nonce + ":") + r"(\d+)" + re.escape(_MARK_CLOSE))
        self.read: dict[int, str] = {}

    def of(self, m: Message, part: dict[str, Any]) -> list[str]:
        if part["kind"] == "entry":
            item = self.item_of(m.index)
            texts = _strings(item, _ENTRY_FIELDS) if type(item) is dict else part_texts(part)
        else:
            texts = part_texts(part)
        if not self.refs:
            return texts
        keep = part["kind"] != "item"
        return [self.pattern.sub(self._value if keep else "", t) if _MARK_OPEN in t else t for t in texts]

    def _value(self, found: re.Match[str]) -> str:
        i = int(found.group(1))
        if i not in self.read:
            ref = self.refs[i] if i < len(self.refs) else None
            try:
                value = self.store._read_large(self.name, ref) if ref is not None else ""
            except CorruptionError:
                value = ""  # (freed by a compaction since: nothing to search)
            self.read[i] = value[len(ref.prefix) :] if type(value) is str and ref is not None else ""
        return self.read[i]


_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # (private-use characters, kept by json.dumps)


def _hits_in(
    texts: list[str], pattern: re.Pattern[str]
) -> Iterator[tuple[str, re.Match[str]]]:
    for text in texts:
        last_line: int | None = None
        for found in pattern.finditer(text):
            if found.start() == found.end() == len(text) and text.endswith("\n"):
                continue  # (an empty match after the last line break: no line there)
            line_start = text.rfind("\n", 0, found.start())
            if line_start == last_line:  # one hit per line
                continue
            last_line = line_start
            yield text, found


def grep(
    store: Store,
    pattern: re.Pattern[str],
    *,
    sessions: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    tools: Sequence[str] | None = None,
    fmt: str = "auto",
    progress: Progress | None = None,
) -> Iterator[Hit]:
    """Every line of every session (or of ``sessions``) that ``pattern`` matches,
    session by session (in :meth:`~eventlog.Store.sessions` order), item by item.
    ``roles`` keeps items whose speaker (``user``, ``assistant``, ``system``,
    ``tool``, ``other``) or role as the dialect names it is among them; ``tools``
    keeps tool calls and results of those tools.  ``progress`` is told
    ``("sessions", done, total)``.  A session deleted while the search runs is
    skipped; one named in ``sessions`` that does not exist raises
    :class:`~eventlog.NotFoundError` before anything is searched."""
    names = list(sessions) if sessions is not None else store.sessions()
    if sessions is not None:
        for name in names:
            store.info(name)  # NotFoundError now, not halfway
    wanted_roles = set(roles) if roles else None
    wanted_tools = set(tools) if tools else None
    for done, name in enumerate(names):
        if progress is not None:
            progress("sessions", done, len(names))
        nonce = secrets.token_hex(8)
        try:
            seq, data, refs = store._text_session(name, _MARK_OPEN + nonce + ":{}" + _MARK_CLOSE)
        except NotFoundError:
            if sessions is not None:
                raise
            continue  # deleted meanwhile
        conv = dialects.locate(data, fmt)
        texts = _Texts(store, name, conv.items.__getitem__, refs, nonce)
        found: list[tuple[Message, dict[str, Any], str, re.Match[str]]] = []
        for m in dialects.messages(conv):
            if wanted_roles is not None and m.speaker not in wanted_roles and m.role not in wanted_roles:
                continue
            for part in m.parts:
                if wanted_tools is not None and part.get("tool") not in wanted_tools:
                    continue
                found.extend((m, part, text, hit) for text, hit in _hits_in(texts.of(m, part), pattern))
        if not found:
            continue
        seqs = _seqs(store, name, conv, seq)
        for m, part, text, hit in found:
            yield Hit(name, seqs[m.index], m.index, m.id, m.speaker, m.role,
                      part["kind"], part.get("tool"), _line(text, hit), hit.group(0))  # fmt: skip
    if progress is not None:
        progress("sessions", len(names), len(names))


def _seqs(store: Store, name: str, conv: dialects.Conversation, seq: int) -> list[int | None]:
    try:
        return item_seqs(store, name, conv, seq)
    except NotFoundError:  # deleted meanwhile
        return [None] * len(conv.items)
