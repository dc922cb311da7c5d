"""The ``eventlog`` command line (also ``python -m eventlog``).

Built on ``click`` (commands, options, help) and ``rich`` (tables, colour, progress),
over the same public :class:`~eventlog.Store` API a program uses.  Every read
command takes ``--json`` for scripts: data (values as stored, strict JSON), never
display strings; colour is off when the output is not a terminal (and with
``NO_COLOR``).  Long operations show progress on stderr, and only when it is a
terminal, so output can be piped.  Bad paths, unknown sessions and damaged files get
one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import backends, dialects, render
from .chunks import KEY_BYTES
from .dialects import FORMATS
from .errors import EventLogError, KeyMismatchError, NotFoundError
from .progress import Progress
from .store import SessionInfo, Store
from .store import open as open_store

if TYPE_CHECKING:
    from .importers import Limits

F = TypeVar("F", bound=Callable[..., Any])


def _out() -> Console:
    # Not a terminal: no colour (rich's own check) and no width to crop tables to.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)


def _fail(message: str) -> NoReturn:
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
    return _read_key(click.get_current_context().meta.get("chunk_key_file"))


def _read_key(path: str | None) -> bytes | None:
    """The chunk key in the file at ``path`` (``None``: no key)."""
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


def _check_path(path: str) -> None:
    """One line and exit status 1 unless ``path`` is a file that can be a store (the
    store itself says if it is not one)."""
    if backends.not_files(path):
        return
    if not os.path.exists(path):
        _fail(f"no such store file: {path}")
    if os.path.isdir(path):
        _fail(f"{path} is a directory, not a store file")
    if not os.path.isfile(path):
        _fail(f"{path} is not a regular file (a device, pipe or socket), not a store file")


@contextmanager
def _store(path: str, *, readonly: bool = True) -> Iterator[Store]:
    """An existing store (never create one by mistake from a typo), read-only unless
    the command writes: reading never changes the file, not even to upgrade it."""
    _check_path(path)
    key = _chunk_key()
    try:
        store = open_store(path, chunk_key=key, readonly=readonly and not backends.in_memory(path))
    except KeyMismatchError as e:
        _fail(f"{e} (give it with --chunk-key-file or ${KEY_ENV})" if key is None else str(e))
        raise
    with store:
        yield store


def _json(value: Any, *, allow_nan: bool = False) -> None:
    """Print ``value`` as JSON: strict (a NaN or infinity fails, naming where it is,
    unless ``allow_nan``), bytes as ``{"$bytes": "<hex>"}``."""
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2, default=_json_default, allow_nan=allow_nan)
    except ValueError:
        _fail(_non_finite(value))
    click.echo(text)


def _json_rows(rows: Iterable[dict[str, Any]]) -> None:
    """Print a list as :func:`_json` does (the same text), encoding one row at a
    time rather than building every row first (for long lists of plain rows)."""
    out = sys.stdout
    parts: list[str] = []
    for row in rows:
        parts.append("  " + json.dumps(row, ensure_ascii=False, indent=2, allow_nan=False).replace("\n", "\n  "))
    if not parts:
        out.write("[]\n")
        return
    out.write("[\n")
    for i in range(0, len(parts), 2000):
        out.write(",\n".join(parts[i : i + 2000]) + (",\n" if i + 2000 < len(parts) else "\n"))
    out.write("]\n")
    out.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _find(value: Any, wanted: Callable[[Any], bool]) -> tuple[list[str | int], Any] | None:
    """The path to the first value (in JSON order) for which ``wanted`` is true, and
    that value; ``None`` when there is none.  Iterative: any depth."""
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, v = stack.pop()
        if wanted(v):
            return path, v
        if type(v) is dict:
            stack.extend(([*path, k], x) for k, x in reversed(v.items()))
        elif type(v) in (list, tuple):
            stack.extend(([*path, i], x) for i, x in reversed(list(enumerate(v))))
    return None


def _where(path: Sequence[str | int], session: Any = None) -> str:
    """A JSON path (``$.entries[3].message["a b"]``), and, for a path into a
    session's entries, the entry's index and id."""
    out = "$"
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if p.isidentifier() else f"[{json.dumps(p, ensure_ascii=False)}]"
    if session is not None and len(path) > 1 and path[0] == "entries" and type(path[1]) is int:
        entry = session["entries"][path[1]]
        ident = entry.get("id") if type(entry) is dict else None
        out += f" (entry {path[1]}" + (f", id {ident!r})" if type(ident) is str else ")")
    return out


def _non_finite(value: Any, session: Any = None) -> str:
    found = _find(value, lambda v: type(v) is float and not math.isfinite(v))
    where, v = (_where(found[0], session), found[1]) if found else ("$", "?")
    return f"{where} is {v}, which strict JSON cannot carry (--allow-nan writes it as NaN or Infinity)"


_EPOCH = datetime(1970, 1, 1)  # naive: the times are UTC, as the Z after them says


def _time(ms: int) -> str:
    """A Unix time in ms as UTC text; one outside the calendar (years 1 to 9999) as
    the number."""
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(" ", "milliseconds") + "Z"
    except (OverflowError, ValueError, TypeError):
        return f"{ms} ms (out of range)"


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


@contextmanager
def _progress() -> Iterator[Progress | None]:
    """A progress callback (see :mod:`eventlog.progress`) drawing bars on stderr
    while it is a terminal (``None`` otherwise); the bars go when it ends."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bars

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    with Bars(*columns, console=Console(stderr=True), transient=True) as bars:
        tasks: dict[str, Any] = {}

        def tell(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield tell


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so one value stays on one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _write_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    """Aligned columns, written as plain lines: the widths in one pass over the rows,
    then the lines in batches (a rich table of 100,000 rows takes minutes and
    hundreds of MB).  Numbers in the ``right`` columns are right-aligned."""
    widths = [cell_len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            n = len(cell) if cell.isascii() else cell_len(cell)
            if n > widths[i]:
                widths[i] = n
    last = len(header) - 1

    def line(row: Sequence[str]) -> str:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - (len(cell) if cell.isascii() else cell_len(cell)))
            cells.append(pad + cell if i in right else (cell if i == last else cell + pad))
        return "  ".join(cells).rstrip()

    title = line(header)
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        title = click.style(title, bold=True)
    out = sys.stdout
    out.write(title + "\n")
    for i in range(0, len(rows), 2000):
        out.write("".join(line(row) + "\n" for row in rows[i : i + 2000]))
    out.flush()


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


format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
    help="the message dialect: detected (auto) or forced",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable JSON output (data, strict JSON)")
allow_nan_option = click.option(
    "--allow-nan", is_flag=True, help="write NaN and infinite floats as NaN/Infinity (not strict JSON)"
)


class _Group(click.Group):
    """Lists each command with the whole first sentence of its help (wrapped),
    where click would cut it off to fit a line."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventlog")
def main() -> None:
    """A durable, event-sourced store for AI-agent sessions.

    Read commands (sessions, log, show, replay, diff, export, stats, view, verify)
    open the store read-only and never change it.  Exit status: 0 on success; 1 on
    an error (one line on stderr), or when verify finds a problem; 2 on a usage
    error.  Run "eventlog COMMAND --help" for a command's options.
    """


# ----------------------------------------------------------------------------- demo


@main.command()
@click.option("--path", default="eventlog-demo.db", show_default=True, help="the store file to create")
@click.option(
    "--entries", type=click.IntRange(min=1), default=600, show_default=True, help="entries in the demo session"
)
@click.option("--replace", is_flag=True, help="replace the store at --path if an earlier demo made it")
@_handled
def demo(path: str, entries: int, replace: bool) -> None:
    """Store a session too big for one JSON row, then replay it.

    Saves a coding-agent session with multi-MB screenshots after every entry under
    a 2 MB cell limit: first as one JSON row (which fails), then in eventlog at
    --path (which stores it all), then reloads and compares it.  The path must not
    exist, unless --replace is given and it holds a store an earlier demo made;
    nothing else is ever deleted.  Exit status 1 if the reloaded session differs.
    """
    from .demo import run

    sys.exit(0 if run(path, entries=entries, replace=replace) else 1)


# ----------------------------------------------------------------------------- reading


@main.command()
@click.argument("path")
@click.option("--tree", is_flag=True, help="show sessions nested under their parents")
@json_option
@key_option
@_handled
def sessions(path: str, tree: bool, as_json: bool) -> None:
    """List the sessions in a store.

    One line per session: id, parent, entries, events, stored bytes, last update.
    The counts come from the store's bookkeeping (no session is replayed), except
    for sessions last written by an eventlog older than schema version 4, which are
    folded to count their entries.

    \b
    --json: a list of {"id", "parent", "entries", "events", "bytes", "created",
    "updated", "created_ms", "updated_ms", "history_start"}, oldest first.
    """
    with _store(path) as store:
        infos = store.session_infos()
        counts = [info.entries for info in infos]
        unknown = [i for i, n in enumerate(counts) if n is None]
        if unknown:
            with _progress() as tell:
                for done, i in enumerate(unknown, 1):
                    with suppress(NotFoundError):  # deleted since it was listed
                        counts[i] = len(render.entries_of(store.fold(infos[i].session_id)))
                    if tell:
                        tell("counting entries", done, len(unknown))
    rows = [(info, n) for info, n in zip(infos, counts, strict=True) if n is not None]
    if as_json:
        _json_rows(
            {"id": info.session_id, "parent": info.parent_id, "entries": n, "events": info.seq,
             "bytes": info.stored_bytes, "created": _time(info.created_ms), "updated": _time(info.updated_ms),
             "created_ms": info.created_ms, "updated_ms": info.updated_ms, "history_start": info.history_start}
            for info, n in rows
        )  # fmt: skip
        return
    depth: dict[str, int] = {}
    if tree:
        rows = _tree_order(rows, depth)
    lines = [
        ("  " * depth.get(info.session_id, 0) + _printable(info.session_id), _printable(info.parent_id or ""),
         str(n), str(info.seq), render.human_bytes(info.stored_bytes), _time(info.updated_ms))
        for info, n in rows
    ]  # fmt: skip
    _write_table(("session", "parent", "entries", "events", "bytes", "updated"), lines, right=(2, 3, 4))


def _tree_order(rows: list[tuple[SessionInfo, int]], depth: dict[str, int]) -> list[tuple[SessionInfo, int]]:
    """``rows`` (``(info, entries)``) depth first under their parents, each
    session's level in ``depth``.  Iterative, so a chain of any depth is fine;
    sessions whose parent links loop come last."""
    names = {info.session_id for info, _ in rows}
    kids: dict[str | None, list[tuple[SessionInfo, int]]] = {}
    for row in rows:
        parent = row[0].parent_id
        kids.setdefault(parent if parent in names else None, []).append(row)
    order: list[tuple[SessionInfo, int]] = []
    stack = [(row, 0) for row in reversed(kids.get(None, []))]
    while stack:
        row, level = stack.pop()
        name = row[0].session_id
        if name in depth:
            continue
        depth[name] = level
        order.append(row)
        stack.extend((kid, level + 1) for kid in reversed(kids.get(name, [])))
    return order + [row for row in rows if row[0].session_id not in depth]


@main.command()
@click.argument("path")
@click.argument("session")
@click.option(
    "--since", type=click.IntRange(min=0), default=None,
    help="start after this sequence number (default: the start of the session's history)",
)  # fmt: skip
@format_option
@json_option
@allow_nan_option
@key_option
@_handled
def log(path: str, session: str, since: int | None, fmt: str, as_json: bool, allow_nan: bool) -> None:
    """A session's events: seq, time, kind, entry type, size, summary.

    Starts at the start of the session's history: the first event, or the first
    one kept by "compact --retain".  Items are described in the session's message
    dialect (detected on its latest state, or --format); where the conversation
    list is a field rewritten whole by each save, "item" lines follow a "fields"
    line for the items it added or changed.

    \b
    --json: a list of events {"seq", "position", "time", "timestamp_ms", "ops",
    "dialect", "list"}, each op one of {"op": "insert", "index", "entries"},
    {"op": "replace", "index", "entry"}, {"op": "delete", "index", "count"},
    {"op": "fields", "set", "order"} (a field set to {"$entries": true} is the
    entries list) or {"op": "tombstone", "root"}, values whole; "dialect" and
    "list" (its path) say where the conversation is and how it reads.
    """
    with _store(path) as store:
        start = store.info(session).history_start if since is None else since
        events = list(store.events(session, since=start))
        conv = dialects.locate(store.fold(session, at=events[-1].seq if events else None), fmt)
        before = dialects.at_path(store.fold(session, at=start), conv.path) if start else None
    where = list(conv.path) if conv.path is not None else None
    if as_json:
        rows = [
            {"seq": e.seq, "position": e.position, "time": _time(e.timestamp_ms), "timestamp_ms": e.timestamp_ms,
             "ops": [render.op_data(op) for op in e.ops], "dialect": conv.dialect, "list": where}
            for e in events
        ]  # fmt: skip
        _json(rows, allow_nan=allow_nan)
        return
    if since is None and start:
        click.echo(f"(events up to seq {start} were compacted away: the history starts there)")
    table = _table("seq", "time", "kind", "entry", "size", "summary")
    for event, line in render.log_lines(events, conv, before):
        table.add_row(
            str(event.seq),
            _time(event.timestamp_ms),
            line.kind,
            escape(line.entry_kind),
            render.human_bytes(line.size) if line.size else "",
            escape(line.summary),
        )
    _print(table)


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("--at", type=int, default=None, help="sequence number (default: the latest)")
@format_option
@json_option
@allow_nan_option
@key_option
@_handled
def show(path: str, session: str, at: int | None, fmt: str, as_json: bool, allow_nan: bool) -> None:
    """A session's fields and the items of its conversation at a point.

    The conversation is the list found in the session (entries, messages or
    state.messages, for example), read in its message dialect (detected, or
    --format): one line per item, a pi session's leaf marked and its abandoned
    branches dimmed.

    --json: the session itself (as load() or fold() returns it; bytes as
    {"$bytes": "<hex>"}).
    """
    with _store(path) as store:
        data = store.fold(session, at=at)
        seq = at if at is not None else store.seq(session)
    if as_json:
        _json(data, allow_nan=allow_nan)
        return
    conv = dialects.locate(data, fmt)
    msgs = dialects.messages(conv)
    out = _out()
    out.print(f"[bold]{escape(session)}[/bold] at seq {seq}")
    out.print(f"  conversation: {escape(conv.where)}, {_n(len(conv.items), 'item')}, dialect {conv.dialect}")
    if conv.path is not None:
        for key, value in dialects.without(data, conv.path, render.CONVERSATION).items():
            if value is render.CONVERSATION:
                out.print(f"  {escape(key)}: {_n(len(conv.items), 'item')}")
            else:
                shown = json.dumps(value, ensure_ascii=False, default=_json_default)
                out.print(f"  {escape(key)}: {escape(render.words(shown, 100))}")
    leaf = data.get("leafId") if conv.tree else None
    on_path = set(dialects.active_indexes(conv, data))
    table = _table("#", "id", "parent", "entry", "size", "summary")
    for m, item in zip(msgs, conv.items, strict=True):
        mark = "" if m.index in on_path else "[dim]"
        table.add_row(
            str(m.index),
            escape(m.id or "") + (" ◀ leaf" if leaf is not None and m.id == leaf else ""),
            escape(m.parent_id or ""),
            mark + escape(m.kind),
            render.human_bytes(render.size_of(item)),
            mark + escape(render.message_summary(m)),
        )
    _print(table)


@main.command()
@click.argument("path")
@click.argument("session")
@click.option(
    "--from", "start", type=click.IntRange(min=0), default=0, show_default=True, help="show what came after this seq"
)
@click.option(
    "--to", "end", type=click.IntRange(min=0), default=None, help="the session as of this seq (default: the latest)"
)
@click.option("--full", is_flag=True, help="do not shorten long text or tool-call arguments")
@format_option
@json_option
@allow_nan_option
@key_option
@_handled
def replay(path: str, session: str, start: int, end: int | None, full: bool, fmt: str, as_json: bool,
           allow_nan: bool) -> None:  # fmt: skip
    """A session's conversation, as a transcript.

    Messages, thinking, tool calls with their arguments, each followed by its
    result (paired by call id), errors and images (as a note), in the session's
    message dialect (detected, or --format: pi entries, OpenAI Responses / Agents
    SDK items, chat-completions messages, LangChain messages; anything else
    generically).  A pi session shows its active path, from the root to its leaf.
    With --from, only what came after that seq.  Long text is shortened unless
    --full.

    \b
    --json: a list of items, one per part of a message, nothing shortened:
    {"index" (of the item in the list), "entry" (its id), "role", "speaker",
    "kind", the kind's fields, "dialect", "list" (the list's path)}; by kind: "text",
    "thinking", "error": "text"; "tool_call": "tool", "tool_call_id",
    "arguments"; "tool_result": "text", "tool", "tool_call_id", "is_error";
    "image": "mime_type", "bytes", "url"; "attachment": "type", "name", "bytes";
    "entry": "type", "text"; "item" (not of the dialect): "type", "text", "value".
    """
    if end is not None and start > end:
        _fail(f"--from {start} is after --to {end}: nothing comes after it")
    with _store(path) as store:
        data = store.fold(session, at=end)
        before = store.fold(session, at=start) if start else {}
    conv = dialects.locate(data, fmt)
    indexes = dialects.active_indexes(conv, data)
    if start:
        known = {json.dumps(e, sort_keys=True, default=repr) for e in dialects.at_path(before, conv.path) or []}
        indexes = [i for i in indexes if json.dumps(conv.items[i], sort_keys=True, default=repr) not in known]
    every = dialects.messages(conv)
    msgs = [every[i] for i in indexes]
    if as_json:
        _json(render.transcript_items(conv, msgs), allow_nan=allow_nan)
        return
    lines = render.transcript(msgs, full=full)
    out = _out()
    styles = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}
    for speaker, text in lines:
        style = styles.get(speaker.split(" ")[0], "bold yellow")
        out.print(f"[{style}]{escape(speaker)}[/{style}]: {escape(text)}")


@main.command()
@click.argument("path")
@click.argument("session")
@click.argument("a", type=int)
@click.argument("b", type=int)
@format_option
@json_option
@allow_nan_option
@key_option
@_handled
def diff(path: str, session: str, a: int, b: int, fmt: str, as_json: bool, allow_nan: bool) -> None:
    """What changed in a session between seq A and seq B.

    Items of the conversation added, removed or changed (matched by id, else by
    position; described in the session's message dialect, detected or --format)
    and the other top-level fields set, removed or changed.

    \b
    --json: a list of {"kind": "added" | "removed" | "changed" | "field", "key"
    (the item's id, "#index" without one, or the field's name), "index" (items:
    the position in B, in A for a removal), "before", "after", and for items
    "dialect" and "list" (the list's path)}; "before" is left out for what B
    added and "after" for what B removed; values whole; in a field, the
    conversation list stands as {"$conversation": true}.
    """
    with _store(path) as store:
        changes = render.diff_sessions(store.fold(session, at=a), store.fold(session, at=b), fmt)
    if as_json:
        _json([c.data() for c in changes], allow_nan=allow_nan)
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
@allow_nan_option
@click.option("--otel", is_flag=True, help="write the run as an OpenTelemetry trace (OTLP JSON, GenAI conventions)")
@click.option("--otlp-endpoint", metavar="URL", default=None,
              help="POST the trace to this OTLP/HTTP receiver (URL/v1/traces); implies --otel")
@format_option
@key_option
@_handled
def export(path: str, session: str, at: int | None, output: str | None, as_json: bool, allow_nan: bool, otel: bool,
           otlp_endpoint: str | None, fmt: str) -> None:  # fmt: skip
    """Write a session as JSON, images inline, equal to load().

    The output is strict JSON (json.dumps of the session, key order kept).  A
    NaN or infinite float fails, naming where it is, unless --allow-nan (which
    writes NaN, Infinity, as Python's json does); a bytes value fails (JSON has
    none: use "show --json", which writes {"$bytes": "<hex>"}).

    With --otel: the session at its head and its sub-agent sessions as one
    OpenTelemetry trace, in OTLP JSON (one TracesData object on one line, as
    the Collector's file exporter writes): an invoke_agent span per session, a
    chat span per model turn, an execute_tool span per tool call, named and
    attributed by the GenAI semantic conventions; --format names the root
    session's dialect.  --otlp-endpoint URL also POSTs it to an OTLP/HTTP
    receiver (URL/v1/traces), and then writes it only with -o.  Not with --at
    (a trace is of a whole run, its sub-agents' too) nor --allow-nan (a trace
    is strict JSON).
    """
    if otel or otlp_endpoint is not None:
        from .cli_otel import export_otel

        export_otel(path, session, at, output, allow_nan, otlp_endpoint, fmt)
        return
    if fmt != "auto":
        raise click.UsageError("--format applies to --otel only (export writes the session as it is)")
    with _store(path) as store:
        data = store.fold(session, at=at)
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=allow_nan)
    except ValueError:
        _fail(_non_finite(data, data))
    except TypeError:
        found = _find(data, lambda v: type(v) is bytes)
        where = _where(found[0], data) if found else "$"
        _fail(f'{where} is a bytes value, which JSON cannot carry ("show --json" writes it as hex)')
    if output is None:
        click.echo(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)


@main.command()
@click.argument("path")
@click.argument("session", required=False)
@format_option
@json_option
@key_option
@_handled
def stats(path: str, session: str | None, fmt: str, as_json: bool) -> None:
    """Rows, bytes, chunks and dedup of a store; with SESSION, figures of that run.

    Of a store: bytes by table, chunks and their dedup ratio, the largest cell
    against the budget, and how many events loads replay after the newest
    snapshots.

    Of a session (an agent run, in its dialect, detected or --format): model
    turns and user messages, tool calls by tool with their errors and durations
    (a call to its result), items marked as errors, tokens in and out, cost and
    models where items record usage, wall time (first to last item), its
    outcome (the last message) and its largest items.  Times are the items' own
    timestamps where the dialect has them, else when each item was saved.

    \b
    --json (a session): {"session", "seq", "dialect", "list", "items",
    "user_messages", "turns", "tool_calls": {"total", "errors", "unanswered",
    "by_tool": [{"tool", "count", "errors", "total_ms", "mean_ms", "max_ms"}]},
    "errors", "tokens": {"input", "output"}, "cost", "models", "start_ms",
    "end_ms", "wall_ms", "timed_by", "outcome", "largest": [{"index", "entry",
    "kind", "bytes"}], "parent", "children"}; unknown figures are null.
    """
    if session is not None:
        from .cli_runs import run_stats

        run_stats(path, session, fmt, as_json)
        return
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
@format_option
@key_option
@_handled
def view(path: str, session: str, output: str, fmt: str) -> None:
    """Write an HTML page that replays a session.

    One self-contained file with a timeline slider: open it in any browser, no
    network needed.  The conversation is shown in the session's message dialect
    (detected, or --format): who spoke, the text, each tool call side by side
    with its result, errors marked, images painted.
    """
    from .viewer import page

    with _store(path) as store:
        text = page(store, session, fmt)
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
        self.paths = backends.store_files(path)
        self.before = {p for p in self.paths if os.path.lexists(p)}
        self.new = bool(self.paths) and path not in self.before
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
        self.note_made()  # companions that appeared later (-wal, -shm, -lock) are the store's too
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
    """Check a store; exit 1 if anything is wrong.

    Checks the SQLite file, every chunk against its address, every reference, and
    replays every session (see eventlog.verify).  Progress on stderr when it is a
    terminal.

    \b
    --json: {"ok", "problems": [{"what", "session", "seq"}], "sessions", "events",
    "snapshots", "chunks", "garbage_chunks"}.
    """
    with _store(path) as store, _progress() as tell:
        report = store.verify(progress=tell)
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
            f"{'ok' if report.ok else 'PROBLEMS: ' + str(len(report.problems))}: {_n(report.sessions, 'session')}, "
            f"{_n(report.events, 'event')}, {_n(report.snapshots, 'snapshot')}, {_n(report.chunks, 'chunk')} "
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
    """Remove deleted sessions and free unreferenced chunks.

    Runs in small transactions (writers go on meanwhile; an interrupted run leaves
    a consistent store) and truncates the WAL.  With --retain N each session keeps
    only its last N events (load() is unchanged; earlier points are gone).
    Progress on stderr when it is a terminal.
    """
    with _store(path, readonly=False) as store, _progress() as tell:
        c = store.compact(retain=retain, vacuum=vacuum, progress=tell)
    for skipped in c.skipped:
        click.echo(f"history kept (cannot be folded): {skipped}")
    click.echo(
        f"removed {_n(c.sessions_removed, 'deleted session')}, {_n(c.events_removed, 'event')}, "
        f"{_n(c.snapshots_removed, 'snapshot')}; freed {_n(c.chunks_freed, 'chunk')} "
        f"({render.human_bytes(c.bytes_freed)}); {_n(c.sessions_truncated, 'history', 'histories')} truncated; "
        + ("WAL truncated" if c.checkpointed else "WAL not truncated (another reader holds it)")
        + ("; vacuumed" if c.vacuumed else "")
    )


@main.command(name="copy")
@click.argument("src")
@click.argument("dst")
@click.argument("sessions", nargs=-1)
@click.option("--no-tree", is_flag=True, help="copy only the sessions named, not their sub-agent sessions")
@click.option("--src-chunk-key-file", type=click.Path(dir_okay=False), default=None,
              help="SRC's chunk_key, if it differs from --chunk-key-file")  # fmt: skip
@click.option("--dst-chunk-key-file", type=click.Path(dir_okay=False), default=None,
              help="DST's chunk_key (a new DST is created with it), if it differs from --chunk-key-file")  # fmt: skip
@key_option
@_handled
def copy_(src: str, dst: str, sessions: tuple[str, ...], no_tree: bool, src_chunk_key_file: str | None,
          dst_chunk_key_file: str | None) -> None:  # fmt: skip
    """Copy sessions with their whole history from the store SRC into DST.

    Copies the SESSIONs named, each with its sub-agent sessions (unless
    --no-tree), or every session when none is named, into DST (created if
    missing; an existing DST must be a store, and keeps what it holds).  Each
    session keeps its id, parent, timestamps, positions and history, so fold at
    any position gives the same session in both stores; large values are stored
    again as DST's chunks (a store with another chunk_key, or none, works).  Each
    session is copied in one transaction: it is in DST whole or not at all.
    Refused, before anything is written, if a session to copy is already in DST,
    or if its parent is in SRC but neither copied nor in DST.  SRC is opened
    read-only and never changed.  A DST this command created is removed again if
    nothing was copied into it.
    """
    src_key = _read_key(src_chunk_key_file) if src_chunk_key_file else _chunk_key()
    dst_key = _read_key(dst_chunk_key_file) if dst_chunk_key_file else _chunk_key()
    _check_path(src)
    if not backends.not_files(dst):
        _check_target(dst)
    try:
        source = open_store(src, chunk_key=src_key, readonly=not backends.in_memory(src))
    except KeyMismatchError as e:
        _fail(f"{src}: {e} (give it with --src-chunk-key-file or --chunk-key-file)" if src_key is None else str(e))
    copied: list[str] = []
    with source:
        target = _ImportTarget(dst)
        try:
            dest = open_store(dst, chunk_key=dst_key)
        except BaseException:
            target.remove_made()
            raise
        target.note_made()
        empty = False
        try:
            copied = source.copy_to(dest, list(sessions) or None, tree=not no_tree)
        finally:
            with contextlib.suppress(EventLogError):
                empty = not dest.sessions()  # (sessions copied before a failure stay)
            dest.close()
            if target.new and empty:
                target.remove_made()
    if not copied:
        click.echo("nothing to copy: SRC holds no sessions")
        return
    click.echo(f"copied {_n(len(copied), 'session')}: {', '.join(copied)}")


def _check_target(path: str) -> None:
    """One line and exit status 1 unless ``path`` is missing (a store is made) or an
    eventlog store to add to: never make a store of a file that is something else,
    not even an empty one."""
    from .backends.sqlite.files import SQLITE_MAGIC
    from .backends.sqlite.schema import APPLICATION_ID

    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        _fail(f"{path} is a directory, not a store file")
    if not os.path.isfile(path):
        _fail(f"{path} is not a regular file (a device, pipe or socket), not a store file")
    with open(path, "rb") as f:
        head = f.read(72)
    if not head and os.path.exists(path + "-wal"):
        return  # a store whose first writes are still in its -wal: the store says what it is
    if head[:16] != SQLITE_MAGIC or head[68:72] != APPLICATION_ID.to_bytes(4, "big"):
        _fail(f"{path} exists and is not an eventlog store: not copying into it")


@main.command()
@click.argument("path")
@click.argument("session")
@key_option
@_handled
def delete(path: str, session: str) -> None:
    """Delete a session and its sub-agent sessions.

    Deletes the session and its whole tree of descendants in one transaction
    (exit status 1 if there is no such session); "compact" reclaims the space.
    """
    with _store(path, readonly=False) as store:
        gone = store.delete(session)
    if not gone:
        _fail(f"no such session: {session!r}")
    click.echo(f"deleted {_n(len(gone), 'session')}: {', '.join(gone)} (run compact to reclaim space)")


from . import cli_runs as _cli_runs  # noqa: E402,F401  (registers grep, compare, tail)
from . import cli_serve as _cli_serve  # noqa: E402,F401  (registers serve)

if __name__ == "__main__":  # pragma: no cover
    main()
