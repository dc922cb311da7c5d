"""``eventlog export --otel``: a run and its sub-agents as one OpenTelemetry trace
in OTLP JSON, under the GenAI semantic conventions; ``--otlp-endpoint`` POSTs it
to an OTLP/HTTP receiver.  Every trace written here is parsed by protobuf into
``TracesData`` (the OpenTelemetry schema itself) before its spans are checked."""

from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import eventlog
from eventlog.cli import main
from eventlog.otel import trace
from eventlog.samples import SessionBuilder

from ..postgres import admin_url, store_urls
from . import dialect_sessions as ds

INTERNAL, CLIENT = 1, 3
HEX = re.compile(r"[0-9a-f]+")
DIGITS = re.compile(r"[0-9]+")
ROOT = 'agent-session:["inst-1","coder","default"]'
CHILD = "task:default:t1"
GRANDCHILD = "task:t1:t2"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1"}, catch_exceptions=False)


def one_line_error(res: Result, *fragments: str) -> None:
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr.startswith("eventlog: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


# ----------------------------------------------------------------------------- the schema


def _base64_ids(value: Any) -> Any:
    """OTLP JSON with its hex ids as base64: protobuf's own JSON mapping of bytes
    (the OTLP spec's one deviation from it)."""
    if type(value) is list:
        return [_base64_ids(v) for v in value]
    if type(value) is dict:
        out = {}
        for k, v in value.items():
            if k in ("traceId", "spanId", "parentSpanId") and type(v) is str:
                assert HEX.fullmatch(v), (k, v)  # lowercase hex, as eventlog writes it
                v = base64.b64encode(bytes.fromhex(v)).decode("ascii")
            out[k] = _base64_ids(v)
        return out
    return value


def _json_rules(value: Any, key: str = "") -> None:
    """The OTLP JSON rules protobuf's parser would let pass: int64 as decimal
    strings, enums as integers."""
    if type(value) is dict:
        for k, v in value.items():
            if k in ("startTimeUnixNano", "endTimeUnixNano", "intValue"):
                assert type(v) is str and DIGITS.fullmatch(v), (k, v)
            if k in ("kind", "code"):
                assert type(v) is int, (k, v)
            _json_rules(v, k)
    elif type(value) is list:
        for v in value:
            _json_rules(v, key)


def attrs(span: Any) -> dict[str, Any]:
    """A span's attributes as plain values (a protobuf span or an OTLP JSON one)."""
    if isinstance(span, dict):
        out: dict[str, Any] = {}
        for a in span["attributes"]:
            ((kind, v),) = a["value"].items()
            out[a["key"]] = int(v) if kind == "intValue" else v
        return out
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


REQUIRED = {
    "invoke_agent": {"gen_ai.operation.name", "gen_ai.conversation.id"},
    "chat": {"gen_ai.operation.name", "gen_ai.conversation.id"},
    "execute_tool": {"gen_ai.operation.name", "gen_ai.conversation.id"},
}
ALLOWED = {
    "invoke_agent": REQUIRED["invoke_agent"] | {"gen_ai.agent.name", "gen_ai.provider.name", "gen_ai.request.model",
                                                "error.type", "eventlog.dialect", "eventlog.seq"},
    "chat": REQUIRED["chat"] | {"gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
                                "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                                "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens",
                                "error.type", "eventlog.item.index", "eventlog.item.id"},
    "execute_tool": REQUIRED["execute_tool"] | {"gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.type",
                                                "error.type", "eventlog.item.index", "eventlog.item.id"},
}  # fmt: skip
KINDS = {"invoke_agent": INTERNAL, "chat": CLIENT, "execute_tool": INTERNAL}


def validated(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans of an OTLP JSON trace, once it has been parsed by protobuf into
    ``TracesData`` (unknown fields refused) and its spans checked: ids of 16 and 8
    bytes, one trace, one root, every parent in it, kinds, names and attributes
    by operation, end >= start, a session's span around its sub-agents'."""
    ds.need("opentelemetry.proto.trace.v1.trace_pb2", "EVENTLOG_REQUIRE_OTEL")
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from opentelemetry.proto.trace.v1 import trace_pb2

    _json_rules(data)
    msg = json_format.Parse(json.dumps(_base64_ids(data)), trace_pb2.TracesData(), ignore_unknown_fields=False)
    assert len(msg.resource_spans) == 1 and len(msg.resource_spans[0].scope_spans) == 1
    assert msg.resource_spans[0].scope_spans[0].scope.name == "eventlog"
    pspans = list(msg.resource_spans[0].scope_spans[0].spans)
    spans: list[dict[str, Any]] = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(pspans) == len(spans) > 0
    by_id = {s.span_id: s for s in pspans}
    assert len(by_id) == len(pspans), "span ids are unique"
    assert {s.trace_id for s in pspans} == {pspans[0].trace_id} and len(pspans[0].trace_id) == 16
    roots = [s for s in pspans if not s.parent_span_id]
    assert len(roots) == 1 and roots[0] is pspans[0]
    for s, js in zip(pspans, spans, strict=True):
        assert len(s.span_id) == 8 and any(s.span_id)
        a = attrs(s)
        op = a["gen_ai.operation.name"]
        assert s.kind == KINDS[op], (s.name, s.kind)
        assert REQUIRED[op] <= set(a) <= ALLOWED[op], (s.name, set(a))
        assert s.end_time_unix_nano >= s.start_time_unix_nano > 0
        assert a == attrs(js)
        if op == "invoke_agent":
            assert s.name == "invoke_agent " + a.get("gen_ai.agent.name", a["gen_ai.conversation.id"])
        elif op == "chat":
            assert s.name == ("chat " + a["gen_ai.request.model"] if "gen_ai.request.model" in a else "chat")
        else:
            assert s.name == ("execute_tool " + a["gen_ai.tool.name"] if "gen_ai.tool.name" in a else "execute_tool")
        assert (s.status.code == trace_pb2.Status.STATUS_CODE_ERROR) == ("error.type" in a), s.name
        if s.parent_span_id:
            parent = by_id[s.parent_span_id]
            assert attrs(parent)["gen_ai.operation.name"] == "invoke_agent", "spans hang from sessions' spans"
            if op == "invoke_agent":
                assert parent.start_time_unix_nano <= s.start_time_unix_nano
                assert s.end_time_unix_nano <= parent.end_time_unix_nano
            else:  # a turn or a call hangs from its own session's span
                assert attrs(parent)["gen_ai.conversation.id"] == a["gen_ai.conversation.id"]
    return spans


def of(spans: list[dict[str, Any]], session: str, op: str) -> list[dict[str, Any]]:
    """The spans of ``session``'s operation ``op``."""
    keys = ("gen_ai.conversation.id", "gen_ai.operation.name")
    return [s for s in spans if [attrs(s)[k] for k in keys] == [session, op]]


def times(span: dict[str, Any]) -> tuple[int, int]:
    """A span's start and end in ms."""
    return int(span["startTimeUnixNano"]) // 1_000_000, int(span["endTimeUnixNano"]) // 1_000_000


def export(path: str, session: str, tmp_path: Path, *more: str) -> dict[str, Any]:
    out = tmp_path / f"trace-{len(list(tmp_path.iterdir()))}.json"
    res = cli("export", path, session, "--otel", "-o", str(out), *more)
    assert res.exit_code == 0, res.output
    text = out.read_text("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1  # one TracesData a line, as the Collector's file exporter
    data: dict[str, Any] = json.loads(text)
    return data


# ----------------------------------------------------------------------------- a pi run with sub-agents


def _ms(entry: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


def one_call(b: SessionBuilder) -> None:
    """The builder's next model turn, with one tool call (the one its next result answers)."""
    content = b.assistant()["message"]["content"]
    calls = [c for c in content if c["type"] == "toolCall"]
    content[:] = [c for c in content if c["type"] != "toolCall"] + calls[-1:]


def save_pi_tree(store: eventlog.Store) -> dict[str, dict[str, Any]]:
    """A pi run (three turns with a tool call each, the second one failing, then a
    turn rewound onto the prompt: an abandoned branch, whose call is unanswered)
    with a sub-agent that has a sub-agent of its own; each saved entry by entry.
    Their sessions by id."""
    b = SessionBuilder(7, name="default")
    b.user("Fix the failing parser test, please.")
    store.save(ROOT, b.data)
    for n in range(3):
        one_call(b)
        store.save(ROOT, b.data)
        b.tool_result()
        b.data["entries"][-1]["message"]["isError"] = n == 1
        store.save(ROOT, b.data)
    b.data["leafId"] = b.data["entries"][0]["id"]  # rewound: the next turn answers the prompt again
    one_call(b)
    store.save(ROOT, b.data)
    child = SessionBuilder(8)
    child.user("sub-task: read the parser")
    one_call(child)
    store.save(CHILD, child.data, parent_id=ROOT)
    child.tool_result()
    child.data["entries"][-1]["message"]["isError"] = False
    store.save(CHILD, child.data)
    grand = SessionBuilder(9)
    grand.user("sub-sub-task")
    one_call(grand)
    store.save(GRANDCHILD, grand.data, parent_id=CHILD)
    return {ROOT: b.data, CHILD: child.data, GRANDCHILD: grand.data}


@pytest.fixture(scope="module")
def pi_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict[str, Any]]]:
    path = str(tmp_path_factory.mktemp("pi") / "pi.db")
    with eventlog.open(path) as store:
        sessions = save_pi_tree(store)
    return path, sessions


def test_a_pi_run_has_a_span_per_turn_and_per_tool_call(pi_store: tuple[str, Any], tmp_path: Path) -> None:
    path, sessions = pi_store
    spans = validated(export(path, ROOT, tmp_path))
    entries = sessions[ROOT]["entries"]
    (agent,) = of(spans, ROOT, "invoke_agent")
    assert agent["name"] == "invoke_agent coder" and attrs(agent)["gen_ai.agent.name"] == "coder"
    assert attrs(agent)["gen_ai.provider.name"] == "anthropic"  # (every turn's)
    assert attrs(agent)["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert "parentSpanId" not in agent
    by_id = {e["id"]: e for e in entries}
    turns = of(spans, ROOT, "chat")
    model_entries = [e for e in entries if e["message"]["role"] == "assistant"]
    assert [attrs(s)["eventlog.item.id"] for s in turns] == [e["id"] for e in model_entries]
    for span, entry in zip(turns, model_entries, strict=True):
        m, a = entry["message"], attrs(span)
        assert span["name"] == "chat claude-sonnet-4-5" and span["parentSpanId"] == agent["spanId"]
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == m["model"]
        assert a["gen_ai.provider.name"] == m["provider"] == "anthropic"
        u = m["usage"]
        assert a["gen_ai.usage.input_tokens"] == u["input"] + u["cacheRead"] + u["cacheWrite"]
        assert a["gen_ai.usage.output_tokens"] == u["output"]
        assert a["gen_ai.usage.cache_read.input_tokens"] == u["cacheRead"]
        # from its prompt (its parent entry: the rewound turn's is the first prompt) to itself
        assert times(span) == (_ms(by_id[entry["parentId"]]), _ms(entry))
    assert times(turns[-1])[0] == _ms(entries[0])  # the abandoned branch's turn
    calls = of(spans, ROOT, "execute_tool")
    results = [e for e in entries if e["message"]["role"] == "toolResult"]
    assert len(calls) == len(results) + 1 == 4
    unanswered = calls.pop()  # the abandoned branch's: it starts and ends at its call
    assert times(unanswered) == (_ms(entries[-1]),) * 2 and "status" not in unanswered
    for span, result in zip(calls, results, strict=True):
        a, call_entry = attrs(span), by_id[result["parentId"]]
        (block,) = [c for c in call_entry["message"]["content"] if c["type"] == "toolCall"]
        assert span["name"] == f"execute_tool {block['name']}" and a["gen_ai.tool.name"] == block["name"]
        assert a["gen_ai.tool.call.id"] == block["id"] == result["message"]["toolCallId"]
        assert a["gen_ai.tool.type"] == "function" and span["parentSpanId"] == agent["spanId"]
        assert times(span) == (_ms(call_entry), _ms(result))  # the call to its result
        failed = result["message"]["isError"]
        assert ("status" in span) == failed == (a.get("error.type") == "tool_error")
        if failed:
            assert span["status"]["code"] == 2 and span["status"]["message"]
    assert times(agent) == (min(_ms(e) for s in sessions.values() for e in s["entries"]),
                            max(_ms(e) for s in sessions.values() for e in s["entries"]))  # fmt: skip


def test_sub_agents_are_child_spans_in_the_same_trace(pi_store: tuple[str, Any], tmp_path: Path) -> None:
    path, sessions = pi_store
    spans = validated(export(path, ROOT, tmp_path))
    (root,) = of(spans, ROOT, "invoke_agent")
    (child,) = of(spans, CHILD, "invoke_agent")
    (grand,) = of(spans, GRANDCHILD, "invoke_agent")
    assert child["name"] == f"invoke_agent {CHILD}" and "gen_ai.agent.name" not in attrs(child)
    assert child["parentSpanId"] == root["spanId"] and grand["parentSpanId"] == child["spanId"]
    assert {s["traceId"] for s in spans} == {root["traceId"]}
    for session, agent, below in ((CHILD, child, [CHILD, GRANDCHILD]), (GRANDCHILD, grand, [GRANDCHILD])):
        dated = [_ms(e) for s in below for e in sessions[s]["entries"]]
        assert times(agent) == (min(dated), max(dated))  # its items' and its sub-agents'
        assert times(agent)[0] == _ms(sessions[session]["entries"][0])
        for span in of(spans, session, "chat") + of(spans, session, "execute_tool"):
            assert span["parentSpanId"] == agent["spanId"]
    assert len(of(spans, CHILD, "execute_tool")) == 1 and len(of(spans, GRANDCHILD, "execute_tool")) == 1
    assert len(of(spans, GRANDCHILD, "chat")) == 1
    # exporting the child alone: its own trace, rooted at it, the same spans below
    alone = validated(export(path, CHILD, tmp_path))
    assert "parentSpanId" not in alone[0] and alone[0]["spanId"] == child["spanId"]
    assert alone[0]["traceId"] != root["traceId"]
    subtree = [s for s in spans if attrs(s)["gen_ai.conversation.id"] in (CHILD, GRANDCHILD)]
    assert [s["spanId"] for s in alone] == [s["spanId"] for s in subtree]
    assert [s["name"] for s in alone] == [s["name"] for s in subtree]


def test_a_run_that_ends_on_a_model_error(tmp_path: Path) -> None:
    """pi's ``stopReason: "error"``: the turn and the session's span are errors,
    with the ``errorMessage``."""
    path = str(tmp_path / "err.db")
    b = SessionBuilder(11)
    b.user("go")
    failed = b.assistant()["message"]
    failed.update(content=[{"type": "text", "text": "Let me see"}], stopReason="error",
                  errorMessage="529 overloaded_error: Overloaded")  # fmt: skip
    with eventlog.open(path) as store:
        store.save("s", b.data)
    spans = validated(export(path, "s", tmp_path))
    agent, turn = spans
    assert attrs(turn)["gen_ai.operation.name"] == "chat" and of(spans, "s", "execute_tool") == []
    for span in (agent, turn):
        assert attrs(span)["error.type"] == "model_error"
        assert span["status"] == {"code": 2, "message": "529 overloaded_error: Overloaded"}


def test_two_exports_are_equal_and_stdout_is_the_file(pi_store: tuple[str, Any], tmp_path: Path) -> None:
    path, _ = pi_store
    first = (tmp_path / "a.json", tmp_path / "b.json")
    for out in first:
        assert cli("export", path, ROOT, "--otel", "-o", str(out)).exit_code == 0
    assert first[0].read_bytes() == first[1].read_bytes()
    assert cli("export", path, ROOT, "--otel").stdout == first[0].read_text("utf-8")


def test_usage_errors(pi_store: tuple[str, Any]) -> None:
    path, _ = pi_store
    for args, fragment in ((["--otel", "--at", "2"], "--at"), (["--otel", "--allow-nan"], "--allow-nan"),
                           (["--format", "pi"], "--format")):  # fmt: skip
        res = cli("export", path, ROOT, *args)
        assert res.exit_code == 2 and fragment in res.output, res.output
    assert cli("export", path, ROOT, "--otel", "--format", "yaml").exit_code == 2
    one_line_error(cli("export", path, "nobody", "--otel"), "nobody")
    # without --otel, export is as it was: the session as JSON
    assert json.loads(cli("export", path, ROOT).stdout)["entries"][0]["type"] == "message"


# ----------------------------------------------------------------------------- other dialects


def _event_ms(store: eventlog.Store, session: str) -> dict[int, int]:
    return {e.seq: e.timestamp_ms for e in store.events(session, since=store.info(session).history_start)}


def test_a_chat_completions_run(tmp_path: Path) -> None:
    """Times are when each item was saved (chat items carry none); the model is
    the request's (the session's ``model``), no response model, usage or provider
    is known; the failing booking is an error."""
    path = str(tmp_path / "chat.db")
    with eventlog.open(path) as store:
        for state in ds.chat_states(ds.b64png(ds.MAGENTA)):
            store.save("chat", state)
        saved = _event_ms(store, "chat")
    spans = validated(export(path, "chat", tmp_path))
    turns, calls = of(spans, "chat", "chat"), of(spans, "chat", "execute_tool")
    assert [s["name"] for s in turns] == ["chat gpt-x", "chat gpt-x"]
    (agent,) = of(spans, "chat", "invoke_agent")
    assert attrs(agent)["gen_ai.request.model"] == "gpt-x" and "gen_ai.provider.name" not in attrs(agent)
    for s in turns:
        assert set(attrs(s)) == {"gen_ai.operation.name", "gen_ai.conversation.id", "gen_ai.request.model",
                                 "eventlog.item.index"}  # fmt: skip
    # items 0-1 saved by event 1, 2 by 2, 3-4 by 3, 5 by 4
    assert [times(s) for s in turns] == [(saved[1], saved[2]), (saved[3], saved[4])]
    assert [(attrs(s)["gen_ai.tool.name"], attrs(s)["gen_ai.tool.call.id"]) for s in calls] == [
        ("find_table", "call_a"), ("book", "call_b")]  # fmt: skip
    assert [times(s) for s in calls] == [(saved[2], saved[3])] * 2
    assert "status" not in calls[0] and attrs(calls[1])["error.type"] == "tool_error"
    assert calls[1]["status"]["message"] == "ValueError: the restaurant is closed"


def test_undated_items_are_put_at_the_session_start(tmp_path: Path) -> None:
    """Items older than the history kept by ``compact --retain`` have no time (chat
    items carry none): their turns and calls are put at the session span's start,
    with no length; the items saved since keep their times."""
    path = str(tmp_path / "old.db")
    messages = ds.chat_states(ds.b64png(ds.MAGENTA))[-1]["messages"]
    with eventlog.open(path) as store:
        for n in range(1, len(messages) + 1):
            store.save("chat", {"model": "gpt-x", "messages": messages[:n]})
        store.compact(retain=1)
        last = max(_event_ms(store, "chat").values())
    spans = validated(export(path, "chat", tmp_path))
    (agent,) = of(spans, "chat", "invoke_agent")
    assert times(agent) == (last, last)  # the one dated item: the reply, saved last
    turns, calls = of(spans, "chat", "chat"), of(spans, "chat", "execute_tool")
    assert [times(s) for s in turns + calls] == [(last, last)] * 4
    assert [attrs(s)["eventlog.item.index"] for s in turns] == [2, 5]


def test_a_run_of_no_known_dialect_is_one_agent_span(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    with eventlog.open(path) as store:
        for state in ds.generic_states():
            store.save("generic", state)
    (span,) = validated(export(path, "generic", tmp_path))
    assert attrs(span)["eventlog.dialect"] == "generic"


def test_an_agents_sdk_run(tmp_path: Path) -> None:
    """The real Agents SDK's items: the reasoning and the call of one response are
    one turn; the computer call is a built-in tool (no ``gen_ai.tool.type``); the
    tool that raised is an error."""
    ds.need("agents", "EVENTLOG_REQUIRE_AGENTS")
    path = str(tmp_path / "sdk.db")
    ds.agents_sdk_session(path)
    with eventlog.open(path) as store:
        items = store.fold("conv")["entries"]
    spans = validated(export(path, "conv", tmp_path))
    turns, calls = of(spans, "conv", "chat"), of(spans, "conv", "execute_tool")
    assert [attrs(s).get("eventlog.item.id") for s in turns] == ["rs_1", "cu_1", "fc_3", "msg_4", "msg_5"]
    assert [s["name"] for s in turns] == ["chat"] * 5  # (the scripted model records no model name)
    assert [(attrs(s)["gen_ai.tool.name"], attrs(s)["gen_ai.tool.call.id"], attrs(s).get("gen_ai.tool.type"))
            for s in calls] == [("weather", "call_weather", "function"), ("computer", "call_click", None),
                                ("broken", "call_broken", "function")]  # fmt: skip
    assert [("status" in s) for s in calls] == [False, False, True]
    assert calls[2]["status"]["message"] == "An error occurred while running the tool."
    assert [items[attrs(s)["eventlog.item.index"]]["call_id"] for s in calls] == [
        "call_weather", "call_click", "call_broken"]  # fmt: skip
    for s in spans:
        assert times(s)[0] <= times(s)[1]


def test_langgraph_runs_in_each_shape(tmp_path: Path) -> None:
    """LangChain messages as LangGraph saves them, in the three shapes: the same
    spans; the tool that raised is an error, its message the exception's line."""
    ds.need("langgraph", "EVENTLOG_REQUIRE_LANGGRAPH")
    path = str(tmp_path / "lg.db")
    made = ds.langgraph_session(path)
    shapes = []
    for session in made["sessions"]:
        spans = validated(export(path, session, tmp_path))
        assert attrs(spans[0])["eventlog.dialect"] == "langchain"
        calls = of(spans, session, "execute_tool")
        assert [attrs(s)["gen_ai.tool.call.id"] for s in calls] == ["call_weather", "call_broken", "call_shot"]
        assert calls[1]["status"]["message"] == "Error: ValueError('the disk is on fire')"
        assert "status" not in calls[0] and "status" not in calls[2]
        shapes.append([(s["name"], attrs(s).get("eventlog.item.index")) for s in spans[1:]])
    assert shapes[0] == shapes[1] == shapes[2]
    assert [name for name, _ in shapes[0]] == ["chat"] * 3 + ["execute_tool weather", "execute_tool broken",
                                                               "execute_tool take_screenshot"]  # fmt: skip


def test_values_past_what_otlp_holds_are_left_out(tmp_path: Path) -> None:
    """Token counts past int64, times past fixed64 nanoseconds, costs that add up
    to infinity: the trace still parses, and the viewer still renders."""
    path = str(tmp_path / "odd.db")
    with eventlog.open(path) as store:
        store.save("odd", {"messages": [
            {"role": "user", "content": "q", "timestamp": 99_999_999_999},  # (year 5138 in s: no time)
            {"role": "assistant", "content": "a", "usage": {"prompt_tokens": 2**63, "completion_tokens": 1,
                                                            "cost": 1e308}},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "b", "usage": {"prompt_tokens": 2**53, "completion_tokens": 2**53,
                                                            "cost": 1e308}}]})  # fmt: skip
    spans = validated(export(path, "odd", tmp_path))
    assert all(int(s["endTimeUnixNano"]) < 2**64 for s in spans)
    out = tmp_path / "odd.html"
    res = cli("view", path, "odd", "-o", str(out))
    assert res.exit_code == 0, res.output
    st_ = json.loads(cli("stats", path, "odd", "--json").stdout)
    assert st_["cost"] is None and st_["tokens"]["output"] == 1 + 2**53


# ----------------------------------------------------------------------------- --otlp-endpoint


class _Receiver(http.server.BaseHTTPRequestHandler):
    status = 200
    answer = b"{}"
    got: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((self.path, self.headers["Content-Type"], body))
        if self.status in (301, 302, 303, 307):
            self.send_response(self.status)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.status == 0:  # not HTTP at all
            self.wfile.write(b"HELLO THERE\r\n\r\n")
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    """A local OTLP/HTTP receiver: its URL and its handler class (``got``: what
    was POSTed; ``status`` and ``answer``: what it answers)."""
    handler = type("Handler", (_Receiver,), {"got": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_endpoint_receives_the_file(pi_store: tuple[str, Any], tmp_path: Path,
                                        receiver: tuple[str, type[_Receiver]]) -> None:  # fmt: skip
    path, _ = pi_store
    url, handler = receiver
    out = tmp_path / "t.json"
    res = cli("export", path, ROOT, "--otel", "-o", str(out), "--otlp-endpoint", url)
    assert res.exit_code == 0 and res.stdout == "", res.output
    ((where, kind, body),) = handler.got
    assert (where, kind) == ("/v1/traces", "application/json")
    assert body.decode("utf-8") + "\n" == out.read_text("utf-8")
    validated(json.loads(body))
    # a URL that ends with /v1/traces is used as it is; --otlp-endpoint alone writes nothing
    res = cli("export", path, ROOT, "--otlp-endpoint", url + "/v1/traces/")
    assert res.exit_code == 0 and res.stdout == ""
    assert handler.got[1] == handler.got[0]


def test_an_endpoint_that_fails_is_a_one_line_error(pi_store: tuple[str, Any],
                                                     receiver: tuple[str, type[_Receiver]]) -> None:  # fmt: skip
    path, _ = pi_store
    url, handler = receiver
    handler.status, handler.answer = 500, b"the collector is down\nmore"
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", url), "500", "the collector is down")
    handler.status, handler.answer = 200, b'{"partialSuccess": {"rejectedSpans": "3", "errorMessage": "too old"}}'
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", url), "rejected 3 span", "too old")
    handler.answer = b'{"partialSuccess": {}}'
    assert cli("export", path, ROOT, "--otlp-endpoint", url).exit_code == 0
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", f"http://127.0.0.1:{port}"), "cannot reach",
                   f"127.0.0.1:{port}/v1/traces")  # fmt: skip
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", "localhost:4318"), "not an http")
    for bad in ("http://[::1", "http://127.0.0.1:abc/", url + "/a b"):
        one_line_error(cli("export", path, ROOT, "--otlp-endpoint", bad), "")
    # a redirect is not followed (urllib would turn the POST into a GET without the trace)
    for code in (301, 302, 303, 307):
        handler.status = code
        one_line_error(cli("export", path, ROOT, "--otlp-endpoint", url), str(code), "not followed")
    handler.status = 0
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", url), "")
    handler.status = 200
    handler.answer = b'{"partialSuccess": {"rejectedSpans": "1", "errorMessage": "bad\\nline two"}}'
    one_line_error(cli("export", path, ROOT, "--otlp-endpoint", url), "rejected 1 span", "bad")


# ----------------------------------------------------------------------------- PostgreSQL


def test_the_same_export_from_postgresql(pi_store: tuple[str, Any]) -> None:
    path, _ = pi_store
    admin_url()  # (skipped here, or failed in CI, without a server)
    with store_urls() as new:
        url = new()
        with eventlog.open(url) as store:
            save_pi_tree(store)
            on_postgres = trace(store, ROOT)
        assert cli("export", url, ROOT, "--otel").stdout.strip() == json.dumps(on_postgres, ensure_ascii=False,
                                                                               separators=(",", ":"))  # fmt: skip
    with eventlog.open(path, readonly=True) as store:
        on_sqlite = trace(store, ROOT)
    assert on_postgres == on_sqlite
    validated(on_sqlite)
