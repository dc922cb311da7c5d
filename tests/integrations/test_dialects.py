"""The debugging tools read every common message dialect (eventlog/dialects.py).

Sessions written by the real libraries where one exists (the OpenAI Agents SDK's
``Runner`` through ``EventlogSession``; a LangGraph graph with a fake chat model),
chat-completions sessions made by hand, and sessions of no known dialect; each
through ``replay``, ``show``, ``log`` and ``diff``, in the terminal and as ``--json``.
The page of ``view`` is checked here as data (its timeline rebuilds every state) and
in a real browser in tests/integrations/test_viewer_dialects.py.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import dialects, render
from eventlog.cli import main
from eventlog.dialects import locate
from eventlog.testing import histories, json_values
from eventlog.viewer import _Blobs, _Timeline, page

from . import dialect_sessions as ds


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1"}, catch_exceptions=False)


def replay_json(path: str, session: str, *more: str) -> list[dict[str, Any]]:
    res = cli("replay", path, session, "--json", *more)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def lines_after(text: str, start: str) -> list[str]:
    """The lines of ``text`` from the first that starts with ``start``."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[i:]


# ----------------------------------------------------------------------------- finding the conversation

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize(
    ("session", "where"),
    [
        ({"entries": CHAT}, ("entries",)),
        ({"messages": CHAT, "model": "m"}, ("messages",)),
        ({"items": CHAT}, ("items",)),
        ({"thread": "t", "state": {"messages": CHAT, "step": 3}}, ("state", "messages")),
        ({"v": 4, "channel_values": {"messages": CHAT}, "channel_versions": {"messages": 2}},
         ("channel_values", "messages")),
        ({"checkpoint": {"channel_values": {"messages": CHAT}}}, ("checkpoint", "channel_values", "messages")),
        # the list with items of a known dialect wins over a longer list of anything else
        ({"tags": [{"k": i} for i in range(9)], "history": CHAT}, ("history",)),
        # nothing known: a usual name, then the longest list of dicts
        ({"a": [{"x": 1}], "b": [{"x": 1}, {"x": 2}]}, ("b",)),
        ({"b": [{"x": 1}, {"x": 2}], "steps": [{"x": 1}]}, ("steps",)),
    ],
)  # fmt: skip
def test_the_conversation_is_found_where_it_is(session: dict[str, Any], where: tuple[str, ...]) -> None:
    conv = locate(session)
    assert conv.path == where and conv.items is dialects.at_path(session, where)


def test_a_session_without_a_list_is_one_generic_item() -> None:
    conv = locate({"status": "ok", "n": [1, 2]})
    assert (conv.dialect, conv.path, conv.items) == ("generic", None, [{"status": "ok", "n": [1, 2]}])
    assert locate({}).items == []
    lines = render.transcript(dialects.messages(conv))
    assert lines == [("item", "status=ok, n=[1, 2]")]


@pytest.mark.parametrize(
    ("items", "path", "dialect"),
    [
        ([{"type": "message", "id": "a", "parentId": None, "message": {"role": "user", "content": "x"}}], ("entries",),
         "pi"),
        ([{"role": "user", "content": [{"type": "input_text", "text": "x"}]}], ("entries",), "openai"),
        ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}], ("items",), "openai"),
        ([{"role": "assistant", "content": None, "tool_calls": []}], ("messages",), "chat"),
        ([{"role": "tool", "tool_call_id": "c", "content": "x"}], ("entries",), "chat"),
        ([{"type": "human", "data": {"content": "x", "type": "human"}}], ("messages",), "langchain"),
        ([{"content": "x", "type": "ai", "tool_calls": [], "id": "1"}], ("messages",), "langchain"),
        ([{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
           "kwargs": {"content": "x"}}], ("messages",), "langchain"),
        # text alone reads the same either way: the list's name decides
        (CHAT, ("messages",), "chat"),
        (CHAT, ("entries",), "openai"),
        ([{"step": 1}, {"step": 2}], ("log",), "generic"),
        # fewer than half the items of a dialect: generic
        ([{"role": "user", "content": "x"}, {"a": 1}, {"b": 2}], ("log",), "generic"),
    ],
)  # fmt: skip
def test_the_dialect_is_told_from_the_items(items: list[Any], path: tuple[str, ...], dialect: str) -> None:
    assert dialects.detect(items, path)[0] == dialect


def test_a_forced_format_reads_the_list_in_that_dialect() -> None:
    session = {"messages": CHAT}
    assert locate(session, "generic").dialect == "generic"
    assert locate(session, "openai").dialect == "openai"
    assert render.transcript(dialects.messages(locate(session, "generic"))) == [("user", "hi"), ("assistant", "hello")]
    assert locate({"messages": CHAT, "log": [{"type": "function_call"}]}, "openai").path == ("messages",)
    with pytest.raises(eventlog.InvalidValueError, match="unknown format"):
        locate(session, "yaml")


@given(json_values(40), st.sampled_from(dialects.FORMATS))
def test_any_value_is_read_without_error_and_every_item_is_shown(value: Any, fmt: str) -> None:
    """Whatever a session holds, locating and reading it never fails, and the
    transcript has at least one line per item (never an empty pane)."""
    session = value if type(value) is dict else {"x": value}
    conv = locate(session, fmt)
    msgs = dialects.messages(conv)
    assert len(msgs) == len(conv.items)
    lines = render.transcript(msgs, full=True)
    assert len(lines) >= len(msgs) - len(dialects.pairs(msgs)) and (lines or not conv.items)
    items = render.transcript_items(conv, msgs)
    assert {i["index"] for i in items} <= set(range(len(conv.items)))
    for m in msgs:
        render.message_summary(m)


_KNOWN = st.sampled_from(
    [
        {"role": "user", "content": [{"type": "input_text", "text": "t"}, {"type": "input_image"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "not json"},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": 3}]},
        {"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}},
        {"type": "reasoning", "summary": None},
        {"role": "assistant", "tool_calls": [{"function": None}, 5, {"id": 1}]},
        {"role": "tool", "content": [{"type": "image_url", "image_url": None}]},
        {"type": "ai", "data": {"content": [{"type": "tool_use"}], "tool_calls": "x", "invalid_tool_calls": [{}]}},
        {"type": "tool", "data": {"content": None, "status": "error"}},
        {"type": "message", "id": "a", "parentId": None, "message": {"role": "toolResult", "content": 3}},
        {"type": "mcp_call", "name": "n", "arguments": "{}", "error": {"x": 1}},
        {"type": "image_generation_call", "result": "aGVsbG8="},
    ]
)


@given(st.lists(_KNOWN | json_values(8), max_size=8), st.sampled_from(["entries", "messages", "items"]),
       st.sampled_from(dialects.FORMATS))  # fmt: skip
def test_malformed_items_of_every_dialect_are_read_without_error(items: list[Any], name: str, fmt: str) -> None:
    conv = locate({name: copy.deepcopy(items)}, fmt)
    msgs = dialects.messages(conv)
    assert len(render.transcript(msgs)) >= len(msgs) - len(dialects.pairs(msgs))
    json.dumps(render.transcript_items(conv, msgs), default=repr)


# ----------------------------------------------------------------------------- the view's timeline, as data


def page_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert found
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def unblob(value: Any, blobs: list[str]) -> Any:
    if type(value) is list:
        return [unblob(v, blobs) for v in value]
    if type(value) is dict:
        if "$dict" in value:  # a dict of the session's own that has a marker's key
            return {k: unblob(v, blobs) for k, v in value["$dict"].items()}
        if "$blob" in value:
            return blobs[value["$blob"]]
        return {k: unblob(v, blobs) for k, v in value.items()}
    return value


#: What the page adds to an item, as a run reads it (see test_serve.py).
RUN_KEYS = frozenset({"time", "usage", "seq", "took"})


def read(item: dict[str, Any], blobs: list[str]) -> Any:
    """An item of the page as its dialect reads it (the run's figures left out)."""
    return unblob({k: v for k, v in item.items() if k not in RUN_KEYS}, blobs)


def steps_until(data: dict[str, Any], n: int) -> tuple[list[int], dict[str, Any], str, Any]:
    """What the page's script computes for the slider at ``n`` (its stateAt)."""
    conv: list[int] = []
    fields: dict[str, Any] = {}
    dialect, where = "generic", None
    for st_ in data["steps"][: n + 1]:
        del conv[st_["keep"] :]
        conv += st_["add"]
        fields.update(st_.get("set", {}))
        if "order" in st_:
            fields = {k: fields[k] for k in st_["order"]}
        if "dialect" in st_:
            dialect, where = st_["dialect"], st_["list"]
    return conv, fields, dialect, where


def reshape(state: dict[str, Any], how: str) -> dict[str, Any]:
    """A pi history's state moved elsewhere: its entries as ``messages``, or nested."""
    if how == "entries":
        return state
    out = {k: v for k, v in state.items() if k != "entries"}
    if how == "messages":
        out["messages"] = state.get("entries")
    else:
        out["state"] = {"messages": state.get("entries"), "step": len(out)}
    return out


@given(histories(max_steps=5, image_size=2_000, big=5_000), st.sampled_from(["entries", "messages", "nested"]),
       st.sampled_from(["auto", "generic", "chat"]))  # fmt: skip
@example(  # a dict of the session's own with a key the page reads as a marker: shown as it is
    [{"entries": [], "metadata": {}}, {"entries": [], "metadata": {"$blob": False, "$dict": [1], "$bytes": "x"}}],
    "entries",
    "auto",
)
@example(  # a nested dict changed in place by the fold (an At operation): the page kept the old one
    history=[{"version": 5, "entries": [], "metadata": {}}, {"version": 5, "entries": [], "metadata": {"": None}}],
    how="entries",
    fmt="auto",
)
@example(
    history=[{"entries": [{"type": "compaction", "id": "0"}], "metadata": {}},
             {"entries": [{"type": "compaction", "id": "0"}], "metadata": {"": None}}],
    how="messages",
    fmt="generic",
)  # fmt: skip
@example(  # a field outside the conversation holding a long string (a blob on the page)
    history=[{"entries": [], "metadata": {"note": "x" * 5000}}],
    how="entries",
    fmt="auto",
)
def test_the_pages_timeline_rebuilds_every_state(
    tmp_path_factory: pytest.TempPathFactory, history: list[dict[str, Any]], how: str, fmt: str
) -> None:
    """Folding the page's steps up to any point gives the conversation of the
    session folded at that point, each item read in the dialect, and its fields."""
    path = str(tmp_path_factory.mktemp("page") / "s.db")
    states = [reshape(s, how) for s in history]
    with eventlog.open(path) as store:
        for s in states:
            store.save("s", s)
        data = page_data(page(store, "s", fmt))
    final = locate(states[-1], fmt)
    for n, state in enumerate([{}, *states]):
        numbers, fields, dialect, where = steps_until(data, n)
        assert data["steps"][n]["seq"] == n
        items = dialects.at_path(state, final.path)
        conv = final if items is not None else locate(state, fmt)
        items = items if items is not None else conv.items
        assert (dialect, where) == (conv.dialect, list(conv.path) if conv.path is not None else None)
        expected = _Timeline(fmt, conv)
        want = [expected.items[expected.number(item, conv.dialect)] for item in items]
        assert [read(data["items"][i], data["blobs"]) for i in numbers] == [
            read(w, expected.blobs.items) for w in want
        ]
        shown = dialects.without(state, conv.path, render.CONVERSATION) if conv.path is not None else {}
        norm = _Blobs()  # (bytes, non-finite floats and marker-keyed dicts as the page writes them)
        assert unblob(fields, data["blobs"]) == unblob(norm.value(shown), norm.items)
        assert list(fields) == list(shown)


# ----------------------------------------------------------------------------- chat completions (by hand)


@pytest.fixture(scope="module")
def chat_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("chat") / "chat.db")
    with eventlog.open(path) as store:
        for state in ds.chat_states(ds.b64png(ds.MAGENTA)):
            store.save("chat", state)
        for state in ds.generic_states():
            store.save("generic", state)
        store.save("bare", {"status": "done", "score": 0.5})
        shot = "data:image/png;base64," + ds.b64png(ds.YELLOW, 64, 64)
        store.save("generic-image", {"frames": [{"t": 1, "frame": {"screen": shot, "title": "home"}}]})
    return path


def test_chat_completions_replay_pairs_results_with_calls(chat_store: str) -> None:
    text = cli("replay", chat_store, "chat").stdout
    assert lines_after(text, "system:")[:9] == [
        "system: You are a helpful assistant.",
        "user: Book a table for two, and what is this?",
        f"user: [image image/png, {render.human_bytes(len(ds.png(320, 200, ds.MAGENTA)))}]",
        "assistant → find_table: people=2",
        "  result find_table: table 7 is free",  # the tool's name, from its call
        "assistant → book: table=7",
        "  result book (error): Traceback (most recent call last):",  # an exception: an error
        "  ValueError: the restaurant is closed",
        "assistant: Table 7 is free but booking failed; the picture is a magenta square.",
    ]


def test_chat_completions_replay_json(chat_store: str) -> None:
    items = replay_json(chat_store, "chat")
    assert {(i["dialect"], tuple(i["list"])) for i in items} == {("chat", ("messages",))}
    calls = [i for i in items if i["kind"] == "tool_call"]
    assert [(c["tool"], c["tool_call_id"], c["arguments"]) for c in calls] == [
        ("find_table", "call_a", {"people": 2}),  # the JSON string of arguments, parsed: data
        ("book", "call_b", {"table": 7}),
    ]
    results = [i for i in items if i["kind"] == "tool_result"]
    assert [(r["tool"], r["tool_call_id"], r["is_error"], r["role"], r["speaker"]) for r in results] == [
        ("find_table", "call_a", False, "tool", "tool"),
        ("book", "call_b", True, "tool", "tool"),
    ]
    image = next(i for i in items if i["kind"] == "image")
    assert image["mime_type"] == "image/png" and image["bytes"] == len(ds.png(320, 200, ds.MAGENTA))
    assert "source" not in image and "data" not in image  # the image itself is in export
    assert [i["speaker"] for i in items if i["kind"] == "text"] == ["system", "user", "assistant"]


def test_chat_completions_show_log_diff(chat_store: str) -> None:
    shown = cli("show", chat_store, "chat").stdout
    assert "conversation: messages, 6 items, dialect chat" in shown
    assert re.search(r"2 +message/assistant .* find_table\(people=2\) book\(table=7\)", shown)
    assert re.search(r"4 +message/tool .* book \(error\): Traceback", shown)
    log = cli("log", chat_store, "chat").stdout
    # each save adds to the list at its path (issue 17): the items it added are its inserts
    assert re.search(r"\n2 .* insert +message/assistant .* messages: .*find_table", log)
    assert re.search(r"\n3 .* insert +message/tool .* messages: .*find_table: table 7 is free", log)
    rows = json.loads(cli("log", chat_store, "chat", "--json").stdout)
    assert {(r["dialect"], tuple(r["list"])) for r in rows} == {("chat", ("messages",))}
    changes = json.loads(cli("diff", chat_store, "chat", "2", "4", "--json").stdout)
    added = [c for c in changes if c["kind"] == "added"]
    assert [(c["key"], c["index"], c["after"]["role"], c["dialect"], c["list"]) for c in added] == [
        ("#3", 3, "tool", "chat", ["messages"]), ("#4", 4, "tool", "chat", ["messages"]),
        ("#5", 5, "assistant", "chat", ["messages"]),
    ]  # fmt: skip
    assert not [c for c in changes if c["kind"] == "field"]  # the list is not a field here
    human = cli("diff", chat_store, "chat", "2", "4").stdout
    assert "+ added #4: message/tool: book (error): Traceback" in human


def test_a_session_of_no_known_dialect_is_shown_generically(chat_store: str) -> None:
    text = cli("replay", chat_store, "generic").stdout.splitlines()
    assert text == [
        "item: step=plan, note=look at the logs first, at=1",
        "item: step=run, command=grep -c ERROR app.log, exit=0, stdout=42",
        'item: step=report, findings={"errors": 42, "worst": "disk full"}',
    ]
    items = replay_json(chat_store, "generic")
    assert [(i["kind"], i["dialect"], i["list"], i["value"]) for i in items] == [
        ("item", "generic", ["log"], s) for s in ds.generic_states()[-1]["log"]
    ]
    assert "conversation: log, 3 items, dialect generic" in cli("show", chat_store, "generic").stdout
    bare = cli("replay", chat_store, "bare").stdout
    assert bare.strip() == "item: status=done, score=0.5"  # no list at all: the session itself
    assert "conversation: (the session), 1 item" in cli("show", chat_store, "bare").stdout


def test_images_in_items_of_no_known_dialect_are_found(chat_store: str) -> None:
    size = render.human_bytes(len(ds.png(64, 64, ds.YELLOW)))
    for full in ([], ["--full"]):  # the data URL is never printed whole
        text = cli("replay", chat_store, "generic-image", *full).stdout.splitlines()
        assert text == [f'item: t=1, frame={{"screen": "[image/png, {size}]", "title": "home"}}',
                        f"item: [image image/png, {size}]"]  # fmt: skip
    items = replay_json(chat_store, "generic-image")
    assert [(i["kind"], i.get("mime_type")) for i in items] == [("item", None), ("image", "image/png")]


def test_format_forces_the_dialect(chat_store: str) -> None:
    items = replay_json(chat_store, "chat", "--format", "generic")
    assert {i["kind"] for i in items} == {"item", "image"} and {i["dialect"] for i in items} == {"generic"}
    assert "dialect generic" in cli("show", chat_store, "chat", "--format", "generic").stdout
    for command in (["replay"], ["show"], ["log"], ["diff", "1", "2"]):
        res = cli(command[0], chat_store, "chat", *command[1:], "--format", "yaml")
        assert res.exit_code == 2 and "yaml" in res.output  # a usage error


# ----------------------------------------------------------------------------- OpenAI Agents SDK (the real Runner)


@pytest.fixture(scope="module")
def sdk_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    ds.need("agents", "EVENTLOG_REQUIRE_AGENTS")
    path = str(tmp_path_factory.mktemp("sdk") / "sdk.db")
    return path, ds.agents_sdk_session(path)


def test_agents_sdk_replay(sdk_store: tuple[str, dict[str, Any]]) -> None:
    path, _ = sdk_store
    text = cli("replay", path, "conv").stdout
    shot = len(ds.png(320, 200, ds.CYAN))
    with eventlog.open(path, readonly=True) as store:  # the SDK's own wording of a failed tool, which changes
        failed = [i["output"] for i in store.load("conv")["entries"]  # type: ignore[index]
                  if i.get("type") == "function_call_output" and i.get("call_id") == "call_broken"]  # fmt: skip
    assert text.splitlines() == [
        "user: What is the weather like in Paris?",
        f"user: [image image/png, {render.human_bytes(len(ds.png(64, 64, ds.YELLOW)))}]",
        "assistant thinking: The user wants the weather.",
        "assistant → weather: city=Paris",
        "  result weather: sunny in Paris",
        "assistant → computer: button=left, type=click, x=10, y=20",
        f"  result computer: [image image/png, {render.human_bytes(shot)}]",  # the screenshot
        "assistant → broken: (no arguments)",
        f"  result broken (error): {failed[0]}",
        "assistant: All done (4).",
        "user: Thanks, that is all.",
        "assistant: All done (5).",
    ]


def test_agents_sdk_replay_json(sdk_store: tuple[str, dict[str, Any]]) -> None:
    path, _ = sdk_store
    items = replay_json(path, "conv")
    assert {(i["dialect"], tuple(i["list"])) for i in items} == {("openai", ("entries",))}
    kinds = [(i["index"], i["kind"], i["speaker"]) for i in items]
    assert kinds == [
        (0, "text", "user"), (0, "image", "user"), (1, "thinking", "assistant"), (2, "tool_call", "assistant"),
        (3, "tool_result", "tool"), (4, "tool_call", "assistant"), (5, "image", "tool"), (6, "tool_call", "assistant"),
        (7, "tool_result", "tool"), (8, "text", "assistant"), (9, "text", "user"), (10, "text", "assistant"),
    ]  # fmt: skip
    assert items[3]["arguments"] == {"city": "Paris"} and items[3]["tool_call_id"] == "call_weather"
    assert items[4]["tool"] == "weather" and items[4]["tool_call_id"] == "call_weather" and not items[4]["is_error"]
    assert items[5]["arguments"] == {"button": "left", "type": "click", "x": 10, "y": 20}
    assert items[6]["tool"] == "computer" and items[6]["tool_call_id"] == "call_click"
    assert items[6]["bytes"] == len(ds.png(320, 200, ds.CYAN)) and items[6]["mime_type"] == "image/png"
    assert items[8]["is_error"] is True and items[8]["tool"] == "broken"
    assert items[2]["entry"] == "rs_1" and items[0]["entry"] is None and items[0]["role"] == "user"


def test_agents_sdk_show_log_diff(sdk_store: tuple[str, dict[str, Any]]) -> None:
    path, _ = sdk_store
    shown = cli("show", path, "conv").stdout
    assert "conversation: entries, 11 items, dialect openai" in shown
    assert re.search(r"\n4 +cu_1 +computer_call .* computer\(button=left, type=click, x=10, y=20\)", shown)
    assert re.search(r"\n5 +computer_call_output .* computer: \[image image/png", shown)
    assert "◀ leaf" not in shown  # not a tree
    log = cli("log", path, "conv").stdout
    assert re.search(r"insert +function_call .* weather\(city=Paris\)", log)
    assert re.search(r"insert +function_call_output .* weather: sunny in Paris", log)  # named across events
    assert re.search(r"insert +function_call_output .* broken \(error\): An error occurred", log)
    changes = json.loads(cli("diff", path, "conv", "2", "3", "--json").stdout)
    assert [(c["kind"], c["key"], c["dialect"]) for c in changes] == [
        ("added", "cu_1", "openai"), ("added", "#5", "openai")
    ]  # fmt: skip
    human = cli("diff", path, "conv", "2", "3").stdout
    assert "+ added cu_1: computer_call: computer(button=left" in human


# ----------------------------------------------------------------------------- LangGraph (a real graph)


@pytest.fixture(scope="module")
def langgraph_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    ds.need("langgraph", "EVENTLOG_REQUIRE_LANGGRAPH")
    path = str(tmp_path_factory.mktemp("lg") / "lg.db")
    return path, ds.langgraph_session(path)


LANGGRAPH_TRANSCRIPT = [
    "system: Be brief.",
    "user: What is the weather in Paris, and what is on my screen?",
    "assistant → weather: city=Paris",
    "  result weather: sunny in Paris",
    "assistant → broken: (no arguments)",
    "  result broken (error): Error: ValueError('the disk is on fire')",
    "   Please fix your mistakes.",
    "assistant: Let me look.",
    "assistant → take_screenshot: (no arguments)",
    "  result take_screenshot: [image image/png, {shot}]",
    "assistant: It is sunny in Paris; the screen is magenta.",
]


@pytest.mark.parametrize(
    ("session", "where"),
    [("lc-dict", ["messages"]), ("lc-plain", ["state", "messages"]), ("lc-checkpoint", ["channel_values", "messages"])],
)
def test_langgraph_sessions_in_each_shape(langgraph_store: tuple[str, dict[str, Any]], session: str,
                                          where: list[str]) -> None:  # fmt: skip
    path, _ = langgraph_store
    shot = render.human_bytes(len(ds.png(320, 200, ds.MAGENTA)))
    assert cli("replay", path, session).stdout.splitlines() == [
        line.format(shot=shot) for line in LANGGRAPH_TRANSCRIPT
    ]
    items = replay_json(path, session)
    assert {(i["dialect"], tuple(i["list"])) for i in items} == {("langchain", tuple(where))}
    assert [i["role"] for i in items if i["kind"] == "text"] == ["system", "human", "ai", "ai"]
    calls = [(i["tool"], i["tool_call_id"], i["arguments"]) for i in items if i["kind"] == "tool_call"]
    assert calls == [("weather", "call_weather", {"city": "Paris"}), ("broken", "call_broken", {}),
                     ("take_screenshot", "call_shot", {})]  # fmt: skip
    errors = [(i["tool"], i["is_error"]) for i in items if i["kind"] == "tool_result"]
    assert errors == [("weather", False), ("broken", True)]  # ToolMessage status "error"
    image = next(i for i in items if i["kind"] == "image")
    assert (image["tool"], image["tool_call_id"], image["bytes"]) == ("take_screenshot", "call_shot",
                                                                     len(ds.png(320, 200, ds.MAGENTA)))  # fmt: skip
    shown = cli("show", path, session).stdout
    assert f"conversation: {'.'.join(where)}, 8 items, dialect langchain" in shown
    assert re.search(r"\n2 +\S+ +ai .* weather\(city=Paris\) broken\(\)", shown)
    log = cli("log", path, session).stdout
    assert re.search(r"\n5 .* (item|insert) +tool .* take_screenshot: \[image image/png", log)  # insert: at a path
    changes = json.loads(cli("diff", path, session, "1", "2", "--json").stdout)
    assert [(c["kind"], c["index"], c["dialect"], c["list"]) for c in changes] == [
        ("added", 2, "langchain", where)
    ]  # the ai message, keyed by its LangChain id
    assert changes[0]["key"].startswith("lc_run-")


def test_langgraph_forced_as_chat_is_read_generically_where_it_does_not_fit(
    langgraph_store: tuple[str, dict[str, Any]],
) -> None:
    path, _ = langgraph_store
    items = replay_json(path, "lc-dict", "--format", "chat")
    assert {i["kind"] for i in items} <= {"item", "image"} and len({i["index"] for i in items}) == 8


# ----------------------------------------------------------------------------- the pi shape is unchanged


def test_pi_sessions_say_their_dialect(tmp_path: Path) -> None:
    from eventlog.samples import SessionBuilder

    path = str(tmp_path / "pi.db")
    b = SessionBuilder(3)
    b.user("hello")
    b.assistant()
    b.tool_result()
    with eventlog.open(path) as store:
        store.save("pi", b.data)
    items = replay_json(path, "pi")
    assert {(i["dialect"], tuple(i["list"])) for i in items} == {("pi", ("entries",))}
    assert items[0]["speaker"] == "user" and items[-1]["speaker"] == "tool"
    assert "dialect pi" in cli("show", path, "pi").stdout


def test_env_flags_are_documented_in_ci() -> None:
    """CI sets the flags that turn these skips into failures."""
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text(encoding="utf-8")
    assert "EVENTLOG_REQUIRE_AGENTS=1" in ci and "EVENTLOG_REQUIRE_LANGGRAPH=1" in ci
    assert "EVENTLOG_REQUIRE_OTEL=1" in ci


def test_a_message_without_content_shows_its_other_fields() -> None:
    """A chat message with a role but no content showed as "(empty)", hiding the
    fields it did hold (an image under a name of its own, a note)."""
    conv = dialects.locate({"messages": [{"role": "user", "img": "abc", "note": "see"}, {"role": "assistant"}]})
    first, second = dialects.messages(conv)
    assert first.parts[0]["kind"] == "item" and first.parts[0]["value"] == {"img": "abc", "note": "see"}
    assert second.parts == []  # nothing else there: "(empty)" is the truth
    lines = render.transcript([first, second])
    assert lines == [("message/user", "img=abc, note=see"), ("assistant", "(empty)")]


_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_PIECES = st.sampled_from([*_B64_CHARS, "\n", " ", "-", "_", "é", "=="])
_B64_TEXT = st.lists(_B64_PIECES, max_size=14).map("".join)
_B64_ENCODED = st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())
_B64_MANGLED = st.tuples(_B64_ENCODED, st.integers(0, 3), _B64_TEXT).map(
    lambda t: t[0][: max(0, len(t[0]) - t[1])] + t[2]
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_B64_TEXT, _B64_ENCODED, _B64_MANGLED))
def test_image_sizes_are_what_decoding_gives(text: str) -> None:
    """The size shown of inline base64 image data, computed without decoding where
    the text is canonical, is what decoding it strictly gives (its length where it
    is not base64)."""
    try:
        want = len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        want = len(text)
    assert dialects.data_size(text) == want
    assert dialects.data_size("data:image/png;base64," + text) == want
