"""EventlogSession's own promises, without the SDK (test_agents_sdk.py runs it under
the real openai-agents package)."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.agents import EventlogSession

from ..helpers import largest_cell_and_row


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": f"reply {n}", "annotations": []}],
    }


def image_item(seed: int, raw_bytes: int) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(random.Random(seed).randbytes(raw_bytes)).decode()
    return {"role": "user", "content": [{"type": "input_image", "image_url": url, "detail": "auto"}]}


def test_the_store_may_be_a_path_like(tmp_path: Path) -> None:
    async def main() -> None:
        async with EventlogSession("conv", tmp_path / "a.db") as session:
            await session.add_items([user("a")])
        async with EventlogSession("conv", tmp_path / "a.db") as session:
            assert await session.get_items() == [user("a")]
        for bad in (None, 3, b"a.db"):
            with pytest.raises(eventlog.InvalidValueError, match=r"^store must be"):
                EventlogSession("conv", bad)  # type: ignore[arg-type]

    run(main)


def test_items_in_order_and_the_latest_limit(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            assert await session.get_items() == []
            assert await session.pop_item() is None
            items = [
                user("a"),
                reply(1),
                user("b"),
                reply(2),
                {"type": "function_call_output", "call_id": "c", "output": "x"},
            ]
            await session.add_items(items[:2])
            await session.add_items(items[2:])
            await session.add_items([])  # nothing to write: no event
            assert await session.get_items() == items
            assert await session.get_items(limit=2) == items[-2:]
            assert await session.get_items(limit=1) == items[-1:]
            assert await session.get_items(limit=50) == items
            assert await session.get_items(limit=0) == []
            assert await session.get_items(limit=-1) == items  # as the SDK's SQLiteSession
            assert await session.store.seq("conv") == 2  # one event per batch
            got = await session.get_items()
            got[0]["content"] = "changed"  # the caller's own copy
            assert await session.get_items() == items
        async with EventlogSession("conv", db_path, session_settings={"limit": 3}) as again:
            assert await again.get_items() == items[-3:]  # the settings' limit is the default
            assert await again.get_items(limit=4) == items[-4:]

    run(main)


def test_the_latest_items_are_read_without_decoding_the_conversation(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_items(limit=n)`` on a long conversation with screenshots, cold (a new
    store handle): equal to the last n items, reading only the snapshot segments and
    the images they need."""
    from eventlog import log as log_module

    items = [image_item(i, 30_000) if i % 10 == 0 else reply(i) for i in range(400)]

    async def main() -> None:
        options = {"chunk_bytes": 4096, "max_cell_bytes": 32_768, "synchronous": "OFF"}
        async with EventlogSession("conv", db_path, **options) as session:  # type: ignore[arg-type]
            for i in range(0, 400, 4):
                await session.add_items(items[i : i + 4])
            await session.store.snapshot("conv")
        decoded: list[int] = []
        large: list[int] = []
        segment, rehydrate = log_module.Log.segment, log_module.Log._rehydrate

        def spy_segment(self: Any, seg: Any, *args: Any, **kwargs: Any) -> Any:
            decoded.append(seg.count)
            return segment(self, seg, *args, **kwargs)

        def spy_rehydrate(self: Any, ref: Any) -> Any:
            large.append(ref.length)
            return rehydrate(self, ref)

        monkeypatch.setattr(log_module.Log, "segment", spy_segment)
        monkeypatch.setattr(log_module.Log, "_rehydrate", spy_rehydrate)
        async with EventlogSession("conv", db_path, **options) as session:  # type: ignore[arg-type]
            assert await session.get_items(limit=12) == items[-12:]
            assert sum(decoded) < 100 and 0 < len(large) <= 2
            assert await session.get_items() == items

    run(main)


def test_a_batch_is_one_event(db_path: str) -> None:
    async def main() -> None:
        store = eventlog.open_async(db_path)
        session = EventlogSession("conv", store, parent_id="agent-root")
        await session.add_items([user("hi"), reply(1)])
        await session.add_items([user("more")])
        events = [e async for e in store.events("conv")]
        assert [[type(op).__name__ for op in e.ops] for e in events] == [["Insert", "SetFields"], ["Insert"]]
        assert events[0].ops[0] == eventlog.Insert(0, [user("hi"), reply(1)])
        assert await store.parent("conv") == "agent-root"
        await session.close()  # the store was given, not opened: it stays open
        assert await store.load("conv") is not None
        await store.close()

    run(main)


def test_a_bad_batch_writes_nothing(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([user("a")])
            with pytest.raises(eventlog.InvalidValueError):
                await session.add_items([user("b"), {"content": {1, 2}}])
            assert await session.get_items() == [user("a")]
            with pytest.raises(eventlog.InvalidValueError, match="store options are for a path"):
                EventlogSession("x", session.store, synchronous="OFF")
            with pytest.raises(eventlog.InvalidValueError):
                EventlogSession("", session.store)

    run(main)


class LostAcknowledgement:
    """Makes the next ``AsyncStore.append`` fail the way a lost acknowledgement does:
    with ``commit=True`` it writes and then raises, else it raises without writing."""

    def __init__(self, store: eventlog.AsyncStore, *, commit: bool) -> None:
        self.real = store.append
        self.commit = commit
        self.store = store
        store.append = self.append  # type: ignore[method-assign]

    async def append(self, *args: Any, **kwargs: Any) -> int:
        self.store.append = self.real  # type: ignore[method-assign]
        if self.commit:
            await self.real(*args, **kwargs)
        raise eventlog.StorageError("connection lost")


@pytest.mark.parametrize("items", [{"role": "user"}, "hello", (user("a"),), None, iter([user("a")])])
def test_add_items_takes_only_a_list(db_path: str, items: Any) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([user("a")])
            with pytest.raises(eventlog.InvalidValueError, match="items must be a list"):
                await session.add_items(items)
            assert await session.get_items() == [user("a")] and await session.store.seq("conv") == 1

    run(main)


@pytest.mark.parametrize("committed", [True, False])
def test_a_retried_batch_is_stored_once(db_path: str, committed: bool) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([user("a")])
            batch = [user("b"), reply(2)]
            LostAcknowledgement(session.store, commit=committed)
            with pytest.raises(eventlog.StorageError):
                await session.add_items(batch)
            assert await session.store.seq("conv") == (2 if committed else 1)
            await session.add_items([dict(i) for i in batch])  # the retry (equal items, new objects)
            assert await session.get_items() == [user("a"), *batch]
            assert await session.store.seq("conv") == 2
            await session.add_items(batch)  # after a success, equal items are a new batch
            assert await session.get_items() == [user("a"), *batch, *batch]

    run(main)


@pytest.mark.parametrize("committed", [True, False])
def test_a_retry_after_another_writer(db_path: str, committed: bool) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            other = EventlogSession("conv", session.store)
            await session.add_items([user("a")])
            LostAcknowledgement(session.store, commit=committed)
            with pytest.raises(eventlog.StorageError):
                await session.add_items([user("b")])
            await other.add_items([user("from elsewhere")])
            await session.add_items([user("b")])
            want = [user("a"), user("b"), user("from elsewhere")] if committed else [
                user("a"), user("from elsewhere"), user("b")]  # fmt: skip
            assert await session.get_items() == want

    run(main)


def test_a_batch_cancelled_mid_write_and_retried(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    real = eventlog.Store.append

    def append(store: eventlog.Store, sid: str, entries: Any, **kwargs: Any) -> int:
        if entries and entries[0] == user("slow"):
            entered.set()
            assert release.wait(30)
        return real(store, sid, entries, **kwargs)

    monkeypatch.setattr(eventlog.Store, "append", append)

    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            task = asyncio.create_task(session.add_items([user("slow"), reply(1)]))
            assert await asyncio.to_thread(entered.wait, 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()  # the write goes on, and commits
            await session.add_items([user("slow"), reply(1)])  # the caller's retry
            assert await session.get_items() == [user("slow"), reply(1)]

    run(main)


def test_concurrent_pops_each_take_a_different_item(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            items = [{"id": f"i{n}", "role": "user", "content": str(n)} for n in range(20)]
            await session.add_items(items)
            popped = await asyncio.gather(*(session.pop_item() for _ in range(30)))
            got = [p for p in popped if p is not None]
            assert len(got) == 20 and sorted(got, key=lambda i: int(i["content"])) == items
            assert await session.get_items() == []
            assert await session.pop_item() is None

    run(main)


def test_pops_racing_adds_lose_nothing(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([user(f"start {n}") for n in range(10)])

            async def add(n: int) -> None:
                await session.add_items([user(f"add {n}"), reply(n)])

            results = await asyncio.gather(*(add(n) for n in range(10)), *(session.pop_item() for _ in range(15)))
            popped = [p for p in results if p is not None]
            assert len(popped) == 15
            left = await session.get_items()
            everything = [user(f"start {n}") for n in range(10)] + [
                x for n in range(10) for x in (user(f"add {n}"), reply(n))
            ]
            assert sorted(map(repr, left + popped)) == sorted(map(repr, everything))
            for n in range(10):  # a batch is never split: pops take the newest item first
                if user(f"add {n}") in popped:
                    assert reply(n) in popped
                elif reply(n) in left:  # nothing can have come between them
                    i = left.index(user(f"add {n}"))
                    assert left[i + 1] == reply(n)

    run(main)


def test_pop_keeps_the_leaf_in_step(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([reply(1), user("x"), reply(2)])
            assert (await session.store.load("conv"))["leafId"] == "msg_2"  # type: ignore[index]
            assert await session.pop_item() == reply(2)
            assert (await session.store.load("conv"))["leafId"] == "msg_1"  # type: ignore[index]
            assert await session.pop_item() == user("x")
            assert (await session.store.load("conv"))["leafId"] == "msg_1"  # type: ignore[index]
            assert await session.pop_item() == reply(1)
            assert await session.store.load("conv") == {"entries": []}

    run(main)


def test_clear_session(db_path: str) -> None:
    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            await session.add_items([user("a"), image_item(1, 100_000)])
            other = EventlogSession("other", session.store)
            await other.add_items([user("keep me")])
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None
            await session.add_items([user("again")])
            assert await session.get_items() == [user("again")]
            assert await session.store.seq("conv") == 1  # a new conversation
            assert await other.get_items() == [user("keep me")]
            report = await session.store.compact()
            assert report.sessions_removed == 1 and report.chunks_freed >= 1

    run(main)


def test_clear_session_keeps_the_sub_agent_sessions(db_path: str) -> None:
    """clear_session() removes this conversation's items and nothing else: the
    sessions spawned from it stay, with their items and their link to it, and the
    cleared items' bytes are reclaimed by compact().  store.delete() still takes the
    whole tree."""

    async def main() -> None:
        async with EventlogSession("conv", db_path) as session:
            store = session.store
            await session.add_items([user("plan"), image_item(1, 100_000), reply(1)])
            sub = EventlogSession("conv/sub-1", store, parent_id="conv")
            await sub.add_items([user("research"), image_item(2, 100_000), reply(2)])
            subsub = EventlogSession("conv/sub-1/a", store, parent_id="conv/sub-1")
            await subsub.add_items([user("deeper")])
            await session.clear_session()
            assert await session.get_items() == []
            assert await sub.get_items() == [user("research"), image_item(2, 100_000), reply(2)]
            assert await subsub.get_items() == [user("deeper")]
            assert await store.children("conv") == ["conv/sub-1"]
            assert await store.tree("conv") == ["conv/sub-1", "conv/sub-1/a"]
            assert await store.parent("conv/sub-1") == "conv"
            report = await store.compact()
            assert report.sessions_removed == 1 and report.chunks_freed >= 1  # image 1 went
            assert await sub.get_items() == [user("research"), image_item(2, 100_000), reply(2)]
            await session.add_items([user("start over")])
            assert await session.get_items() == [user("start over")]
            assert await store.children("conv") == ["conv/sub-1"]  # the children of the new one
            assert (await store.verify()).ok
            assert await store.delete("conv") == ["conv", "conv/sub-1", "conv/sub-1/a"]
            assert await sub.get_items() == []

    run(main)


def test_large_images_go_to_chunks(tmp_path: Path) -> None:
    """A conversation with 16 MB of inline base64 images (data URLs of 2 MB images):
    no cell over the budget, and an image sent again is stored once."""
    path = str(tmp_path / "images.db")
    turns = [[user(f"look {n}"), image_item(n % 4, 2_000_000), reply(n)] for n in range(6)]

    async def main() -> None:
        async with EventlogSession("conv", path, synchronous="NORMAL") as session:
            for turn in turns:
                await session.add_items(turn)
            stats = await session.store.stats()
            assert stats["largest_cell"] <= stats["max_cell_bytes"] == 2_000_000
            assert 4 * 2_000_000 <= stats["chunks"]["raw_bytes"] < 5 * 2_000_000  # 4 distinct images
            assert stats["chunks"]["referenced_raw_bytes"] >= 6 * 2_000_000  # images as used
        async with EventlogSession("conv", path) as again:
            assert await again.get_items() == [item for turn in turns for item in turn]
            assert await again.get_items(limit=2) == turns[-1][1:]

    run(main)
    cell, row = largest_cell_and_row(path)
    assert cell <= 2_000_000 and row <= 2_000_000
