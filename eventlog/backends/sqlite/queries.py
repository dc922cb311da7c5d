"""Statements the SQLite backend's units of work share: chunks by address, the
references of a holder, and deleting events and snapshots with their references.
Every list of values is bound in batches of at most :data:`.schema.MAX_PARAMS`."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ...backend import Chunk, Head, MissingChunks
from ...errors import CorruptionError
from . import rows
from .connection import Database
from .schema import EVENT_REF, MAX_PARAMS, SNAPSHOT_REF


def marks(n: int) -> str:
    return ",".join("?" * n)


class Queries:
    """The statements, over one :class:`~.connection.Database`."""

    db: Database

    def _live_head(self, sid: int) -> Head | None:
        """The live incarnation ``sid``."""
        row = self.db.row(rows.SELECT_HEAD + "WHERE sid = ? AND deleted_ms IS NULL", (sid,))
        return None if row is None else rows.head(row)

    def _cids(self, hashes: Collection[bytes]) -> dict[bytes, int]:
        """``hash -> cid`` of the stored chunks among ``hashes``."""
        wanted = list(hashes)
        found: dict[bytes, int] = {}
        for i in range(0, len(wanted), MAX_PARAMS):
            batch = wanted[i : i + MAX_PARAMS]
            for h, cid in self.db.rows(f"SELECT hash, cid FROM chunks WHERE hash IN ({marks(len(batch))})", batch):
                if h not in batch or type(cid) is not int:  # found through the index, but the row says otherwise
                    raise CorruptionError(f"the chunks table is damaged: its index and row {cid!r:.40} disagree")
                found[h] = cid
        return found

    def _store_chunks(self, chunks: Sequence[Chunk], refs: Collection[bytes]) -> dict[bytes, int]:
        """Inside a write: store those of ``chunks`` that ``refs`` names and are
        absent; ``hash -> cid`` of every chunk ``refs`` names, or
        :class:`~eventlog.backend.MissingChunks` for the ones neither stored nor
        given (before anything is written)."""
        if not refs:
            return {}
        refs = set(refs)
        found = self._cids(refs)
        if len(found) == len(refs):
            return found
        given = {c.hash: c for c in chunks}
        missing = [h for h in refs if h not in found]
        lost = [h for h in missing if h not in given]
        if lost:
            raise MissingChunks(lost)
        for h in missing:
            c = given[h]
            cur = self.db.run(
                "INSERT INTO chunks(hash, flags, size, data) VALUES (?, ?, ?, ?)", (c.hash, c.flags, c.size, c.data)
            )
            assert cur.lastrowid is not None
            found[h] = cur.lastrowid
        return found

    def _add_refs(self, kind: int, holder: int, cids: Collection[int]) -> None:
        """Record that a holder uses chunks ``cids`` (idempotent)."""
        unique = sorted(set(cids))
        per = MAX_PARAMS // 3
        for i in range(0, len(unique), per):
            batch = unique[i : i + per]
            params: list[int] = []
            for cid in batch:
                params += (kind, holder, cid)
            self.db.run(f"INSERT OR IGNORE INTO refs(kind, holder, cid) VALUES {','.join(['(?, ?, ?)'] * len(batch))}",
                        params)  # fmt: skip

    def _free_unused(self, cids: Sequence[int]) -> None:
        """Delete those of chunks ``cids`` that nothing refers to any more."""
        for i in range(0, len(cids), MAX_PARAMS):
            batch = cids[i : i + MAX_PARAMS]
            unused = "NOT EXISTS (SELECT 1 FROM refs r WHERE r.cid = chunks.cid)"
            self.db.run(f"DELETE FROM chunks WHERE cid IN ({marks(len(batch))}) AND {unused}", batch)

    def _drop_snapshots(self, pick: str, params: Sequence[object]) -> list[int]:
        """Delete the snapshots ``pick`` (a query of their ids) with their refs; the
        ids of the chunks they used, for :meth:`_free_unused` once every new
        reference of the transaction is recorded (freeing earlier would free a chunk
        a snapshot written in the same transaction is about to refer to)."""
        held = f"SELECT cid FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})"
        dropped = [r[0] for r in self.db.rows(held, params)]
        self.db.run(f"DELETE FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})", params)
        self.db.run(f"DELETE FROM snapshots WHERE id IN ({pick})", params)
        return dropped

    def _purge_events(self, sid: int, upto: int, limit: int) -> int:
        """Delete up to ``limit`` events of ``sid`` at or below ``upto``, oldest
        first, with their refs; how many were deleted."""
        pick = "SELECT pos FROM events WHERE sid = ? AND seq <= ? ORDER BY seq LIMIT ?"
        self.db.run(f"DELETE FROM refs WHERE kind = {EVENT_REF} AND holder IN ({pick})", (sid, upto, limit))
        n: int = self.db.run(f"DELETE FROM events WHERE pos IN ({pick})", (sid, upto, limit)).rowcount
        return n

    def _purge_snapshots(self, sid: int, below: int, limit: int) -> int:
        """Delete up to ``limit`` snapshots of ``sid`` below ``below``, with their
        refs (their chunks are left to :meth:`free_chunks`); how many were deleted."""
        pick = "SELECT id FROM snapshots WHERE sid = ? AND seq < ? LIMIT ?"
        self.db.run(f"DELETE FROM refs WHERE kind = {SNAPSHOT_REF} AND holder IN ({pick})", (sid, below, limit))
        n: int = self.db.run(f"DELETE FROM snapshots WHERE id IN ({pick})", (sid, below, limit)).rowcount
        return n
