"""``eventlog serve``: a local web view of a store's sessions, live.

A small HTTP server (the standard library's :class:`~http.server.ThreadingHTTPServer`,
no other dependency) on 127.0.0.1 only, over one read-only store handle (shared
by the request threads: a :class:`~eventlog.Store` serialises its calls).  Pages:

``/``
    The sessions page: every session as a tree of parents and their sub-agent
    sessions, a box that filters it by id, and a text search of the sessions'
    conversations (:func:`eventlog.search.grep`); it reloads the list every few
    seconds.
``/s/<id>``
    The viewer of one session (:func:`eventlog.viewer.page`, served: links to
    the parent and sub-agent sessions, and live: a new event shows within a
    second or so).  Ids may hold any character: they are percent-encoded
    (``encodeURIComponent``), ``/`` included.

JSON: ``/api/sessions``, ``/api/grep?q=TEXT``, ``/api/s/<id>/data`` (the
viewer's data) and ``/api/s/<id>/wait?seq=N``, a long poll that answers as soon
as the session's head differs from ``N`` (or it is deleted: ``{"gone": true}``),
else after :data:`WAIT_SECONDS` with the same ``seq``.  The page asks again after
each answer and retries after a failed or lost request, so a missed change costs
one poll, never a stalled page.  The server polls the session's head every
:data:`POLL_SECONDS` (a read of one row), which works for SQLite and PostgreSQL
and across processes alike.

An unknown or deleted session, or an address that is no page, gets a 404 page;
any other error a 500 page naming it in one line, never a traceback.  Requests
whose ``Host`` is not the server's own address are refused (a page of another
site cannot read the sessions through DNS rebinding).  Nothing here installs
signal handlers: :func:`serve` runs until the KeyboardInterrupt of Ctrl-C ends
:meth:`~socketserver.BaseServer.serve_forever`.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

from .dialects import FORMATS
from .errors import EventLogError, InvalidValueError, NotFoundError
from .search import grep
from .store import Store
from .viewer import page, page_data, to_json

logger = logging.getLogger(__name__)

#: The address the server listens on: this machine only.
HOST = "127.0.0.1"
#: Names of :data:`HOST` that ``--host`` accepts.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
#: The default port.
DEFAULT_PORT = 8765
#: How long ``/api/s/<id>/wait`` holds a request without news.
WAIT_SECONDS = 15.0
#: How often a waiting request reads the session's head.
POLL_SECONDS = 0.2
#: At most this many hits of a text search are returned.
MAX_HITS = 200

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'")  # fmt: skip


class Server(ThreadingHTTPServer):
    """The server: ``store`` (read by every request), ``fmt`` (the dialect the
    conversations are read in, see :data:`eventlog.dialects.FORMATS`), ``url``."""

    daemon_threads = True

    def __init__(self, store: Store, port: int = DEFAULT_PORT, *, fmt: str = "auto") -> None:
        self.store, self.fmt = store, fmt
        #: Set when the server stops: waiting requests answer at once.
        self.stopping = threading.Event()
        super().__init__((HOST, port), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def server_close(self) -> None:
        self.stopping.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The handler answers every error itself; what is left is a client gone away.
        logger.debug("request from %s ended early", client_address, exc_info=True)


def make_server(store: Store, port: int = DEFAULT_PORT, *, host: str = HOST, fmt: str = "auto") -> Server:
    """A :class:`Server` of ``store`` listening on 127.0.0.1 at ``port`` (0: any
    free port; see :attr:`Server.url`).  ``host`` must name 127.0.0.1 (``localhost``
    does): the pages show the sessions to whoever can connect, so another address
    raises :class:`~eventlog.InvalidValueError`.  Raises :class:`OSError` when the
    port cannot be had."""
    if host not in LOCAL_HOSTS:
        raise InvalidValueError(
            f"eventlog serve listens on {HOST} only, not {host!r}: the pages show every session to whoever "
            "can connect (reach it from elsewhere through an SSH tunnel)"
        )
    if type(port) is not int or not 0 <= port <= 65535:
        raise InvalidValueError(f"port must be an int from 0 to 65535, not {port!r}")
    if fmt not in FORMATS:
        raise InvalidValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    return Server(store, port, fmt=fmt)


def serve(store: Store, port: int = DEFAULT_PORT, *, fmt: str = "auto") -> None:
    """Serve ``store`` until interrupted (KeyboardInterrupt, which propagates)."""
    with make_server(store, port, fmt=fmt) as server:
        try:
            server.serve_forever()
        finally:
            server.stopping.set()


# ----------------------------------------------------------------------------- requests


class _Missing(Exception):
    """Answered with a 404 page."""


def sessions_data(store: Store) -> list[dict[str, Any]]:
    """Every session as the sessions page reads it."""
    return [
        {"id": i.session_id, "parent": i.parent_id, "seq": i.seq, "entries": i.entries, "created_ms": i.created_ms,
         "updated_ms": i.updated_ms, "bytes": i.stored_bytes}
        for i in store.session_infos() if i.seq > 0
    ]  # fmt: skip


def _template(name: str, fill: dict[str, str]) -> str:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return re.sub(r"\{\{[A-Z]+\}\}", lambda m: fill.get(m.group(0), m.group(0)), text)


def _error_page(status: int, title: str, message: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{status} {html.escape(title)} · eventlog</title>"
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:40px;color:#1d2330}</style></head>"
        f'<body data-status="{status}"><h1>{html.escape(title)}</h1><p id="message">{html.escape(message)}</p>'
        '<p><a href="/">all sessions</a></p></body></html>'
    )


class Handler(BaseHTTPRequestHandler):
    """One request; see the module docstring for the routes."""

    server: Server
    server_version = "eventlog"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        api = path.startswith("/api/")
        try:
            if not self._host_ok():
                self._send(403, "text/plain; charset=utf-8", b"this server answers requests to its own address only")
                return
            self._route(path, query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except (_Missing, NotFoundError, InvalidValueError) as e:
            self._fail(404, "not found", str(e), api)
        except EventLogError as e:
            self._fail(500, "cannot read the store", str(e), api)
        except Exception as e:
            logger.warning("eventlog serve: %s %s: %s: %s", self.command, path, type(e).__name__, e)
            self._fail(500, "internal error", f"{type(e).__name__}: {e}", api)

    def _host_ok(self) -> bool:
        host = self.headers.get("Host", "")
        return host in {f"{name}:{self.server.port}" for name in LOCAL_HOSTS}

    def _route(self, path: str, raw: str) -> None:
        store, fmt = self.server.store, self.server.fmt
        query = parse_qs(raw)
        if path == "/":
            self._html(_template("sessions.html", {"{{DATA}}": to_json(sessions_data(store))}))
        elif path == "/api/sessions":
            self._json(sessions_data(store))
        elif path == "/api/grep":
            self._json(self._grep(query))
        elif path == "/s" or path.startswith("/s/"):
            self._html(page(store, _session(path[3:], raw), fmt, served=True))
        elif path.startswith("/api/s/"):
            quoted, _, action = path[len("/api/s/") :].rpartition("/")
            session = _session(quoted, raw)
            if action == "data":
                data = page_data(store, session, fmt)
                data["served"] = True
                self._json(data)
            elif action == "wait":
                self._json(self._wait(session, query))
            else:
                raise _Missing(f"no such page: {path}")
        else:
            raise _Missing(f"no such page: {path}")

    def _grep(self, query: dict[str, list[str]]) -> dict[str, Any]:
        text = query.get("q", [""])[0]
        if not text.strip():
            return {"hits": [], "more": False}
        hits: list[dict[str, Any]] = []
        for hit in grep(self.server.store, re.compile(re.escape(text), re.IGNORECASE), fmt=self.server.fmt):
            if len(hits) == MAX_HITS:
                return {"hits": hits, "more": True}
            hits.append(hit.data())
        return {"hits": hits, "more": False}

    def _wait(self, session: str, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            known = int(query.get("seq", ["0"])[0])
        except ValueError:
            raise _Missing("seq must be a number") from None
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                seq = self.server.store.info(session).seq
            except NotFoundError:
                return {"seq": None, "gone": True}
            if seq != known or time.monotonic() >= deadline or self.server.stopping.wait(POLL_SECONDS):
                return {"seq": seq, "gone": False}

    def _fail(self, status: int, title: str, message: str, api: bool) -> None:
        try:
            if api:
                self._send(status, "application/json", json.dumps({"error": message}).encode("utf-8"))
            else:
                self._send(status, "text/html; charset=utf-8", _error_page(status, title, message).encode("utf-8"))
        except (ConnectionError, TimeoutError):  # the client went away
            self.close_connection = True

    def _html(self, text: str) -> None:
        self._send(200, "text/html; charset=utf-8", text.encode("utf-8"))

    def _json(self, data: Any) -> None:
        self._send(200, "application/json", to_json(data).encode("utf-8"))

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)


def _session(quoted: str, raw_query: str) -> str:
    """The session id in a path segment (percent-encoded UTF-8), or, with none
    there, in the query's ``id`` (how the pages name ``.`` and ``..``, which a
    browser would resolve away as dot segments of the path)."""
    if not quoted:
        quoted = next((p[3:] for p in raw_query.split("&") if p.startswith("id=")), "")
    try:
        session = unquote(quoted, errors="strict")
    except UnicodeDecodeError:
        raise _Missing("not a session id: the address is not percent-encoded UTF-8") from None
    if not session:
        raise _Missing("no session named in the address")
    return session


__all__ = ["DEFAULT_PORT", "HOST", "Server", "make_server", "serve", "sessions_data"]
