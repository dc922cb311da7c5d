"""``eventlog view``: the HTML replay page, checked in a real headless Chromium.

The page is opened at several points of the timeline (``#seq=N``, which sets the
slider and fires its input event, the same path a user's drag takes); the DOM is
dumped and screenshots are decoded to check that the screenshot in the session is
really painted once the timeline reaches it, and not before.

CI installs Debian's ``chromium`` and sets ``EVENTLOG_REQUIRE_BROWSER=1``, so there a
missing browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

import eventlog

from .dialect_sessions import png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("EVENTLOG_REQUIRE_BROWSER"):
        raise RuntimeError("EVENTLOG_REQUIRE_BROWSER is set but no chromium is installed")
    pytest.skip("no chromium (CI installs it)", allow_module_level=True)

MAGENTA = (255, 0, 255)


def pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, channels, pixel bytes)`` of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6) and body[12] == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = prev[i], prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return width, height, channels, bytes(out)


def magenta_pixels(screenshot: bytes) -> int:
    _, _, channels, data = pixels(screenshot)
    target = bytes(MAGENTA)
    return sum(1 for i in range(0, len(data), channels) if data[i : i + 3] == target)


def chromium(*args: str, url: str, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
        "--window-size=900,1400", "--virtual-time-budget=3000",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, timeout=120, cwd=tmp)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A session: prompt, tool call, screenshot result, a long log, then a rewind
    (an abandoned branch) and a new prompt; written out by ``eventlog view``."""
    tmp = tmp_path_factory.mktemp("view")
    shot = base64.b64encode(png(320, 200, MAGENTA)).decode("ascii")
    e: list[dict[str, Any]] = [
        {"type": "message", "id": "u1", "parentId": None, "timestamp": "t",
         "message": {"role": "user", "content": "Take a screenshot of the dashboard <script>alert(1)</script>"}},
        {"type": "message", "id": "a1", "parentId": "u1", "timestamp": "t",
         "message": {"role": "assistant", "content": [
             {"type": "toolCall", "id": "c1", "name": "screenshot", "arguments": {"url": "http://x"}}]}},
        {"type": "message", "id": "r1", "parentId": "a1", "timestamp": "t",
         "message": {"role": "toolResult", "toolCallId": "c1", "toolName": "screenshot",
                     "content": [{"type": "image", "data": shot, "mimeType": "image/png"}], "isError": False}},
        {"type": "message", "id": "a2", "parentId": "r1", "timestamp": "t",
         "message": {"role": "assistant", "content": [
             {"type": "toolCall", "id": "c2", "name": "bash", "arguments": {"cmd": "cat big.log"}}]}},
        {"type": "message", "id": "r2", "parentId": "a2", "timestamp": "t",
         "message": {"role": "toolResult", "toolCallId": "c2", "toolName": "bash",
                     "content": [{"type": "text", "text": "log line\n" * 2000}], "isError": False}},
    ]  # fmt: skip
    db = str(tmp / "s.db")
    with eventlog.open(db) as store:
        for i in range(len(e)):
            store.save("s", {"entries": e[: i + 1], "leafId": e[i]["id"]})  # seq 1..5
        store.save("s", {"entries": e, "leafId": "a2"})  # seq 6: rewound, r2 abandoned
        u2 = {"type": "message", "id": "u2", "parentId": "a2", "timestamp": "t",
              "message": {"role": "user", "content": "Never mind the log."}}  # fmt: skip
        store.save("s", {"entries": [*e, u2], "leafId": "u2"})  # seq 7
    out = tmp / "view.html"
    res = subprocess.run([sys.executable, "-m", "eventlog", "view", db, "s", "-o", str(out)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out, {"tmp": tmp}


def dom(page: tuple[Path, dict[str, Any]], seq: int) -> str:
    out, ctx = page
    res = chromium("--dump-dom", url=f"{out.as_uri()}#seq={seq}", tmp=ctx["tmp"])
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    return res.stdout.decode("utf-8")


def test_the_page_is_self_contained(page: tuple[Path, dict[str, Any]]) -> None:
    text = page[0].read_text(encoding="utf-8")
    assert "http://" not in text.replace('"url":"http://x"', "") and "https://" not in text
    assert "<script>alert(1)</script>" not in text  # session text never becomes markup


def test_the_slider_shows_the_session_at_each_point(page: tuple[Path, dict[str, Any]]) -> None:
    at2, at3, at5, at7 = dom(page, 2), dom(page, 3), dom(page, 5), dom(page, 7)
    assert 'data-seq="2"' in at2 and 'data-seq="7"' in at7
    assert at2.count('class="msg ') == 2 and 'class="shot"' not in at2
    assert at3.count('class="msg ') == 3 and 'class="shot"' in at3 and 'src="data:image/png;base64,' in at3
    assert "<details>" in at5 and "(18000 characters)" in at5  # the long result is collapsed
    assert 'class="abandoned"' not in at5
    assert 'class="abandoned"' in at7 and "Never mind the log." in at7  # r2 is off the active path now
    assert at7.count('class="msg ') == 5  # u1 a1 r1 a2 u2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in at7


def test_the_screenshot_is_painted_only_once_reached(page: tuple[Path, dict[str, Any]]) -> None:
    out, ctx = page
    counts = {}
    for seq in (2, 3):
        shot = ctx["tmp"] / f"seq{seq}.png"
        res = chromium(f"--screenshot={shot}", url=f"{out.as_uri()}#seq={seq}", tmp=ctx["tmp"])
        assert res.returncode == 0 and shot.exists(), res.stderr.decode(errors="replace")[-2000:]
        counts[seq] = magenta_pixels(shot.read_bytes())
    assert counts[2] == 0
    assert counts[3] > 320 * 200 * 0.5  # the image, at (about) its size


def test_the_demo_screenshots_show_as_images(tmp_path: Path) -> None:
    """The demo's screenshots are real PNGs: the page paints them (noise under a
    gradient: many thousands of colours), not a broken-image icon."""
    db = tmp_path / "demo.db"
    res = subprocess.run([sys.executable, "-m", "eventlog", "demo", "--path", str(db), "--entries", "6"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = tmp_path / "demo.html"
    res = subprocess.run([sys.executable, "-m", "eventlog", "view", str(db), "eventlog-demo", "-o", str(out)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    shot = tmp_path / "shot.png"
    res2 = chromium(f"--screenshot={shot}", url=f"{out.as_uri()}#seq=3", tmp=tmp_path)  # the first screenshot's
    assert res2.returncode == 0 and shot.exists(), res2.stderr.decode(errors="replace")[-2000:]
    _, _, channels, data = pixels(shot.read_bytes())
    colours = {data[i : i + 3] for i in range(0, len(data), channels)}
    assert len(colours) > 20_000
