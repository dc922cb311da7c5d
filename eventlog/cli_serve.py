"""``eventlog serve``: the local web view (:mod:`eventlog.serve`).  Registered on
:data:`eventlog.cli.main` when that module loads."""

from __future__ import annotations

import contextlib

import click

from .cli import _fail, _handled, _store, format_option, key_option, main
from .serve import DEFAULT_PORT, HOST, LOCAL_HOSTS, make_server


@main.command()
@click.argument("path")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="the port to listen on (0: any free one; the address is printed)")  # fmt: skip
@click.option("--host", default=HOST, show_default=True,
              help=f"only {HOST} (or localhost): the pages show every session to whoever can connect")  # fmt: skip
@format_option
@key_option
@_handled
def serve(path: str, port: int, host: str, fmt: str) -> None:
    """Serve a live web view of the sessions, on this machine only.

    PATH is a store file or a PostgreSQL URL, opened read-only.  The first page
    lists the sessions as a tree of parents and sub-agents, with a filter and a
    text search; each session opens in the viewer ("view"), which follows it
    live, links its parent and sub-agents and searches within it.  Listens on
    127.0.0.1 only (from another machine: an SSH tunnel).  Ctrl-C stops it.
    """
    if host not in LOCAL_HOSTS:
        _fail(f"serve listens on {HOST} only, not {host!r}: the pages show every session to whoever can connect "
              "(from another machine, use an SSH tunnel)")  # fmt: skip
    with _store(path) as store:
        try:
            server = make_server(store, port, fmt=fmt)
        except OSError as e:
            _fail(f"cannot listen on {HOST}:{port}: {e.strerror or e}")
        with server:
            click.echo(f"serving the sessions at {server.url} (Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
            server.stopping.set()
    click.echo("stopped", err=True)
