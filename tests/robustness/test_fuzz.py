"""Every decoder fed arbitrary and mutated bytes: only documented errors come out,
never another exception, a hang or different data.  ``tools/fuzz`` runs the same
targets (``tools/fuzzing.py``) for as long as it is given."""

from __future__ import annotations

import functools
import os
import random
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import cbor2
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import codec, values
from eventlog.codec import DecodeError
from eventlog.testing import json_values
from tools import fuzzing
from tools.fuzzing import Corpus, Sample

#: Examples per fuzz test in CI (each takes well under a millisecond or so);
#: ``tools/fuzz`` runs the targets for minutes.
FUZZ = settings(
    max_examples=int(os.environ.get("EVENTLOG_FUZZ_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MUTATIONS = st.lists(
    st.tuples(st.integers(0, fuzzing.OPERATIONS - 1), st.integers(0, 1 << 24), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


@functools.cache
def corpus() -> Corpus:
    return fuzzing.build_corpus()


def frames(*whats: str) -> st.SearchStrategy[Sample]:
    """A frame of the corpus of one of the kinds ``whats`` (the corpus is built on
    first use, not at collection)."""

    def pick(i: int) -> Sample:
        pool = [s for s in corpus().frames if s.what in whats]
        return pool[i % len(pool)]

    return st.integers(0, 1000).map(pick)


# ----------------------------------------------------------------------------- CBOR


@FUZZ
@given(st.binary(max_size=300))
def test_loads_of_arbitrary_bytes(data: bytes) -> None:
    with fuzzing.time_limit(5, "codec.loads"):
        fuzzing.check_loads(data)


@FUZZ
@given(st.integers(0, 1 << 64), st.booleans())
def test_loads_of_structured_cbor(seed: int, shaped: bool) -> None:
    """Random CBOR with lying lengths, deep nesting, foreign and own tags, simple
    values; ``shaped``: laid out like an event or snapshot body."""
    rng = random.Random(seed)
    data = fuzzing.random_body(rng) if shaped else fuzzing.random_cbor(rng)
    with fuzzing.time_limit(5, "codec.loads"):
        fuzzing.check_loads(data)


@FUZZ
@given(st.integers(0, 1 << 64), frames("event", "snapshot"), st.booleans())
def test_resealed_structured_bodies(seed: int, sample: Sample, compress: bool) -> None:
    body = fuzzing.random_body(random.Random(seed))
    with fuzzing.time_limit(10, "decoding a resealed frame"):
        fuzzing.check_resealed(corpus(), sample, body, compress)


@FUZZ
@given(st.sampled_from(range(64)), MUTATIONS)
def test_loads_of_mutated_bodies(index: int, mutations: list[fuzzing.Mutation]) -> None:
    bodies = [s.body for s in corpus().frames]
    body = fuzzing.mutate(bodies[index % len(bodies)], mutations)
    with fuzzing.time_limit(5, "codec.loads"):
        fuzzing.check_loads(body)


def _weird_leaves() -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            cbor2.undefined,
            cbor2.CBORSimpleValue(16),
            (1, 2),
            frozenset({1}),
            1 + 2j,
            codec.ENTRIES,
            codec.Ref(0, 1, b"x" * 32),
        ]
    )


@FUZZ
@given(
    st.recursive(
        json_values(6) | _weird_leaves() | st.integers(-3, 5),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_wire_readers_of_arbitrary_values(value: Any) -> None:
    fuzzing.check_wire(value)


@FUZZ
@given(
    st.recursive(
        json_values(8) | st.just(codec.Ref(0, 1, b"x" * 32)) | st.just(cbor2.undefined),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2) | st.integers(), inner, max_size=2)
        ),
        max_leaves=12,
    ),
    st.integers(0, 210),
)
def test_decoded_values_are_checked_alike_in_c_and_python(value: Any, depth: int) -> None:
    """``decoded_ok`` accepts exactly what ``validate`` accepts (plus references),
    with or without the C walk."""
    nested = value
    for _ in range(depth):
        nested = [nested]
    fast = values.decoded_ok(nested, values.MAX_DEPTH, codec.Ref)
    assert values._decoded_ok(nested, values.MAX_DEPTH, codec.Ref, None) == fast  # the pure-Python twin
    try:
        values.validate(_refs_to_bytes(nested), 1 << 40)
        assert fast
    except eventlog.InvalidValueError:
        assert not fast


def _refs_to_bytes(v: Any) -> Any:
    if type(v) is codec.Ref:
        return b""
    if type(v) is dict:
        return {k: _refs_to_bytes(x) for k, x in v.items()}
    if type(v) is list:
        return [_refs_to_bytes(x) for x in v]
    return v


# ----------------------------------------------------------------------------- frames


@FUZZ
@given(frames("event", "snapshot", "spilled event", "spilled snapshot"), MUTATIONS)
def test_damaged_frames(sample: Sample, mutations: list[fuzzing.Mutation]) -> None:
    with fuzzing.time_limit(10, "decoding a frame"):
        fuzzing.check_frame(corpus(), sample, fuzzing.mutate(sample.frame, mutations))


@FUZZ
@given(frames("event", "snapshot", "spilled event", "spilled snapshot"), MUTATIONS, st.booleans())
def test_resealed_bodies(sample: Sample, mutations: list[fuzzing.Mutation], compress: bool) -> None:
    """Damage the CRC does not catch (or a hostile writer): the body is anything,
    the checksum right.  The decoder still refuses what save() could not write."""
    with fuzzing.time_limit(10, "decoding a resealed frame"):
        fuzzing.check_resealed(corpus(), sample, fuzzing.mutate(sample.body, mutations), compress)


@FUZZ
@given(frames("spilled event", "spilled snapshot"), MUTATIONS)
def test_spill_pointers(sample: Sample, mutations: list[fuzzing.Mutation]) -> None:
    assert sample.pointer is not None
    with fuzzing.time_limit(10, "decoding a spilled frame"):
        fuzzing.check_spill_pointer(corpus(), sample, fuzzing.mutate(sample.pointer, mutations))


@FUZZ
@given(st.data(), MUTATIONS)
def test_damaged_chunks(data: st.DataObject, mutations: list[fuzzing.Mutation]) -> None:
    c = corpus()
    sample = c.chunks[data.draw(st.integers(0, len(c.chunks) - 1))]
    flags = data.draw(st.sampled_from([sample.flags, sample.flags ^ 1, 2, -1, None, "1"]))
    size = data.draw(st.sampled_from([sample.size, sample.size + 1, sample.size - 1, 0, 1 << 40, -1, None, 1.0]))
    chunk = data.draw(st.sampled_from([fuzzing.mutate(sample.data, mutations), sample.data, None, "text"]))
    with fuzzing.time_limit(10, "reading a chunk"):
        fuzzing.check_chunk(c.log.chunks, sample, flags, size, chunk)


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 1 << 20))
def test_decompress_of_arbitrary_bytes(data: bytes, limit: int) -> None:
    fuzzing.check_decompress(b"\x28\xb5\x2f\xfd" + data, limit)
    fuzzing.check_decompress(data, limit)


def test_hostile_spill_pointers_fail_fast() -> None:
    """A pointer naming one chunk 100,000 times (3 MB of pointer for a 400 MB
    read), a huge length, unknown flags, a missing chunk: each a clear error,
    quickly, reading no more than the value's own size."""
    c = corpus()
    for sample in (s for s in c.frames if s.pointer is not None):
        for pointer in fuzzing.hostile_pointers(sample):
            start = time.perf_counter()
            with fuzzing.time_limit(10, "a hostile spill pointer"):
                fuzzing.check_spill_pointer(c, sample, pointer)
            assert time.perf_counter() - start < 2


def test_one_chunk_named_many_times_is_read_no_more_than_the_value_needs() -> None:
    """Regression: a reference's chunks were all read before their total was
    checked, so a reference naming one chunk a million times read a million chunks."""
    c = corpus()
    sample = next(s for s in c.frames if s.pointer is not None)
    flags, length, hashes = codec.loads(sample.pointer)[0]
    reads = 0
    backend = c.store._backend
    plain = backend.chunks

    def counting(digests: Any) -> Any:
        nonlocal reads
        found = plain(digests)
        reads += len(found)
        return found

    backend.chunks = counting
    try:
        pointer = cbor2.dumps([flags, length, hashes[:32] * 50_000])
        with pytest.raises(eventlog.CorruptionError, match="add up to more than"):
            c.decode(sample, sample.seal(codec.FLAG_SPILL, pointer))
    finally:
        del backend.chunks
    assert reads <= length // 4096 + 2


def test_resealed_values_save_would_refuse_are_corruption() -> None:
    """Regression: CBOR that decodes to what save() refuses (integer, bytes or array
    keys, undefined, simple values) came out of load()."""
    c = corpus()
    sample = next(s for s in c.frames if s.what == "event" and s.name == "chat")
    hostile = [
        [[3, {"a": cbor2.undefined}, None]],
        [[3, {"a": cbor2.CBORSimpleValue(99)}, None]],
        [[0, 0, [{1: "int key"}]]],
        [[0, 0, [{b"k": "bytes key"}]]],
        [[1, 0, {"x": {(1, 2): "array key"}}]],
        [[3, {5: 1}, None]],
    ]
    for wire in hostile:
        body = cbor2.dumps(wire)
        with pytest.raises(eventlog.CorruptionError) as err:
            c.decode(sample, fuzzing.reseal(c, sample, body, compress=False))
        assert err.value.session_id == sample.name and err.value.seq == sample.seq


# ----------------------------------------------------------------------------- bounds


def _liar(size: int) -> bytes:
    """A zstd frame of 300 bytes that declares ``size`` bytes of content."""
    small = zstandard.ZstdCompressor().compress(b"a" * 300)
    return small[:4] + bytes([0xE0]) + struct.pack("<Q", size) + small[7:]


def test_a_frame_claiming_gigabytes_fails_fast_without_allocating() -> None:
    c = corpus()
    sample = next(s for s in c.frames if s.what == "event")
    frame = sample.seal(codec.FLAG_ZSTD, _liar(8 << 30))
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(eventlog.CorruptionError, match=r"claims 8589934592 bytes, over the limit of 268435456"):
        c.decode(sample, frame)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20


def test_the_largest_body_read_is_max_body_bytes(tmp_path: Any) -> None:
    """A store opened with a smaller ``max_body_bytes`` refuses to decompress a
    larger body or to read a larger value (clear errors naming session and
    position), as it refuses to write them."""
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as s:
        s.save("s", {"entries": [{"t": f"entry {i}"} for i in range(5000)]})  # ~70 KB of CBOR, compressed
        s.save("v", {"entries": [{"text": "z" * 100_000}]})  # one large value, in chunks
    with eventlog.open(path, max_body_bytes=50_000) as s:
        with pytest.raises(
            eventlog.CorruptionError, match=r"zstd frame claims \d+ bytes, over the limit of 50000"
        ) as e:
            s.load("s")
        assert e.value.session_id == "s" and e.value.seq == 1
        # "z" * 100_000 is base64 (75,000 bytes decoded), bounded as the text it is read back as
        with pytest.raises(eventlog.CorruptionError, match="large value of 100000 bytes is over the limit of 50000"):
            s.load("v")
        with pytest.raises(eventlog.InvalidValueError, match="over the limit of 50000"):
            s.save("t", {"entries": [{"t": f"entry {i}"} for i in range(5000)]})
        assert s.load("t") is None


def test_the_largest_accepted_write_is_max_body_bytes() -> None:
    with eventlog.open(":memory:", max_body_bytes=200_000) as s:
        s.save("ok", {"entries": [{"t": "x" * 30_000}] * 6})  # about 180 KB encoded
        assert len(s.load("ok")["entries"]) == 6  # type: ignore[index]
        with pytest.raises(eventlog.InvalidValueError, match="over the limit of 200000; split it") as err:
            s.save("big", {"entries": [{"t": "x" * 30_000}] * 7})
        assert err.value.seq == 1
        with pytest.raises(eventlog.InvalidValueError, match="a value of 300000 bytes is over the limit"):
            s.save("huge", {"blob": b"x" * 300_000})  # one large value, stored as chunks
        assert s.sessions() == ["ok"]


@pytest.mark.parametrize("form", [0, codec.FORM_URLSAFE | codec.FORM_FINAL_BREAK | (76 << codec.FORM_LINE_SHIFT)])
def test_max_body_bytes_bounds_a_base64_value_as_the_text_it_is(tmp_path: Any, form: int) -> None:
    """A base64 value is stored decoded (a quarter smaller) but given back as text: the
    limit holds for the text, on the way in and on the way out."""
    text = "data:image/png;base64," + codec.encode_form(bytes(range(256)) * 180, form).decode()  # ~61-63 KB
    assert 45_000 < 180 * 256 < 50_000 < len(text)
    with eventlog.open(":memory:", max_body_bytes=50_000) as s:
        with pytest.raises(eventlog.InvalidValueError, match=f"a value of {len(text)} bytes is over the limit"):
            s.save("s", {"image": text})
        assert s.sessions() == []
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as s:
        s.save("s", {"image": text})
        assert s.load("s") == {"image": text}
    with eventlog.open(path, max_body_bytes=50_000) as s:
        with pytest.raises(eventlog.CorruptionError, match=f"large value of {len(text)} bytes is over") as e:
            s.load("s")
        assert (e.value.session_id, e.value.seq) == ("s", 1)
    with eventlog.open(path, max_body_bytes=len(text)) as s:
        assert s.load("s") == {"image": text}


def test_cbor_nesting_is_bounded() -> None:
    deep_ok = b"\x81" * (codec.MAX_CBOR_DEPTH - 1) + b"\x00"
    assert codec.loads(deep_ok)[0] is not None
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="nesting depth"):
        codec.loads(b"\x81" * 100_000 + b"\x00")
    with pytest.raises(DecodeError, match="nesting depth"):
        codec.loads(b"\xa1\x61a" * 100_000 + b"\x00")
    assert time.perf_counter() - start < 0.5
    # deeper than a stored value may be, though CBOR allows it: refused by the reader
    too_deep: Any = 0
    for _ in range(values.MAX_DEPTH + 1):
        too_deep = [too_deep]
    with pytest.raises(DecodeError, match="malformed replace"):
        eventlog.fold.ops_from_wire([[1, 0, too_deep]])


@pytest.mark.parametrize(
    "header",
    [
        b"\x5b",  # bytes
        b"\x7b",  # text
        b"\x9b",  # array
        b"\xbb",  # map
        b"\xc2\x5b",  # bignum of bytes
        b"\xd9\xe8\x6d\x83\x00\x00\x5b",  # inside eventlog's own reference tag
    ],
)
def test_huge_declared_cbor_lengths_fail_fast_without_allocating(header: bytes) -> None:
    data = header + (1 << 60).to_bytes(8, "big") + b"\x00" * 64
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DecodeError):
        codec.loads(data)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20, (elapsed, peak)


def test_a_large_value_claiming_more_than_max_body_bytes_is_refused() -> None:
    c = corpus()
    sample = next(s for s in c.frames if s.what == "event" and s.name == "images")
    ref = cbor2.CBORTag(codec.REF_TAG, [codec.KIND_BYTES, 1 << 40, b"\x00" * 32])
    body = cbor2.dumps([[0, 0, [{"blob": ref}]]])
    with pytest.raises(eventlog.CorruptionError, match="1099511627776 bytes is over the limit"):
        c.decode(sample, fuzzing.reseal(c, sample, body, compress=False))


def test_mutating_a_frame_never_changes_what_it_decodes_to() -> None:
    """Every single-byte change of every frame (bounded): CRC32 catches each one."""
    c = corpus()
    for sample in c.frames:
        n = len(sample.frame)
        for pos in sorted({0, 1, 2, 5, 6, 7, n // 2, n - 1} | set(range(0, n, max(1, n // 24)))):
            for xor in (0x01, 0x80, 0xFF):
                bad = bytearray(sample.frame)
                bad[pos] ^= xor
                with pytest.raises((eventlog.CorruptionError, eventlog.UnsupportedVersionError)):
                    c.decode(sample, bytes(bad))


def test_the_long_fuzz_run_runs() -> None:
    """``tools/fuzz`` (what a long run uses) works: two seconds of it."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "tools/fuzz", "--seconds", "2", "--seed", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no findings" in done.stdout and "resealed" in done.stdout
