"""An OpenAI Agents SDK session kept in an eventlog store.

:class:`EventlogSession` has what the SDK's ``agents.memory.Session`` protocol asks
for (``session_id``, ``session_settings``, ``get_items``, ``add_items``,
``pop_item``, ``clear_session``), so it can be passed as ``Runner.run(...,
session=...)``.  It is duck-typed: eventlog does not import or depend on
``openai-agents``.

A conversation is one eventlog session ``{"entries": [item, ...]}`` (``append()``
also keeps a ``leafId`` field, the last item's ``id``, as for any appended entry).
Items are stored exactly as given, as JSON-like dicts; large values in them, such as
base64 ``input_image`` data URLs, go to deduplicated chunks like any other large
value, so no cell exceeds the store's budget whatever the size of the images.
Every change is one event: ``fold()``, ``events()`` and the command line show the
conversation at any point of its history.
"""

from __future__ import annotations

import importlib
import os
from types import TracebackType
from typing import Any, Unpack

from .aio import AsyncStore, open_async
from .errors import ConflictError, InvalidValueError, NotFoundError
from .fold import Insert
from .options import AsyncOptionValues, Options, shown
from .store import check_ids, check_path

#: Failed ``add_items`` batches remembered for recognising their retries.
MAX_REMEMBERED_FAILURES = 16


def _settings(value: Any) -> Any:
    """A dict of settings as the SDK's ``SessionSettings`` when the SDK is there (its
    runner calls ``session_settings.resolve(...)``); anything else as given."""
    if isinstance(value, dict):
        try:
            memory = importlib.import_module("agents.memory")
        except ImportError:
            return value
        return memory.SessionSettings(**value)
    return value


class EventlogSession:
    """The conversation history of one ``session_id``, for the OpenAI Agents SDK.

    ``store`` is an :class:`~eventlog.AsyncStore` (shared: several sessions may use
    one, and it stays open when this closes) or a path (``str`` or ``os.PathLike``;
    anything else is an :class:`~eventlog.InvalidValueError`), opened with
    :func:`eventlog.open_async` and ``options`` (an :class:`~eventlog.Options`) and
    ``overrides`` (options as keywords, ``readers`` included; all checked here), and
    closed by :meth:`close`.  Bad arguments raise :class:`~eventlog.InvalidValueError`.
    ``session_settings`` is the SDK's ``SessionSettings`` (a dict is turned into one):
    its ``limit`` is the default of :meth:`get_items`.  ``parent_id`` records the
    session this one was spawned from (see :meth:`eventlog.Store.save`).

    Safe to use from many tasks, and by many session objects and processes on the
    same store file: every change is one conditional write (``expected_seq``), so
    concurrent changes never interleave or get lost.  Nothing blocks the event loop.
    """

    def __init__(
        self,
        session_id: str,
        store: AsyncStore | str | os.PathLike[str],
        options: Options | None = None,
        *,
        session_settings: Any = None,
        parent_id: str | None = None,
        **overrides: Unpack[AsyncOptionValues],
    ) -> None:
        if type(session_id) is not str or not session_id:
            raise InvalidValueError(f"session id must be a non-empty str, not {shown(session_id, 80)}")
        if parent_id is not None:
            check_ids(session_id, parent_id)
        if isinstance(store, AsyncStore):
            if options is not None or overrides:
                raise InvalidValueError("store options are for a path; this AsyncStore is already configured")
            self.store, self._owns_store = store, False
        else:
            self.store, self._owns_store = open_async(check_path(store, "store"), options, **overrides), True
        self.session_id = session_id
        self.session_settings: Any = _settings(session_settings)
        self.parent_id = parent_id
        self._failed: list[tuple[list[Any], int]] = []

    def __repr__(self) -> str:
        return f"EventlogSession({self.session_id!r}, {self.store.path!r})"

    # ------------------------------------------------------------------ reading

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The conversation's items, oldest first: all of them, or the latest
        ``limit`` (default: ``session_settings.limit``), reading only those
        (:meth:`eventlog.Store.tail`: the rest of the conversation is not decoded).
        ``limit=0`` gives ``[]``; a negative limit gives all (as the SDK's
        ``SQLiteSession``).  The items are the caller's own copies.  A stored
        session whose ``entries`` is not a list is an
        :class:`~eventlog.InvalidValueError`."""
        if limit is None:
            limit = self._default_limit()
        if limit is not None and type(limit) is not int:
            message = f"limit must be an int or None, not {shown(limit, 40)}"
            raise InvalidValueError(message, session_id=self.session_id)
        if limit == 0:
            return []
        try:
            if limit is None or limit < 0:
                return await self.store.items(self.session_id)
            return await self.store.tail(self.session_id, limit)  # decodes only those items
        except NotFoundError:  # no conversation yet (or a session without entries)
            return []

    def _default_limit(self) -> int | None:
        s = self.session_settings
        limit = s.get("limit") if isinstance(s, dict) else getattr(s, "limit", None)
        return limit if type(limit) is int else None

    def _items(self, data: dict[str, Any] | None) -> list[Any]:
        if data is None:
            return []
        entries = data.get("entries", [])
        if type(entries) is not list:
            raise InvalidValueError("the stored session's entries field is not a list", session_id=self.session_id)
        return entries

    # ------------------------------------------------------------------ writing

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items`` to the conversation, all of them or none, as one event.

        A retried batch is not stored twice.  The write is conditional on the
        conversation's position (``expected_seq``), read just before; when another
        writer got in between, it is read again and the batch goes after theirs.  When
        a call raises (cancelled, a storage error) the batch may or may not have been
        written, so this object remembers it and the position it was written at; a
        later call with equal items is taken as its retry, and writes them only if the
        event at that position does not already hold them.  (Only a retry through the
        same object is recognised: two calls with equal items that both succeed are
        two batches, as a user may well say the same thing twice.)

        ``items`` must be a ``list`` (as the SDK passes): anything else is an
        :class:`~eventlog.InvalidValueError` and nothing is written.
        """
        if type(items) is not list:
            raise InvalidValueError(f"items must be a list, not {type(items).__name__}", session_id=self.session_id)
        batch = list(items)
        if not batch:
            return
        sid = self.session_id
        retry_of = base = self._failed_attempt(batch)
        try:
            while True:
                if base is None:
                    base = await self.store.seq(sid)
                try:
                    await self.store.append(sid, batch, expected_seq=base, parent_id=self.parent_id)
                    return
                except ConflictError:
                    if retry_of is not None:
                        at, retry_of = retry_of, None
                        if await self._holds(at, batch):
                            return  # the failed call had written it after all
                    base = None
        except BaseException:
            if base is not None:
                self._failed.append((batch, base))
                del self._failed[:-MAX_REMEMBERED_FAILURES]
            raise

    def _failed_attempt(self, batch: list[Any]) -> int | None:
        """The position of a failed earlier call with equal items (forgotten now: it
        is this call's to settle), or ``None``."""
        for i in range(len(self._failed) - 1, -1, -1):
            items, base = self._failed[i]
            if len(items) == len(batch) and items == batch:
                del self._failed[i]
                return base
        return None

    async def _holds(self, base: int, batch: list[Any]) -> bool:
        """Whether the event right after ``base`` appended exactly ``batch``."""
        try:
            event = await self.store.events(self.session_id, since=base).__anext__()
        except (NotFoundError, StopAsyncIteration):
            return False  # deleted (or compacted) meanwhile: not this conversation's any more
        return any(type(op) is Insert and op.entries == batch for op in event.ops)

    async def pop_item(self) -> Any | None:
        """Remove the newest item and return it, or ``None`` when there is none.

        Atomic: the conversation is read at a position and written back without its
        last item only if still at that position (``expected_seq``); when another
        writer got in between, it is tried again.  So concurrent pops each remove and
        return a different item, and an item added meanwhile is never lost."""
        sid = self.session_id
        while True:
            seq = await self.store.seq(sid)
            if seq == 0:
                return None
            try:
                data = await self.store.fold(sid, at=seq)
            except NotFoundError:
                continue  # deleted (or compacted) meanwhile: look again
            entries = self._items(data)
            if not entries:
                return None
            item = entries.pop()
            if type(item) is dict and "id" in item and data.get("leafId") == item["id"]:
                # append() keeps leafId at the newest item that has an id: so does pop.
                ids = [e["id"] for e in entries if type(e) is dict and "id" in e]
                if ids:
                    data["leafId"] = ids[-1]
                else:
                    del data["leafId"]
            try:
                await self.store.save(sid, data, expected_seq=seq)
            except ConflictError:
                continue
            return item

    async def clear_session(self) -> None:
        """Remove every item of this conversation, and only them: the session is
        deleted on its own (:meth:`eventlog.Store.delete` with ``tree=False``), so
        ``get_items()`` is ``[]`` and the items' bytes are reclaimed by the next
        ``compact()`` (images no other session uses included), while the sessions
        created with it as ``parent_id`` (sub-agents) stay, linked to it by id.
        Adding items afterwards starts a new, empty conversation with the same id,
        which those sessions are then children of.  To delete the conversation with
        its sub-agents, use ``store.delete(session_id)``."""
        self._failed.clear()
        await self.store.delete(self.session_id, tree=False)

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close the store if this session opened it (from a path)."""
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> EventlogSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
