"""Read-only stores (``open(path, readonly=True)``) and the read commands, which use
them: reading never changes the file, not even to upgrade an older one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.sql import SCHEMA_VERSION

from .helpers import to_version_3
from .test_cli import run
from .test_trees import to_version_1

KEY = bytes(range(100, 132))


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: A screenshot as a runtime sends it: base64 text (stored decoded, in one chunk).
IMAGE = base64.b64encode(blob(1, 150_000)).decode()


def session(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 5, "entries": list(entries), "leafId": entries[-1]["id"]}


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def user_version(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def fill(path: str, **options: Any) -> dict[str, dict[str, Any]]:
    """A small store: a session with a large value and history, a child, and a
    snapshot; returns what each session loads as."""
    img = IMAGE
    with eventlog.open(path, snapshot_every=2, **options) as store:
        store.save("root", session({"id": "1", "role": "user", "img": img}))
        store.save("root", session({"id": "1", "role": "user", "img": img}, {"id": "2", "role": "assistant"}))
        store.save("root", session({"id": "1", "role": "user", "img": img}, {"id": "3", "role": "assistant"}))
        store.save("child", session({"id": "c", "role": "user", "text": "sub-task"}), parent_id="root")
        return {name: store.load(name) or {} for name in store.sessions()}


def to_version_2(path: str) -> None:
    to_version_3(path)
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE meta; PRAGMA user_version = 2;")
    con.close()


@pytest.fixture(params=[SCHEMA_VERSION, 3, 2, 1])
def old_or_new(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, dict[str, Any]], int]:
    """A store file at the current schema version, or made into a version 3, 2 or 1 one."""
    path = str(tmp_path / "store.db")
    expected = fill(path)
    version: int = request.param
    if version == 3:
        to_version_3(path)
    elif version == 2:
        to_version_2(path)
    elif version == 1:
        to_version_1(path)
    assert user_version(path) == version
    return path, expected, version


# ----------------------------------------------------------------------------- the API


def test_a_read_only_store_reads_everything_and_changes_nothing(
    old_or_new: tuple[str, dict[str, dict[str, Any]], int],
) -> None:
    path, expected, version = old_or_new
    before = digest(path)
    with eventlog.open(path, readonly=True) as store:
        assert store.readonly
        assert sorted(store.sessions()) == sorted(expected)
        for name, data in expected.items():
            assert store.load(name) == data
            assert store.fold(name) == data
        assert store.fold("root", at=1)["entries"][0]["img"] == IMAGE
        assert [e.seq for e in store.events("root")] == [1, 2, 3]
        assert store.children("root") == ["child"] and store.tree("root") == ["child"]
        assert store.parent("child") == "root"
        assert store.info("root").seq == 3
        assert store.stats()["sessions"]["count"] == 2
        report = store.verify()
        assert report.ok, report.problems
        assert (report.sessions, report.events, report.snapshots, report.chunks) == (2, 4, 1, 1)
    assert digest(path) == before
    assert user_version(path) == version  # not upgraded
    with eventlog.open(path) as store:  # a writer still upgrades it
        assert store.load("root") == expected["root"]
    assert user_version(path) == SCHEMA_VERSION


def test_every_write_raises_read_only_error(db_path: str) -> None:
    fill(db_path)
    before = digest(db_path)
    with eventlog.open(db_path, readonly=True) as store:
        writes = {
            "save": lambda: store.save("root", {"x": 1}),
            "append": lambda: store.append("new", [{"id": "x"}]),
            "delete": lambda: store.delete("root"),
            "snapshot": lambda: store.snapshot("root"),
            "compact": lambda: store.compact(),
        }
        for what, write in writes.items():
            with pytest.raises(eventlog.ReadOnlyError, match=rf"{what}\(\) on a store opened with readonly=True"):
                write()
        with pytest.raises(eventlog.StorageError):  # ReadOnlyError is a StorageError
            store.save("root", {})
        # The connection itself is read-only too, whatever the store's own checks.
        with pytest.raises(eventlog.ReadOnlyError):
            store._db.write().__enter__()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._db.con.execute("DELETE FROM events")
        assert store.verify().ok
    assert digest(db_path) == before


def test_a_reader_sees_what_a_writer_commits_meanwhile(db_path: str) -> None:
    fill(db_path)
    with eventlog.open(db_path, synchronous="NORMAL") as writer, eventlog.open(db_path, readonly=True) as reader:
        assert reader.load("late") is None
        writer.save("late", session({"id": "1"}))  # in the WAL, not checkpointed
        assert reader.load("late") == session({"id": "1"})
        writer.save("root", session({"id": "9"}))
        assert reader.load("root") == session({"id": "9"})  # the reader's cache is caught up
        assert reader.verify().ok


def test_a_read_only_keyed_store_needs_its_key(db_path: str) -> None:
    expected = fill(db_path, chunk_key=KEY)
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(db_path, readonly=True)
    with eventlog.open(db_path, readonly=True, chunk_key=KEY) as store:
        assert store.load("root") == expected["root"]
        assert store.verify().ok


def test_read_only_opens_nothing_that_is_not_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(eventlog.StorageError, match="no store file"):
        eventlog.open(str(missing), readonly=True)
    assert not missing.exists()
    with pytest.raises(eventlog.InvalidValueError, match="needs a store file"):
        eventlog.open(":memory:", readonly=True)
    with pytest.raises(eventlog.InvalidValueError, match="readonly must be"):
        eventlog.open(str(missing), readonly="yes")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(eventlog.UnsupportedVersionError, match="empty"):
        eventlog.open(str(empty), readonly=True)
    assert empty.read_bytes() == b""
    # Foreign files and newer schemas: tests/test_codec.py, with and without readonly.


# ----------------------------------------------------------------------------- the command line


READ_COMMANDS: list[list[str]] = [
    ["verify", "{path}"],
    ["sessions", "{path}", "--tree"],
    ["log", "{path}", "root"],
    ["show", "{path}", "root", "--at", "2"],
    ["replay", "{path}", "root"],
    ["diff", "{path}", "root", "1", "3"],
    ["export", "{path}", "root", "-o", "{out}.json"],
    ["view", "{path}", "root", "-o", "{out}.html"],
    ["stats", "{path}", "--json"],
]


def test_read_commands_leave_the_file_unchanged(
    old_or_new: tuple[str, dict[str, dict[str, Any]], int], tmp_path: Path
) -> None:
    """``eventlog verify`` (and every other read command) on a current, a version 2
    and a version 1 file: it works, and the file's bytes are the same after."""
    path, expected, version = old_or_new
    before = digest(path)
    for command in READ_COMMANDS:
        args = [a.format(path=path, out=tmp_path / command[0]) for a in command]
        res = run(*args)
        assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
        assert digest(path) == before, f"{command[0]} changed the file"
    assert user_version(path) == version
    assert run("verify", path).stdout.startswith("ok: 2 sessions, 4 events, 1 snapshot, 1 chunk")
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["entries"][1] == expected["root"]["entries"][1]
    # the writing commands still upgrade it
    assert run("delete", path, "child").returncode == 0
    assert user_version(path) == SCHEMA_VERSION


def test_verify_of_a_keyed_store_takes_the_key(db_path: str, tmp_path: Path) -> None:
    fill(db_path, chunk_key=KEY)
    before = digest(db_path)
    res = run("verify", db_path)
    assert res.returncode == 1 and "--chunk-key-file" in res.stderr and "Traceback" not in res.stderr, res.stderr
    raw, hexed, bad = tmp_path / "raw.key", tmp_path / "hex.key", tmp_path / "bad.key"
    raw.write_bytes(KEY)
    hexed.write_text(KEY.hex() + "\n")
    bad.write_text("not a key\n")
    for key_file in (raw, hexed):
        res = run("verify", db_path, "--chunk-key-file", str(key_file))
        assert res.returncode == 0 and res.stdout.startswith("ok: 2 sessions"), res.stdout + res.stderr
    res = run("verify", db_path, "--chunk-key-file", str(bad))
    assert res.returncode == 1 and "32 raw bytes or 64 hex digits" in res.stderr, res.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(bytes(32))
    res = run("sessions", db_path, "--chunk-key-file", str(wrong))
    assert res.returncode == 1 and "not the key this store was created with" in res.stderr, res.stderr
    assert digest(db_path) == before
    # the environment variable works for writing commands too
    env_run = run_with_env({"EVENTLOG_CHUNK_KEY_FILE": str(hexed)}, "delete", db_path, "child")
    assert env_run.returncode == 0, env_run.stderr
    assert run("compact", db_path, "--chunk-key-file", str(raw)).returncode == 0


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventlog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", **env},
    )


def test_import_can_create_a_keyed_store(tmp_path: Path) -> None:
    source = tmp_path / "imported.json"  # session JSON: the id is the file name
    source.write_text(json.dumps({"entries": [{"id": "a", "img": blob(5, 60_000).hex()}], "leafId": "a"}))
    key_file = tmp_path / "k.key"
    key_file.write_bytes(KEY)
    target = str(tmp_path / "new.db")
    res = run("import", target, str(source), "--chunk-key-file", str(key_file))
    assert res.returncode == 0, res.stderr
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(target)
    with eventlog.open(target, chunk_key=KEY, readonly=True) as store:
        assert store.load("imported") == json.loads(source.read_text())
        assert store.stats()["chunks"]["rows"] == 1
