"""The codec refuses damaged and hostile bytes with a clear error, never wrong data."""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cbor2
import pybase64
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog import codec
from eventlog.codec import DecodeError, Framer
from eventlog.testing import BASE64_FORMS, base64_text


@pytest.mark.parametrize(
    "data",
    [
        cbor2.dumps(cbor2.CBORTag(1, 1700000000)),  # datetime
        cbor2.dumps(cbor2.CBORTag(258, [1, 2])),  # set
        bytes.fromhex("d81c81d81d00"),  # shared (cyclic) reference
        cbor2.dumps(cbor2.CBORTag(4, [-2, 12345])),  # decimal
        cbor2.dumps(cbor2.CBORTag(99999, 1)),  # unknown tag
        cbor2.dumps(cbor2.CBORTag(codec.REF_TAG, [1, 2])),  # malformed reference
        cbor2.dumps(cbor2.CBORTag(codec.REF_TAG, [1, 10, b"short"])),
        cbor2.dumps(1) + b"\x00",  # trailing bytes
        cbor2.dumps("hello")[:-1],  # truncated
        b"\x81" * 1000 + b"\x00",  # nested too deep
        b"",
        b"\xff",
    ],
)
def test_loads_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)


def test_loads_keeps_bignums_and_markers() -> None:
    value = [2**100, -(2**90), codec.ENTRIES, {"a": b"x"}]
    assert codec.loads(codec.dumps(value)) == (value, 1)


def test_frame_detects_flips_and_moves() -> None:
    framer = Framer()
    flags, payload = framer.compress(b"x" * 1000)
    frame = Framer.seal(flags, payload, codec.binding(b"E", 1, 7))
    assert Framer.open(frame, codec.binding(b"E", 1, 7)) == (flags, payload)
    with pytest.raises(DecodeError):
        Framer.open(frame, codec.binding(b"E", 1, 8))  # the same bytes at another position
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x10
        with pytest.raises(DecodeError):
            Framer.open(bytes(bad), codec.binding(b"E", 1, 7))
    with pytest.raises(DecodeError):  # a damaged version byte is damage
        Framer.open(bytes([9]) + frame[1:], codec.binding(b"E", 1, 7))
    newer = (
        bytes([9])
        + frame[1:2]
        + struct.pack("<I", zlib.crc32(payload, zlib.crc32(codec.binding(b"E", 1, 7) + bytes([9, flags]))))
        + payload
    )
    with pytest.raises(codec.VersionError):  # a newer release's frame is not
        Framer.open(newer, codec.binding(b"E", 1, 7))


def test_decompression_is_bounded_before_allocating() -> None:
    small = zstandard.ZstdCompressor().compress(b"a" * 300)
    assert small[4] == 0x60  # single segment, 2-byte content size
    liar = small[:4] + bytes([0xE0]) + struct.pack("<Q", 1 << 40) + small[7:]
    assert zstandard.frame_content_size(liar) == 1 << 40
    with pytest.raises(DecodeError, match="claims"):
        Framer().decompress(codec.FLAG_ZSTD, liar, 1 << 30)
    with pytest.raises(DecodeError):
        Framer().decompress(codec.FLAG_ZSTD, small, 299)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.loads(data)
    with contextlib.suppress(DecodeError):
        Framer().decompress(codec.FLAG_ZSTD, data, 1 << 20)


def _flip_all(path: str, table: str, column: str, offset: int) -> None:
    con = sqlite3.connect(path)
    rows = con.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
    for rowid, blob in rows:
        b = bytearray(blob)
        b[min(offset, len(b) - 1)] ^= 0x01
        con.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (bytes(b), rowid))
    con.commit()
    con.close()


@pytest.mark.parametrize("table,column", [("events", "frame"), ("chunks", "data")])
@pytest.mark.parametrize("offset", [0, 1, 3, 8, 20, 10_000_000])
def test_flipped_bytes_raise_corruption_naming_the_session(db_path: str, table: str, column: str, offset: int) -> None:
    data: dict[str, Any] = {"entries": [{"id": "1", "img": bytes(range(256)) * 400, "t": "hello " * 100}]}
    with eventlog.open(db_path, snapshot_every=0) as s:
        s.save("sess", data)
        s.save("sess", {**data, "leafId": "1"})
    _flip_all(db_path, table, column, offset)
    with eventlog.open(db_path) as s:
        with pytest.raises(eventlog.CorruptionError) as err:
            s.load("sess")
        assert err.value.session_id == "sess"
        assert err.value.seq in (1, 2)


def test_unknown_frame_version_is_reported(db_path: str) -> None:
    with eventlog.open(db_path) as s:
        s.save("sess", {"a": 1})
    con = sqlite3.connect(db_path)
    (frame, ts, key) = con.execute("SELECT frame, ts_ms, key FROM events JOIN sessions USING (sid)").fetchone()
    flags, payload = frame[1], frame[6:]
    assert flags & codec.FLAG_TIMED  # event frames are bound to their timestamp too
    # A version after 4 is bound as 3 and 4 are, to the session's key.
    crc = zlib.crc32(payload, zlib.crc32(codec.key_binding(b"E", key, 1, ts) + bytes([9, flags])))
    con.execute("UPDATE events SET frame = ?", (bytes([9, flags]) + struct.pack("<I", crc) + payload,))
    con.commit()
    con.close()
    with eventlog.open(db_path) as s, pytest.raises(eventlog.UnsupportedVersionError) as err:
        s.load("sess")
    assert err.value.session_id == "sess" and err.value.seq == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_and_foreign_files_are_refused(tmp_path: Any, readonly: bool) -> None:
    newer = str(tmp_path / "newer.db")
    eventlog.open(newer).close()
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(eventlog.UnsupportedVersionError, match="schema version 99"):
        eventlog.open(newer, readonly=readonly)
    foreign = str(tmp_path / "foreign.db")
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t(x)")
    con.close()
    with pytest.raises(eventlog.UnsupportedVersionError, match="not an eventlog store"):
        eventlog.open(foreign, readonly=readonly)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(eventlog.EventLogError):
        eventlog.open(str(junk), readonly=readonly)


def test_missing_event_is_reported(db_path: str) -> None:
    with eventlog.open(db_path, snapshot_every=0) as s:
        for i in range(3):
            s.save("sess", {"i": i})
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM events WHERE seq = 2")
    con.commit()
    con.close()
    with eventlog.open(db_path) as s, pytest.raises(eventlog.CorruptionError) as err:
        s.load("sess")
    assert err.value.seq == 2


def test_an_event_timestamp_is_covered_by_its_frame(db_path: str) -> None:
    """A changed ``ts_ms`` (returned by ``events()``) is damage that load, events and
    verify report; event frames from before the timestamp was bound still read."""
    with eventlog.open(db_path) as s:
        s.save("sess", {"entries": [{"id": "a"}]})
        s.append("sess", [{"id": "b"}])
    con = sqlite3.connect(db_path)
    con.execute("UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 2")
    con.commit()
    con.close()
    with eventlog.open(db_path) as s:
        with pytest.raises(eventlog.CorruptionError) as err:
            s.load("sess")
        assert err.value.session_id == "sess" and err.value.seq == 2
        with pytest.raises(eventlog.CorruptionError):
            list(s.events("sess"))
        problems = s.verify().problems
        assert any(p.session_id == "sess" and p.seq == 2 for p in problems)

    # A frame as written before: no timestamp flag, bound to session and position only.
    fresh = db_path + ".old"
    with eventlog.open(fresh) as s:
        s.save("sess", {"entries": [{"id": "a"}]})
    con = sqlite3.connect(fresh)
    (frame,) = con.execute("SELECT frame FROM events").fetchone()
    flags, payload = frame[1] & ~codec.FLAG_TIMED, frame[6:]
    old = Framer.seal(flags, payload, codec.binding(b"E", 1, 1))
    con.execute("UPDATE events SET frame = ?, ts_ms = 12345", (old,))
    con.commit()
    con.close()
    with eventlog.open(fresh) as s:
        assert s.load("sess") == {"entries": [{"id": "a"}]}
        assert [e.timestamp_ms for e in s.events("sess")] == [12345]
        assert s.verify().ok


def test_the_written_out_schema_is_the_one_the_migrations_build() -> None:
    from eventlog.backends.sqlite import schema

    assert schema.expected_schema() == schema.built_schema()


def test_decompress_exact_gives_what_decompress_gives() -> None:
    framer = Framer()
    bodies = [bytes([i]) * (1000 * i + 100) for i in range(6)] + [bytes(range(256)), b"x" * (5 << 20)]
    items = [framer.compress(b) for b in bodies]
    assert {flags for flags, _ in items} == {0, codec.FLAG_ZSTD}
    for (flags, payload), body in zip(items, bodies, strict=True):
        out = framer.decompress_exact(flags, payload, len(body))
        assert type(out) is bytes and out == body == framer.decompress(flags, payload, len(body))


def test_decompress_run_is_decompress_of_each_or_nothing() -> None:
    """All at once outside the GIL, or ``None`` (the caller then goes one by one and
    names the bad item) when anything about any item is wrong."""
    framer = Framer()
    bodies = [bytes([i]) * (1000 * i + 100) for i in range(6)] + [bytes(range(256))]
    items = [framer.compress(b) for b in bodies]
    sizes = [len(b) for b in bodies]
    assert {flags for flags, _ in items} == {0, codec.FLAG_ZSTD}
    out = codec.decompress_run(items, sizes)
    assert out is not None and [bytes(o) for o in out] == bodies
    raw = [(0, b) for b in bodies]
    assert codec.decompress_run(raw, sizes) == bodies  # nothing to decompress
    assert codec.decompress_run(items, [*sizes[:2], sizes[2] - 1, *sizes[3:]]) is None  # a size
    assert codec.decompress_run([*items[:-1], (0, b"abc")], sizes) is None  # a raw one's size
    flags, payload = items[2]
    bad = [*items[:2], (flags, payload[:-3] + bytes(3)), *items[3:]]  # the size is fine, the data is not
    assert codec.decompress_run(bad, sizes) is None
    assert codec.decompress_run([*items[:2], (flags, b"not zstd"), *items[3:]], sizes) is None
    # What decompress_exact refuses after a whole frame: bytes, another frame; or a cut frame.
    for tail in (b"\x00", b"\x00junk", payload):
        assert codec.decompress_run([*items[:2], (flags, payload + tail), *items[3:]], sizes) is None
        with pytest.raises(DecodeError):
            framer.decompress_exact(flags, payload + tail, sizes[2])
    assert codec.decompress_run([*items[:2], (flags, payload[:-1]), *items[3:]], sizes) is None


@given(st.binary(max_size=3000), st.booleans(), st.integers(-5, 10), st.binary(max_size=8))
def test_one_frame_is_exactly_a_whole_frame(data: bytes, checksum: bool, level: int, tail: bytes) -> None:
    frame = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=checksum).compress(data)
    assert codec._one_frame(frame)
    assert codec._one_frame(frame + tail) == (tail == b"")
    assert not codec._one_frame(frame[:-1])


def test_decompress_run_on_many_threads_at_once() -> None:
    """Runs on several threads at once (as loads on several stores make) each get
    exactly their own bodies."""
    framer = Framer()
    bodies = [[bytes([t, i]) * (300 * i + 50 * t + 64) for i in range(12)] for t in range(6)]
    items = [[framer.compress(b) for b in run] for run in bodies]
    with ThreadPoolExecutor(6) as pool:
        for _ in range(5):
            outs = list(pool.map(lambda t: codec.decompress_run(items[t], [len(b) for b in bodies[t]]), range(6)))
            assert [[bytes(o) for o in out or []] for out in outs] == bodies


def test_decompress_exact_refuses_what_does_not_come_to_the_size() -> None:
    framer = Framer()
    body = bytes(range(200)) * 30
    flags, payload = framer.compress(body)
    assert flags == codec.FLAG_ZSTD
    with pytest.raises(DecodeError, match="zstd frame claims 6000 bytes, not 5999"):
        framer.decompress_exact(flags, payload, 5999)
    with pytest.raises(DecodeError, match="bad zstd frame"):
        framer.decompress_exact(flags, payload[:-3] + bytes(3), 6000)  # the size is fine, the data is not
    with pytest.raises(DecodeError, match="zstd frame"):
        framer.decompress_exact(flags, payload[:-40], 6000)  # truncated
    with pytest.raises(DecodeError, match="4 bytes, not 5000"):
        framer.decompress_exact(0, b"abcd", 5000)
    assert framer.decompress_exact(flags, payload, 6000) == body  # still usable after errors


# ----------------------------------------------------------------------------- base64 forms

FORM_ARGS = st.fixed_dictionaries(
    {
        "urlsafe": st.booleans(),
        "padded": st.booleans(),
        "line": st.sampled_from([0, 0, 16, 64, 76]) | st.integers(1, 120),
        "crlf": st.booleans(),
        "final_break": st.booleans(),
    }
)
PREFIXES = st.sampled_from(["", "data:image/png;base64,", "data:application/octet-stream;name=a b;base64,"])
HASHES = b"\x01" * 32


def stored_and_back(value: str) -> tuple[int, bytes, str, int, str | bytes]:
    """``split_large`` of ``value``, and the value given back from what it stored, its
    ref written and read again."""
    kind, raw, prefix, form = codec.split_large(value)
    ref = codec.Ref(kind, len(raw), HASHES, prefix, form)
    data = codec.dumps(ref)
    (read, _) = codec.loads(data)
    assert read == ref
    return kind, raw, prefix, form, codec.join_large(read, raw)


@given(raw=st.binary(min_size=1, max_size=700), args=FORM_ARGS, prefix=PREFIXES)
def test_base64_in_any_form_is_stored_decoded_and_given_back_exactly(
    raw: bytes, args: dict[str, Any], prefix: str
) -> None:
    text = prefix + base64_text(raw, **args)
    kind, stored, got_prefix, form, back = stored_and_back(text)
    assert back == text
    one_line = len(base64_text(raw, urlsafe=args["urlsafe"], padded=args["padded"]))
    if args["line"] and one_line > args["line"] and args["line"] < codec.MIN_LINE:
        assert kind == codec.KIND_STR  # lines this short are not taken for base64
    else:
        assert (kind, stored, got_prefix) == (codec.KIND_BASE64, raw, prefix)
        assert (form == 0) == (text == prefix + base64.b64encode(raw).decode())


@pytest.mark.parametrize("name", sorted(BASE64_FORMS))
def test_each_common_form_is_stored_decoded(name: str) -> None:
    raw = bytes(range(256)) * 40
    text = base64_text(raw, **BASE64_FORMS[name])
    kind, stored, _, form, back = stored_and_back(text)
    assert (kind, stored, back) == (codec.KIND_BASE64, raw, text)
    assert (form == 0) == (name == "canonical")


@given(raw=st.binary(max_size=2000))
def test_pybase64_writes_what_the_standard_library_writes(raw: bytes) -> None:
    """Canonical base64 is what ``base64.b64encode`` writes; eventlog encodes with
    ``pybase64`` (SIMD, ~25x faster on a screenshot) and must give back the same
    text, and decode it back to the same bytes."""
    text = base64.b64encode(raw)
    assert pybase64.b64encode(raw) == text
    assert pybase64.b64encode_as_string(raw) == text.decode("ascii")
    assert pybase64.b64decode(text, validate=True) == raw


NEAR_MISS_CHARS = "=\n\r-_+/ A.é\t"


@given(raw=st.binary(min_size=1, max_size=300), args=FORM_ARGS, prefix=PREFIXES, data=st.data())
def test_near_misses_round_trip_exactly(raw: bytes, args: dict[str, Any], prefix: str, data: st.DataObject) -> None:
    """Text that looks like base64 in some form but is not quite (a character added,
    removed or changed: padding, a line break, the other alphabet, a space) is given
    back exactly, whether it is stored as text or, when still base64, decoded."""
    text = list(prefix + base64_text(raw, **args))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        how = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        char = data.draw(st.sampled_from(NEAR_MISS_CHARS))
        if how == "insert":
            text.insert(at, char)
        elif at < len(text):
            if how == "delete":
                del text[at]
            else:
                text[at] = char
    value = "".join(text)
    assert stored_and_back(value)[4] == value


@given(value=st.text() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\r\n "))
def test_every_string_round_trips_exactly(value: str) -> None:
    kind, _, _, _, back = stored_and_back(value)
    assert back == value
    if not value.isascii() or not value:
        assert kind == codec.KIND_STR


def test_canonical_refs_are_written_as_before() -> None:
    """A canonical ref is three or four fields, as every release wrote them; the form
    is a fifth field, after the prefix (even an empty one), only when not canonical."""
    tag = codec.REF_TAG
    assert codec.dumps(codec.Ref(2, 3, HASHES)) == cbor2.dumps(cbor2.CBORTag(tag, [2, 3, HASHES]))
    assert codec.dumps(codec.Ref(2, 3, HASHES, "p")) == cbor2.dumps(cbor2.CBORTag(tag, [2, 3, HASHES, "p"]))
    mime = 76 << codec.FORM_LINE_SHIFT | codec.FORM_FINAL_BREAK
    assert codec.dumps(codec.Ref(2, 3, HASHES, "", mime)) == cbor2.dumps(cbor2.CBORTag(tag, [2, 3, HASHES, "", mime]))


def ref_with(kind: int, form: Any) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(codec.REF_TAG, [kind, 3, HASHES, "", form]))


@pytest.mark.parametrize("form", [0x10, 0x80, 0xF0 | 76 << 8, 0x20 | codec.FORM_URLSAFE])
def test_a_form_of_a_newer_release_is_refused_as_such(form: int) -> None:
    with pytest.raises(codec.VersionError):
        codec.loads(ref_with(codec.KIND_BASE64, form))
    with pytest.raises(codec.VersionError):
        codec.join_large(codec.Ref(codec.KIND_BASE64, 3, HASHES, "", form), b"abc")


@pytest.mark.parametrize(
    "kind,form",
    [
        (codec.KIND_BASE64, 0),  # the canonical form is never written out
        (codec.KIND_BASE64, True),
        (codec.KIND_BASE64, -1),
        (codec.KIND_BASE64, 2.0),
        (codec.KIND_BASE64, "mime"),
        (codec.KIND_BASE64, None),
        (codec.KIND_BASE64, 5 << 8),  # lines shorter than MIN_LINE
        (codec.KIND_BASE64, codec.FORM_CRLF),  # "\r\n" where there is no line break
        (codec.KIND_STR, codec.FORM_URLSAFE),  # a form on a value that is not base64
        (codec.KIND_BYTES, 76 << 8),
    ],
)
def test_a_malformed_form_is_refused(kind: int, form: Any) -> None:
    with pytest.raises(DecodeError) as err:
        codec.loads(ref_with(kind, form))
    assert type(err.value) is DecodeError


def test_a_stored_value_in_an_unknown_form_is_never_given_back_wrong(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value written (by a newer release, here simulated) in a form this release does
    not know: load() raises UnsupportedVersionError naming the session and position,
    whether it is read from an event or from a snapshot's segment, and verify() reports
    it; nothing returns other text."""
    image = base64_text(bytes(range(256)) * 200, **BASE64_FORMS["mime"])
    real = codec.split_large

    def newer(value: str | bytes) -> tuple[int, bytes, str, int]:
        kind, raw, prefix, form = real(value)
        return kind, raw, prefix, form | (0x40 if form else 0)

    with eventlog.open(db_path, snapshot_every=0) as s:
        s.save("plain", {"entries": [{"id": "1", "img": image}]})
        monkeypatch.setattr(codec, "split_large", newer)
        s.save("newer", {"entries": [{"id": "1", "img": image}]})
        s.save("snap", {"entries": [{"id": str(i), "img": image} for i in range(3)]})
        s.snapshot("snap")
    monkeypatch.undo()
    with eventlog.open(db_path) as s:
        assert s.load("plain") == {"entries": [{"id": "1", "img": image}]}
        for name in ("newer", "snap"):
            with pytest.raises(eventlog.UnsupportedVersionError) as err:
                s.load(name)
            assert err.value.session_id == name and err.value.seq == 1
        report = s.verify()
        assert not report.ok and {p.session_id for p in report.problems} == {"newer", "snap"}


@pytest.mark.parametrize(
    "data",
    [
        b"\x5b" + (1 << 62).to_bytes(8, "big"),  # a byte string claiming 2**62 bytes
        b"\x7b" + (1 << 62).to_bytes(8, "big"),  # a text string claiming 2**62 bytes
        b"\x9b" + (1 << 62).to_bytes(8, "big"),  # an array claiming 2**62 items
        b"\xbb" + (1 << 62).to_bytes(8, "big"),  # a map claiming 2**62 pairs
        b"\xc2\x5b" + (1 << 62).to_bytes(8, "big"),  # a bignum over such bytes
        b"\x9a" + (1 << 30).to_bytes(4, "big") + b"\x00" * 100,  # 2**30 items, 100 bytes of them
        b"\x81" * 100_000,  # nested far too deep
        b"\xf7",  # undefined: CBOR a stored value cannot hold is left to the value checks
    ],
)
def test_hostile_cbor_fails_without_allocating(data: bytes) -> None:
    """cbor2 is the only decoder: lengths that claim more than the bytes there fail
    at once, without allocating what they claim (and nesting is bounded)."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            value, _ = codec.loads(data)
        except DecodeError:
            value = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    if value is not None:  # only undefined decodes, and the value checks refuse it
        from eventlog.values import decoded_ok

        assert not decoded_ok(value)
