"""``eventlog serve``: the local web view, driven in a real headless Chromium.

The server runs as the CLI runs it (``python -m eventlog serve PATH --port 0``, in
a process of its own); Chromium is driven over the DevTools protocol
(tests/browser.py): pages are loaded, the search boxes typed into, links
clicked, the DOM read.  A new event is saved from this process while a page is
open, and the page must show it within a few seconds.

CI installs chromium and sets ``EVENTLOG_REQUIRE_BROWSER=1``, so there a missing
browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import eventlog
from eventlog.errors import InvalidValueError
from eventlog.serve import make_server

from ..browser import CHROMIUM, Browser

if CHROMIUM is None:
    if os.environ.get("EVENTLOG_REQUIRE_BROWSER"):
        raise RuntimeError("EVENTLOG_REQUIRE_BROWSER is set but no chromium is installed")
    pytest.skip("no chromium (CI installs it)", allow_module_level=True)

ROOT = Path(eventlog.__file__).resolve().parents[1]
T0 = 1_795_000_000_000
PARENT = "task/1"
CHILD = "sub agent ü/#?"  # every character that needs quoting in an address


def entry(i: int, role: str, content: Any, at_ms: int, **extra: Any) -> dict[str, Any]:
    """A pi entry ``e{i}`` after ``e{i-1}``, written ``at_ms`` after T0."""
    return {"type": "message", "id": f"e{i}", "parentId": f"e{i - 1}" if i else None, "timestamp": T0 + at_ms,
            "message": {"role": role, "content": content, **extra}}  # fmt: skip


def parent_entries() -> list[dict[str, Any]]:
    """A run: a prompt, a tool call (2.5 s), a reply that hands over to a sub-agent,
    then long notes (the page is taller than the window)."""
    e = [
        entry(0, "user", "Find the bug in <b>parser.py</b>", 0),
        entry(1, "assistant", [{"type": "toolCall", "id": "c1", "name": "bash", "arguments": {"cmd": "grep TODO"}}],
              1500, usage={"input": 100, "output": 20, "cacheRead": 5, "cacheWrite": 0, "cost": {"total": 0.0123}},
              model="m-1"),
        {"type": "message", "id": "e2", "parentId": "e1", "timestamp": T0 + 4000,
         "message": {"role": "toolResult", "toolCallId": "c1", "toolName": "bash",
                     "content": [{"type": "text", "text": "parser.py:12: TODO handle quotes"}], "isError": False}},
        entry(3, "assistant", "Spawning a sub-agent to fix it.", 5000,
              usage={"input": 200, "output": 30, "cost": {"total": 0.02}}, model="m-1"),
    ]  # fmt: skip
    for k in range(4, 9):
        e.append(entry(k, "user", f"note {k}\n" + "a long line of notes\n" * 40, 5000 + 1000 * k))
    return e


def save_run(store: eventlog.Store, session: str, entries: list[dict[str, Any]], parent: str | None = None) -> None:
    """Each entry saved by a save of its own: entry i is written by event i + 1."""
    for i in range(len(entries)):
        store.save(session, {"entries": entries[: i + 1], "leafId": entries[i]["id"]}, parent_id=parent)


def fill(store: eventlog.Store) -> None:
    save_run(store, PARENT, parent_entries())
    save_run(store, CHILD, [entry(0, "user", "Fix the quotes in parser.py", 6000),
                            entry(1, "assistant", "Done: quotes handled.", 9000)], parent=PARENT)  # fmt: skip
    store.save("other", {"messages": [{"role": "user", "content": "unrelated"}]})
    for name in ("live", "doomed", "doomed-open"):
        save_run(store, name, [entry(0, "user", f"{name} starts", 0)])


def start(target: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``eventlog serve TARGET --port 0``, and the address it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "eventlog", "serve", target, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.communicate(timeout=10)}")
    return proc, found.group(0)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, as a user stops it; its exit status and stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "s.db"
    with eventlog.open(str(path)) as store:
        fill(store)
    return path


@pytest.fixture(scope="module")
def url(db: Path) -> Iterator[str]:
    proc, address = start(str(db))
    yield address
    code, err = stop(proc)
    assert code == 0 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium")) as b:
        yield b


def s(session: str) -> str:
    return "s/" + quote(session, safe="")


def tree(b: Browser) -> dict[str, Any]:
    """Each listed session: the session it is nested under (None at the top) and
    whether it is shown as a match (not just as the parent of one)."""
    rows = b.js("[...document.querySelectorAll('#sessions li')].map(li => [li.dataset.session, "
                "(li.parentElement.closest('li') || {dataset: {}}).dataset.session || null, "
                "!li.classList.contains('context')])")  # fmt: skip
    return {r[0]: (r[1], r[2]) for r in rows}


def hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.") + f"{ms % 1000:03d}"


# ----------------------------------------------------------------------------- the sessions page


def test_the_sessions_page_nests_sub_agents_under_their_parent(url: str, browser: Browser) -> None:
    browser.goto(url)
    t = tree(browser)
    assert t[CHILD] == (PARENT, True)
    assert t[PARENT] == (None, True) and t["other"] == (None, True)
    href = browser.js(f"document.querySelector('li[data-session={json.dumps(CHILD)}] > a').getAttribute('href')")
    assert href == "/" + s(CHILD)


def test_the_filter_keeps_matches_and_their_parents(url: str, browser: Browser) -> None:
    browser.goto(url)
    browser.type("#filter", "AGENT Ü")
    t = tree(browser)
    assert t == {PARENT: (None, False), CHILD: (PARENT, True)}  # the parent shown as context only
    assert browser.text("#count") == "1 of 6 sessions"
    browser.type("#filter", "zzz-nothing")
    assert tree(browser) == {}
    browser.type("#filter", "")
    assert len(tree(browser)) == 6


def test_the_text_search_finds_lines_in_any_session(url: str, browser: Browser) -> None:
    browser.goto(url)
    browser.type("#text", "QUOTES")
    browser.click("#grep button")
    browser.wait("document.querySelectorAll('#hits li').length > 0")
    hits = browser.js("[...document.querySelectorAll('#hits li')].map(li => [li.querySelector('a')"
                      ".getAttribute('href'), li.querySelector('.line').textContent])")  # fmt: skip
    assert ["/" + s(PARENT) + "#seq=3", "parser.py:12: TODO handle quotes"] in hits
    assert ["/" + s(CHILD) + "#seq=2", "Done: quotes handled."] in hits
    assert len(hits) == 3


def test_new_and_deleted_sessions_show_on_the_open_page(url: str, db: Path, browser: Browser) -> None:
    browser.goto(url)
    assert "follow-up" not in tree(browser)
    with eventlog.open(str(db)) as store:
        save_run(store, "follow-up", [entry(0, "user", "one more thing", 0)], parent=PARENT)
    browser.wait("document.querySelector('li[data-session=\"follow-up\"]') !== null", 10)
    assert tree(browser)["follow-up"] == (PARENT, True)
    with eventlog.open(str(db)) as store:
        store.delete("follow-up")
    browser.wait("document.querySelector('li[data-session=\"follow-up\"]') === null", 10)


# ----------------------------------------------------------------------------- the viewer


def test_a_session_shows_times_durations_usage_and_figures(url: str, browser: Browser) -> None:
    browser.goto(url + s(PARENT))
    assert browser.text("#title") == PARENT
    stats = browser.text("#stats")
    assert "2 model turns, 6 user" in stats and "1 tool call: bash 1 (mean 2.5 s)" in stats
    assert "tokens 305 in, 50 out" in stats and "cost 0.0323" in stats and "wall time 13.0 s" in stats
    metas = browser.js("[...document.querySelectorAll('#conversation .msg')].map(m => "
                       "[m.dataset.speaker, (m.querySelector(':scope > .meta') || {}).textContent || ''])")  # fmt: skip
    assert metas[0] == ["user", hms(T0)]
    assert metas[1] == ["assistant", hms(T0 + 1500) + "+1.5 s" + "105 in · 20 out · cost 0.0123 · m-1"]
    assert metas[2] == ["tool", hms(T0 + 4000) + "took 2.5 s"]  # the result, beside its call
    assert metas[3] == ["assistant", hms(T0 + 5000) + "+1.0 s" + "200 in · 30 out · cost 0.02 · m-1"]
    # session text is text, never markup
    assert "Find the bug in <b>parser.py</b>" in browser.text("#conversation")
    assert browser.js("document.querySelector('#conversation b')") is None


def test_the_search_box_filters_and_marks_the_session(url: str, browser: Browser) -> None:
    browser.goto(url + s(PARENT))
    total = browser.js("document.querySelectorAll('#conversation > .msg').length")
    assert total == 8  # u, a(+result), a, five notes
    browser.type("#find", "TODO handle")
    assert browser.js("document.body.dataset.shown") == "1"
    shown = browser.js("[...document.querySelectorAll('#conversation > .msg:not([hidden])')].map(m => m.dataset.item)")
    assert len(shown) == 1 and "TODO handle quotes" in browser.text("#conversation > .msg:not([hidden])")
    assert browser.js("[...document.querySelectorAll('mark.hit')].map(m => m.textContent)") == ["TODO handle"]
    assert browser.text("#found") == "1 of 8 shown"
    browser.type("#find", "")
    browser.type("#role", "user")
    speakers = browser.js("[...document.querySelectorAll('#conversation > .msg:not([hidden])')]"
                          ".map(m => m.dataset.speaker)")  # fmt: skip
    assert speakers == ["user"] * 6
    browser.type("#role", "tool")  # the assistant message that holds the result
    assert browser.js("document.body.dataset.shown") == "1"
    browser.type("#role", "")
    assert browser.js("document.body.dataset.shown") == "8"


def test_the_slider_scrolls_to_and_highlights_the_events_items(url: str, browser: Browser) -> None:
    browser.goto(url + s(PARENT))
    assert browser.js("innerHeight < document.documentElement.scrollHeight")  # a page to scroll
    browser.js("(() => { const r = document.getElementById('slider'); r.value = '3'; "
               "r.dispatchEvent(new Event('input')); })()")  # fmt: skip  (step 3: seq 3, the tool result)
    assert browser.js("document.body.dataset.seq") == "3"
    current = browser.js("[...document.querySelectorAll('.msg.current')].map(m => m.textContent)")
    assert len(current) == 1 and "TODO handle quotes" in current[0]
    top = browser.js("document.querySelector('.msg.current').getBoundingClientRect().top")
    assert 0 <= top < browser.js("innerHeight")
    browser.js("(() => { const r = document.getElementById('slider'); r.value = '9'; "
               "r.dispatchEvent(new Event('input')); })()")  # fmt: skip
    assert "note 8" in browser.text(".msg.current")
    assert browser.js("document.querySelector('.msg.current').getBoundingClientRect().top") < browser.js("innerHeight")
    assert browser.js("scrollY") > 0


def test_sub_agent_links_lead_to_the_child_and_back(url: str, browser: Browser) -> None:
    browser.goto(url + s(PARENT))
    assert browser.text("#nav a.child") == CHILD
    browser.click("#nav a.child")
    browser.wait(f"location.pathname === {json.dumps('/' + s(CHILD))} && document.readyState === 'complete'")
    browser.wait(f"document.getElementById('title').textContent === {json.dumps(CHILD)}")
    assert "Done: quotes handled." in browser.text("#conversation")
    assert "sub-agent of " + PARENT in browser.text("#nav")
    browser.click("#nav a.parent")
    browser.wait(f"location.pathname === {json.dumps('/' + s(PARENT))} && document.readyState === 'complete'")
    browser.wait(f"document.getElementById('title').textContent === {json.dumps(PARENT)}")
    browser.click("#nav a.home")
    browser.wait("location.pathname === '/' && document.querySelectorAll('#sessions li').length === 6")


def test_a_new_event_shows_while_the_page_is_open(url: str, db: Path, browser: Browser) -> None:
    browser.goto(url + s("live"))
    browser.wait("document.body.dataset.live === 'on'")
    assert browser.js("document.body.dataset.seq") == "1"
    with eventlog.open(str(db)) as store:
        entries = [entry(0, "user", "live starts", 0), entry(1, "assistant", "a <i>fresh</i> answer", 500)]
        store.save("live", {"entries": entries, "leafId": "e1"})
    browser.wait("document.getElementById('conversation').textContent.includes('a <i>fresh</i> answer')", 10)
    assert browser.js("document.body.dataset.seq") == "2"
    assert browser.js("document.querySelector('#conversation i')") is None
    assert "a <i>fresh</i> answer" in browser.text(".msg.current")  # the newest event's item, highlighted


def test_a_session_deleted_while_open_says_so(url: str, db: Path, browser: Browser) -> None:
    browser.goto(url + s("doomed-open"))
    browser.wait("document.body.dataset.live === 'on'")
    with eventlog.open(str(db)) as store:
        store.delete("doomed-open")
    browser.wait("document.body.dataset.live === 'gone'", 10)
    assert "deleted" in browser.text("#live")


# ----------------------------------------------------------------------------- errors and limits


def status(address: str, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(address, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def test_unknown_and_deleted_sessions_get_a_404_page(url: str, db: Path, browser: Browser) -> None:
    browser.goto(url + s("no <such> session"))
    assert browser.js("document.body.dataset.status") == "404"
    assert "no such session" in browser.text("#message") and "no <such> session" in browser.text("#message")
    with eventlog.open(str(db)) as store:
        store.delete("doomed")
    code, body = status(url + s("doomed"))
    assert code == 404 and "no such session" in body and "Traceback" not in body
    code, body = status(url + "api/" + s("doomed") + "/data")
    assert code == 404 and "no such session" in json.loads(body)["error"]
    assert status(url + "api/" + s("doomed") + "/wait?seq=1") == (200, '{"seq":null,"gone":true}')
    for bad in ("nowhere", "s/", "s/%FF", "api/s/x/nothing", "api/" + s(PARENT) + "/wait?seq=x"):
        code, body = status(url + bad)
        assert code == 404 and "Traceback" not in body, bad


def test_it_answers_only_its_own_address(url: str, db: Path) -> None:
    assert url.startswith("http://127.0.0.1:")
    assert status(url, host="attacker.example")[0] == 403  # a rebound DNS name
    res = subprocess.run([sys.executable, "-m", "eventlog", "serve", str(db), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert res.returncode == 1 and "127.0.0.1 only" in res.stderr and "Traceback" not in res.stderr
    with eventlog.open(str(db), readonly=True) as store, pytest.raises(InvalidValueError, match=r"127\.0\.0\.1 only"):
        make_server(store, 0, host="192.168.1.1")
    with eventlog.open(str(db), readonly=True) as store, pytest.raises(InvalidValueError, match="unknown format"):
        make_server(store, 0, fmt="klingon")
    with eventlog.open(str(db), readonly=True) as store, make_server(store, 0, host="localhost") as server:
        assert server.server_address[0] == "127.0.0.1"


def test_a_port_in_use_is_one_line(url: str, db: Path) -> None:
    port = url.rstrip("/").rsplit(":", 1)[1]
    res = subprocess.run([sys.executable, "-m", "eventlog", "serve", str(db), "--port", port],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert res.returncode == 1 and res.stderr.startswith(f"eventlog: cannot listen on 127.0.0.1:{port}: ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_bad_path_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "eventlog", "serve", str(tmp_path / "none.db"), "--port", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert res.returncode == 1 and res.stderr.strip() == f"eventlog: no such store file: {tmp_path / 'none.db'}"


def test_ctrl_c_stops_it_cleanly(db: Path) -> None:
    proc, address = start(str(db))
    assert status(address)[0] == 200
    code, err = stop(proc)
    assert code == 0 and err.strip() == "stopped"


def test_a_saved_page_names_sub_agents_without_a_server(db: Path, tmp_path: Path, browser: Browser) -> None:
    out = tmp_path / "parent.html"
    res = subprocess.run([sys.executable, "-m", "eventlog", "view", str(db), PARENT, "-o", str(out)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert res.returncode == 0, res.stderr
    browser.goto(out.as_uri())
    assert browser.js("document.querySelectorAll('#nav a').length") == 0  # no server: no links
    assert browser.text("#nav .child.needs-serve") == CHILD
    assert "eventlog serve" in browser.js("document.querySelector('#nav .child').title")
    assert browser.js("document.body.dataset.live") is None  # a file does not poll
    assert "cost 0.0323" in browser.text("#stats")


# ----------------------------------------------------------------------------- PostgreSQL


def test_serve_a_postgresql_store(browser: Browser) -> None:
    from ..postgres import store_urls

    with store_urls() as new:
        target = new()
        with eventlog.open(target) as store:
            save_run(store, "pg parent", [entry(0, "user", "on the server", 0)])
            save_run(store, "pg child", [entry(0, "user", "a sub-agent", 0)], parent="pg parent")
        proc, address = start(target)
        try:
            browser.goto(address)
            assert tree(browser) == {"pg parent": (None, True), "pg child": ("pg parent", True)}
            browser.goto(address + s("pg child"))
            browser.wait("document.body.dataset.live === 'on'")
            with eventlog.open(target) as store:
                store.save("pg child", {"entries": [entry(0, "user", "a sub-agent", 0),
                                                    entry(1, "assistant", "from postgres, live", 100)]})  # fmt: skip
            browser.wait("document.getElementById('conversation').textContent.includes('from postgres, live')", 10)
        finally:
            code, err = stop(proc)
        assert code == 0 and "Traceback" not in err, err


def test_sessions_named_dot_and_dot_dot_open_and_follow(db: Path, tmp_path: Path, browser: Browser) -> None:
    """"." and ".." would be dot segments of a path, which the browser resolves
    away: the pages name them in the query, and their live view follows them."""
    path = tmp_path / "dots.db"
    with eventlog.open(str(path)) as store:
        save_run(store, "..", [entry(0, "user", "the dot-dot session", 0)])
        save_run(store, ".", [entry(0, "user", "the dot session", 0)], parent="..")
    proc, url = start(str(path))
    try:
        browser.goto(url)
        browser.wait("document.querySelectorAll('#sessions li a').length === 2")
        for name, text in (("..", "the dot-dot session"), (".", "the dot session")):
            browser.goto(url)
            browser.wait("document.querySelectorAll('#sessions li a').length === 2")
            browser.js(f"[...document.querySelectorAll('#sessions li a')].find(a => a.textContent === "
                       f"{json.dumps(name)}).click()")  # fmt: skip
            browser.wait(f"document.getElementById('title') && document.getElementById('title').textContent === "
                         f"{json.dumps(name)}")  # fmt: skip
            assert text in browser.text("#conversation")
        browser.wait("document.body.dataset.live === 'on'")
        with eventlog.open(str(path)) as store:  # the page of "." is open: it follows it
            save_run(store, ".", [entry(0, "user", "the dot session", 0), entry(1, "assistant", "dot news", 500)],
                     parent="..")  # fmt: skip
        browser.wait("document.getElementById('conversation').textContent.includes('dot news')", 10)
        browser.click("#nav a.parent")
        browser.wait("document.getElementById('title').textContent === '..'")
    finally:
        stop(proc)
