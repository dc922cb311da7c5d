"""Statements the PostgreSQL backend's units of work share: locking and storing the
chunks a write refers to, recording references, freeing chunks nothing refers to
(the two halves of the chunk-GC contract: see :mod:`.backend`), and dropping
snapshots with their references."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, overload

from ...backend import KEY_BYTES, Chunk, Head, KeyInUse, Limits, MissingChunks, RefKind
from ...errors import ConflictError, CorruptionError, StorageError
from .connection import Connection, Retry

#: Bytes a row's other columns take, counted against the cell budget as the other
#: backends count them, so a store moves between backends.
EVENT_ROOM, SNAPSHOT_ROOM, CHUNK_ROOM = 32, 24, 24 + 32
EVENT_REF, SNAPSHOT_REF = int(RefKind.EVENT), int(RefKind.SNAPSHOT)

HEAD = "name, sid, parent, seq, base_seq, created_ms, updated_ms, snap_seq, snap_bytes, snap_bytes_since, key"
SELECT_HEAD = f"SELECT {HEAD} FROM eventlog_sessions "


@overload
def text(name: str) -> bytes: ...
@overload
def text(name: None) -> None: ...
def text(name: str | None) -> bytes | None:
    """A session id as stored: its UTF-8 bytes (``bytea``, as PostgreSQL's ``text``
    cannot hold the NUL character a session id may have)."""
    return None if name is None else name.encode()


def name_of(raw: Any) -> str:
    """A session id as read back."""
    try:
        return bytes(raw).decode()
    except (UnicodeDecodeError, TypeError):
        raise CorruptionError(f"the eventlog_sessions table is damaged: a session id reads {raw!r:.80}") from None


def head_of(r: Sequence[Any]) -> Head:
    """A sessions row (:data:`SELECT_HEAD`) as a head."""
    if not (r[10] is None or (type(r[10]) is bytes and len(r[10]) == KEY_BYTES)):
        raise CorruptionError(f"the eventlog_sessions table is damaged: a key reads {r[10]!r:.80}")
    return Head(name_of(r[0]), r[1], None if r[2] is None else name_of(r[2]), *r[3:11])


class Queries:
    """The statements, over one :class:`~.connection.Connection`."""

    db: Connection
    limits: Limits

    def head(self, name: str) -> Head | None:
        row = self.db.row(SELECT_HEAD + "WHERE name = %s AND deleted_ms IS NULL", (text(name),))
        return None if row is None else head_of(row)

    def _fits(self, size: int, room: int) -> None:
        if size + room > self.limits.max_cell_bytes:
            raise StorageError(f"a cell was over the length limit while writing (eventlog bug): {size} bytes")

    def _store_chunks(self, chunks: Sequence[Chunk], refs: Collection[bytes]) -> dict[bytes, int]:
        """Lock the chunks ``refs`` names (``FOR KEY SHARE``: none of them can be
        freed until this transaction ends), store the given ones that are absent;
        ``hash -> cid`` of every one, or :class:`~eventlog.backend.MissingChunks`."""
        if not refs:
            return {}
        wanted = list(set(refs))
        lock = "SELECT hash, cid FROM eventlog_chunks WHERE hash = ANY(%s::bytea[]) ORDER BY cid FOR KEY SHARE"
        found = dict(self.db.rows(lock, (wanted,)))
        if len(found) == len(wanted):
            return found
        given = {c.hash: c for c in chunks}
        missing = [h for h in wanted if h not in found]
        lost = [h for h in missing if h not in given]
        if lost:
            raise MissingChunks(lost)
        new = [given[h] for h in sorted(missing)]
        for c in new:
            self._fits(len(c.data), CHUNK_ROOM)
        stored = self.db.rows(
            "INSERT INTO eventlog_chunks(hash, flags, size, data) "
            "SELECT * FROM unnest(%s::bytea[], %s::integer[], %s::bigint[], %s::bytea[]) "
            "ON CONFLICT (hash) DO NOTHING RETURNING hash, cid",
            ([c.hash for c in new], [c.flags for c in new], [c.size for c in new], [c.data for c in new]),
        )
        found.update(dict(stored))
        if len(found) < len(wanted):  # stored meanwhile by a writer that committed: lock them too
            rest = [h for h in wanted if h not in found]
            found.update(dict(self.db.rows(lock, (rest,))))
            if len(found) < len(wanted):  # and freed again: start over
                raise Retry()
        return found

    def _add_refs(self, kind: int, holder: int, cids: Collection[int]) -> None:
        if cids:
            self.db.run("INSERT INTO eventlog_refs(kind, holder, cid) SELECT %s, %s, unnest(%s::bigint[]) "
                        "ON CONFLICT DO NOTHING", (kind, holder, sorted(set(cids))))  # fmt: skip

    def _free_unused(self, cids: Collection[int]) -> tuple[int, int]:
        """Free those of chunks ``cids`` that nothing refers to: locked first,
        skipping any a writer in flight holds, then deleted where no reference
        (committed, or this transaction's) names them; ``(chunks, bytes)`` freed."""
        if not cids:
            return 0, 0
        locked = [r[0] for r in self.db.rows(
            "SELECT cid FROM eventlog_chunks c WHERE cid = ANY(%s::bigint[]) "
            "AND NOT EXISTS (SELECT 1 FROM eventlog_refs r WHERE r.cid = c.cid) ORDER BY cid "
            "FOR UPDATE SKIP LOCKED", (sorted(set(cids)),))]  # fmt: skip
        if not locked:
            return 0, 0
        row = self.db.row(
            "WITH gone AS (DELETE FROM eventlog_chunks c WHERE cid = ANY(%s::bigint[]) "
            "AND NOT EXISTS (SELECT 1 FROM eventlog_refs r WHERE r.cid = c.cid) RETURNING octet_length(data) AS n) "
            "SELECT count(*), coalesce(sum(n), 0)::bigint FROM gone",
            (locked,),
        )
        return int(row[0]), int(row[1])

    def _drop_snapshots(self, where: str, params: Sequence[Any]) -> list[int]:
        """Delete the snapshots ``where`` picks (a condition on ``eventlog_snapshots``)
        with their references; the chunks they used (to free once every new
        reference of the transaction is recorded)."""
        rows = self.db.rows(
            f"WITH gone AS (DELETE FROM eventlog_snapshots WHERE {where} RETURNING id), "
            f"refs AS (DELETE FROM eventlog_refs WHERE kind = {SNAPSHOT_REF} AND holder IN (SELECT id FROM gone) "
            "RETURNING cid) SELECT cid FROM refs",
            params,
        )
        return [r[0] for r in rows]

    def _live_head(self, sid: int, lock: bool = False) -> Head | None:
        row = self.db.row(SELECT_HEAD + "WHERE sid = %s AND deleted_ms IS NULL" + (" FOR UPDATE" if lock else ""),
                          (sid,))  # fmt: skip
        return None if row is None else head_of(row)

    def _key_free(self, key: bytes, name: str) -> None:
        if self.db.row("SELECT 1 FROM eventlog_sessions WHERE key = %s", (key,)) is not None:
            raise KeyInUse(key, name)

    def _conflict(self, name: str, seq: int) -> ConflictError:
        head = self.head(name)
        found = 0 if head is None else head.seq
        return ConflictError(f"the session's head is {found}, not {seq - 1}", session_id=name, seq=found)
