"""``eventlog demo``: persist a session larger than the cell limit, and replay it.

Saves a realistic coding-agent session (a long history plus multi-MB base64
screenshots, one sent twice) after every entry, the way agent runtimes do, twice
under the same 2 MB-per-cell limit that Cloudflare Durable Objects enforce:

1. in a one-JSON-row store (``INSERT OR REPLACE`` of the whole session), which dies
   with ``SQLITE_TOOBIG`` as soon as the session outgrows one cell;
2. in eventlog, which stores it all;

then reopens the eventlog file, checks the loaded session equals what was saved
byte for byte (as JSON), and prints what was stored and a short replay.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import open as open_store
from .samples import SessionBuilder, json_size

LIMIT = 2_000_000
SHOT = 2_400_000  # raw bytes of one screenshot: 3.2 MB as base64


def _grow(entries: int, seed: int) -> Iterator[dict[str, Any]]:
    """The session after every entry (one dict, grown in place as runtimes do), with
    screenshots at three turns, the last one a resend of the one before."""
    b = SessionBuilder(seed)
    b.user("Open the dashboard, take a screenshot, and fix the layout bug you see. 🖥️")
    yield b.data
    turns = entries // 2
    shots = {turns // 4: False, turns // 2: False, (3 * turns) // 4: True}  # True: resend
    for turn in range(turns):
        if b.rng.random() < 0.05:
            b.user()
            yield b.data
        b.assistant()
        yield b.data
        b.tool_result(image_bytes=SHOT if turn in shots else 0, repeat_image=shots.get(turn, False))
        yield b.data


class _OneJsonRow:
    """The design eventlog replaces: the whole session as one JSON value per save."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._remove()
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, LIMIT)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT, updated_at INTEGER)")
        self.saves = self.written = 0
        self.error: str | None = None

    def save(self, data: dict[str, Any]) -> None:
        if self.error:
            return
        text = json.dumps(data)
        try:
            self.con.execute("INSERT OR REPLACE INTO flue_sessions VALUES (?, ?, ?)", ("s", text, self.saves))
        except sqlite3.DataError as e:
            self.error = f"FAILED at save {self.saves + 1}: {getattr(e, 'sqlite_errorname', '')} ({e})"
            return
        self.saves += 1
        self.written += len(text.encode())

    def _remove(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)

    def close(self) -> None:
        self.con.close()
        self._remove()


def _summary(entry: dict[str, Any]) -> str:
    msg = entry.get("message") or {}
    role = msg.get("role", entry.get("type", "?"))
    content = msg.get("content")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    for block in content if isinstance(content, list) else []:
        kind = block.get("type")
        if kind == "text":
            parts.append(block["text"])
        elif kind == "toolCall":
            parts.append(f"→ {block['name']}({json.dumps(block['arguments'], ensure_ascii=False)})")
        elif kind == "image":
            parts.append(f"[image {block.get('mimeType')}, {len(block['data']) / 1e6:.1f} MB base64]")
    text = " ".join(parts).replace("\n", " ")
    return f"{role:>10}: {text[:90]}{'…' if len(text) > 90 else ''}"


def run(path: str = "eventlog-demo.db", entries: int = 600, seed: int = 7, out: Callable[[str], None] = print) -> bool:
    """Run the demo with a store at ``path``; returns whether the replay matched."""
    sid = 'agent-session:["inst-1","default","default"]'
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    baseline = _OneJsonRow(path + ".json-row.db")
    spent = 0.0
    saves = 0
    with open_store(path, max_cell_bytes=LIMIT, synchronous="NORMAL") as store:
        for data in _grow(entries, seed):
            baseline.save(data)
            t0 = time.perf_counter()
            store.save(sid, data)
            spent += time.perf_counter() - t0
            saves += 1
        st = store.stats()
    baseline.close()
    final = json.dumps(data)
    out(
        f"Session: {len(data['entries'])} entries, {json_size(data) / 1e6:.1f} MB as JSON "
        f"(screenshots of {SHOT * 4 // 3 / 1e6:.1f} MB base64: two distinct, one sent again), "
        f"saved after every entry under a {LIMIT:,}-byte cell limit."
    )
    out(f"\n1. One JSON row per session (INSERT OR REPLACE): {baseline.error or 'stored everything'}")
    out(f"   {baseline.saves} saves had rewritten {baseline.written / 1e6:.0f} MB by then.")
    ev, ch = st["events"], st["chunks"]
    out(f"\n2. eventlog: stored all {saves} saves in {spent:.2f} s -> {path}")
    out(f"   events: {ev['rows']} rows, {ev['bytes'] / 1e6:.2f} MB (zstd CBOR, one row per save)")
    out(
        f"   chunks: {ch['rows']} rows, {ch['bytes'] / 1e6:.2f} MB for the "
        f"{3 * SHOT * 4 // 3 / 1e6:.1f} MB of base64 images sent (decoded, each image stored once)"
    )
    out(f"   snapshots: {st['snapshots']['rows']} rows; file: {st['file_bytes'] / 1e6:.1f} MB")
    out(f"   largest cell: {st['largest_cell']:,} bytes (limit {LIMIT:,})")

    with open_store(path, max_cell_bytes=LIMIT) as store:
        t0 = time.perf_counter()
        loaded = store.load(sid)
        load_ms = (time.perf_counter() - t0) * 1e3
    same = json.dumps(loaded) == final
    out(
        f"\n3. Reopened and loaded in {load_ms:.0f} ms: "
        f"{'identical to what was saved (json.dumps byte for byte)' if same else 'MISMATCH'}"
    )
    assert loaded is not None
    es = loaded["entries"]
    out("   replay (first and last entries):")
    for e in es[:3]:
        out("   " + _summary(e))
    out("   " + "⋮".rjust(12))
    for e in es[-3:]:
        out("   " + _summary(e))
    return same
