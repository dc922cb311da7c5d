"""Live subscriptions on every backend: ``Store.watch`` gives a session's events as
they commit, from other handles and other processes, and ends at its tombstone or
after its timeout; ``Store.feed`` gives every event of every session, resumable
from a cursor, and follows new ones; the async store does the same without holding
the event loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import eventlog
from eventlog.fold import Tombstone

from ..postgres import store_urls

BACKENDS = ["sqlite", "memory", "postgres"]


@pytest.fixture(params=BACKENDS)
def path(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "w.db")
    elif request.param == "memory":
        name = f"memory:watch-{uuid.uuid4().hex}"
        anchor = eventlog.open(name)  # the store lives while a handle is open
        yield name
        anchor.close()
    else:
        with store_urls() as new:
            yield new()


def _later(delay: float, job: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        job()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_watch_gives_stored_then_new_events_and_ends_at_the_tombstone(path: str) -> None:
    with eventlog.open(path) as writer, eventlog.open(path) as reader:
        writer.save("s", {"entries": [0]})
        writer.save("s", {"entries": [0, 1]})
        seen: list[tuple[int, float]] = []
        sent: dict[int, float] = {}

        def write() -> None:
            for i in range(2, 6):
                sent[i + 1] = time.monotonic()
                writer.append("s", [i])
                time.sleep(0.05)
            writer.delete("s")

        t = _later(0.2, write)
        events = []
        for ev in reader.watch("s", since=1, timeout=20):
            events.append(ev)
            seen.append((ev.seq, time.monotonic()))
        t.join()
    assert [e.seq for e in events] == [2, 3, 4, 5, 6, 7]
    assert type(events[-1].ops[-1]) is Tombstone  # the last one given: the watch ends with the session
    for seq, at in seen[1:-1]:
        assert at - sent[seq] < 1.5, f"event {seq} arrived {at - sent[seq]:.2f} s after its commit"


def test_watch_waits_for_the_session_and_times_out(path: str) -> None:
    with eventlog.open(path) as writer, eventlog.open(path) as reader:
        t = _later(0.2, lambda: writer.save("new", {"entries": ["hello"]}))
        start = time.monotonic()
        got = [ev.seq for ev in reader.watch("new", timeout=1.5)]
        t.join()
        assert got == [1]
        assert time.monotonic() - start >= 1.5  # (then nothing more for the timeout)
        assert list(reader.watch("absent", timeout=0)) == []


def test_watch_rejects_bad_arguments(path: str) -> None:
    with eventlog.open(path) as store:
        for bad in ({"since": -1}, {"since": "1"}, {"timeout": -1}, {"timeout": "soon"}):
            with pytest.raises(eventlog.InvalidValueError):
                store.watch("s", **bad)  # type: ignore[arg-type]


def test_watch_after_compaction_says_what_is_gone(path: str) -> None:
    with eventlog.open(path) as store:
        for i in range(6):
            store.save("s", {"entries": list(range(i + 1))})
        store.compact(retain=2)
        with pytest.raises(eventlog.NotFoundError):
            next(store.watch("s", since=1, timeout=0))
        assert [e.seq for e in store.watch("s", since=4, timeout=0)] == [5, 6]


def _append_later(path: str, delay: float) -> None:
    time.sleep(delay)
    with eventlog.open(path) as store:
        store.append("p", [{"from": "another process"}])


def test_watch_sees_another_process(path: str) -> None:
    if path.startswith("memory:"):
        pytest.skip("an in-memory store is not shared between processes")
    with eventlog.open(path) as store:
        store.save("p", {"entries": []})
        proc = multiprocessing.get_context("spawn").Process(target=_append_later, args=(path, 0.5))
        proc.start()
        try:
            it = store.watch("p", since=1, timeout=30)
            ev = next(it)
            it.close()  # type: ignore[attr-defined]
        finally:
            proc.join()
        assert ev.seq == 2 and store.load("p") == {"entries": [{"from": "another process"}]}


def test_feed_gives_every_event_once_in_order_and_resumes(path: str) -> None:
    with eventlog.open(path) as store:
        for i in range(5):
            store.save("a", {"entries": list(range(i))})
            store.append("b", [i])
        store.save("c", {"entries": [1]}, parent_id="a")
        store.delete("a")
        items = list(store.feed())
        keys = [(i.event.session_id, i.event.seq) for i in items]
        assert sorted(keys) == sorted({*keys}) and len(keys) == 5 + 5 + 1 + 2  # deleted ones still there
        for name in ("a", "b", "c"):
            seqs = [s for n, s in keys if n == name]
            assert seqs == sorted(seqs)
        positions = [i.event.position for i in items]
        assert positions == sorted(positions)
        half = items[5].cursor
        assert [(i.event.session_id, i.event.seq) for i in store.feed(half)] == keys[6:]
        assert list(store.feed(items[-1].cursor)) == []
        store.compact()
        assert {i.event.session_id for i in store.feed()} == {"b"}
        for bad in (5, "not a cursor", "-1", "1.2.3"):
            with pytest.raises(eventlog.InvalidValueError):
                list(store.feed(bad))  # type: ignore[arg-type]


def test_feed_follows_new_events(path: str) -> None:
    with eventlog.open(path) as writer, eventlog.open(path) as reader:
        writer.save("a", {"entries": [1]})
        start = list(reader.feed())
        t = _later(0.2, lambda: [writer.append(n, [n]) for n in ("x", "y", "a")])
        got = [(i.event.session_id, i.event.seq) for i in reader.feed(start[-1].cursor, follow=True, timeout=1.5)]
        t.join()
    assert got == [("x", 1), ("y", 1), ("a", 2)]


def test_the_async_store_watches_and_feeds(path: str) -> None:
    async def run() -> tuple[list[int], list[str], float]:
        async with eventlog.open_async(path) as store:
            await store.save("s", {"entries": []})

            async def write() -> None:
                await asyncio.sleep(0.2)
                for i in range(3):
                    await store.append("s", [i])
                await store.delete("s")

            ticks = 0

            async def tick() -> None:  # the loop stays free while the watch waits
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            writing = asyncio.create_task(write())
            seqs = [ev.seq async for ev in store.watch("s", since=1, timeout=10)]
            await writing
            names = [i.event.session_id async for i in store.feed()]
            ticker.cancel()
            return seqs, names, ticks

    seqs, names, ticks = asyncio.run(run())
    assert seqs == [2, 3, 4, 5] and names == ["s"] * 5 and ticks > 5
