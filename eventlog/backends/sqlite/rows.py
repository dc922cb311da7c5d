"""Rows of the SQLite backend as the protocol's records: every value read is checked
for its type first (a damaged record can read NULL, text or a float where an integer
was written), and a row that reads wrong is :class:`~eventlog.CorruptionError`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ...backend import KEY_BYTES, Chunk, Head, Listing, read_chunk
from ...errors import CorruptionError

#: The columns of a :class:`~eventlog.backend.Head`, in its order.
HEAD = "name, sid, parent, seq, base_seq, created_ms, updated_ms, snap_seq, snap_bytes, snap_bytes_since, key"
#: ``SELECT`` of a head, to be followed by its ``WHERE``.
SELECT_HEAD = f"SELECT {HEAD} FROM sessions "
#: A listing: the head, the bytes of its event and snapshot frames, its entries.
SELECT_LISTING = (
    f"SELECT {HEAD}, "
    "(SELECT coalesce(sum(length(frame)), 0) FROM events e WHERE e.sid = sessions.sid), "
    "(SELECT coalesce(sum(length(frame)), 0) FROM snapshots n WHERE n.sid = sessions.sid), entries "
    "FROM sessions "
)


def _damaged(table: str, row: Sequence[Any]) -> CorruptionError:
    return CorruptionError(f"the {table} table is damaged: a row reads {tuple(row)!r:.200}")


def head(r: Sequence[Any]) -> Head:
    """A sessions row (:data:`SELECT_HEAD`) as a head."""
    if (
        type(r[0]) is not str
        or not (r[2] is None or type(r[2]) is str)
        or any(type(v) is not int for v in (r[1], *r[3:10]))
        or not (r[10] is None or (type(r[10]) is bytes and len(r[10]) == KEY_BYTES))
    ):
        raise _damaged("sessions", r)
    return Head(*r[:11])


def listing(r: Sequence[Any]) -> Listing:
    """A sessions row (:data:`SELECT_LISTING`) as a listing."""
    if type(r[11]) is not int or type(r[12]) is not int or not (r[13] is None or type(r[13]) is int):
        raise _damaged("sessions", r)
    return Listing(head(r), r[11] + r[12], r[13])


def ints(values: Iterable[Any], table: str) -> list[int]:
    """``values`` as read, each an ``int`` (not a ``bool``), else
    :class:`~eventlog.CorruptionError`."""
    out = list(values)
    for v in out:
        if type(v) is not int:
            raise CorruptionError(f"the {table} table is damaged: read {v!r:.80}, of type {type(v).__name__}")
    return out


def chunk(r: Sequence[Any]) -> Chunk:
    """A chunks row ``(hash, flags, size, data)`` as a chunk."""
    return read_chunk(r[0], r[1], r[2], r[3], "the chunks table")
