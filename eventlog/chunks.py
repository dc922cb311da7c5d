"""Content-addressed chunks: large values stored once, verified on every read, and
written with the event or snapshot that uses them.

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

**Writing.**  Chunks are not written on their own: a write collects the pieces it
needs (:class:`ChunkWrites`: each by its address, with its bytes) while it encodes,
and :func:`submit` hands the backend the ones it does not have yet together with
the event or snapshot that uses them, in one unit of work (see
:mod:`eventlog.backend`, whose chunk-GC contract makes a chunk that compaction
frees meanwhile come back as :class:`~eventlog.backend.MissingChunks`: it is then
given again, from the bytes the write still holds).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import blake3

from .backend import Backend, Chunk, MissingChunks
from .codec import DecodeError, Framer, Ref
from .errors import CorruptionError, KeyMismatchError, StorageError, UnsupportedVersionError
from .options import KEY_BYTES as KEY_BYTES

#: Largest chunk ever read back (a bound on decompression, whatever a row claims).
MAX_CHUNK_BYTES = 64 << 20
#: ``meta.chunk_hash`` of a store with plain and with keyed addresses.
PLAIN, KEYED = "blake3", "blake3-keyed"
_FINGERPRINT_CONTEXT = "eventlog 2026-11 chunk_key fingerprint v1"

logger = logging.getLogger(__name__)

#: The most stored bytes of chunks a decode holds read ahead (:meth:`Chunks.prefetch`).
AHEAD_BYTES = 64 << 20


def fingerprint(key: bytes) -> bytes:
    """What a keyed store records to recognise its key: a one-way function of it."""
    return blake3.blake3(key, derive_key_context=_FINGERPRINT_CONTEXT).digest()


def addressing(key: bytes | None) -> dict[str, str | bytes]:
    """The ``meta`` entries a new store records for ``key``."""
    return {"chunk_hash": PLAIN} if key is None else {"chunk_hash": KEYED, "chunk_key_check": fingerprint(key)}


def match_key(meta: Mapping[str, str | bytes], key: bytes | None, path: str) -> None:
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


T = TypeVar("T")


class ChunkWrites:
    """The chunks one write uses that it has the bytes of: each piece by its
    address, with its bytes and whether to try compressing them, kept until the
    write is done; and the stored copies found damaged, to be rewritten."""

    __slots__ = ("made", "pieces", "repairs")

    def __init__(self) -> None:
        self.pieces: dict[bytes, tuple[bytes | memoryview, bool]] = {}
        self.made: dict[bytes, Chunk] = {}
        self.repairs: set[bytes] = set()


class Chunks:
    """Cuts, addresses and reads chunks, through a backend; addresses are keyed
    with ``key`` when given."""

    def __init__(self, backend: Backend, framer: Framer, chunk_bytes: int, key: bytes | None = None) -> None:
        self.backend = backend
        self.framer = framer
        self.chunk_bytes = chunk_bytes
        self.key = key
        # Chunks read ahead for the decode under way (see :meth:`prefetched`), as
        # stored: each is verified when :meth:`get` takes it.
        self._ahead: dict[bytes, Chunk] = {}
        self._ahead_bytes = 0
        self._holding = 0

    @contextmanager
    def reading_ahead(self) -> Iterator[None]:
        """A decode that reads chunks ahead (:meth:`prefetch`): what was read ahead
        is let go when the outermost block ends."""
        outer = not self._holding
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if outer:
                self._ahead, self._ahead_bytes = {}, 0

    def prefetch(self, digests: Collection[bytes]) -> None:
        """Read the chunks ``digests`` now, in one batched call of the backend, for
        :meth:`get` to take from memory within :meth:`reading_ahead` (the first phase
        of a decode: the addresses a frame needs are known before it is decoded, so
        a value's chunks never cost a query each).  Those missing are simply not
        there: :meth:`get` then reads and reports them as always.  At most
        :data:`AHEAD_BYTES` are held: more, and what was held is let go first."""
        if not self._holding:
            return
        wanted = [d for d in digests if d not in self._ahead]
        if not wanted:
            return
        found = self.backend.chunks(wanted)
        size = sum(len(c.data) for c in found.values())
        if self._ahead_bytes + size > AHEAD_BYTES:
            self._ahead, self._ahead_bytes = {}, 0
        self._ahead.update(found)
        self._ahead_bytes += size

    def address(self, piece: bytes | memoryview) -> bytes:
        """A piece's address: its BLAKE3 digest, keyed with the store's key if any."""
        if self.key is None:
            return blake3.blake3(piece).digest()
        return blake3.blake3(piece, key=self.key).digest()

    def put(self, raw: bytes, writes: ChunkWrites, *, compress: bool = True, repair: bool = False) -> bytes:
        """Cut ``raw`` into pieces for ``writes``; returns the concatenated
        addresses of its pieces.  New pieces are compressed when that saves space
        (not tried with ``compress=False``, for bytes already compressed), when
        they turn out not to be stored yet.  With ``repair``, the stored copies of
        the pieces are read and verified now, and those damaged are rewritten from
        ``raw`` before the write: for writes that must not rest on bytes nobody
        read (the floor of a compacted history)."""
        step = self.chunk_bytes
        view = memoryview(raw)
        pieces = [view[i : i + step] for i in range(0, len(raw), step)]
        digests = [self.address(p) for p in pieces]
        for digest, piece in zip(digests, pieces, strict=True):
            if digest not in writes.pieces:
                writes.pieces[digest] = (piece, compress)
        if repair:
            stored = self.backend.chunks(set(digests))
            for digest in stored.keys() - writes.repairs:
                if not self._intact(stored[digest]):
                    writes.repairs.add(digest)
        return b"".join(digests)

    def _intact(self, chunk: Chunk) -> bool:
        try:
            return bool(self.open(chunk.hash, chunk.flags, chunk.size, chunk.data))
        except DecodeError:
            return False

    def chunk(self, writes: ChunkWrites, digest: bytes) -> Chunk:
        """The chunk to store for a piece of ``writes`` (compressed once)."""
        made = writes.made.get(digest)
        if made is None:
            piece, compress = writes.pieces[digest]
            data = bytes(piece)
            flags, payload = self.framer.compress(data) if compress else (0, data)
            made = writes.made[digest] = Chunk(digest, flags, len(data), payload)
        return made

    def submit(self, writes: ChunkWrites, write: Callable[[list[Chunk]], T], name: str | None, seq: int | None) -> T:
        """Run ``write(chunks)``, a unit of work of the backend, giving it the
        chunks of ``writes`` that are not stored yet (asked outside the
        transaction); when compaction freed some meanwhile
        (:class:`~eventlog.backend.MissingChunks`), again with those.  A chunk the
        write refers to without holding its bytes is then lost:
        :class:`~eventlog.CorruptionError` naming ``name`` and ``seq``.  Damaged
        copies found by :meth:`put` with ``repair`` are rewritten first."""
        for digest in sorted(writes.repairs):
            logger.warning("chunk %s is damaged: rewriting it from the bytes being written", digest.hex())
            self.backend.rewrite_chunk(self.chunk(writes, digest))
        give: list[Chunk] = []
        if writes.pieces:
            stored = self.backend.chunk_sizes(writes.pieces.keys())
            give = [self.chunk(writes, h) for h in writes.pieces if h not in stored]
        while True:
            try:
                return write(give)
            except MissingChunks as e:
                lost = sorted(h for h in e.hashes if h not in writes.pieces)
                if lost:
                    raise CorruptionError(f"chunk {lost[0].hex()} is missing", session_id=name, seq=seq) from None
                given = {c.hash for c in give}
                if e.hashes <= given:
                    raise StorageError(f"the backend lost chunks given with the write: {e.message}") from None
                give += (self.chunk(writes, h) for h in sorted(e.hashes - given))
                logger.debug("chunks were freed while a write was encoded: writing them again")

    def get(self, digests: list[bytes], length: int) -> bytes:
        """The ``length`` bytes of the pieces ``digests``, in order, each verified.

        Raises :class:`~eventlog.codec.DecodeError` naming the first missing or
        damaged chunk, or as soon as the pieces read add up to more than ``length``
        (a damaged or hostile reference naming one chunk a million times must not
        make a read take a million times its size).  The chunks are read from the
        backend in batches, each piece once however often it is named."""
        parts: list[bytes] = []
        total = 0
        opened: dict[bytes, bytes] = {}
        batch = max(1, min(32, (16 << 20) // max(self.chunk_bytes, 1)))
        ahead = self._ahead
        for i in range(0, len(digests), batch):
            wanted = {d for d in digests[i : i + batch] if d not in opened and d not in ahead}
            found = self.backend.chunks(wanted) if wanted else {}
            for digest in digests[i : i + batch]:
                part = opened.get(digest)
                if part is None:
                    chunk = found.get(digest) or ahead.get(digest)
                    if chunk is None:
                        raise DecodeError(f"chunk {digest.hex()} is missing")
                    part = opened[digest] = self.open(digest, chunk.flags, chunk.size, chunk.data)
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


def hashes_of(refs: Collection[Ref]) -> frozenset[bytes]:
    """The chunk addresses of ``refs``."""
    return frozenset(h for ref in refs for h in ref.chunk_hashes())
