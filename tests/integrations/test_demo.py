"""The demo runs through the real entry points and shows what it promises."""

from __future__ import annotations

import base64
import hashlib
import shlex
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.demo import LIMIT, SESSION, run
from eventlog.samples import SessionBuilder, screenshot


def test_demo_through_python_m(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    out = subprocess.run(
        [sys.executable, "-m", "eventlog", "demo", "--path", str(db), "--entries", "80"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert "SQLITE_TOOBIG" in out  # the one-JSON-row store fails under the same limit
    assert "identical to what was saved" in out
    assert "largest cell" in out and db.exists()


def test_demo_output_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m eventlog demo --path {tmp_path / 'd.db'} --entries 40 | head -1"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr


def demo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventlog", "demo", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def one_line_error(res: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert res.stderr.startswith("eventlog: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert fragment in res.stderr and "Traceback" not in res.stderr


EMPTY = hashlib.sha256(b"").hexdigest()


def listing(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_the_demo_never_deletes_a_file_it_did_not_make(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / "notes.txt-wal").write_text("not a WAL either\n")
    store = str(tmp_path / "mine.db")
    with eventlog.open(store) as s:
        s.save("work", {"entries": [{"id": "1"}]})
    before = listing(tmp_path)
    one_line_error(demo("--path", str(notes), "--entries", "4"), "exists")
    one_line_error(demo("--path", str(notes), "--entries", "4", "--replace"), "not a store an earlier demo made")
    one_line_error(demo("--path", store, "--entries", "4"), "exists")
    one_line_error(demo("--path", store, "--entries", "4", "--replace"), "not a store an earlier demo made")
    one_line_error(demo("--path", str(tmp_path), "--entries", "4", "--replace"), "not a store an earlier demo made")
    assert listing(tmp_path) == before  # nothing deleted, changed or added (not even a -wal or -shm)


def test_the_demo_keeps_its_baseline_in_a_temporary_file_of_its_own(tmp_path: Path) -> None:
    """The one-JSON-row store used to be PATH.json-row.db, deleted whatever it was."""
    (tmp_path / "d.db.json-row.db").write_text("someone else's file\n")
    before = listing(tmp_path)
    res = demo("--path", str(tmp_path / "d.db"), "--entries", "6")
    assert res.returncode == 0, res.stderr
    after = listing(tmp_path)
    assert after.pop("d.db") and after.pop("d.db-lock", "") == EMPTY  # the store (and its writers' lock file)
    assert after == before  # and nothing else, added


def test_replace_only_replaces_a_store_the_demo_made(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")
    assert demo("--path", path, "--entries", "4").returncode == 0
    res = demo("--path", path, "--entries", "4")
    one_line_error(res, "--replace to replace it (an earlier demo made it)")
    again = demo("--path", path, "--entries", "10", "--replace")
    assert again.returncode == 0, again.stderr
    with eventlog.open(path) as store:
        assert store.sessions() == [SESSION]
        assert len((store.load(SESSION) or {})["entries"]) >= 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.db", "d.db-lock"]


def test_a_failed_demo_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with pytest.raises(KeyboardInterrupt):
        run(str(path), entries=20, out=lambda line: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entries", ["0", "-5", "x"])
def test_the_demo_refuses_a_count_that_is_not_positive(tmp_path: Path, entries: str) -> None:
    res = demo("--path", str(tmp_path / "d.db"), "--entries", entries)
    assert res.returncode == 2 and "--entries" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(eventlog.InvalidValueError):
        run(str(tmp_path / "e.db"), entries=0)


def image_blocks(data: dict[str, Any]) -> list[str]:
    return [
        block["data"]
        for entry in data["entries"]
        for block in (entry["message"].get("content") if isinstance(entry["message"].get("content"), list) else [])
        if block.get("type") == "image"
    ]


@pytest.mark.parametrize("entries", [1, 3, 5, 40])
def test_a_small_demo_claims_only_the_screenshots_it_sent(tmp_path: Path, entries: int) -> None:
    path = str(tmp_path / "d.db")
    lines: list[str] = []
    assert run(path, entries=entries, out=lines.append)
    with eventlog.open(path) as store:
        images = image_blocks(store.load(SESSION) or {})
    summary = lines[0]
    if not images:
        assert "no screenshots" in summary and "image" not in "\n".join(lines[1:])
    else:
        n, distinct = len(images), len(set(images))
        assert f"{n} screenshot{'s' if n > 1 else ''} of " in summary and f": {distinct} distinct" in summary
        assert ("sent again" in summary) == (n > distinct)
        sent = sum(len(i) for i in images) / 1e6
        assert f"{sent:.1f} MB of base64 images sent" in "\n".join(lines)


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Check a PNG the way a decoder does (signature, chunk CRCs, header, image data
    length, row filters); returns width, height and the raw rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data) and chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[y * (1 + 3 * width)] <= 4 for y in range(height))
    return width, height, raw


def test_the_demo_screenshots_are_real_images_over_the_cell_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")
    assert run(path, entries=12, out=lambda line: None)
    with eventlog.open(path) as store:
        images = image_blocks(store.load(SESSION) or {})
    assert len(images) == 3 and len(set(images)) == 2
    for text in set(images):
        assert len(text) > LIMIT  # too big for one cell as the runtime sends it
        width, height, _ = png_pixels(base64.b64decode(text, validate=True))
        assert width * height > 500_000


def test_benchmark_sessions_are_unchanged() -> None:
    """Benchmarks build sessions with the default builder: its screenshots are still
    the seeded random bytes they were (so results stay comparable)."""
    import random

    b = SessionBuilder(5)
    b.assistant()
    b.tool_result(image_bytes=1000)
    rng = random.Random(5)
    shot = b.data["entries"][-1]["message"]["content"][-1]["data"]
    assert base64.b64decode(shot)[:8] != b"\x89PNG\r\n\x1a\n" and len(base64.b64decode(shot)) == 1000
    assert screenshot(rng, 10) == base64.b64encode(random.Random(5).randbytes(10)).decode()
    real = SessionBuilder(5, real_images=True)
    real.assistant()
    real.tool_result(image_bytes=50_000)
    png_pixels(base64.b64decode(real.data["entries"][-1]["message"]["content"][-1]["data"]))


def test_the_next_commands_it_prints_run_as_printed(tmp_path: Path) -> None:
    path = tmp_path / "my demo's store.db"  # a space and a quote: shell quoting needed
    res = demo("--path", str(path), "--entries", "6", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    commands = res.stdout.split("Try next:")[1].strip().splitlines()
    assert len(commands) >= 4
    for line in commands:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "eventlog" and str(path) in argv
        ran = subprocess.run([sys.executable, "-m", "eventlog", *argv[1:]], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)  # fmt: skip
        assert ran.returncode == 0, (line, ran.stderr)
    assert (tmp_path / "my demo's store.html").exists()
