"""The SQLite backend: a store in one SQLite file (see :mod:`eventlog.backend` for
the protocol it implements).

Its modules, by job: :mod:`.schema` (tables, migrations, read shims),
:mod:`.files` (the store's files), :mod:`.errors` (SQLite's errors translated),
:mod:`.turnstile` (writers' turns), :mod:`.connection` (the connection and its
transactions), :mod:`.rows` (rows read as records), :mod:`.queries` (statements the
units of work share), :mod:`.backend` (reads and units of work) and
:mod:`.maintenance` (compaction steps, integrity, statistics).  All of eventlog's
SQL is in this package.
"""

from .backend import SQLiteBackend
from .files import SIDECARS, live_names

__all__ = ["SIDECARS", "SQLiteBackend", "live_names"]
