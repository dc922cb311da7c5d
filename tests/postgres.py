"""A PostgreSQL server for the tests: each store in a schema of its own.

The server is named by ``EVENTLOG_TEST_POSTGRES`` (a libpq URL of a role that may
create schemas; default ``postgresql://eventlog:eventlog@localhost/eventlog_test``,
what ``.ci/run`` makes).  Where none answers, the tests that need one are skipped,
except with ``EVENTLOG_REQUIRE_POSTGRES=1`` (CI), where they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import quote

import pytest

DEFAULT = "postgresql://eventlog:eventlog@localhost/eventlog_test"
_checked: list[str | None] = []


def admin_url() -> str:
    """The server's URL, or the test skipped (failed where it is required)."""
    url = os.environ.get("EVENTLOG_TEST_POSTGRES", DEFAULT)
    if not _checked:
        why: str | None = None
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=5) as con:
                con.execute("SELECT 1")
        except Exception as e:  # not installed, no server, no role: why, in one line
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        _checked.append(why)
    if _checked[0] is not None:
        message = f"no PostgreSQL server for the tests ({_checked[0]}); set EVENTLOG_TEST_POSTGRES"
        if os.environ.get("EVENTLOG_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def in_schema(url: str, schema: str) -> str:
    """``url`` with its connections' ``search_path`` set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote('-csearch_path=' + schema)}"


def new_schema() -> str:
    """A new, empty schema on the server; its name."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url(), autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    return name


def drop_schemas(names: list[str]) -> None:
    import psycopg

    if not names:
        return
    with psycopg.connect(admin_url(), autocommit=True) as con:
        con.execute("SET lock_timeout = 10000")
        for name in names:  # (one still in use by a handle a test left open is left)
            with suppress(psycopg.Error):
                con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@contextmanager
def store_urls() -> Iterator[Any]:
    """``new()``: the URL of a new, empty store; every one dropped at the end."""
    made: list[str] = []

    def new() -> str:
        name = new_schema()
        made.append(name)
        return in_schema(admin_url(), name)

    try:
        yield new
    finally:
        drop_schemas(made)


def admin(url: str) -> Any:
    """A plain ``psycopg`` connection to the store at ``url`` (autocommit)."""
    import psycopg

    return psycopg.connect(url, autocommit=True)
