"""What only the async API has: the event loop is never blocked, many tasks at once,
cancellation, opening and closing.  (The behaviour it shares with Store is tested by
the parametrised suite: test_api.py, test_store.py, test_trees.py.)"""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import eventlog

READERS = [0, 2]


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def image_url(seed: int, raw_bytes: int) -> str:
    return "data:image/png;base64," + base64.b64encode(random.Random(seed).randbytes(raw_bytes)).decode()


class Gate:
    """Makes ``Store.save`` of one session id wait, on its worker thread, until
    released: a write that is provably in progress."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, session_id: str) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = eventlog.Store.save

        def save(store: eventlog.Store, sid: str, *args: Any, **kwargs: Any) -> int:
            if sid == session_id:
                self.entered.set()
                assert self.release.wait(30), "the gate was never opened"
            return real(store, sid, *args, **kwargs)

        monkeypatch.setattr(eventlog.Store, "save", save)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30), "the save never started"


def test_connections_open_as_calls_need_them(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store only read opens one reading connection (no writer, no idle readers):
    resuming a conversation costs one open; writes open the writer, and concurrent
    reads open more readers, up to ``readers``."""
    with eventlog.open(db_path) as s:
        s.save("s", {"entries": [1, 2, 3]})
    opened: list[str] = []
    real = eventlog.aio.Store

    def counting(*args: Any, **kwargs: Any) -> eventlog.Store:
        opened.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(eventlog.aio, "Store", counting)

    async def main() -> None:
        async with eventlog.open_async(db_path, readers=2) as store:
            assert len(opened) == 1  # (an explicit open makes the writer: the file is created or upgraded)
        opened.clear()
        store = eventlog.open_async(db_path, readers=2)
        assert await store.tail("s", 2) == [2, 3]
        assert await store.load("s") == {"entries": [1, 2, 3]}
        assert [n.startswith("eventlog-reader") for n in opened] == [True]
        await asyncio.gather(*(store.load("s") for _ in range(20)))
        assert 1 <= len(opened) <= 2
        await store.append("s", [4])
        assert len([n for n in opened if n.startswith("eventlog-writer")]) == 1
        assert await store.tail("s", 1) == [4]
        await store.compact()  # (waits for every reader, opened or not)
        await store.close()

    run(main)


def test_a_20_mb_save_does_not_block_the_loop(db_path: str) -> None:
    """A ticker task keeps running while an image of 20 MB (as a base64 data URL) is
    validated, chunked, hashed, compressed and written."""
    url = image_url(1, 15_000_000)
    assert len(url) > 20_000_000
    data = {"entries": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}

    async def main() -> None:
        async with eventlog.open_async(db_path, synchronous="NORMAL") as store:
            ticks = 0
            saving = True

            async def ticker() -> None:
                nonlocal ticks
                while saving:
                    await asyncio.sleep(0)
                    ticks += 1

            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            seq = await store.save("big", data)
            saving = False
            await tick
            # Run on the loop, the save would have let the ticker in at most once.
            assert ticks >= 10, ticks
            assert seq == 1 and await store.load("big") == data
            stats = await store.stats()
            assert stats["largest_cell"] <= 2_000_000 and stats["chunks"]["raw_bytes"] >= 15_000_000

    run(main)


def test_reads_go_on_while_a_write_is_in_progress(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch, "slow")

    async def main() -> None:
        async with eventlog.open_async(db_path, readers=2) as store:
            await store.save("other", {"entries": [{"id": "1"}]})
            writing = asyncio.create_task(store.save("slow", {"entries": [{"id": "s"}]}))
            await gate.wait_entered()
            # The writer thread is busy: reads are served by the readers meanwhile.
            assert await store.load("other") == {"entries": [{"id": "1"}]}
            assert await store.seq("slow") == 0
            assert [e.seq async for e in store.events("other")] == [1]
            assert (await store.verify()).ok
            assert not writing.done()
            gate.release.set()
            assert await writing == 1
            assert await store.load("slow") == {"entries": [{"id": "s"}]}  # read after the write returned

    run(main)


@pytest.mark.parametrize("readers", READERS)
def test_many_tasks_write_their_own_sessions_at_once(db_path: str, readers: int) -> None:
    async def writer(store: eventlog.AsyncStore, n: int) -> None:
        data: dict[str, Any] = {"title": f"task {n}", "entries": []}
        for i in range(8):
            if i % 2:
                await store.append(f"s{n}", [{"id": f"{n}.{i}"}])
                loaded = await store.load(f"s{n}")
                assert loaded is not None
                data = loaded
            else:
                data["entries"].append({"id": f"{n}.{i}", "text": "x" * (n * 100)})
                await store.save(f"s{n}", data)

    async def main() -> None:
        async with eventlog.open_async(db_path, synchronous="NORMAL", readers=readers) as store:
            await asyncio.gather(*(writer(store, n) for n in range(40)))
            assert sorted(await store.sessions()) == sorted(f"s{n}" for n in range(40))
            for n in range(40):
                loaded = await store.load(f"s{n}")
                assert loaded is not None and [e["id"] for e in loaded["entries"]] == [f"{n}.{i}" for i in range(8)]
                assert await store.seq(f"s{n}") == 8
            assert (await store.verify()).ok

    run(main)


@pytest.mark.parametrize("readers", READERS)
def test_racing_on_expected_seq_has_one_winner_per_round(db_path: str, readers: int) -> None:
    async def attempt(store: eventlog.AsyncStore, rnd: int, n: int, seq: int) -> bool:
        try:
            if n % 2:
                await store.append("shared", [{"id": f"{rnd}:{n}"}], expected_seq=seq)
            else:
                await store.save("shared", {"entries": [], "winner": f"{rnd}:{n}"}, expected_seq=seq)
        except eventlog.ConflictError as e:
            assert e.session_id == "shared" and e.seq == seq + 1
            return False
        return True

    async def main() -> None:
        async with eventlog.open_async(db_path, synchronous="NORMAL", readers=readers) as store:
            for rnd in range(15):
                seq = await store.seq("shared")
                wins = await asyncio.gather(*(attempt(store, rnd, n, seq) for n in range(8)))
                assert wins.count(True) == 1, wins
                assert await store.seq("shared") == seq + 1
            assert len([e async for e in store.events("shared")]) == 15
            assert (await store.verify()).ok

    run(main)


def test_a_cancelled_write_that_had_started_commits_whole(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch, "s")

    async def main() -> None:
        async with eventlog.open_async(db_path) as store:
            task = asyncio.create_task(store.save("s", {"entries": [{"id": "1"}, {"id": "2"}]}))
            await gate.wait_entered()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.release.set()
            # The next write queues behind it on the writer thread.
            assert await store.append("s", [{"id": "3"}], expected_seq=1) == 2
            assert await store.load("s") == {"entries": [{"id": "1"}, {"id": "2"}, {"id": "3"}], "leafId": "3"}

    run(main)


def test_close_waits_for_the_calls_made_before(db_path: str) -> None:
    async def main() -> None:
        store = await eventlog.open_async(db_path, synchronous="NORMAL")
        writes = [asyncio.create_task(store.append(f"s{n}", [{"id": str(n)}])) for n in range(20)]
        reads = [asyncio.create_task(store.sessions()) for _ in range(5)]
        await asyncio.sleep(0)  # every task has begun its call
        await asyncio.gather(store.close(), store.aclose())
        assert await asyncio.gather(*writes) == [1] * 20
        assert all(isinstance(r, list) for r in await asyncio.gather(*reads))
        with pytest.raises(eventlog.StoreClosedError):
            await store.load("s0")
        with pytest.raises(eventlog.StoreClosedError):
            await store.append("s0", [])
        with pytest.raises(eventlog.StoreClosedError):
            [e async for e in store.events("s0")]
        async with eventlog.open_async(db_path) as again:
            assert len(await again.sessions()) == 20

    run(main)


def test_ways_to_open(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")

    async def main() -> None:
        lazy = eventlog.open_async(path)  # nothing read or written yet
        assert not Path(path).exists()
        assert await lazy.save("a", {"n": 1}) == 1  # opened by the first call
        assert await lazy.load("a") == {"n": 1}
        await lazy.close()
        async with eventlog.open_async(path) as store:
            assert await store.load("a") == {"n": 1}
        store = await eventlog.open_async(path, readers=0)
        assert await store.load("a") == {"n": 1}
        await store.close()

    run(main)


def test_a_failed_open_is_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.close()

    async def main() -> None:
        store = eventlog.open_async(str(path))
        with pytest.raises(eventlog.UnsupportedVersionError):
            await store.load("a")
        with pytest.raises(eventlog.UnsupportedVersionError):
            await store
        path.unlink()
        assert await store.load("a") is None  # the file is fine now
        await store.close()

    run(main)


def test_bad_arguments_fail_at_the_call() -> None:
    with pytest.raises(eventlog.InvalidValueError, match="'no_such_option' is not an option"):
        eventlog.open_async("x.db", no_such_option=1)
    with pytest.raises(eventlog.InvalidValueError, match="readers must be"):
        eventlog.open_async("x.db", readers=-1)
    store = eventlog.open_async(":memory:")
    assert store.readers == 0  # a private in-memory database has a single connection
    with pytest.raises(eventlog.InvalidValueError):
        store.events("s", since=-1)
    run(store.close)


def test_events_iterated_by_many_tasks(db_path: str) -> None:
    async def main() -> None:
        async with eventlog.open_async(db_path, synchronous="NORMAL") as store:
            for n in range(6):
                await store.append(f"s{n}", [{"id": str(i)} for i in range(3)])
                for i in range(300 + n):
                    await store.append(f"s{n}", [{"id": str(i)}])

            async def count(n: int) -> int:
                return len([e async for e in store.events(f"s{n}")])

            assert await asyncio.gather(*(count(n) for n in range(6))) == [301 + n for n in range(6)]
            with pytest.raises(eventlog.NotFoundError):
                await store.events("nope").__anext__()

    run(main)
