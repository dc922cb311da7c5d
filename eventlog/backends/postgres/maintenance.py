"""The PostgreSQL backend's compaction steps, its own integrity check and its
statistics (see :class:`eventlog.backend.Backend`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ...backend import (
    KEY_BYTES,
    Chunk,
    Freed,
    Head,
    Purged,
    advance,
    check_hashes,
    check_limit,
    check_position,
    check_sid,
    read_chunk,
)
from ...errors import InvalidValueError, ReadOnlyError
from .queries import CHUNK_ROOM, EVENT_REF, EVENT_ROOM, SNAPSHOT_REF, SNAPSHOT_ROOM, Queries

#: Everything, as a position bound.
ALL = 1 << 62


class Maintenance(Queries):
    # ------------------------------------------------------------------ compaction steps

    def counts(self) -> tuple[int, int, int]:
        row = self.db.row(
            "SELECT (SELECT count(*) FROM eventlog_sessions WHERE deleted_ms IS NULL), "
            "(SELECT count(*) FROM eventlog_sessions WHERE deleted_ms IS NOT NULL), "
            "(SELECT count(*) FROM eventlog_chunks)"
        )
        return int(row[0]), int(row[1]), int(row[2])

    def dead(self, limit: int) -> list[int]:
        check_limit(limit)
        found = self.db.rows("SELECT sid FROM eventlog_sessions WHERE deleted_ms IS NOT NULL ORDER BY sid LIMIT %s",
                             (limit,))  # fmt: skip
        return [r[0] for r in found]

    def _remove(self, sid: int, upto: int, below: int, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` events at or below ``upto`` and snapshots below
        ``below`` of ``sid``, oldest first, with their references (their chunks are
        left to :meth:`free_chunks`)."""
        (events,) = self.db.row(
            "WITH gone AS (DELETE FROM eventlog_events WHERE pos IN (SELECT pos FROM eventlog_events WHERE sid = %s "
            "AND seq <= %s ORDER BY seq LIMIT %s) RETURNING pos), "
            f"r AS (DELETE FROM eventlog_refs WHERE kind = {EVENT_REF} AND holder IN (SELECT pos FROM gone)) "
            "SELECT count(*) FROM gone",
            (sid, upto, batch),
        )
        (snapshots,) = self.db.row(
            "WITH gone AS (DELETE FROM eventlog_snapshots WHERE id IN (SELECT id FROM eventlog_snapshots "
            "WHERE sid = %s AND seq < %s ORDER BY seq LIMIT %s) RETURNING id), "
            f"r AS (DELETE FROM eventlog_refs WHERE kind = {SNAPSHOT_REF} AND holder IN (SELECT id FROM gone)) "
            "SELECT count(*) FROM gone",
            (sid, below, batch),
        )
        return int(events), int(snapshots)

    def purge(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")

        def work() -> Purged:
            row = self.db.row("SELECT deleted_ms FROM eventlog_sessions WHERE sid = %s FOR UPDATE", (sid,))
            if row is None:
                return Purged(0, 0, True)
            if row[0] is None:
                raise InvalidValueError(f"session {sid} is live: only an ended incarnation is purged")
            events, snapshots = self._remove(sid, ALL, ALL, batch)
            done = not events and not snapshots
            if done:
                self.db.run("DELETE FROM eventlog_sessions WHERE sid = %s AND deleted_ms IS NOT NULL", (sid,))
            return Purged(events, snapshots, done)

        return self.db.unit(work, "purging a deleted session")

    def scrub(self) -> None:
        # Nothing of a removed session stays readable through the tables; the space
        # its rows took is given back by VACUUM (see vacuum()).
        self.db.unit(lambda: None, "scrubbing")

    def legacy(self, after: int, limit: int) -> list[Head]:
        check_position(after, "after")
        check_limit(limit)
        return []  # whole-session references come from SQLite files of schema version 1 only

    def adopt_refs(
        self, sid: int, events: Mapping[int, Collection[bytes]], snapshots: Mapping[int, Collection[bytes]]
    ) -> None:
        check_sid(sid)
        for held in (*events.values(), *snapshots.values()):
            check_hashes(held, "refs")

        def work() -> None:
            for kind, table, key, holders in (
                (EVENT_REF, "eventlog_events", "pos", events),
                (SNAPSHOT_REF, "eventlog_snapshots", "id", snapshots),
            ):
                for seq, hashes in holders.items():
                    row = self.db.row(f"SELECT {key} FROM {table} WHERE sid = %s AND seq = %s", (sid, seq))
                    if row is not None:
                        self._add_refs(kind, row[0], self._store_chunks((), hashes).values())

        self.db.unit(work, "recording references")

    def trim(self, sid: int, batch: int) -> Purged:
        check_sid(sid)
        check_limit(batch, "batch")

        def work() -> Purged:
            row = self.db.row("SELECT base_seq FROM eventlog_sessions WHERE sid = %s AND deleted_ms IS NULL "
                              "FOR UPDATE", (sid,))  # fmt: skip
            if row is None or not row[0]:
                return Purged(0, 0, True)
            events, snapshots = self._remove(sid, row[0], row[0], batch)
            return Purged(events, snapshots, not events and not snapshots)

        return self.db.unit(work, "trimming a history")

    def free_chunks(self, after: bytes, batch: int) -> Freed:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(batch, "batch")

        def work() -> Freed:
            page = self.db.rows("SELECT hash, cid FROM eventlog_chunks WHERE hash > %s ORDER BY hash LIMIT %s",
                                (after, batch))  # fmt: skip
            if not page:
                return Freed(None, 0, 0)
            last = advance(after, page[-1][0], "chunks")
            freed, size = self._free_unused([r[1] for r in page])
            return Freed(last, freed, size)

        return self.db.unit(work, "freeing chunks")

    # ------------------------------------------------------------------ maintenance

    def checkpoint(self) -> bool:
        """Every committed write is durable in PostgreSQL's own WAL: nothing to do."""
        self.db.live()
        return True

    def vacuum(self) -> None:
        """``VACUUM`` the store's tables: the space of removed rows becomes free for
        new rows of the same tables (the files do not shrink; ``VACUUM FULL``, which
        locks the tables while it rewrites them, gives it back to the system)."""
        if self.db.readonly:
            raise ReadOnlyError(f"{self.db.shown} was opened read-only")
        for table in ("eventlog_sessions", "eventlog_events", "eventlog_snapshots", "eventlog_chunks",
                      "eventlog_refs"):  # fmt: skip
            self.db.run(f"VACUUM {table}", None, "vacuuming")

    def integrity(self, limit: int) -> list[str]:
        check_limit(limit)
        out: list[str] = []
        for kind, holder, cid in self.db.rows(
            "SELECT kind, holder, cid FROM eventlog_refs r "
            "WHERE NOT EXISTS (SELECT 1 FROM eventlog_chunks c WHERE c.cid = r.cid) "
            f"OR (kind = {EVENT_REF} AND NOT EXISTS (SELECT 1 FROM eventlog_events e WHERE e.pos = r.holder)) "
            f"OR (kind = {SNAPSHOT_REF} AND NOT EXISTS (SELECT 1 FROM eventlog_snapshots n WHERE n.id = r.holder)) "
            f"OR kind NOT IN ({EVENT_REF}, {SNAPSHOT_REF}) LIMIT %s",
            (limit,),
        ):
            what = ("event", "snapshot")[kind] if kind in (0, 1) else f"kind {kind!r}"
            out.append(f"ref from {what} {holder} to chunk {cid}: its chunk or holder is missing")
        b = self.limits.max_cell_bytes
        for table, rowid, size in self.db.rows(
            f"SELECT 'events', pos, octet_length(frame) + {EVENT_ROOM} FROM eventlog_events "
            f"WHERE octet_length(frame) + {EVENT_ROOM} > %s "
            f"UNION ALL SELECT 'snapshots', id, octet_length(frame) + {SNAPSHOT_ROOM} FROM eventlog_snapshots "
            f"WHERE octet_length(frame) + {SNAPSHOT_ROOM} > %s "
            f"UNION ALL SELECT 'chunks', cid, octet_length(data) + {CHUNK_ROOM} FROM eventlog_chunks "
            f"WHERE octet_length(data) + {CHUNK_ROOM} > %s LIMIT %s",
            (b, b, b, limit),
        ):
            out.append(f"{table} row {rowid} holds {size} bytes, over the budget of {b}")
        orphans = self.db.row(
            "SELECT (SELECT count(*) FROM eventlog_events e WHERE NOT EXISTS "
            "(SELECT 1 FROM eventlog_sessions s WHERE s.sid = e.sid)) + (SELECT count(*) FROM eventlog_snapshots n "
            "WHERE NOT EXISTS (SELECT 1 FROM eventlog_sessions s WHERE s.sid = n.sid))"
        )[0]
        if orphans:
            out.append(f"{orphans} events or snapshots belong to no session")
        for (cid,) in self.db.rows("SELECT cid FROM eventlog_chunks WHERE octet_length(hash) != 32 LIMIT %s",
                                   (limit,)):  # fmt: skip
            out.append(f"the eventlog_chunks table is damaged: row {cid} has an address of the wrong length")
        for (sid,) in self.db.rows("SELECT sid FROM eventlog_sessions WHERE octet_length(key) != %s LIMIT %s",
                                   (KEY_BYTES, limit)):  # fmt: skip
            out.append(f"the eventlog_sessions table is damaged: row {sid} has a key of the wrong length")
        for table, column in (("eventlog_sessions", "sid"), ("eventlog_events", "pos"), ("eventlog_snapshots", "id"),
                              ("eventlog_chunks", "cid")):  # fmt: skip
            (sequence,) = self.db.row("SELECT pg_get_serial_sequence(%s, %s)", (table, column))
            largest = self.db.row(f"SELECT max({column}) FROM {table}")[0]
            counter, called = self.db.row(f"SELECT last_value, is_called FROM {sequence}")
            if largest is not None and not (called and counter >= largest):
                out.append(f"the id counter of {table} reads {counter!r}, below its largest id {largest}")
        return out[:limit]

    def chunk_page(self, after: bytes, limit: int) -> list[Chunk]:
        if type(after) is not bytes:
            raise InvalidValueError(f"after must be bytes, not {type(after).__name__}")
        check_limit(limit)
        found = self.db.rows("SELECT hash, flags, size, data FROM eventlog_chunks WHERE hash > %s ORDER BY hash "
                             "LIMIT %s", (after, limit))  # fmt: skip
        return [read_chunk(r[0], r[1], r[2], r[3], "the eventlog_chunks table") for r in found]

    def unreferenced_chunks(self) -> int:
        unused = "NOT EXISTS (SELECT 1 FROM eventlog_refs r WHERE r.cid = c.cid)"
        return int(self.db.row(f"SELECT count(*) FROM eventlog_chunks c WHERE {unused}")[0])

    def stats(self) -> dict[str, Any]:
        """Row counts, stored bytes and the largest cell of each table;
        ``file_bytes``: what the tables take on the server, indexes and TOAST
        included."""
        out: dict[str, Any] = {}
        for name, col in (("events", "frame"), ("snapshots", "frame"), ("chunks", "data"), ("sessions", "name")):
            table = f"eventlog_{name}"
            n, total, largest = self.db.row(
                f"SELECT count(*), coalesce(sum(octet_length({col})), 0)::bigint, "
                f"coalesce(max(octet_length({col})), 0) FROM {table}"
            )
            out[name] = {"rows": int(n), "bytes": int(total), "largest": int(largest)}
        out["chunks"]["raw_bytes"] = int(self.db.row("SELECT coalesce(sum(size), 0)::bigint FROM eventlog_chunks")[0])
        out["refs"] = {"rows": int(self.db.row("SELECT count(*) FROM eventlog_refs")[0])}
        out["chunks"]["referenced_raw_bytes"] = int(self.db.row(
            "SELECT coalesce(sum(c.size), 0)::bigint FROM eventlog_refs r JOIN eventlog_chunks c ON c.cid = r.cid"
        )[0])  # fmt: skip
        total, largest = self.db.row(
            "SELECT coalesce(sum(seq - greatest(snap_seq, base_seq)), 0)::bigint, "
            "coalesce(max(seq - greatest(snap_seq, base_seq)), 0) FROM eventlog_sessions WHERE deleted_ms IS NULL"
        )
        out["snapshots"]["events_after_newest"] = (int(total), int(largest))
        out["file_bytes"] = int(self.db.row(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
            "AND c.relkind = 'r' AND left(c.relname, 9) = 'eventlog_'"
        )[0])  # fmt: skip
        return out
