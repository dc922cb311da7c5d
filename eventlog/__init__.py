"""eventlog: a durable, event-sourced store for AI-agent sessions.

>>> import eventlog
>>> with eventlog.open(":memory:") as store:
...     seq = store.save("s1", {"entries": [{"id": "a"}], "leafId": "a"})
...     store.load("s1")
{'entries': [{'id': 'a'}], 'leafId': 'a'}

eventlog logs what it does on its own (snapshots built or failed, damaged snapshots
skipped, damaged chunks rewritten, a file's schema upgraded, writers' turns given
up) with the standard :mod:`logging` module, under the ``eventlog`` logger (each
module's own, ``eventlog.store``, ``eventlog.log`` and so on, are its children).
Like any library it adds only a ``NullHandler``: nothing is printed unless the
application configures logging.
"""

import logging as _logging

from .aio import AsyncStore, open_async
from .codec import ENTRIES
from .compaction import CompactReport
from .errors import (
    ConflictError,
    CorruptionError,
    EventLogError,
    InvalidValueError,
    KeyMismatchError,
    NotFoundError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    UnsupportedVersionError,
)
from .fold import At, Delete, Event, Insert, Op, Replace, SetFields, Tombstone
from .options import Options
from .store import Store, open
from .verify import Problem, VerifyReport
from .watching import FeedItem

__version__ = "0.1.0"

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "ENTRIES",
    "AsyncStore",
    "At",
    "CompactReport",
    "ConflictError",
    "CorruptionError",
    "Delete",
    "Event",
    "EventLogError",
    "FeedItem",
    "Insert",
    "InvalidValueError",
    "KeyMismatchError",
    "NotFoundError",
    "Op",
    "Options",
    "OutcomeUnknownError",
    "Problem",
    "ReadOnlyError",
    "Replace",
    "SetFields",
    "StorageError",
    "Store",
    "StoreClosedError",
    "Tombstone",
    "UnsupportedVersionError",
    "VerifyReport",
    "open",
    "open_async",
]
