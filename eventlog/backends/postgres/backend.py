""":class:`PostgresBackend`: the protocol of :mod:`eventlog.backend` on a PostgreSQL
database, for stores shared by processes on several machines.

Every unit of work is one ``READ COMMITTED`` transaction
(:meth:`~.connection.Connection.unit`); the guarantees come from row locks and
constraints, checked by the server, not from one writer at a time:

* **Conditional appends.**  An event extends a session by ``UPDATE ... WHERE sid =
  ... AND seq = <the head the writer read>``: a concurrent writer of the same
  session waits for the row lock, then finds the head moved and writes nothing
  (:class:`~eventlog.ConflictError`).  ``UNIQUE (sid, seq)`` on the events and the
  unique live name of a session back it up; two writers creating one session race
  on that index, and the loser gets the conflict.
* **The chunk-GC contract** (rule 3 of :mod:`eventlog.backend`).  A write locks the
  chunks it refers to (``FOR KEY SHARE``, taken again by the foreign key from
  references to chunks) before recording its references, and holds the locks until
  it commits.  Freeing chunks locks them first, ``FOR UPDATE SKIP LOCKED``, so a
  chunk a writer in flight holds is skipped, and then, in a new statement (a fresh
  snapshot in ``READ COMMITTED``), deletes only those that no committed reference
  names.  A writer that meets a chunk being freed waits for the free to commit and
  then finds it gone: it stores the data it was given, or raises
  :class:`~eventlog.backend.MissingChunks` and the engine tries again with it.
* **Deadlocks** between writers that lock several sessions (a tree deleted whole)
  are avoided by locking them in one order, and retried if the server still
  reports one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ...backend import (
    Chunk,
    FeedRow,
    Head,
    KeyInUse,
    Limits,
    Listing,
    NewEvent,
    NewSnapshot,
    RefKind,
    StoredEvent,
    WholeSession,
    check_hashes,
    check_limit,
    check_name,
    check_position,
    check_sid,
    check_write,
    read_chunk,
)
from ...errors import ConflictError, InvalidValueError
from .connection import Connection
from .maintenance import ALL, Maintenance
from .queries import (
    CHUNK_ROOM,
    EVENT_REF,
    EVENT_ROOM,
    HEAD,
    SELECT_HEAD,
    SNAPSHOT_REF,
    SNAPSHOT_ROOM,
    head_of,
    name_of,
    text,
)
from .schema import setup
from .watching import PostgresWatcher, channel_of


def _cursor(cursor: Any) -> tuple[str, int]:
    """A feed cursor of this backend, ``"TX.POS"`` (``""``: the start)."""
    if cursor == "":
        return "0", 0
    tx, _, pos = cursor.partition(".") if type(cursor) is str else ("", "", "")
    if not (tx.isascii() and tx.isdigit() and pos.isascii() and pos.isdigit() and len(tx) < 21 and len(pos) < 20):
        raise InvalidValueError(f"a feed cursor must be one this store gave, not {cursor!r:.60}")
    return tx, int(pos)


#: Events read per query by :meth:`PostgresBackend.events`.
_PAGE = 256

SELECT_LISTING = (
    f"SELECT {HEAD}, "
    "(SELECT coalesce(sum(octet_length(frame)), 0) FROM eventlog_events e WHERE e.sid = s.sid)::bigint, "
    "(SELECT coalesce(sum(octet_length(frame)), 0) FROM eventlog_snapshots n WHERE n.sid = s.sid)::bigint, "
    "entries FROM eventlog_sessions s "
)


class PostgresBackend(Maintenance):
    """A store in the PostgreSQL database at ``url`` (a libpq URL,
    ``postgresql://user:password@host/dbname?options=-csearch_path%3Dname``), in the
    connection's current schema.  ``synchronous``: ``"OFF"`` commits without
    waiting for the server's WAL flush (``synchronous_commit = off``: the server
    may lose the last commits in a crash of its own, never corrupt); anything else
    waits.  ``busy_timeout``: seconds to wait for a lock another connection holds
    (``lock_timeout``).  ``new_meta`` is recorded when the store is created."""

    def __init__(
        self,
        url: str,
        *,
        max_cell_bytes: int = 2_000_000,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        new_meta: Mapping[str, str | bytes] | None = None,
        readonly: bool = False,
    ) -> None:
        check_position(max_cell_bytes, "max_cell_bytes", least=1024)
        self.url = url
        self.db = Connection(url, synchronous=synchronous, busy_timeout=busy_timeout, readonly=readonly)
        try:
            self.meta: Mapping[str, str | bytes] = setup(self.db, dict(new_meta or {}), readonly)
        except BaseException:
            self.db.close()
            raise
        self.readonly = readonly
        self.limits = Limits(max_cell_bytes, None)
        self.channel = channel_of(self.db.row("SELECT current_schema()")[0] or "")
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout

    def close(self) -> None:
        self.db.close()

    def reading(self) -> AbstractContextManager[None]:
        return self.db.read()

    # ------------------------------------------------------------------ sessions

    def head(self, name: str) -> Head | None:
        check_name(name)
        return super().head(name)

    def heads(self, after: int, limit: int) -> list[Head]:
        check_position(after, "after")
        check_limit(limit)
        found = self.db.rows(SELECT_HEAD + "WHERE sid > %s AND deleted_ms IS NULL ORDER BY sid LIMIT %s",
                             (after, limit))  # fmt: skip
        return [head_of(r) for r in found]

    def names(self) -> list[str]:
        found = self.db.rows("SELECT name FROM eventlog_sessions WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid")
        return [name_of(r[0]) for r in found]

    def children(self, parents: Sequence[str]) -> list[Head]:
        if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence):  # a str is a sequence of names
            raise InvalidValueError(f"parents must be a sequence of session ids, not {type(parents).__name__}")
        parents = list(parents)
        for name in parents:
            check_name(name, "parent")
        if not parents:
            return []
        found = self.db.rows(
            SELECT_HEAD + "WHERE parent = ANY(%s::bytea[]) AND deleted_ms IS NULL ORDER BY sid",
            ([text(p) for p in parents],),
        )
        return [head_of(r) for r in found]

    def info(self, name: str) -> Listing | None:
        check_name(name)
        row = self.db.row(SELECT_LISTING + "WHERE name = %s AND deleted_ms IS NULL AND seq > 0", (text(name),))
        return None if row is None else Listing(head_of(row), row[11] + row[12], row[13])

    def listing(self) -> list[Listing]:
        found = self.db.rows(SELECT_LISTING + "WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid")
        return [Listing(head_of(r), r[11] + r[12], r[13]) for r in found]

    # ------------------------------------------------------------------ reading

    def events(self, sid: int, after: int, upto: int | None = None) -> Iterator[StoredEvent]:
        check_sid(sid)
        check_position(after, "after")
        upto = ALL if upto is None else check_position(upto, "upto")
        while True:
            page = self.db.rows(
                "SELECT seq, pos, ts_ms, frame FROM eventlog_events WHERE sid = %s AND seq > %s AND seq <= %s "
                "ORDER BY seq LIMIT %s",
                (sid, after, upto, _PAGE),
            )
            for r in page:
                yield StoredEvent(r[0], r[1], r[2], r[3])
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def last_seq(self, sid: int) -> int | None:
        check_sid(sid)
        last: int | None = self.db.row("SELECT max(seq) FROM eventlog_events WHERE sid = %s", (sid,))[0]
        return last

    def entries(self, sid: int) -> int | None:
        check_sid(sid)
        row = self.db.row("SELECT entries FROM eventlog_sessions WHERE sid = %s", (sid,))
        found: int | None = None if row is None else row[0]
        return found

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        check_sid(sid)
        check_position(upto, "upto")
        found = self.db.rows("SELECT seq FROM eventlog_snapshots WHERE sid = %s AND seq <= %s ORDER BY seq DESC",
                             (sid, upto))  # fmt: skip
        return [r[0] for r in found]

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        check_sid(sid)
        check_position(seq, "seq")
        row = self.db.row("SELECT frame FROM eventlog_snapshots WHERE sid = %s AND seq = %s", (sid, seq))
        return None if row is None else row[0]

    def chunks(self, hashes: Collection[bytes]) -> dict[bytes, Chunk]:
        check_hashes(hashes)
        wanted = list(set(hashes))
        if not wanted:
            return {}
        found: dict[bytes, Chunk] = {}
        for r in self.db.rows("SELECT hash, flags, size, data FROM eventlog_chunks WHERE hash = ANY(%s::bytea[])",
                              (wanted,)):  # fmt: skip
            found[r[0]] = read_chunk(r[0], r[1], r[2], r[3], "the eventlog_chunks table")
        return found

    def chunk_sizes(self, hashes: Collection[bytes]) -> dict[bytes, int]:
        check_hashes(hashes)
        wanted = list(set(hashes))
        if not wanted:
            return {}
        rows = self.db.rows("SELECT hash, size FROM eventlog_chunks WHERE hash = ANY(%s::bytea[])", (wanted,))
        return {r[0]: r[1] for r in rows}

    def refs(self, kind: RefKind, sid: int, seq: int = 0) -> set[bytes]:
        check_sid(sid)
        check_position(seq, "seq")
        join = "SELECT c.hash FROM eventlog_refs r JOIN eventlog_chunks c ON c.cid = r.cid WHERE r.kind = %s AND "
        if kind == RefKind.EVENT:
            found = self.db.rows(join + "r.holder = (SELECT pos FROM eventlog_events WHERE sid = %s AND seq = %s)",
                                 (EVENT_REF, sid, seq))  # fmt: skip
        elif kind == RefKind.SNAPSHOT:
            found = self.db.rows(join + "r.holder = (SELECT id FROM eventlog_snapshots WHERE sid = %s AND seq = %s)",
                                 (SNAPSHOT_REF, sid, seq))  # fmt: skip
        elif kind == RefKind.SESSION:
            return set()  # whole-session references come from SQLite files of schema version 1 only
        else:
            raise InvalidValueError(f"kind must be a RefKind, not {kind!r:.40}")
        return {r[0] for r in found}

    def feed(self, after: str, limit: int) -> list[FeedRow]:
        # By (transaction id, position), of transactions older than every one still
        # running: see the schema's documentation (.schema) for why.
        tx, pos = _cursor(after)
        check_limit(limit)
        rows = self.db.rows(
            "SELECT e.tx::text, e.pos, e.sid, e.seq, e.ts_ms, e.frame, s.name, s.key FROM eventlog_events e "
            "JOIN eventlog_sessions s ON s.sid = e.sid WHERE (e.tx, e.pos) > (%s::xid8, %s) "
            "AND e.tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY e.tx, e.pos LIMIT %s",
            (tx, pos, limit),
        )
        return [FeedRow(f"{r[0]}.{r[1]}", name_of(r[6]), r[2], r[7], StoredEvent(r[3], r[1], r[4], r[5])) for r in rows]

    def watcher(self) -> PostgresWatcher:
        return PostgresWatcher(self.url, self.channel, self.busy_timeout)

    # ------------------------------------------------------------------ writing

    def append(
        self, events: Sequence[NewEvent], chunks: Sequence[Chunk] = (), *, whole_tree: bool = False
    ) -> list[Head]:
        events, chunks = check_write(events, chunks, whole_tree)
        if not events:
            return []
        for ev in events:
            self._fits(len(ev.frame), EVENT_ROOM)
        refs = frozenset().union(*(ev.refs for ev in events))
        if len(events) == 1 and not refs and events[0].sid is not None and not whole_tree:
            head = self._extend(events[0])  # what most writes are: one statement, one round trip
            self.db.notify(self.channel)
            return [head]
        # Sessions are locked in one order (existing ones by sid, then new ones by
        # name), so that two writers of the same sessions cannot deadlock.
        order = sorted(range(len(events)), key=lambda i: (events[i].sid is None, events[i].sid or 0, events[i].name))

        def work() -> list[Head]:
            heads: dict[int, Head] = {}
            for i in order:
                heads[i] = self._advance(events[i])
            if whole_tree:
                sids = {h.sid for h in heads.values()}
                for child in self.children([ev.name for ev in events]):
                    if child.sid not in sids:
                        raise ConflictError(f"session {child.name!r:.200} was created under it meanwhile",
                                            session_id=child.parent)  # fmt: skip
            cids = self._store_chunks(chunks, refs)
            out = []
            for i, ev in enumerate(events):
                head = heads[i]
                (pos,) = self.db.row("INSERT INTO eventlog_events(sid, seq, ts_ms, frame) VALUES (%s, %s, %s, %s) "
                                     "RETURNING pos", (head.sid, ev.seq, ev.ts_ms, ev.frame))  # fmt: skip
                self._add_refs(EVENT_REF, pos, [cids[h] for h in ev.refs])
                out.append(head)
            return out

        heads = self.db.unit(work, "appending")
        self.db.notify(self.channel)
        return heads

    def _extend(self, ev: NewEvent) -> Head:
        """An event that uses no chunks, on a session that exists: the head moved
        and the event inserted by one statement, which is its own transaction."""
        found = self.db.write_one(
            "WITH h AS (UPDATE eventlog_sessions SET seq = %s, updated_ms = %s, "
            "snap_bytes_since = snap_bytes_since + %s, entries = %s, deleted_ms = %s "
            "WHERE sid = %s AND name = %s AND seq = %s AND deleted_ms IS NULL "
            f"RETURNING {HEAD}), e AS (INSERT INTO eventlog_events(sid, seq, ts_ms, frame) "
            "SELECT sid, %s, %s, %s FROM h) SELECT * FROM h",
            (ev.seq, ev.ts_ms, ev.size, ev.entries, ev.ts_ms if ev.tombstone else None, ev.sid, text(ev.name),
             ev.seq - 1, ev.seq, ev.ts_ms, ev.frame),
            "appending",
        )  # fmt: skip
        if not found:
            raise self._conflict(ev.name, ev.seq)
        return head_of(found[0])

    def _advance(self, ev: NewEvent) -> Head:
        """Inside the unit: move the session's head to ``ev`` (creating the session
        for a first event), or :class:`~eventlog.ConflictError`."""
        tomb = ev.ts_ms if ev.tombstone else None
        if ev.sid is None:
            assert ev.key is not None  # (NewEvent checks it)
            if self.head(ev.name) is not None:
                raise self._conflict(ev.name, ev.seq)
            self._key_free(ev.key, ev.name)
            row = self.db.row(
                "INSERT INTO eventlog_sessions(name, parent, seq, created_ms, updated_ms, snap_bytes_since, entries, "
                "deleted_ms, key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
                f"RETURNING {HEAD}",
                (text(ev.name), text(ev.parent), ev.seq, ev.ts_ms, ev.ts_ms, ev.size, ev.entries, tomb, ev.key),
            )
            if row is None:  # created meanwhile by a writer that committed (or its key taken)
                if self.head(ev.name) is not None:
                    raise self._conflict(ev.name, ev.seq)
                raise KeyInUse(ev.key, ev.name)
            if ev.parent is not None:  # a tree being deleted whole waits for this child, or this for it
                self.db.run("SELECT 1 FROM eventlog_sessions WHERE name = %s AND deleted_ms IS NULL FOR SHARE",
                            (text(ev.parent),))  # fmt: skip
            return head_of(row)
        row = self.db.row(
            "UPDATE eventlog_sessions SET seq = %s, updated_ms = %s, snap_bytes_since = snap_bytes_since + %s, "
            "entries = %s, deleted_ms = %s WHERE sid = %s AND name = %s AND seq = %s AND deleted_ms IS NULL "
            f"RETURNING {HEAD}",
            (ev.seq, ev.ts_ms, ev.size, ev.entries, tomb, ev.sid, text(ev.name), ev.seq - 1),
        )
        if row is None:
            raise self._conflict(ev.name, ev.seq)
        return head_of(row)

    def put_session(self, session: WholeSession, chunks: Sequence[Chunk] = ()) -> Head:
        if not isinstance(session, WholeSession):
            raise InvalidValueError(f"session must be a WholeSession, not {type(session).__name__}")
        _, chunks = check_write((), chunks)
        w = session
        for e in w.events:
            self._fits(len(e.frame), EVENT_ROOM)
        for n in w.snapshots:
            self._fits(len(n.frame), SNAPSHOT_ROOM)
        snap_seq, snap_bytes, since = w.policy

        def work() -> Head:
            head = self.head(w.name)
            if head is not None:
                raise ConflictError("the session exists", session_id=w.name, seq=head.seq)
            self._key_free(w.key, w.name)
            cids = self._store_chunks(chunks, w.refs)
            row = self.db.row(
                "INSERT INTO eventlog_sessions(name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, "
                "snap_bytes_since, base_seq, entries, key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                f"ON CONFLICT DO NOTHING RETURNING {HEAD}",
                (text(w.name), text(w.parent), w.seq, w.created_ms, w.updated_ms, snap_seq, snap_bytes, since, w.base,
                 w.entries, w.key),
            )  # fmt: skip
            if row is None:
                found = self.head(w.name)
                if found is not None:
                    raise ConflictError("the session exists", session_id=w.name, seq=found.seq)
                raise KeyInUse(w.key, w.name)
            new = head_of(row)
            for e in w.events:
                (pos,) = self.db.row("INSERT INTO eventlog_events(sid, seq, ts_ms, frame) VALUES (%s, %s, %s, %s) "
                                     "RETURNING pos", (new.sid, e.seq, e.ts_ms, e.frame))  # fmt: skip
                self._add_refs(EVENT_REF, pos, [cids[h] for h in e.refs])
            for n in w.snapshots:
                (nid,) = self.db.row("INSERT INTO eventlog_snapshots(sid, seq, frame) VALUES (%s, %s, %s) "
                                     "RETURNING id", (new.sid, n.seq, n.frame))  # fmt: skip
                self._add_refs(SNAPSHOT_REF, nid, [cids[h] for h in n.refs])
            return new

        head = self.db.unit(work, "copying a session")
        self.db.notify(self.channel)
        return head

    def put_snapshot(self, snapshot: NewSnapshot, chunks: Sequence[Chunk] = ()) -> bool:
        if not isinstance(snapshot, NewSnapshot):
            raise InvalidValueError(f"snapshot must be a NewSnapshot, not {type(snapshot).__name__}")
        _, chunks = check_write((), chunks)
        s = snapshot

        def work() -> bool:
            head = self._live_head(s.sid, lock=True)
            if head is None or head.seq < s.seq or (s.floor and head.base >= s.seq):
                return False
            self._fits(len(s.frame), SNAPSHOT_ROOM)
            cids = self._store_chunks(chunks, s.refs)
            dropped = self._drop_snapshots("sid = %s AND seq = %s", (s.sid, s.seq))
            (nid,) = self.db.row("INSERT INTO eventlog_snapshots(sid, seq, frame) VALUES (%s, %s, %s) RETURNING id",
                                 (s.sid, s.seq, s.frame))  # fmt: skip
            self.db.run("UPDATE eventlog_sessions SET snap_seq = %s, snap_bytes = %s, snap_bytes_since = 0 "
                        "WHERE sid = %s AND snap_seq < %s", (s.seq, s.size, s.sid, s.seq))  # fmt: skip
            self._add_refs(SNAPSHOT_REF, nid, cids.values())
            base = head.base
            if s.floor:
                self.db.run("UPDATE eventlog_sessions SET base_seq = %s WHERE sid = %s", (s.seq, s.sid))
                base = s.seq
            if s.keep is not None:
                # All but the newest ``keep`` and the one at the base (the floor of a
                # compacted history, never a mere cache); what only they used is freed.
                dropped += self._drop_snapshots(
                    "sid = %s AND seq != %s AND seq < (SELECT min(seq) FROM (SELECT seq FROM eventlog_snapshots "
                    "WHERE sid = %s ORDER BY seq DESC LIMIT %s) newest)",
                    (s.sid, base, s.sid, s.keep),
                )
            self._free_unused(dropped)
            return True

        return self.db.unit(work, "writing a snapshot")

    def rewrite_chunk(self, chunk: Chunk) -> bool:
        if not isinstance(chunk, Chunk):
            raise InvalidValueError(f"chunk must be a Chunk, not {type(chunk).__name__}")
        self._fits(len(chunk.data), CHUNK_ROOM)

        def work() -> bool:
            cur = self.db.run("UPDATE eventlog_chunks SET flags = %s, size = %s, data = %s WHERE hash = %s",
                              (chunk.flags, chunk.size, chunk.data, chunk.hash))  # fmt: skip
            return bool(cur.rowcount == 1)

        return self.db.unit(work, "repairing a chunk")
