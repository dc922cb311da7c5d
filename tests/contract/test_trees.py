"""Session trees, delete, compact (with and without retain) and verify."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.backends.sqlite.schema import SCHEMA_VERSION

from ..helpers import largest_cell_and_row, to_version_4


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def session(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 5, "entries": list(entries), "leafId": entries[-1]["id"] if entries else None}


def file_bytes(path: str) -> bytes:
    data = Path(path).read_bytes()
    wal = Path(path + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


# ----------------------------------------------------------------------------- trees


def test_children_and_tree_to_any_depth(store: eventlog.Store) -> None:
    store.save("root", session({"id": "r"}))
    parent = "root"
    chain = []
    for depth in range(6):
        name = f"task:{parent}:{depth}"
        store.save(name, session({"id": str(depth)}), parent_id=parent)
        chain.append(name)
        parent = name
    store.append("side", [{"id": "s"}], parent_id="root")
    assert store.children("root") == [chain[0], "side"]
    assert store.tree("root") == [chain[0], "side", *chain[1:]]
    assert store.tree(chain[-1]) == []
    assert store.parent(chain[0]) == "root"


def test_parent_is_recorded_at_creation_only(store: eventlog.Store) -> None:
    store.save("a", session({"id": "1"}))
    store.save("b", session({"id": "1"}), parent_id="a")
    store.save("b", session({"id": "2"}), parent_id="elsewhere")
    assert store.parent("b") == "a"
    assert store.children("elsewhere") == []


def test_a_session_cannot_be_its_own_parent(store: eventlog.Store) -> None:
    with pytest.raises(eventlog.InvalidValueError):
        store.save("a", session({"id": "1"}), parent_id="a")
    assert store.load("a") is None


def test_parent_links_that_loop_are_listed_once(store: eventlog.Store) -> None:
    store.save("a", session({"id": "1"}), parent_id="b")  # b does not exist yet
    store.save("b", session({"id": "1"}), parent_id="a")
    assert store.tree("a") == ["b"]
    assert store.tree("b") == ["a"]
    assert sorted(store.delete("a")) == ["a", "b"]
    assert store.sessions() == []


# ----------------------------------------------------------------------------- delete


def test_delete_removes_the_whole_tree_and_only_it(store: eventlog.Store) -> None:
    store.save("root", session({"id": "r"}))
    store.save("child", session({"id": "c"}), parent_id="root")
    store.save("grandchild", session({"id": "g"}), parent_id="child")
    store.save("sibling", session({"id": "s"}))
    assert store.delete("child") == ["child", "grandchild"]
    assert store.load("child") is None and store.load("grandchild") is None
    assert store.load("root") == session({"id": "r"})
    assert store.sessions() == ["root", "sibling"]
    for name in ("child", "grandchild"):
        with pytest.raises(eventlog.NotFoundError) as e:
            store.events(name)
        assert e.value.session_id == name
        with pytest.raises(eventlog.NotFoundError):
            store.fold(name, at=1)
        assert store.seq(name) == 0


def test_delete_of_nothing_returns_nothing_but_reaches_orphans(store: eventlog.Store) -> None:
    assert store.delete("nobody") == []
    store.save("orphan", session({"id": "o"}), parent_id="nobody")
    assert store.delete("nobody") == ["orphan"]


def test_delete_without_the_tree_leaves_children_linked_by_id(store: eventlog.Store, db_path: str) -> None:
    """``tree=False`` tombstones the session alone; its children stay, still naming
    it, and become the children of the next session written under that id."""
    store.save("root", session({"id": "r", "big": blob(3, 100_000)}))
    store.save("child", session({"id": "c"}), parent_id="root")
    store.save("grandchild", session({"id": "g"}), parent_id="child")
    assert store.delete("root", tree=False) == ["root"]
    assert store.load("root") is None and store.seq("root") == 0
    assert store.sessions() == ["child", "grandchild"]
    assert store.load("child") == session({"id": "c"}) and store.load("grandchild") == session({"id": "g"})
    assert store.parent("child") == "root" and store.children("root") == ["child"]
    assert store.tree("root") == ["child", "grandchild"]
    assert store.delete("root", tree=False) == []  # nothing left to delete of it alone
    # A new incarnation of the id: the links attach to it.
    assert store.save("root", session({"id": "new"})) == 1
    assert store.children("root") == ["child"] and store.tree("root") == ["child", "grandchild"]
    # The old incarnation's bytes go at the next compact; the children's stay.
    report = store.compact()
    assert report.sessions_removed == 1 and report.chunks_freed >= 1
    assert store.load("child") == session({"id": "c"}) and store.verify().ok
    # And delete() of the id still takes the whole tree.
    assert store.delete("root") == ["root", "child", "grandchild"]
    assert store.sessions() == []


@pytest.mark.parametrize("tree", [None, 0, 1, "no"])
def test_delete_tree_must_be_a_bool(store: eventlog.Store, tree: Any) -> None:
    store.save("root", session({"id": "r"}))
    store.save("child", session({"id": "c"}), parent_id="root")
    with pytest.raises(eventlog.InvalidValueError):
        store.delete("root", tree=tree)
    assert store.sessions() == ["root", "child"]


def test_a_deleted_id_starts_over_empty(store: eventlog.Store, db_path: str) -> None:
    store.save("s", session({"id": "old", "big": blob(1, 100_000)}))
    store.save("s", session({"id": "old", "big": blob(1, 100_000)}, {"id": "old2"}))
    store.delete("s")
    assert store.save("s", {"entries": [{"id": "new"}]}) == 1
    assert store.load("s") == {"entries": [{"id": "new"}]}
    assert [e.seq for e in store.events("s")] == [1]
    with eventlog.open(db_path) as other:  # nothing of the old one after a reopen either
        assert other.load("s") == {"entries": [{"id": "new"}]}
        assert other.fold("s", at=1) == {"entries": [{"id": "new"}]}


def test_delete_tombstones_each_session_in_its_log(store: eventlog.Store, db_path: str) -> None:
    store.save("p", session({"id": "1"}))
    store.save("c", session({"id": "1"}), parent_id="p")
    store.delete("p")
    con = sqlite3.connect(db_path)
    rows = con.execute("SELECT s.name, max(e.seq), s.deleted_ms IS NOT NULL FROM events e JOIN sessions s "
                       "ON s.sid = e.sid GROUP BY s.sid ORDER BY s.sid").fetchall()  # fmt: skip
    con.close()
    assert rows == [("p", 2, 1), ("c", 2, 1)]  # save + tombstone each


def test_a_writer_with_a_stale_cache_after_a_delete_elsewhere(db_path: str) -> None:
    with eventlog.open(db_path) as a, eventlog.open(db_path) as b:
        a.save("s", session({"id": "1"}))
        assert b.load("s") == session({"id": "1"})
        a.delete("s")
        assert b.load("s") is None
        with pytest.raises(eventlog.ConflictError):
            b.save("s", session({"id": "2"}), expected_seq=1)
        b.save("s", session({"id": "2"}))
        assert a.load("s") == session({"id": "2"}) and a.seq("s") == 1


# ----------------------------------------------------------------------------- compact


def test_compact_frees_what_only_deleted_sessions_used(db_path: str) -> None:
    shared, own = blob(1, 300_000), blob(2, 300_000)
    with eventlog.open(db_path) as store:
        store.save("live", session({"id": "1", "img": shared}))
        store.save("dead", session({"id": "1", "img": shared}, {"id": "2", "img": own}))
        store.save("dead-child", session({"id": "1", "img": own}), parent_id="dead")
        assert store.verify().ok
        assert own[1000:1064] in file_bytes(db_path)  # the search would find it
        store.delete("dead")
        report = store.compact()
        assert report.sessions_removed == 2 and report.chunks_freed == 1 and report.checkpointed
        assert report.bytes_freed == 300_000
        assert store.load("live") == session({"id": "1", "img": shared})
        check = store.verify()
        assert check.ok and check.garbage_chunks == 0 and check.sessions == 1
        assert store.compact().chunks_freed == 0  # nothing left to do
    data = file_bytes(db_path)
    assert own[1000:1064] not in data
    assert shared[1000:1064] in data


def test_deleted_content_is_physically_gone(db_path: str) -> None:
    marker = blob(3, 2000)  # incompressible and small: stays inline in its event frame
    with eventlog.open(db_path) as store:
        store.save("keep", session({"id": "k"}))
        for i in range(20):
            store.append("gone", [{"id": str(i), "secret": marker + bytes([i])}])
        store.snapshot("gone")
        before = file_bytes(db_path)
        assert marker[:64] in before
        store.delete("gone")
        store.compact()
        after = file_bytes(db_path)
    assert marker[:64] not in after
    assert marker[500:564] not in after


def test_compact_with_vacuum_shrinks_the_file(db_path: str) -> None:
    with eventlog.open(db_path) as store:
        store.save("s", session({"id": "1", "img": blob(4, 3_000_000)}))
        store.delete("s")
        store.compact()
        size = os.path.getsize(db_path)  # the WAL is in the file now; the pages are free but kept
        assert size > 3_000_000
        report = store.compact(vacuum=True)
        assert report.vacuumed
    assert os.path.getsize(db_path) < size / 4


def test_compact_retain_folds_old_history_away(db_path: str) -> None:
    old_img = blob(5, 200_000)
    with eventlog.open(db_path, snapshot_every=4) as store:
        store.save("s", session({"id": "0", "img": old_img}))
        for i in range(1, 10):
            store.save("s", session(*({"id": str(j)} for j in range(i + 1))))  # old_img left the session
        state_at_7 = store.fold("s", at=7)
        want = store.load("s")
        report = store.compact(retain=3)
        assert report.sessions_truncated == 1 and report.chunks_freed == 1
        assert store.load("s") == want
        assert store.fold("s", at=7) == state_at_7
        assert store.fold("s", at=0) == {}
        with pytest.raises(eventlog.NotFoundError) as e:
            store.fold("s", at=6)
        assert e.value.session_id == "s"
        with pytest.raises(eventlog.NotFoundError):
            store.events("s")
        assert [ev.seq for ev in store.events("s", since=7)] == [8, 9, 10]
        assert store.verify().ok
        store.save("s", session({"id": "new"}))
        assert store.compact(retain=3).sessions_truncated == 1
    with eventlog.open(db_path, snapshot_every=4) as store:
        assert store.load("s") == session({"id": "new"})
        assert store.seq("s") == 11
        check = store.verify()
        assert check.ok and check.garbage_chunks == 0 and check.events == 3


def test_compact_retain_zero_keeps_only_the_snapshot(store: eventlog.Store) -> None:
    for i in range(5):
        store.append("s", [{"id": str(i)}])
    want = store.load("s")
    store.compact(retain=0)
    assert store.load("s") == want
    assert list(store.events("s", since=5)) == []
    store.append("s", [{"id": "5"}])
    assert store.load("s") == {"entries": [*want["entries"], {"id": "5"}], "leafId": "5"}  # type: ignore[index]


def test_compact_retain_skips_a_damaged_session_and_goes_on(db_path: str) -> None:
    with eventlog.open(db_path) as store:
        for n, name in enumerate(("bad", "good", "dead")):
            for i in range(4):
                store.append(name, [{"id": str(i), "img": blob(20 + n, 50_000)}])
        want = store.load("good")
    con = sqlite3.connect(db_path)
    con.execute("UPDATE events SET frame = x'00' WHERE seq = 2 AND sid = (SELECT sid FROM sessions WHERE name = 'bad')")
    con.commit()
    con.close()
    with eventlog.open(db_path) as store:
        store.delete("dead")
        report = store.compact(retain=1)
        assert report.sessions_truncated == 1 and report.sessions_removed == 1 and report.chunks_freed == 1
        assert len(report.skipped) == 1 and report.skipped[0].startswith("bad: ")
        assert store.load("good") == want
        with pytest.raises(eventlog.CorruptionError):
            store.load("bad")


def test_compact_arguments_are_checked(store: eventlog.Store) -> None:
    with pytest.raises(eventlog.InvalidValueError, match="retain must be"):
        store.compact(retain=-1)
    with pytest.raises(eventlog.InvalidValueError, match="batch must be"):
        store.compact(batch=0)


def test_budget_holds_through_delete_and_compact(tmp_path: Path) -> None:
    path = str(tmp_path / "small.db")
    with eventlog.open(path, max_cell_bytes=20_000) as store:
        for i in range(30):
            store.append("s", [{"id": str(i), "text": blob(i, 15_000).hex()}], parent_id=None)
        store.save("t", session({"id": "x", "text": "y" * 300_000}), parent_id="s")
        store.compact(retain=2)
        store.delete("s")
        store.compact()
        assert store.verify().ok
    cell, row = largest_cell_and_row(path)
    assert cell <= 20_000 and row <= 20_000


# ----------------------------------------------------------------------------- verify


def damaged(db_path: str, sql: str) -> list[str]:
    con = sqlite3.connect(db_path)
    con.execute(sql)
    con.commit()
    con.close()
    with eventlog.open(db_path) as store:
        report = store.verify()
    assert not report.ok
    return [str(p) for p in report.problems]


@pytest.fixture
def filled(db_path: str) -> str:
    with eventlog.open(db_path, snapshot_every=3) as store:
        for i in range(7):
            store.append("s", [{"id": str(i), "img": blob(i % 2, 100_000)}])
        store.save("t", session({"id": "1"}))
        assert store.verify().ok
    return db_path


def test_verify_finds_a_chunk_that_does_not_match_its_hash(filled: str) -> None:
    digest = sqlite3.connect(filled).execute("SELECT hash FROM chunks WHERE cid = 1").fetchone()[0]
    problems = damaged(filled, "UPDATE chunks SET data = zeroblob(length(data)) WHERE cid = 1")
    assert any("does not match its hash" in p for p in problems)
    # (chunks are named by their address)
    assert any(f"session 's', seq 1: event uses damaged chunks [{digest.hex()}]" in p for p in problems)


def test_verify_finds_a_missing_chunk(filled: str) -> None:
    problems = damaged(filled, "DELETE FROM chunks WHERE cid = 1")
    assert any("missing chunk" in p and "session 's'" in p for p in problems)
    assert any("its chunk or holder is missing" in p for p in problems)


def test_verify_finds_an_unrecorded_ref(filled: str) -> None:
    problems = damaged(filled, "DELETE FROM refs WHERE kind = 0 AND holder = (SELECT min(holder) FROM refs)")
    assert any("without recording it" in p and "seq 1" in p for p in problems)


def test_verify_finds_a_damaged_snapshot_and_a_missing_event(filled: str) -> None:
    problems = damaged(filled, "UPDATE snapshots SET frame = zeroblob(length(frame)) WHERE seq = 3")
    assert any("snapshot is unreadable" in p and "seq 3" in p for p in problems)
    problems = damaged(filled, "DELETE FROM events WHERE seq = 5 AND sid = 1")
    assert any("event is missing" in p and "seq 5" in p for p in problems)


def test_cli_verify_and_compact(filled: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, text=True, timeout=60)

    ok = run("verify", filled)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr
    with eventlog.open(filled) as store:
        store.delete("s")
    done = run("compact", filled)
    assert done.returncode == 0 and "removed 1 deleted session," in done.stdout, done.stdout + done.stderr
    con = sqlite3.connect(filled)
    con.execute("UPDATE events SET frame = x'00' WHERE sid = (SELECT sid FROM sessions WHERE name = 't')")
    con.commit()
    con.close()
    bad = run("verify", filled)
    assert bad.returncode == 1 and "session 't', seq 1" in bad.stdout, bad.stdout + bad.stderr
    assert run("verify", filled + ".missing").returncode == 1


# ----------------------------------------------------------------------------- migration


def to_version_1(path: str) -> None:
    """Rewrite a store file into the version 1 layout (refs per session, no session
    deletion, no meta table)."""
    to_version_4(path)  # (frames bound to the row id)
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("""
        BEGIN;
        CREATE TABLE s1 (sid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, parent TEXT,
            seq INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
            snap_seq INTEGER NOT NULL DEFAULT 0, snap_bytes INTEGER NOT NULL DEFAULT 0,
            snap_bytes_since INTEGER NOT NULL DEFAULT 0);
        INSERT INTO s1 SELECT sid, name, parent, seq, created_ms, updated_ms, snap_seq, snap_bytes,
            snap_bytes_since FROM sessions;
        CREATE TABLE r1 (sid INTEGER NOT NULL, cid INTEGER NOT NULL, PRIMARY KEY (sid, cid)) WITHOUT ROWID;
        INSERT OR IGNORE INTO r1 SELECT e.sid, r.cid FROM refs r JOIN events e ON r.kind = 0 AND r.holder = e.pos;
        INSERT OR IGNORE INTO r1 SELECT n.sid, r.cid FROM refs r JOIN snapshots n ON r.kind = 1 AND r.holder = n.id;
        CREATE TABLE n1 (sid INTEGER NOT NULL, seq INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (sid, seq));
        INSERT INTO n1 SELECT sid, seq, frame FROM snapshots;
        DROP TABLE sessions; DROP TABLE refs; DROP TABLE snapshots; DROP TABLE meta;
        ALTER TABLE s1 RENAME TO sessions; ALTER TABLE r1 RENAME TO refs; ALTER TABLE n1 RENAME TO snapshots;
        CREATE INDEX sessions_parent ON sessions(parent) WHERE parent IS NOT NULL;
        CREATE INDEX refs_cid ON refs(cid);
        PRAGMA user_version = 1;
        COMMIT;
    """)
    con.close()


def test_a_version_1_file_opens_and_keeps_its_chunks(db_path: str) -> None:
    """Turn a store into the version 1 layout (refs per session) and open it."""
    img, old = blob(9, 200_000), blob(10, 200_000)
    with eventlog.open(db_path) as store:
        store.save("a", session({"id": "1", "img": img}))
        store.save("b", session({"id": "1", "img": img}), parent_id="a")
        store.save("c", session({"id": "1", "old": old}))
        store.save("c", session({"id": "1"}))  # c no longer uses `old`, but its first event does
    to_version_1(db_path)
    with eventlog.open(db_path) as store:
        assert store.load("a") == session({"id": "1", "img": img})
        assert store.tree("a") == ["b"]
        assert store.verify().ok
        assert store.compact().chunks_freed == 0  # refs become per event; nothing is garbage yet
        report = store.compact(retain=0)  # c's first event goes, and `old` with it
        assert report.chunks_freed == 1 and report.bytes_freed == 200_000
        store.delete("a")
        assert store.compact().chunks_freed == 1  # img, once a and b are gone
        store.save("c", session({"id": "2", "img": img}))
        check = store.verify()
        assert check.ok and check.garbage_chunks == 0
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("SELECT count(*) FROM refs WHERE kind = 2").fetchone()[0] == 0
    con.close()


# ----------------------------------------------------------------------------- scale and properties


def test_a_wide_tree_is_deleted_in_batches_of_bound_parameters(store: eventlog.Store) -> None:
    # The store caps bound parameters at 100 (SQLITE_LIMIT_VARIABLE_NUMBER), so a
    # statement naming all 250 children at once would fail for real.
    store.save("root", session({"id": "r"}))
    for i in range(250):
        store.append(f"c{i}", [{"id": "x"}], parent_id="root")
        if i % 50 == 0:
            store.append(f"g{i}", [{"id": "y"}], parent_id=f"c{i}")
    assert len(store.tree("root")) == 255
    assert len(store.delete("root")) == 256
    assert store.sessions() == []
    report = store.compact(batch=7)
    assert report.sessions_removed == 256
    assert store.verify().ok


@settings(max_examples=15)
@given(
    uses=st.lists(st.lists(st.integers(0, 5), max_size=3), min_size=1, max_size=6),
    parents=st.lists(st.integers(-1, 5), min_size=6, max_size=6),
    doomed=st.sets(st.integers(0, 5)),
)
def test_compaction_frees_exactly_the_chunks_no_live_session_uses(
    tmp_path_factory: pytest.TempPathFactory, uses: list[list[int]], parents: list[int], doomed: set[int]
) -> None:
    """Sessions share blobs from a pool; after deleting some trees and compacting,
    every live session loads whole, and a blob's bytes remain in the file exactly
    when a live session still uses it."""
    path = str(tmp_path_factory.mktemp("p") / "s.db")
    pool = [blob(100 + i, 40_000) for i in range(6)]
    with eventlog.open(path, synchronous="OFF") as store:
        for i, blobs in enumerate(uses):
            parent = parents[i] if 0 <= parents[i] < i else None
            data = session({"id": "e", "blobs": [pool[b] for b in blobs]})
            store.save(f"s{i}", data, parent_id=None if parent is None else f"s{parent}")
        for i in sorted(doomed):
            store.delete(f"s{i}")
        live = {name: store.load(name) for name in store.sessions()}
        store.compact(batch=2)
        for name, want in live.items():
            assert store.load(name) == want
        check = store.verify()
        assert check.ok and check.garbage_chunks == 0
    used = {b for i, blobs in enumerate(uses) if f"s{i}" in live for b in blobs}
    data = file_bytes(path)
    for b, content in enumerate(pool):
        assert (content[:64] in data) == (b in used), b


def test_deleted_session_ids_are_gone_from_the_file(db_path: str) -> None:
    # Many sessions, interleaved, each written several times: SQLite moves and
    # rewrites session rows, which could leave old copies in pages' free space.
    with eventlog.open(db_path, synchronous="OFF") as store:
        for i in range(1500):  # without the rebuild of the sessions table, 7 names stay behind
            store.append(f"keep-{i:04d}", [{"id": "a"}])
            store.append(f"SECRETNAME-{i:04d}", [{"id": "a"}], parent_id=f"SECRETPARENT-{i:04d}")
        for i in range(1500):
            store.delete(f"SECRETNAME-{i:04d}")
        store.compact()
        assert len(store.sessions()) == 1500 and store.verify().ok
        store.save("after", session({"id": "1"}))  # ids still increase after the rebuild
        assert store.info("after").session_id == "after"
    data = file_bytes(db_path)
    assert data.count(b"SECRETNAME") == 0 and data.count(b"SECRETPARENT") == 0
    assert b"keep-1499" in data
    con = sqlite3.connect(db_path)
    # the last deleted session had sid 3000: a new one must not reuse it
    assert con.execute("SELECT max(sid) FROM sessions").fetchone()[0] == 3001
    con.close()
