"""The store on PostgreSQL (``eventlog.open("postgresql://...")``): the same promises
as on SQLite (round trip, ``fold(at=k)``, snapshots, the cell budget, deletion that
leaves nothing behind), writers in other processes, the async store, and clear
errors for what can go wrong at the open.  The backend protocol itself is proven by
the conformance suite (tests/conformance/test_backend_postgres.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.testing import histories, sessions
from eventlog.values import same

from ..postgres import admin, admin_url, in_schema, store_urls


@pytest.fixture
def url() -> Iterator[str]:
    admin_url()  # (skipped here, or failed in CI, without a server)
    with store_urls() as new:
        yield new()


def _rows(url: str) -> dict[str, int]:
    with admin(url) as con:
        return {t: con.execute(f"SELECT count(*) FROM eventlog_{t}").fetchone()[0]  # type: ignore[index]
                for t in ("sessions", "events", "snapshots", "chunks", "refs")}  # fmt: skip


def test_round_trip_folds_and_snapshots(url: str) -> None:
    @settings(max_examples=15, deadline=None)
    @given(histories(max_steps=6, image_size=60_000, big=60_000))
    def check(states: list[dict[str, Any]]) -> None:
        sid = uuid.uuid4().hex
        with eventlog.open(url, snapshot_every=2, max_cell_bytes=40_000, chunk_bytes=4096) as store:
            for k, state in enumerate(states, 1):
                assert store.save(sid, state) == k
            assert same(store.load(sid), states[-1])
            for k, state in enumerate(states, 1):
                assert same(store.fold(sid, at=k), state), k
        with eventlog.open(url) as again:  # another connection: nothing cached
            assert same(again.load(sid), states[-1])
            assert again.verify().ok

    check()


def test_no_cell_over_the_budget_and_deletion_leaves_nothing(url: str) -> None:
    budget = 64_000
    big = "x" * 3_000_000 + "y"
    with eventlog.open(url, max_cell_bytes=budget) as store:
        store.save("parent", {"entries": [{"type": "message", "text": big}], "note": big[:500_000]})
        store.save("child", {"entries": [{"type": "message", "text": "hi"}]}, parent_id="parent")
        store.append("child", [{"type": "message", "image": big[::-1]}])
        stats = store._backend.stats()
        assert max(stats[t]["largest"] for t in ("events", "snapshots", "chunks")) <= budget
        assert same(store.load("parent")["note"], big[:500_000])  # type: ignore[index]
        assert sorted(store.delete("parent")) == ["child", "parent"]
        store.compact()
        assert store.load("child") is None and store.sessions() == []
    assert _rows(url) == {"sessions": 0, "events": 0, "snapshots": 0, "chunks": 0, "refs": 0}


def _writer(url: str, sid: str, tag: int, count: int) -> list[tuple[int, int]]:
    """In another process: append ``count`` entries to ``sid``, each conditional on
    the head it read, retrying on conflicts; the acknowledged ``(seq, tag*1000+i)``."""
    done = []
    with eventlog.open(url, synchronous="OFF") as store:
        i = 0
        while i < count:
            head = store.seq(sid)
            try:
                seq = store.append(sid, [{"type": "message", "n": tag * 1000 + i}], expected_seq=head)
            except eventlog.ConflictError:
                continue
            done.append((seq, tag * 1000 + i))
            i += 1
    return done


def test_writers_in_other_processes_lose_nothing(url: str) -> None:
    with eventlog.open(url) as store:
        store.save("s", {"entries": []})
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        acked = [a for f in [pool.submit(_writer, url, "s", t, 15) for t in range(4)] for a in f.result()]
    with eventlog.open(url) as store:
        entries = store.load("s")["entries"]  # type: ignore[index]
        assert sorted(e["n"] for e in entries) == sorted(n for _, n in acked)  # each once, none lost
        assert store.seq("s") == 1 + len(acked)
        for seq, n in acked:  # and each where its writer was told
            assert store.fold("s", at=seq)["entries"][-1]["n"] == n  # type: ignore[index]


def test_a_conflict_names_the_head(url: str) -> None:
    with eventlog.open(url) as a, eventlog.open(url) as b:
        a.save("s", {"entries": [1]})
        b.save("s", {"entries": [1, 2]})
        with pytest.raises(eventlog.ConflictError) as e:
            a.save("s", {"entries": [1, 3]}, expected_seq=1)
        assert e.value.seq == 2 and e.value.session_id == "s"
        a.save("s", {"entries": [1, 3]})  # without expected_seq: catches up
        assert b.load("s") == {"entries": [1, 3]}


def test_the_async_store(url: str) -> None:
    async def run() -> Any:
        async with await eventlog.open_async(url) as store:
            await store.save("s", {"messages": [{"role": "user", "content": "hi"}]})
            await store.append("t", [{"type": "message"}])
            return await store.load("s"), await store.sessions()

    loaded, names = asyncio.run(run())
    assert loaded == {"messages": [{"role": "user", "content": "hi"}]} and sorted(names) == ["s", "t"]


def test_readonly(url: str) -> None:
    with eventlog.open(url) as store:
        store.save("s", {"entries": [1]})
    with eventlog.open(url, readonly=True) as ro:
        assert ro.load("s") == {"entries": [1]}
        with pytest.raises(eventlog.ReadOnlyError):
            ro.save("s", {"entries": [2]})


def test_readonly_needs_a_store(url: str) -> None:
    with pytest.raises(eventlog.StorageError, match="no eventlog store"):
        eventlog.open(url, readonly=True)


def test_a_newer_schema_is_refused(url: str) -> None:
    eventlog.open(url).close()
    with admin(url) as con:
        con.execute("UPDATE eventlog_version SET version = 99")
    with pytest.raises(eventlog.UnsupportedVersionError, match="99"):
        eventlog.open(url)


def test_no_server_is_a_storage_error_without_the_password() -> None:
    with pytest.raises(eventlog.StorageError) as e:
        eventlog.open("postgresql://someone:s3cret@127.0.0.1:1/nothing?connect_timeout=2")
    assert "s3cret" not in str(e.value) and "someone:***@" in str(e.value)


def test_chunk_keys_are_kept(url: str) -> None:
    key = bytes(range(32))
    with eventlog.open(url, chunk_key=key) as store:
        store.save("s", {"entries": ["x" * 100_000]})
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(url)
    with eventlog.open(url, chunk_key=key) as store:
        assert store.load("s") == {"entries": ["x" * 100_000]}


def test_stores_in_two_schemas_are_apart(url: str) -> None:
    other = in_schema(admin_url(), url.rsplit("%3D", 1)[1] + "_b")
    with admin(url) as con:
        con.execute(f"CREATE SCHEMA {url.rsplit('%3D', 1)[1]}_b")
    try:
        with eventlog.open(url) as a, eventlog.open(other) as b:
            a.save("s", {"entries": [1]})
            assert b.load("s") is None and b.sessions() == []
    finally:
        with admin(url) as con:
            con.execute(f"DROP SCHEMA {url.rsplit('%3D', 1)[1]}_b CASCADE")


def test_without_psycopg_the_error_says_what_to_install() -> None:
    code = ("import sys; sys.modules['psycopg'] = None; import eventlog\n"
            "try:\n    eventlog.open('postgresql://localhost/x')\n"
            "except eventlog.StorageError as e:\n    print(e)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "pip install 'eventlog[postgres]'" in out.stdout


@pytest.mark.parametrize("direction", ["sqlite to postgres", "postgres to sqlite"])
def test_copy_keeps_history_both_ways(url: str, tmp_path: Any, direction: str) -> None:
    path = str(tmp_path / "s.db")
    src, dst = (path, url) if direction == "sqlite to postgres" else (url, path)
    states = [{"entries": [{"type": "message", "text": "a" * i * 40_000}] * i, "n": i} for i in range(1, 6)]
    with eventlog.open(src, snapshot_every=2) as store:
        for s in states:
            store.save("s", s)
        store.save("c", {"entries": [1]}, parent_id="s")
    out = subprocess.run([sys.executable, "-m", "eventlog", "copy", src, dst], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    with eventlog.open(dst) as store:
        for k, s in enumerate(states, 1):
            assert same(store.fold("s", at=k), s)
        assert store.tree("s") == ["c"]
        assert store.verify().ok


def test_the_cli_reads_a_url(url: str) -> None:
    with eventlog.open(url) as store:
        store.save("s", {"entries": [{"type": "message", "message": {"role": "user", "content": "hello there"}}]})
    for args, want in ((["sessions", url], "s"), (["replay", url, "s"], "hello there"), (["verify", url], ""),
                       (["stats", url], "events")):  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (args, out.stderr)
        assert want in out.stdout, (args, out.stdout)
    out = subprocess.run([sys.executable, "-m", "eventlog", "sessions", "postgresql://x:pw@127.0.0.1:1/db"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1 and "pw@" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def _names_st() -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=20)


def test_session_ids_of_any_text(url: str) -> None:
    @settings(max_examples=20, deadline=None)
    @given(_names_st())
    def check(name: str) -> None:
        with eventlog.open(url) as store:
            store.save(name, {"entries": [name]})
            assert store.load(name) == {"entries": [name]}
            assert name in store.sessions()

    check()


def test_large_sessions_load_as_saved(url: str) -> None:
    @settings(max_examples=5, deadline=None)
    @given(sessions(max_entries=6, image_size=2_500_000, big=3_000_000))
    def check(state: dict[str, Any]) -> None:
        sid = uuid.uuid4().hex
        with eventlog.open(url) as store:
            store.save(sid, state)
        with eventlog.open(url) as store:
            assert same(store.load(sid), state)

    check()


def _wakeups(listener: Any) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.3))


def test_writes_wake_only_a_watched_store(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake-up (``NOTIFY``) is a round trip and a transaction of its own per write:
    writers send it only while a watcher's connection listens on the store's
    channel, looking for one at most once a second, and again at once when a
    watcher starts in their own process."""
    from eventlog.backends.postgres import connection
    from eventlog.backends.postgres.watching import channel_of

    monkeypatch.setattr(connection, "WATCHERS_SEEN_FOR", 60.0)  # (only a watcher started here looks again)
    with admin(url) as con:
        channel = channel_of(con.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
    with admin(url) as listener, eventlog.open(url) as store:
        listener.execute(f"LISTEN {channel}")  # (a plain connection: not a watcher)
        store.append("s", [{"n": 0}])
        store.append("s", [{"n": 1}])
        assert _wakeups(listener) == 0  # nobody watches
        watcher = store._backend.watcher()  # a watcher of this process (what watch() holds)
        store.append("s", [{"n": 2}])
        assert _wakeups(listener) >= 1
        watcher.close()
        monkeypatch.setattr(connection, "WATCHERS_SEEN_FOR", 0.2)
        time.sleep(0.3)
        store.append("s", [{"n": 3}])
        assert _wakeups(listener) == 0  # it left
        with admin(url) as elsewhere:  # a watcher of another process, by its name
            elsewhere.execute("SELECT set_config('application_name', %s, false)", (connection.watcher_name(channel),))
            time.sleep(0.3)
            store.append("s", [{"n": 4}])
            assert _wakeups(listener) >= 1
        assert [e["n"] for e in store.load("s")["entries"]] == [0, 1, 2, 3, 4]


def test_writes_wake_the_store_when_the_server_does_not_say_who_watches(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server where the look for watchers fails (a view not there, no right to
    read it) gets the wake-ups it always got."""
    from eventlog.backends.postgres import connection
    from eventlog.backends.postgres.watching import channel_of

    monkeypatch.setattr(connection, "_WATCHERS_SQL", "SELECT EXISTS (SELECT 1 FROM no_such_view WHERE %s IS NULL)")
    with admin(url) as con:
        channel = channel_of(con.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
    with admin(url) as listener, eventlog.open(url) as store:
        listener.execute(f"LISTEN {channel}")
        store.append("s", [{"n": 0}])
        store.append("s", [{"n": 1}])
        assert _wakeups(listener) >= 1
        assert [e["n"] for e in store.load("s")["entries"]] == [0, 1]
