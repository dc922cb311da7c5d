"""The ``eventlog`` command line (also ``python -m eventlog``).

Built on ``click`` (commands, options, help) and ``rich`` (tables, colour, progress),
over the same public :class:`~eventlog.Store` API a program uses.  Every read
command takes ``--json`` for scripts; colour is off when the output is not a
terminal (and with ``NO_COLOR``).  Bad paths, unknown sessions and damaged files get
one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import render
from .chunks import KEY_BYTES
from .errors import EventLogError, KeyMismatchError
from .store import Store
from .store import open as open_store

if TYPE_CHECKING:
    from .importers import Limits

F = TypeVar("F", bound=Callable[..., Any])


def _out() -> Console:
    # Not a terminal: no colour (rich's own check) and no width to crop tables to.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)


def _fail(message: str) -> None:
    click.echo(f"eventlog: {message}", err=True)
    sys.exit(1)


def _handled(fn: F) -> F:
    """Turn eventlog and OS errors into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EventLogError as e:
            _fail(str(e))
        except BrokenPipeError:  # pragma: no cover - output piped into a closed reader (before OSError: a subclass)
            sys.stderr.close()
            sys.exit(0)
        except OSError as e:
            _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
        return None

    return run  # type: ignore[return-value]


KEY_ENV = "EVENTLOG_CHUNK_KEY_FILE"


def _remember_key_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["chunk_key_file"] = value


key_option = click.option(
    "--chunk-key-file",
    type=click.Path(dir_okay=False),
    envvar=KEY_ENV,
    expose_value=False,
    callback=_remember_key_file,
    help=f"the store's chunk_key: {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits (also ${KEY_ENV})",
)


def _chunk_key() -> bytes | None:
    """The key named by ``--chunk-key-file`` (or ``$EVENTLOG_CHUNK_KEY_FILE``), if any."""
    path = click.get_current_context().meta.get("chunk_key_file")
    if not path:
        return None
    with open(path, "rb") as f:
        data = f.read(4 * KEY_BYTES)
    if len(data) == KEY_BYTES:
        return data
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        _fail(f"{path}: a chunk key file holds {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits")
    return key


@contextmanager
def _store(path: str, *, readonly: bool = True) -> Iterator[Store]:
    """An existing store (never create one by mistake from a typo), read-only unless
    the command writes: reading never changes the file, not even to upgrade it."""
    if path != ":memory:" and not os.path.isfile(path):
        _fail(f"no such store file: {path}")
    key = _chunk_key()
    try:
        store = open_store(path, chunk_key=key, readonly=readonly and path != ":memory:")
    except KeyMismatchError as e:
        _fail(f"{e} (give it with --chunk-key-file or ${KEY_ENV})" if key is None else str(e))
        raise
    with store:
        yield store


def _json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()} if len(value) <= 64 else {"$bytes": f"{len(value)} bytes"}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _table(*columns: str) -> Table:
    return Table(*columns, box=None, header_style="bold", pad_edge=False)


def _print(renderable: Any) -> None:
    """Print a table: as is on a terminal; into a pipe, without colour, cropping or
    trailing spaces."""
    out = _out()
    if sys.stdout.isatty():
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable JSON output")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventlog")
def main() -> None:
    """A durable, event-sourced store for AI-agent sessions."""


# ----------------------------------------------------------------------------- demo


@main.command()
@click.option("--path", default="eventlog-demo.db", show_default=True, help="database file to write")
@click.option("--entries", default=600, show_default=True, help="entries in the demo session")
@_handled
def demo(path: str, entries: int) -> None:
    """Persist a session larger than the 2 MB cell limit, then replay it."""
    from .demo import run

    sys.exit(0 if run(path, entries=entries) else 1)


# ----------------------------------------------------------------------------- reading


@main.command()
@click.argument("path")
@click.option("--tree", is_flag=True, help="show sessions nested under their parents")
@json_option
@key_option
@_handled
def sessions(path: str, tree: bool, as_json: bool) -> None:
    """List sessions: id, parent, entries, events, bytes, last update."""
    with _store(path) as store:
        rows: list[dict[str, Any]] = []
        for name in store.sessions():
            info = store.info(name)
            data = store.load(name) or {}
            rows.append(
                {
                    "id": name,
                    "parent": info.parent_id,
                    "entries": len(render.entries_of(data)),
                    "events": info.seq,
                    "bytes": info.stored_bytes,
                    "updated": _time(info.updated_ms),
                }
            )
    if as_json:
        _json(rows)
        return
    names = {r["id"] for r in rows}
    order, depth = rows, dict.fromkeys(names, 0)
    if tree:
        kids: dict[str | None, list[dict[str, Any]]] = {}
        for r in rows:
            kids.setdefault(r["parent"] if r["parent"] in names else None, []).append(r)
        order, placed = [], set()

        def walk(parent: str | None, level: int) -> None:
            for r in kids.get(parent, []):
                if r["id"] not in placed:
                    placed.add(r["id"])
                    depth[r["id"]] = level
                    order.append(r)
                    walk(r["id"], level + 1)

        walk(None, 0)
        order += [r for r in rows if r["id"] not in placed]  # parent links that loop
    table = _table("session", "parent", "entries", "events", "bytes", "updated")
    for r in order:
        table.add_row(
            escape("  " * depth[r["id"]] + r["id"]),
            escape(r["parent"] or ""),
            str(r["entries"]),
            str(r["events"]),
            render.human_bytes(r["bytes"]),
            r["updated"],
        )
    _print(table)


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("--since", default=0, show_default=True, help="start after this sequence number")
@json_option
@key_option
@_handled
def log(path: str, session: str, since: int, as_json: bool) -> None:
    """The event timeline: sequence, time, kind, entry type, size, summary."""
    with _store(path) as store:
        rows: list[dict[str, Any]] = [
            {
                "seq": event.seq,
                "time": _time(event.timestamp_ms),
                "kind": line.kind,
                "index": line.index,
                "entry": line.entry_kind,
                "size": line.size,
                "summary": line.summary,
            }
            for event in store.events(session, since=since)
            for line in render.event_lines(event)
        ]
    if as_json:
        _json(rows)
        return
    table = _table("seq", "time", "kind", "entry", "size", "summary")
    for r in rows:
        table.add_row(
            str(r["seq"]),
            r["time"],
            r["kind"],
            escape(r["entry"]),
            render.human_bytes(r["size"]) if r["size"] else "",
            escape(r["summary"]),
        )
    _print(table)


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("--at", type=int, default=None, help="sequence number (default: the latest)")
@json_option
@key_option
@_handled
def show(path: str, session: str, at: int | None, as_json: bool) -> None:
    """The session as it was at a point: fields and entries."""
    with _store(path) as store:
        data = store.fold(session, at=at)
        seq = at if at is not None else store.seq(session)
    if as_json:
        _json(data)
        return
    out = _out()
    out.print(f"[bold]{escape(session)}[/bold] at seq {seq}")
    for key, value in data.items():
        if key == "entries" and type(value) is list:
            out.print(f"  entries: {len(value)}")
        else:
            out.print(f"  {escape(key)}: {escape(render.words(json.dumps(value, default=_json_default), 100))}")
    leaf = data.get("leafId")
    on_path = {id(e) for e in render.active_path(data)}
    table = _table("#", "id", "parent", "entry", "size", "summary")
    for i, entry in enumerate(render.entries_of(data)):
        ident = str(entry.get("id", "")) if type(entry) is dict else ""
        parent = str(entry.get("parentId") or "") if type(entry) is dict else ""
        mark = "" if id(entry) in on_path else "[dim]"
        table.add_row(
            str(i),
            escape(ident) + (" ◀ leaf" if leaf is not None and ident == leaf else ""),
            escape(parent),
            mark + escape(render.entry_kind(entry)),
            render.human_bytes(render.size_of(entry)),
            mark + escape(render.entry_summary(entry)),
        )
    _print(table)


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("--from", "start", type=int, default=0, show_default=True, help="show what came after this seq")
@click.option("--to", "end", type=int, default=None, help="the session as of this seq (default: the latest)")
@click.option("--full", is_flag=True, help="do not shorten long text")
@json_option
@key_option
@_handled
def replay(path: str, session: str, start: int, end: int | None, full: bool, as_json: bool) -> None:
    """The conversation on the active path as a transcript, tool calls included."""
    with _store(path) as store:
        data = store.fold(session, at=end)
        before = store.fold(session, at=start) if start else {}
    known = {json.dumps(e, sort_keys=True, default=repr) for e in render.entries_of(before)}
    path_entries = [e for e in render.active_path(data) if json.dumps(e, sort_keys=True, default=repr) not in known]
    lines = render.transcript(path_entries, full=full)
    if as_json:
        _json([{"speaker": s, "text": t} for s, t in lines])
        return
    out = _out()
    styles = {"user": "bold cyan", "assistant": "bold green"}
    for speaker, text in lines:
        style = styles.get(speaker.split(" ")[0], "bold yellow")
        out.print(f"[{style}]{escape(speaker)}[/{style}]: {escape(text)}")


@main.command()
@click.argument("path")
@click.argument("session")
@click.argument("a", type=int)
@click.argument("b", type=int)
@json_option
@key_option
@_handled
def diff(path: str, session: str, a: int, b: int, as_json: bool) -> None:
    """What changed in the session between seq A and seq B."""
    with _store(path) as store:
        changes = render.diff_sessions(store.fold(session, at=a), store.fold(session, at=b))
    if as_json:
        _json([{"kind": c.kind, "key": c.key, "summary": c.summary} for c in changes])
        return
    out = _out()
    if not changes:
        out.print("no change")
    marks = {"added": "[green]+[/green]", "removed": "[red]-[/red]", "changed": "[yellow]~[/yellow]"}
    for c in changes:
        out.print(f"{marks.get(c.kind, '[blue]=[/blue]')} {c.kind} {escape(c.key)}: {escape(c.summary)}")


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("--at", type=int, default=None, help="sequence number (default: the latest)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="file to write (default: stdout)")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="accepted for symmetry: the output is JSON")
@key_option
@_handled
def export(path: str, session: str, at: int | None, output: str | None, as_json: bool) -> None:
    """The session as JSON, images inline, identical to load()."""
    with _store(path) as store:
        data = store.fold(session, at=at)
    try:
        text = json.dumps(data, ensure_ascii=False)
    except TypeError:
        _fail("the session holds bytes values, which JSON cannot carry")
    if output is None:
        click.echo(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)


@main.command()
@click.argument("path")
@json_option
@key_option
@_handled
def stats(path: str, as_json: bool) -> None:
    """Bytes by table, chunks, dedup, largest cell, snapshot coverage."""
    with _store(path) as store:
        st = store.stats()
    chunks = st["chunks"]
    st["dedup_ratio"] = round(chunks["referenced_raw_bytes"] / chunks["raw_bytes"], 3) if chunks["raw_bytes"] else 1.0
    if as_json:
        _json(st)
        return
    table = _table("table", "rows", "bytes", "largest cell")
    for name in ("events", "snapshots", "chunks"):
        t = st[name]
        table.add_row(name, str(t["rows"]), render.human_bytes(t["bytes"]), render.human_bytes(t["largest"]))
    _print(table)
    out = _out()
    total, worst = st["snapshots"]["events_after_newest"]
    out.print(
        f"sessions: {st['sessions']['count']}   file: {render.human_bytes(st['file_bytes'])}   "
        f"largest cell: {render.human_bytes(st['largest_cell'])} (budget {render.human_bytes(st['max_cell_bytes'])})"
    )
    out.print(
        f"chunks: {chunks['rows']}, {render.human_bytes(chunks['raw_bytes'])} distinct content, "
        f"{render.human_bytes(chunks['referenced_raw_bytes'])} as used: dedup {st['dedup_ratio']}x; "
        f"addresses: {st['chunk_addresses']}"
    )
    out.print(f"snapshot coverage: loads replay {total} events in all, at most {worst} for one session")


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="the HTML file to write")
@key_option
@_handled
def view(path: str, session: str, output: str) -> None:
    """Write one self-contained HTML page that replays the session, with a timeline
    slider (open it in any browser; no network needed)."""
    from .viewer import page

    with _store(path) as store:
        text = page(store, session)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"wrote {output} ({render.human_bytes(len(text.encode('utf-8')))})")


def _size_option(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A size in bytes, or with K, M or G (KiB, MiB, GiB)."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    shift = {"K": 10, "M": 20, "G": 30}.get(text[-1:], 0)
    try:
        n = int(text[:-1] if shift else text) << shift
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size (bytes, or a number with K, M or G)") from None
    if n < 1:
        raise click.BadParameter("must be at least 1 byte")
    return n


class _ImportTarget:
    """The store file and its companions as they were before the import, so that a
    store the import created and left empty is removed, and nothing else ever is."""

    def __init__(self, path: str) -> None:
        self.paths = [path] + ([path + s for s in ("-wal", "-shm", "-journal")] if path != ":memory:" else [])
        self.before = {p for p in self.paths if os.path.lexists(p)}
        self.new = path != ":memory:" and path not in self.before
        self.made: dict[str, tuple[int, int]] = {}

    def note_made(self) -> None:
        """Record the identity of the files the open just created."""
        for p in self.paths:
            if p not in self.before:
                with contextlib.suppress(OSError):
                    st = os.lstat(p)
                    self.made[p] = (st.st_dev, st.st_ino)

    def remove_made(self) -> None:
        """Remove the files this import created (the same files, by identity)."""
        self.note_made()  # companions that appeared later (-wal, -shm) are the store's too
        for p, ident in self.made.items():
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                if (st.st_dev, st.st_ino) == ident:
                    os.unlink(p)


class _ImportProgress:
    """Progress on stderr, when it is a terminal: sessions, bytes and an ETA, also
    within one big file.  Notices (a FIFO waited on) go to stderr in any case."""

    def __init__(self, files: tuple[str, ...]) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.files = files
        self.sizes: list[int | None] = []
        for name in files:
            try:
                st = os.stat(name) if name != "-" else None
                self.sizes.append(st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None)
            except OSError:
                self.sizes.append(0)
        total = None if None in self.sizes else sum(s or 0 for s in self.sizes)
        self.live = sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not self.live,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.progress.add_task("importing", total=total)
        self.done_bytes = 0
        self.sessions = 0
        self.file = ""

    def __enter__(self) -> _ImportProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start_file(self, index: int) -> None:
        name = os.path.basename(self.files[index]) or self.files[index]
        self.file = f"{index + 1}/{len(self.files)} {name[:40]}"
        self.progress.update(self.task, completed=self.done_bytes, description=self._description())

    def _description(self) -> str:
        return f"{self.file}: {self.sessions} session{'' if self.sessions == 1 else 's'}"

    def bytes(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def session(self) -> None:
        self.sessions += 1
        self.progress.update(self.task, description=self._description())

    def end_file(self, index: int, read: int) -> None:
        size = self.sizes[index]
        self.done_bytes += size if size is not None else read
        self.progress.update(self.task, completed=self.done_bytes)

    def line(self, text: str) -> None:
        """A report line on stdout (above the progress bar when both are the terminal)."""
        if self.live and sys.stdout.isatty():
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text)

    def notice(self, text: str) -> None:
        if self.live:
            self.progress.console.print(f"eventlog: {text}", markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(f"eventlog: {text}", err=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _ImportReport:
    """What happened to every file and session, printed as it happens (unless
    ``--json``, which prints it all at the end)."""

    def __init__(self, path: str, as_json: bool, progress: _ImportProgress) -> None:
        self.path = path
        self.as_json = as_json
        self.progress = progress
        self.files: list[dict[str, Any]] = []
        self.counts = dict.fromkeys(("imported", "replaced", "skipped", "failed"), 0)
        self.failures: list[str] = []
        self.stopped = self.interrupted = False

    def _line(self, text: str) -> None:
        if not self.as_json:
            self.progress.line(text)

    def file(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": name, "format": None, "status": "ok", "error": None, "sessions": []}
        self.files.append(entry)
        return entry

    def opened(self, entry: dict[str, Any], fmt: str) -> None:
        entry["format"] = fmt
        self._line(f"{entry['file']} ({fmt})")

    def file_failed(self, entry: dict[str, Any], error: str) -> None:
        entry["status"], entry["error"] = "failed", error
        self.counts["failed"] += 1
        self.failures.append(error)
        if entry["format"] is None:
            self._line(entry["file"])
        self._line(f"  failed    {error}")

    def session(self, entry: dict[str, Any], status: str, session: str | None, *, parent: str | None = None,
                entries: int | None = None, size: int = 0, error: str | None = None,
                note: str | None = None) -> None:  # fmt: skip
        entry["sessions"].append({"session": session, "status": status, "parent": parent, "entries": entries,
                                  "bytes": size, "error": error, "note": note})  # fmt: skip
        self.counts[status] += 1
        if status == "failed":
            entry["status"] = "failed"
            self.failures.append(error or "")
            self._line(f"  failed    {error}")
            return
        self.progress.session()
        if status == "skipped":
            self._line(f"  skipped   {session}: already in the store (--replace saves over it)")
            return
        what = f"{entries} {'entry' if entries == 1 else 'entries'}"
        if parent:
            what += f", child of {parent}"
        if note:
            what += f" (parent not linked: {note})" if not parent else f" ({note})"
        self._line(f"  {status:<9} {session}: {what}")

    def finish(self) -> int:
        c = self.counts
        failed_files = sum(1 for f in self.files if f["status"] == "failed")
        if self.as_json:
            _json(
                {
                    "store": self.path,
                    "files": self.files,
                    "summary": {**c, "files": len(self.files), "files_failed": failed_files},
                    "stopped": self.stopped,
                    "interrupted": self.interrupted,
                }
            )
        else:
            imported = c["imported"] + c["replaced"]
            text = f"imported {_plural(imported, 'session')}"
            if c["replaced"]:
                text += f" ({c['replaced']} replaced)"
            text += f", skipped {c['skipped']}, failed {c['failed']}, from {_plural(len(self.files), 'file')}"
            if failed_files:
                text += f" ({failed_files} with failures)"
            text += f" into {self.path}"
            if self.interrupted:
                text += " (interrupted)"
            elif self.stopped:
                text += " (stopped at the first failure; --keep-going goes on past it)"
            click.echo(text)
        if self.interrupted:
            click.echo("eventlog: import interrupted", err=True)
            return 130
        if self.failures:
            first = self.failures[0]
            many = len(self.failures) > 1
            click.echo(f"eventlog: {len(self.failures)} failures, the first: {first}" if many else f"eventlog: {first}",
                       err=True)  # fmt: skip
            return 1
        return 0


@main.command(name="import")
@click.argument("path")
@click.argument("files", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="save over sessions that already exist (default: skip them)")
@click.option("--keep-going", is_flag=True, help="go on after a file or session that fails (default: stop there)")
@click.option("--id", "session_id", default=None, metavar="SESSION",
              help="the session id of a session JSON read from a pipe (one FILE)")  # fmt: skip
@click.option("--max-session-size", default="256M", show_default=True, callback=_size_option, metavar="SIZE",
              help="largest session to read, in bytes or with K, M, G")  # fmt: skip
@click.option("--allow-nan", is_flag=True, help="read NaN and Infinity (not JSON) as floats, not as an error")
@json_option
@key_option
@_handled
def import_(path: str, files: tuple[str, ...], replace: bool, keep_going: bool, session_id: str | None,
            max_session_size: int, allow_nan: bool, as_json: bool) -> None:  # fmt: skip
    """Import session JSON files, Flue databases (0.11.0 and 0.11.1) and pi JSONL
    files into the store at PATH (created if missing).

    Each session is saved in one transaction; sessions already in the store are
    skipped unless --replace.  A FILE may be a pipe or FIFO (- for standard input).
    Reports every file and session on stdout and ends with a summary; progress goes
    to stderr.  Exit status: 0 if nothing failed, 1 if a file or session failed
    (the import stops at the first unless --keep-going), 130 if interrupted.  A
    store this command created is removed again if nothing was imported into it.
    """
    from .importers import Limits

    if session_id is not None and len(files) != 1:
        raise click.UsageError("--id names the session of one file: give one FILE")
    limits = Limits(max_session_bytes=max_session_size, allow_nan=allow_nan)
    target = _ImportTarget(path)
    key = _chunk_key()
    progress = _ImportProgress(files)
    report = _ImportReport(path, as_json, progress)
    try:
        store = open_store(path, chunk_key=key)
    except KeyboardInterrupt:
        target.remove_made()
        report.interrupted = True
        sys.exit(report.finish())
    except BaseException:
        target.remove_made()
        raise
    target.note_made()
    empty = False
    try:
        _import_files(store, files, limits, session_id, replace, keep_going, report, progress)
    finally:
        with contextlib.suppress(EventLogError):
            empty = report.counts["imported"] + report.counts["replaced"] == 0 and not store.sessions()
        store.close()
        if target.new and empty:
            target.remove_made()
    sys.exit(report.finish())


def _import_files(store: Store, files: tuple[str, ...], limits: Limits, session_id: str | None, replace: bool,
                  keep_going: bool, report: _ImportReport, progress: _ImportProgress) -> None:  # fmt: skip
    """Import ``files`` into ``store``, reporting each file and session; on Ctrl-C,
    record what the save under way did and return (the caller prints the summary)."""
    from .importers import Imported, ImportFormatError, open_file, pi_sessions

    current: tuple[dict[str, Any], Imported, int] | None = None
    try:
        pi_ids = pi_sessions(files)
        with progress:
            for index, name in enumerate(files):
                entry = report.file(name)
                progress.start_file(index)
                read = 0
                broke = False  # out of a file with more sessions, maybe
                try:
                    with open_file(name, limits=limits, session_id=session_id, pi_ids=pi_ids,
                                   on_wait=progress.notice, on_bytes=progress.bytes) as f:  # fmt: skip
                        report.opened(entry, f.format)
                        for item in f:
                            read += item.size
                            if not isinstance(item, Imported):
                                report.session(entry, "failed", item.session_id, error=str(item.error))
                                if not keep_going:
                                    broke = True
                                    break
                                continue
                            current = (entry, item, store.seq(item.session_id))
                            status, error = _save_imported(store, item, replace)
                            current = None
                            report.session(entry, status, item.session_id, parent=item.parent_id,
                                           entries=len(item.data["entries"]), size=item.size, error=error,
                                           note=item.note)  # fmt: skip
                            if status == "failed" and not keep_going:
                                broke = True
                                break
                except ImportFormatError as e:
                    report.file_failed(entry, str(e))
                progress.end_file(index, read)
                if entry["status"] == "failed" and not keep_going:
                    # "stopped" when something was left unread: other files, or
                    # other sessions of a Flue file (the others hold one each)
                    report.stopped = index + 1 < len(files) or (broke and str(entry["format"]).startswith("Flue"))
                    break
    except KeyboardInterrupt:
        report.interrupted = True
        if current is not None:  # the save under way either committed or rolled back: say which
            entry, item, before = current
            with contextlib.suppress(EventLogError):
                if store.seq(item.session_id) > before:
                    report.session(entry, "imported" if before == 0 else "replaced", item.session_id,
                                   parent=item.parent_id, entries=len(item.data["entries"]), size=item.size,
                                   note=item.note)  # fmt: skip
        if report.files and report.files[-1]["status"] == "ok":
            report.files[-1]["status"] = "interrupted"


def _save_imported(store: Store, item: Any, replace: bool) -> tuple[str, str | None]:
    """Save one imported session in one transaction: its status and what failed."""
    from .errors import ConflictError

    try:
        seq = store.save(item.session_id, item.data, parent_id=item.parent_id, expected_seq=None if replace else 0)
    except ConflictError:
        return "skipped", None
    except EventLogError as e:
        return "failed", f"{item.source}: session {item.session_id!r}: cannot store it: {e.message}"
    return ("imported" if seq == 1 else "replaced"), None


# ----------------------------------------------------------------------------- maintenance


@main.command()
@click.argument("path")
@json_option
@key_option
@_handled
def verify(path: str, as_json: bool) -> None:
    """Check a store; exit 1 if anything is wrong."""
    with _store(path) as store:
        report = store.verify()
    if as_json:
        _json(
            {
                "ok": report.ok,
                "problems": [{"what": p.what, "session": p.session_id, "seq": p.seq} for p in report.problems],
                "sessions": report.sessions,
                "events": report.events,
                "snapshots": report.snapshots,
                "chunks": report.chunks,
                "garbage_chunks": report.garbage_chunks,
            }
        )
    else:
        for problem in report.problems:
            click.echo(str(problem))
        click.echo(
            f"{'ok' if report.ok else 'PROBLEMS: ' + str(len(report.problems))}: {report.sessions} sessions, "
            f"{report.events} events, {report.snapshots} snapshots, {report.chunks} chunks "
            f"({report.garbage_chunks} unreferenced, freed by compact)"
        )
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("path")
@click.option("--retain", type=click.IntRange(min=0), default=None, help="keep only the last N events of each session")
@click.option("--vacuum", is_flag=True, help="also VACUUM, shrinking the file (slow)")
@key_option
@_handled
def compact(path: str, retain: int | None, vacuum: bool) -> None:
    """Remove deleted sessions and free unreferenced chunks."""
    with _store(path, readonly=False) as store:
        c = store.compact(retain=retain, vacuum=vacuum)
    for skipped in c.skipped:
        click.echo(f"history kept (cannot be folded): {skipped}")
    click.echo(
        f"removed {c.sessions_removed} deleted sessions, {c.events_removed} events, "
        f"{c.snapshots_removed} snapshots; freed {c.chunks_freed} chunks ({c.bytes_freed} bytes); "
        f"{c.sessions_truncated} histories truncated; "
        + ("WAL truncated" if c.checkpointed else "WAL not truncated (another reader holds it)")
        + ("; vacuumed" if c.vacuumed else "")
    )


@main.command()
@click.argument("path")
@click.argument("session")
@key_option
@_handled
def delete(path: str, session: str) -> None:
    """Delete a session and its whole tree of sub-agent sessions."""
    with _store(path, readonly=False) as store:
        gone = store.delete(session)
    if not gone:
        _fail(f"no such session: {session!r}")
    click.echo(f"deleted {len(gone)} sessions: {', '.join(gone)} (run compact to reclaim space)")


if __name__ == "__main__":  # pragma: no cover
    main()
