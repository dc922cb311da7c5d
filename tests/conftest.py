from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import eventlog

from .aio_sync import LoopThread, open_sync_view

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("EVENTLOG_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.load_profile("ci")


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


#: The public API under test: the synchronous Store, and the AsyncStore seen through
#: a synchronous view (tests/aio_sync.py), so the same behavioural tests run on both.
APIS = ["sync", "async"]


@pytest.fixture(params=APIS)
def open_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``open_store(path, **options)``: ``eventlog.open`` or, for the async API, a
    synchronous view of ``eventlog.open_async``; what it opens is closed at the end."""
    opened: list[Any] = []
    loop = LoopThread() if request.param == "async" else None

    def open_(path: str, **options: Any) -> Any:
        s = eventlog.open(path, **options) if loop is None else open_sync_view(loop, path, **options)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
    if loop is not None:
        loop.stop()


@pytest.fixture
def store(db_path: str, open_store: Callable[..., Any]) -> Iterator[eventlog.Store]:
    with open_store(db_path, synchronous="NORMAL") as s:
        yield s  # type: ignore[misc]
