"""The command line, run through its real entry points in a subprocess."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog.cli import main
from eventlog.samples import SessionBuilder
from eventlog.testing import histories

from ..helpers import run, to_version_3

ROOT = "agent-session:root"
CHILD = "task:agent-session:root:t1"


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    """A store with a root session (saved after every entry, one screenshot, a
    rewound leaf) and a child task session.  Also returns the saved states."""
    path = str(tmp_path_factory.mktemp("cli") / "s.db")
    b = SessionBuilder(7)
    states: list[dict[str, Any]] = []
    with eventlog.open(path) as store:

        def save() -> None:
            store.save(ROOT, b.data)
            states.append(copy.deepcopy(b.data))

        b.user("Open the dashboard and fix the layout bug. 🖥️")
        save()
        b.assistant()
        save()
        b.tool_result(image_bytes=120_000)
        save()
        b.assistant()
        save()
        abandoned = b.data["leafId"]
        b.tool_result()
        save()
        b.data["leafId"] = abandoned  # rewind: the last result is now on an abandoned branch
        save()
        b.user("Try again, smaller change please.")
        save()
        child = SessionBuilder(8)
        child.user("sub-task: look at the CSS")
        store.save(CHILD, child.data, parent_id=ROOT)
    return path, states


def test_console_script_and_help(store_file: tuple[str, Any]) -> None:
    res = run("--help", script=True)
    assert res.returncode == 0 and "sessions" in res.stdout and "replay" in res.stdout, res.stderr
    assert run("--version").returncode == 0


def test_sessions_lists_and_nests(store_file: tuple[str, Any]) -> None:
    path, states = store_file
    res = run("sessions", path, "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in json.loads(res.stdout)}
    assert rows[ROOT]["entries"] == len(states[-1]["entries"]) and rows[ROOT]["events"] == len(states)
    assert rows[CHILD]["parent"] == ROOT and rows[ROOT]["bytes"] > 0
    tree = run("sessions", path, "--tree").stdout.splitlines()
    root_line = next(i for i, line in enumerate(tree) if line.startswith(ROOT))
    assert tree[root_line + 1].startswith("  " + CHILD)
    assert "\x1b[" not in run("sessions", path).stdout  # no colour into a pipe


def test_log_summarises_every_event(store_file: tuple[str, Any]) -> None:
    path, states = store_file
    events = json.loads(run("log", path, ROOT, "--json").stdout)
    assert [e["seq"] for e in events] == list(range(1, len(states) + 1))
    first = events[0]["ops"]
    assert first[0] == {"op": "insert", "index": 0, "entries": states[0]["entries"]}  # data, whole
    text = run("log", path, ROOT).stdout
    assert "message/toolResult" in text and "leafId" in text and "[image image/png" in text
    assert "dashboard" in text


def apply_logged(state: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay ``eventlog log --json`` operations on a session dict, as documented."""
    entries = state.get("entries") if type(state.get("entries")) is list else []
    for op in ops:
        if op["op"] == "insert":
            entries[op["index"] : op["index"]] = op["entries"]
        elif op["op"] == "replace":
            entries[op["index"]] = op["entry"]
        elif op["op"] == "delete":
            del entries[op["index"] : op["index"] + op["count"]]
        elif op["op"] == "fields":
            for k, v in op["set"].items():
                state[k] = entries if v == {"$entries": True} else v
            if op["order"] is not None:
                state = {k: state[k] for k in op["order"]}
    return state


def test_log_json_holds_every_operation_whole(store_file: tuple[str, Any]) -> None:
    """The operations ``log --json`` lists rebuild every state exactly (nothing cut)."""
    path, states = store_file
    state: dict[str, Any] = {}
    for event, expected in zip(json.loads(run("log", path, ROOT, "--json").stdout), states, strict=True):
        state = apply_logged(state, event["ops"])
        assert state == expected


def test_show_at_a_point_and_export_equals_load(store_file: tuple[str, Any], tmp_path: Path) -> None:
    path, states = store_file
    assert json.loads(run("show", path, ROOT, "--at", "3", "--json").stdout) == states[2]
    shown = run("show", path, ROOT, "--at", "6").stdout
    assert "◀ leaf" in shown and "at seq 6" in shown
    out = tmp_path / "export.json"
    assert run("export", path, ROOT, "-o", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8")
    assert text == json.dumps(states[-1], ensure_ascii=False)  # byte for byte, images inline
    assert json.loads(run("export", path, ROOT, "--at", "2").stdout) == states[1]


def test_replay_follows_the_active_path(store_file: tuple[str, Any]) -> None:
    path, states = store_file
    items = json.loads(run("replay", path, ROOT, "--json").stdout)
    assert items[0]["role"] == "user" and items[0]["kind"] == "text" and "Try again" in items[-1]["text"]
    calls = [i for i in items if i["kind"] == "tool_call"]
    assert calls and all(i["role"] == "assistant" and type(i["arguments"]) is dict for i in calls)
    assert any(i["kind"] == "image" and i["mime_type"] == "image/png" and i["bytes"] > 100_000 for i in items)
    # the abandoned tool result (entry 5, rewound away) is not on the path
    abandoned = states[4]["entries"][4]["message"]["content"][0]["text"]
    assert all(abandoned[:40] not in (i.get("text") or "") for i in items)
    later = json.loads(run("replay", path, ROOT, "--from", "6", "--json").stdout)
    assert [(i["role"], i["index"]) for i in later] == [("user", len(states[-1]["entries"]) - 1)]
    assert "Open the dashboard" in run("replay", path, ROOT, "--to", "1").stdout
    human = run("replay", path, ROOT).stdout
    assert "assistant → " in human and "[image image/png" in human


def test_diff_between_two_points(store_file: tuple[str, Any]) -> None:
    path, states = store_file
    changes = json.loads(run("diff", path, ROOT, "5", "7", "--json").stdout)
    kinds = {(c["kind"], c["key"]) for c in changes}
    assert ("added", states[6]["entries"][-1]["id"]) in kinds
    assert ("field", "leafId") in kinds
    assert "no change" in run("diff", path, ROOT, "3", "3").stdout


def test_stats_and_verify(store_file: tuple[str, Any]) -> None:
    path, _ = store_file
    st = json.loads(run("stats", path, "--json").stdout)
    assert st["sessions"]["count"] == 2 and st["chunks"]["rows"] >= 1 and st["dedup_ratio"] >= 1
    assert st["chunk_addresses"] == "blake3"
    text = run("stats", path).stdout
    assert "snapshot coverage" in text and "addresses: blake3" in text
    ok = run("verify", path, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True


def test_delete_and_compact(store_file: tuple[str, Any], tmp_path: Path) -> None:
    path = str(tmp_path / "copy.db")
    shutil.copy(store_file[0], path)  # a private copy to delete from (closed: no WAL)
    res = run("delete", path, ROOT)
    assert res.returncode == 0 and CHILD in res.stdout
    assert run("delete", path, ROOT).returncode == 1
    res = run("compact", path)
    assert res.returncode == 0 and "removed 2 deleted sessions" in res.stdout, res.stdout + res.stderr
    assert json.loads(run("sessions", path, "--json").stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["log", "{path}", "no-such-session"],
        ["show", "{path}", ROOT, "--at", "999"],
        ["sessions", "{missing}"],
        ["sessions", "{garbage}"],
        ["export", "{path}", "nobody"],
        ["verify", "{missing}"],
    ],
)
def test_bad_input_gets_one_line_and_status_1(store_file: tuple[str, Any], tmp_path: Path, args: list[str]) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    names = {"path": store_file[0], "missing": str(tmp_path / "missing.db"), "garbage": str(garbage)}
    res = run(*(a.format(**names) for a in args))
    assert res.returncode == 1
    assert res.stderr.startswith("eventlog: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "missing.db").exists()  # never created by a typo


def test_a_damaged_database_is_one_line(store_file: tuple[str, Any], tmp_path: Path) -> None:
    path = str(tmp_path / "damaged.db")
    shutil.copy(store_file[0], path)
    con = sqlite3.connect(path)
    con.execute("UPDATE events SET frame = x'0102' WHERE seq = 2")
    con.commit()
    con.close()
    res = run("show", path, ROOT)
    assert res.returncode == 1 and "damaged" in res.stderr and "Traceback" not in res.stderr
    assert run("verify", path).returncode == 1


# ----------------------------------------------------------------------------- run in process


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``eventlog ARGS`` in this process (click's runner): stdout and stderr apart."""
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1", **(env or {})}, catch_exceptions=False)


def one_line_error(res: Result, *fragments: str) -> None:
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr.startswith("eventlog: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


def long_call_session() -> dict[str, Any]:
    """A session whose assistant thinks at length and calls a tool with long,
    multi-line arguments, some of them not strings."""
    command = "\n".join(f"echo line {i} " + "x" * 80 for i in range(12))
    thinking = "Let me think. " * 200
    args = {"command": command, "timeout": 30, "env": {"A": "1"}}
    call = {"type": "toolCall", "id": "call-1", "name": "bash", "arguments": args}
    result = {"role": "toolResult", "toolCallId": "call-1", "toolName": "bash", "isError": True,
              "content": [{"type": "text", "text": "boom"}]}  # fmt: skip
    return {
        "entries": [
            {"type": "message", "id": "u1", "parentId": None, "message": {"role": "user", "content": "go"}},
            {
                "type": "message",
                "id": "a1",
                "parentId": "u1",
                "message": {"role": "assistant", "content": [{"type": "thinking", "thinking": thinking}, call]},
            },
            {
                "type": "message",
                "id": "r1",
                "parentId": "a1",
                "message": result,
            },
            {"type": "compaction", "id": "c1", "parentId": "r1", "summary": "S" * 700},
        ],
        "leafId": "c1",
    }


# ----------------------------------------------------------------------------- replay, diff, log: whole data


def test_replay_full_and_json_keep_tool_call_arguments_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    data = long_call_session()
    with eventlog.open(path) as store:
        store.save("s", data)
    call = data["entries"][1]["message"]["content"][1]
    items = json.loads(cli("replay", path, "s", "--json").stdout)
    assert [(i["kind"], i["role"], i["entry"], i["index"]) for i in items] == [
        ("text", "user", "u1", 0),
        ("thinking", "assistant", "a1", 1),
        ("tool_call", "assistant", "a1", 1),
        ("tool_result", "toolResult", "r1", 2),
        ("entry", None, "c1", 3),
    ]
    assert items[1]["text"] == data["entries"][1]["message"]["content"][0]["thinking"]  # not shortened
    assert items[2]["tool"] == "bash" and items[2]["tool_call_id"] == "call-1"
    assert items[2]["arguments"] == call["arguments"]  # data, not a display string
    assert items[3]["tool"] == "bash" and items[3]["is_error"] is True and items[3]["text"] == "boom"
    assert items[4]["type"] == "compaction" and items[4]["text"] == "S" * 700
    full = cli("replay", path, "s", "--full").stdout
    assert call["arguments"]["command"] in full  # every line, whole
    assert "timeout=30" in full and 'env={"A": "1"}' in full
    assert data["entries"][1]["message"]["content"][0]["thinking"].strip() in full
    short = cli("replay", path, "s").stdout
    assert call["arguments"]["command"] not in short and "assistant → bash" in short
    assert "result bash (error): boom" in short


def test_diff_json_holds_the_values(store_file: tuple[str, Any]) -> None:
    path, states = store_file
    changes = json.loads(cli("diff", path, ROOT, "5", "7", "--json").stdout)
    by_key = {(c["kind"], c["key"]): c for c in changes}
    added = states[6]["entries"][-1]
    assert by_key["added", added["id"]] == {"kind": "added", "key": added["id"], "index": 5, "after": added,
                                            "dialect": "pi", "list": ["entries"]}  # fmt: skip
    leaf = by_key["field", "leafId"]
    assert leaf == {"kind": "field", "key": "leafId", "before": states[4]["leafId"], "after": states[6]["leafId"]}
    assert all("summary" not in c for c in changes)
    removed = json.loads(cli("diff", path, ROOT, "7", "1", "--json").stdout)
    gone = next(c for c in removed if c["kind"] == "removed")
    assert "after" not in gone and gone["before"] == states[6]["entries"][gone["index"]]
    human = cli("diff", path, ROOT, "5", "7").stdout
    assert f"field leafId: {states[4]['leafId']} → {states[6]['leafId']}" in human  # no Python repr quotes


# ----------------------------------------------------------------------------- errors that name the problem


def test_a_directory_or_a_device_is_named_as_such(tmp_path: Path) -> None:
    one_line_error(cli("sessions", str(tmp_path)), "is a directory")
    one_line_error(cli("verify", os.devnull), "not a regular file")
    one_line_error(cli("sessions", str(tmp_path / "nope.db")), "no such store file")


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 50, bytes(range(256)) * 40, b"x"])
def test_a_file_that_is_not_sqlite_is_not_an_eventlog_store(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    res = cli("sessions", str(path))
    one_line_error(res, "not an eventlog store")
    assert "damaged" not in res.stderr
    for readonly in (True, False):
        with pytest.raises(eventlog.UnsupportedVersionError, match="not an eventlog store"):
            eventlog.open(str(path), readonly=readonly)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_replay_from_after_to_is_an_error(store_file: tuple[str, Any]) -> None:
    path, _ = store_file
    one_line_error(cli("replay", path, ROOT, "--from", "5", "--to", "2"), "--from 5 is after --to 2")
    assert cli("replay", path, ROOT, "--from", "-1").exit_code == 2  # a usage error


# ----------------------------------------------------------------------------- strict JSON


def nan_session() -> dict[str, Any]:
    return {
        "entries": [
            {"id": "e0", "message": {"role": "user", "content": "hi"}},
            {"id": "e1", "message": {"role": "assistant", "usage": {"cost": float("nan")}, "content": []}},
        ],
        "metrics": {"odd key": float("inf")},
    }


def test_export_writes_strict_json_or_names_the_float(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.save("nan", nan_session())
        store.save("fine", {"entries": [{"id": "a", "x": 1.5}], "n": -0.0})
    res = cli("export", path, "nan")
    one_line_error(res, "$.entries[1].message.usage.cost (entry 1, id 'e1')", "--allow-nan")
    assert res.stdout == ""
    loose = cli("export", path, "nan", "--allow-nan")
    assert loose.exit_code == 0 and loose.stdout.strip() == json.dumps(nan_session(), ensure_ascii=False)
    out = tmp_path / "out.json"
    one_line_error(cli("export", path, "nan", "-o", str(out)), "cost")
    assert not out.exists()
    strict = cli("export", path, "fine").stdout

    def refuse(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    assert json.loads(strict, parse_constant=refuse) == {"entries": [{"id": "a", "x": 1.5}], "n": -0.0}
    for command in (["show", "nan"], ["log", "nan"], ["diff", "nan", "0", "1"]):
        command = [command[0], path, *command[1:], "--json"]
        one_line_error(cli(*command), "NaN or Infinity")
        assert cli(*command, "--allow-nan").exit_code == 0
    with eventlog.open(path) as store:
        store.save("inf", {"entries": [], "metrics": {"odd key": float("-inf")}})
    one_line_error(cli("export", path, "inf"), '$.metrics["odd key"] is -inf')


def test_export_of_bytes_names_where_they_are(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.save("b", {"entries": [{"id": "x", "blob": b"\x00\x01"}]})
    one_line_error(cli("export", path, "b"), "$.entries[0].blob (entry 0, id 'x') is a bytes value")
    shown = json.loads(cli("show", path, "b", "--json").stdout)
    assert shown["entries"][0]["blob"] == {"$bytes": "0001"}


# ----------------------------------------------------------------------------- entry counts without folding


def test_sessions_lists_counts_without_folding_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        for i in range(30):
            store.append(f"s{i}", [{"id": str(k)} for k in range(i)] or [{"id": "only"}])
        store.save("saved", {"entries": [1, 2, 3], "x": 1})
        store.save("not-a-list", {"entries": "text"})

    def no_fold(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("listing sessions folded one")

    monkeypatch.setattr(eventlog.Store, "fold", no_fold)
    monkeypatch.setattr(eventlog.Store, "load", no_fold)
    rows = {r["id"]: r for r in json.loads(cli("sessions", path, "--json").stdout)}
    assert rows["s0"]["entries"] == 1 and rows["s29"]["entries"] == 29
    assert rows["saved"]["entries"] == 3 and rows["not-a-list"]["entries"] == 0


def test_session_infos_is_one_query_however_many_sessions(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    counts = []
    with eventlog.open(path) as store:
        for n in (3, 40):
            for i in range(n):
                store.append(f"{n}-{i}", [{"id": "a"}])
            statements: list[str] = []
            store._backend.db.con.set_trace_callback(statements.append)
            infos = store.session_infos()
            store._backend.db.con.set_trace_callback(None)
            counts.append(len(statements))
            assert [i.session_id for i in infos] == store.sessions()
            assert infos == [store.info(name) for name in store.sessions()]
    assert counts == [1, 1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_steps=6), st.lists(st.integers(0, 3), max_size=4))
def test_recorded_entry_counts_match_what_load_returns(history: list[dict[str, Any]], appends: list[int]) -> None:
    """Whatever is saved or appended, through either of two handles on one file
    (each with a stale cache of the other's writes), the count recorded with the
    head is the number of entries load() returns."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.db")
        with eventlog.open(path) as a, eventlog.open(path) as b:
            stores = [a, b]
            for i, state in enumerate(history):
                stores[i % 2].save("s", state)
                for n in appends[i : i + 1]:
                    with contextlib.suppress(eventlog.InvalidValueError):  # entries is not a list just now
                        stores[(i + 1) % 2].append("s", [{"id": f"x{i}-{k}"} for k in range(n)])
                loaded = a.load("s") or {}
                expected = len(loaded["entries"]) if type(loaded.get("entries")) is list else 0
                assert a.info("s").entries == expected == b.session_infos()[0].entries
            assert a.verify().ok


def test_a_version_3_store_is_listed_by_folding_only_its_old_sessions(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.append("old", [{"id": "1"}, {"id": "2"}])
        store.append("child", [{"id": "c"}], parent_id="old")
    to_version_3(path)
    with eventlog.open(path, readonly=True) as store:  # shown as version 4, not upgraded
        assert [(i.session_id, i.entries) for i in store.session_infos()] == [("old", None), ("child", None)]
    rows = json.loads(cli("sessions", path, "--json").stdout)
    assert [(r["id"], r["entries"]) for r in rows] == [("old", 2), ("child", 1)]
    with eventlog.open(path) as store:  # upgraded: counts unknown until the next write
        assert store.info("old").entries is None
        store.append("old", [{"id": "3"}])
        assert store.info("old").entries == 3 and store.info("child").entries is None
        assert store.verify().ok
    assert [(r["id"], r["entries"]) for r in json.loads(cli("sessions", path, "--json").stdout)] == [
        ("old", 3),
        ("child", 1),
    ]


def test_verify_reports_a_wrong_recorded_count(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": "1"}, {"id": "2"}])
    con = sqlite3.connect(path)
    con.execute("UPDATE sessions SET entries = 7")
    con.commit()
    con.close()
    res = cli("verify", path)
    assert res.exit_code == 1 and "entry count recorded with the head reads 7" in res.stdout
    assert "1 session, 1 event, 0 snapshots, 0 chunks" in res.stdout  # plurals


def test_the_async_store_lists_infos_and_reports_progress(tmp_path: Path) -> None:
    import asyncio

    async def go() -> tuple[list[Any], list[tuple[str, int, int | None]]]:
        calls: list[tuple[str, int, int | None]] = []
        async with eventlog.open_async(str(tmp_path / "s.db")) as store:
            await store.append("a", [{"id": "1"}, {"id": "2"}])
            await store.save("b", {"entries": [{"id": "x"}]}, parent_id="a")
            infos = await store.session_infos()
            await store.verify(progress=lambda *c: calls.append(c))
            await store.compact(progress=lambda *c: calls.append(c))
        return infos, calls

    infos, calls = asyncio.run(go())
    assert [(i.session_id, i.parent_id, i.entries) for i in infos] == [("a", None, 2), ("b", "a", 1)]
    assert ("sessions", 2, 2) in calls and calls[-1][0] == "chunks"


# ----------------------------------------------------------------------------- progress


def test_verify_and_compact_report_progress_to_a_callback(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path, large_value_bytes=64) as store:
        for i in range(7):
            store.save(f"s{i}", {"entries": [{"id": "a", "big": f"{i}" * 5000}]})
        store.delete("s0")
        store.delete("s1")
        calls: list[tuple[str, int, int | None]] = []
        assert store.verify(progress=lambda *a: calls.append(a)).ok
        steps = list(dict.fromkeys(step for step, _, _ in calls))
        assert steps == ["integrity", "chunks", "sessions"]
        assert calls[-1] == ("sessions", 5, 5)
        assert [c for c in calls if c[0] == "chunks"][-1] == ("chunks", 7, 7)
        for step in steps:
            done = [d for s, d, _ in calls if s == step]
            assert done == sorted(done) and done[0] == 0
        calls.clear()
        store.compact(progress=lambda *a: calls.append(a), batch=2, vacuum=True)
        assert list(dict.fromkeys(step for step, _, _ in calls)) == ["deleted sessions", "sessions", "chunks", "vacuum"]
        assert ("deleted sessions", 2, 2) in calls and ("sessions", 5, 5) in calls and ("chunks", 7, 7) in calls
        assert calls[-1] == ("vacuum", 1, 1)


def test_progress_goes_to_a_terminal_on_stderr_never_stdout(store_file: tuple[str, Any]) -> None:
    import pty

    path, _ = store_file
    leader, follower = pty.openpty()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "eventlog", "verify", path, "--json"],
            stdout=subprocess.PIPE, stderr=follower, timeout=120, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                part = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed
                break
            if not part:
                break
            drawn += part
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert res.returncode == 0 and json.loads(res.stdout)["ok"] is True  # stdout: the JSON alone
    assert b"sessions" in drawn  # the bars were drawn on the terminal
    piped = run("verify", path, "--json")
    assert piped.stderr == "" and json.loads(piped.stdout)["ok"] is True


# ----------------------------------------------------------------------------- human output


def test_help_is_never_cut_off() -> None:
    for width in ("80", "60"):
        text = cli("--help", env={"COLUMNS": width}).stdout
        listed = text.split("Commands:")[1]
        assert "..." not in listed
        for name, command in main.commands.items():
            assert name in listed
            sentence = command.get_short_help_str(limit=10_000)
            assert " ".join(sentence.split()) in " ".join(listed.split()), name
        for name in main.commands:
            res = cli(name, "--help", env={"COLUMNS": width})
            assert res.exit_code == 0 and res.stdout.startswith("Usage: "), name
            assert "..." not in res.stdout.split("\n", 1)[1], name  # (the usage line has FILES...)


def test_compact_prints_units_and_plurals(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.save("s", {"entries": [{"id": "a", "img": os.urandom(100_000)}]})  # one chunk
        store.save("t", {"entries": []})
        store.delete("s")  # a second event: the tombstone
    res = cli("compact", path)
    assert res.exit_code == 0, res.stderr
    expected = r"removed 1 deleted session, 2 events, 0 snapshots; freed 1 chunk \(100\.\d KB\); 0 histories truncated;"
    assert re.match(expected, res.stdout), res.stdout
    assert "bytes" not in res.stdout
    assert cli("delete", path, "t").stdout.startswith("deleted 1 session: t ")


def test_the_table_writer_aligns_columns() -> None:
    from eventlog import cli as cli_module

    runner = CliRunner()

    @click.command()
    def table() -> None:
        cli_module._write_table(("a", "n", "z"), [("x", "1", "end"), ("日本", "100", "")], right=(1,))

    assert runner.invoke(table).stdout.splitlines() == ["a       n  z", "x       1  end", "日本  100"]


@pytest.mark.parametrize("rows", [[], [{"a": 1}], [{"a": [1, {"b": "x\ny", "é": None}]}, {}, {"c": []}] * 1500])
def test_rows_are_written_as_json_dumps_writes_the_list(rows: list[dict[str, Any]]) -> None:
    from eventlog import cli as cli_module

    @click.command()
    def listing() -> None:
        cli_module._json_rows(iter(rows))

    assert CliRunner().invoke(listing).stdout == json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


# ----------------------------------------------------------------------------- scale and odd values


def test_a_parent_chain_thousands_deep_is_listed_as_a_tree(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    depth = 1_500
    with eventlog.open(path, synchronous="OFF") as store:
        for i in range(depth):
            store.append(f"s{i}", [{"id": "a"}], parent_id=f"s{i - 1}" if i else None)
        store.append("loop-a", [{"id": "a"}], parent_id="loop-b")
        store.append("loop-b", [{"id": "a"}], parent_id="loop-a")
    res = cli("sessions", path, "--tree")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()[1:]
    for i in range(depth):
        assert lines[i].startswith("  " * i + f"s{i} "), lines[i][:80]
    assert [line.split()[0] for line in lines[depth:]] == ["loop-a", "loop-b"]  # loops come last


def test_log_starts_at_the_history_start_of_a_compacted_session(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        for i in range(6):
            store.append("s", [{"id": str(i)}])
        store.compact(retain=2)
    events = json.loads(cli("log", path, "s", "--json").stdout)
    assert [e["seq"] for e in events] == [5, 6]
    text = cli("log", path, "s").stdout
    assert "compacted away" in text and text.count("insert") == 2
    one_line_error(cli("log", path, "s", "--since", "0"), "compacted away")
    assert [e["seq"] for e in json.loads(cli("log", path, "s", "--since", "5", "--json").stdout)] == [6]


@pytest.mark.parametrize("ms", [2**62, -(2**62), 9_999_999_999_999_999])
def test_an_out_of_range_time_is_shown_not_raised(tmp_path: Path, ms: int) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.append("s", [{"id": "a"}])
    con = sqlite3.connect(path)
    con.execute("UPDATE sessions SET updated_ms = ?, created_ms = ?", (ms, ms))
    con.commit()
    con.close()
    res = cli("sessions", path)
    assert res.exit_code == 0 and f"{ms} ms (out of range)" in res.stdout
    row = json.loads(cli("sessions", path, "--json").stdout)[0]
    assert row["updated_ms"] == ms and row["updated"] == f"{ms} ms (out of range)"
