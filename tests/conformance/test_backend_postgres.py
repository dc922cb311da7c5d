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

    def test_the_feed_never_skips_a_transaction_that_commits_out_of_order(self) -> None:
        """The trap of sequence numbers on a server: a transaction that took an
        earlier position commits after one that took a later one.  A feed that read
        by position alone would give the later one, move past it, and never give the
        earlier one."""
        b = _pg(self.backend())
        head = self.create(b, "a")
        with admin(b.url) as slow:
            slow.execute("BEGIN")
            slow.execute("INSERT INTO eventlog_events(sid, seq, ts_ms, frame) VALUES (%s, 100, 0, %s)",
                         (head.sid, b"slow"))  # fmt: skip
            self.extend(b, head, b"fast")  # commits first, at a later position
            seen = b.feed("", 100)  # (other transactions on the server may hold back even "first")
            assert b"fast" not in [r.event.frame for r in seen], "the feed gave an event that one in flight precedes"
            slow.execute("COMMIT")
        rest = self.settled_feed(b, 3 - len(seen), seen[-1].cursor if seen else "")
        frames = [r.event.frame for r in seen + rest]
        assert frames == [b"first", b"slow", b"fast"]
        slow_pos, fast_pos = (r.event.pos for r in (seen + rest)[1:])
        assert slow_pos < fast_pos
