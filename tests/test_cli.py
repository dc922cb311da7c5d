"""The command line, run through its real entry points in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.samples import SessionBuilder

ROOT = "agent-session:root"
CHILD = "task:agent-session:root:t1"


def run(*args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m eventlog ARGS`` (or the installed console script)."""
    exe = [shutil.which("eventlog", path=os.path.dirname(sys.executable)) or "eventlog"] if script else [
        sys.executable, "-m", "eventlog"
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120, env=env)


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
    rows = json.loads(run("log", path, ROOT, "--json").stdout)
    assert sorted({r["seq"] for r in rows}) == list(range(1, len(states) + 1))
    inserts = [r for r in rows if r["kind"] == "insert"]
    assert inserts[0]["entry"] == "message/user" and "dashboard" in inserts[0]["summary"]
    assert any("[image image/png" in r["summary"] for r in inserts)
    assert any(r["entry"] == "message/assistant" and "(" in r["summary"] for r in inserts)  # tool(args)
    text = run("log", path, ROOT).stdout
    assert "message/toolResult" in text and "leafId" in text


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
    lines = json.loads(run("replay", path, ROOT, "--json").stdout)
    speakers = [line["speaker"] for line in lines]
    assert speakers[0] == "user" and "Try again" in lines[-1]["text"]
    assert any(s.startswith("assistant → ") for s in speakers)
    assert any("[image image/png" in line["text"] for line in lines)
    # the abandoned tool result (entry 5, rewound away) is not on the path
    abandoned = states[4]["entries"][4]["message"]["content"][0]["text"]
    assert all(abandoned[:40] not in line["text"] for line in lines)
    later = json.loads(run("replay", path, ROOT, "--from", "6", "--json").stdout)
    assert [line["speaker"] for line in later] == ["user"]
    assert "Open the dashboard" in run("replay", path, ROOT, "--to", "1").stdout


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
