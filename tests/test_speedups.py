"""The optional C extension gives exactly the answers of the Python code it speeds up."""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog import codec, values
from eventlog.codec import DecodeError, Ref
from eventlog.errors import InvalidValueError
from eventlog.testing import json_values

if values._c_scan is None:
    if os.environ.get("EVENTLOG_REQUIRE_SPEEDUPS"):
        raise RuntimeError("EVENTLOG_REQUIRE_SPEEDUPS is set but eventlog._speedups is not built")
    pytest.skip("eventlog._speedups is not built here", allow_module_level=True)


class Text(str):
    pass


def python_answer(value: Any, threshold: int) -> bool | None:
    try:
        return values._validate(value, threshold, 0)
    except InvalidValueError:
        return None


def nested(depth: int) -> Any:
    v: Any = "leaf"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


HOSTILE: list[Any] = [
    (1, 2), {1: "int key"}, {True: "bool key"}, {Text("k"): 1}, Text("s"), bytearray(b"x"), memoryview(b"x"),
    {"a": [1, 2, {3}]}, [frozenset()], 1 + 2j, object(), {"a": {"b": [None, 1.5, -0.0, True, b"x", (1,)]}},
    nested(199), nested(200), nested(201), nested(400), [nested(199)], {"x": nested(199)},
]  # fmt: skip

storable = st.recursive(
    json_values(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_scan_agrees_on_hostile_values(value: Any) -> None:
    for threshold in (64, 1 << 15):
        assert values._c_scan(value, threshold, values.MAX_DEPTH) == python_answer(value, threshold)


@given(value=storable | st.sampled_from(HOSTILE), threshold=st.integers(64, 200_000), size=st.integers(0, 60_000))
def test_scan_agrees_on_any_value(value: Any, threshold: int, size: int) -> None:
    for v in (value, [value, "é" * size], {"big": b"\0" * size, "v": value}):
        assert values._c_scan(v, threshold, values.MAX_DEPTH) == python_answer(v, threshold)


def test_validate_still_words_the_error() -> None:
    with pytest.raises(InvalidValueError, match="dict key 1 is a int"):
        values.validate({"a": {1: 2}}, 1 << 15)
    with pytest.raises(InvalidValueError, match="nested deeper than 200"):
        values.validate(nested(250), 1 << 15)


def containers(value: Any) -> list[Any]:
    out: list[Any] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) in (dict, list):
            out.append(v)
            stack.extend(v.values() if type(v) is dict else v)
    return out


@given(value=storable)
def test_copy_has_new_containers_and_shared_leaves(value: Any) -> None:
    assert values._c_copy is not None
    copied = values._c_copy(value)
    assert values.same(copied, value) and values.same(values._copy(value), copied)
    assert not {id(c) for c in containers(copied)} & {id(c) for c in containers(value)}
    if type(value) is dict:
        for k, v in value.items():
            if type(v) not in (dict, list):
                assert copied[k] is v


# ---------------------------------------------------------------- the CBOR decoder


def identical(a: Any, b: Any) -> bool:
    """Same types, same key order, floats bit for bit."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is dict:
        return list(a) == list(b) and all(identical(x, y) for x, y in zip(a.values(), b.values(), strict=True))
    if type(a) is list:
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def general(data: bytes) -> tuple[Any, int] | type[DecodeError]:
    try:
        return codec._general_loads(data, None)
    except DecodeError:
        return DecodeError


def fast(data: bytes) -> tuple[Any, int] | type[DecodeError] | None:
    def ref_hook(value: Any) -> Any:
        return codec._ref_from_tag(value)

    assert codec._c_decode is not None
    try:
        return codec._c_decode(data, ref_hook, codec.ENTRIES, codec.MAX_CBOR_DEPTH - 20)
    except DecodeError:
        return DecodeError


def storable(v: Any, depth: int = 0) -> bool:
    """What ``codec.decode`` promises of the fast path (``Decoded.storable``): str
    keys, the storable types, refs and markers as leaves, no container nested more
    than 200 deep (the frame's own levels included, so values stay within theirs)."""
    if type(v) is dict:
        return depth <= 200 and all(type(k) is str and storable(x, depth + 1) for k, x in v.items())
    if type(v) is list:
        return depth <= 200 and all(storable(x, depth + 1) for x in v)
    return type(v) in (str, bytes, int, float, bool, type(None), Ref) or v is codec.ENTRIES


def agrees(data: bytes) -> bool:
    """The C decoder gives up, or answers exactly what cbor2 answers, and then only
    with storable values (the fold trusts it to: it does not walk them again)."""
    mine = fast(data)
    if mine is None:
        return True
    if isinstance(mine, tuple):
        assert storable(mine[0])
    theirs = general(data)
    if mine is DecodeError or theirs is DecodeError:
        return mine is theirs
    assert isinstance(mine, tuple) and isinstance(theirs, tuple)
    return mine[1] == theirs[1] and identical(mine[0], theirs[0])


REF = Ref(codec.KIND_BASE64, 64, bytes(range(32)) * 2, "data:image/png;base64,")
#: Refs to base64 in other forms (a fifth field), with and without a prefix.
FORM_REFS = st.builds(
    Ref,
    st.just(codec.KIND_BASE64),
    st.integers(0, 1 << 40),
    st.just(bytes(range(32))),
    st.sampled_from(["", "data:image/png;base64,"]),
    st.builds(
        lambda flags, line: flags | line << codec.FORM_LINE_SHIFT,
        st.integers(0, codec.FORM_FLAGS),
        st.just(0) | st.integers(codec.MIN_LINE, 1 << 20),
    ).filter(lambda f: f and (f & codec.FORM_CRLF == 0 or f >> 8 or f & codec.FORM_FINAL_BREAK)),
)
wire_values = st.recursive(
    json_values() | st.binary(max_size=40) | st.just(REF) | FORM_REFS | st.just(codec.ENTRIES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=40), inner, max_size=4),
    max_leaves=30,
)


@given(value=wire_values)
def test_decoder_reads_what_eventlog_writes(value: Any) -> None:
    data = codec.dumps(value)
    mine = fast(data)
    assert mine is not None and mine is not DecodeError
    assert agrees(data)


@given(value=wire_values, data=st.data())
def test_decoder_agrees_on_damaged_bytes(value: Any, data: st.DataObject) -> None:
    raw = bytearray(codec.dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        how = data.draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if how == "flip" and at < len(raw):
            raw[at] ^= data.draw(st.integers(1, 255))
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif how == "delete":
            del raw[at : at + data.draw(st.integers(1, 4))]
        else:
            del raw[at:]
    assert agrees(bytes(raw))


@given(data=st.binary(max_size=64))
def test_decoder_agrees_on_any_bytes(data: bytes) -> None:
    assert agrees(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x5b" + (1 << 62).to_bytes(8, "big"),  # a byte string claiming 2**62 bytes
        b"\x9b" + (1 << 62).to_bytes(8, "big"),  # an array claiming 2**62 items
        b"\xbb" + (1 << 62).to_bytes(8, "big"),  # a map claiming 2**62 pairs
        b"\x81" * 100_000,  # nested far too deep
        b"\xc2\x01",  # a bignum over something other than bytes
        b"\xf7",  # undefined: left to cbor2
        b"\x9f\x01\xff",  # indefinite length: left to cbor2
        b"\xa1\x01\x02",  # an int key: left to cbor2
        b"\x63\xed\xa0\x80",  # a lone surrogate: invalid UTF-8
        b"\x01\x02",  # trailing bytes
        b"\xf9\x7e\x01",  # a half-precision NaN with a payload (cbor2 keeps it)
        b"\xf9\x7c\x01",  # a signalling one
        b"\xd9\xe8\x6e\x01",  # the entries tag over something other than null
    ],
)
def test_decoder_gives_up_on_what_it_does_not_read(data: bytes) -> None:
    assert fast(data) is None
    assert agrees(data)


def test_decoder_depth_bound() -> None:
    assert fast(b"\x81" * 200 + b"\x80") is not None  # a container 200 deep
    assert agrees(b"\x81" * 200 + b"\x80")
    assert fast(b"\x81" * 201 + b"\x80") is None  # 201: left to cbor2 and the value checks


def test_short_strings_come_from_the_cache_yet_stay_correct() -> None:
    value = [{"role": "assistant", "k" * 32: "é", "x" * 33: "y"}] * 3
    (out, _) = fast(codec.dumps(value))  # type: ignore[misc]
    assert out == value
    assert out[0]["role"] is out[1]["role"]  # one str object, already hashed


# ---------------------------------------------------------------- the CBOR encoder


def general_dumps(value: Any) -> tuple[bytes, list[Ref]] | type[ValueError]:
    refs: list[Ref] = []
    try:
        return codec._general_dumps(value, refs), refs
    except ValueError:
        return ValueError


ODD: list[Any] = [
    1 << 64, -(1 << 64) - 1, (1 << 63), -(1 << 63) - 1, 1 << 200, float("nan"), float("inf"), float("-inf"), -0.0,
    "\ud800", {"k": "\udfff"}, (1, "two", [3.0]), {1: "int key"}, {Text("k"): 1}, Text("s"), bytearray(b"x"),
    nested(999), nested(1001), [REF, REF, codec.ENTRIES], Ref(codec.KIND_STR, 1, b"\0" * 32),
    Ref(codec.KIND_BASE64, 1, b"\0" * 32, "", 1 << 70), Ref(codec.KIND_BASE64, 1, b"\0" * 32, "", True),
]  # fmt: skip


@pytest.mark.parametrize("value", ODD, ids=range(len(ODD)))
def test_encoder_writes_cbor2_bytes_or_gives_up_on_odd_values(value: Any) -> None:
    refs: list[Ref] = [REF]  # refs already there stay; a give-up leaves no new ones
    assert codec._c_encode is not None
    mine = codec._c_encode(value, Ref, codec.ENTRIES, refs)
    theirs = general_dumps(value)
    if mine is None:
        assert refs == [REF]
    else:
        assert theirs is not ValueError and (mine, refs[1:]) == theirs


def big_int_in(v: Any) -> bool:
    if type(v) is int:
        return not -(1 << 63) <= v < (1 << 63)
    if type(v) in (list, dict):
        return any(map(big_int_in, v.values() if type(v) is dict else v))
    return False


@given(value=wire_values | st.integers() | st.floats())
def test_encoder_writes_exactly_what_cbor2_writes(value: Any) -> None:
    refs: list[Ref] = []
    assert codec._c_encode is not None
    mine = codec._c_encode(value, Ref, codec.ENTRIES, refs)
    theirs = general_dumps(value)
    if mine is None:  # only integers beyond 64 bits are left to cbor2
        assert big_int_in(value) and not refs
        return
    assert theirs is not ValueError and (mine, refs) == theirs


def _containers(entries: list[Any]) -> list[int]:
    """Ids of every dict and list inside ``entries`` (not the list itself)."""
    out, stack = [], list(entries)
    while stack:
        v = stack.pop()
        if type(v) in (dict, list):
            out.append(id(v))
            stack.extend(v.values() if type(v) is dict else v)
    return sorted(out)


entry_lists = st.lists(
    st.recursive(
        json_values(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=30,
    ),
    max_size=6,
)


@given(entry_lists, st.data())
def test_the_decoder_records_what_the_mirror_would(entries: list[Any], data: st.DataObject) -> None:
    """Decoding with a record leaves exactly the containers inside the entries in it
    (refs' own parts excluded), with what they hold: a mirror made from it vouches for
    the entries as decoded, and any change to one is noticed."""
    from eventlog.mirror import Mirror

    ref = Ref(codec.KIND_STR, 100_000, b"\x01" * 64)
    entries = [*entries, {"big": ref}]  # a ref's tag content is an array: not recorded
    record: codec.Record = ([], [], [], [])
    value, markers, known = codec.decode(codec.dumps(entries), None, record)
    assert known and markers == 0 and value == entries
    assert sorted(map(id, record[0])) == _containers(value)
    assert record[1] == [len(c) for c in record[0]]
    m = Mirror.recorded(value, record, value)
    assert m.full and m.unchanged(value)
    inner = [c for c in record[0] if len(c)]
    if inner:
        target = data.draw(st.sampled_from(inner))
        if type(target) is dict:
            target[data.draw(st.sampled_from(sorted(target)))] = object()
        else:
            target[data.draw(st.integers(0, len(target) - 1))] = object()
        assert not m.unchanged(value)


@pytest.mark.parametrize(
    "tail",
    [
        bytes([0xA1, 0x01, 0x61, 0x61]),  # {1: "a"}: cbor2 reads it, the C decoder does not
        bytes([0xF7]),  # undefined
    ],
)
def test_a_record_is_cut_back_when_the_decoder_gives_up(tail: bytes) -> None:
    """Containers completed before the C decoder gave up leave nothing in the record:
    the general decoder, which then reads the bytes, records nothing."""
    head = codec.dumps([{"a": [1, 2]}, {"b": {"c": "d"}}])
    data = bytes([head[0] + 1]) + head[1:] + tail  # one more item, after the two
    record: codec.Record = ([], [], [], ["kept"])
    decoded = codec.decode(data, None, record)
    assert not decoded.storable and len(decoded.value) == 3
    assert record == ([], [], [], ["kept"])


def _text_item(raw: bytes) -> bytes:
    """CBOR text string of the bytes ``raw`` (valid UTF-8 or not)."""
    n = len(raw)
    head = bytes([0x60 | n]) if n < 24 else bytes([0x78, n]) if n < 256 else bytes([0x79]) + n.to_bytes(2, "big")
    return head + raw


UTF8_EDGES = [
    b"", b"a", b"\x7f", b"\xc2\x80", b"\xc3\xbf", b"\xc4\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf", b"\xee\x80\x80",
    # invalid: overlong, surrogates, past U+10FFFF, lone continuation, truncated, bad leads
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\x80",
    b"\xc2", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc2\x41", b"\xe2\x28\xa1",
]  # fmt: skip


@pytest.mark.parametrize("raw", UTF8_EDGES, ids=range(len(UTF8_EDGES)))
@pytest.mark.parametrize("pad", [0, 1, 15, 16, 17, 40])
def test_text_is_read_exactly_as_python_decodes_utf8(raw: bytes, pad: int) -> None:
    """Every boundary of UTF-8, before, inside and after runs of ASCII of every length
    around the 16-byte blocks: the C decoder gives exactly ``bytes.decode`` or gives
    up (and the general decoder then refuses the invalid text)."""
    for data in (b"x" * pad + raw, raw + b"y" * pad, b"x" * pad + raw + b"y" * pad, raw * 3):
        item = _text_item(data)
        got = fast(item)
        try:
            want: Any = data.decode("utf-8")
        except UnicodeDecodeError:
            assert got is None and general(item) is DecodeError
            continue
        assert got is not None and got != DecodeError
        assert got[0] == want and type(got[0]) is str
        # The most compact kind, as CPython requires (a concatenation keeps the kinds;
        # the originals may differ in size by a cached UTF-8 form of a shared 1-char str).
        assert sys.getsizeof(got[0] + "\0") == sys.getsizeof(want + "\0")


@given(st.text(max_size=300), st.binary(max_size=40), st.integers(0, 300))
def test_any_text_or_bytes_are_read_as_python_decodes_them(text: str, junk: bytes, at: int) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    at = min(at, len(raw))
    for data in (raw, raw[:at] + junk + raw[at:]):
        item = _text_item(data)
        got = fast(item)
        try:
            want = data.decode("utf-8")
        except UnicodeDecodeError:
            assert got is None
            continue
        assert got is not None and got != DecodeError and got[0] == want
        assert sys.getsizeof(got[0] + "\0") == sys.getsizeof(want + "\0")


@pytest.mark.parametrize("n", [16_383, 16_384, 20_001, 300_000])
def test_large_text_and_bytes_come_out_whole(n: int) -> None:
    """Large strings of every kind and large bytes (whose pages the C decoder maps
    in one call before writing them) are read exactly, next to small ones."""
    values: list[Any] = [
        "a" * n,
        "é" + "a" * n,
        "→" + "b" * n,
        "🚀" + "c" * (n - 1) + "🚀",
        bytes(range(256)) * (n // 256) + b"\x01" * (n % 256),
        "tail",
    ]
    got = fast(cbor2.dumps(values))
    assert got is not None and got != DecodeError
    assert got[0] == values
    assert [type(v) for v in got[0]] == [type(v) for v in values]
    # The most compact kind (a concatenation drops the UTF-8 form encoding cached).
    assert [sys.getsizeof(v + "\0") for v in got[0][:4]] == [sys.getsizeof(v + "\0") for v in values[:4]]
