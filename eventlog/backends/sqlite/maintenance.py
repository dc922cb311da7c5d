"""The SQLite backend's compaction steps, its own integrity check and its statistics
(see :class:`eventlog.backend.Backend`)."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from typing import Any

from ...backend import Chunk, Freed, Head, Purged, advance, check_hashes, check_limit, check_sid
from ...errors import CorruptionError, InvalidValueError
from . import rows
from .queries import Queries
from .schema import EVENT_REF, SESSION_COLUMN_NAMES, SESSION_COLUMNS, SESSION_INDEXES, SESSION_REF, SNAPSHOT_REF

#: Everything, as a sequence number bound.
_ALL = 1 << 62


class Maintenance(Queries):
    # ------------------------------------------------------------------ compaction steps

    def counts(self) -> tuple[int, int, int]:
        row = self.db.row(
            "SELECT (SELECT count(*) FROM sessions WHERE deleted_ms IS NULL), "
            "(SELECT count(*) FROM sessions WHERE deleted_ms IS NOT NULL), (SELECT count(*) FROM chunks)"
        )
        return int(row[0]), int(row[1]), int(row[2])

    def dead(self, limit: int) -> list[int]:
        check_limit(limit)
        found = self.db.rows("SELECT sid FROM sessions WHERE deleted_ms IS NOT NULL LIMIT ?", (limit,))
        return rows.ints((r[0] for r in found), "sessions")

    def purge(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")
        with self.db.write():
            row = self.db.row("SELECT deleted_ms FROM sessions WHERE sid = ?", (sid,))
            if row is None:
                return Purged(0, 0, True)
            if row[0] is None:
                raise InvalidValueError(f"session row {sid} is live: only an ended incarnation is purged")
            events = self._purge_events(sid, _ALL, batch)
            snapshots = self._purge_snapshots(sid, _ALL, batch)
            done = not events and not snapshots
            if done:
                self.db.run("DELETE FROM refs WHERE kind = ? AND holder = ?", (SESSION_REF, sid))
                self.db.run("DELETE FROM sessions WHERE sid = ? AND deleted_ms IS NOT NULL", (sid,))
        return Purged(events, snapshots, done)

    def scrub(self) -> None:
        """Rewrite the sessions table and its indexes.  Session rows are updated on
        every write, and SQLite may leave old copies of a row in the free space of a
        page that stays in use; ``secure_delete`` zeroes a row only where it is
        deleted.  A fresh table leaves no trace of deleted sessions' ids."""
        with self.db.write():
            q = self.db.run
            q(f"CREATE TABLE sessions_new ({SESSION_COLUMNS})")
            q(f"INSERT INTO sessions_new SELECT {SESSION_COLUMN_NAMES} FROM sessions")
            q("DELETE FROM sqlite_sequence WHERE name = 'sessions_new'")
            q("INSERT INTO sqlite_sequence(name, seq) "
              "SELECT 'sessions_new', seq FROM sqlite_sequence WHERE name = 'sessions'")  # fmt: skip
            q("DROP TABLE sessions")
            q("ALTER TABLE sessions_new RENAME TO sessions")
            for statement in SESSION_INDEXES:
                q(statement)

    def legacy(self, after: int, limit: int) -> list[Head]:
        check_limit(limit)
        found = self.db.rows(
            rows.SELECT_HEAD + "WHERE sid > ? AND deleted_ms IS NULL AND EXISTS "
            f"(SELECT 1 FROM refs r WHERE r.kind = {SESSION_REF} AND r.holder = sessions.sid) ORDER BY sid LIMIT ?",
            (after, limit),
        )
        return [rows.head(r) for r in found]

    def adopt_refs(
        self, sid: int, events: Mapping[int, Collection[bytes]], snapshots: Mapping[int, Collection[bytes]]
    ) -> None:
        check_sid(sid)
        for held in (*events.values(), *snapshots.values()):
            check_hashes(held, "refs")
        with self.db.write():
            for kind, table, key, holders in (
                (EVENT_REF, "events", "pos", events),
                (SNAPSHOT_REF, "snapshots", "id", snapshots),
            ):
                for seq, hashes in holders.items():
                    row = self.db.row(f"SELECT {key} FROM {table} WHERE sid = ? AND seq = ?", (sid, seq))
                    if row is None:
                        continue
                    self._add_refs(kind, rows.ints(row, table)[0], self._store_chunks((), hashes).values())
            self.db.run("DELETE FROM refs WHERE kind = ? AND holder = ?", (SESSION_REF, sid))

    def trim(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")
        with self.db.write():
            row = self.db.row("SELECT base_seq FROM sessions WHERE sid = ? AND deleted_ms IS NULL", (sid,))
            if row is None or not rows.ints(row, "sessions")[0]:
                return Purged(0, 0, True)
            events = self._purge_events(sid, row[0], batch)
            snapshots = self._purge_snapshots(sid, row[0], batch)
        return Purged(events, snapshots, not events and not snapshots)

    def free_chunks(self, after: bytes, batch: int) -> Freed:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(batch, "batch")
        with self.db.write():
            row = self.db.row(
                "SELECT max(hash), count(*) FROM (SELECT hash FROM chunks WHERE hash > ? ORDER BY hash LIMIT ?)",
                (after, batch),
            )
            last, n = row if row else (None, 0)
            if not n:
                return Freed(None, 0, 0)
            last = advance(after, last, "chunks")
            garbage = (
                "SELECT cid FROM chunks c WHERE hash > ? AND hash <= ? "
                "AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = c.cid)"
            )
            freed, size = self.db.row(
                f"SELECT count(*), coalesce(sum(length(data)), 0) FROM chunks WHERE cid IN ({garbage})", (after, last)
            )
            if freed:
                self.db.run(f"DELETE FROM chunks WHERE cid IN ({garbage})", (after, last))
        return Freed(last, freed, size)

    # ------------------------------------------------------------------ maintenance

    def checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it; ``False`` when a reader
        elsewhere kept it from finishing."""
        if not self.db.wal:
            return True
        with self.db.turns.turn():  # TRUNCATE waits for writers: it takes its turn like one
            row = self.db.row("PRAGMA wal_checkpoint(TRUNCATE)")
        return row is not None and row[0] == 0

    def vacuum(self) -> None:
        """Rewrite the file without free pages (needs about its size in free space)."""
        with self.db.turns.turn():
            self.db.run("VACUUM")

    def integrity(self, limit: int) -> list[str]:
        check_limit(limit)
        out: list[str] = []
        found = self.db.rows(f"PRAGMA integrity_check({int(limit)})")
        if [tuple(r) for r in found] != [("ok",)]:
            out += (f"the SQLite file is damaged: {r[0]}" for r in found)
        out += self._counter_problems()
        for kind, holder, cid in self.db.rows(
            "SELECT kind, holder, cid FROM refs r WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.cid = r.cid) "
            f"OR (kind = {EVENT_REF} AND NOT EXISTS (SELECT 1 FROM events e WHERE e.pos = r.holder)) "
            f"OR (kind = {SNAPSHOT_REF} AND NOT EXISTS (SELECT 1 FROM snapshots n WHERE n.id = r.holder)) "
            f"OR (kind = {SESSION_REF} AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = r.holder)) LIMIT ?",
            (limit,),
        ):
            what = ("event", "snapshot", "session")[kind] if kind in (0, 1, 2) else f"kind {kind!r}"
            out.append(f"ref from {what} {holder} to chunk {cid}: its chunk or holder is missing")
        b = self.db.max_cell_bytes
        for table, rowid, size in self.db.rows(
            "SELECT 'events', pos, length(frame) + 32 FROM events WHERE length(frame) + 32 > ? "
            "UNION ALL SELECT 'snapshots', id, length(frame) + 24 FROM snapshots WHERE length(frame) + 24 > ? "
            "UNION ALL SELECT 'chunks', cid, length(data) + length(hash) + 24 FROM chunks "
            "WHERE length(data) + length(hash) + 24 > ? "
            "UNION ALL SELECT 'sessions', sid, length(CAST(name AS BLOB)) + coalesce(length(CAST(parent AS BLOB)), 0) "
            "+ 80 FROM sessions WHERE length(CAST(name AS BLOB)) + coalesce(length(CAST(parent AS BLOB)), 0) + 80 > ? "
            "LIMIT ?",
            (b, b, b, b, limit),
        ):
            out.append(f"{table} row {rowid} holds {size} bytes, over the budget of {b}")
        orphans = self.db.row(
            "SELECT (SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = e.sid))"
            " + (SELECT count(*) FROM snapshots n WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = n.sid))"
        )[0]
        if orphans:
            out.append(f"{orphans} events or snapshots belong to no session")
        for name, seq in self.db.rows(
            "SELECT s.name, n.seq FROM snapshots n JOIN sessions s ON s.sid = n.sid "
            "WHERE typeof(n.seq) != 'integer' LIMIT ?",
            (limit,),
        ):
            out.append(f"session {name!r:.200}: a snapshot is at position {seq!r:.40}, not in the log: "
                       "its row is damaged")  # fmt: skip
        # Rows the reads would refuse (CorruptionError) or, for a frame that is not a
        # blob, read as the bytes of whatever it holds.
        for table, rowid, wrong in (
            ("events", "pos", "typeof(sid) != 'integer' OR typeof(seq) != 'integer' OR typeof(ts_ms) != 'integer' "
                              "OR typeof(frame) != 'blob'"),
            ("snapshots", "id", "typeof(sid) != 'integer' OR typeof(frame) != 'blob'"),
            ("sessions", "sid", "typeof(name) != 'text' OR (parent IS NOT NULL AND typeof(parent) != 'text') "
                                "OR typeof(seq) != 'integer' OR typeof(base_seq) != 'integer' "
                                "OR typeof(created_ms) != 'integer' OR typeof(updated_ms) != 'integer' "
                                "OR typeof(snap_seq) != 'integer' OR typeof(snap_bytes) != 'integer' "
                                "OR typeof(snap_bytes_since) != 'integer' "
                                "OR (deleted_ms IS NOT NULL AND typeof(deleted_ms) != 'integer') "
                                "OR (entries IS NOT NULL AND typeof(entries) != 'integer')"),
        ):  # fmt: skip
            for (found,) in self.db.rows(f"SELECT {rowid} FROM {table} WHERE {wrong} LIMIT ?", (limit,)):
                out.append(f"the {table} table is damaged: row {found!r:.40} reads values of the wrong type")
        for (cid,) in self.db.rows(
            "SELECT cid FROM chunks WHERE typeof(hash) != 'blob' OR length(hash) != 32 OR typeof(flags) != 'integer' "
            "OR typeof(size) != 'integer' LIMIT ?",
            (limit,),
        ):
            out.append(f"the chunks table is damaged: row {cid} reads values of the wrong type")
        return out[:limit]

    def _counter_problems(self) -> list[str]:
        """Tables whose AUTOINCREMENT counter (in ``sqlite_sequence``) is missing or
        below their largest id: the next row could reuse an id (a position)."""
        counters = dict(self.db.rows("SELECT name, seq FROM sqlite_sequence"))
        # A table an older file is read through (a read-only open's shim view) has none.
        shown = {r[0] for r in self.db.rows("SELECT name FROM sqlite_temp_master WHERE type = 'view'")}
        out = []
        for table, column in (("sessions", "sid"), ("events", "pos"), ("snapshots", "id")):
            if table in shown:
                continue
            largest = self.db.row(f"SELECT max({column}) FROM {table}")[0]
            counter = counters.get(table)
            if largest is not None and not (type(counter) is int and counter >= largest):
                out.append(f"the id counter of {table} reads {counter!r}, below its largest id {largest}")
        return out

    def chunk_page(self, after: bytes, limit: int) -> list[Chunk]:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(limit)
        found = self.db.rows(
            "SELECT hash, flags, size, CAST(data AS BLOB) FROM chunks WHERE hash > ? ORDER BY hash LIMIT ?",
            (after, limit),
        )
        page = [rows.chunk(r) for r in found]
        for a, b in itertools.pairwise(page):
            if b.hash <= a.hash:
                raise CorruptionError("the chunks table is damaged: its index is out of order")
        return page

    def unreferenced_chunks(self) -> int:
        return int(
            self.db.row("SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = c.cid)")[0]
        )

    def stats(self) -> dict[str, Any]:
        """Row counts, stored bytes and the largest cell of each table."""
        q = self.db.run  # aggregate queries over integers only: nothing to decode
        out: dict[str, Any] = {}
        for table, col in (("events", "frame"), ("snapshots", "frame"), ("chunks", "data"), ("sessions", "name")):
            n, total, largest = q(
                f"SELECT count(*), coalesce(sum(length({col})), 0), coalesce(max(length({col})), 0) FROM {table}"
            ).fetchone()
            out[table] = {"rows": n, "bytes": total, "largest": largest}
        out["chunks"]["raw_bytes"] = q("SELECT coalesce(sum(size), 0) FROM chunks").fetchone()[0]
        out["refs"] = {"rows": q("SELECT count(*) FROM refs").fetchone()[0]}
        # Bytes of chunk content as referenced (each use counted) against as stored once.
        out["chunks"]["referenced_raw_bytes"] = q(
            "SELECT coalesce(sum(c.size), 0) FROM refs r JOIN chunks c ON c.cid = r.cid"
        ).fetchone()[0]
        out["snapshots"]["events_after_newest"] = q(
            "SELECT coalesce(sum(seq - max(snap_seq, base_seq)), 0), coalesce(max(seq - max(snap_seq, base_seq)), 0) "
            "FROM sessions WHERE deleted_ms IS NULL"
        ).fetchone()
        page_size = q("PRAGMA page_size").fetchone()[0]
        out["file_bytes"] = q("PRAGMA page_count").fetchone()[0] * page_size
        return out
