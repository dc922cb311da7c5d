"""eventlog: a durable, event-sourced store for AI-agent sessions.

>>> import eventlog
>>> with eventlog.open(":memory:") as store:
...     seq = store.save("s1", {"entries": [{"id": "a"}], "leafId": "a"})
...     store.load("s1")
{'entries': [{'id': 'a'}], 'leafId': 'a'}
"""

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
from .fold import Delete, Event, Insert, Op, Replace, SetFields, Tombstone
from .store import Store, open
from .verify import Problem, VerifyReport

__version__ = "0.1.0"

__all__ = [
    "ENTRIES",
    "AsyncStore",
    "CompactReport",
    "ConflictError",
    "CorruptionError",
    "Delete",
    "Event",
    "EventLogError",
    "Insert",
    "InvalidValueError",
    "KeyMismatchError",
    "NotFoundError",
    "Op",
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
