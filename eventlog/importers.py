"""Reading sessions written by other stores, for ``eventlog import``.

Formats (see ``docs/sessions.md``):

* **Session JSON**: a file holding one ``SessionData`` object; its id is the file
  name without ``.json`` (or the ``session_id`` given, for a file read from a pipe).
* **Flue 0.11.0**: an SQLite file with ``flue_sessions(id, data, ...)``, ``data``
  being the whole session as JSON.
* **Flue 0.11.1**: the same table with ``data`` lacking ``entries``, plus
  ``flue_session_entries(session_id, entry_id, position, data)`` (one entry's JSON
  per row) and ``flue_image_chunks(owner_kind, owner_id, owner_part, image_id,
  chunk_index, chunk_count, data)``: an image block's ``data`` reads
  ``__flue_image_chunks__:<image_id>`` and its base64 text is the chunks joined in
  order.  Columns are read by name (other versions add columns).
* **pi JSONL**: one session per file; the first line is the header
  ``{"type": "session", "id", "timestamp", "cwd", ...}``, every other line an entry;
  the leaf is the last entry.

A file is read once, from the start: its format is told from its first bytes (an
SQLite header) and its name (``.jsonl``, ``.json``; otherwise from its first line),
so pipes work (``<(cat s.json)``, ``-`` for standard input).  An SQLite file from a
pipe is copied to a temporary file first (at most ``Limits.max_spool_bytes``).  A
FIFO is opened without blocking; while nothing has been written to it, ``on_wait``
is told once and reading waits, as ``cat`` would.

Task sessions keep their tree, linked only where the file names the parent exactly
(see :func:`resolve_parent`): a Flue task's ``metadata.parentSession`` and its
``task:<parent>:<taskId>`` name name a session of the same agent instance and
harness, so the parent is the storage key ``agent-session:[instance, harness,
parent]``; a pi header's ``parentSession`` is the parent's file, linked when that
file is imported in the same batch (see :func:`pi_sessions`).

The input is not trusted.  Sizes are checked before anything is assembled: the
declared sizes first (a regular file's size; for Flue, SQL ``length()`` sums over a
session's rows and image chunks, before any is fetched), then the running sizes
while reading, against :class:`Limits` (one value, one session).  Anything malformed
(not UTF-8, not JSON, NaN or Infinity unless allowed, a key twice in one object,
nesting deeper than eventlog stores, a NULL or BLOB where Flue writes text, a
missing table, column or image chunk) is an :class:`ImportFormatError` naming the
file, the session and where in it (line, entry id, image id).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

from .errors import EventLogError, InvalidValueError
from .values import MAX_DEPTH, validate

_MARKER = "__flue_image_chunks__:"
_SQLITE_MAGIC = b"SQLite format 3\x00"

#: Flue's storage keys: this prefix and the compact JSON array
#: ``[instanceId, harnessName, sessionName]``.
FLUE_KEY_PREFIX = "agent-session:"

#: Largest single value read (a Flue entry or session row, one image's base64 text,
#: a pi line): :func:`eventlog.open`'s default ``max_body_bytes``, the largest value
#: the store takes.
MAX_VALUE_BYTES = 256 << 20

#: Largest session read (everything one session is assembled from).  Reading a
#: session takes about twice its size in memory at its peak when its parts are in
#: separate rows (Flue 0.11.1), and up to six times when it is one JSON text that
#: holds a character outside the Basic Multilingual Plane (an emoji): Python then
#: keeps the whole text at four bytes a character while it is parsed.
MAX_SESSION_BYTES = 256 << 20

#: Largest SQLite file copied from a pipe to a temporary file.
MAX_SPOOL_BYTES = 4 << 30

#: How long to wait for a FIFO's first byte before telling ``on_wait`` (ms).
WAIT_NOTICE_MS = 500

_BLOCK = 1 << 20
_PI_HEADER_BYTES = 1 << 20


class ImportFormatError(EventLogError):
    """A file to import is not in a known format, is damaged or is over a limit.

    The message is one line naming the file, the session (when known) and where in
    it (``line 7``, ``entry 'ab12cd34': image '0', chunk 1``).  The file and the
    session are also the attributes ``file`` and ``session_id``."""

    def __init__(self, message: str, *, file: str | None = None, session_id: str | None = None,
                 where: str | None = None) -> None:  # fmt: skip
        self.file = file
        self.where = where
        parts = [file] if file else []
        if session_id is not None:
            parts.append(f"session {session_id!r}")
        if where:
            parts.append(where)
        super().__init__(": ".join([", ".join(parts), message]) if parts else message)
        self.session_id = session_id


@dataclass(frozen=True)
class Limits:
    """What one import accepts.  ``max_value_bytes``: one value (a Flue entry row,
    one image, a pi line); ``max_session_bytes``: one session, everything it is
    assembled from (a session's JSON may also take at most four times this in
    memory once parsed, estimated from its count of brackets and commas before it
    is parsed); ``max_spool_bytes``: an SQLite file read from a pipe;
    ``allow_nan``: accept ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, but
    Python's ``json`` writes them) as floats instead of refusing the session."""

    max_value_bytes: int = MAX_VALUE_BYTES
    max_session_bytes: int = MAX_SESSION_BYTES
    max_spool_bytes: int = MAX_SPOOL_BYTES
    allow_nan: bool = False


@dataclass(frozen=True)
class Imported:
    """One session read from a file.  ``size``: the bytes it was read from (for
    progress); ``note``: why a parent the file names was not linked, if so."""

    session_id: str
    data: dict[str, Any]
    parent_id: str | None
    source: str
    size: int = 0
    note: str | None = None


@dataclass(frozen=True)
class Unreadable:
    """A session of a file that could not be read (the file's other sessions may
    still be); ``session_id`` is ``None`` when its id could not be read either."""

    session_id: str | None
    error: ImportFormatError
    source: str
    size: int = 0


# ----------------------------------------------------------------------------- parents


def flue_identity(key: str) -> tuple[str, str, str] | None:
    """``(instanceId, harnessName, sessionName)`` of a Flue storage key, or ``None``
    when ``key`` is not one."""
    if not key.startswith(FLUE_KEY_PREFIX):
        return None
    try:
        parts = json.loads(key[len(FLUE_KEY_PREFIX) :])
    except (ValueError, RecursionError):
        return None
    if type(parts) is not list or len(parts) != 3 or any(type(p) is not str for p in parts):
        return None
    return parts[0], parts[1], parts[2]


def flue_key(instance: str, harness: str, session: str) -> str:
    """The storage key Flue gives a session: ``agent-session:`` and the compact JSON
    array, as JavaScript's ``JSON.stringify`` writes it."""
    return FLUE_KEY_PREFIX + json.dumps([instance, harness, session], ensure_ascii=False, separators=(",", ":"))


def _parent_name(name: str, metadata: Any) -> tuple[str | None, str | None]:
    """The parent a session name and metadata give, relative to the session's own
    namespace, and a note when they disagree or name nothing usable."""
    meta = metadata if type(metadata) is dict else {}
    named = meta.get("parentSession")
    named = named if type(named) is str and named else None
    task_id = meta.get("taskId")
    task_id = task_id if type(task_id) is str and task_id else None
    if not name.startswith("task:"):
        return named, None
    # Flue names a task session task:<parent>:<taskId>; the parent's name may hold
    # colons (a task of a task), the taskId (a UUID) does not.
    rest = name[len("task:") :]
    parent = None
    if task_id is not None and rest.endswith(":" + task_id) and len(rest) > len(task_id) + 1:
        parent = rest[: -len(task_id) - 1]
    elif named is not None and rest.startswith(named + ":") and len(rest) > len(named) + 1:
        parent = named
    elif ":" in rest and rest.rsplit(":", 1)[0]:
        parent = rest.rsplit(":", 1)[0]
    note = None
    if parent is None:
        note = f"the task name {name!r} names no parent"
    elif named is not None and named != parent:
        note = f"metadata.parentSession {named!r} disagrees with the task name; linked to {parent!r} as the name says"
    return parent, note


def resolve_parent(
    session_id: str, data: Mapping[str, Any], known: Mapping[tuple[str, str, str], str] | None = None
) -> tuple[str | None, str | None]:
    """The parent of a session as a store key, and a note when the session names a
    parent that is not linked (or links one in a way worth saying).

    * A Flue storage key ``agent-session:[instance, harness, name]``: the parent name
      (from a ``task:<parent>:<taskId>`` name, else ``metadata.parentSession``) is a
      session of the same instance and harness: its key from ``known`` (the keys
      read from the same file, by identity) when there, else the key Flue would
      make, provided this session's own key is in that form (else no link).
    * Any other id: a ``task:<parent>:<taskId>`` name gives ``<parent>`` in the same
      (bare) namespace; a ``metadata.parentSession`` that is itself a Flue storage
      key is taken as it is.  A bare ``metadata.parentSession`` is not linked: its
      instance and harness are unknown.
    """
    metadata = data.get("metadata")
    identity = flue_identity(session_id)
    if identity is not None:
        instance, harness, name = identity
        parent_name, note = _parent_name(name, metadata)
        if parent_name is None:
            return None, note
        parent = (known or {}).get((instance, harness, parent_name))
        if parent is None:
            if flue_key(instance, harness, name) != session_id:
                return None, f"parent {parent_name!r} is not in the file, and this key is not in Flue's form"
            parent = flue_key(instance, harness, parent_name)
        return (parent, note) if parent != session_id else (None, None)
    meta = metadata if type(metadata) is dict else {}
    named = meta.get("parentSession")
    if session_id.startswith("task:"):
        parent, note = _parent_name(session_id, metadata)
        return (parent, note) if parent != session_id else (None, None)
    if type(named) is str and named:
        if flue_identity(named) is not None and named != session_id:
            return named, None
        return None, f"metadata.parentSession {named!r} is a name in an unknown agent instance and harness: not linked"
    return None, None


def pi_sessions(files: Iterable[str]) -> dict[str, str]:
    """The session id of every pi JSONL file among ``files`` that is a regular file,
    by its real path, from its header line: what a pi header's ``parentSession``
    (the parent's file) resolves to.  Files it cannot read are left out (reading
    them reports why); FIFOs and pipes are never opened here."""
    out: dict[str, str] = {}
    for name in files:
        try:
            if name == "-" or not stat.S_ISREG(os.stat(name).st_mode):
                continue
            with open(name, "rb") as f:
                line = f.readline(_PI_HEADER_BYTES)
            header = json.loads(line.decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if type(header) is dict and header.get("type") == "session" and type(header.get("id")) is str:
            out[os.path.realpath(name)] = header["id"]
    return out


# ----------------------------------------------------------------------------- JSON


class _Bad(Exception):
    """A problem in a value, worded; the caller says where."""


#: What parsing JSON may take in memory beyond its text, per container (``{``,
#: ``[``) and per item (``,``): a generous estimate of Python's objects, so that
#: a session of many tiny values ("[[],[],...]", 28 times its text) is refused
#: before it is parsed.  A session may take :data:`_BUDGET_FACTOR` times
#: ``max_session_bytes`` so estimated.
_CONTAINER_COST, _ITEM_COST, _BUDGET_FACTOR = 80, 24, 4

#: Longest id read from a Flue file (the store takes at most 4,096 bytes).
_ID_BYTES = 4096

#: The image chunks of a session's entries (parameters: the session id twice).
_SESSION_CHUNKS = (
    "owner_kind = 'session_entry' AND owner_id = ? "
    "AND owner_part IN (SELECT entry_id FROM flue_session_entries WHERE session_id = ?)"
)


class _Budget:
    """The memory one session may take once parsed, spent as its JSON is parsed."""

    def __init__(self, limits: Limits) -> None:
        self.total = self.left = _BUDGET_FACTOR * limits.max_session_bytes

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _Bad(
                f"so many small JSON values that reading them would take over {_size(self.total)} of memory "
                f"({_BUDGET_FACTOR} times the limit for one session)"
            )

    def parse(self, text: str) -> None:
        """Charge for parsing ``text``, before it is parsed."""
        containers = text.count("{") + text.count("[")
        self.charge(len(text) + _CONTAINER_COST * containers + _ITEM_COST * text.count(","))


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Bad(f"the key {key!r:.80} appears twice in one JSON object")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise _Bad(f"{name} is not JSON (give --allow-nan to read NaN and Infinity as floats)")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Bad(f"not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 1]!r})") from None


def _parse(text: str, allow_nan: bool, budget: _Budget | None = None) -> Any:
    if budget is not None:
        budget.parse(text)
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=None if allow_nan else _no_constant)
    except json.JSONDecodeError as e:
        at = f"column {e.colno}" if e.lineno == 1 else f"line {e.lineno} column {e.colno}"
        raise _Bad(f"not JSON ({e.msg} at {at})") from None
    except RecursionError:
        raise _Bad(f"JSON nested deeper than eventlog stores ({MAX_DEPTH} levels)") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise _Bad(f"not JSON eventlog can read ({e})") from None


def _check_value(value: Any) -> None:
    """What the store would refuse in a parsed value: nesting over MAX_DEPTH."""
    try:
        validate(value, 1 << 62)
    except InvalidValueError as e:
        raise _Bad(e.message) from None


def _check_session(data: dict[str, Any], entry_where: Callable[[int, Any], str]) -> None:
    """Each field and each entry as the store will check it, naming the one that
    fails (a field's name, an entry by ``entry_where(index, entry)``)."""
    for key, value in data.items():
        if key == "entries" and type(value) is list:
            for i, entry in enumerate(value):
                try:
                    _check_value(entry)
                except _Bad as e:
                    raise _Bad(f"{entry_where(i, entry)}: {e}") from None
        else:
            try:
                _check_value(value)
            except _Bad as e:
                raise _Bad(f"field {key!r}: {e}") from None


def _entry_name(i: int, entry: Any) -> str:
    ident = entry.get("id") if type(entry) is dict else None
    return f"entry {ident!r:.80}" if type(ident) is str else f"entry #{i}"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


# ----------------------------------------------------------------------------- input


class _Input:
    """A file opened once for reading, with the bytes read to tell its format put
    back in front."""

    def __init__(self, f: IO[bytes], on_bytes: Callable[[int], None] | None) -> None:
        self._f = f
        self._back = b""
        self._on_bytes = on_bytes

    def _got(self, data: bytes) -> bytes:
        if data and self._on_bytes is not None:
            self._on_bytes(len(data))
        return data

    def unread(self, data: bytes) -> None:
        self._back = data + self._back

    def read(self, n: int) -> bytes:
        if self._back:
            out, self._back = self._back[:n], self._back[n:]
            return out
        return self._got(self._f.read(n))

    def read_exactly_or_eof(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            more = self.read(n - len(out))
            if not more:
                break
            out += more
        return out

    def readline(self, limit: int) -> bytes:
        if self._back:
            i = self._back.find(b"\n", 0, limit)
            if i >= 0 or len(self._back) >= limit:
                cut = i + 1 if i >= 0 else limit
                line, self._back = self._back[:cut], self._back[cut:]
                return line
            line, self._back = self._back, b""
            return line + self._got(self._f.readline(limit - len(line)))
        return self._got(self._f.readline(limit))

    def close(self) -> None:
        self._f.close()


def _nameless(name: str) -> bool:
    """A name that says nothing about the session: standard input, or a pipe's
    ``/dev/fd/N`` (``<(cat s.json)``)."""
    return name == "-" or name.startswith(("/dev/fd/", "/proc/")) or name in ("/dev/stdin",)


def _wait_for_data(fd: int, name: str, on_wait: Callable[[str], None] | None) -> None:
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    if poll.poll(WAIT_NOTICE_MS):
        return
    if on_wait is not None:
        on_wait(f"{name}: nothing written to this pipe or FIFO yet; waiting for a writer (Ctrl-C to stop)")
    poll.poll()  # a signal handler's exception (Ctrl-C) ends the wait


def _open_input(name: str, on_wait: Callable[[str], None] | None) -> tuple[IO[bytes], os.stat_result]:
    """Open ``name`` for reading without hanging silently on a FIFO with no writer."""
    if name == "-":
        fd = os.dup(0)
        if os.isatty(fd) and on_wait is not None:
            on_wait("reading a file from the terminal (standard input): end it with Ctrl-D")
    else:
        try:
            st = os.stat(name)
        except OSError as e:
            raise ImportFormatError(f"cannot read: {e.strerror or e}", file=name) from None
        if stat.S_ISDIR(st.st_mode):
            raise ImportFormatError("is a directory, not a file to import", file=name)
        flags = os.O_RDONLY | (os.O_NONBLOCK if stat.S_ISFIFO(st.st_mode) else 0)
        try:
            fd = os.open(name, flags)
        except OSError as e:
            raise ImportFormatError(f"cannot read: {e.strerror or e}", file=name) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode):
            _wait_for_data(fd, name, on_wait)
            if name != "-":  # opened O_NONBLOCK here (never set on a shared standard input)
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb", buffering=_BLOCK), st
    except BaseException:
        os.close(fd)
        raise


# ----------------------------------------------------------------------------- files


class ImportFile:
    """One file to import, opened by :func:`open_file`: ``format`` (``"Flue
    0.11.0"``, ``"Flue 0.11.1"``, ``"pi JSONL"``, ``"session JSON"``), ``size`` (its
    size in bytes when known) and, iterated, its sessions, each an
    :class:`Imported` or an :class:`Unreadable` (the others are still read).  A
    problem with the file as a whole raises :class:`ImportFormatError`.  Close it
    (or use it as a context manager) to close the file and remove a spooled copy."""

    def __init__(
        self,
        name: str,
        *,
        limits: Limits,
        session_id: str | None,
        pi_ids: Mapping[str, str] | None,
        on_wait: Callable[[str], None] | None,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        self.name = name
        self.limits = limits
        self._session_id = session_id
        self._pi_ids = pi_ids or {}
        self._on_bytes = on_bytes
        self.format = ""
        self._con: sqlite3.Connection | None = None
        self._spool: str | None = None
        self._tables: set[str] = set()
        f, st = _open_input(name, on_wait)
        self._input = _Input(f, on_bytes)
        self.regular = stat.S_ISREG(st.st_mode)
        self.size: int | None = st.st_size if self.regular else None
        try:
            head = self._input.read_exactly_or_eof(len(_SQLITE_MAGIC))
            self._input.unread(head)
            if head == _SQLITE_MAGIC:
                self._open_sqlite()
            elif not head:
                raise ImportFormatError("empty file", file=name)
            else:
                self._sniff_text()
        except BaseException:
            self.close()
            raise

    # -- life

    def close(self) -> None:
        """Close the file and the SQLite connection; remove a spooled copy."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._input.close()
        if self._spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
            self._spool = None

    def __enter__(self) -> ImportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Imported | Unreadable]:
        if self.format.startswith("Flue"):
            return self._flue()
        if self.format == "pi JSONL":
            return self._pi()
        return self._session_json()

    def _error(self, message: str, session_id: str | None = None, where: str | None = None) -> ImportFormatError:
        return ImportFormatError(message, file=self.name, session_id=session_id, where=where)

    # -- text formats

    def _sniff_text(self) -> None:
        base = os.path.basename(self.name)
        if base.endswith(".jsonl"):
            self.format = "pi JSONL"
        elif base.endswith(".json"):
            self.format = "session JSON"
        else:  # a pipe or an unusual name: a pi file starts with its header line
            line = self._input.readline(_PI_HEADER_BYTES)
            self._input.unread(line)
            try:
                first = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):
                first = None
            is_pi = type(first) is dict and first.get("type") == "session" and line.endswith(b"\n")
            self.format = "pi JSONL" if is_pi else "session JSON"

    def _read_all(self, cap: int, what: str) -> bytes:
        if self.size is not None and self.size > cap:
            raise self._error(f"{_size(self.size)}, over the limit of {_size(cap)} for one {what}")
        parts, n = [], 0
        while True:
            block = self._input.read(_BLOCK)
            if not block:
                break
            n += len(block)
            if n > cap:
                raise self._error(f"over the limit of {_size(cap)} for one {what}")
            parts.append(block)
        return b"".join(parts)

    def _session_json(self) -> Iterator[Imported | Unreadable]:
        sid = self._session_id
        if sid is None:
            if _nameless(self.name):
                raise self._error(
                    "a session JSON file is named after its session, and this one has no file name "
                    "(a pipe or standard input): give the session id with --id"
                )
            base = os.path.basename(self.name)
            sid = base[: -len(".json")] if base.endswith(".json") else base
        try:
            raw = self._read_all(self.limits.max_session_bytes, "session")
            size = len(raw)
            text = _decode(raw)
            del raw
            data = _parse(text, self.limits.allow_nan, _Budget(self.limits))
            del text
            if type(data) is not dict or type(data.get("entries")) is not list:
                raise _Bad("not a session (a JSON object with an entries list)")
            _check_session(data, _entry_name)
        except _Bad as e:
            yield Unreadable(sid, self._error(str(e), sid), self.name)
            return
        parent, note = resolve_parent(sid, data)
        yield Imported(sid, data, parent, self.name, size, note)

    def _pi(self) -> Iterator[Imported | Unreadable]:
        limits = self.limits
        cap, total = limits.max_session_bytes, 0
        if self.size is not None and self.size > cap:
            raise self._error(f"{_size(self.size)}, over the limit of {_size(cap)} for one session")
        budget = _Budget(limits)
        header: dict[str, Any] | None = None
        sid: str | None = None
        entries: list[Any] = []
        n = 0
        try:
            while True:
                line = self._input.readline(limits.max_value_bytes + 2)
                if not line:
                    break
                n += 1
                total += len(line)
                if total > cap:
                    raise _Bad(f"line {n}: over the limit of {_size(cap)} for one session")
                if len(line) - line.endswith(b"\n") > limits.max_value_bytes:
                    raise _Bad(f"line {n}: over the limit of {_size(limits.max_value_bytes)} for one value")
                try:
                    text = _decode(line)
                    if not text.strip():
                        continue
                    value = _parse(text, limits.allow_nan, budget)
                except _Bad as e:
                    raise _Bad(f"line {n}: {e}") from None
                if header is None:
                    if type(value) is not dict or value.get("type") != "session" or type(value.get("id")) is not str:
                        raise _Bad(f"line {n} is not a pi session header")
                    header, sid = value, value["id"]
                    continue
                if type(value) is not dict or "type" not in value:
                    raise _Bad(f"line {n}: not a session entry")
                try:
                    _check_value(value)
                except _Bad as e:
                    raise _Bad(f"line {n}, {_entry_name(len(entries), value)}: {e}") from None
                entries.append(value)
            if header is None or sid is None:
                raise _Bad("empty pi session file")
            metadata = {k: v for k, v in header.items() if k not in ("type", "id")}
            try:
                _check_value(metadata)
            except _Bad as e:
                raise _Bad(f"the header line: {e}") from None
        except _Bad as e:
            yield Unreadable(sid, self._error(str(e), sid), self.name, total)
            return
        data: dict[str, Any] = {
            "version": 5,
            "entries": entries,
            "leafId": entries[-1].get("id") if entries else None,
            "metadata": metadata,
            "createdAt": header.get("timestamp"),
            "updatedAt": entries[-1].get("timestamp", header.get("timestamp")) if entries else header.get("timestamp"),
        }
        parent, note = self._pi_parent(header)
        yield Imported(sid, data, parent, self.name, total, note)

    def _pi_parent(self, header: dict[str, Any]) -> tuple[str | None, str | None]:
        named = header.get("parentSession")
        if type(named) is not str or not named:
            return None, None
        base = "." if _nameless(self.name) else os.path.dirname(self.name)
        parent = self._pi_ids.get(os.path.realpath(os.path.join(base, named)))
        if parent is None:
            return None, f"parent session file {named!r} is not among the files imported: not linked"
        return (parent, None) if parent != header.get("id") else (None, None)

    # -- Flue

    def _open_sqlite(self) -> None:
        if self.regular and not _nameless(self.name):
            uri = f"file:{quote(os.path.abspath(self.name))}?mode=ro"
        else:
            self._spool_copy()
            assert self._spool is not None
            uri = f"file:{quote(self._spool)}?mode=ro&immutable=1"
        try:
            con = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as e:
            raise self._error(f"cannot open as SQLite: {e}") from None
        self._con = con
        con.text_factory = bytes  # decoded here: invalid UTF-8 is reported, not raised raw
        # No single value SQLite reads or computes (a generated column, say) may be
        # larger than what one session may be: over it, "string or blob too big".
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(self.limits.max_value_bytes, self.limits.max_session_bytes) + 64)
        try:
            con.execute("PRAGMA trusted_schema = OFF")
            con.execute("PRAGMA query_only = ON")
            kinds = {
                _text(name).lower(): (_text(kind), _text(sql or b""))
                for name, kind, sql in con.execute("SELECT name, type, sql FROM sqlite_master")
            }
            self._check_tables(kinds)
        except sqlite3.Error as e:
            raise self._error(f"not a readable SQLite database ({e})") from None

    def _check_tables(self, kinds: dict[str, tuple[str, str]]) -> None:
        assert self._con is not None
        tables = set()
        for table in ("flue_sessions", "flue_session_entries", "flue_image_chunks"):
            kind, sql = kinds.get(table, (None, ""))
            if kind is None:
                continue
            if kind != "table" or sql.upper().startswith("CREATE VIRTUAL"):
                raise self._error(f"{table} is a {'virtual table' if kind == 'table' else kind}, not a table")
            tables.add(table)
        if "flue_sessions" not in tables:
            raise self._error("an SQLite file without a flue_sessions table (not a Flue database)")
        need = {
            "flue_sessions": ("id", "data"),
            "flue_session_entries": ("session_id", "entry_id", "position", "data"),
            "flue_image_chunks": ("owner_kind", "owner_id", "owner_part", "image_id", "chunk_index", "chunk_count",
                                  "data"),
        }  # fmt: skip
        for table in tables:
            # hidden: 0 for a stored column; 2 and 3 for a generated one, which Flue
            # never writes (and which can make a small file yield gigabytes).
            hidden = {_text(r[1]).lower(): r[6] for r in self._con.execute(f"PRAGMA table_xinfo({table})")}
            missing = [c for c in need[table] if c not in hidden]
            if missing:
                raise self._error(f"{table} has no column {', '.join(missing)}")
            generated = [c for c in need[table] if hidden[c] != 0]
            if generated:
                raise self._error(f"{table}.{generated[0]} is a generated column, not data Flue wrote")
        self._tables = tables
        self.format = "Flue 0.11.1" if "flue_session_entries" in tables else "Flue 0.11.0"

    def _spool_copy(self) -> None:
        cap = self.limits.max_spool_bytes
        fd, path = tempfile.mkstemp(prefix="eventlog-import-", suffix=".db")
        self._spool = path
        n = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    block = self._input.read(_BLOCK)
                    if not block:
                        break
                    n += len(block)
                    if n > cap:
                        raise self._error(
                            f"an SQLite file read from a pipe is copied to a temporary file first, and this one is "
                            f"over the limit of {_size(cap)} for that: give it as a file"
                        )
                    out.write(block)
        except OSError as e:
            raise self._error(f"cannot copy to a temporary file: {e.strerror or e}") from None

    def _flue(self) -> Iterator[Imported | Unreadable]:
        con = self._con
        assert con is not None
        # One read transaction: every query sees the same state of the file, even
        # one that Flue is writing to.  Ids are streamed (never all held), twice:
        # first to find parents whose keys are not in Flue's exact form.
        ids = "SELECT rowid, typeof(id), CASE WHEN length(CAST(id AS BLOB)) <= ? THEN id END FROM flue_sessions " \
              "ORDER BY rowid"  # fmt: skip
        known: dict[tuple[str, str, str], str] = {}
        try:
            con.execute("BEGIN")
            for _, kind, raw in con.execute(ids, (_ID_BYTES,)):
                key = _session_key(kind, raw)[0]
                identity = flue_identity(key) if key is not None else None
                if key is not None and identity is not None and flue_key(*identity) != key:
                    known.setdefault(identity, key)
            rows = con.execute(ids, (_ID_BYTES,))
        except sqlite3.Error as e:
            raise self._error(f"reading flue_sessions: {e}") from None
        while True:
            try:
                row = rows.fetchone()
            except sqlite3.Error as e:
                raise self._error(f"reading flue_sessions: {e}") from None
            if row is None:
                return
            rowid, kind, raw = row
            maybe_sid, wrong = _session_key(kind, raw)
            if maybe_sid is None:
                yield Unreadable(None, self._error(wrong or "", where=f"flue_sessions row {rowid}"), self.name)
                continue
            sid = maybe_sid
            try:
                data, size = self._flue_session(rowid, sid)
            except _Bad as e:
                yield Unreadable(sid, self._error(str(e), sid), self.name)
                continue
            except sqlite3.Error as e:
                yield Unreadable(sid, self._error(_sqlite_problem(e, self.limits), sid), self.name)
                continue
            parent, note = resolve_parent(sid, data, known)
            yield Imported(sid, data, parent, self.name, size, note)

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        assert self._con is not None
        return self._con.execute(sql, params).fetchone()

    def _flue_session(self, rowid: int, sid: str) -> tuple[dict[str, Any], int]:
        limits = self.limits
        cap = limits.max_session_bytes
        budget = _Budget(limits)
        kind, n = self._one("SELECT typeof(data), length(CAST(data AS BLOB)) FROM flue_sessions WHERE rowid = ?",
                            (rowid,))  # fmt: skip
        if _text(kind) != "text":
            raise _Bad(f"data is {_kind(_text(kind))}, not text")
        if n > cap:
            raise _Bad(f"data of {_size(n)} is over the limit of {_size(cap)} for one session")
        declared = n
        entry_rows = image_rows = 0
        if "flue_session_entries" in self._tables:
            # What the session's rows declare, summed by SQL (nothing fetched, no sort).
            entry_rows, total, largest, longest_id = self._one(
                "SELECT count(*), coalesce(sum(length(CAST(data AS BLOB))), 0), "
                "coalesce(max(length(CAST(data AS BLOB))), 0), coalesce(max(length(CAST(entry_id AS BLOB))), 0) "
                "FROM flue_session_entries WHERE session_id = ?",
                (sid,),
            )
            if largest > limits.max_value_bytes:
                raise _Bad(f"an entry of {_size(largest)} is over the limit of {_size(limits.max_value_bytes)}")
            if longest_id > _ID_BYTES:
                raise _Bad(f"an entry_id of {_size(longest_id)} (entry ids are short)")
            budget.charge(entry_rows * _CONTAINER_COST)
            declared += total
            if "flue_image_chunks" in self._tables:
                image_rows, total = self._one(
                    f"SELECT count(*), coalesce(sum(length(CAST(data AS BLOB))), 0) FROM flue_image_chunks "
                    f"WHERE {_SESSION_CHUNKS}",
                    (sid, sid),
                )
                declared += total
        if declared > cap:
            raise _Bad(f"{_size(declared)} of rows and image chunks, over the limit of {_size(cap)} for one session")
        row = self._one("SELECT data FROM flue_sessions WHERE rowid = ?", (rowid,))
        if row is None or type(row[0]) is not bytes or len(row[0]) != n:
            raise _Bad("data changed while it was read")
        text = _decode(row[0])
        del row
        data = _parse(text, limits.allow_nan, budget)
        del text
        self._progress(n)
        if type(data) is not dict:
            raise _Bad("data is not a JSON object")
        if "flue_session_entries" in self._tables:
            data = self._with_entries(sid, data, entry_rows, image_rows, cap - n, budget)
        if type(data.get("entries")) is not list:
            raise _Bad("no entries list")
        _check_session(data, _entry_name)
        return data, declared

    def _progress(self, n: int) -> None:
        if self._on_bytes is not None and self._spool is None:  # a spooled copy was counted as it was read
            self._on_bytes(n)

    def _with_entries(
        self, sid: str, data: dict[str, Any], count: int, image_rows: int, room: int, budget: _Budget
    ) -> dict[str, Any]:
        """Flue 0.11.1: the session's entries from their own rows, images rejoined.

        Rows are put in order by rowid first, then fetched one at a time, so no
        sort ever holds their data; every size is checked before it is fetched."""
        assert self._con is not None
        query = "SELECT rowid FROM flue_session_entries WHERE session_id = ? ORDER BY position, entry_id"
        order = [r for (r,) in self._con.execute(query, (sid,))]
        if len(order) != count:
            raise _Bad("the entries changed while they were read")
        entries: list[Any] = []
        used: set[tuple[str, str]] = set()
        total = used_rows = 0
        for i, row in enumerate(order):
            # The data comes only if it fits what is left (a row can change between
            # the sums and now): its length is checked in SQL before it is fetched.
            id_kind, raw_id, data_kind, n, raw = self._one(
                "SELECT typeof(entry_id), entry_id, typeof(data), length(CAST(data AS BLOB)), "
                "CASE WHEN typeof(data) = 'text' AND length(CAST(data AS BLOB)) <= ? THEN data END "
                "FROM flue_session_entries WHERE rowid = ?",
                (room - total, row),
            )
            if _text(id_kind) != "text":
                raise _Bad(f"entry #{i}: entry_id is {_kind(_text(id_kind))}, not text")
            entry_id = _decode(raw_id)
            where = f"entry {entry_id!r:.80}"
            if _text(data_kind) != "text":
                raise _Bad(f"{where}: data is {_kind(_text(data_kind))}, not text")
            total += n
            if total > room or type(raw) is not bytes:
                raise _Bad(f"{where}: the entries grew past the limit of {_size(self.limits.max_session_bytes)} "
                           "for one session while they were read")  # fmt: skip
            self._progress(n)
            try:
                text = _decode(raw)
                del raw
                entry = _parse(text, self.limits.allow_nan, budget)
                del text
                for image, rows, size in self._rejoin_images(sid, entry_id, entry, room - total):
                    used.add((entry_id, image))
                    used_rows += rows
                    total += size
            except _Bad as e:
                raise _Bad(f"{where}: {e}") from None
            entries.append(entry)
        if used_rows != image_rows:
            raise _Bad(self._unmarked(sid, used))
        if "entries" in data:
            if entries:
                raise _Bad("entries both inline and in flue_session_entries")
            return data
        # Flue writes the session without entries; they go back in their place in
        # SessionData, just before leafId (at the end when there is none).
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "leafId":
                out["entries"] = entries
            out[key] = value
        out.setdefault("entries", entries)
        return out

    def _unmarked(self, sid: str, used: set[tuple[str, str]]) -> str:
        """Words for image chunks that no marker asked for (Flue refuses those too)."""
        assert self._con is not None
        rows = self._con.execute(
            f"SELECT typeof(owner_part), owner_part, typeof(image_id), image_id FROM flue_image_chunks "
            f"WHERE {_SESSION_CHUNKS}",
            (sid, sid),
        )
        for part_kind, part, image_kind, image in rows:
            if _text(part_kind) != "text" or _text(image_kind) != "text":
                return f"entry {_show(part)}: image_id is {_kind(_text(image_kind))}, not text"
            key = (part.decode("utf-8", "replace"), image.decode("utf-8", "replace"))
            if key not in used:
                return f"entry {key[0]!r:.80}: image chunks {key[1]!r:.40} have no marker in the entry"
        return "the image chunks changed while they were read"

    def _rejoin_images(self, sid: str, entry_id: str, entry: Any, room: int) -> Iterator[tuple[str, int, int]]:
        """Put each image's chunks back in place of its marker, as Flue's reader does
        (image blocks of user and toolResult messages); yield each image's id, number
        of chunks and bytes."""
        markers: list[tuple[dict[str, Any], str]] = []
        message = entry.get("message") if type(entry) is dict and entry.get("type") == "message" else None
        content = message.get("content") if type(message) is dict else None
        if type(message) is dict and message.get("role") in ("user", "toolResult") and type(content) is list:
            for block in content:
                if type(block) is dict and block.get("type") == "image":
                    data = block.get("data")
                    if type(data) is str and data.startswith(_MARKER):
                        markers.append((block, data[len(_MARKER) :]))
        named = [image for _, image in markers]
        if len(set(named)) != len(named):
            raise _Bad("an image marker appears twice")
        for block, image in markers:
            text, rows = self._image(sid, entry_id, image, room)
            room -= len(text)
            block["data"] = text
            yield image, rows, len(text)

    def _image(self, sid: str, entry_id: str, image: str, room: int) -> tuple[str, int]:
        assert self._con is not None
        where = f"image {image!r:.40}"
        if "flue_image_chunks" not in self._tables:
            raise _Bad(f"{where} has no chunks (the file has no flue_image_chunks table)")
        cap = self.limits.max_value_bytes
        params = (sid, entry_id, image)
        chunks = "FROM flue_image_chunks WHERE owner_kind = 'session_entry' AND owner_id = ? AND owner_part = ? " \
                 "AND image_id = ?"  # fmt: skip
        rows, declared = self._one(f"SELECT count(*), coalesce(sum(length(CAST(data AS BLOB))), 0) {chunks}", params)
        if rows == 0:
            odd = self._one(
                "SELECT typeof(image_id) FROM flue_image_chunks WHERE owner_kind = 'session_entry' AND owner_id = ? "
                "AND owner_part = ? AND typeof(image_id) <> 'text' LIMIT 1",
                params[:2],
            )
            if odd is not None:
                raise _Bad(f"{where} has no chunks: the entry's chunks have an image_id that is {_kind(_text(odd[0]))}")
            raise _Bad(f"{where} has no chunks")
        if declared > cap:
            raise _Bad(f"{where}: {_size(declared)} of chunks, over the limit of {_size(cap)} for one value")
        if declared > room:
            raise _Bad(f"{where}: the session grew past the limit of {_size(self.limits.max_session_bytes)} "
                       "while it was read")  # fmt: skip
        # At most ``declared`` bytes, checked above: in order (a sort of at most one
        # image when the file has no index), fetched one row at a time.
        cursor = self._con.execute(
            f"SELECT typeof(chunk_index), chunk_index, typeof(chunk_count), chunk_count, typeof(data), data {chunks} "
            "ORDER BY chunk_index",
            params,
        )
        parts: list[bytes] = []
        n = 0
        count = None
        for i, (index_kind, index, count_kind, declared_count, data_kind, data) in enumerate(cursor):
            if _text(index_kind) != "integer" or _text(count_kind) != "integer":
                bad = "chunk_index" if _text(index_kind) != "integer" else "chunk_count"
                kind = index_kind if bad == "chunk_index" else count_kind
                raise _Bad(f"{where}, chunk #{i}: {bad} is {_kind(_text(kind))}, not an integer")
            if count is None:
                count = declared_count
                if count < 1 or count != rows:
                    raise _Bad(f"{where}: {rows} of its {count} chunks")
            if declared_count != count:
                raise _Bad(f"{where}, chunk {index}: chunk_count {declared_count} where chunk 0 says {count}")
            if index != i:
                raise _Bad(f"{where}: chunk {i} is missing" if index > i else f"{where}: chunk {index} appears twice")
            if _text(data_kind) != "text":
                raise _Bad(f"{where}, chunk {index}: data is {_kind(_text(data_kind))}, not text")
            n += len(data)
            if n > declared:
                raise _Bad(f"{where}: the chunks changed while they were read")
            parts.append(data)
        if count is None or len(parts) != count or n != declared:
            raise _Bad(f"{where}: the chunks changed while they were read")
        self._progress(n)
        try:
            return _decode(b"".join(parts)), rows
        except _Bad as e:
            raise _Bad(f"{where}: {e}") from None


def _session_key(kind: Any, raw: Any) -> tuple[str | None, str | None]:
    """A Flue session id read as ``typeof(id)`` and the id (NULL when too long),
    or ``None`` and what is wrong with it."""
    if _text(kind) != "text":
        return None, f"id is {_kind(_text(kind))}, not text"
    if raw is None:
        return None, f"id over {_ID_BYTES} bytes"
    try:
        return _decode(raw), None
    except _Bad as e:
        return None, f"id {e}"


def _text(value: Any) -> str:
    """sqlite_master and typeof() text, read as bytes (the connection's text_factory)."""
    return value.decode("utf-8", "replace") if type(value) is bytes else str(value)


_KINDS = {"null": "NULL", "blob": "a BLOB", "integer": "an integer", "real": "a float", "text": "text"}


def _kind(kind: str) -> str:
    return _KINDS.get(kind, kind)


def _show(value: Any) -> str:
    if type(value) is bytes:
        return repr(value.decode("utf-8", "replace"))[:80]
    return repr(value)[:80]


def _sqlite_problem(e: sqlite3.Error, limits: Limits) -> str:
    text = str(e)
    if "too big" in text:
        return f"a value over the limit of {_size(max(limits.max_value_bytes, limits.max_session_bytes))}"
    return f"SQLite: {text}"


def open_file(
    name: str,
    *,
    limits: Limits | None = None,
    session_id: str | None = None,
    pi_ids: Mapping[str, str] | None = None,
    on_wait: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> ImportFile:
    """Open a file to import (``"-"``: standard input) and tell its format.

    ``limits``: :class:`Limits` (the defaults when ``None``).  ``session_id``: the
    id of a session JSON file read from a pipe (otherwise its file name).
    ``pi_ids``: :func:`pi_sessions` of the whole batch, to link pi sessions to
    their parent file's session.  ``on_wait(message)``: called once if a FIFO or
    pipe has had nothing written to it for a moment (the read then waits).
    ``on_bytes(n)``: called as bytes are read (for progress).  Raises
    :class:`ImportFormatError` if the file cannot be read or is in no known format.
    """
    return ImportFile(
        name,
        limits=limits or Limits(),
        session_id=session_id,
        pi_ids=pi_ids,
        on_wait=on_wait,
        on_bytes=on_bytes,
    )


def read(name: str, **options: Any) -> Iterator[Imported | Unreadable]:
    """Every session in the file ``name`` (options as :func:`open_file`)."""
    with open_file(name, **options) as f:
        yield from f
