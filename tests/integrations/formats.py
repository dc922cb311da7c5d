"""Writers of the formats ``eventlog import`` reads, made from the data model in
``docs/sessions.md`` (Flue 0.11.0 and 0.11.1 databases, pi JSONL)."""

from __future__ import annotations

import copy
import json
import sqlite3
from typing import Any

FLUE_CHUNK_CHARS = 256 * 1024


def write_flue_0110(path: str, sessions: dict[str, dict[str, Any]]) -> None:
    """One JSON value per session, as Flue 0.11.0 writes it."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at INTEGER NOT NULL)")
    for i, (sid, data) in enumerate(sessions.items()):
        con.execute("INSERT INTO flue_sessions VALUES (?, ?, ?)", (sid, json.dumps(data, ensure_ascii=False), i))
    con.commit()
    con.close()


def write_flue_0111(
    path: str, sessions: dict[str, dict[str, Any]], chunk_chars: int = FLUE_CHUNK_CHARS, *, exact: bool = False
) -> None:
    """Flue 0.11.1: the session without entries, one row per entry, and the base64
    of images in user and toolResult messages cut into chunks.  With ``exact`` the
    tables are those Flue 0.11.1 creates (keys, NOT NULL, the position index);
    without, columns are added and reordered, as later versions may, and nothing
    is constrained (hostile tests write NULLs and BLOBs)."""
    con = sqlite3.connect(path)
    if exact:
        con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        con.execute(
            "CREATE TABLE flue_session_entries(session_id TEXT NOT NULL, entry_id TEXT NOT NULL, "
            "position INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (session_id, entry_id))"
        )
        con.execute("CREATE INDEX flue_entries_position ON flue_session_entries(session_id, position)")
        con.execute(
            "CREATE TABLE flue_image_chunks(owner_kind TEXT NOT NULL, owner_id TEXT NOT NULL, "
            "owner_part TEXT NOT NULL, image_id TEXT NOT NULL, chunk_index INTEGER NOT NULL, "
            "chunk_count INTEGER NOT NULL, data TEXT NOT NULL, "
            "PRIMARY KEY (owner_kind, owner_id, owner_part, image_id, chunk_index))"
        )
    else:
        con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT, updated_at INTEGER, extra TEXT)")
        con.execute(
            "CREATE TABLE flue_session_entries(session_id TEXT, entry_id TEXT, position INTEGER, data TEXT, "
            "PRIMARY KEY(session_id, entry_id))"
        )
        con.execute(
            "CREATE TABLE flue_image_chunks(data TEXT, owner_kind TEXT, owner_id TEXT, owner_part TEXT, "
            "image_id TEXT, chunk_index INTEGER, chunk_count INTEGER)"
        )
    for sid, data in sessions.items():
        head = {k: v for k, v in data.items() if k != "entries"}
        if exact:
            con.execute("INSERT INTO flue_sessions VALUES (?, ?)", (sid, json.dumps(head, ensure_ascii=False)))
        else:
            con.execute("INSERT INTO flue_sessions VALUES (?, ?, 0, 'x')", (sid, json.dumps(head, ensure_ascii=False)))
        for position, entry in reversed(list(enumerate(data["entries"]))):  # rows out of order
            entry = copy.deepcopy(entry)
            message = entry.get("message") or {}
            image_id = 0
            if message.get("role") in ("user", "toolResult") and isinstance(message.get("content"), list):
                for block in message["content"]:
                    if block.get("type") == "image":
                        text = block["data"]
                        pieces = [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
                        for n, piece in enumerate(pieces):
                            con.execute(
                                "INSERT INTO flue_image_chunks(data, owner_kind, owner_id, owner_part, image_id, "
                                "chunk_index, chunk_count) VALUES (?, 'session_entry', ?, ?, ?, ?, ?)",
                                (piece, sid, entry["id"], str(image_id), n, len(pieces)),
                            )
                        block["data"] = f"__flue_image_chunks__:{image_id}"
                        image_id += 1
            con.execute(
                "INSERT INTO flue_session_entries VALUES (?, ?, ?, ?)",
                (sid, entry["id"], position, json.dumps(entry, ensure_ascii=False)),
            )
    con.commit()
    con.close()


def write_pi_jsonl(path: str, header: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"type": "session", **header}) + "\n")
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
