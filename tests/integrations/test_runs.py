"""Sessions read as agent runs: when each item was written, run statistics, search
(``grep``), comparison of two runs (``compare``) and ``tail -f``."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import runs
from eventlog.cli import main
from eventlog.comparing import compare
from eventlog.samples import SessionBuilder
from eventlog.search import grep

from .dialect_sessions import b64png, chat_states

RED = (255, 0, 0)


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------- when items were written


@st.composite
def list_histories(draw: st.DrawFn) -> list[list[dict[str, int]]]:
    """Successive versions of a list whose items are unique ({"born": k, "n": i}):
    each version appends, inserts, replaces, removes or moves items."""
    versions: list[list[dict[str, int]]] = []
    items: list[dict[str, int]] = []
    counter = 0
    for k in range(1, draw(st.integers(1, 8)) + 1):
        items = list(items)
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["append", "insert", "replace", "remove", "move"]))
            if action in ("replace", "remove", "move") and not items:
                action = "append"
            counter += 1
            new = {"born": k, "n": counter}
            at = draw(st.integers(0, max(len(items) - 1, 0)))
            if action == "append":
                items.append(new)
            elif action == "insert":
                items.insert(at, new)
            elif action == "replace":
                items[at] = new
            elif action == "remove":
                del items[at]
            else:
                items.append(items.pop(at))
        counter += 1
        items.append({"born": k, "n": counter})  # every version changes something
        versions.append(items)
    return versions


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=list_histories(), where=st.sampled_from(["entries", "messages", "state.messages"]))
def test_each_item_is_dated_by_the_save_that_wrote_it(tmp_path: Path, versions: list[Any], where: str) -> None:
    """Whatever the edits (appends, inserts, replacements, removals, moves) and
    wherever the list is, each item of the final list is attributed to the save
    that wrote it: save k is event k."""
    path = tmp_path / f"o-{os.urandom(4).hex()}.db"
    with eventlog.open(str(path)) as store:
        for items in versions:
            data: dict[str, Any] = {"state": {"messages": items}} if where == "state.messages" else {where: items}
            store.save("s", copy.deepcopy(data))
        run = runs.read_run(store, "s", "generic")
        assert run.conv.path == tuple(where.split("."))
        assert [s.seq for s in run.steps] == [item["born"] for item in versions[-1]]


def test_items_older_than_the_kept_history_have_no_seq(tmp_path: Path) -> None:
    with eventlog.open(str(tmp_path / "c.db")) as store:
        for n in range(1, 6):
            store.save("s", {"messages": [{"role": "user", "content": f"m{i}"} for i in range(n)]})
        store.compact(retain=2)
        start = store.info("s").history_start
        assert start > 0
        run = runs.read_run(store, "s")
        assert [s.seq for s in run.steps][:start] == [None] * start
        assert [s.seq for s in run.steps][start:] == list(range(start + 1, 6))


# ----------------------------------------------------------------------------- stats


def _pi_store(path: str) -> dict[str, Any]:
    b = SessionBuilder(3)
    with eventlog.open(path) as store:
        b.user("Fix the failing parser test, please.")
        store.save("pi", b.data)
        for _ in range(4):
            b.assistant()
            store.save("pi", b.data)
            b.tool_result()
            store.save("pi", b.data)
        b.assistant()
        store.save("pi", b.data)
        child = SessionBuilder(4)
        child.user("sub-task")
        store.save("pi/child", child.data, parent_id="pi")
    return b.data


def test_stats_of_a_pi_run_come_from_its_entries(tmp_path: Path) -> None:
    path = str(tmp_path / "pi.db")
    data = _pi_store(path)
    messages = [e["message"] for e in data["entries"] if e.get("type") == "message"]
    calls = [(c, m) for m in messages if m["role"] == "assistant" for c in m["content"] if c["type"] == "toolCall"]
    results = {m["toolCallId"]: m for m in messages if m["role"] == "toolResult"}
    res = cli("stats", path, "pi", "--json")
    assert res.exit_code == 0, res.output
    st_ = json.loads(res.output)
    assert st_["dialect"] == "pi" and st_["timed_by"] == "entries"
    assert st_["turns"] == sum(1 for m in messages if m["role"] == "assistant")
    assert st_["tool_calls"]["total"] == len(calls)
    answered = [(c, m) for c, m in calls if c["id"] in results]  # (the sample answers a turn's last call)
    assert st_["tool_calls"]["unanswered"] == len(calls) - len(answered)
    assert st_["tool_calls"]["errors"] == sum(1 for c, _ in answered if results[c["id"]]["isError"])
    by_tool = {t["tool"]: t for t in st_["tool_calls"]["by_tool"]}
    for name in {c["name"] for c, _ in calls}:
        assert by_tool[name]["count"] == sum(1 for c, _ in calls if c["name"] == name)
        durations = [results[c["id"]]["timestamp"] - m["timestamp"] for c, m in answered if c["name"] == name]
        assert by_tool[name]["total_ms"] == (sum(durations) if durations else None)
        assert by_tool[name]["max_ms"] == (max(durations) if durations else None)
    usage = [m["usage"] for m in messages if "usage" in m]
    assert st_["tokens"]["output"] == sum(u["output"] for u in usage)
    assert st_["tokens"]["input"] == sum(u["input"] + u["cacheRead"] + u["cacheWrite"] for u in usage)
    assert st_["cost"] == pytest.approx(sum(u["cost"]["total"] for u in usage))
    stamps = [m["timestamp"] for m in messages]
    assert st_["wall_ms"] == max(stamps) - min(stamps)
    assert st_["children"] == ["pi/child"] and st_["outcome"]["speaker"] == "assistant"
    text = cli("stats", path, "pi").output
    assert "tool calls" in text and "tokens" in text and "pi/child" in text
    assert "sessions:" in cli("stats", path).output  # the store's own figures without SESSION


def test_stats_without_timestamps_use_the_save_times(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    states = chat_states(b64png(RED))
    with eventlog.open(path) as store:
        for s in states:
            store.save("chat", s)
            time.sleep(0.02)
        stamps = [e.timestamp_ms for e in store.events("chat")]
    st_ = json.loads(cli("stats", path, "chat", "--json").output)
    assert st_["dialect"] == "chat" and st_["timed_by"] == "events"
    assert st_["tool_calls"]["total"] == 2 and st_["tool_calls"]["errors"] == 1
    assert st_["wall_ms"] == stamps[-1] - stamps[0]
    by_tool = {t["tool"]: t for t in st_["tool_calls"]["by_tool"]}
    # the calls were saved in event 2, their results in event 3
    assert by_tool["find_table"]["total_ms"] == stamps[2] - stamps[1]
    assert st_["tokens"] == {"input": None, "output": None} and st_["cost"] is None


def test_usage_of_other_dialects() -> None:
    assert runs.item_usage({"role": "assistant", "usage": {"prompt_tokens": 10, "completion_tokens": 3}}) == \
        runs.Usage(10, 3, None, None)  # fmt: skip
    lc = {"type": "ai", "data": {"content": "x", "usage_metadata": {"input_tokens": 5, "output_tokens": 2},
                                 "response_metadata": {"model_name": "m-1"}}}  # fmt: skip
    assert runs.item_usage(lc) == runs.Usage(5, 2, None, "m-1")
    assert runs.item_usage({"role": "user", "content": "no usage"}) is None
    assert runs.item_time({"created_at": 1_700_000_000}) == 1_700_000_000_000
    assert runs.item_time({"timestamp": "2026-01-02T03:04:05.678Z"}) == 1_767_323_045_678
    assert runs.item_time({"timestamp": "2026-01-02T03:04:05"}) is None  # no zone: not guessed
    assert runs.item_time({"timestamp": 7}) is None  # a counter, not a time
    assert runs.item_time({"message": {"timestamp": 1_795_000_000_123}}) == 1_795_000_000_123


# ----------------------------------------------------------------------------- grep


def test_grep_names_session_event_and_entry(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    _pi_store(path)
    shot = b64png(RED)
    with eventlog.open(path) as store:
        for s in chat_states(shot):
            store.save("chat", s)
        want = store.load("chat")
    res = cli("grep", path, "restaurant is closed", "--json")
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert len(hits) == 1
    h = hits[0]
    assert (h["session"], h["index"], h["kind"], h["tool"], h["speaker"]) == ("chat", 4, "tool_result", "book", "tool")
    assert h["seq"] == 3 and want["messages"][4]["content"].endswith(h["match"])  # written by the third save
    # filters, regular expressions, case
    assert json.loads(cli("grep", path, "-E", r"table \d+ is", "--json").output)[0]["match"] == "table 7 is"
    assert cli("grep", path, "TABLE 7", "--json").exit_code == 1
    assert len(json.loads(cli("grep", path, "-i", "TABLE 7", "--json", "--role", "tool").output)) == 1
    calls = json.loads(cli("grep", path, "people", "--tool", "find_table", "--json").output)
    assert [c["kind"] for c in calls] == ["tool_call"]
    assert cli("grep", path, "people", "--tool", "book").exit_code == 1
    only = json.loads(cli("grep", path, "e", "--session", "pi", "--json").output)
    assert only and {h["session"] for h in only} == {"pi"}
    # image data is not text
    assert cli("grep", path, shot[40:80]).exit_code == 1
    bad = cli("grep", path, "-E", "(")
    assert bad.exit_code == 1 and "bad regular expression" in bad.output
    missing = cli("grep", path, "x", "--session", "nope")
    assert missing.exit_code == 1 and "nope" in missing.output
    table = cli("grep", path, "restaurant").output
    assert "chat" in table and "#4" in table and "restaurant" in table


def test_grep_library_finds_what_the_pattern_matches_in_every_part(tmp_path: Path) -> None:
    path = str(tmp_path / "h.db")
    data = _pi_store(path)
    with eventlog.open(path, readonly=True) as store:
        hits = list(grep(store, re.compile("parser")))
    assert hits and all(h.session == "pi" for h in hits)
    first = hits[0]
    assert data["entries"][first.index]["id"] == first.entry and first.seq == 1


def test_grep_reads_large_text_but_not_large_images(tmp_path: Path) -> None:
    """Values stored as chunks: a long tool result is searched, a screenshot (base64
    of random bytes) is not, in the session and in the events followed for seq."""
    import base64
    import random

    path = str(tmp_path / "large.db")
    log = "".join(f"line {i}: ok\n" for i in range(40_000)) + "line 40000: NEEDLE found\n"
    shot = base64.b64encode(random.Random(1).randbytes(400_000)).decode()
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "run the tests"}]
    with eventlog.open(path) as store:
        store.save("big", {"messages": msgs})
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + shot}}
        msgs = [*msgs, {"role": "tool", "tool_call_id": "c1", "content": log}, {"role": "user", "content": [image]}]
        store.save("big", {"messages": msgs})
        assert store.stats()["chunks"]["rows"] >= 2  # (both stored as chunks)
    hits = json.loads(cli("grep", path, "NEEDLE", "--json").output)
    assert [(h["index"], h["seq"], h["line"]) for h in hits] == [(1, 2, "line 40000: NEEDLE found")]
    assert cli("grep", path, shot[1000:1040]).exit_code == 1


# ----------------------------------------------------------------------------- compare


def _run(store: eventlog.Store, sid: str, seed: int, turns: int, detour: bool = False) -> None:
    b = SessionBuilder(seed)
    b.user("Fix the failing parser test, please.")
    for t in range(turns):
        b.assistant()
        if detour and t == 2:
            b.data["entries"][-1]["message"]["content"].append({"type": "text", "text": "Let me try another way."})
        b.tool_result()
    b.assistant()
    store.save(sid, b.data)


def test_compare_finds_where_two_runs_diverge(tmp_path: Path) -> None:
    path = str(tmp_path / "cmp.db")
    with eventlog.open(path) as store:
        _run(store, "a", 11, 5)
        _run(store, "b", 11, 5, detour=True)
        _run(store, "c", 11, 5)
        ra, rb, rc = (runs.read_run(store, s) for s in "abc")
    same = compare(ra, rc)
    assert same["diverge"] is None and same["common"] == len(ra.active) and same["same_outcome"]
    out = compare(ra, rb)
    # the user message, then turns 0 and 1 (a call and its result each) are the same
    assert out["common"] == 1 + 2 * 2
    assert out["diverge"]["a"][0]["index"] == ra.active[5] and out["diverge"]["b"][0]["speaker"] == "assistant"
    assert out["tool_calls"]["delta"] == 0
    res = cli("compare", path, "a", "b", "--json")
    assert json.loads(res.output)["common"] == 5
    text = cli("compare", path, "a", "b").output
    assert "diverge at item 5" in text and "tool calls" in text


def test_compare_of_different_lengths_and_tools(tmp_path: Path) -> None:
    path = str(tmp_path / "cmp2.db")
    with eventlog.open(path) as store:
        _run(store, "short", 11, 2)
        _run(store, "long", 11, 6)
        short, long = runs.read_run(store, "short"), runs.read_run(store, "long")
    out = compare(short, long)
    assert out["items"]["delta"] == 8
    more = len(long.calls) - len(short.calls)
    assert out["tool_calls"] == {"a": len(short.calls), "b": len(long.calls), "delta": more}
    assert sum(t["delta"] for t in out["tools"]) == more
    # the same seed: the short run is the long one's start; the long one goes on
    assert out["common"] == len(short.active) and out["diverge"]["a"] == []
    assert out["diverge"]["b"][0]["index"] == len(short.active)


# ----------------------------------------------------------------------------- tail


def test_tail_prints_the_latest_events(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    _pi_store(path)
    lines = cli("tail", path, "pi", "-n", "2").output.splitlines()
    assert lines[0].startswith("9 ") and lines[-1].startswith("10 ")
    rows = [json.loads(line) for line in cli("tail", path, "pi", "-n", "3", "--json").output.splitlines()]
    assert [r["seq"] for r in rows] == [8, 9, 10]
    assert cli("tail", path, "nope").exit_code == 1


def test_tail_follows_commits_from_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    with eventlog.open(path) as store:
        store.save("live", {"messages": [{"role": "user", "content": "go"}]})
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", "-f", path, "live", "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None

        def line_with(text: str) -> str:
            assert proc.stdout is not None
            while text not in (line := proc.stdout.readline()):
                assert line, proc.stderr.read() if proc.stderr else ""
            return line

        assert line_with("go").startswith("1 ")  # what was there
        with eventlog.open(path) as store:
            for n in range(2, 5):
                msgs = store.load("live")["messages"]  # type: ignore[index]
                store.save("live", {"messages": [*msgs, {"role": "assistant", "content": f"step {n} done"}]})
                assert line_with(f"step {n} done").startswith(f"{n} ")
            store.delete("live")
        rest = proc.stdout.read()  # it ends after the session's tombstone
        assert "tombstone" in rest
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


# ----------------------------------------------------------------------------- PostgreSQL


def test_the_run_commands_read_postgresql_as_sqlite(tmp_path: Path) -> None:
    """The same sessions, copied with their history into PostgreSQL: grep, stats
    and compare say the same there; tail -f follows a commit there."""
    from ..postgres import store_urls

    path = str(tmp_path / "src.db")
    _pi_store(path)
    with eventlog.open(path) as store:
        for s in chat_states(b64png(RED)):
            store.save("chat", s)
        _run(store, "a", 11, 4)
        _run(store, "b", 11, 4, detour=True)
    with store_urls() as new:
        url = new()
        with eventlog.open(path, readonly=True) as src, eventlog.open(url) as dst:
            src.copy_to(dst)
        for args in (("grep", "-E", "table|parser", "--json"), ("stats", "pi", "--json"), ("stats", "chat", "--json"),
                     ("compare", "a", "b", "--json"), ("tail", "chat", "-n", "2", "--json")):  # fmt: skip
            here, there = cli(args[0], path, *args[1:]), cli(args[0], url, *args[1:])
            assert here.exit_code == there.exit_code == 0, (args, here.output, there.output)
            if args[0] == "tail":  # (positions are the store's own)
                assert [json.loads(r)["ops"] for r in here.output.splitlines()] == \
                    [json.loads(r)["ops"] for r in there.output.splitlines()]  # fmt: skip
            else:
                assert json.loads(here.output) == json.loads(there.output), args
        proc = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", "-f", url, "chat", "-n", "0",
                                 "--timeout", "30"], stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            time.sleep(1)  # (it may start watching before or after the commit: either way it is shown)
            with eventlog.open(url) as store:
                data = store.load("chat")
                assert data is not None
                data["messages"].append({"role": "user", "content": "and one more thing"})
                store.save("chat", data)
            while "and one more thing" not in (line := proc.stdout.readline()):
                assert line
            assert line.startswith("5 ")
        finally:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- sessions of the real stacks


def test_the_run_commands_read_an_agents_sdk_run(tmp_path: Path) -> None:
    """Two runs of the real Agents SDK Runner (scripted model) stored by
    EventlogSession: tool calls paired and timed by their saves, errors, search,
    and the two runs the same conversation once ids are left out."""
    from . import dialect_sessions as ds

    ds.need("agents", "EVENTLOG_REQUIRE_AGENTS")
    path = str(tmp_path / "sdk.db")
    ds.agents_sdk_session(path, "run-1")
    ds.agents_sdk_session(path, "run-2")
    st_ = json.loads(cli("stats", path, "run-1", "--json").output)
    assert st_["dialect"] == "openai" and st_["timed_by"] == "events"
    by_tool = {t["tool"]: t for t in st_["tool_calls"]["by_tool"]}
    assert by_tool["weather"]["count"] == 1 and by_tool["weather"]["errors"] == 0
    assert by_tool["weather"]["total_ms"] is not None and by_tool["weather"]["total_ms"] >= 0
    assert by_tool["broken"]["count"] == 1 and by_tool["broken"]["errors"] == 1
    assert st_["tool_calls"]["unanswered"] == 0
    assert st_["outcome"]["speaker"] == "assistant" and "All done" in st_["outcome"]["summary"]
    hits = json.loads(cli("grep", path, "sunny in Paris", "--session", "run-1", "--json").output)
    assert [(h["kind"], h["tool"]) for h in hits] == [("tool_result", "weather")]
    assert hits[0]["seq"] is not None
    same = json.loads(cli("compare", path, "run-1", "run-2", "--json").output)
    assert same["diverge"] is None and same["same_outcome"] and same["tool_calls"]["delta"] == 0


def test_the_run_commands_read_langgraph_runs_in_each_shape(tmp_path: Path) -> None:
    """A real LangGraph graph (fake chat model) saved in three shapes: the same
    figures, the same hits and the same conversation in each."""
    from . import dialect_sessions as ds

    ds.need("langgraph", "EVENTLOG_REQUIRE_LANGGRAPH")
    path = str(tmp_path / "lg.db")
    made = ds.langgraph_session(path)
    figures = []
    for sid in made["sessions"]:
        st_ = json.loads(cli("stats", path, sid, "--json").output)
        assert st_["dialect"] == "langchain", sid
        by_tool = {t["tool"]: (t["count"], t["errors"]) for t in st_["tool_calls"]["by_tool"]}
        assert by_tool == {"weather": (1, 0), "broken": (1, 1), "take_screenshot": (1, 0)}, sid
        assert all(t["total_ms"] is not None for t in st_["tool_calls"]["by_tool"])  # (timed by the saves)
        figures.append((st_["turns"], st_["user_messages"], st_["tool_calls"]["total"], st_["errors"]))
    assert figures[0] == figures[1] == figures[2]
    hits = json.loads(cli("grep", path, "disk is on fire", "--json").output)
    assert sorted(h["session"] for h in hits) == sorted(made["sessions"])
    assert {(h["kind"], h["tool"]) for h in hits} == {("tool_result", "broken")}
    a, b, c = made["sessions"]
    for other in (b, c):
        out = json.loads(cli("compare", path, a, other, "--json").output)
        assert out["diverge"] is None and out["same_outcome"], other


# ----------------------------------------------------------------------------- found in review


def test_grep_reads_large_text_that_looks_like_base64(tmp_path: Path) -> None:
    """A hex dump or a long token is stored as base64 (decoded, in chunks): it is
    still text to search, unlike an image."""
    import binascii

    path = str(tmp_path / "b64.db")
    hexdump = "cafebabe" + "\n".join(binascii.hexlify(os.urandom(30_000)).decode()[i : i + 60]
                                     for i in range(0, 60_000, 60))[8:] + "\n"  # fmt: skip
    with eventlog.open(path) as store:
        store.save("hex", {"messages": [{"role": "tool", "tool_call_id": "c", "content": hexdump}]})
        token = "NeedleToken" + "A" * 40_001
        store.save("tok", {"messages": [{"role": "tool", "tool_call_id": "c", "content": token}]})
        assert store.stats()["chunks"]["rows"] >= 2
    hits = json.loads(cli("grep", path, "-E", "cafebabe|NeedleToken", "--json").output)
    assert sorted((h["session"], h["match"]) for h in hits) == [("hex", "cafebabe"), ("tok", "NeedleToken")]


def test_grep_searches_every_string_of_items_of_no_known_shape(tmp_path: Path) -> None:
    path = str(tmp_path / "gen.db")
    with eventlog.open(path) as store:
        store.save("generic", {"events": [{"kind": "x", "detail": "needle A"}, {"content": "a", "output": "needle B"}]})
        store.save("strings", {"notes": "not the conversation", "steps": ["needle D"]})
    hits = json.loads(cli("grep", path, "needle", "--json").output)
    assert sorted(h["line"] for h in hits) == ["needle A", "needle B", "needle D"]


def test_bad_patterns_are_one_line_errors(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    with eventlog.open(path) as store:
        store.save("s", {"messages": [{"role": "user", "content": "one\ntwo\n"}]})
    for pattern in ("x{99999999999}", "(?:" * 2000 + "a" + ")" * 2000, "("):
        res = subprocess.run([sys.executable, "-m", "eventlog", "grep", path, "-E", pattern], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert res.returncode == 1 and res.stderr.count("\n") == 1 and "bad regular expression" in res.stderr
    # an empty match after the last line break is no line
    assert [h["line"] for h in json.loads(cli("grep", path, "-E", "$", "--json").output)] == ["two"]


def test_hosted_calls_and_results_of_several_parts_pair_once(tmp_path: Path) -> None:
    with eventlog.open(str(tmp_path / "calls.db")) as store:
        store.save("run", {"items": [
            {"role": "user", "content": "news?"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "x"}},
            {"type": "mcp_call", "id": "mcp_1", "name": "lookup", "server_label": "srv", "arguments": "{}",
             "output": "42"},
            {"type": "mcp_call", "id": "mcp_2", "name": "lookup", "server_label": "srv", "arguments": "{}",
             "error": "boom"},
            {"type": "message", "role": "assistant", "id": "m", "status": "completed",
             "content": [{"type": "output_text", "text": "ok"}]}]})  # fmt: skip
        st_ = runs.stats(runs.read_run(store, "run"))
        assert st_["tool_calls"]["total"] == 3 and st_["tool_calls"]["unanswered"] == 0
        assert st_["tool_calls"]["errors"] == 1
        store.save("chat", {"messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "one"},
                                                               {"type": "text", "text": "two"}]},
            {"role": "tool", "tool_call_id": "c", "content": "Error: bad"}]})  # fmt: skip
        run = runs.read_run(store, "chat")
        assert [(c.tool, c.result) for c in run.calls] == [("a", 2), ("b", 3)]
        assert [c.error for c in run.calls] == [False, True]


def test_item_seqs_after_a_compaction_and_when_a_list_goes_and_comes_back(tmp_path: Path) -> None:
    from eventlog import dialects

    def seqs(store: eventlog.Store, sid: str) -> list[int | None]:
        return runs.item_seqs(store, sid, dialects.locate(store.fold(sid)), store.seq(sid))

    def big(c: str) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": c, "content": c * 40_000}  # (stored as chunks)

    a, b, c, d = big("a"), big("b"), big("c"), big("d")
    with eventlog.open(str(tmp_path / "seqs.db")) as store:
        store.save("s", {"messages": [a]})
        store.save("s", {"messages": [a, b]})
        store.save("s", {"messages": [a, b, c]})
        store.compact(retain=1)
        store.save("s", {"messages": [b, c, d]})  # the oldest dropped, one appended
        assert seqs(store, "s") == [None, 3, 4]
        x, y = {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}
        for sid, gone in (("removed", {"other": 1}), ("not-a-list", {"messages": "x"})):
            store.save(sid, {"messages": [x]})
            store.save(sid, gone)
            store.save(sid, {"messages": [x, y]})
            assert seqs(store, sid) == [3, 3], sid
        store.save("nested", {"st": {"messages": [x]}})
        store.save("nested", {"st": {}})
        store.save("nested", {"st": {"messages": [x, y]}})
        assert seqs(store, "nested") == [3, 3]


def test_tail_follow_edge_cases(tmp_path: Path) -> None:
    """-n 0 then the session deleted: the tombstone, exit 0; an event committed
    while tail starts is printed once."""
    path = str(tmp_path / "edge.db")
    with eventlog.open(path) as store:
        store.save("s", {"messages": [{"role": "user", "content": "a"}]})
    proc = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", path, "s", "-f", "-n", "0", "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.5)
        with eventlog.open(path) as store:
            store.delete("s")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "tombstone" in out and not out.startswith("1 ")
    finally:
        proc.kill()
    from eventlog.store import Store

    with eventlog.open(path) as store:
        store.save("r", {"messages": [{"role": "user", "content": "a"}]})
    original = Store.seq

    def seq_then_commit(self: Store, sid: str) -> int:
        head = original(self, sid)
        with eventlog.open(path) as w:
            w.save("r", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
        return head

    Store.seq = seq_then_commit  # type: ignore[method-assign]
    try:
        out = cli("tail", path, "r", "-f", "--timeout", "1").output
    finally:
        Store.seq = original  # type: ignore[method-assign]
    assert sum(1 for line in out.splitlines() if line.startswith("2 ") and "messages: b" in line) == 1, out


def test_odd_times_and_empty_runs(tmp_path: Path) -> None:
    with eventlog.open(str(tmp_path / "odd.db")) as store:
        store.save("go", {"messages": [{"role": "user", "content": "a", "created_at": "0001-01-01T00:00:00Z"},
                                       {"role": "assistant", "content": "b", "created_at": "2024-05-01T10:00:00Z"}]})
        store.save("e1", {})
        store.save("e2", {})
        st_ = runs.stats(runs.read_run(store, "go"))
        assert st_["timed_by"] == "both" and st_["start_ms"] > 0  # (year 1 is no time: the save's time stands)
        out = compare(runs.read_run(store, "e1"), runs.read_run(store, "e2"))
        assert out["diverge"] is None and out["same_outcome"]
