"""Content-addressed chunks: large values stored once, verified on every read.

A large value's bytes are cut into fixed-size pieces of ``chunk_bytes``; each piece
is addressed by its BLAKE3 digest and stored once per store, compressed with zstd
only when that saves space (screenshots and other already-compressed data go in
raw).  Reading verifies every piece against its address, so a damaged chunk is
reported, never returned.

Fixed-size pieces, not content-defined ones: the dominant duplicates in agent
sessions are whole values (the same screenshot sent again) and grown values (a tool
output that gained lines at the end), and fixed cuts dedup both; see
``bench/chunking.py`` for the measurement.
"""

from __future__ import annotations

import blake3

from .codec import DecodeError, Framer
from .sql import Database

#: Largest chunk ever read back (a bound on decompression, whatever a row claims).
MAX_CHUNK_BYTES = 64 << 20


class Chunks:
    """Writes and reads chunks through a :class:`~eventlog.sql.Database`."""

    def __init__(self, db: Database, framer: Framer, chunk_bytes: int) -> None:
        self.db = db
        self.framer = framer
        self.chunk_bytes = chunk_bytes

    def put(self, raw: bytes) -> tuple[bytes, list[int]]:
        """Store ``raw``; returns the concatenated digests of its pieces and their
        chunk ids.  Pieces already stored are not written again.  Must run inside
        a write transaction."""
        step = self.chunk_bytes
        view = memoryview(raw)
        pieces = [view[i : i + step] for i in range(0, len(raw), step)]
        digests = [blake3.blake3(p).digest() for p in pieces]
        known = self.db.chunk_ids(digests)
        cids: list[int] = []
        for digest, piece in zip(digests, pieces, strict=True):
            cid = known.get(digest)
            if cid is None:
                data = bytes(piece)
                flags, payload = self.framer.compress(data)
                cid = self.db.put_chunk(digest, flags, len(data), payload)
                known[digest] = cid
            cids.append(cid)
        return b"".join(digests), cids

    def get(self, digests: list[bytes], length: int) -> bytes:
        """The ``length`` bytes of the pieces ``digests``, in order, each verified.

        Raises :class:`~eventlog.codec.DecodeError` naming the first missing or
        damaged chunk, or as soon as the pieces read add up to more than ``length``
        (a damaged or hostile reference naming one chunk a million times must not
        make a read take a million times its size)."""
        parts: list[bytes] = []
        total = 0
        for digest in digests:
            row = self.db.chunk(digest)
            if row is None:
                raise DecodeError(f"chunk {digest.hex()} is missing")
            part = self.open(digest, *row)
            total += len(part)
            if total > length:
                raise DecodeError(f"the chunks of a value add up to more than its {length} bytes")
            parts.append(part)
        return b"".join(parts)

    def open(self, digest: bytes, flags: int, size: int, data: bytes) -> bytes:
        """A stored chunk's bytes, verified against its address; raises
        :class:`~eventlog.codec.DecodeError` when it does not match."""
        if type(digest) is not bytes or type(flags) is not int or type(size) is not int or type(data) is not bytes:
            raise DecodeError(f"chunk row {digest!r:.80} is damaged (a column has the wrong type)")
        if not 0 <= size <= MAX_CHUNK_BYTES or flags & ~1:
            raise DecodeError(f"chunk {digest.hex()} has a bad header")
        raw = self.framer.decompress(flags, data, size)
        if len(raw) != size or blake3.blake3(raw).digest() != digest:
            raise DecodeError(f"chunk {digest.hex()} does not match its hash")
        return raw
