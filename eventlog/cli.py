"""The ``eventlog`` command line (also ``python -m eventlog``).

Built on ``click`` (commands, options, help) and ``rich`` (tables, colour, progress),
over the same public :class:`~eventlog.Store` API a program uses.  Every read
command takes ``--json`` for scripts; colour is off when the output is not a
terminal (and with ``NO_COLOR``).  Bad paths, unknown sessions and damaged files get
one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import render
from .chunks import KEY_BYTES
from .errors import EventLogError, KeyMismatchError
from .store import Store
from .store import open as open_store

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


@main.command(name="import")
@click.argument("path")
@click.argument("files", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="save over sessions that already exist (default: skip them)")
@json_option
@key_option
@_handled
def import_(path: str, files: tuple[str, ...], replace: bool, as_json: bool) -> None:
    """Import session JSON files, Flue databases (0.11.0 and 0.11.1) and pi JSONL
    files into the store at PATH (created if missing)."""
    from rich.progress import Progress

    from .errors import ConflictError
    from .importers import read

    done: list[dict[str, Any]] = []
    with (
        open_store(path, chunk_key=_chunk_key()) as store,
        Progress(transient=True, disable=not sys.stderr.isatty()) as progress,
    ):
        task = progress.add_task("importing", total=None)
        for file in files:
            for item in read(file):
                try:
                    seq = store.save(item.session_id, item.data, parent_id=item.parent_id,
                                     expected_seq=None if replace else 0)  # fmt: skip
                    status = "imported" if seq == 1 else "replaced"
                except ConflictError:
                    status = "exists (skipped; --replace to save over it)"
                done.append({"session": item.session_id, "parent": item.parent_id, "source": item.source,
                             "entries": len(render.entries_of(item.data)), "status": status})  # fmt: skip
                progress.update(task, advance=1, description=f"importing {item.session_id[:40]}")
    if as_json:
        _json(done)
        return
    for d in done:
        parent = f" (child of {d['parent']})" if d["parent"] else ""
        click.echo(f"{d['status']}: {d['session']}{parent}, {d['entries']} entries, from {d['source']}")
    imported = sum(1 for d in done if d["status"] in ("imported", "replaced"))
    click.echo(f"{imported} of {len(done)} sessions imported into {path}")


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
