"""Bytes in, bytes out: the encoding of everything eventlog writes.

Two layers, both pure (no SQLite, no I/O):

* **CBOR bodies.**  Values are CBOR (``cbor2``).  A large string or bytes value is
  replaced by a :class:`Ref` (CBOR tag :data:`REF_TAG`) naming the BLAKE3 chunks that
  hold it (base64 text, in any of the common forms, as its decoded bytes: see
  :func:`split_large`); the entries list inside a session's top-level fields is the marker
  :data:`ENTRIES` (tag :data:`ENTRIES_TAG`).  Decoding refuses every other tag that
  could build something other than a storable value (dates, sets, shared and cyclic
  references, ...), bounds nesting, and raises :class:`DecodeError` on any damage.

* **Frames.**  A frame wraps one body for a row: ``version (1 byte) | flags (1 byte) |
  crc32 (4 bytes, little-endian) | payload``.  The CRC covers version, flags, payload
  and a caller-supplied *binding* (the row's session and position, and for an event
  its timestamp), so a flipped byte, in the frame or in those columns, or a row
  moved to another place is detected.  Flags say whether the payload is
  zstd-compressed, whether it is a *spill* (a small CBOR pointer to chunks that hold
  a body too large for one cell), whether the binding has the timestamp (event
  frames written before it lack it and are read as they are), and whether the body
  is a segmented snapshot's manifest (format version 2).  Decompression is bounded
  by the frame's declared size, checked before any memory is allocated.

  The version byte says the layout and the binding: versions 1 (one body) and 2 (a
  segmented snapshot's manifest) are bound to the backend's row id of the session
  (:func:`binding`), versions 3 and 4, their twins, to the session's stable *key*
  (:func:`key_binding`: 16 bytes made when the session is created, kept when it is
  copied to another store), so a session's frames stay valid wherever its rows go.
  Version 6 is bound to the key as well, and marks a body that uses a form older
  readers do not know (:data:`FRAME_VERSION_PATHS`).  This release writes 3, 4 and 6;
  it reads 1 to 4 and 6, picking the binding by the version.  Any other version is
  checked against the key binding too, so a newer format that keeps it is refused as
  newer (:class:`VersionError`), not as damage.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cbor2
import pybase64
import zstandard

from . import values

#: Frame format versions bound to the session's row id (written before session
#: keys): one body, and a segmented snapshot's manifest (:data:`FLAG_SEGMENTS`).
FRAME_VERSION = 1
FRAME_VERSION_SEGMENTS = 2
#: Their twins bound to the session's key instead (:func:`key_binding`): what this
#: release writes.  Releases that read only 1 and 2 cannot check their CRC (it is
#: not over the row id), so they take them for damage; they never meet them in a
#: store, whose schema version (5) they refuse as a whole.
FRAME_VERSION_KEYED = 3
FRAME_VERSION_KEYED_SEGMENTS = 4
#: Bound to the key like 3 and 4, for a body that uses a form added with lists at
#: paths (an event holding :class:`~eventlog.fold.At` operations, a manifest whose
#: lists at paths are in segments): :data:`FLAG_SEGMENTS` says which layout.  Written
#: only for such bodies (every other one is still 3 or 4), so a release that does
#: not know those forms refuses them as newer (:class:`VersionError`) rather than as
#: damage, and goes on reading the sessions that do not use them.  (5 is not used: it
#: stands for "a newer version" in the committed test vectors.)
FRAME_VERSION_PATHS = 6
#: Versions bound to the row id; every other one is checked against the key binding.
ROW_BOUND = (FRAME_VERSION, FRAME_VERSION_SEGMENTS)
#: Length of a session key.
KEY_BYTES = 16
FLAG_ZSTD = 1
FLAG_SPILL = 2
#: The CRC also covers the row's timestamp (event frames written since schema 3).
FLAG_TIMED = 4
#: The body is a segmented snapshot's manifest (see :mod:`eventlog.snapshots`).
FLAG_SEGMENTS = 8
_HEADER = struct.Struct("<BBI")

#: CBOR tag numbers (from the unassigned first-come range) for eventlog's own markers.
REF_TAG = 59501
ENTRIES_TAG = 59502

#: Ref kinds: how the chunk bytes turn back into the value.
KIND_BYTES = 0
KIND_STR = 1
KIND_BASE64 = 2  # str that is base64 of the stored bytes, after ``prefix``, in ``form``

#: The form of a :data:`KIND_BASE64` string (:attr:`Ref.form`): 0 is canonical, what
#: ``base64.b64encode`` writes (standard alphabet, padded, one line).  Otherwise the
#: low byte holds flags and the rest the line length (0: no line breaks but maybe a
#: final one).  A ref with flags this release does not know is refused on reading.
FORM_URLSAFE = 1  # "-" and "_" instead of "+" and "/"
FORM_UNPADDED = 2  # no "=" at the end
FORM_CRLF = 4  # line breaks are "\r\n" (else "\n")
FORM_FINAL_BREAK = 8  # a line break after the last line too
FORM_FLAGS = FORM_URLSAFE | FORM_UNPADDED | FORM_CRLF | FORM_FINAL_BREAK
FORM_LINE_SHIFT = 8
#: Shortest line of base64 kept as such when broken into lines (MIME has 76, PEM 64).
MIN_LINE = 16

#: Largest body accepted when decoding, whatever a frame claims (hostile sizes).
MAX_BODY_BYTES = 1 << 30
#: Deepest CBOR nesting accepted when decoding (values allow 200, frames add a few).
MAX_CBOR_DEPTH = 220


class DecodeError(Exception):
    """Raised by this module for any undecodable input; callers translate it into
    :class:`eventlog.CorruptionError` with the session and position."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A large value stored as chunks: ``kind``, its stored ``length`` in bytes, the
    concatenated 32-byte BLAKE3 ``hashes`` of its chunks, and for base64 strings the
    text ``prefix`` before the base64 (``"data:image/png;base64,"`` or ``""``) and
    its ``form`` (0: canonical; see :data:`FORM_URLSAFE`).

    In CBOR: tag :data:`REF_TAG` over ``[kind, length, hashes]``, then ``prefix``
    when it is not empty, or ``prefix, form`` when the form is not 0."""

    kind: int
    length: int
    hashes: bytes
    prefix: str = ""
    form: int = 0

    def chunk_hashes(self) -> list[bytes]:
        h = self.hashes
        return [h[i : i + 32] for i in range(0, len(h), 32)]


class _EntriesMarker:
    """Where a session's managed ``entries`` list sits among its top-level fields."""

    _instance: _EntriesMarker | None = None

    def __new__(cls) -> _EntriesMarker:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ENTRIES"

    def __reduce__(self) -> str:
        return "ENTRIES"


#: The marker standing for the entries list in a session's top-level fields.
ENTRIES = _EntriesMarker()


# ----------------------------------------------------------------------------- values


def split_large(value: str | bytes) -> tuple[int, bytes, str, int]:
    """How a large value is stored: ``(kind, raw bytes, prefix, form)``.

    A string that is base64 (optionally after a ``data:...;base64,`` prefix) is
    stored as the decoded bytes, a quarter smaller, so one image dedups however it
    was sent: canonical base64 (form 0, the fast path), or base64 in another
    :data:`form <FORM_URLSAFE>` (URL-safe alphabet, no padding, lines of any one
    length from :data:`MIN_LINE` with ``\\n`` or ``\\r\\n``, a final line break).
    Only when re-encoding in that form gives back the exact text; any other string
    is stored as its UTF-8 bytes.  Raises ``UnicodeEncodeError`` for strings that
    are not valid Unicode text.
    """
    if isinstance(value, bytes):
        return KIND_BYTES, value, "", 0
    prefix = ""
    body = value
    if value.startswith("data:"):
        cut = value.find(";base64,", 0, 512)
        if cut > 0:
            prefix, body = value[: cut + 8], value[cut + 8 :]
    if body and body.isascii():
        if len(body) % 4 == 0:
            try:
                raw = pybase64.b64decode(body, validate=True)
            except ValueError:  # (binascii.Error is one)
                raw = None
            if raw is not None and pybase64.b64encode_as_string(raw) == body:
                return KIND_BASE64, raw, prefix, 0
        found = _base64_form(body)
        if found is not None:
            return KIND_BASE64, found[0], prefix, found[1]
    return KIND_STR, value.encode("utf-8"), "", 0


#: What base64 text of any form is made of (the check of its start).
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\r\n"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _base64_form(body: str) -> tuple[bytes, int] | None:
    """``(decoded bytes, form)`` of ASCII ``body`` if it is base64 in a form other
    than canonical that :func:`encode_form` gives back exactly, else ``None``."""
    if body[:256].encode("ascii").translate(None, _BASE64_CHARS):
        return None  # prose, JSON, ...: not even its start is base64
    text = orig = body.encode("ascii")
    form = 0
    lf = text.find(b"\n")
    if lf >= 0:
        crlf = lf > 0 and text[lf - 1] == 13
        sep = b"\r\n" if crlf else b"\n"
        line = lf - 1 if crlf else lf
        if crlf:
            form |= FORM_CRLF
        if text.endswith(sep):
            form |= FORM_FINAL_BREAK
        if lf + 1 < len(text):  # a break before the end: lines of ``line`` characters
            if line < MIN_LINE:
                return None
            form |= line << FORM_LINE_SHIFT
        text = text.replace(sep, b"")
    if b"-" in text or b"_" in text:
        form |= FORM_URLSAFE
        text = text.translate(_TO_STANDARD)
    missing = -len(text) % 4
    if missing:
        if missing == 3:
            return None
        form |= FORM_UNPADDED
        text += b"=" * missing
    if not form or not text:
        return None
    try:
        raw = pybase64.b64decode(text, validate=True)
    except ValueError:  # (binascii.Error is one)
        return None
    if not raw or encode_form(raw, form) != orig:
        return None
    return raw, form


def encode_form(raw: bytes, form: int) -> bytes:
    """Base64 of ``raw`` in ``form`` (a valid one: see :func:`check_form`)."""
    text = pybase64.b64encode(raw)
    if form & FORM_URLSAFE:
        text = text.translate(_TO_URLSAFE)
    if form & FORM_UNPADDED:
        text = text.rstrip(b"=")
    sep = b"\r\n" if form & FORM_CRLF else b"\n"
    line = form >> FORM_LINE_SHIFT
    if line and len(text) > line:
        text = sep.join([text[i : i + line] for i in range(0, len(text), line)])
    if form & FORM_FINAL_BREAK:
        text += sep
    return text


def check_form(kind: int, form: int) -> None:
    """:class:`DecodeError` unless ``form`` is one this release writes for ``kind``
    (:class:`VersionError` for flags it does not know: a newer release wrote it)."""
    if form == 0:
        return
    if type(form) is not int or form < 0 or kind != KIND_BASE64:
        raise DecodeError("malformed large-value reference")
    if form & 0xFF & ~FORM_FLAGS:
        raise VersionError(f"a base64 value in form {form:#x}, unknown to this release")
    line = form >> FORM_LINE_SHIFT
    if (line and line < MIN_LINE) or (form & FORM_CRLF and not line and not form & FORM_FINAL_BREAK):
        raise DecodeError(f"malformed large-value reference (base64 form {form:#x})")


def value_bytes(ref: Ref) -> int:
    """Size of the value ``ref`` stands for, a str counted in UTF-8 bytes, without
    reading its chunks (for base64, the length of the text it is written as)."""
    if ref.kind != KIND_BASE64:
        return ref.length
    n = ref.length
    form = ref.form
    chars = (4 * n + 2) // 3 if form & FORM_UNPADDED else 4 * ((n + 2) // 3)
    sep = 2 if form & FORM_CRLF else 1
    line = form >> FORM_LINE_SHIFT
    breaks = (chars - 1) // line if line and chars else 0
    if form & FORM_FINAL_BREAK:
        breaks += 1
    return len(ref.prefix.encode("utf-8", "surrogatepass")) + chars + breaks * sep


def join_large(ref: Ref, raw: bytes) -> str | bytes:
    """The value ``ref`` stands for, from its stored bytes (inverse of :func:`split_large`)."""
    if len(raw) != ref.length:
        raise DecodeError(f"large value is {len(raw)} bytes, its reference says {ref.length}")
    if ref.kind == KIND_BYTES:
        return raw
    if ref.kind == KIND_STR:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"large string is not UTF-8: {e}") from None
    if ref.kind == KIND_BASE64:
        if ref.form:
            check_form(ref.kind, ref.form)
            return ref.prefix + encode_form(raw, ref.form).decode("ascii")
        return ref.prefix + pybase64.b64encode_as_string(raw)
    raise DecodeError(f"unknown large-value kind {ref.kind}")


def _encode_marker(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if value is ENTRIES:
        encoder.encode(cbor2.CBORTag(ENTRIES_TAG, None))
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any, refs: list[Ref] | None = None, *, stringref: bool = False) -> bytes:
    """CBOR of ``value`` (storable values, :class:`Ref` and :data:`ENTRIES`); each
    :class:`Ref` met is appended to ``refs``.  With ``stringref``, strings and byte
    strings after the first of each are written as references to it (tags 256 and
    25; see :mod:`eventlog.snapshots`).  Raises ``ValueError`` for what CBOR cannot
    hold (invalid Unicode text)."""
    found = [] if refs is None else refs

    def default(encoder: cbor2.CBOREncoder, value: Any) -> None:
        if type(value) is Ref:
            found.append(value)
            fields: list[Any] = [value.kind, value.length, value.hashes]
            if value.form:
                fields += [value.prefix, value.form]
            elif value.prefix:
                fields.append(value.prefix)
            encoder.encode(cbor2.CBORTag(REF_TAG, fields))
        else:
            _encode_marker(encoder, value)

    try:
        return cbor2.dumps(value, default=default, string_referencing=stringref)
    except (cbor2.CBOREncodeError, UnicodeEncodeError, TypeError) as e:
        raise ValueError(f"cannot encode value: {e}") from None


def _reject(*_: Any) -> Any:
    raise DecodeError("unexpected CBOR tag")


# cbor2 decodes these tags into objects a stored value never contains; refuse them.
_FOREIGN_TAGS = (0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799)
_SEMANTIC: dict[int, Any] = {tag: _reject for tag in _FOREIGN_TAGS}
#: The same, with string references (tags 256 and 25) read by ``cbor2`` itself.
_SEMANTIC_STRINGREF: dict[int, Any] = {tag: _reject for tag in _FOREIGN_TAGS if tag not in (25, 256)}


def _ref_from_tag(value: Any) -> Ref:
    if type(value) not in (list, tuple) or len(value) not in (3, 4, 5):
        raise DecodeError("malformed large-value reference")
    kind, length, hashes = value[0], value[1], value[2]
    prefix = value[3] if len(value) >= 4 else ""
    if (
        type(kind) is not int
        or type(length) is not int
        or type(hashes) is not bytes
        or type(prefix) is not str
        or length < 0
        or len(hashes) % 32
        or (not hashes and length)
    ):
        raise DecodeError("malformed large-value reference")
    if len(value) < 5:
        return Ref(kind, length, hashes, prefix)
    form = value[4]
    if type(form) is not int or form == 0:  # the canonical form is not written
        raise DecodeError("malformed large-value reference")
    check_form(kind, form)
    return Ref(kind, length, hashes, prefix, form)


def loads(data: bytes, resolve: Callable[[Ref], Any] | None = None, *, stringref: bool = False) -> tuple[Any, int]:
    """Decode CBOR written by :func:`dumps` (with ``cbor2``): ``(value, number of
    ENTRIES markers)``.

    String references (tags 256 and 25) are read only with ``stringref`` (what
    :func:`dumps` wrote with it); elsewhere they are damage.  ``cbor2`` reads them
    fastest with its own tag handling, which also reads tags eventlog never writes
    into values a stored value never holds (refused after, as ever: see below) and
    reads CBOR's shared values (tags 28 and 29), which could make a few bytes
    expand into a huge value: so that path is taken only where the C extension
    checks the result (:func:`eventlog.values.count`: a plain tree of no more
    values than the bytes could hold, else :class:`DecodeError`, as shared values
    are refused everywhere); without it, every tag but the string references is
    refused as it is elsewhere.

    Each :class:`Ref` is passed to ``resolve`` and replaced by what it returns (the
    rehydrated value), or kept as a :class:`Ref` when ``resolve`` is ``None``.  The
    marker count lets the caller check :data:`ENTRIES` stands only where it may.
    Raises :class:`DecodeError` on malformed, truncated or trailing input, on
    nesting deeper than :data:`MAX_CBOR_DEPTH` and on tags other than eventlog's own
    (what ``resolve`` raises that is not a :class:`DecodeError`, such as a storage
    error, goes out as it is).  CBOR can say more than a stored value can (integer
    keys, ``undefined``, simple values): the caller checks the value
    (:func:`eventlog.values.decoded_ok`).
    """
    markers = 0
    failed: list[BaseException] = []

    def tag_hook(tag: cbor2.CBORTag, _immutable: bool = False) -> Any:
        if tag.tag == REF_TAG:
            ref = _ref_from_tag(tag.value)
            if resolve is None:
                return ref
            try:
                return resolve(ref)
            except DecodeError:
                raise
            except BaseException as e:  # not damage: a storage error, MemoryError, ...
                failed.append(e)
                raise
        if tag.tag == ENTRIES_TAG and tag.value is None:
            nonlocal markers
            markers += 1
            return ENTRIES
        raise DecodeError(f"unexpected CBOR tag {tag.tag}")

    bounded = stringref and values.COUNT_IN_C
    options: dict[str, Any] = {} if bounded else {"semantic_decoders": _SEMANTIC_STRINGREF if stringref else _SEMANTIC}
    try:
        # A seekable reader, so that the decoder's position can be checked after;
        # io.BytesIO of bytes hands the decoder's one read of it all over without a copy.
        fp = io.BytesIO(data)
        decoder = cbor2.CBORDecoder(
            fp,
            tag_hook=tag_hook,
            max_depth=MAX_CBOR_DEPTH,
            str_errors="strict",
            read_size=max(len(data), 1),
            **options,
        )
        value = decoder.decode()
        if bounded and values.count(value, len(data), MAX_CBOR_DEPTH) < 0:
            raise DecodeError("the value is not a tree its bytes can hold (shared values)")
    except DecodeError:
        raise
    except Exception as e:  # cbor2 raises a variety; all mean "not valid for us"
        if failed:  # what ``resolve`` raised that is not about the bytes goes out as it was
            raise failed[0] from None
        if isinstance(e.__cause__, DecodeError):  # raised by a hook; cbor2 6 wraps it
            raise e.__cause__ from None
        raise DecodeError(f"invalid CBOR: {type(e).__name__}: {e}") from None
    if fp.tell() != len(data):
        raise DecodeError("trailing bytes after CBOR value")
    return value, markers


# ----------------------------------------------------------------------------- frames


def _check_size(flags: int, payload: bytes, size: int) -> None:
    """:class:`DecodeError` unless the body of ``(flags, payload)`` is ``size`` bytes:
    the payload's own length, or what its zstd frame header declares."""
    if not flags & FLAG_ZSTD:
        if len(payload) != size:
            raise DecodeError(f"body of {len(payload)} bytes, not {size}")
        return
    try:
        claimed = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise DecodeError(f"bad zstd frame: {e}") from None
    if claimed != size:
        raise DecodeError(f"zstd frame claims {claimed} bytes, not {size}")


def _one_frame(payload: bytes) -> bool:
    """Whether ``payload`` is exactly one zstd frame: its header, blocks up to the one
    marked last, its checksum if it has one, and nothing after (what
    :meth:`Framer.decompress_exact` requires, found from the block headers alone)."""
    try:
        pos = zstandard.frame_header_size(payload)
        checksum = zstandard.get_frame_parameters(payload).has_checksum
    except zstandard.ZstdError:
        return False
    end = len(payload)
    while pos + 3 <= end:
        head = payload[pos] | payload[pos + 1] << 8 | payload[pos + 2] << 16
        kind, size = (head >> 1) & 3, head >> 3
        if kind == 3:  # reserved
            return False
        pos += 3 + (1 if kind == 1 else size)  # an RLE block stores its one byte
        if head & 1:  # the last block
            return pos + (4 if checksum else 0) == end
    return False


def decompress_run(items: list[tuple[int, bytes]], sizes: list[int]) -> list[bytes] | None:
    """:meth:`Framer.decompress` of each ``(flags, payload)``, which must come to
    exactly its ``sizes`` bytes: ``bytes``, in order, so that another thread can
    decode meanwhile.  Every item is checked first (its size, exactly one zstd
    frame), then all the frames are decompressed in one call that does not hold the
    GIL (``multi_decompress_to_buffer``, each into exactly its size): one call per run,
    not one per item, because a thread that gives the GIL up and takes it back for
    each item waits up to the interpreter's switch interval (5 ms) each time while
    another thread decodes (measured: a run of 40 segments took twice as long as
    alone).  Safe to run on any thread: it shares nothing (its decompression context
    is its own, made here, and the payloads are immutable).  ``None`` when anything
    about any item is wrong: the caller then decompresses them one by one, which
    says which and why."""
    frames: list[bytes | bytearray | memoryview] = []
    frame_sizes: list[int] = []
    for (flags, payload), size in zip(items, sizes, strict=True):
        try:
            _check_size(flags, payload, size)
        except DecodeError:
            return None
        if flags & FLAG_ZSTD:
            if not _one_frame(payload):  # zstd would read the first frame and ignore the rest
                return None
            frames.append(payload)
            frame_sizes.append(size)
    bodies: Iterator[bytes] = iter(())
    if frames:
        try:
            found = zstandard.ZstdDecompressor().multi_decompress_to_buffer(
                frames, decompressed_sizes=struct.pack(f"={len(frame_sizes)}Q", *frame_sizes), threads=1
            )
        except zstandard.ZstdError:
            return None
        bodies = iter([found[i].tobytes() for i in range(len(found))])
        del found
    out: list[bytes] = []
    for (flags, payload), size in zip(items, sizes, strict=True):
        body = next(bodies) if flags & FLAG_ZSTD else payload
        if len(body) != size:
            return None
        out.append(body)
    return out


#: zstd level of event frames: an event is compressed while its writer waits, and
#: its entries are compressed again (at level 3) in the snapshots that follow.
EVENT_LEVEL = 1


class Framer:
    """Builds and opens frames.  Holds zstd contexts, so one per thread."""

    def __init__(self, level: int = 3, event_level: int = EVENT_LEVEL) -> None:
        self._cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._fast = zstandard.ZstdCompressor(level=event_level, write_content_size=True)
        self._dctx = zstandard.ZstdDecompressor()

    def compress(self, body: bytes, *, fast: bool = False) -> tuple[int, bytes]:
        """``(flags, payload)``: zstd when it saves at least 1/16, else raw; with
        ``fast``, at :data:`EVENT_LEVEL` (event frames, written on every save, and
        rewritten into snapshots later) rather than at the level given."""
        if len(body) >= 64:
            packed = (self._fast if fast else self._cctx).compress(body)
            if len(packed) <= len(body) - (len(body) >> 4):
                return FLAG_ZSTD, packed
        return 0, body

    def decompress(self, flags: int, payload: bytes, limit: int) -> bytes:
        """Invert :meth:`compress`; refuses to produce more than ``limit`` bytes."""
        if not flags & FLAG_ZSTD:
            if len(payload) > limit:
                raise DecodeError(f"body of {len(payload)} bytes is over the limit of {limit}")
            return payload
        try:
            size = zstandard.frame_content_size(payload)
        except zstandard.ZstdError as e:
            raise DecodeError(f"bad zstd frame: {e}") from None
        if size < 0:
            raise DecodeError("zstd frame does not declare its size")
        if size > limit:
            raise DecodeError(f"zstd frame claims {size} bytes, over the limit of {limit}")
        if not _one_frame(payload):  # zstd would read the first frame and ignore the rest
            raise DecodeError("not exactly one zstd frame")
        try:
            out = self._dctx.decompress(payload, max_output_size=size)
        except zstandard.ZstdError as e:
            raise DecodeError(f"bad zstd frame: {e}") from None
        if len(out) != size:
            raise DecodeError("zstd frame size mismatch")
        return out

    def decompress_exact(self, flags: int, payload: bytes, size: int) -> bytes:
        """:meth:`decompress` of a payload that must be exactly one zstd frame (or raw
        bytes) coming to exactly ``size`` bytes: both checked (in the frame header and
        block headers) before anything is decompressed.  New ``bytes``, which the
        CBOR decoder reads without a copy."""
        _check_size(flags, payload, size)
        if not flags & FLAG_ZSTD:
            return payload
        if not _one_frame(payload):
            raise DecodeError("not exactly one zstd frame")
        try:
            out = self._dctx.decompress(payload, max_output_size=size)
        except zstandard.ZstdError as e:
            raise DecodeError(f"bad zstd frame: {e}") from None
        if len(out) != size:
            raise DecodeError("zstd frame size mismatch")
        return out

    @staticmethod
    def seal(flags: int, payload: bytes, binding: bytes, *, keyed: bool = False, paths: bool = False) -> bytes:
        """A frame around ``payload``; ``binding`` ties it to its row's place:
        :func:`key_binding` with ``keyed`` (versions 3 and 4, what this release
        writes, or with ``paths`` version 6: a body using the forms of lists at
        paths), else :func:`binding` (versions 1 and 2, as older releases wrote)."""
        if paths:
            if not keyed:
                raise ValueError("a frame of version 6 is bound to the session key")
            version = FRAME_VERSION_PATHS
        else:
            version = (FRAME_VERSION_SEGMENTS if flags & FLAG_SEGMENTS else FRAME_VERSION) + (2 if keyed else 0)
        header = bytes((version, flags))
        return _HEADER.pack(version, flags, zlib.crc32(payload, zlib.crc32(binding + header))) + payload

    @staticmethod
    def open(frame: bytes, binding: bytes | Place, timed: bytes | None = None) -> tuple[int, bytes]:
        """``(flags, payload)`` of a frame after checking its CRC, then its version
        (its first byte: a caller that needs it reads it there).

        ``binding`` is the frame's :class:`Place`, whose binding is picked by the
        frame's version (the row id for versions 1 and 2, the session key for the
        others) and flags (the timestamp for :data:`FLAG_TIMED`); or, as bytes, the
        binding itself, with ``timed`` the binding to use for a :data:`FLAG_TIMED`
        frame.

        The first six bytes (version, flags, CRC over binding, version, flags and
        payload) are the same in every format version, so damage is told apart from
        a frame written by a newer release: a version other than 1 to 4 and 6 is
        checked against the key binding and, when its CRC holds, refused as newer."""
        if len(frame) < _HEADER.size:
            raise DecodeError(f"frame of {len(frame)} bytes is truncated")
        version, flags, crc = _HEADER.unpack_from(frame)
        payload = frame[_HEADER.size :]
        if isinstance(binding, Place):
            binding = binding.binding(version not in ROW_BOUND, bool(flags & FLAG_TIMED))
        elif flags & FLAG_TIMED:
            if timed is None:
                raise DecodeError("frame is bound to a timestamp, and this row keeps none")
            binding = timed
        if zlib.crc32(payload, zlib.crc32(binding + bytes((version, flags)))) != crc:
            raise DecodeError("frame checksum mismatch")
        if version not in KNOWN_VERSIONS:
            raise VersionError(
                f"frame format version {version} is not supported "
                f"(this release reads {', '.join(map(str, KNOWN_VERSIONS))})"
            )
        if flags & ~(FLAG_ZSTD | FLAG_SPILL | FLAG_TIMED | FLAG_SEGMENTS):
            raise DecodeError(f"unknown frame flags {flags:#x}")
        segmented = version in (FRAME_VERSION_SEGMENTS, FRAME_VERSION_KEYED_SEGMENTS)
        if version != FRAME_VERSION_PATHS and bool(flags & FLAG_SEGMENTS) != segmented:
            raise DecodeError(f"frame flags {flags:#x} do not match format version {version}")
        return flags & ~FLAG_TIMED, payload


#: Every frame format version this release reads.
KNOWN_VERSIONS = (
    FRAME_VERSION,
    FRAME_VERSION_SEGMENTS,
    FRAME_VERSION_KEYED,
    FRAME_VERSION_KEYED_SEGMENTS,
    FRAME_VERSION_PATHS,
)


class VersionError(DecodeError):
    """A frame written by a newer format version."""


def array_head(n: int) -> bytes:
    """The CBOR head of an array of ``n`` items (to be followed by their encodings)."""
    if n < 24:
        return bytes((0x80 | n,))
    if n < 1 << 8:
        return struct.pack(">BB", 0x98, n)
    if n < 1 << 16:
        return struct.pack(">BH", 0x99, n)
    if n < 1 << 32:
        return struct.pack(">BI", 0x9A, n)
    return struct.pack(">BQ", 0x9B, n)


def binding(kind: bytes, sid: int, seq: int, ts: int | None = None) -> bytes:
    """The bytes a frame of version 1 or 2 binds its CRC to: row kind, the
    backend's row id of the session, position, and for a :data:`FLAG_TIMED` frame
    the row's timestamp (Unix ms)."""
    if ts is None:
        return kind + struct.pack("<qq", sid, seq)
    return kind + struct.pack("<qqq", sid, seq, ts)


#: The row kinds a frame binds to (see :func:`key_binding`): an event, a snapshot.
EVENT = b"E"
SNAPSHOT = b"S"


def key_binding(kind: bytes, key: bytes, seq: int, ts: int | None = None) -> bytes:
    """The bytes a frame of version 3 or 4 binds its CRC to: row kind, the
    session's 16-byte key, position, and for a :data:`FLAG_TIMED` frame the row's
    timestamp (Unix ms)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a session key is {KEY_BYTES} bytes, not {len(key)}")
    if ts is None:
        return kind + key + struct.pack("<q", seq)
    return kind + key + struct.pack("<qq", seq, ts)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a frame is stored: row ``kind`` (``b"E"`` or ``b"S"``), the session's
    row id ``sid`` and ``key`` (``None`` for a session stored before keys), the
    position ``seq`` and, for an event, its timestamp ``ts``.  Gives the binding a
    frame's version and flags call for (:meth:`binding`)."""

    kind: bytes
    sid: int
    key: bytes | None
    seq: int
    ts: int | None = None

    def binding(self, keyed: bool, timed: bool) -> bytes:
        """The binding of a frame bound to the key (``keyed``) or the row id, and
        with ``timed`` to the timestamp; :class:`DecodeError` when this place has
        no such thing."""
        if timed and self.ts is None:
            raise DecodeError("frame is bound to a timestamp, and this row keeps none")
        ts = self.ts if timed else None
        if not keyed:
            return binding(self.kind, self.sid, self.seq, ts)
        if self.key is None:
            raise DecodeError("frame is bound to a session key, and this session has none")
        return key_binding(self.kind, self.key, self.seq, ts)
