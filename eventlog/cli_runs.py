"""The commands that read sessions as agent runs: ``grep``, ``stats SESSION``,
``compare`` and ``tail``.  Registered on :data:`eventlog.cli.main` when that module
loads; the conventions (``--json``, one-line errors, progress on stderr) are its."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from itertools import chain
from typing import Any

import click
from rich.markup import escape

from . import dialects, render
from .cli import (
    _fail,
    _handled,
    _json,
    _json_default,
    _json_rows,
    _n,
    _out,
    _print,
    _progress,
    _store,
    _table,
    _time,
    _write_table,
    allow_nan_option,
    format_option,
    json_option,
    key_option,
    main,
)
from .comparing import compare as compare_runs
from .errors import NotFoundError
from .fold import Event
from .runs import read_run, stats
from .search import grep as search


def _ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 7_200_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def _num(v: int | float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{v:,}"


@main.command()
@click.argument("path")
@click.argument("pattern")
@click.option("-E", "--regexp", "regexp", is_flag=True, help="PATTERN is a regular expression (Python's re)")
@click.option("-i", "--ignore-case", is_flag=True, help="match regardless of case")
@click.option("--session", "sessions", multiple=True, help="search this session only (repeatable)")
@click.option("--role", "roles", multiple=True,
              help="only items of this speaker (user, assistant, system, tool, other) or role (repeatable)")
@click.option("--tool", "tools", multiple=True, help="only calls of this tool and their results (repeatable)")
@format_option
@json_option
@key_option
@_handled
def grep(path: str, pattern: str, regexp: bool, ignore_case: bool, sessions: tuple[str, ...], roles: tuple[str, ...],
         tools: tuple[str, ...], fmt: str, as_json: bool) -> None:  # fmt: skip
    """Search the text of sessions: messages, tool calls and their arguments, tool
    results and errors (never image data).

    PATTERN is plain text unless -E.  Each hit names the session, the event that
    wrote the item (seq), the item (#index and entry id), who spoke, and the
    matching line around the match.  Exit status 1 when nothing matches, as grep.

    \b
    --json: a list of {"session", "seq", "index", "entry", "speaker", "role",
    "kind" (text, thinking, tool_call, tool_result, error, entry, item), "tool",
    "line", "match"}.
    """
    flags = re.IGNORECASE if ignore_case else 0
    try:
        compiled = re.compile(pattern if regexp else re.escape(pattern), flags)
    except (re.error, OverflowError, RecursionError, ValueError) as e:  # (what re.compile raises on bad input)
        _fail(f"bad regular expression {_short(pattern)}: {type(e).__name__}: {e}")
    with _store(path) as store, _progress() as progress:
        hits = list(search(store, compiled, sessions=sessions or None, roles=roles or None, tools=tools or None,
                           fmt=fmt, progress=progress))  # fmt: skip
    if as_json:
        _json_rows(h.data() for h in hits)
    else:
        rows = [
            [h.session, "-" if h.seq is None else str(h.seq), f"#{h.index}" + (f" {h.entry}" if h.entry else ""),
             h.speaker + (f" {h.tool}" if h.tool else ""), h.line.replace("\n", " ")]
            for h in hits
        ]  # fmt: skip
        if rows:
            _write_table(("session", "seq", "item", "who", "line"), rows, right=(1,))
    if not hits:
        sys.exit(1)


def _short(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def run_stats(path: str, session: str, fmt: str, as_json: bool) -> None:
    """``eventlog stats PATH SESSION``: a run's figures (see :func:`eventlog.runs.stats`)."""
    with _store(path) as store:
        st = stats(read_run(store, session, fmt))
    if as_json:
        _json(st)
        return
    out = _out()
    tc = st["tool_calls"]
    tokens = st["tokens"]
    out.print(f"[bold]{escape(session)}[/bold] at seq {st['seq']}: {_n(st['items'], 'item')}, dialect {st['dialect']}")
    out.print(f"  turns: {st['turns']} model, {st['user_messages']} user   tool calls: {tc['total']} "
              f"({tc['errors']} errors, {tc['unanswered']} unanswered)   errors: {st['errors']}")  # fmt: skip
    wall = "-"
    if st["wall_ms"] is not None:
        wall = f"{_ms(st['wall_ms'])} ({_time(st['start_ms'])} to {_time(st['end_ms'])})"
    out.print(f"  wall time: {wall}, timed by {st['timed_by']}")
    models = ", ".join(f"{escape(k)} ({v})" for k, v in st["models"].items()) or "-"
    out.print(f"  tokens: {_num(tokens['input'])} in, {_num(tokens['output'])} out   cost: {_num(st['cost'])}   "
              f"models: {models}")  # fmt: skip
    if st["parent"] is not None or st["children"]:
        out.print(f"  parent: {escape(st['parent'] or '-')}   sub-agents: {escape(', '.join(st['children']) or '-')}")
    if st["outcome"] is not None:
        o = st["outcome"]
        out.print(f"  outcome: #{o['index']} {o['speaker']}{' (error)' if o['error'] else ''}: {escape(o['summary'])}")
    if tc["by_tool"]:
        table = _table("tool", "calls", "errors", "total", "mean", "max")
        for t in tc["by_tool"]:
            table.add_row(escape(t["tool"]), str(t["count"]), str(t["errors"]), _ms(t["total_ms"]), _ms(t["mean_ms"]),
                          _ms(t["max_ms"]))  # fmt: skip
        _print(table)
    if st["largest"]:
        table = _table("largest", "entry", "kind", "size")
        for e in st["largest"]:
            table.add_row(f"#{e['index']}", escape(e["entry"] or ""), escape(e["kind"]), render.human_bytes(e["bytes"]))
        _print(table)


@main.command()
@click.argument("path")
@click.argument("session_a")
@click.argument("session_b")
@format_option
@json_option
@key_option
@_handled
def compare(path: str, session_a: str, session_b: str, fmt: str, as_json: bool) -> None:
    """Compare two runs of the same task: where they diverge, tool mix, duration,
    tokens, cost and outcome.

    Items are compared by who spoke, what was said, each tool call's tool and
    arguments and each result (ids, timestamps, usage and thinking left out); the
    first item that differs is shown side by side.  ("diff" compares two points of
    one session.)

    \b
    --json: {"a", "b", "common", "diverge": null | {"at", "a": [items], "b":
    [items]}, "tools": [{"tool", "a", "b", "delta"}], and {"a", "b", "delta"} for
    "items", "turns", "tool_calls", "tool_errors", "errors", "wall_ms",
    "input_tokens", "output_tokens", "cost"; "outcome": {"a", "b"},
    "same_outcome"}; an item is {"index", "entry", "seq", "speaker", "kind",
    "error", "summary"}.
    """
    with _store(path) as store:
        a = read_run(store, session_a, fmt)
        b = read_run(store, session_b, fmt)
    result = compare_runs(a, b)
    if as_json:
        _json(result)
        return
    out = _out()
    d = result["diverge"]
    if d is None:
        out.print(f"same conversation: {_n(result['common'], 'item')}")
    else:
        out.print(f"the same for {_n(result['common'], 'item')}; they diverge at item {d['at']}:")
        side = _table(f"A: {escape(session_a)}", f"B: {escape(session_b)}")
        for k in range(max(len(d["a"]), len(d["b"]))):
            side.add_row(*(escape(_side(items[k])) if k < len(items) else "" for items in (d["a"], d["b"])))
        _print(side)
    figures = _table("", "A", "B", "B - A")
    for key, label, fmt_ in (("items", "items", _num), ("turns", "model turns", _num),
                             ("tool_calls", "tool calls", _num), ("tool_errors", "tool errors", _num),
                             ("errors", "errors", _num), ("wall_ms", "wall time", _ms),
                             ("input_tokens", "tokens in", _num), ("output_tokens", "tokens out", _num),
                             ("cost", "cost", _num)):  # fmt: skip
        p = result[key]
        delta = p["delta"]
        shown = "-" if delta is None else ("+" + fmt_(delta) if delta >= 0 else "-" + fmt_(-delta))
        figures.add_row(label, fmt_(p["a"]), fmt_(p["b"]), shown)
    for t in result["tools"]:
        figures.add_row(f"tool {escape(t['tool'])}", str(t["a"]), str(t["b"]), f"{t['delta']:+d}")
    _print(figures)
    oa, ob = result["outcome"]["a"], result["outcome"]["b"]
    out.print(f"outcome A: {escape(_side(oa)) if oa else '-'}")
    out.print(f"outcome B: {escape(_side(ob)) if ob else '-'}")
    out.print("same outcome" if result["same_outcome"] else "different outcomes")


def _side(item: dict[str, Any]) -> str:
    return f"#{item['index']} {item['speaker']}{' (error)' if item['error'] else ''}: {item['summary']}"


@main.command()
@click.argument("path")
@click.argument("session")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="how many of the latest events to show first")  # fmt: skip
@click.option("-f", "--follow", is_flag=True, help="then print each new event as it commits, until interrupted")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="with -f: stop after this many seconds without a new event")  # fmt: skip
@format_option
@json_option
@allow_nan_option
@key_option
@_handled
def tail(path: str, session: str, count: int, follow: bool, timeout: float | None, fmt: str, as_json: bool,
         allow_nan: bool) -> None:  # fmt: skip
    """A session's latest events, and with -f each new one as it commits.

    Lines as "log" prints them (seq, time, kind, entry, size, summary), items
    read in the session's dialect (detected, or --format).  With -f, events
    committed by any process (on PostgreSQL, any host) show within a second;
    a session that does not exist yet is waited for; it stops after the
    session is deleted, at --timeout, or on Ctrl-C.

    --json: one JSON object per line per event, as "log --json" writes them.
    """
    with _store(path) as store:
        exists = _exists(store, session)
        if not exists and not follow:
            store.info(session)  # NotFoundError, said as one line
        head = store.seq(session) if exists else 0
        start = max(store.info(session).history_start, head - count) if exists else 0
        shown = [e for e in store.events(session, since=start) if e.seq <= head] if exists else []
        recent: Iterator[Event] = iter(shown)
        events: Iterator[Event] = chain(recent, store.watch(session, since=head, timeout=timeout)) if follow else recent
        if not exists:
            click.echo(f"(waiting for session {session!r})", err=True)
        # the dialect and the list before the first event shown, read now: the session may be gone later
        conv = before = None
        if exists:
            conv = dialects.locate(store.fold(session, at=head), fmt)
            before = dialects.at_path(store.fold(session, at=start), conv.path) if start else None
        with contextlib.suppress(KeyboardInterrupt):
            _follow(store, session, events, fmt, as_json, allow_nan, conv, before)


def _exists(store: Any, session: str) -> bool:
    try:
        store.info(session)
    except NotFoundError:
        return False
    return True


def _follow(store: Any, session: str, events: Iterator[Event], fmt: str, as_json: bool, allow_nan: bool,
            conv: dialects.Conversation | None, before: list[Any] | None) -> None:  # fmt: skip
    """Print ``events`` as they come, items read as ``conv`` says (for a session that
    did not exist yet: read on the session at its first event)."""
    first = next(events, None)
    if first is None:
        return
    if conv is None:
        try:
            conv = dialects.locate(store.fold(session, at=first.seq), fmt)
        except NotFoundError:  # (created and deleted already)
            conv = dialects.locate({}, fmt)
    where = list(conv.path) if conv.path is not None else None
    out = sys.stdout
    if as_json:
        for e in chain([first], events):
            row = {"seq": e.seq, "position": e.position, "time": _time(e.timestamp_ms), "timestamp_ms": e.timestamp_ms,
                   "ops": [render.op_data(op) for op in e.ops], "dialect": conv.dialect, "list": where}  # fmt: skip
            try:
                text = json.dumps(row, ensure_ascii=False, default=_json_default, allow_nan=allow_nan)
            except ValueError:
                _fail(f"event {e.seq} holds a NaN or infinite float, which strict JSON cannot carry (see --allow-nan)")
            out.write(text + "\n")
            out.flush()
        return
    for event, line in render.log_lines(chain([first], events), conv, before):
        size = render.human_bytes(line.size) if line.size else ""
        out.write("  ".join(x for x in (str(event.seq), _time(event.timestamp_ms), line.kind, line.entry_kind, size,
                                        line.summary) if x) + "\n")  # fmt: skip
        out.flush()
