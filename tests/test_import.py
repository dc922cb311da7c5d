"""``eventlog import``: the formats, task trees, the per-file report and what a
failure leaves, hostile input (bounded memory, one-line errors), pipes and FIFOs,
and progress.  The command runs in a subprocess through its real entry point."""

from __future__ import annotations

import copy
import inspect
import json
import os
import resource
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventlog
from eventlog import importers
from eventlog.importers import ImportFormatError, Imported, Limits, Unreadable
from eventlog.samples import SessionBuilder

from .formats import write_flue_0110, write_flue_0111, write_pi_jsonl


def run(*args: str, input: str | bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m eventlog ARGS``."""
    env = {**os.environ, "NO_COLOR": "1"}
    data = input.encode() if isinstance(input, str) else input
    res = subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, input=data,
                         timeout=timeout, env=env)  # fmt: skip
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(), res.stderr.decode())


def one_line_error(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 1, no traceback, every stderr line an ``eventlog:`` line, and the
    fragments in it."""
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and res.stderr.strip(), res.stderr
    assert all(line.startswith("eventlog: ") for line in res.stderr.splitlines()), res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, (fragment, res.stderr)


def key(name: str, harness: str = "default", instance: str = "inst-1") -> str:
    """A Flue storage key, as Flue makes it (``JSON.stringify`` of the array)."""
    return "agent-session:" + json.dumps([instance, harness, name], separators=(",", ":"))


# Flue's task ids are crypto.randomUUID()
T1 = "5f0c6a1e-3b9d-4e3a-9f1c-2d7e8b6a4c10"
T2 = "0b7e2f4d-9a61-4c3e-8d25-71f0a9c3e6b2"
T3 = "c2a9d0e4-6f1b-4a7e-b3c8-95d4e1f7a206"

ROOT, CHILD, GRANDCHILD = key("default"), key(f"task:default:{T1}"), key(f"task:task:default:{T1}:{T2}")
OTHER_ROOT, OTHER_CHILD = key("default", harness="reviewer"), key(f"task:default:{T3}", harness="reviewer")
ELSEWHERE = key("default", instance="inst-2")


def flue_sessions() -> dict[str, dict[str, Any]]:
    """What a Flue agent instance stores: a root session (with a screenshot) with a
    task, which has a task of its own (depth 2), all in harness "default"; another
    harness of the same instance with a session of the same name and its task; and
    another instance's "default" session.  Task sessions are named and linked as
    Flue 0.11 does: the name ``task:<parent name>:<taskId>``, the metadata
    ``{parentSession, taskId, cwd, agent, depth}`` (``agent`` left out when there is
    none), and the parent's ``metadata.taskSessions``."""

    def task(seed: int, text: str, parent: str, task_id: str, depth: int, **extra: Any) -> dict[str, Any]:
        b = SessionBuilder(seed)
        b.user(text)
        b.assistant()
        b.data["metadata"] = {"parentSession": parent, "taskId": task_id, "cwd": "/w", **extra, "depth": depth}
        return b.data

    root = SessionBuilder(11)
    root.user("Take a screenshot of the page.")
    root.assistant()
    root.tool_result(image_bytes=300_000)  # ~400K base64 characters: two Flue chunks
    root.data["metadata"]["taskSessions"] = [{"session": f"task:default:{T1}", "taskId": T1}]
    child = task(12, "Sub-task: summarise the CSS.", "default", T1, 1, agent="reviewer")
    child["metadata"]["taskSessions"] = [{"session": f"task:task:default:{T1}:{T2}", "taskId": T2}]
    grandchild = task(13, "Deeper.", f"task:default:{T1}", T2, 2)
    other = SessionBuilder(14)
    other.user("Another harness, the same session name.")
    other.data["metadata"]["taskSessions"] = [{"session": f"task:default:{T3}", "taskId": T3}]
    elsewhere = SessionBuilder(15)
    elsewhere.user("Another agent instance.")
    # The order Flue's rows end up in is not parents first (0.11.0 rewrites a row on
    # every save): put the tasks before their parents.
    return {
        GRANDCHILD: grandchild,
        CHILD: child,
        OTHER_CHILD: task(16, "A reviewer task.", "default", T3, 1),
        ROOT: root.data,
        OTHER_ROOT: other.data,
        ELSEWHERE: elsewhere.data,
    }


WRITERS = {
    "0.11.0": write_flue_0110,
    "0.11.1": lambda path, sessions: write_flue_0111(path, sessions, exact=True),
    "0.11.1-more-columns": write_flue_0111,
}


# ----------------------------------------------------------------------------- formats and task trees


@pytest.mark.parametrize("version", list(WRITERS))
def test_import_a_flue_database_keeps_the_task_tree(tmp_path: Path, version: str) -> None:
    sessions = flue_sessions()
    source = str(tmp_path / "flue.db")
    WRITERS[version](source, sessions)
    target = str(tmp_path / "store.db")
    res = run("import", target, source)
    assert res.returncode == 0, res.stderr
    assert "imported 6 sessions, skipped 0, failed 0, from 1 file" in res.stdout
    assert f"(Flue {version[:6]})" in res.stdout
    with eventlog.open(target) as store:
        for name, data in sessions.items():
            loaded = store.load(name)
            assert loaded == data and json.dumps(loaded) == json.dumps(data)  # key order too
        assert store.children(ROOT) == [CHILD]
        assert store.children(CHILD) == [GRANDCHILD]
        assert store.tree(ROOT) == [CHILD, GRANDCHILD]
        assert store.children(OTHER_ROOT) == [OTHER_CHILD]  # its own harness's "default"
        assert store.children(ELSEWHERE) == []
        assert sorted(store.delete(ROOT)) == sorted([ROOT, CHILD, GRANDCHILD])
        assert sorted(store.sessions()) == sorted([OTHER_ROOT, OTHER_CHILD, ELSEWHERE])
    again = run("import", target, source)
    assert again.returncode == 0 and "imported 3 sessions, skipped 3, failed 0" in again.stdout
    assert "already in the store (--replace saves over it)" in again.stdout


def test_resolve_parent() -> None:
    resolve = importers.resolve_parent
    meta = {"metadata": {"parentSession": "default", "taskId": T1}}
    # the parent need not be in the file: the key Flue would give it
    assert resolve(CHILD, meta) == (ROOT, None)
    assert resolve(CHILD, {}) == (ROOT, None)  # from the name alone
    # a parent name with colons (a task of a task), the taskId telling where it ends
    grand = {"metadata": {"parentSession": f"task:default:{T1}", "taskId": T2}}
    assert resolve(GRANDCHILD, grand) == (CHILD, None)
    # metadata that disagrees with the name: the name decides (Flue deletes trees by it)
    parent, note = resolve(CHILD, {"metadata": {"parentSession": "main", "taskId": T1}})
    assert parent == ROOT and note is not None and "disagrees" in note
    # a key not in Flue's exact form: linked only to a key found in the same file
    spaced = 'agent-session:["inst-1", "default", "task:default:t1"]'
    spaced_root = 'agent-session:["inst-1", "default", "default"]'
    assert resolve(spaced, {})[0] is None
    assert resolve(spaced, {}, {("inst-1", "default", "default"): spaced_root}) == (spaced_root, None)
    # a non-task session naming a parent: the same instance and harness
    assert resolve(key("helper"), {"metadata": {"parentSession": "default"}}) == (ROOT, None)
    # bare ids: a task name is relative to its own namespace; bare metadata is not linked
    assert resolve("task:main:t1", {}) == ("main", None)
    parent, note = resolve("notes", {"metadata": {"parentSession": "main"}})
    assert parent is None and note is not None and "not linked" in note
    assert resolve("notes", {"metadata": {"parentSession": ROOT}}) == (ROOT, None)
    assert resolve("plain", {"metadata": {}}) == (None, None)
    assert resolve(key("task:x"), {})[0] is None  # a task name that names no parent


@given(
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=20),
    st.uuids().map(str),
)
def test_flue_keys_resolve_for_any_names(instance: str, harness: str, parent: str, task_id: str) -> None:
    """Whatever the instance, harness and parent names (quotes, backslashes,
    controls, colons, non-ASCII), a task resolves to its parent's exact key."""
    parent_key = importers.flue_key(instance, harness, parent)
    child = importers.flue_key(instance, harness, f"task:{parent}:{task_id}")
    assert importers.flue_identity(parent_key) == (instance, harness, parent)
    assert importers.resolve_parent(child, {"metadata": {"parentSession": parent, "taskId": task_id}}) == (
        parent_key,
        None,
    )


def test_session_json_named_by_a_flue_key(tmp_path: Path) -> None:
    sessions = flue_sessions()
    target = str(tmp_path / "store.db")
    files = []
    for name in (CHILD, ROOT):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(sessions[name]), encoding="utf-8")
        files.append(str(path))
    res = run("import", target, *files)
    assert res.returncode == 0, res.stderr
    with eventlog.open(target) as store:
        assert store.children(ROOT) == [CHILD]


def test_pi_parent_is_linked_within_the_batch(tmp_path: Path) -> None:
    b = SessionBuilder(21)
    b.user("hello")
    parent_file = tmp_path / "2026-11-01T00-00-00-000Z_pi-parent.jsonl"
    write_pi_jsonl(str(parent_file), {"version": 3, "id": "pi-parent", "timestamp": "2026-11-01T00:00:00Z",
                                      "cwd": "/w"}, b.data["entries"])  # fmt: skip
    fork = tmp_path / "fork.jsonl"
    header = {"version": 3, "id": "pi-fork", "timestamp": "2026-11-02T00:00:00Z", "cwd": "/w",
              "parentSession": str(parent_file)}  # fmt: skip
    write_pi_jsonl(str(fork), header, b.data["entries"])
    orphan = tmp_path / "orphan.jsonl"
    write_pi_jsonl(str(orphan), {**header, "id": "pi-orphan", "parentSession": "/nowhere/x.jsonl"}, [])
    target = str(tmp_path / "store.db")
    res = run("import", target, str(fork), str(orphan), str(parent_file))  # the child first
    assert res.returncode == 0, res.stderr
    assert "not among the files imported: not linked" in res.stdout
    with eventlog.open(target) as store:
        assert store.children("pi-parent") == ["pi-fork"]
        assert store.parent("pi-orphan") is None


def test_import_pi_jsonl_and_session_json(tmp_path: Path) -> None:
    b = SessionBuilder(21)
    b.user("hello")
    b.assistant()
    b.tool_result()
    pi_file = str(tmp_path / "2026-11-01_abc.jsonl")
    write_pi_jsonl(pi_file, {"version": 3, "id": "pi-1", "timestamp": "2026-11-01T00:00:00Z", "cwd": "/w"},
                   b.data["entries"])  # fmt: skip
    json_file = tmp_path / "plain-session.json"
    json_file.write_text(json.dumps(b.data, ensure_ascii=False), encoding="utf-8")
    target = str(tmp_path / "store.db")
    res = run("import", target, pi_file, str(json_file), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert [(f["format"], [s["session"] for s in f["sessions"]]) for f in report["files"]] == [
        ("pi JSONL", ["pi-1"]),
        ("session JSON", ["plain-session"]),
    ]
    with eventlog.open(target) as store:
        pi = store.load("pi-1")
        assert pi is not None and pi["entries"] == b.data["entries"] and pi["leafId"] == b.data["leafId"]
        assert pi["metadata"]["cwd"] == "/w"
        assert store.load("plain-session") == b.data
