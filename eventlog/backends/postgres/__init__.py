"""The PostgreSQL backend: a store in a PostgreSQL database, shared by processes on
several machines (``eventlog.open("postgresql://...")``; needs the ``postgres``
extra: ``pip install 'eventlog[postgres]'``)."""

from .backend import PostgresBackend
from .connection import SCHEMES, is_url, redacted

__all__ = ["SCHEMES", "PostgresBackend", "is_url", "redacted"]
