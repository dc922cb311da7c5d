"""Tenant isolation: chunk addresses keyed with a per-store secret (``chunk_key``)."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog.backends.sqlite.schema import SCHEMA_VERSION
from eventlog.chunks import fingerprint
from eventlog.testing import histories
from eventlog.values import same

from ..helpers import dump, to_version_3

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
MIB = 1 << 20


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: 2.5 MiB: three chunks of 1 MiB, 1 MiB and 0.5 MiB.
BIG = blob(1, 5 * MIB // 2)
PIECES = [BIG[i : i + MIB] for i in range(0, len(BIG), MIB)]


def session(value: Any) -> dict[str, Any]:
    return {"entries": [{"id": "a", "role": "user", "content": value}], "leafId": "a"}


def chunk_hashes(path: str) -> set[bytes]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT hash FROM chunks")}
    finally:
        con.close()


def meta(path: str) -> dict[str, Any]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT name, value FROM meta"))
    finally:
        con.close()


def file_bytes(path: str) -> bytes:
    wal = Path(path + "-wal")
    return Path(path).read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def store_with(path: str, key: bytes | None, value: Any = BIG) -> str:
    with eventlog.open(path, chunk_key=key) as store:
        store.save("s", session(value))
    return path


# ----------------------------------------------------------------------------- addresses


def test_unkeyed_addresses_are_plain_blake3(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "plain.db"), None)
    assert chunk_hashes(path) == {blake3.blake3(p).digest() for p in PIECES}
    assert meta(path) == {"chunk_hash": "blake3"}


def test_keyed_addresses_depend_on_the_key_and_only_on_it(tmp_path: Path) -> None:
    a1 = store_with(str(tmp_path / "a1.db"), KEY_A)
    a2 = store_with(str(tmp_path / "a2.db"), KEY_A)
    b = store_with(str(tmp_path / "b.db"), KEY_B)
    plain = store_with(str(tmp_path / "plain.db"), None)
    assert chunk_hashes(a1) == {blake3.blake3(p, key=KEY_A).digest() for p in PIECES}
    assert chunk_hashes(a1) == chunk_hashes(a2)  # same key, same content: same addresses
    assert len(chunk_hashes(a1)) == len(PIECES)
    assert not chunk_hashes(a1) & chunk_hashes(b)  # another key: nothing in common
    assert not chunk_hashes(a1) & chunk_hashes(plain)
    assert not chunk_hashes(b) & chunk_hashes(plain)


def test_a_keyed_store_dedups_within_itself(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    with eventlog.open(path, chunk_key=KEY_A) as store:
        store.save("s", session(BIG))
        before = store.stats()["chunks"]
        store.save("t", session(BIG))
        store.append("u", [{"id": "x", "img": BIG}])
        assert store.stats()["chunks"]["rows"] == before["rows"] == len(PIECES)
        assert store.stats()["chunk_addresses"] == "blake3-keyed"
    with eventlog.open(str(tmp_path / "plain.db")) as plain:
        assert plain.stats()["chunk_addresses"] == "blake3"


def test_the_key_is_not_in_the_file_only_its_fingerprint(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "k.db"), KEY_A)
    recorded = meta(path)
    assert recorded == {"chunk_hash": "blake3-keyed", "chunk_key_check": fingerprint(KEY_A)}
    assert fingerprint(KEY_A) != fingerprint(KEY_B)
    # The fingerprint is in another BLAKE3 domain (key derivation) than any address.
    assert fingerprint(KEY_A) not in {blake3.blake3(KEY_A, key=KEY_A).digest(), blake3.blake3(KEY_A).digest()}
    raw = file_bytes(path)
    assert KEY_A not in raw and KEY_A.hex().encode() not in raw


# ----------------------------------------------------------------------------- round trip


def test_keyed_store_round_trips_and_verifies(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    states = [session(BIG), session("small"), {**session(BIG), "extra": blob(2, 100_000)}]
    with eventlog.open(path, chunk_key=KEY_A, snapshot_every=2) as store:
        for state in states:
            store.save("s", state)
        store.save("child", session(blob(3, 50_000)), parent_id="s")
        assert store.verify().ok
    with eventlog.open(path, chunk_key=KEY_A) as store:
        assert store.load("s") == states[-1]
        for k, state in enumerate(states, 1):
            assert store.fold("s", at=k) == state
        assert [e.seq for e in store.events("s")] == [1, 2, 3]
        store.delete("child")
        report = store.compact(retain=1)
        assert report.chunks_freed == 1  # the child's blob
        check = store.verify()
        assert check.ok and check.garbage_chunks == 0
        assert store.load("s") == states[-1]


def test_verify_checks_keyed_addresses(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "k.db"), KEY_A)
    con = sqlite3.connect(path)
    con.execute("UPDATE chunks SET data = substr(data, 1, 100) || x'00' || substr(data, 102) WHERE cid = 1")
    digest = con.execute("SELECT hash FROM chunks WHERE cid = 1").fetchone()[0]
    con.commit()
    con.close()
    with eventlog.open(path, chunk_key=KEY_A) as store:
        report = store.verify()
        assert not report.ok
        assert any(f"chunk {digest.hex()}: chunk" in p.what and "does not match its hash" in p.what
                   for p in report.problems)  # fmt: skip
        with pytest.raises(eventlog.CorruptionError):
            store.load("s")


def test_in_memory_keyed_store(tmp_path: Path) -> None:
    with eventlog.open(":memory:", chunk_key=KEY_A) as store:
        store.save("s", session(BIG))
        assert store.load("s") == session(BIG)
        assert store.verify().ok


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "k.db")


@given(histories(image_size=120_000, big=120_000), st.binary(min_size=32, max_size=32))
def test_round_trip_holds_for_keyed_stores(history: list[dict[str, Any]], key: bytes) -> None:
    path = _path()
    with eventlog.open(path, chunk_key=key, synchronous="OFF", max_cell_bytes=40_000) as store:
        for k, state in enumerate(history, 1):
            assert store.save("s", state) == k
            assert dump(store.load("s")) == dump(state)
    with eventlog.open(path, chunk_key=key, max_cell_bytes=40_000) as store:
        assert same(store.load("s"), history[-1])
        assert store.verify().ok
        for k, state in enumerate(history, 1):
            assert same(store.fold("s", at=k), state)


# ----------------------------------------------------------------------------- the wrong key


def test_a_keyed_store_needs_its_key(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "k.db"), KEY_A)
    before = file_bytes(path)
    with pytest.raises(eventlog.KeyMismatchError, match="open it with the chunk_key it was created with"):
        eventlog.open(path)
    with pytest.raises(eventlog.KeyMismatchError, match="not the key this store was created with"):
        eventlog.open(path, chunk_key=KEY_B)
    assert file_bytes(path) == before
    with eventlog.open(path, chunk_key=KEY_A) as store:
        assert store.load("s") == session(BIG)


def test_a_key_cannot_be_added_to_an_unkeyed_store(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "plain.db"), None)
    with pytest.raises(eventlog.KeyMismatchError, match="a key cannot be added to an existing store") as err:
        eventlog.open(path, chunk_key=KEY_A)
    assert isinstance(err.value, eventlog.EventLogError)
    # also an empty one: the mode is fixed when the file is created
    empty = str(tmp_path / "empty.db")
    eventlog.open(empty).close()
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(empty, chunk_key=KEY_A)


def test_files_from_before_keys_are_unkeyed(tmp_path: Path) -> None:
    """A version 2 file recorded no addressing: it is opened (and upgraded) as an
    unkeyed store, and refuses a key."""
    path = store_with(str(tmp_path / "v2.db"), None)
    to_version_3(path)
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE meta; PRAGMA user_version = 2;")
    con.close()
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(path, chunk_key=KEY_A)
    with eventlog.open(path) as store:
        assert store.load("s") == session(BIG)
        assert store.verify().ok
    assert meta(path) == {"chunk_hash": "blake3"}
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


@pytest.mark.parametrize("bad", [b"", KEY_A[:31], KEY_A + b"x", KEY_A.hex(), "a passphrase", 12345, [1] * 32], ids=repr)
def test_a_bad_key_is_refused_before_the_file_is_touched(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "k.db"
    with pytest.raises(eventlog.InvalidValueError, match="chunk_key must be 32 bytes"):
        eventlog.open(str(path), chunk_key=bad)
    assert not path.exists()


def test_damaged_or_unknown_addressing_records(tmp_path: Path) -> None:
    path = store_with(str(tmp_path / "k.db"), KEY_A)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = x'00' WHERE name = 'chunk_key_check'")
    con.commit()
    with pytest.raises(eventlog.CorruptionError, match="fingerprint"):
        eventlog.open(path, chunk_key=KEY_A)
    con.execute("UPDATE meta SET value = 'blake4' WHERE name = 'chunk_hash'")
    con.commit()
    con.close()
    with pytest.raises(eventlog.UnsupportedVersionError, match="blake4"):
        eventlog.open(path, chunk_key=KEY_A)
