"""``eventlog import``: the formats, task trees, the per-file report and what a
failure leaves, hostile input (bounded memory, one-line errors), pipes and FIFOs,
and progress.  The command runs in a subprocess through its real entry point."""

from __future__ import annotations

import json
import os
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
from eventlog.importers import Imported, ImportFormatError, Limits, Unreadable
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


# ----------------------------------------------------------------------------- reports, failures, Ctrl-C


def session_file(directory: Path, name: str, seed: int = 1, text: str = "hello") -> str:
    b = SessionBuilder(seed)
    b.user(text)
    b.assistant()
    path = directory / f"{name}.json"
    path.write_text(json.dumps(b.data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_a_failed_import_into_a_new_path_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    res = run("import", str(tmp_path / "new.db"), str(tmp_path / "bad.json"))
    one_line_error(res, "bad.json", "not JSON")
    assert sorted(os.listdir(tmp_path)) == ["bad.json"]
    assert res.stdout.splitlines()[-1].endswith("(1 with failures) into " + str(tmp_path / "new.db"))  # nothing left
    # also when the store cannot take the session (a value it cannot store)
    (tmp_path / "odd.json").write_text('{"entries": [{"id": "a", "text": "\\ud800"}]}')
    res = run("import", str(tmp_path / "new.db"), str(tmp_path / "odd.json"))
    one_line_error(res, "odd.json", "cannot store it")
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "odd.json"]


def test_a_failed_import_never_removes_a_file_that_was_there(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    empty_store = tmp_path / "empty.db"
    eventlog.open(str(empty_store)).close()
    one_line_error(run("import", str(empty_store), str(bad)), "not JSON")
    with eventlog.open(str(empty_store)) as store:
        assert store.sessions() == []
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    res = run("import", str(notes), session_file(tmp_path, "s"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert notes.read_text() == "my notes"


def test_the_first_failed_file_stops_the_import_after_a_summary(tmp_path: Path) -> None:
    a, c = session_file(tmp_path, "a", 1), session_file(tmp_path, "c", 3)
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": [}')
    target = str(tmp_path / "store.db")
    res = run("import", target, a, str(bad), c)
    one_line_error(res, "bad.json", "not JSON")
    assert f"{a} (session JSON)\n  imported  a: 2 entries\n" in res.stdout
    assert f"{bad} (session JSON)\n  failed    {bad}, session 'bad': not JSON" in res.stdout
    assert res.stdout.splitlines()[-1] == (
        f"imported 1 session, skipped 0, failed 1, from 2 files (1 with failures) into {target} "
        "(stopped at the first failure; --keep-going goes on past it)"
    )
    assert c not in res.stdout
    with eventlog.open(target) as store:
        assert store.sessions() == ["a"]
    res = run("import", target, a, str(bad), c, "--keep-going")
    one_line_error(res, "bad.json")
    assert res.stdout.splitlines()[-1] == (
        f"imported 1 session, skipped 1, failed 1, from 3 files (1 with failures) into {target}"
    )
    with eventlog.open(target) as store:
        assert sorted(store.sessions()) == ["a", "c"]


def test_a_bad_session_in_a_flue_file(tmp_path: Path) -> None:
    """A session that cannot be read fails alone: without --keep-going the import
    stops there, with it the file's other sessions are imported."""
    source = str(tmp_path / "flue.db")
    write_flue_0111(source, flue_sessions())
    con = sqlite3.connect(source)
    con.execute("UPDATE flue_sessions SET data = NULL WHERE id = ?", (OTHER_CHILD,))
    con.commit()
    con.close()
    order = list(flue_sessions())
    bad_at = order.index(OTHER_CHILD)
    res = run("import", str(tmp_path / "a.db"), source)
    one_line_error(res, f"session {OTHER_CHILD!r}", "data is NULL, not text")
    with eventlog.open(str(tmp_path / "a.db")) as store:
        assert sorted(store.sessions()) == sorted(order[:bad_at])
    res = run("import", str(tmp_path / "b.db"), source, "--keep-going", "--json")
    one_line_error(res, "data is NULL")
    report = json.loads(res.stdout)
    [file] = report["files"]
    assert file["status"] == "failed" and file["format"] == "Flue 0.11.1"
    assert [(s["session"], s["status"]) for s in file["sessions"]] == [
        (name, "failed" if name == OTHER_CHILD else "imported") for name in order
    ]
    assert report["summary"] == {"imported": 5, "replaced": 0, "skipped": 0, "failed": 1, "files": 1,
                                 "files_failed": 1}  # fmt: skip
    assert not report["stopped"] and not report["interrupted"]
    with eventlog.open(str(tmp_path / "b.db")) as store:
        assert sorted(store.sessions()) == sorted(set(order) - {OTHER_CHILD})
        assert store.children(ROOT) == [CHILD]


def test_json_report(tmp_path: Path) -> None:
    a = session_file(tmp_path, "a")
    target = str(tmp_path / "store.db")
    run("import", target, a)
    res = run("import", target, a, str(tmp_path / "missing.json"), "--replace", "--keep-going", "--json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["store"] == target
    first, second = report["files"]
    assert first == {"file": a, "format": "session JSON", "status": "ok", "error": None,
                     "sessions": [{"session": "a", "status": "replaced", "parent": None, "entries": 2,
                                   "bytes": os.path.getsize(a), "error": None, "note": None}]}  # fmt: skip
    assert second["status"] == "failed" and "No such file" in second["error"] and second["sessions"] == []
    assert report["summary"] == {"imported": 0, "replaced": 1, "skipped": 0, "failed": 1, "files": 2,
                                 "files_failed": 1}  # fmt: skip


def read_until(stream: Any, text: str, deadline: float) -> str:
    """Read a subprocess's pipe until ``text`` appears (or the deadline passes)."""
    seen = b""
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.5)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_ctrl_c_while_waiting_on_a_fifo_reports_what_was_done(tmp_path: Path) -> None:
    a = session_file(tmp_path, "a")
    fifo = tmp_path / "later.json"
    os.mkfifo(fifo)
    target = str(tmp_path / "store.db")
    p = subprocess.Popen([sys.executable, "-m", "eventlog", "import", target, a, str(fifo)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        seen = read_until(p.stderr, "waiting for a writer", time.monotonic() + 60)
        assert "later.json: nothing written to this pipe or FIFO yet; waiting for a writer" in seen
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert out.decode().splitlines()[-1] == f"imported 1 session, skipped 0, failed 0, from 2 files into {target} " \
        "(interrupted)"  # fmt: skip
    assert "eventlog: import interrupted" in err.decode() and b"Traceback" not in err
    with eventlog.open(target) as store:
        assert store.sessions() == ["a"] and store.verify().ok


INTERRUPTING = """
import sys
from eventlog import cache, writer
# Writer._encodable: while a write is encoded (before its commit); SessionCache.saved: after it.
owner = writer.Writer if sys.argv[1] == "_encodable" else cache.SessionCache
calls = []
original = getattr(owner, sys.argv[1])
def interrupted(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[2]):
        if sys.argv[1] == "saved":  # after the commit
            original(self, *args, **kwargs)
        raise KeyboardInterrupt
    return original(self, *args, **kwargs)
setattr(owner, sys.argv[1], interrupted)
from eventlog.cli import main
main(sys.argv[3:], prog_name="eventlog")
"""


@pytest.mark.parametrize("where", ["_encodable", "saved"])
def test_ctrl_c_during_a_save(tmp_path: Path, where: str) -> None:
    """Ctrl-C inside the second session's save: before its commit the session is
    rolled back and not reported; after it, it is in the store and reported."""
    files = [session_file(tmp_path, name, seed) for seed, name in enumerate("abc")]
    target = str(tmp_path / "store.db")
    res = subprocess.run([sys.executable, "-c", INTERRUPTING, where, "2", "import", target, *files],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "eventlog: import interrupted" in res.stderr
    done = ["a", "b"] if where == "saved" else ["a"]
    with eventlog.open(target) as store:
        assert store.sessions() == done and store.verify().ok
    summary = f"imported {len(done)} session{'s' if len(done) > 1 else ''}, skipped 0, failed 0"
    assert res.stdout.splitlines()[-1].startswith(summary) and res.stdout.endswith("(interrupted)\n")


def test_ctrl_c_before_anything_was_imported_leaves_no_store(tmp_path: Path) -> None:
    a = session_file(tmp_path, "a")
    target = tmp_path / "new.db"
    res = subprocess.run([sys.executable, "-c", INTERRUPTING, "_encodable", "1", "import", str(target), a],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 130 and "(interrupted)" in res.stdout
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_a_session_the_store_refuses_is_not_half_saved(tmp_path: Path) -> None:
    target = str(tmp_path / "store.db")
    a = session_file(tmp_path, "a")
    assert run("import", target, a).returncode == 0
    with eventlog.open(target) as store:
        before = store.load("a")
    data = json.loads(Path(a).read_text())
    data["entries"].append({"type": "custom", "id": "x", "data": "\ud800"})  # a lone surrogate
    Path(a).write_text(json.dumps(data))  # ASCII: "\\ud800" in the file, valid JSON
    res = run("import", target, a, "--replace")
    one_line_error(res, "session 'a': cannot store it")
    with eventlog.open(target) as store:
        assert store.load("a") == before and store.seq("a") == 1


# ----------------------------------------------------------------------------- hostile input


def flue_file(tmp_path: Path, *statements: tuple[str, tuple[Any, ...]] | str) -> str:
    """A Flue 0.11.1 file (unconstrained tables) of flue_sessions(), then changed by
    ``statements``.  In ROOT: entry 0 a user message, entry 2 a tool result whose
    screenshot is in two chunks."""
    path = str(tmp_path / "flue.db")
    write_flue_0111(path, flue_sessions())
    con = sqlite3.connect(path)
    for statement in statements:
        sql, params = (statement, ()) if isinstance(statement, str) else statement
        con.execute(sql, params)
    con.commit()
    con.close()
    return path


def root_entry(position: int) -> str:
    return str(flue_sessions()[ROOT]["entries"][position]["id"])


def set_entry(data: str | bytes, position: int = 0) -> tuple[str, tuple[Any, ...]]:
    return ("UPDATE flue_session_entries SET data = ? WHERE session_id = ? AND position = ?", (data, ROOT, position))


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_SESSIONS = {
    "NULL session data": (("UPDATE flue_sessions SET data = NULL WHERE id = ?", (ROOT,)), "data is NULL, not text"),
    "BLOB session data": (("UPDATE flue_sessions SET data = CAST(data AS BLOB) WHERE id = ?", (ROOT,)),
                          "data is a BLOB, not text"),
    "session data not an object": (("UPDATE flue_sessions SET data = '[1]' WHERE id = ?", (ROOT,)),
                                   "data is not a JSON object"),
    "NULL entry": (set_entry(None), f"entry {root_entry(0)!r}: data is NULL, not text"),  # type: ignore[arg-type]
    "BLOB entry id": (("UPDATE flue_session_entries SET entry_id = CAST(entry_id AS BLOB) WHERE position = 0 "
                       "AND session_id = ?", (ROOT,)), "entry #0: entry_id is a BLOB, not text"),
    "invalid UTF-8 entry": (("UPDATE flue_session_entries SET data = CAST(? AS TEXT) WHERE session_id = ? "
                             "AND position = 0", (b'{"type":"custom","id":"u","data":"\xff"}', ROOT)),
                            f"entry {root_entry(0)!r}: not UTF-8 text (byte 34: b'\\xff')"),
    "entry nested 100,000 deep": (set_entry(DEEP), "JSON nested deeper than eventlog stores (200 levels)"),
    "entry nested 250 deep": (set_entry('{"type":"custom","id":"d","v":' + "[" * 250 + "]" * 250 + "}"),
                              "entry 'd': value nested deeper than 200 levels"),
    "duplicate key": (set_entry('{"type":"custom","id":"a","id":"b"}'), "the key 'id' appears twice"),
    "NaN": (set_entry('{"type":"custom","id":"n","v":NaN}'), "NaN is not JSON (give --allow-nan"),
    "-Infinity": (set_entry('{"type":"custom","id":"n","v":-Infinity}'), "-Infinity is not JSON"),
    "5,000-digit integer": (set_entry('{"type":"custom","id":"n","v":' + "9" * 5000 + "}"),
                            "not JSON eventlog can read"),
    "not JSON": (set_entry('{"type":'), "not JSON (Expecting value at column 9)"),
    "BLOB image chunk": ("UPDATE flue_image_chunks SET data = CAST(data AS BLOB) WHERE chunk_index = 1",
                         "image '0', chunk 1: data is a BLOB, not text"),
    "NULL image chunk": ("UPDATE flue_image_chunks SET data = NULL WHERE chunk_index = 0",
                         "image '0', chunk 0: data is NULL, not text"),
    "text chunk_index": ("UPDATE flue_image_chunks SET chunk_index = 'one' WHERE chunk_index = 1",
                         "chunk #1: chunk_index is text, not an integer"),
    "NULL chunk_count": ("UPDATE flue_image_chunks SET chunk_count = NULL", "chunk_count is NULL, not an integer"),
    "a chunk missing": ("DELETE FROM flue_image_chunks WHERE chunk_index = 1", "image '0': 1 of its 2 chunks"),
    "a chunk twice": ("UPDATE flue_image_chunks SET chunk_index = 0", "image '0': chunk 0 appears twice"),
    "chunk_count wrong": ("UPDATE flue_image_chunks SET chunk_count = 3", "image '0': 2 of its 3 chunks"),
    "no chunks": ("DELETE FROM flue_image_chunks", "image '0' has no chunks"),
    "chunks with no marker": (("INSERT INTO flue_image_chunks(data, owner_kind, owner_id, owner_part, image_id, "
                               "chunk_index, chunk_count) VALUES ('QUFB', 'session_entry', ?, ?, '7', 0, 1)",
                               (ROOT, root_entry(0))), "image chunks '7' have no marker"),
    "BLOB image_id": ("UPDATE flue_image_chunks SET image_id = CAST(image_id AS BLOB)",
                      "image '0' has no chunks: the entry's chunks have an image_id that is a BLOB"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE_SESSIONS))
def test_a_malformed_flue_session_is_one_clear_error(tmp_path: Path, case: str) -> None:
    statement, message = HOSTILE_SESSIONS[case]
    path = flue_file(tmp_path, statement)
    items = list(importers.read(path))
    bad = [i for i in items if isinstance(i, Unreadable)]
    assert [i.session_id for i in bad] == [ROOT]
    error = bad[0].error
    assert isinstance(error, eventlog.EventLogError) and error.session_id == ROOT and error.file == path
    assert str(error).startswith(f"{path}, session {ROOT!r}: ") and "\n" not in str(error)
    assert message in str(error), str(error)
    assert {i.session_id for i in items if isinstance(i, Imported)} == set(flue_sessions()) - {ROOT}


def test_a_malformed_session_id() -> None:
    with tempfile.TemporaryDirectory() as d:
        for change, message in [
            ("CAST(id AS BLOB)", "id is a BLOB, not text"),
            ("CAST(x'6964ff' AS TEXT)", "id not UTF-8 text (byte 2: b'\\xff')"),
            ("NULL", "id is NULL, not text"),
            ("printf('%.*c', 5000, 'x')", "id over 4096 bytes"),
        ]:
            path = flue_file(Path(d), f"UPDATE flue_sessions SET id = {change} WHERE rowid = 1")
            items = list(importers.read(path))
            assert isinstance(items[0], Unreadable) and items[0].session_id is None
            assert str(items[0].error) == f"{path}, flue_sessions row 1: {message}"
            assert all(isinstance(i, Imported) for i in items[1:])
            os.unlink(path)


HOSTILE_FILES = {
    "no flue_sessions": ("DROP TABLE flue_sessions",
                         "an SQLite file without a flue_sessions table (not a Flue database)"),
    "a view": ("DROP TABLE flue_image_chunks; CREATE VIEW flue_image_chunks AS SELECT 1 AS data",
               "flue_image_chunks is a view, not a table"),
    "a column missing": ("ALTER TABLE flue_session_entries DROP COLUMN position",
                         "flue_session_entries has no column position"),
    "a generated column": ("ALTER TABLE flue_sessions RENAME TO old; CREATE TABLE flue_sessions(id TEXT, "
                           "data TEXT GENERATED ALWAYS AS (printf('%.*c', 300, 'x')))",
                           "flue_sessions.data is a generated column, not data Flue wrote"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_a_malformed_flue_file_is_one_clear_error(tmp_path: Path, case: str) -> None:
    script, message = HOSTILE_FILES[case]
    path = flue_file(tmp_path)
    con = sqlite3.connect(path)
    con.executescript(script)
    con.close()
    with pytest.raises(ImportFormatError) as caught:
        list(importers.read(path))
    assert str(caught.value) == f"{path}: {message}"
    one_line_error(run("import", str(tmp_path / "s.db"), path), f"{path}: {message}")
    assert not (tmp_path / "s.db").exists()


HOSTILE_TEXT = {
    "s.json": (b'{"entries": [{"id": "\xff"}]}', "s.json, session 's': not UTF-8 text (byte 21: b'\\xff')"),
    "deep.json": (b'{"entries": ' + DEEP.encode() + b"}", "session 'deep': JSON nested deeper than eventlog stores"),
    "nan.json": (b'{"entries": [{"id": "a", "v": NaN}]}', "session 'nan': NaN is not JSON"),
    "dup.json": (b'{"entries": [], "entries": []}', "the key 'entries' appears twice"),
    "list.json": (b"[1, 2]", "not a session (a JSON object with an entries list)"),
    "empty.json": (b"", "empty.json: empty file"),
    "p.jsonl": (b'{"type": "session", "id": "p"}\n{"type": "custom", "id": "a"}\n{"id": "\xff"}\n',
                "session 'p': line 3: not UTF-8 text"),
    "q.jsonl": (b'{"type": "session", "id": "q"}\n' + DEEP.encode() + b"\n", "session 'q': line 2: JSON nested deeper"),
    "r.jsonl": (b'{"type": "session", "id": "r"}\n{"type": "custom", "id": "a", "v": Infinity}\n',
                "line 2: Infinity is not JSON"),
    "h.jsonl": (b'{"type": "custom", "id": "a"}\n', "h.jsonl: line 1 is not a pi session header"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HOSTILE_TEXT))
def test_malformed_json_is_one_clear_error(tmp_path: Path, name: str) -> None:
    content, message = HOSTILE_TEXT[name]
    (tmp_path / name).write_bytes(content)
    res = run("import", str(tmp_path / "s.db"), str(tmp_path / name))
    one_line_error(res, message)
    assert sorted(os.listdir(tmp_path)) == [name]


def test_not_files(tmp_path: Path) -> None:
    one_line_error(run("import", str(tmp_path / "s.db"), str(tmp_path)), f"{tmp_path}: is a directory")
    one_line_error(run("import", str(tmp_path / "s.db"), "/dev/null"), "/dev/null: empty file")
    (tmp_path / "junk.db").write_bytes(b"SQLite format 3\x00" + b"\x01" * 200)
    one_line_error(run("import", str(tmp_path / "s.db"), str(tmp_path / "junk.db")), "not a readable SQLite database")


def test_nan_is_read_when_allowed(tmp_path: Path) -> None:
    source = tmp_path / "nan.json"
    source.write_text('{"entries": [{"id": "a", "v": NaN, "w": -Infinity}]}')
    one_line_error(run("import", str(tmp_path / "s.db"), str(source)), "NaN is not JSON (give --allow-nan")
    assert run("import", str(tmp_path / "s.db"), str(source), "--allow-nan").returncode == 0
    with eventlog.open(str(tmp_path / "s.db")) as store:
        entry = store.load("nan")["entries"][0]  # type: ignore[index]
        assert entry["v"] != entry["v"] and entry["w"] == float("-inf")


def test_the_value_limit_is_the_stores() -> None:
    assert eventlog.Options().max_body_bytes == importers.MAX_VALUE_BYTES


def big_images_file(tmp_path: Path, images: int, image_bytes: int) -> str:
    b = SessionBuilder(5)
    b.user("screens")
    for _ in range(images):
        b.assistant()
        b.tool_result(image_bytes=image_bytes)
    path = str(tmp_path / "big.db")
    write_flue_0111(path, {ROOT: b.data}, exact=True)
    return path


def test_sizes_are_checked_before_anything_is_assembled(tmp_path: Path) -> None:
    """The declared sizes (SQL length() sums) refuse a session over the limits
    before one chunk is fetched."""
    path = big_images_file(tmp_path, 3, 1_500_000)  # three images of 2 MB of base64
    opened = importers.ImportFile._open_sqlite

    def no_chunk_fetched(self: importers.ImportFile) -> None:
        opened(self)
        con = self._con
        assert con is not None

        class Spy:
            def execute(self, sql: str, *args: Any) -> Any:
                assert "typeof(data), data FROM flue_image_chunks" not in sql, "a chunk was fetched"
                return con.execute(sql, *args)  # type: ignore[union-attr]

            def close(self) -> None:
                con.close()  # type: ignore[union-attr]

        self._con = Spy()  # type: ignore[assignment]

    with mock.patch.object(importers.ImportFile, "_open_sqlite", no_chunk_fetched):
        [item] = importers.read(path, limits=Limits(max_session_bytes=5 << 20))
        assert isinstance(item, Unreadable) and "over the limit of 5.0 MiB for one session" in str(item.error)
        [item] = importers.read(path, limits=Limits(max_value_bytes=1 << 20))
        assert isinstance(item, Unreadable) and "over the limit of 1.0 MiB for one value" in str(item.error)
        assert "image '0'" in str(item.error)
    [item] = importers.read(path, limits=Limits(max_session_bytes=7 << 20, max_value_bytes=3 << 20))
    assert isinstance(item, Imported)
    res = run("import", str(tmp_path / "s.db"), path, "--max-session-size", "5M")
    one_line_error(res, "over the limit of 5.0 MiB for one session")
    assert run("import", str(tmp_path / "s.db"), path, "--max-session-size", "7m").returncode == 0
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"entries": [{"id": "a", "text": "x" * 3_000_000}]}))
    one_line_error(run("import", str(tmp_path / "t.db"), str(big), "--max-session-size", "2M"),
                   "2.9 MiB, over the limit of 2.0 MiB for one session")  # fmt: skip
    assert run("import", str(tmp_path / "t.db"), str(big), "--max-session-size", "x").returncode == 2


def hostile_flue(path: str, case: str) -> None:
    """Small Flue files that yield gigabytes: image chunks or a session row made by
    generated columns that repeat a character (8,192 chunks of 256 KiB: 2 GiB; one
    image of 4,096: 1 GiB; a 500 MB session row)."""
    con = sqlite3.connect(path)
    repeat = "printf('%.*c', 262144, 'A')"
    if case == "500 MB session row":
        con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, updated_at INTEGER)")
        con.execute("INSERT INTO flue_sessions VALUES (?, 0)", (ROOT,))
        con.commit()  # added after the row, or the insert computes it
        con.execute("ALTER TABLE flue_sessions ADD COLUMN data TEXT GENERATED ALWAYS AS "
                    "('{\"entries\":[],\"x\":\"' || printf('%.*c', 500000000, 'x') || '\"}') VIRTUAL")  # fmt: skip
    else:
        images, chunks = (8, 1024) if case == "2 GB of image chunks" else (1, 4096)
        con.execute("CREATE TABLE flue_sessions(id TEXT PRIMARY KEY, data TEXT)")
        con.execute("CREATE TABLE flue_session_entries(session_id, entry_id, position, data)")
        con.execute("CREATE TABLE flue_image_chunks(owner_kind, owner_id, owner_part, image_id, chunk_index, "
                    f"chunk_count, data TEXT GENERATED ALWAYS AS ({repeat}))")  # fmt: skip
        con.execute("INSERT INTO flue_sessions VALUES (?, '{\"leafId\": null}')", (ROOT,))
        for i in range(images):
            entry = {"type": "message", "id": f"e{i}", "message": {"role": "user", "content": [
                {"type": "image", "data": "__flue_image_chunks__:0", "mimeType": "image/png"}]}}  # fmt: skip
            con.execute("INSERT INTO flue_session_entries VALUES (?, ?, ?, ?)", (ROOT, f"e{i}", i, json.dumps(entry)))
            con.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {chunks - 1}) "
                "INSERT INTO flue_image_chunks(owner_kind, owner_id, owner_part, image_id, chunk_index, "
                f"chunk_count) SELECT 'session_entry', ?, ?, '0', i, {chunks} FROM n",
                (ROOT, f"e{i}"),
            )
    con.commit()
    con.close()


#: Runs ``python ARGS`` (``sys.argv[2:]``) under a 2 GiB address-space limit, then
#: writes its own peak resident memory (``VmHWM``, kB) to the file ``sys.argv[1]``.
#: Measured inside the child: a high-water mark from ``wait4`` would include the
#: pages of the (large, forked) test process the child started as, which Linux
#: carries across ``exec``.
MEASURED = """
import resource, runpy, sys
out, args = sys.argv[1], sys.argv[2:]
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
def peak():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(str(kb))
try:
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
finally:
    peak()
"""


def run_measured(*args: str) -> tuple[int, str, str, int]:
    """``python ARGS`` (``-m MODULE ...`` or ``-c CODE ...``) under a 2 GiB
    address-space limit (so that a runaway import fails rather than exhausting the
    machine); returns the exit status, stdout, stderr and the peak resident memory
    of the child itself in MiB."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux)")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        peak_file = os.path.join(tmp, "peak")
        p = subprocess.Popen([sys.executable, "-c", MEASURED, peak_file, *args], stdout=out, stderr=err)
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("the import did not end in 300 s") from None
        out.seek(0)
        err.seek(0)
        with open(peak_file) as f:
            peak = int(f.read()) // 1024
        return p.returncode, out.read().decode(), err.read().decode(), peak


@pytest.mark.parametrize("case", ["2 GB of image chunks", "1 GB image", "500 MB session row"])
def test_hostile_sizes_take_little_memory(tmp_path: Path, case: str) -> None:
    source = str(tmp_path / "hostile.db")
    hostile_flue(source, case)
    assert os.path.getsize(source) < 1 << 20
    status, _, err, peak = run_measured("-m", "eventlog", "import", str(tmp_path / "s.db"), source)
    assert status == 1 and "Traceback" not in err and "is a generated column, not data Flue wrote" in err, err
    assert peak < 300, f"{peak} MiB"
    assert not (tmp_path / "s.db").exists()


#: The import command with generated columns let through, as if they were stored.
GENERATED_LET_THROUGH = """
import sys
from eventlog import importers
from eventlog.cli import main
check = importers.ImportFile._check_tables
def let_through(self, kinds):
    con = self._con
    class Stored:
        def execute(self, sql, *args):
            rows = con.execute(sql, *args)
            return [r[:6] + (0,) for r in rows] if sql.startswith("PRAGMA table_xinfo") else rows
    self._con = Stored()
    try:
        check(self, kinds)
    finally:
        self._con = con
importers.ImportFile._check_tables = let_through
main(sys.argv[1:], prog_name="eventlog")
"""


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("2 GB of image chunks", "2.0 GiB of rows and image chunks, over the limit of 256.0 MiB for one session"),
        ("1 GB image", "1.0 GiB of rows and image chunks, over the limit of 256.0 MiB for one session"),
    ],
)
def test_declared_sizes_alone_bound_memory(tmp_path: Path, case: str, message: str) -> None:
    """Even data that is there (here: generated columns let through) is refused
    from its declared size, summed by SQL, before any of it is fetched."""
    source = str(tmp_path / "hostile.db")
    hostile_flue(source, case)
    status, _, err, peak = run_measured("-c", GENERATED_LET_THROUGH, "import", str(tmp_path / "s.db"), source)
    assert status == 1 and "Traceback" not in err and message in err, err
    assert peak < 300, f"{peak} MiB"


def test_many_tiny_json_values_are_refused_before_parsing(tmp_path: Path) -> None:
    """[[],[],...] takes ~28 times its text once parsed: refused from an estimate."""
    source = tmp_path / "tiny.json"
    source.write_text('{"entries": [' + ",".join(["[]"] * 300_000) + "]}")
    res = run("import", str(tmp_path / "s.db"), str(source), "--max-session-size", "1M")
    one_line_error(res, "so many small JSON values that reading them would take over 4.0 MiB of memory")
    assert run("import", str(tmp_path / "s.db"), str(source), "--max-session-size", "8M").returncode == 0


# ----------------------------------------------------------------------------- pipes and FIFOs


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "PY": sys.executable}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(...)")
def test_import_from_pipes(tmp_path: Path) -> None:
    """Every format read from a pipe (process substitution): told from its content,
    read once; an SQLite file is copied to a temporary file, removed afterwards."""
    session_file(tmp_path, "s")
    b = SessionBuilder(21)
    b.user("hello")
    write_pi_jsonl(str(tmp_path / "p.jsonl"), {"version": 3, "id": "pi-1", "timestamp": "2026-11-01T00:00:00Z"},
                   b.data["entries"])  # fmt: skip
    write_flue_0111(str(tmp_path / "flue.db"), flue_sessions(), exact=True)
    spools = set(Path(tempfile.gettempdir()).glob("eventlog-import-*"))
    res = bash('"$PY" -m eventlog import s.db --id from-pipe <(cat s.json)', tmp_path)
    assert res.returncode == 0, res.stderr
    res = bash('"$PY" -m eventlog import s.db <(cat p.jsonl) <(cat flue.db)', tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(pi JSONL)" in res.stdout and "(Flue 0.11.1)" in res.stdout
    with eventlog.open(str(tmp_path / "s.db")) as store:
        assert store.load("from-pipe") == json.loads((tmp_path / "s.json").read_text())
        assert store.load("pi-1") is not None and store.tree(ROOT) == [CHILD, GRANDCHILD]
    assert set(Path(tempfile.gettempdir()).glob("eventlog-import-*")) == spools
    res = bash('"$PY" -m eventlog import t.db <(cat s.json)', tmp_path)
    one_line_error(res, "no file name (a pipe or standard input): give the session id with --id")
    assert not (tmp_path / "t.db").exists()


def test_import_from_standard_input(tmp_path: Path) -> None:
    text = Path(session_file(tmp_path, "s")).read_text()
    target = str(tmp_path / "store.db")
    assert run("import", target, "-", "--id", "stdin-session", input=text).returncode == 0
    flue = tmp_path / "flue.db"
    write_flue_0110(str(flue), flue_sessions())
    res = run("import", target, "-", input=flue.read_bytes())
    assert res.returncode == 0, res.stderr
    with eventlog.open(target) as store:
        assert store.load("stdin-session") == json.loads(text) and store.children(ROOT) == [CHILD]
    res = run("import", target, "a.json", "b.json", "--id", "x")
    assert res.returncode == 2 and "--id names the session of one file" in res.stderr


def test_an_sqlite_file_from_a_pipe_is_copied_up_to_a_limit(tmp_path: Path) -> None:
    flue = tmp_path / "flue.db"
    write_flue_0110(str(flue), flue_sessions())
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, flue.read_bytes()), os.close(w)))
    writer.start()
    try:
        with pytest.raises(ImportFormatError, match=r"over the limit of 1\.0 KiB for that: give it as a file"):
            importers.open_file(f"/dev/fd/{r}", limits=Limits(max_spool_bytes=1024))
    finally:
        os.close(r)
        writer.join()


def test_a_fifo_without_a_writer_says_it_waits(tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes: the import says on stderr that it
    waits (rather than hanging silently), then reads what is written."""
    fifo = tmp_path / "s.json"
    os.mkfifo(fifo)
    target = str(tmp_path / "store.db")
    p = subprocess.Popen([sys.executable, "-m", "eventlog", "import", target, str(fifo)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        seen = read_until(p.stderr, "waiting for a writer", time.monotonic() + 60)
        assert f"eventlog: {fifo}: nothing written to this pipe or FIFO yet; waiting for a writer" in seen
        with open(fifo, "w") as f:
            f.write(json.dumps({"entries": [{"id": "a"}], "leafId": "a"}))
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    with eventlog.open(target) as store:
        assert store.load("s") == {"entries": [{"id": "a"}], "leafId": "a"}


# ----------------------------------------------------------------------------- progress


def test_progress_goes_to_a_terminal_on_stderr_never_to_stdout(tmp_path: Path) -> None:
    import pty

    source = big_images_file(tmp_path, 4, 200_000)
    a = session_file(tmp_path, "a")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "eventlog", "import", str(tmp_path / "s.db"), source, a],
                             stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
        os.close(slave)
        out, _ = p.communicate(timeout=120)
        terminal = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert p.returncode == 0
    assert b"2/2 a.json: 2 sessions" in terminal and b"/1.1 MiB" in terminal  # a count and bytes
    assert b"\x1b" not in out and out.decode().splitlines()[-1].startswith("imported 2 sessions")


def test_progress_advances_within_one_file(tmp_path: Path) -> None:
    """Bytes are reported as a big file's sessions and entries are read, not only
    when the file is done."""
    path = big_images_file(tmp_path, 3, 100_000)
    seen: list[tuple[int, int]] = []
    done: list[Any] = []
    with importers.open_file(path, on_bytes=lambda n: seen.append((n, len(done)))) as f:
        for item in f:
            done.append(item)
    before_first = [n for n, sessions in seen if sessions == 0]
    assert len(before_first) >= 7  # the session row, 7 entries, 3 images
    assert sum(n for n, _ in seen) >= 3 * 100_000 * 4 // 3
