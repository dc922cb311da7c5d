"""The session stores eventlog is compared with, behind one small interface.

Every system opens its own SQLite file with the settings a run shares: WAL journal,
the given ``synchronous``, and (except the one system named "no limit") SQLite's
``SQLITE_LIMIT_LENGTH`` set to 2,000,000 bytes, as on a Cloudflare Durable Object, so
a design that needs a larger string, blob or row fails for real with
``SQLITE_TOOBIG``.  Each system writes what its design writes:

* ``json-2mb`` / ``json``: Flue 0.11.0, the whole session as one JSON value,
  ``INSERT OR REPLACE`` on every save (:class:`bench.baselines.OneJsonRow`, Python's
  default ``json.dumps``, the faster variant in CPython);
* ``flue``: Flue 0.11.1, the session without ``entries`` in ``flue_sessions``, one row
  per entry, the base64 of image blocks in ``user`` and ``toolResult`` messages cut
  into 256 x 1024-character chunks; every save reads the session's stored rows and
  compares each entry's JSON with them to decide what to write;
* ``eventsourcing``: the ``eventsourcing`` library's ``SQLiteApplicationRecorder``
  behind its ``EventStore`` and ``Mapper`` (JSON transcoder, no compression: the
  library's defaults), one domain event per entry plus one for the top-level fields
  when they change; a load selects and decodes every stored event (full replay);
* ``raw``: ``executemany`` of ready-made bytes (:class:`bench.baselines.RawRows`),
  the floor for bulk append;
* ``eventlog-save`` / ``eventlog-append``: eventlog through ``save()`` or ``append()``.

``python -c "from bench.systems import cold_load_main; ..."`` (see :func:`cold_load`)
opens a stored session in a fresh process, for the cold-load workload.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import cbor2
import zstandard

import eventlog

from .baselines import OneJsonRow, RawRows, connect

#: SQLite's length limit on a Durable Object: one string, blob or row.
LIMIT = 2_000_000
#: Flue 0.11.1 cuts image base64 text into pieces of this many characters.
FLUE_CHUNK_CHARS = 256 * 1024
FLUE_MARKER = "__flue_image_chunks__:"
INSTALL_HINT = "pip install '.[bench]'"

try:
    from eventsourcing.domain import DomainEvent
    from eventsourcing.persistence import DatetimeAsISO, EventStore, JSONTranscoder, Mapper, UUIDAsHex
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnection,
        SQLiteConnectionPool,
        SQLiteDatastore,
    )

    EVENTSOURCING: str | None = metadata.version("eventsourcing")
except ImportError:  # the bench extra is not installed: that system is reported, not dropped
    EVENTSOURCING = None


class Unavailable(Exception):
    """The system cannot run here (a library is missing); the reason is reported."""


class System:
    """One session store under test.

    ``by_append``: the workloads feed it ``append(new entries)`` rather than
    ``save(whole session)``.  ``can_append`` / ``can_delete`` say whether
    :meth:`append` / :meth:`delete_tree` mean anything for the design."""

    name = "?"
    key = sync = ""  # set by make(), for reopen()
    by_append = False
    can_append = False
    can_delete = False

    def __init__(self, path: str) -> None:
        self.path = path

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        raise NotImplementedError

    def append(self, session_id: str, entries: Sequence[Any], parent_id: str | None = None) -> None:
        raise NotImplementedError

    def load(self, session_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def delete_tree(self, root_id: str, ids: Sequence[str]) -> None:
        """Delete the session ``root_id`` and its descendants ``ids`` (and reclaim
        what the design reclaims)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class NullSystem(System):
    """Stores nothing, keeps a reference to what it was given: the baseline that the
    workload's own memory is measured with."""

    name = "(nothing: workload baseline)"
    can_append = can_delete = True

    def __init__(self, path: str = "") -> None:
        super().__init__(path)
        self.held: dict[str, Any] = {}

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        self.held[session_id] = data

    def append(self, session_id: str, entries: Sequence[Any], parent_id: str | None = None) -> None:
        self.held.setdefault(session_id, {"entries": []})["entries"].extend(entries)

    def load(self, session_id: str) -> dict[str, Any] | None:
        return self.held.get(session_id)

    def delete_tree(self, root_id: str, ids: Sequence[str]) -> None:
        for sid in ids:
            self.held.pop(sid, None)

    def close(self) -> None:
        self.held.clear()


def _limit(con: sqlite3.Connection, limit: int | None) -> None:
    if limit is not None:
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)


class JsonRow(System):
    """Flue 0.11.0: the whole session as one JSON value (``OneJsonRow``), rewritten by
    ``INSERT OR REPLACE`` on every save; delete is one ``DELETE`` per id."""

    can_delete = True

    def __init__(self, path: str, sync: str, *, create: bool = True, limit: int | None = LIMIT) -> None:
        super().__init__(path)
        self.name = "one JSON row, 2 MB limit" if limit else "one JSON row, no limit"
        if create:
            self.store = OneJsonRow(path, sync)
        else:  # reopen an existing file (OneJsonRow creates its table)
            self.store = OneJsonRow.__new__(OneJsonRow)
            self.store.con, self.store.dumps_options, self.store.n = connect(path, sync), {}, 0
        _limit(self.store.con, limit)

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        self.store.save(session_id, data)

    def load(self, session_id: str) -> dict[str, Any] | None:
        out: dict[str, Any] | None = self.store.load(session_id)
        return out

    def delete_tree(self, root_id: str, ids: Sequence[str]) -> None:
        con = self.store.con
        con.execute("BEGIN IMMEDIATE")
        con.executemany("DELETE FROM flue_sessions WHERE id = ?", ((sid,) for sid in ids))
        con.execute("COMMIT")

    def close(self) -> None:
        self.store.close()


class FlueRows(System):
    """Flue 0.11.1: one JSON row per entry, image base64 in 256K-character chunks.

    ``save()`` runs in one transaction: it reads every stored row of the session,
    builds each entry's stored form (image ``data`` replaced by
    ``__flue_image_chunks__:<n>``) and its JSON, and writes only the entries whose
    JSON or position differ (with their image chunks), deletes entries no longer
    there, and rewrites the session row (the session's JSON without ``entries``)."""

    name = "per-entry rows (Flue 0.11.1)"
    can_delete = True

    def __init__(self, path: str, sync: str, *, create: bool = True, limit: int | None = LIMIT) -> None:
        super().__init__(path)
        self.con = connect(path, sync)
        _limit(self.con, limit)
        self.n = 0
        if create:
            for sql in (
                "CREATE TABLE IF NOT EXISTS flue_sessions(id TEXT PRIMARY KEY, data TEXT, updated_at INTEGER)",
                "CREATE TABLE IF NOT EXISTS flue_session_entries(session_id TEXT, entry_id TEXT, position INTEGER, "
                "data TEXT, PRIMARY KEY(session_id, entry_id))",
                "CREATE INDEX IF NOT EXISTS flue_session_entries_position "
                "ON flue_session_entries(session_id, position)",
                "CREATE TABLE IF NOT EXISTS flue_image_chunks(owner_kind TEXT, owner_id TEXT, owner_part TEXT, "
                "image_id TEXT, chunk_index INTEGER, chunk_count INTEGER, data TEXT, "
                "PRIMARY KEY(owner_kind, owner_id, owner_part, image_id, chunk_index))",
            ):
                self.con.execute(sql)

    @staticmethod
    def stored_form(entry: Any) -> tuple[str, list[str]]:
        """The entry's JSON as stored (images replaced by markers) and the images'
        base64 texts, in marker order."""
        message = entry.get("message") if type(entry) is dict else None
        images: list[str] = []
        if (
            type(message) is dict
            and message.get("role") in ("user", "toolResult")
            and type(message.get("content")) is list
            and any(type(b) is dict and b.get("type") == "image" for b in message["content"])
        ):
            content = []
            for block in message["content"]:
                if type(block) is dict and block.get("type") == "image" and type(block.get("data")) is str:
                    images.append(block["data"])
                    block = {**block, "data": f"{FLUE_MARKER}{len(images) - 1}"}
                content.append(block)
            entry = {**entry, "message": {**message, "content": content}}
        return json.dumps(entry), images

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        con = self.con
        self.n += 1
        con.execute("BEGIN IMMEDIATE")
        try:
            stored = {
                eid: (pos, text)
                for eid, pos, text in con.execute(
                    "SELECT entry_id, position, data FROM flue_session_entries WHERE session_id = ?", (session_id,)
                )
            }
            seen = set()
            for position, entry in enumerate(data.get("entries") or ()):
                eid = entry["id"]
                seen.add(eid)
                text, images = self.stored_form(entry)
                old = stored.get(eid)
                if old is not None and old[0] == position and old[1] == text:
                    continue
                con.execute(
                    "INSERT OR REPLACE INTO flue_session_entries VALUES (?, ?, ?, ?)", (session_id, eid, position, text)
                )
                if old is not None:
                    self._drop_images(session_id, eid)
                for image_id, b64 in enumerate(images):
                    pieces = [b64[i : i + FLUE_CHUNK_CHARS] for i in range(0, len(b64), FLUE_CHUNK_CHARS)] or [""]
                    con.executemany(
                        "INSERT INTO flue_image_chunks VALUES ('session_entry', ?, ?, ?, ?, ?, ?)",
                        ((session_id, eid, str(image_id), k, len(pieces), p) for k, p in enumerate(pieces)),
                    )
            for eid in stored.keys() - seen:
                con.execute("DELETE FROM flue_session_entries WHERE session_id = ? AND entry_id = ?", (session_id, eid))
                self._drop_images(session_id, eid)
            head = json.dumps({k: v for k, v in data.items() if k != "entries"})
            con.execute("INSERT OR REPLACE INTO flue_sessions VALUES (?, ?, ?)", (session_id, head, self.n))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _drop_images(self, session_id: str, entry_id: str) -> None:
        self.con.execute(
            "DELETE FROM flue_image_chunks WHERE owner_kind = 'session_entry' AND owner_id = ? AND owner_part = ?",
            (session_id, entry_id),
        )

    def load(self, session_id: str) -> dict[str, Any] | None:
        con = self.con
        con.execute("BEGIN")
        try:
            row = con.execute("SELECT data FROM flue_sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return None
            entries = []
            for eid, text in con.execute(
                "SELECT entry_id, data FROM flue_session_entries WHERE session_id = ? ORDER BY position", (session_id,)
            ):
                entry = json.loads(text)
                if FLUE_MARKER in text:
                    for block in entry["message"]["content"]:
                        if type(block) is dict and str(block.get("data", "")).startswith(FLUE_MARKER):
                            block["data"] = "".join(
                                r[0]
                                for r in con.execute(
                                    "SELECT data FROM flue_image_chunks WHERE owner_kind = 'session_entry' "
                                    "AND owner_id = ? AND owner_part = ? AND image_id = ? ORDER BY chunk_index",
                                    (session_id, eid, block["data"][len(FLUE_MARKER) :]),
                                )
                            )
                entries.append(entry)
        finally:
            con.execute("COMMIT")
        out: dict[str, Any] = {}
        for key, value in json.loads(row[0]).items():  # entries go back just before leafId, as Flue does
            if key == "leafId":
                out["entries"] = entries
            out[key] = value
        out.setdefault("entries", entries)
        return out

    def delete_tree(self, root_id: str, ids: Sequence[str]) -> None:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        for sid in ids:
            con.execute("DELETE FROM flue_sessions WHERE id = ?", (sid,))
            con.execute("DELETE FROM flue_session_entries WHERE session_id = ?", (sid,))
            con.execute("DELETE FROM flue_image_chunks WHERE owner_kind = 'session_entry' AND owner_id = ?", (sid,))
        con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()


if EVENTSOURCING is not None:

    @dataclass(frozen=True)
    class EntryAdded(DomainEvent):
        """One session entry, appended."""

        entry: dict[str, Any]

    @dataclass(frozen=True)
    class FieldsSet(DomainEvent):
        """The session's top-level fields, ``entries`` a placeholder (``None``) that
        keeps its place in the key order."""

        fields: dict[str, Any]

    class _Pool(SQLiteConnectionPool):
        """The library's pool (it sets WAL itself), plus the run's ``synchronous``
        and length limit on every connection it makes."""

        def __init__(self, db_name: str, sync: str, limit: int | None) -> None:
            self.sync, self.limit = sync, limit
            super().__init__(db_name=db_name)

        def _create_connection(self) -> SQLiteConnection:
            conn = super()._create_connection()
            raw: sqlite3.Connection = conn._sqlite_conn
            raw.execute(f"PRAGMA synchronous={self.sync}")
            _limit(raw, self.limit)
            return conn

    class _Datastore(SQLiteDatastore):
        def __init__(self, path: str, sync: str, limit: int | None) -> None:
            super().__init__(path)
            self.pool.close()
            self.pool = _Pool(path, sync, limit)


class Eventsourcing(System):
    """The ``eventsourcing`` library: ``EventStore(Mapper(JSONTranscoder()),
    SQLiteApplicationRecorder(...))``.  ``save()`` puts, in one ``insert_events``
    transaction, one ``EntryAdded`` per entry beyond those already stored (the
    adapter knows how many it stored, as an aggregate knows its version: entries are
    assumed append-only, which favours this system) and a ``FieldsSet`` when the
    top-level fields changed; ``load()`` selects all of the session's events and
    decodes and applies every one (full replay, no snapshots).  The library has no
    delete."""

    can_append = True

    def __init__(self, path: str, sync: str, *, create: bool = True, limit: int | None = LIMIT) -> None:
        if EVENTSOURCING is None:
            raise Unavailable(INSTALL_HINT)
        super().__init__(path)
        self.name = f"eventsourcing {EVENTSOURCING} (SQLite recorder)"
        self.datastore = _Datastore(path, sync, limit)
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        if create:
            self.recorder.create_table()
        transcoder = JSONTranscoder()
        transcoder.register(UUIDAsHex())
        transcoder.register(DatetimeAsISO())
        self.events: EventStore[UUID] = EventStore(Mapper(transcoder), self.recorder)
        self.heads: dict[str, tuple[int, int, str]] = {}  # session: (version, entries stored, fields JSON)

    @staticmethod
    def originator(session_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, session_id)

    def _head(self, session_id: str) -> tuple[int, int, str]:
        head = self.heads.get(session_id)
        if head is None:  # not written by this process: find out by replaying
            data = self.load(session_id)
            version = len(self.recorder.select_events(self.originator(session_id)))
            head = (version, len(data["entries"]), "") if data else (0, 0, "")
        return head

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        version, known, fields_json = self._head(session_id)
        oid, now = self.originator(session_id), DomainEvent.create_timestamp()
        entries = data.get("entries") or []
        new: list[DomainEvent] = [
            EntryAdded(originator_id=oid, originator_version=version + i, timestamp=now, entry=e)
            for i, e in enumerate(entries[known:], 1)
        ]
        fields = {k: (None if k == "entries" else v) for k, v in data.items()}
        encoded = json.dumps(fields)
        if encoded != fields_json:
            new.append(
                FieldsSet(originator_id=oid, originator_version=version + len(new) + 1, timestamp=now, fields=fields)
            )
        self.events.put(new)
        self.heads[session_id] = (version + len(new), len(entries), encoded)

    def append(self, session_id: str, entries: Sequence[Any], parent_id: str | None = None) -> None:
        version, known, fields_json = self._head(session_id)
        oid, now = self.originator(session_id), DomainEvent.create_timestamp()
        self.events.put(
            [
                EntryAdded(originator_id=oid, originator_version=version + i, timestamp=now, entry=e)
                for i, e in enumerate(entries, 1)
            ]
        )
        self.heads[session_id] = (version + len(entries), known + len(entries), fields_json)

    def load(self, session_id: str) -> dict[str, Any] | None:
        entries: list[Any] = []
        fields: dict[str, Any] | None = None
        for event in self.events.get(self.originator(session_id)):
            if isinstance(event, EntryAdded):
                entries.append(event.entry)
            else:
                fields = event.fields  # type: ignore[attr-defined]
        if fields is None:
            if not entries:
                return None
            return {"entries": entries, "leafId": entries[-1].get("id")}
        fields["entries"] = entries
        return fields

    def close(self) -> None:
        self.datastore.close()


class Raw(System):
    """The floor: ``executemany`` of zstd-compressed CBOR frames made before timing
    (:class:`RawRows`), one row per entry; ``load`` reads and decodes them."""

    name = "raw sqlite3 (floor)"
    by_append = can_append = True

    def __init__(self, path: str, sync: str, *, create: bool = True, limit: int | None = LIMIT) -> None:
        super().__init__(path)
        if create:
            self.rows = RawRows(path, sync)
        else:
            self.rows = RawRows.__new__(RawRows)
            self.rows.con, self.rows.seq = connect(path, sync), 0
        _limit(self.rows.con, limit)
        self.dctx = zstandard.ZstdDecompressor()

    def append(self, session_id: str, entries: Sequence[Any], parent_id: str | None = None) -> None:
        self.rows.insert(entries)  # frames: bytes made before timing

    def load(self, session_id: str) -> dict[str, Any] | None:
        dctx, loads = self.dctx, cbor2.loads
        entries = [loads(dctx.decompress(r[0])) for r in self.rows.con.execute("SELECT frame FROM events ORDER BY pos")]
        return {"entries": entries, "leafId": entries[-1]["id"]} if entries else None

    def close(self) -> None:
        self.rows.close()


class Eventlog(System):
    """eventlog, through ``save()`` or (``by_append``) ``append()``; a tree is deleted
    with ``delete(root)`` and reclaimed with ``compact()``."""

    can_append = can_delete = True

    def __init__(self, path: str, sync: str, *, by_append: bool = False, create: bool = True) -> None:
        super().__init__(path)
        self.by_append = by_append
        self.name = "eventlog append()" if by_append else "eventlog save()"
        self.store = eventlog.open(path, synchronous=sync)

    def save(self, session_id: str, data: dict[str, Any], parent_id: str | None = None) -> None:
        self.store.save(session_id, data, parent_id=parent_id)

    def append(self, session_id: str, entries: Sequence[Any], parent_id: str | None = None) -> None:
        self.store.append(session_id, entries, parent_id=parent_id)

    def load(self, session_id: str) -> dict[str, Any] | None:
        return self.store.load(session_id)

    def delete_tree(self, root_id: str, ids: Sequence[str]) -> None:
        self.store.delete(root_id)
        self.store.compact()

    def close(self) -> None:
        self.store.close()


Factory = Callable[[str, str, bool], System]

#: Every system by key: a factory ``(path, synchronous, create)``.
FACTORIES: dict[str, Factory] = {
    "json-2mb": lambda p, s, c: JsonRow(p, s, create=c),
    "json": lambda p, s, c: JsonRow(p, s, create=c, limit=None),
    "flue": lambda p, s, c: FlueRows(p, s, create=c),
    "eventsourcing": lambda p, s, c: Eventsourcing(p, s, create=c),
    "raw": lambda p, s, c: Raw(p, s, create=c),
    "eventlog-save": lambda p, s, c: Eventlog(p, s, create=c),
    "eventlog-append": lambda p, s, c: Eventlog(p, s, by_append=True, create=c),
}

#: Display names (also for systems that cannot be built here).
NAMES = {
    "json-2mb": "one JSON row, 2 MB limit",
    "json": "one JSON row, no limit",
    "flue": FlueRows.name,
    "eventsourcing": f"eventsourcing {EVENTSOURCING} (SQLite recorder)" if EVENTSOURCING else "eventsourcing",
    "raw": Raw.name,
    "eventlog-save": "eventlog save()",
    "eventlog-append": "eventlog append()",
}


def make(key: str, path: str, sync: str, *, create: bool = True) -> System:
    """Open system ``key`` on ``path``; :class:`Unavailable` when it cannot run here."""
    system = FACTORIES[key](path, sync, create)
    system.key, system.sync = key, sync
    return system


def reopen(system: System) -> System:
    """Open ``system``'s file again (close the old one first): a fresh connection,
    no caches."""
    if isinstance(system, NullSystem):
        return system
    return make(system.key, system.path, system.sync, create=False)


def digest(value: Any) -> str:
    """A digest of ``value``'s content (key order ignored), to check a load."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()


def _resident() -> int | None:
    """This process's resident memory now, in bytes (Linux only)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _high_water() -> int | None:
    """The most resident memory this process has had, in bytes (Linux only)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cold_load_main(argv: list[str]) -> int:
    """In a fresh process: open system ``argv[0]`` on file ``argv[1]`` (synchronous
    ``argv[2]``), load session ``argv[3]``; print JSON ``{open, load, entries,
    digest, rss}`` (seconds; ``rss``: the process's high-water resident memory after
    the load minus its resident memory before the open, native memory included, on
    Linux), or with ``--trace`` ``{peak}``: tracemalloc's peak over open and load,
    the loaded session included."""
    key, path, sync, sid = argv[:4]
    trace = "--trace" in argv
    if trace:
        tracemalloc.start()
    before = _resident()
    t0 = time.perf_counter()
    system = make(key, path, sync, create=False)
    t1 = time.perf_counter()
    data = system.load(sid)
    t2 = time.perf_counter()
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out: dict[str, Any] = {"peak": peak}
    else:
        entries = data["entries"] if data else []
        out = {"open": t1 - t0, "load": t2 - t1, "entries": len(entries), "digest": digest(data)}
        high = _high_water()
        if before is not None and high is not None:
            out["rss"] = max(0, high - before)
    system.close()
    print(json.dumps(out))
    return 0


def cold_load(key: str, path: str, sync: str, session_id: str, *, trace: bool = False) -> dict[str, Any]:
    """Run :func:`cold_load_main` in a new Python process (imports done before the
    clock starts) and return what it printed."""
    code = "import sys; from bench.systems import cold_load_main; sys.exit(cold_load_main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, key, path, sync, session_id, *(["--trace"] if trace else [])]
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
