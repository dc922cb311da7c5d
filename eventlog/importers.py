"""Reading sessions written by other stores, for ``eventlog import``.

Formats (see ``shared/reference/session-model.md``):

* **Session JSON**: a file holding one ``SessionData`` object; its id is the file
  name without ``.json``.
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

Task sessions keep their tree: the parent is ``metadata.parentSession`` when present,
else what a ``task:<parent>:<taskId>`` id names (pi: the header's
``parentSession``).  Anything malformed raises :class:`ImportFormatError` naming the
file and what is wrong.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EventLogError

_MARKER = "__flue_image_chunks__:"


class ImportFormatError(EventLogError):
    """A file to import is not in a known format or is damaged."""


@dataclass(frozen=True)
class Imported:
    """One session read from a file."""

    session_id: str
    data: dict[str, Any]
    parent_id: str | None
    source: str


def parent_of(session_id: str, data: dict[str, Any]) -> str | None:
    """The parent session of a task session, from its metadata or its id."""
    metadata = data.get("metadata")
    if type(metadata) is dict and type(metadata.get("parentSession")) is str and metadata["parentSession"]:
        parent: str = metadata["parentSession"]
        return parent if parent != session_id else None
    if session_id.startswith("task:") and session_id.count(":") >= 2:
        return session_id[len("task:") :].rsplit(":", 1)[0] or None
    return None


def read(path: str) -> Iterator[Imported]:
    """Every session in the file at ``path``, whatever its format."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    if head.startswith(b"SQLite format 3\x00"):
        yield from _flue(path)
    elif p.suffix == ".jsonl":
        yield _pi(path)
    else:
        yield _session_json(path)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{where}: not JSON ({e.msg} at line {e.lineno})") from None


def _session_json(path: str) -> Imported:
    data = _json(Path(path).read_text(encoding="utf-8"), path)
    if type(data) is not dict or type(data.get("entries")) is not list:
        raise ImportFormatError(f"{path}: not a session (a JSON object with an entries list)")
    name = Path(path).name.removesuffix(".json")
    return Imported(name, data, parent_of(name, data), path)


def _pi(path: str) -> Imported:
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ImportFormatError(f"{path}: empty pi session file")
    header = _json(lines[0], f"{path} line 1")
    if type(header) is not dict or header.get("type") != "session" or type(header.get("id")) is not str:
        raise ImportFormatError(f"{path}: line 1 is not a pi session header")
    entries = []
    for n, line in enumerate(lines[1:], start=2):
        entry = _json(line, f"{path} line {n}")
        if type(entry) is not dict or "type" not in entry:
            raise ImportFormatError(f"{path} line {n}: not a session entry")
        entries.append(entry)
    metadata = {k: v for k, v in header.items() if k not in ("type", "id")}
    data: dict[str, Any] = {
        "version": 5,
        "entries": entries,
        "leafId": entries[-1].get("id") if entries else None,
        "metadata": metadata,
        "createdAt": header.get("timestamp"),
        "updatedAt": entries[-1].get("timestamp", header.get("timestamp")) if entries else header.get("timestamp"),
    }
    parent = header.get("parentSession")
    return Imported(header["id"], data, parent if type(parent) is str and parent else None, path)


def _flue(path: str) -> Iterator[Imported]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ImportFormatError(f"{path}: cannot open: {e}") from None
    con.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "flue_sessions" not in tables:
            raise ImportFormatError(f"{path}: an SQLite file without a flue_sessions table")
        per_entry = "flue_session_entries" in tables
        for row in con.execute("SELECT * FROM flue_sessions ORDER BY rowid"):
            name = row["id"]
            where = f"{path}: session {name!r}"
            data = _json(row["data"], where)
            if type(data) is not dict:
                raise ImportFormatError(f"{where}: data is not a JSON object")
            if per_entry:
                data = _with_entries(con, name, data, where, "flue_image_chunks" in tables)
            if type(data.get("entries")) is not list:
                raise ImportFormatError(f"{where}: no entries list")
            yield Imported(name, data, parent_of(name, data), path)
    except sqlite3.Error as e:
        raise ImportFormatError(f"{path}: {e}") from None
    finally:
        con.close()


def _with_entries(con: sqlite3.Connection, name: str, data: dict[str, Any], where: str, images: bool) -> dict[str, Any]:
    """Flue 0.11.1: the session's entries from their own rows, images rejoined."""
    entries = []
    rows = con.execute("SELECT * FROM flue_session_entries WHERE session_id = ? ORDER BY position", (name,))
    for row in rows:
        entry = _json(row["data"], f"{where}, entry {row['entry_id']!r}")
        if images:
            _rejoin_images(con, name, row["entry_id"], entry, f"{where}, entry {row['entry_id']!r}")
        entries.append(entry)
    if "entries" in data and entries:
        raise ImportFormatError(f"{where}: entries both inline and in flue_session_entries")
    if "entries" not in data:
        # Flue writes the session without entries; they go back in their place in
        # SessionData, just before leafId (at the end when there is none).
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "leafId":
                out["entries"] = entries
            out[key] = value
        out.setdefault("entries", entries)
        return out
    return data


def _rejoin_images(con: sqlite3.Connection, name: str, entry_id: str, entry: Any, where: str) -> None:
    message = entry.get("message") if type(entry) is dict else None
    if type(message) is not dict or type(message.get("content")) is not list:
        return
    for block in message["content"]:
        data = block.get("data") if type(block) is dict else None
        if type(data) is not str or not data.startswith(_MARKER):
            continue
        image_id = data[len(_MARKER) :]
        chunks = con.execute(
            "SELECT * FROM flue_image_chunks WHERE owner_kind = 'session_entry' AND owner_id = ? AND owner_part = ? "
            "AND image_id = ? ORDER BY chunk_index",
            (name, entry_id, image_id),
        ).fetchall()
        counts = {c["chunk_count"] for c in chunks}
        if not chunks or counts != {len(chunks)} or [c["chunk_index"] for c in chunks] != list(range(len(chunks))):
            raise ImportFormatError(f"{where}: image {image_id} has missing or extra chunks")
        block["data"] = "".join(c["data"] for c in chunks)
