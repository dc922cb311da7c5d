"""A synchronous view of an :class:`eventlog.AsyncStore`, so that the behavioural
tests written against :class:`eventlog.Store` run unchanged against the async API.

The async store lives on an event loop in a thread of its own; each call is a
coroutine submitted to that loop and waited for.  Only the public async API is used:
the view adds no behaviour, it only waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

import eventlog

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _next(it: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await it.__anext__()
    except StopAsyncIteration:
        return False, None


class SyncStore:
    """Every coroutine method of the async store as a plain call; ``events()`` raises
    at once, like :meth:`eventlog.Store.events`, by fetching the first event."""

    def __init__(self, astore: eventlog.AsyncStore, loop: LoopThread) -> None:
        self.astore = astore
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.astore, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(method):
            raise AttributeError(f"AsyncStore has no coroutine method {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        return call

    def events(self, session_id: str, since: int = 0) -> Iterator[eventlog.Event]:
        it = self.astore.events(session_id, since)
        first = self._loop.run(_next(it))

        def rest(item: tuple[bool, Any]) -> Iterator[eventlog.Event]:
            while item[0]:
                yield item[1]
                item = self._loop.run(_next(it))

        return rest(first)

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_sync_view(loop: LoopThread, path: str, **options: Any) -> SyncStore:
    """Open ``path`` with :func:`eventlog.open_async` on ``loop`` and wrap it."""

    async def opened() -> eventlog.AsyncStore:
        return await eventlog.open_async(path, **options)

    return SyncStore(loop.run(opened()), loop)
