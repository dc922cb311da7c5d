"""Waiting for commits to a PostgreSQL store (:meth:`eventlog.backend.Backend.watcher`):
a connection of the watcher's own ``LISTEN``\\ s on the store's channel, on which
every write sends a wake-up after it commits (``NOTIFY``, no payload: the watcher
reads from where it was, so what the notification would say is never trusted).
The connection is named (``application_name``, see
:func:`~eventlog.backends.postgres.connection.watcher_name`): writers look for it,
at most four times a second, and send no wake-ups while nobody watches.
A notification can be lost (the connection dropped and made again, a wake-up that
failed to send): the watcher also wakes every :data:`FALLBACK` seconds."""

from __future__ import annotations

import hashlib
import logging
from contextlib import suppress
from typing import Any

from .connection import Connection, watcher_name, watcher_started

_log = logging.getLogger("eventlog.postgres")

#: Seconds after which a watcher wakes without a notification.
FALLBACK = 1.0


def channel_of(schema: str) -> str:
    """The notification channel of the store in ``schema`` (channels are shared by
    the whole database: one per schema keeps stores apart)."""
    return "eventlog_" + hashlib.blake2s(schema.encode(), digest_size=8).hexdigest()


class PostgresWatcher:
    """``LISTEN``\\ s on ``channel`` through a new connection to ``url``."""

    def __init__(self, url: str, channel: str, busy_timeout: float) -> None:
        self._url = url
        self._channel = channel
        self._busy_timeout = busy_timeout
        self._db: Connection | None = None
        self._listen()

    def _listen(self) -> None:
        db = Connection(self._url, synchronous="FULL", busy_timeout=self._busy_timeout, readonly=True)
        try:
            # (named so that writers see the channel is watched: they notify only then)
            db.live().execute("SELECT set_config('application_name', %s, false)", (watcher_name(self._channel),))
            db.live().execute(f"LISTEN {self._channel}")
        except Exception:
            db.close()
            raise
        self._db = db
        watcher_started()

    def wait(self, timeout: float) -> bool:
        timeout = max(min(timeout, FALLBACK), 0.0)
        try:
            con: Any = None if self._db is None else self._db.raw
            if con is None or con.closed or con.broken:  # (a new connection listens to nothing yet)
                if self._db is not None:
                    self._db.close()
                self._db = None
                self._listen()
                return True
            got = False
            for _ in con.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # several commits: one wake-up
                for _ in con.notifies(timeout=0):
                    pass
            return got
        except Exception as e:  # the connection dropped: listen again at the next wait, and look now
            _log.debug("watcher connection lost (%s); listening again", e)
            if self._db is not None:
                self._db.close()
            self._db = None
            return True

    def close(self) -> None:
        if self._db is not None:
            with suppress(Exception):
                self._db.close()
            self._db = None
