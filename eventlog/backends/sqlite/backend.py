""":class:`SQLiteBackend`: the protocol of :mod:`eventlog.backend` on one SQLite
file (or SQLite's private in-memory database): its reads and its units of work.
Each unit of work is one write transaction of :class:`~.connection.Database`
(the writer's turn, ``BEGIN IMMEDIATE`` ... ``COMMIT``), which SQLite serialises
against every other writer of the file: that is how the chunk-GC contract holds
here (rule 3 of :mod:`eventlog.backend`)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace

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
    parse_cursor,
)
from ...errors import ConflictError, CorruptionError, InvalidValueError, StorageError
from . import rows
from .connection import Database
from .errors import ERRORS, translate
from .maintenance import Maintenance
from .queries import marks
from .schema import EVENT_REF, MAX_PARAMS, SESSION_REF, SNAPSHOT_REF
from .watching import SQLiteWatcher


class SQLiteBackend(Maintenance):
    """A store in the SQLite file at ``path`` (see :class:`~.connection.Database`
    for the arguments; ``":memory:"``: SQLite's private in-memory database, with
    the same limits as a file)."""

    def __init__(
        self,
        path: str,
        *,
        max_cell_bytes: int,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        new_meta: dict[str, str | bytes] | None = None,
        readonly: bool = False,
    ) -> None:
        self.db = Database(
            path,
            max_cell_bytes=max_cell_bytes,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            new_meta=new_meta,
            readonly=readonly,
        )
        self.path = path
        self.meta: Mapping[str, str | bytes] = self.db.meta
        self.readonly = readonly
        self.limits = Limits(max_cell_bytes, MAX_PARAMS)

    def close(self) -> None:
        self.db.close()

    def reading(self) -> AbstractContextManager[None]:
        return self.db.read()

    # ------------------------------------------------------------------ sessions

    def head(self, name: str) -> Head | None:
        check_name(name)
        row = self.db.row(rows.SELECT_HEAD + "WHERE name = ? AND deleted_ms IS NULL", (name,))
        return None if row is None else rows.head(row)

    def heads(self, after: int, limit: int) -> list[Head]:
        check_position(after, "after")
        check_limit(limit)
        found = self.db.rows(rows.SELECT_HEAD + "WHERE sid > ? AND deleted_ms IS NULL ORDER BY sid LIMIT ?",
                             (after, limit))  # fmt: skip
        return [rows.head(r) for r in found]

    def names(self) -> list[str]:
        found = self.db.rows("SELECT name FROM sessions WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid")
        names = [r[0] for r in found]
        for name in names:
            if type(name) is not str:
                raise CorruptionError(f"the sessions table is damaged: read {name!r:.80}, a {type(name).__name__}")
        return names

    def children(self, parents: Sequence[str]) -> list[Head]:
        if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence):  # a str is a sequence of names
            raise InvalidValueError(f"parents must be a sequence of session ids, not {type(parents).__name__}")
        parents = list(parents)
        for name in parents:
            check_name(name, "parent")
        out: list[Head] = []
        for i in range(0, len(parents), MAX_PARAMS):
            batch = parents[i : i + MAX_PARAMS]
            found = self.db.rows(rows.SELECT_HEAD + f"WHERE parent IN ({marks(len(batch))}) AND deleted_ms IS NULL",
                                 batch)  # fmt: skip
            out += (rows.head(r) for r in found)
        return sorted(out, key=lambda h: h.sid)

    def info(self, name: str) -> Listing | None:
        check_name(name)
        row = self.db.row(rows.SELECT_LISTING + "WHERE name = ? AND deleted_ms IS NULL AND seq > 0", (name,))
        return None if row is None else rows.listing(row)

    def listing(self) -> list[Listing]:
        found = self.db.rows(rows.SELECT_LISTING + "WHERE seq > 0 AND deleted_ms IS NULL ORDER BY sid")
        return [rows.listing(r) for r in found]

    # ------------------------------------------------------------------ reading

    def events(self, sid: int, after: int, upto: int | None = None) -> Iterator[StoredEvent]:
        check_sid(sid)
        check_position(after, "after")
        upto = 1 << 62 if upto is None else check_position(upto, "upto")
        cur = self.db.run(
            "SELECT seq, pos, ts_ms, CAST(frame AS BLOB) FROM events WHERE sid = ? AND seq > ? AND seq <= ? "
            "ORDER BY seq",
            (sid, after, upto),
        )
        while True:
            try:
                page = cur.fetchmany(256)
            except ERRORS as e:
                raise translate(e, "reading events") from None
            if not page:
                return
            for r in page:
                if type(r[0]) is not int or type(r[1]) is not int or type(r[2]) is not int or type(r[3]) is not bytes:
                    seq = r[0] if type(r[0]) is int else None
                    raise CorruptionError("an events row is damaged (a column has the wrong type)", seq=seq)
                yield StoredEvent(*r)

    def last_seq(self, sid: int) -> int | None:
        check_sid(sid)
        last = self.db.row("SELECT max(seq) FROM events WHERE sid = ?", (sid,))[0]
        if last is not None and type(last) is not int:
            raise CorruptionError(f"the events table is damaged: a position reads {last!r:.40}")
        return last

    def entries(self, sid: int) -> int | None:
        check_sid(sid)
        row = self.db.row("SELECT entries FROM sessions WHERE sid = ?", (sid,))
        if row is None or row[0] is None:
            return None
        if type(row[0]) is not int:
            raise CorruptionError(f"the sessions table is damaged: an entries count reads {row[0]!r:.40}")
        return row[0]

    def snapshot_seqs(self, sid: int, upto: int) -> list[int]:
        check_sid(sid)
        check_position(upto, "upto")
        found = self.db.rows("SELECT seq FROM snapshots WHERE sid = ? AND seq <= ? ORDER BY seq DESC", (sid, upto))
        # A damaged position (NULL, text, a float) is a damaged snapshot: skipped, as
        # snapshots are a cache (integrity() reports it).
        return [r[0] for r in found if type(r[0]) is int]

    def snapshot(self, sid: int, seq: int) -> bytes | None:
        check_sid(sid)
        check_position(seq, "seq")
        row = self.db.row("SELECT CAST(frame AS BLOB) FROM snapshots WHERE sid = ? AND seq = ?", (sid, seq))
        if row is not None and type(row[0]) is not bytes:
            raise CorruptionError("a snapshots row is damaged (its frame is not a blob)", seq=seq)
        return None if row is None else row[0]

    def chunks(self, hashes: Collection[bytes]) -> dict[bytes, Chunk]:
        check_hashes(hashes)
        wanted = list(set(hashes))
        found: dict[bytes, Chunk] = {}
        for i in range(0, len(wanted), MAX_PARAMS):
            batch = wanted[i : i + MAX_PARAMS]
            for r in self.db.rows(
                f"SELECT hash, flags, size, CAST(data AS BLOB) FROM chunks WHERE hash IN ({marks(len(batch))})", batch
            ):
                chunk = rows.chunk(r)
                if chunk.hash not in batch:
                    raise CorruptionError("the chunks table is damaged: its index and a row disagree")
                found[chunk.hash] = chunk
        return found

    def chunk_sizes(self, hashes: Collection[bytes]) -> dict[bytes, int]:
        check_hashes(hashes)
        wanted = list(set(hashes))
        found: dict[bytes, int] = {}
        for i in range(0, len(wanted), MAX_PARAMS):
            batch = wanted[i : i + MAX_PARAMS]
            for h, size in self.db.rows(f"SELECT hash, size FROM chunks WHERE hash IN ({marks(len(batch))})", batch):
                if h not in batch or type(size) is not int:
                    raise CorruptionError(f"the chunks table is damaged: a row reads {size!r:.40}")
                found[h] = size
        return found

    def feed(self, after: str, limit: int) -> list[FeedRow]:
        # Positions are given in the single writer's transaction: they commit in order.
        start = parse_cursor(after)
        check_limit(limit)
        out = []
        for r in self.db.rows(
            "SELECT e.pos, e.sid, e.seq, e.ts_ms, CAST(e.frame AS BLOB), s.name, s.key FROM events e "
            "JOIN sessions s ON s.sid = e.sid WHERE e.pos > ? ORDER BY e.pos LIMIT ?",
            (start, limit),
        ):
            if any(type(v) is not int for v in r[:4]) or type(r[4]) is not bytes or type(r[5]) is not str:
                raise CorruptionError("an events row is damaged (a column has the wrong type)",
                                      seq=r[2] if type(r[2]) is int else None)  # fmt: skip
            key = r[6] if type(r[6]) is bytes else None
            out.append(FeedRow(str(r[0]), r[5], r[1], key, StoredEvent(r[2], r[0], r[3], r[4])))
        return out

    def watcher(self) -> SQLiteWatcher:
        return SQLiteWatcher(self.path, self.db)

    def refs(self, kind: RefKind, sid: int, seq: int = 0) -> set[bytes]:
        check_sid(sid)
        check_position(seq, "seq")
        join = "SELECT c.hash FROM refs r JOIN chunks c ON c.cid = r.cid WHERE r.kind = ? AND r.holder "
        if kind == RefKind.EVENT:
            found = self.db.rows(join + "= (SELECT pos FROM events WHERE sid = ? AND seq = ?)", (EVENT_REF, sid, seq))
        elif kind == RefKind.SNAPSHOT:
            found = self.db.rows(join + "= (SELECT id FROM snapshots WHERE sid = ? AND seq = ?)",
                                 (SNAPSHOT_REF, sid, seq))  # fmt: skip
        elif kind == RefKind.SESSION:
            found = self.db.rows(join + "= ?", (SESSION_REF, sid))
        else:
            raise InvalidValueError(f"kind must be a RefKind, not {kind!r:.40}")
        return {r[0] for r in found}

    # ------------------------------------------------------------------ writing

    def append(
        self, events: Sequence[NewEvent], chunks: Sequence[Chunk] = (), *, whole_tree: bool = False
    ) -> list[Head]:
        events, chunks = check_write(events, chunks, whole_tree)
        if not events:
            return []
        with self.db.write():
            heads = [self._before(ev) for ev in events]
            if whole_tree:
                self._whole(events, heads)
            cids = self._store_chunks(chunks, frozenset().union(*(ev.refs for ev in events)))
            out = []
            for ev, head in zip(events, heads, strict=True):
                frame = ev.frame
                cur = self.db.run(
                    "UPDATE sessions SET seq = ?, updated_ms = ?, snap_bytes_since = snap_bytes_since + ?, "
                    f"entries = ?{', deleted_ms = ?' if ev.tombstone else ''} WHERE sid = ? AND seq = ?",
                    (ev.seq, ev.ts_ms, ev.size, ev.entries, *((ev.ts_ms,) if ev.tombstone else ()), head.sid, head.seq),
                )
                if cur.rowcount != 1:
                    raise StorageError("session head moved during a write (eventlog bug)", session_id=ev.name)
                cur = self.db.run("INSERT INTO events(sid, seq, ts_ms, frame) VALUES (?, ?, ?, ?)",
                                  (head.sid, ev.seq, ev.ts_ms, frame))  # fmt: skip
                assert cur.lastrowid is not None
                if ev.refs:
                    self._add_refs(EVENT_REF, cur.lastrowid, [cids[h] for h in ev.refs])
                # (a Head made field by field: dataclasses.replace costs ~15 µs a call here)
                out.append(Head(head.name, head.sid, head.parent, ev.seq, head.base, head.created_ms, ev.ts_ms,
                                head.snap_seq, head.snap_bytes, head.snap_bytes_since + ev.size, head.key))  # fmt: skip
        return out

    def _before(self, ev: NewEvent) -> Head:
        """Inside the write: the head ``ev`` extends, checked (and for a new
        session, its row, made now)."""
        if ev.sid is None:
            assert ev.key is not None  # (NewEvent checks it)
            head = self.head(ev.name)
            if head is None or head.seq == 0:
                self._key_free(ev.key, ev.name)
            if head is None:
                cur = self.db.run(
                    "INSERT INTO sessions(name, parent, created_ms, updated_ms, key) VALUES (?, ?, ?, ?, ?)",
                    (ev.name, ev.parent, ev.ts_ms, ev.ts_ms, ev.key),
                )
                assert cur.lastrowid is not None
                return Head(ev.name, cur.lastrowid, ev.parent, 0, 0, ev.ts_ms, ev.ts_ms, 0, 0, 0, ev.key)
            if head.seq == 0:  # a row with no event yet (written by an older eventlog)
                self.db.run("UPDATE sessions SET key = ? WHERE sid = ?", (ev.key, head.sid))
                return replace(head, key=ev.key)
        else:
            head = self._live_head(ev.sid)
            if head is not None and head.name == ev.name and head.seq == ev.seq - 1:
                return head
            head = self.head(ev.name)
        found = 0 if head is None else head.seq
        raise ConflictError(f"the session's head is {found}, not {ev.seq - 1}", session_id=ev.name, seq=found)

    def _key_free(self, key: bytes, name: str) -> None:
        """Inside a write: :class:`~eventlog.backend.KeyInUse` if a stored
        incarnation has ``key``."""
        if self.db.row("SELECT 1 FROM sessions WHERE key = ?", (key,)) is not None:
            raise KeyInUse(key, name)

    def put_session(self, session: WholeSession, chunks: Sequence[Chunk] = ()) -> Head:
        if not isinstance(session, WholeSession):
            raise InvalidValueError(f"session must be a WholeSession, not {type(session).__name__}")
        _, chunks = check_write((), chunks)
        w = session
        refs = w.refs
        snap_seq, snap_bytes, since = w.policy
        with self.db.write():
            head = self.head(w.name)
            if head is not None and head.seq > 0:
                raise ConflictError("the session exists", session_id=w.name, seq=head.seq)
            self._key_free(w.key, w.name)
            cids = self._store_chunks(chunks, refs)
            if head is not None:  # a row with no event yet (written by an older eventlog): ended, for compaction
                self.db.run("UPDATE sessions SET deleted_ms = updated_ms WHERE sid = ?", (head.sid,))
            cur = self.db.run(
                "INSERT INTO sessions(name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes, "
                "snap_bytes_since, base_seq, entries, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (w.name, w.parent, w.seq, w.created_ms, w.updated_ms, snap_seq, snap_bytes, since, w.base, w.entries,
                 w.key),
            )  # fmt: skip
            sid = cur.lastrowid
            assert sid is not None
            for e in w.events:
                cur = self.db.run("INSERT INTO events(sid, seq, ts_ms, frame) VALUES (?, ?, ?, ?)",
                                  (sid, e.seq, e.ts_ms, e.frame))  # fmt: skip
                assert cur.lastrowid is not None
                if e.refs:
                    self._add_refs(EVENT_REF, cur.lastrowid, [cids[h] for h in e.refs])
            for n in w.snapshots:
                cur = self.db.run("INSERT INTO snapshots(sid, seq, frame) VALUES (?, ?, ?)", (sid, n.seq, n.frame))
                assert cur.lastrowid is not None
                if n.refs:
                    self._add_refs(SNAPSHOT_REF, cur.lastrowid, [cids[h] for h in n.refs])
            return Head(w.name, sid, w.parent, w.seq, w.base, w.created_ms, w.updated_ms, snap_seq, snap_bytes, since,
                        w.key)  # fmt: skip

    def _whole(self, events: Sequence[NewEvent], heads: list[Head]) -> None:
        """Every live child of the events' sessions must be among them."""
        sids = {h.sid for h in heads}
        for child in self.children([ev.name for ev in events]):
            if child.sid not in sids:
                raise ConflictError(f"session {child.name!r:.200} was created under it meanwhile",
                                    session_id=child.parent)  # fmt: skip

    def put_snapshot(self, snapshot: NewSnapshot, chunks: Sequence[Chunk] = ()) -> bool:
        if not isinstance(snapshot, NewSnapshot):
            raise InvalidValueError(f"snapshot must be a NewSnapshot, not {type(snapshot).__name__}")
        _, chunks = check_write((), chunks)
        s = snapshot
        with self.db.write():
            head = self._live_head(s.sid)
            if head is None or head.seq < s.seq or (s.floor and head.base >= s.seq):
                return False
            cids = self._store_chunks(chunks, s.refs)
            dropped = self._drop_snapshots("SELECT id FROM snapshots WHERE sid = ? AND seq = ?", (s.sid, s.seq))
            cur = self.db.run("INSERT INTO snapshots(sid, seq, frame) VALUES (?, ?, ?)", (s.sid, s.seq, s.frame))
            assert cur.lastrowid is not None
            self.db.run(
                "UPDATE sessions SET snap_seq = ?, snap_bytes = ?, snap_bytes_since = 0 WHERE sid = ? AND snap_seq < ?",
                (s.seq, s.size, s.sid, s.seq),
            )
            self._add_refs(SNAPSHOT_REF, cur.lastrowid, cids.values())
            base = head.base
            if s.floor:
                self.db.run("UPDATE sessions SET base_seq = ? WHERE sid = ?", (s.seq, s.sid))
                base = s.seq
            if s.keep is not None:
                # All but the newest ``keep`` and the one at the base (the floor of a
                # compacted history, never a mere cache); what only they used is freed.
                dropped += self._drop_snapshots(
                    "SELECT id FROM snapshots WHERE sid = ? AND seq != ? AND seq < ("
                    "SELECT min(seq) FROM (SELECT seq FROM snapshots WHERE sid = ? ORDER BY seq DESC LIMIT ?))",
                    (s.sid, base, s.sid, s.keep),
                )
            self._free_unused(dropped)
        return True

    def rewrite_chunk(self, chunk: Chunk) -> bool:
        if not isinstance(chunk, Chunk):
            raise InvalidValueError(f"chunk must be a Chunk, not {type(chunk).__name__}")
        with self.db.write():
            cur = self.db.run("UPDATE chunks SET flags = ?, size = ?, data = ? WHERE hash = ?",
                              (chunk.flags, chunk.size, chunk.data, chunk.hash))  # fmt: skip
            return bool(cur.rowcount == 1)
