"""``eventlog demo``: persist a session larger than the cell limit, and replay it.

Saves a realistic coding-agent session (a long history plus multi-MB base64
screenshots, one sent twice) after every entry, the way agent runtimes do, twice
under the same 2 MB-per-cell limit that Cloudflare Durable Objects enforce:

1. in a one-JSON-row store (``INSERT OR REPLACE`` of the whole session), which dies
   with ``SQLITE_TOOBIG`` as soon as the session outgrows one cell;
2. in eventlog, which stores it all;

then reopens the eventlog file, checks the loaded session equals what was saved
byte for byte (as JSON), and prints what was stored, a short replay and the
commands to try next.

The demo never deletes what it did not make.  The store's path must not exist:
the file is created exclusively, and removed again only if the demo fails before
it is done.  With ``replace=True`` an existing path is replaced only if it holds a
store an earlier demo made (an eventlog store whose one session is
:data:`SESSION`).  The one-JSON-row store lives in a temporary directory next to
it, removed at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import backends
from . import open as open_store
from .errors import EventLogError, InvalidValueError
from .options import shown
from .samples import SessionBuilder, json_size

LIMIT = 2_000_000
SHOT = 2_400_000  # bytes of one screenshot (a PNG of noise): about 3.2 MB as base64
#: The id of the demo's session, plain so it can be typed in a shell; it also marks
#: a store as the demo's (see :func:`made_by_demo`).
SESSION = "eventlog-demo"


def _files(path: str) -> list[str]:
    """The demo's store file and the files next to it."""
    return backends.store_files(path) or [path]


class DemoPathError(EventLogError):
    """The demo's path exists and is not to be replaced (nothing was changed)."""


def _grow(entries: int, seed: int) -> Iterator[dict[str, Any]]:
    """The session after every entry (one dict, grown in place as runtimes do), with
    screenshots (valid PNGs) at up to three turns, the third a resend of the
    second."""
    b = SessionBuilder(seed, real_images=True)
    b.user("Open the dashboard, take a screenshot, and fix the layout bug you see. 🖥️")
    yield b.data
    turns = entries // 2
    shots = {turns // 4: False, turns // 2: False}
    shots.setdefault((3 * turns) // 4, True)  # True: resend (with few turns, fewer distinct turns)
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

    def close(self) -> None:
        self.con.close()


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


def made_by_demo(path: str) -> bool:
    """Whether ``path`` holds a store the demo made: an eventlog store whose only
    session is :data:`SESSION`.  Looked at without changing anything (no ``-wal``
    or ``-shm`` file is made beside anything; see
    :func:`eventlog.backends.live_names`); an unclean store whose session is only in
    its WAL is not recognised (and so not replaced)."""
    return backends.live_names(path) == [SESSION]


def _claim(path: str, replace: bool) -> None:
    """Create ``path`` as a new empty file, or fail with :class:`DemoPathError`; with
    ``replace``, first remove a store an earlier demo made there (and its ``-wal``
    and ``-shm``), and nothing else."""
    existing = [name for name in _files(path) if os.path.lexists(name)]
    if existing:
        ours = made_by_demo(path)
        if not replace:
            hint = ", or --replace to replace it (an earlier demo made it)" if ours else ""
            raise DemoPathError(f"{existing[0]} exists: the demo writes a new store; give another --path{hint}")
        if not ours:
            raise DemoPathError(f"{path} exists and is not a store an earlier demo made: not replacing it")
        for name in existing:
            os.remove(name)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise DemoPathError(f"{path} exists: the demo writes a new store; give another --path") from None


def _images(data: dict[str, Any]) -> list[str]:
    """The base64 text of every image block in the session, in order."""
    out = []
    for entry in data["entries"]:
        content = (entry.get("message") or {}).get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "image":
                out.append(block["data"])
    return out


def run(
    path: str = "eventlog-demo.db",
    entries: int = 600,
    seed: int = 7,
    out: Callable[[str], None] = print,
    *,
    replace: bool = False,
) -> bool:
    """Run the demo with a new store at ``path``; returns whether the replay matched.

    Raises :class:`DemoPathError` if ``path`` exists (unless ``replace`` and an
    earlier demo made it: see :func:`made_by_demo`), and
    :class:`~eventlog.InvalidValueError` unless ``entries`` (about how many entries
    the session gets) is at least 1."""
    if type(entries) is not int or entries < 1:
        raise InvalidValueError(f"entries must be an int of at least 1, not {shown(entries, 40)}")
    _claim(path, replace)
    try:
        return _run(path, entries, seed, out)
    except BaseException:
        for name in _files(path):  # all made by this run: the path did not exist before it
            if os.path.lexists(name):
                os.remove(name)
        raise


def _run(path: str, entries: int, seed: int, out: Callable[[str], None]) -> bool:
    sid = SESSION
    spent = 0.0
    saves = 0
    with tempfile.TemporaryDirectory(prefix=".eventlog-demo-", dir=os.path.dirname(os.path.abspath(path))) as tmp:
        baseline = _OneJsonRow(os.path.join(tmp, "one-json-row.db"))
        try:
            with open_store(path, max_cell_bytes=LIMIT, synchronous="NORMAL") as store:
                for data in _grow(entries, seed):
                    baseline.save(data)
                    t0 = time.perf_counter()
                    store.save(sid, data)
                    spent += time.perf_counter() - t0
                    saves += 1
                st = store.stats()
        finally:
            baseline.close()
    final = json.dumps(data)
    images = _images(data)
    sent = sum(len(i) for i in images)
    if images:
        distinct = len(set(images))
        again = len(images) - distinct
        shots = (
            f"{len(images)} screenshot{'s' if len(images) > 1 else ''} of {sent / len(images) / 1e6:.1f} MB base64 "
            f"(PNG): {distinct} distinct" + (f", {again} sent again" if again else "")
        )
    else:
        shots = "no screenshots (too few entries for one)"
    out(
        f"Session: {len(data['entries'])} entries, {json_size(data) / 1e6:.1f} MB as JSON, {shots}; "
        f"saved after every entry under a {LIMIT:,}-byte cell limit."
    )
    out(f"\n1. One JSON row per session (INSERT OR REPLACE): {baseline.error or 'stored everything'}")
    out(f"   {baseline.saves} saves had rewritten {baseline.written / 1e6:.0f} MB by then.")
    ev, ch = st["events"], st["chunks"]
    out(f"\n2. eventlog: stored all {saves} saves in {spent:.2f} s -> {path}")
    out(f"   events: {ev['rows']} rows, {ev['bytes'] / 1e6:.2f} MB (zstd CBOR, one row per save)")
    if images:
        out(
            f"   chunks: {ch['rows']} rows, {ch['bytes'] / 1e6:.2f} MB for the "
            f"{sent / 1e6:.1f} MB of base64 images sent (decoded, each image stored once)"
        )
    else:
        out(f"   chunks: {ch['rows']} rows, {ch['bytes'] / 1e6:.2f} MB (large values, each stored once)")
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
    if len(es) > 3:
        out("   " + "⋮".rjust(12))
        for e in es[max(3, len(es) - 3) :]:
            out("   " + _summary(e))
    p, s = shlex.quote(path), shlex.quote(sid)
    page = shlex.quote(os.path.splitext(os.path.basename(path))[0] + ".html")
    out("\nTry next:")
    out(f"   eventlog sessions {p}")
    out(f"   eventlog replay {p} {s}")
    out(f"   eventlog log {p} {s}")
    out(f"   eventlog view {p} {s} -o {page}    # then open {page} in a browser")
    out(f"   eventlog verify {p}")
    return same
