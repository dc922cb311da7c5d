"""Async access to a store: :func:`open_async` and :class:`AsyncStore`.

Every method of :class:`eventlog.Store` is here as a coroutine (``events()`` as an
async iterator), with the same arguments, results, errors and promises.  Nothing
blocking ever runs on the event loop: SQLite, validation, encoding, compression and
hashing of a large image all run on worker threads, and the loop only waits.

Threading model (why):

* **One writer thread** owns the one writing :class:`~eventlog.Store` (one SQLite
  connection).  Every write (``save``, ``append``, ``delete``, ``snapshot``,
  ``compact``) is a job on that thread, run in the order the calls were made.  Writes
  are serialised anyway (by SQLite, and by the store's lock), so more writer threads
  would only queue on locks; one thread also keeps the writer's cache of folded
  sessions hot, which is what makes ``save()`` cheap.
* **A small pool of reader threads** (``readers``, 2 by default), each call borrowing
  one of as many reading :class:`~eventlog.Store` objects (their own connections to
  the same file, each opened when a read first finds none free: a store that is
  only read, such as a conversation resumed to show its last items, opens one
  connection, and the writer's only at its first write).  Under WAL, readers never
  wait for the writer, so ``load()`` of one session is not held up by a 20 MB
  ``save()`` of another, nor by a long
  ``verify()``.  A read started after a write returned sees that write (the commit
  happened before the write's coroutine returned).  ``compact()`` waits for the reads
  in progress and holds new ones until it is done, so it can truncate the WAL.
* With ``readers=0``, and always for ``":memory:"`` (a private in-memory database has
  one connection), every call runs on the writer thread.

Calls may come from any number of tasks at once.  Cancelling the task awaiting a call
never leaves half a write: a job that had not started never runs, and one that had
runs to its end (it commits or rolls back as if nobody had been cancelled).  Do not
change the objects you pass to ``save()`` or ``append()`` until the call returns:
a worker thread is reading them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from types import TracebackType
from typing import Any, TypeVar, Unpack

from .compaction import CompactReport
from .errors import InvalidValueError, StoreClosedError
from .fold import Event
from .options import Options, OptionValues, check_readers, resolve
from .progress import Progress
from .store import SessionInfo, Store, check_ids, check_path
from .verify import VerifyReport
from .watching import FeedItem, FeedState, Follow, WatchState, check_cursor, check_timeout

T = TypeVar("T")

#: Events fetched per trip to a reader thread (one read transaction each).
EVENTS_PAGE = 256


def _private_memory(path: str) -> bool:
    return path in ("", ":memory:") or path.startswith("file::memory:")


class _Readers:
    """The reading stores (at most ``size``, each opened by ``open_store`` when a job
    finds none free: a store that only reads opens one connection, not all) and who
    is using them.

    A job borrows any free store (or, to go on with an ``events()`` iterator, the one
    it started on); ``exclusive()`` waits until none is borrowed or being opened and
    lends none until it is left.  No borrower waits while holding a store, so nothing
    can deadlock."""

    def __init__(self, open_store: Callable[[], Store], size: int) -> None:
        self.stores: list[Store] = []
        self._open_store = open_store
        self._size = size
        self._opening = 0
        self._free: list[Store] = []
        self._cv = threading.Condition()
        self._exclusive = False

    def _can_lend(self, want: Store | None) -> bool:
        if self._exclusive:
            return False
        if want is not None:
            return want in self._free
        return bool(self._free) or len(self.stores) + self._opening < self._size

    @contextmanager
    def borrow(self, want: Store | None = None) -> Iterator[Store]:
        with self._cv:
            self._cv.wait_for(lambda: self._can_lend(want))
            store = want if want is not None else self._free[-1] if self._free else None
            if store is None:
                self._opening += 1
            else:
                self._free.remove(store)
        if store is None:
            try:
                store = self._open_store()
            finally:
                with self._cv:
                    self._opening -= 1
                    if store is not None:
                        self.stores.append(store)
                    self._cv.notify_all()
        try:
            yield store
        finally:
            with self._cv:
                self._free.append(store)
                self._cv.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cv:
            self._exclusive = True
            self._cv.wait_for(lambda: len(self._free) == len(self.stores) and not self._opening)
        try:
            yield
        finally:
            with self._cv:
                self._exclusive = False
                self._cv.notify_all()


class AsyncStore:
    """A :class:`~eventlog.Store` for asyncio code; make one with :func:`open_async`.

    Every method is a coroutine with the same arguments, result and errors as the
    :class:`~eventlog.Store` method of the same name (``events()`` returns an async
    iterator).  Safe to call from many tasks at once, all on one event loop (the
    store keeps count of the calls in progress on the loop's thread); see
    :mod:`eventlog.aio` for how the work is spread over threads.

    Options and the path are checked when it is made (:class:`InvalidValueError`).
    The store opens on first use, or explicitly with ``await store`` or
    ``async with store``; errors opening the file (``UnsupportedVersionError``,
    ``StorageError``, ``KeyMismatchError``) are raised there, and the next call tries
    to open it again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: Options | None = None,
        *,
        readers: int = 2,
        **overrides: Unpack[OptionValues],
    ) -> None:
        path = check_path(path)
        readers = check_readers(readers)
        #: The options its stores are opened with, checked here (bad ones fail now, not later).
        self.options = resolve(options, overrides, extra=("readers",))
        self.path = path
        self.readers = 0 if _private_memory(path) else readers
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="eventlog-writer")
        self._reader_pool = ThreadPoolExecutor(self.readers, "eventlog-reader") if self.readers else None
        self._readers = _Readers(lambda: Store(self.path, self.options), self.readers)
        self._opened: Future[Store] | None = None
        self._closed = False
        self._active = 0  # calls begun and not yet returned
        self._idle: asyncio.Future[None] | None = None  # set when _active drops to 0
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def _open_writer(self) -> Store:
        """On the writer thread: the writing store (the readers open as reads need
        them: a store that is only read never opens the writer)."""
        return Store(self.path, self.options)

    def _enter(self) -> None:
        """Count a call in; after :meth:`close` began, refuse it."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        self._active += 1

    def _leave(self) -> None:
        self._active -= 1
        if self._active == 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def _stores(self) -> tuple[Store, _Readers]:
        opened = self._opened
        if opened is None:
            opened = self._opened = self._writer_pool.submit(self._open_writer)
        try:
            # Shielded: one caller being cancelled must not cancel the opening for all.
            return await asyncio.shield(asyncio.wrap_future(opened)), self._readers
        except BaseException:
            if opened.done() and not opened.cancelled() and opened.exception() is not None and self._opened is opened:
                self._opened = None  # the next call tries again (the error may have been passing)
            raise

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open_now().__await__()

    async def _open_now(self) -> AsyncStore:
        self._enter()
        try:
            await self._stores()
        finally:
            self._leave()
        return self

    async def __aenter__(self) -> AsyncStore:
        return await self._open_now()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the store once every call begun before has finished (its write
        committed or rolled back); calls begun after raise :class:`StoreClosedError`.
        Idempotent: every call waits for the one closing."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._close_when_idle())
        await asyncio.shield(self._closing)

    aclose = close

    async def _close_when_idle(self) -> None:
        while self._active:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle
        await asyncio.wrap_future(self._writer_pool.submit(self._shutdown))

    def _shutdown(self) -> None:
        """On the writer thread, after every write queued before it: wait for the
        reads in progress, then close every connection."""
        try:
            if self._reader_pool is not None:
                self._reader_pool.shutdown(wait=True)
            for s in self._readers.stores:
                s.close()
            opened = self._opened
            if opened is not None and opened.done() and not opened.cancelled() and opened.exception() is None:
                opened.result().close()
        finally:
            self._writer_pool.shutdown(wait=False)

    # ------------------------------------------------------------------ running jobs

    async def _write(self, job: Callable[[Store], T], *, exclusive: bool = False) -> T:
        """``job(writer)`` on the writer thread; with ``exclusive``, while no reader
        is in use."""
        self._enter()
        try:
            writer, readers = await self._stores()

            def run() -> T:
                if not exclusive:
                    return job(writer)
                with readers.exclusive():
                    return job(writer)

            return await asyncio.wrap_future(self._writer_pool.submit(run))
        finally:
            self._leave()

    async def _read(self, job: Callable[[Store], T], on: Store | None = None) -> T:
        """``job(reader)`` on a reader thread (``on``: that reader), or on the writer
        thread when there are no readers."""
        self._enter()
        try:
            if self._reader_pool is None:
                writer, _ = await self._stores()
                return await asyncio.wrap_future(self._writer_pool.submit(job, writer))
            readers = self._readers

            def borrowing() -> T:
                with readers.borrow(on) as store:
                    return job(store)

            return await asyncio.wrap_future(self._reader_pool.submit(borrowing))
        finally:
            self._leave()

    # ------------------------------------------------------------------ writing

    async def save(
        self,
        session_id: str,
        data: dict[str, Any],
        *,
        parent_id: str | None = None,
        expected_seq: int | None = None,
    ) -> int:
        """:meth:`eventlog.Store.save`: make the stored session equal to ``data`` in
        one event; the new sequence number.  ``ConflictError`` when ``expected_seq``
        is given and is not the session's."""
        return await self._write(lambda s: s.save(session_id, data, parent_id=parent_id, expected_seq=expected_seq))

    async def append(
        self,
        session_id: str,
        entries: list[Any],
        *,
        expected_seq: int | None = None,
        parent_id: str | None = None,
    ) -> int:
        """:meth:`eventlog.Store.append`: append ``entries`` (a ``list``, else
        ``InvalidValueError``) as one event; the new sequence number.
        ``ConflictError`` as for :meth:`save`."""
        return await self._write(
            lambda s: s.append(session_id, entries, expected_seq=expected_seq, parent_id=parent_id)
        )

    async def delete(self, session_id: str, *, tree: bool = True) -> list[str]:
        """:meth:`eventlog.Store.delete`: delete the session and (unless
        ``tree=False``) its live descendants in one transaction; the ids deleted."""
        return await self._write(lambda s: s.delete(session_id, tree=tree))

    async def snapshot(self, session_id: str) -> int:
        """:meth:`eventlog.Store.snapshot`: snapshot the head now; its sequence number."""
        return await self._write(lambda s: s.snapshot(session_id))

    async def compact(
        self, *, retain: int | None = None, vacuum: bool = False, batch: int = 500, progress: Progress | None = None
    ) -> CompactReport:
        """:meth:`eventlog.Store.compact`, on the writer thread; reads wait for it (so
        the WAL can be truncated), writes queue behind it.  ``progress`` is called on
        that thread, not on the event loop."""
        return await self._write(
            lambda s: s.compact(retain=retain, vacuum=vacuum, batch=batch, progress=progress), exclusive=True
        )

    async def copy_to(
        self, other: Store | AsyncStore, sessions: Sequence[str] | None = None, *, tree: bool = True
    ) -> list[str]:
        """:meth:`eventlog.Store.copy_to`: copy sessions of this store into ``other``
        (a :class:`Store` or an :class:`AsyncStore`) with their whole history.  Into
        an :class:`AsyncStore`, the copy runs on its writer thread, after the writes
        queued there before it, reading this store meanwhile; into a
        :class:`Store`, on one of this store's reader threads."""
        if not isinstance(other, AsyncStore):
            return await self._read(lambda s: s.copy_to(other, sessions, tree=tree))
        if other is self:
            raise InvalidValueError("a store cannot be copied into itself")
        self._enter()
        try:
            source, _ = await self._stores()
            return await other._write(lambda w: source.copy_to(w, sessions, tree=tree))
        finally:
            self._leave()

    # ------------------------------------------------------------------ reading

    async def load(self, session_id: str) -> dict[str, Any] | None:
        """:meth:`eventlog.Store.load`: the session as last written (the caller's own
        copy), or ``None``."""
        return await self._read(lambda s: s.load(session_id))

    async def items(
        self,
        session_id: str,
        start: int | None = None,
        stop: int | None = None,
        *,
        field: str | Sequence[str] = "entries",
    ) -> list[Any]:
        """:meth:`eventlog.Store.items`: ``list[start:stop]`` of the list at ``field``,
        decoding only what the slice needs (the caller's own)."""
        return await self._read(lambda s: s.items(session_id, start, stop, field=field))

    async def tail(self, session_id: str, n: int, *, field: str | Sequence[str] = "entries") -> list[Any]:
        """:meth:`eventlog.Store.tail`: the last ``n`` items of the list at ``field``."""
        return await self._read(lambda s: s.tail(session_id, n, field=field))

    async def seq(self, session_id: str) -> int:
        """:meth:`eventlog.Store.seq`: the head (0 when there is no such session)."""
        return await self._read(lambda s: s.seq(session_id))

    async def fold(self, session_id: str, at: int | None = None) -> dict[str, Any]:
        """:meth:`eventlog.Store.fold`: the session right after event ``at``."""
        return await self._read(lambda s: s.fold(session_id, at))

    def events(self, session_id: str, since: int = 0) -> AsyncIterator[Event]:
        """:meth:`eventlog.Store.events` as an async iterator: the events after
        ``since``, oldest first, large values rehydrated, fetched a page at a time.

        A bad ``since`` or session id raises :class:`InvalidValueError` here; an
        unknown session or position raises :class:`NotFoundError` from the first step
        of the iteration (the check needs the file, which is not read on the loop)."""
        check_ids(session_id, None)
        if type(since) is not int or since < 0:
            raise InvalidValueError("since must be a non-negative int", session_id=session_id)
        return _Events(self, session_id, since)

    def watch(self, session_id: str, since: int = 0, *, timeout: float | None = None) -> AsyncIterator[Event]:
        """:meth:`eventlog.Store.watch` as an async iterator: the session's events
        after ``since`` as they commit, from any process.  Each read runs on a reader
        thread and each wait on the event loop's default executor, so a watch holds
        neither a reader nor the loop while it waits.  Bad arguments raise
        :class:`InvalidValueError` here."""
        check_ids(session_id, None)
        if type(since) is not int or since < 0:
            raise InvalidValueError("since must be a non-negative int", session_id=session_id)
        state = WatchState(session_id, since)
        return self._follow(lambda s: s._watch_step(state), check_timeout(timeout))

    def feed(
        self, after: str | None = None, *, follow: bool = False, timeout: float | None = None
    ) -> AsyncIterator[FeedItem]:
        """:meth:`eventlog.Store.feed` as an async iterator: every event of every
        session after the cursor ``after``, in an order that never skips; with
        ``follow``, new ones as they commit (waiting as :meth:`watch` does)."""
        state = FeedState(check_cursor(after))
        timeout = check_timeout(timeout)
        if not follow:
            return self._feed_once(state)
        return self._follow(lambda s: s._feed_step(state), timeout)

    async def _feed_once(self, state: FeedState) -> AsyncIterator[FeedItem]:
        while True:
            items = await self._read(lambda s: s._feed_step(state))
            if not items:
                return
            for item in items:
                yield item

    async def _follow(self, step: Callable[[Store], list[T] | None], timeout: float | None) -> AsyncIterator[T]:
        watcher = await self._read(lambda s: s._watcher())
        follow: Follow[T] = Follow(lambda: None, watcher, timeout)
        async for item in follow.aiter(lambda: self._read(step)):
            yield item

    async def sessions(self) -> list[str]:
        """:meth:`eventlog.Store.sessions`: ids of every live session, oldest first."""
        return await self._read(lambda s: s.sessions())

    async def parent(self, session_id: str) -> str | None:
        """:meth:`eventlog.Store.parent`: the parent recorded at creation."""
        return await self._read(lambda s: s.parent(session_id))

    async def info(self, session_id: str) -> SessionInfo:
        """:meth:`eventlog.Store.info`: a session's bookkeeping without folding it."""
        return await self._read(lambda s: s.info(session_id))

    async def session_infos(self) -> list[SessionInfo]:
        """:meth:`eventlog.Store.session_infos`: every session's bookkeeping, in one
        query."""
        return await self._read(lambda s: s.session_infos())

    async def children(self, session_id: str) -> list[str]:
        """:meth:`eventlog.Store.children`: live sessions created with this parent."""
        return await self._read(lambda s: s.children(session_id))

    async def tree(self, session_id: str) -> list[str]:
        """:meth:`eventlog.Store.tree`: every live descendant, level by level."""
        return await self._read(lambda s: s.tree(session_id))

    async def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """:meth:`eventlog.Store.verify`: check the whole store (in one read
        transaction, on a reader: writes go on meanwhile).  ``progress`` is called on
        the reader's thread, not on the event loop."""
        return await self._read(lambda s: s.verify(progress=progress))

    async def stats(self) -> dict[str, Any]:
        """:meth:`eventlog.Store.stats`: rows, bytes and largest cell per table."""
        return await self._read(lambda s: s.stats())


class _Events(AsyncIterator[Event]):
    """The async iterator :meth:`AsyncStore.events` returns: each page is read on a
    reader thread by the synchronous iterator, which stays with the store it began on
    (it checks, page by page, that the session was not deleted meanwhile)."""

    def __init__(self, store: AsyncStore, session_id: str, since: int) -> None:
        self._store = store
        self._session_id = session_id
        self._since = since
        self._it: Iterator[Event] | None = None
        self._on: Store | None = None
        self._page: deque[Event] = deque()
        self._done = False
        self._lock = asyncio.Lock()

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Event:
        async with self._lock:
            if not self._page and not self._done:
                await self._fetch()
            if not self._page:
                raise StopAsyncIteration
            return self._page.popleft()

    async def _fetch(self) -> None:
        if self._it is None:

            def first(s: Store) -> tuple[Store, Iterator[Event], list[Event]]:
                it = s.events(self._session_id, self._since)
                return s, it, list(islice(it, EVENTS_PAGE))

            self._on, self._it, page = await self._store._read(first)
        else:
            it = self._it
            page = await self._store._read(lambda _: list(islice(it, EVENTS_PAGE)), on=self._on)
        self._page.extend(page)
        self._done = len(page) < EVENTS_PAGE


def open_async(
    path: str | os.PathLike[str],
    options: Options | None = None,
    *,
    readers: int = 2,
    **overrides: Unpack[OptionValues],
) -> AsyncStore:
    """The :class:`AsyncStore` for the eventlog store at ``path`` (a ``str`` or any
    ``os.PathLike``, as for :func:`eventlog.open`; created if needed).  ``options``
    (an :class:`eventlog.Options`) and ``overrides`` (options as keywords) are those
    of :func:`eventlog.open`; ``readers`` (2), an option of the async store alone, is
    the number of reader threads and connections: an int from 0 to 256 (0: every
    call on the writer thread; always 0 for ``":memory:"``).

    Not a coroutine: the file is opened on first use, by ``await`` or by
    ``async with``::

        async with eventlog.open_async("sessions.db") as store:
            seq = await store.save(session_id, data)

    A bad option (a name that is not an option included) and a path that is not a
    ``str`` or an ``os.PathLike`` of one raise :class:`~eventlog.InvalidValueError`
    here, before the file is touched.
    """
    return AsyncStore(path, options, readers=readers, **overrides)
