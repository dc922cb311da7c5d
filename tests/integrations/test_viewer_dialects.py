"""``eventlog view`` of every message dialect, checked in a real headless Chromium.

The pages of sessions written by the OpenAI Agents SDK's ``Runner``, by a LangGraph
graph (in three shapes), by hand in the chat-completions dialect, and of no known
dialect (tests/integrations/dialect_sessions.py) are opened at points of their timeline; the
DOM Chromium built is parsed to check who spoke, each tool call side by side with
its result, errors marked and the generic rendering not empty, and screenshots
are decoded to check that the images are painted.

CI installs chromium and the libraries and sets ``EVENTLOG_REQUIRE_BROWSER=1``,
``EVENTLOG_REQUIRE_AGENTS=1`` and ``EVENTLOG_REQUIRE_LANGGRAPH=1``, so there nothing
here is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import eventlog

from . import dialect_sessions as ds
from .test_viewer import CHROMIUM, pixels

VOID = {"img", "br", "input", "meta", "link", "hr", "wbr", "source", "area", "col", "embed", "param", "track"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> list[Node]:
        out: list[Node] = []
        for c in self.children:
            if isinstance(c, Node):
                out.append(c)
                out.extend(c.walk())
        return out

    def find(self, cls: str, tag: str | None = None) -> list[Node]:
        """Descendants with the class ``cls`` (and the tag), in document order."""
        return [n for n in self.walk() if cls in n.classes and (tag is None or n.tag == tag)]

    def kids(self, cls: str) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and cls in c.classes]


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#document", {}, None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.node
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.node = n.parent

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def chromium(*args: str, url: str, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1400,2400", "--virtual-time-budget=3000",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, timeout=120, cwd=tmp)


class Page:
    """An ``eventlog view`` page, opened in Chromium."""

    def __init__(self, db: str, session: str, tmp: Path, *options: str) -> None:
        self.tmp = tmp
        self.out = tmp / f"{session}.html"
        res = subprocess.run([sys.executable, "-m", "eventlog", "view", db, session, "-o", str(self.out), *options],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr

    def dom(self, seq: int | None = None) -> Node:
        url = self.out.as_uri() + (f"#seq={seq}" if seq is not None else "")
        res = chromium("--dump-dom", url=url, tmp=self.tmp)
        assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
        return parse(res.stdout.decode("utf-8"))

    def pixels_of(self, rgb: tuple[int, int, int], seq: int | None = None) -> int:
        shot = self.tmp / f"{self.out.stem}-{seq}.png"
        url = self.out.as_uri() + (f"#seq={seq}" if seq is not None else "")
        res = chromium(f"--screenshot={shot}", url=url, tmp=self.tmp)
        assert res.returncode == 0 and shot.exists(), res.stderr.decode(errors="replace")[-2000:]
        _, _, channels, data = pixels(shot.read_bytes())
        target = bytes(rgb)
        return sum(1 for i in range(0, len(data), channels) if data[i : i + 3] == target)


def conversation(root: Node) -> list[Node]:
    """The messages of the conversation pane, in order (results inside their pairs)."""
    (pane,) = [n for n in root.walk() if n.attrs.get("id") == "conversation"]
    return pane.kids("msg")


def who(msg: Node) -> str:
    return msg.kids("who")[0].text()


def pairs(msg: Node) -> list[tuple[str, list[Node]]]:
    """``(the call's text, the result messages beside it)`` of a message's tool calls."""
    out = []
    for pair in msg.kids("pair"):
        call = pair.kids("call")[0]
        results = [r for side in pair.kids("results") for r in side.kids("msg")]
        out.append((call.text(), results))
    return out


SCREENSHOT_PIXELS = 320 * 200 // 2  # at least half of the image's pixels, however it is scaled


# ----------------------------------------------------------------------------- OpenAI Agents SDK


@pytest.fixture(scope="module")
def sdk_page(tmp_path_factory: pytest.TempPathFactory) -> Page:
    ds.need("agents", "EVENTLOG_REQUIRE_AGENTS")
    tmp = tmp_path_factory.mktemp("sdk-view")
    db = str(tmp / "sdk.db")
    ds.agents_sdk_session(db)
    return Page(db, "conv", tmp)


def test_agents_sdk_page_shows_turns_calls_results_and_errors(sdk_page: Page) -> None:
    root = sdk_page.dom()
    body = next(n for n in root.walk() if n.tag == "body")
    assert body.attrs["data-dialect"] == "openai" and body.attrs["data-seq"] == "7"
    msgs = conversation(root)
    assert [who(m) for m in msgs] == ["user", "assistant", "assistant", "assistant", "assistant", "assistant", "user",
                                      "assistant"]  # fmt: skip
    assert "What is the weather like in Paris?" in msgs[0].text() and msgs[0].find("shot", "img")
    assert "The user wants the weather." in msgs[1].text()  # the reasoning summary
    (call, results), = pairs(msgs[2])
    assert "→ weather" in call and '"city": "Paris"' in call  # the arguments, parsed
    assert [who(r) for r in results] == ["result · weather"] and "sunny in Paris" in results[0].text()
    (call, results), = pairs(msgs[3])
    assert "→ computer" in call and '"type": "click"' in call
    assert results[0].find("shot", "img") and results[0].find("shot", "img")[0].attrs["src"].startswith(
        "data:image/png;base64,")  # fmt: skip
    (call, results), = pairs(msgs[4])
    assert "→ broken" in call and "error" in results[0].classes  # marked as an error
    assert "An error occurred while running the tool" in results[0].text()
    assert "Thanks, that is all." in msgs[6].text()
    items = next(n for n in root.walk() if n.attrs.get("id") == "tree")
    assert "function_call_output" in items.text() and "computer_call" in items.text()


def test_agents_sdk_page_paints_the_screenshot_once_reached(sdk_page: Page) -> None:
    assert sdk_page.pixels_of(ds.CYAN, seq=2) == 0  # before the computer call
    assert sdk_page.pixels_of(ds.CYAN, seq=3) > SCREENSHOT_PIXELS
    assert sdk_page.pixels_of(ds.YELLOW) > 64 * 64 // 2  # the user's image
    early = sdk_page.dom(seq=1)
    assert [who(m) for m in conversation(early)] == ["user"]


# ----------------------------------------------------------------------------- LangGraph


@pytest.fixture(scope="module")
def langgraph_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Page]:
    ds.need("langgraph", "EVENTLOG_REQUIRE_LANGGRAPH")
    tmp = tmp_path_factory.mktemp("lg-view")
    db = str(tmp / "lg.db")
    made = ds.langgraph_session(db)
    return {name: Page(db, name, tmp) for name in made["sessions"]}


@pytest.mark.parametrize("session", ["lc-dict", "lc-plain", "lc-checkpoint"])
def test_langgraph_page(langgraph_pages: dict[str, Page], session: str) -> None:
    page = langgraph_pages[session]
    root = page.dom()
    msgs = conversation(root)
    assert [who(m) for m in msgs] == ["system", "user (human)", "assistant (ai)", "assistant (ai)", "assistant (ai)"]
    assert "What is the weather in Paris" in msgs[1].text()
    (weather, w_results), (broken, b_results) = pairs(msgs[2])
    assert "→ weather" in weather and "sunny in Paris" in w_results[0].text()
    assert "→ broken" in broken and "error" in b_results[0].classes and "the disk is on fire" in b_results[0].text()
    (shot, s_results), = pairs(msgs[3])
    assert "→ take_screenshot" in shot and s_results[0].find("shot", "img")
    assert page.pixels_of(ds.MAGENTA) > SCREENSHOT_PIXELS
    assert page.pixels_of(ds.MAGENTA, seq=4) == 0  # the screenshot tool has not answered yet
    waiting = pairs(conversation(page.dom(seq=4))[3])
    assert waiting[0][1] == []  # the call, with no result beside it yet


# ----------------------------------------------------------------------------- chat completions, generic


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("hand-view")
    db = str(tmp / "hand.db")
    with eventlog.open(db) as store:
        for state in ds.chat_states(ds.b64png(ds.MAGENTA)):
            store.save("chat", state)
        for state in ds.generic_states():
            store.save("generic", state)
        store.save("bare", {"status": "done", "score": 0.5, "note": "<b>not markup</b>"})
        shot = "data:image/png;base64," + ds.b64png(ds.YELLOW)
        store.save("generic-image", {"frames": [{"t": 1, "frame": {"screen": shot, "title": "home"}}]})
    return db, tmp


def test_chat_completions_page(hand_made: tuple[str, Path]) -> None:
    db, tmp = hand_made
    page = Page(db, "chat", tmp)
    msgs = conversation(page.dom())
    assert [who(m) for m in msgs] == ["system", "user", "assistant", "assistant"]
    assert msgs[1].find("shot", "img") and "Book a table for two" in msgs[1].text()
    (a, a_results), (b, b_results) = pairs(msgs[2])
    assert "→ find_table" in a and [who(r) for r in a_results] == ["result · find_table"]
    assert "→ book" in b and "error" in b_results[0].classes and "ValueError" in b_results[0].text()
    assert page.pixels_of(ds.MAGENTA) > SCREENSHOT_PIXELS


def test_a_session_of_no_known_dialect_is_never_an_empty_pane(hand_made: tuple[str, Path]) -> None:
    db, tmp = hand_made
    msgs = conversation(Page(db, "generic", tmp).dom())
    assert len(msgs) == 3 and all("generic" in m.classes for m in msgs)
    assert "grep -c ERROR app.log" in msgs[1].text() and "disk full" in msgs[2].text()
    (bare,) = conversation(Page(db, "bare", tmp, "--format", "auto").dom())
    assert "done" in bare.text() and "<b>not markup</b>" in bare.text()  # text, never markup
    forced = conversation(Page(db, "chat", tmp, "--format", "generic").dom())
    assert len(forced) == 6 and all("generic" in m.classes for m in forced)


def test_images_in_items_of_no_known_dialect_are_painted(hand_made: tuple[str, Path]) -> None:
    db, tmp = hand_made
    page = Page(db, "generic-image", tmp)
    (frame,) = conversation(page.dom())
    assert "generic" in frame.classes and "home" in frame.text() and frame.find("shot", "img")
    assert page.pixels_of(ds.YELLOW) > SCREENSHOT_PIXELS


def test_pages_need_no_network(hand_made: tuple[str, Path]) -> None:
    db, tmp = hand_made
    with eventlog.open(db) as store:
        store.save("remote", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}]}]})  # fmt: skip
    msgs = conversation(Page(db, "remote", tmp).dom())
    assert not msgs[0].find("shot", "img") and "https://example.invalid/cat.png" in msgs[0].text()
