"""The PostgreSQL backend passes the backend conformance suite
(:mod:`eventlog.conformance`) on a real server (see :mod:`tests.postgres`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventlog.backend import Backend
from eventlog.backends.postgres import PostgresBackend
from eventlog.conformance import BackendTests

from ..postgres import admin, store_urls

#: Damage PostgreSQL's column types rule out: a row cannot read a value of another type.
_TYPED = ("event_column", "event_frame", "session_column", "snapshot_seq", "snapshot_frame", "chunk_column")


def _pg(b: Backend) -> PostgresBackend:
    assert isinstance(b, PostgresBackend)
    return b


class TestPostgresBackend(BackendTests):
    @pytest.fixture(autouse=True)
    def _schemas(self) -> Iterator[None]:
        with store_urls() as new:
            self._new_url = new
            yield

    def make_backend(self, **options: Any) -> Backend:
        return PostgresBackend(self._new_url(), max_cell_bytes=options.get("max_cell_bytes", 2_000_000),
                               synchronous="OFF", new_meta={"made_by": "conformance"})  # fmt: skip

    def another_handle(self, backend: Backend, *, readonly: bool = False) -> Backend:
        b = _pg(backend)
        return PostgresBackend(b.url, max_cell_bytes=b.limits.max_cell_bytes, synchronous="OFF", readonly=readonly)

    def process_opener(self, backend: Backend) -> Callable[[], Backend] | None:
        b = _pg(backend)
        return functools.partial(PostgresBackend, b.url, max_cell_bytes=b.limits.max_cell_bytes, synchronous="OFF")

    def damage(self, backend: Backend, kind: str, *, sid: int = 0, seq: int = 0, hash: bytes = b"") -> None:
        if kind in _TYPED:
            pytest.skip("PostgreSQL enforces column types: a row cannot read a value of another type")
        with admin(_pg(backend).url) as con:
            if kind == "event_missing":
                con.execute("DELETE FROM eventlog_events WHERE sid = %s AND seq = %s", (sid, seq))
            elif kind == "chunk_missing":
                con.execute("SET session_replication_role = replica")  # past the foreign key, as damage would be
                con.execute("DELETE FROM eventlog_chunks WHERE hash = %s", (hash,))
            else:
                raise AssertionError(kind)
