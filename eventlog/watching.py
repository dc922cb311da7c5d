"""Live subscriptions: :meth:`eventlog.Store.watch` (one session's new events as
they commit) and :meth:`eventlog.Store.feed` (every event of every session, in an
order that never skips, resumable from a cursor), on any backend and from any
process.

Both are a loop of two steps.  A *step* reads what was committed since the last one
(from where the subscription is: a notification is never trusted to say what
changed) on a store handle, under its lock, and never blocks.  Between steps, a
:class:`~eventlog.backend.Watcher`, with a connection of its own, waits for the next
commit (SQLite: the file's change counter; PostgreSQL: ``LISTEN``/``NOTIFY``; both
also wake on a timer, so a lost wake-up delays an event, never stalls it).  The
async store runs steps on its reader threads and waits on a thread of the event
loop's executor, so a long wait holds neither a reader nor the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .backend import Watcher
from .errors import InvalidValueError
from .fold import Event, Tombstone

T = TypeVar("T")

#: Events a step reads at most.
PAGE = 256
#: Longest wait between two steps, whatever the watcher says (seconds).
POLL = 1.0


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One event of :meth:`eventlog.Store.feed`: ``cursor`` is where to resume after
    it (``feed(after=item.cursor)``), an opaque string this store gave."""

    cursor: str
    event: Event


@dataclass(slots=True)
class WatchState:
    """Where a watch of session ``name`` is: the incarnation it follows (``sid``,
    ``key``; ``None`` until the session exists), the last event it gave
    (``after``) and whether it saw the session's tombstone (``ended``)."""

    name: str
    after: int
    sid: int | None = None
    key: bytes | None = None
    ended: bool = False


@dataclass(slots=True)
class FeedState:
    """Where a feed is: the cursor after the last event it gave."""

    cursor: str


def ended_by(event: Event) -> bool:
    """Whether ``event`` ends its session (a delete's tombstone)."""
    return any(type(op) is Tombstone for op in event.ops)


def check_timeout(timeout: Any) -> float | None:
    """``timeout`` if it is ``None`` or a number of seconds from 0."""
    if timeout is None:
        return None
    if type(timeout) not in (int, float) or not timeout >= 0:
        raise InvalidValueError(f"timeout must be None or a number of seconds from 0, not {timeout!r:.40}")
    return float(timeout)


def check_cursor(after: Any) -> str:
    """A feed cursor as given: ``None`` (from the start) or a string."""
    if after is None:
        return ""
    if type(after) is not str:
        raise InvalidValueError(f"after must be None or a cursor this store gave (a str), not {type(after).__name__}")
    return after


class Follow(Generic[T]):
    """The loop of a subscription: ``step()`` (a list of items, ``None`` once the
    subscription has ended), then a wait on ``watcher`` while there is nothing new;
    ends after ``timeout`` seconds without an item (``None``: never).  The watcher
    is closed when the loop ends, or when the iterator is closed or collected."""

    def __init__(self, step: Callable[[], list[T] | None], watcher: Watcher, timeout: float | None) -> None:
        self.step = step
        self.watcher = watcher
        self.timeout = timeout

    def __iter__(self) -> Iterator[T]:
        try:
            quiet_since = time.monotonic()
            while True:
                items = self.step()
                if items is None:
                    return
                if items:
                    yield from items
                    quiet_since = time.monotonic()
                    continue
                wait = self._wait_left(quiet_since)
                if wait is None:
                    return
                self.watcher.wait(wait)
        finally:
            self.watcher.close()

    async def aiter(self, step: Callable[[], Any]) -> AsyncIterator[T]:
        """The same loop on an event loop: ``step()`` is awaitable (run on a reader)
        and the wait runs on the loop's default executor."""
        try:
            quiet_since = time.monotonic()
            while True:
                items = await step()
                if items is None:
                    return
                if items:
                    for item in items:
                        yield item
                    quiet_since = time.monotonic()
                    continue
                wait = self._wait_left(quiet_since)
                if wait is None:
                    return
                await asyncio.to_thread(self.watcher.wait, wait)
        finally:
            await asyncio.to_thread(self.watcher.close)

    def _wait_left(self, quiet_since: float) -> float | None:
        """How long to wait now (at most :data:`POLL`), ``None`` once the timeout
        has passed."""
        if self.timeout is None:
            return POLL
        left = quiet_since + self.timeout - time.monotonic()
        return None if left <= 0 else min(left, POLL)
