"""Storage backends (see :mod:`eventlog.backend` for the protocol), and the one place
that picks one for a path:

* ``"memory:"`` and ``"memory:NAME"``: :mod:`eventlog.backends.memory`, plain Python
  structures (a private store, or one shared by every handle of that name in the
  process);
* ``"postgresql://..."`` (or ``"postgres://..."``): :mod:`eventlog.backends.postgres`,
  a store in a PostgreSQL database (the ``postgres`` extra);
* anything else, ``":memory:"`` included (SQLite's private in-memory database, with
  the same limits as a file): :mod:`eventlog.backends.sqlite`, a store in one SQLite
  file.

A path is a ``str``; a file whose name starts with ``memory:`` is opened as
``./memory:...`` (or through a :class:`pathlib.Path`).
"""

from __future__ import annotations

import os

from ..backend import Backend
from .memory import PREFIX as MEMORY
from .memory import MemoryBackend
from .postgres import PostgresBackend, is_url

# The default backend, imported with eventlog (not at the first open, where its
# imports would be counted in the open).
from .sqlite import SIDECARS, SQLiteBackend
from .sqlite import live_names as sqlite_names


def open_backend(
    path: str,
    *,
    max_cell_bytes: int,
    synchronous: str,
    busy_timeout: float,
    new_meta: dict[str, str | bytes],
    readonly: bool,
    memory_store: bool = False,
) -> Backend:
    """The backend of the store at ``path`` (``memory_store``: ``path`` came as a
    ``str``, so ``"memory:..."`` names an in-memory store rather than a file)."""
    if memory_store and path.startswith(MEMORY):
        name = path[len(MEMORY) :]
        return MemoryBackend(name or None, max_cell_bytes=max_cell_bytes, new_meta=new_meta, readonly=readonly)
    if memory_store and is_url(path):
        return PostgresBackend(path, max_cell_bytes=max_cell_bytes, synchronous=synchronous, busy_timeout=busy_timeout,
                               new_meta=new_meta, readonly=readonly)  # fmt: skip
    return SQLiteBackend(
        path,
        max_cell_bytes=max_cell_bytes,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        new_meta=new_meta,
        readonly=readonly,
    )


def private(path: str) -> bool:
    """Whether a store at ``path`` can have one handle only (a private in-memory
    store: each open makes a new one)."""
    return path in ("", ":memory:", MEMORY) or path.startswith("file::memory:")


def in_memory(path: str) -> bool:
    """Whether ``path`` names a store in this process's memory."""
    return private(path) or path.startswith(MEMORY)


def on_server(path: str) -> bool:
    """Whether ``path`` names a store on a database server (a PostgreSQL URL)."""
    return is_url(path)


def not_files(path: str) -> bool:
    """Whether ``path`` names a store that is not in files here (in memory, or on a
    server): no file to check, create or remove."""
    return in_memory(path) or is_url(path)


def store_files(path: str) -> list[str]:
    """The files a store at ``path`` is made of, those that exist or not: its file
    and the files next to it (SQLite's ``-wal``, ``-shm``, ``-journal`` and the
    writers' ``-lock``); none for an in-memory store."""
    if not_files(path):
        return []
    return [path, *(path + s for s in SIDECARS)]


def live_names(path: str) -> list[str] | None:
    """The live sessions of the store file at ``path``, looked at without changing
    anything next to it (no side files made); ``None`` if it is not a store."""
    if not_files(path) or not os.path.isfile(path):
        return None
    return sqlite_names(path)
