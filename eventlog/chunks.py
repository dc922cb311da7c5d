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

Addresses are plain BLAKE3, or, for a store created with a ``chunk_key``, BLAKE3 in
its keyed mode (``blake3(data, key=chunk_key)``): then an address says nothing to
whoever lacks the key, so it cannot be used to probe whether a store holds a given
file, at the cost of dedup across stores with different keys.  The store records
which (``meta.chunk_hash``) and, for a keyed store, a fingerprint of the key
(``meta.chunk_key_check``: BLAKE3 in its key-derivation mode, a different domain
from any chunk address), checked at every open.
"""

from __future__ import annotations

import hmac
import logging

import blake3

from .codec import DecodeError, Framer
from .errors import CorruptionError, KeyMismatchError, UnsupportedVersionError
from .options import KEY_BYTES as KEY_BYTES
from .sql import Database

#: Largest chunk ever read back (a bound on decompression, whatever a row claims).
MAX_CHUNK_BYTES = 64 << 20
#: ``meta.chunk_hash`` of a store with plain and with keyed addresses.
PLAIN, KEYED = "blake3", "blake3-keyed"
_FINGERPRINT_CONTEXT = "eventlog 2026-11 chunk_key fingerprint v1"

logger = logging.getLogger(__name__)


def fingerprint(key: bytes) -> bytes:
    """What a keyed store records to recognise its key: a one-way function of it."""
    return blake3.blake3(key, derive_key_context=_FINGERPRINT_CONTEXT).digest()


def addressing(key: bytes | None) -> dict[str, str | bytes]:
    """The ``meta`` entries a new store records for ``key``."""
    return {"chunk_hash": PLAIN} if key is None else {"chunk_hash": KEYED, "chunk_key_check": fingerprint(key)}


def match_key(meta: dict[str, str | bytes], key: bytes | None, path: str) -> None:
    """Raise :class:`KeyMismatchError` unless ``key`` is the one the store was created
    with (``None`` for a store without one)."""
    mode = meta.get("chunk_hash")
    if mode == PLAIN:
        if key is not None:
            raise KeyMismatchError(
                f"{path!r} was created without a chunk_key (plain BLAKE3 chunk addresses); a key cannot be "
                "added to an existing store: open it without one, or copy its sessions into a new keyed store"
            )
    elif mode == KEYED:
        check = meta.get("chunk_key_check")
        if type(check) is not bytes or len(check) != 32:
            raise CorruptionError(f"{path!r} is a keyed store but its key fingerprint is damaged")
        if key is None:
            raise KeyMismatchError(
                f"{path!r} addresses its chunks with a secret key: open it with the chunk_key it was created with"
            )
        if not hmac.compare_digest(fingerprint(key), check):
            raise KeyMismatchError(f"{path!r}: chunk_key is not the key this store was created with")
    else:
        raise UnsupportedVersionError(f"{path!r} uses chunk addressing {mode!r}, unknown to this eventlog")


class Chunks:
    """Writes and reads chunks through a :class:`~eventlog.sql.Database`; addresses are
    keyed with ``key`` when given."""

    def __init__(self, db: Database, framer: Framer, chunk_bytes: int, key: bytes | None = None) -> None:
        self.db = db
        self.framer = framer
        self.chunk_bytes = chunk_bytes
        self.key = key

    def address(self, piece: bytes | memoryview) -> bytes:
        """A piece's address: its BLAKE3 digest, keyed with the store's key if any."""
        if self.key is None:
            return blake3.blake3(piece).digest()
        return blake3.blake3(piece, key=self.key).digest()

    def put(self, raw: bytes, *, compress: bool = True, repair: bool = False) -> tuple[bytes, list[int]]:
        """Store ``raw``; returns the concatenated digests of its pieces and their
        chunk ids.  Pieces already stored are not written again; new ones are
        compressed when that saves space (not tried with ``compress=False``, for
        bytes already compressed).  With ``repair``, pieces already stored are read
        and verified first, and rewritten from ``raw`` if damaged: for writes that
        must not rest on bytes nobody read (the floor of a compacted history).
        Must run inside a write transaction."""
        step = self.chunk_bytes
        view = memoryview(raw)
        pieces = [view[i : i + step] for i in range(0, len(raw), step)]
        digests = [self.address(p) for p in pieces]
        known = self.db.chunk_ids(digests)
        cids: list[int] = []
        checked: set[bytes] = set()
        for digest, piece in zip(digests, pieces, strict=True):
            cid = known.get(digest)
            if cid is None or (repair and digest not in checked and not self._intact(digest)):
                data = bytes(piece)
                flags, payload = self.framer.compress(data) if compress else (0, data)
                if cid is None:
                    cid = self.db.put_chunk(digest, flags, len(data), payload)
                else:
                    logger.warning("chunk %s is damaged: rewriting it from the bytes being written", digest.hex())
                    self.db.rewrite_chunk(cid, flags, len(data), payload)
                known[digest] = cid
            checked.add(digest)
            cids.append(cid)
        return b"".join(digests), cids

    def _intact(self, digest: bytes) -> bool:
        row = self.db.chunk(digest)
        try:
            return row is not None and bool(self.open(digest, *row))
        except DecodeError:
            return False

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
        if len(raw) != size or self.address(raw) != digest:
            raise DecodeError(f"chunk {digest.hex()} does not match its hash")
        return raw
