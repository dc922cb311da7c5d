"""A session and its sub-agent sessions as one OpenTelemetry trace, in the OTLP
JSON encoding (``eventlog export --otel``), named and attributed by the
OpenTelemetry GenAI semantic conventions.

:func:`trace` gives one ``TracesData`` object, ``{"resourceSpans": [...]}``, as
the OpenTelemetry Collector's file exporter writes it and its ``otlpjsonfile``
receiver and OTLP/HTTP receivers (``/v1/traces``) read it:

* an ``invoke_agent`` span (kind ``INTERNAL``) per session, named ``invoke_agent
  <agent>`` (the harness name of a Flue session key
  ``agent-session:[instance, harness, session]``, else the session id);
* a ``chat`` span (kind ``CLIENT``) per model turn (a run of consecutive model
  items: one response), named ``chat <model>`` (``chat`` when the model is not
  known), with ``gen_ai.request.model`` / ``gen_ai.response.model``,
  ``gen_ai.provider.name`` and ``gen_ai.usage.*`` where the items record them;
* an ``execute_tool`` span (kind ``INTERNAL``) per tool call, named
  ``execute_tool <tool>``, from the call item's time to its result item's time,
  error status and ``error.type`` when the result is marked an error;
* sub-agent sessions (:meth:`~eventlog.Store.children`, to any depth) as child
  ``invoke_agent`` spans in the same trace.

Every span has ``gen_ai.conversation.id``, the id of the session it belongs to.
Times (see :mod:`eventlog.runs`): items' own timestamps, else when each was
saved.  A turn runs from the item before it (the prompt; in a pi tree its parent
entry) to its own last item; an item with no known time is placed at its
session's start.  Ids are derived from the session ids and item positions
(SHA-256), so two exports of the same store are equal, whatever its backend.

Pure reads over the public :class:`~eventlog.Store` API; what a dialect does not
record is left out, never guessed.  OTLP JSON: ``traceId`` / ``spanId`` as
lowercase hex, enums as integers, 64-bit integers as decimal strings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__
from .runs import Run, Step, holders, read_run

if TYPE_CHECKING:
    from .store import Store

#: ``Span.SpanKind`` values (opentelemetry/proto/trace/v1/trace.proto).
SPAN_KIND_INTERNAL = 1
SPAN_KIND_CLIENT = 3
#: ``Status.StatusCode.STATUS_CODE_ERROR``.
STATUS_CODE_ERROR = 2
#: ``error.type`` of a tool result / a model turn marked as an error.
TOOL_ERROR = "tool_error"
MODEL_ERROR = "model_error"
#: Status messages are cut to this many characters.
_MESSAGE_LIMIT = 200


def trace(store: Store, session_id: str, fmt: str = "auto") -> dict[str, Any]:
    """``session_id`` at its head, with its sub-agent sessions, as an OTLP JSON
    ``TracesData`` dict (see the module docstring).  ``fmt`` is the root session's
    message dialect (``auto``: detected); sub-agent sessions are always detected.
    Raises what :func:`~eventlog.runs.read_run` raises (:class:`~eventlog.NotFoundError`
    for an unknown session, :class:`~eventlog.InvalidValueError` for an unknown
    ``fmt``)."""
    trace_id = _id(16, "trace", session_id)
    spans = _Spans(store, trace_id).agent(session_id, fmt, None, set())
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "eventlog")]},
                "scopeSpans": [{"scope": {"name": "eventlog", "version": __version__}, "spans": spans}],
            }
        ]
    }


def dumps(data: dict[str, Any]) -> str:
    """``data`` (a :func:`trace`) as one line of compact JSON, the way the
    Collector's file exporter writes a ``TracesData`` (a JSON-lines file)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# ----------------------------------------------------------------------------- encoding


def _id(size: int, *parts: str) -> str:
    """``size`` bytes of SHA-256 over ``parts`` as lowercase hex; never all zero
    (an invalid id in OTLP)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()[:size]
    if not any(digest):
        digest = b"\x00" * (size - 1) + b"\x01"
    return digest.hex()


def _value(value: str | int | float | bool) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # (int64: a decimal string)
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def _attr(key: str, value: str | int | float | bool) -> dict[str, Any]:
    return {"key": key, "value": _value(value)}


def _fits(value: str | int | float | bool) -> bool:
    """Whether OTLP can carry ``value``: an int must fit int64 (a count past it is
    no count: left out, as unknown), a float must be finite."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _nanos(ms: int) -> str:
    """Unix ms as OTLP's fixed64 nanoseconds (clamped to what it can hold: the
    item times eventlog reads are years 1973 to 2286, see eventlog.runs)."""
    return str(min(max(ms, 0) * 1_000_000, 2**64 - 1))


def _span(trace_id: str, span_id: str, parent: str | None, name: str, kind: int, start_ms: int, end_ms: int,
          attrs: dict[str, str | int | float | bool | None], error: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One span; attributes whose value is ``None`` (not known) are left out;
    ``error`` (a message): error status."""
    span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
    if parent is not None:
        span["parentSpanId"] = parent
    span.update(
        name=name,
        kind=kind,
        startTimeUnixNano=_nanos(start_ms),
        endTimeUnixNano=_nanos(max(start_ms, end_ms)),
        attributes=[_attr(k, v) for k, v in attrs.items() if v is not None and _fits(v)],
    )
    if error is not None:
        span["status"] = {"code": STATUS_CODE_ERROR, **({"message": error} if error else {})}
    return span


# ----------------------------------------------------------------------------- what the items say


def agent_name(session_id: str) -> str | None:
    """The agent's name where a session id carries one: the harness name of a Flue
    key ``agent-session:["<instance>","<harness>","<session>"]``; else ``None``."""
    prefix = "agent-session:"
    if not session_id.startswith(prefix):
        return None
    try:
        key = json.loads(session_id[len(prefix) :])
    except ValueError:
        return None
    if type(key) is list and len(key) == 3 and all(type(k) is str for k in key) and key[1]:
        return str(key[1])
    return None


def _field(item: Any, *keys: str) -> str | None:
    """The first non-empty string under ``keys`` in an item or where its dialect
    keeps a message's details (pi's ``message``, LangChain's ``response_metadata``)."""
    if type(item) is not dict:
        return None
    for d in holders(item):
        for k in keys:
            v = d.get(k)
            if type(v) is str and v:
                return v
    return None


def _pi_cache(item: Any) -> tuple[int | None, int | None]:
    """pi's cache reads and writes (tokens) of an assistant entry."""
    usage = item.get("message", {}).get("usage") if type(item) is dict and type(item.get("message")) is dict else None
    if type(usage) is not dict:
        return None, None
    read, write = usage.get("cacheRead"), usage.get("cacheWrite")
    return (read if type(read) is int and read >= 0 else None), (write if type(write) is int and write >= 0 else None)


_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b|\berror\b", re.IGNORECASE)


def _error_text(step: Step) -> str:
    """What an item says of its error, on one line (cut): its error part (pi's
    ``errorMessage``), else of its result or text the last line that names an
    error (a traceback's last line), else the first line; ``""`` if none."""
    for kinds in (("error",), ("tool_result", "text")):
        for p in step.message.parts:
            text = p.get("text")
            if p["kind"] in kinds and type(text) is str and text.strip():
                lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
                named = [line for line in lines if _ERROR_LINE.search(line)]
                return (named[-1] if named else lines[0])[:_MESSAGE_LIMIT]
    return ""


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


# ----------------------------------------------------------------------------- spans


def _only(spans: list[dict[str, Any]], key: str) -> str | None:
    """The one value the ``spans`` that have attribute ``key`` give it, else ``None``."""
    found = {a["value"]["stringValue"] for s in spans for a in s["attributes"] if a["key"] == key}
    return found.pop() if len(found) == 1 else None


@dataclass
class Turn:
    """A model turn: the positions of its items in :attr:`Run.steps` (consecutive
    model items: one response) and the position of the item before it."""

    steps: list[int]
    before: int | None


def _predecessors(run: Run) -> list[int | None]:
    """Each item's prompt: in a pi tree its parent entry, else the item before it."""
    if run.conv.tree:
        where = {s.message.id: i for i, s in enumerate(run.steps) if s.message.id is not None}
        return [where.get(s.message.parent_id) if s.message.parent_id is not None else None for s in run.steps]
    return [i - 1 if i else None for i in range(len(run.steps))]


def turns(run: Run) -> list[Turn]:
    """The model turns of a run: each model item (speaker ``assistant``) whose prompt
    is another model item joins that item's turn (an OpenAI response's reasoning,
    function calls and message), else it starts one."""
    before = _predecessors(run)
    out: list[Turn] = []
    turn_of: dict[int, Turn] = {}
    for i, step in enumerate(run.steps):
        if step.message.speaker != "assistant":
            continue
        prev = before[i]
        if prev is not None and prev in turn_of:
            turn = turn_of[prev]
            turn.steps.append(i)
        else:
            turn = Turn([i], prev)
            out.append(turn)
        turn_of[i] = turn
    return out


class _Spans:
    """The spans of one trace (``trace_id``), read from ``store``."""

    def __init__(self, store: Store, trace_id: str) -> None:
        self.store, self.trace_id = store, trace_id

    def agent(self, session_id: str, fmt: str, parent: str | None, seen: set[str]) -> list[dict[str, Any]]:
        """The spans of ``session_id`` and its sub-agents: its ``invoke_agent`` span
        first."""
        seen.add(session_id)
        run = read_run(self.store, session_id, fmt)
        span_id = _id(8, "span", session_id, "session")
        below: list[dict[str, Any]] = []
        for child in run.children:
            if child not in seen:  # (parent links are by id: never follow one round)
                below += self.agent(child, "auto", span_id, seen)
        times = [s.time_ms for s in run.steps if s.time_ms is not None]
        times += [int(s[k]) // 1_000_000 for s in below for k in ("startTimeUnixNano", "endTimeUnixNano")]
        if times:
            start, end = min(times), max(times)
        else:  # nothing dated: when the session was created and last written
            info = self.store.info(session_id)
            start, end = info.created_ms, info.updated_ms
        name = agent_name(session_id)
        turns = self._turns(run, span_id, start)
        error = run.steps[run.active[-1]] if run.active and run.steps[run.active[-1]].message.error else None
        attrs: dict[str, str | int | float | bool | None] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": session_id,
            "gen_ai.agent.name": name,
            "gen_ai.provider.name": _only(turns, "gen_ai.provider.name"),
            "gen_ai.request.model": _only(turns, "gen_ai.request.model"),
            "error.type": None if error is None else TOOL_ERROR if error.message.speaker == "tool" else MODEL_ERROR,
            "eventlog.dialect": run.conv.dialect,
            "eventlog.seq": run.seq,
        }
        root = _span(self.trace_id, span_id, parent, f"invoke_agent {name or session_id}", SPAN_KIND_INTERNAL,
                     start, end, attrs, error=None if error is None else _error_text(error))  # fmt: skip
        return [root, *turns, *self._tools(run, span_id, start), *below]

    def _turns(self, run: Run, parent: str, start: int) -> list[dict[str, Any]]:
        out = []
        session_model = run.data.get("model") if type(run.data.get("model")) is str else None
        for turn in turns(run):
            steps = [run.steps[i] for i in turn.steps]
            items = [run.conv.items[s.message.index] for s in steps]
            own = [s.time_ms for s in steps if s.time_ms is not None]
            prompt = run.steps[turn.before].time_ms if turn.before is not None else None
            end = max(own) if own else (prompt if prompt is not None else start)
            begin = prompt if prompt is not None and prompt <= end else end
            model = next((m for m in (_field(i, "model", "model_name") for i in items) if m), None)
            provider = next((p for p in (_field(i, "provider", "model_provider") for i in items) if p), None)
            usages = [s.usage for s in steps if s.usage is not None]
            cache = [_pi_cache(i) for i in items] if run.conv.dialect == "pi" else []
            failed = next((s for s in steps if s.message.error), None)
            attrs: dict[str, str | int | float | bool | None] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.conversation.id": run.session,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model or session_model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": _sum([u.input_tokens for u in usages]),
                "gen_ai.usage.output_tokens": _sum([u.output_tokens for u in usages]),
                "gen_ai.usage.cache_read.input_tokens": _sum([c[0] for c in cache]),
                "gen_ai.usage.cache_creation.input_tokens": _sum([c[1] for c in cache]),
                "error.type": MODEL_ERROR if failed is not None else None,
                "eventlog.item.index": steps[0].message.index,
                "eventlog.item.id": steps[0].message.id,
            }
            name = f"chat {model or session_model}" if model or session_model else "chat"
            out.append(_span(self.trace_id, _id(8, "span", run.session, "turn", str(turn.steps[0])), parent, name,
                             SPAN_KIND_CLIENT, begin, end, attrs,
                             error=None if failed is None else _error_text(failed)))  # fmt: skip
        return out

    def _tools(self, run: Run, parent: str, start: int) -> list[dict[str, Any]]:
        out = []
        nth: dict[int, int] = {}
        for call in run.calls:
            k = nth[call.step] = nth.get(call.step, -1) + 1  # (the k-th call of its item)
            begin = call.start_ms if call.start_ms is not None else call.end_ms if call.end_ms is not None else start
            end = call.end_ms if call.end_ms is not None else begin
            item = run.conv.items[run.steps[call.step].message.index]
            kind = item.get("type") if type(item) is dict and run.conv.dialect == "openai" else None
            result = run.steps[call.result] if call.result is not None else None
            attrs: dict[str, str | int | float | bool | None] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.conversation.id": run.session,
                "gen_ai.tool.name": call.tool,
                "gen_ai.tool.call.id": call.call_id,
                # (OpenAI's other *_call items are built-in tools: computer use, web search, ...)
                "gen_ai.tool.type": "function" if kind in (None, "function_call", "custom_tool_call") else None,
                "error.type": TOOL_ERROR if call.error else None,
                "eventlog.item.index": run.steps[call.step].message.index,
                "eventlog.item.id": run.steps[call.step].message.id,
            }
            name = f"execute_tool {call.tool}" if call.tool else "execute_tool"
            error = _error_text(result) if call.error and result is not None else None
            out.append(_span(self.trace_id, _id(8, "span", run.session, "tool", str(call.step), str(k)), parent, name,
                             SPAN_KIND_INTERNAL, begin, end, attrs, error=error))  # fmt: skip
        return out
