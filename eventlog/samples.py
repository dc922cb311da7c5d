"""Realistic, seeded Flue/pi-shaped agent sessions for demos and benchmarks.

Shapes as in ``docs/sessions.md``; sizes as in two real pi coding sessions:
assistant messages of ~0.85 KB median with one tool call, tool results of ~1 KB
median with a long tail, a user prompt now and then, multi-byte text, and
(optionally) base64 screenshots of which about half repeat the previous one.
Everything is derived from ``seed`` so two runs produce byte-identical sessions.
Nothing here needs ``hypothesis``; the fuzzing strategies live in
:mod:`eventlog.testing`.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import zlib
from collections.abc import Iterator
from typing import Any

# Agent sessions are mostly code and English; a few words in a hundred are
# multi-byte (accents, CJK, emoji), so byte limits are exercised, not character ones.
_SENTENCE = (
    "the file function test import error value return session agent tool call result image data config "
    "build module path line string parse update check def class self none true false print assert raise "
    "src lib main index json yaml http request response status async await list dict int str bytes"
)
_WORDS = _SENTENCE.split()
_WIDE_WORDS = ["löschen", "変更", "テスト", "🚀", "日本語", "données", "naïve", "café", "✓", "→"]
#: Share of words that are multi-byte UTF-8.
WIDE_SHARE = 0.02
_TOOLS = ("bash", "read", "edit", "write", "grep", "glob", "browser_screenshot")


def _hex(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _text(rng: random.Random, nbytes: int) -> str:
    words: list[str] = []
    size = 0
    while size < nbytes:
        w = rng.choice(_WIDE_WORDS) if rng.random() < WIDE_SHARE else rng.choice(_WORDS)
        words.append(w)
        size += len(w.encode()) + 1
    return " ".join(words)


def _iso(ms: int) -> str:
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"2026-11-24T{h % 24:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def _size(rng: random.Random, median: float, p90: float, cap: int) -> int:
    """A log-normal size with the given median and 90th percentile, capped."""
    sigma = math.log(p90 / median) / 1.2816
    return max(16, min(cap, int(rng.lognormvariate(0, sigma) * median)))


def screenshot(rng: random.Random, nbytes: int) -> str:
    """Base64 text of ``nbytes`` of incompressible "image" bytes (like a PNG, but
    not one: what benchmarks store; see :func:`png` for an image a viewer shows)."""
    return base64.b64encode(rng.randbytes(nbytes)).decode("ascii")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(rng: random.Random, nbytes: int) -> bytes:
    """A valid PNG (8-bit RGB) of about ``nbytes``: a dark-to-light gradient under
    random noise.  The noise keeps it as incompressible as a real screenshot (PNG
    has already compressed its pixels), so it stays about as large as asked."""
    width = 1000 if nbytes >= 300_000 else 100
    height = max(1, nbytes * 8 // 7 // (3 * width))  # 7 bits of noise a byte: zlib keeps about 7/8
    row = 3 * width
    noise = rng.randbytes(height * row)
    tables: dict[int, bytes] = {}
    rows = []
    for y in range(height):
        base = 128 * y // height
        table = tables.get(base)
        if table is None:
            table = tables[base] = bytes(base + (b >> 1) for b in range(256))
        rows.append(b"\x00" + noise[y * row : (y + 1) * row].translate(table))  # filter type 0 (none)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 1))
        + _png_chunk(b"IEND", b"")
    )


def png_screenshot(rng: random.Random, nbytes: int) -> str:
    """Base64 text of :func:`png`, as a runtime sends a screenshot."""
    return base64.b64encode(png(rng, nbytes)).decode("ascii")


class SessionBuilder:
    """Builds one session entry by entry, the way a runtime grows ``SessionData``."""

    def __init__(self, seed: int = 0, *, name: str = "default", real_images: bool = False) -> None:
        """``real_images``: screenshots are valid PNGs (:func:`png`) rather than
        random bytes (:func:`screenshot`, the default, which keeps the sessions
        benchmarks store byte for byte as they were)."""
        self.rng = random.Random(seed)
        self._image = png_screenshot if real_images else screenshot
        self.clock = 1_795_000_000_000 + self.rng.randrange(10**6)
        self.data: dict[str, Any] = {
            "version": 5,
            "affinityKey": "aff_01J" + _hex(self.rng, 23).upper(),
            "entries": [],
            "leafId": None,
            "metadata": {"name": name},
            "createdAt": _iso(self.clock),
            "updatedAt": _iso(self.clock),
        }
        self._last_image: str | None = None
        self._pending_call: tuple[str, str] | None = None

    def _entry(self, message: dict[str, Any]) -> dict[str, Any]:
        self.clock += self.rng.randrange(200, 20_000)
        message["timestamp"] = self.clock
        entry = {
            "type": "message",
            "id": _hex(self.rng),
            "parentId": self.data["leafId"],
            "timestamp": _iso(self.clock),
            "message": message,
        }
        self.data["entries"].append(entry)
        self.data["leafId"] = entry["id"]
        self.data["updatedAt"] = entry["timestamp"]
        return entry

    def user(self, text: str | None = None) -> dict[str, Any]:
        rng = self.rng
        return self._entry({"role": "user", "content": text or _text(rng, _size(rng, 300, 2000, 20_000))})

    def assistant(self) -> dict[str, Any]:
        rng = self.rng
        content: list[dict[str, Any]] = []
        if rng.random() < 0.4:
            content.append(
                {
                    "type": "thinking",
                    "thinking": _text(rng, _size(rng, 300, 1500, 20_000)),
                    "thinkingSignature": _hex(rng, 64),
                }
            )
        if rng.random() < 0.5:
            content.append({"type": "text", "text": _text(rng, _size(rng, 200, 1200, 20_000))})
        ncalls = 1 if rng.random() < 0.9 else rng.randint(2, 16)
        for _ in range(ncalls):
            call_id = "toolu_" + _hex(rng, 24)
            tool = rng.choice(_TOOLS[:-1])
            args = {"path": f"src/{_hex(rng, 6)}.py", "command": _text(rng, _size(rng, 150, 900, 40_000))}
            content.append({"type": "toolCall", "id": call_id, "name": tool, "arguments": args})
            self._pending_call = (call_id, tool)
        inp, out = rng.randrange(1000, 200_000), rng.randrange(10, 4000)
        usage = {
            "input": inp,
            "output": out,
            "cacheRead": inp // 2,
            "cacheWrite": 0,
            "totalTokens": inp + out,
            "cost": {
                "input": inp * 3e-6,
                "output": out * 1.5e-5,
                "cacheRead": 0.0,
                "cacheWrite": 0.0,
                "total": inp * 3e-6 + out * 1.5e-5,
            },
        }
        return self._entry(
            {
                "role": "assistant",
                "content": content,
                "api": "anthropic-messages",
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "usage": usage,
                "stopReason": "toolUse",
            }
        )

    def tool_result(self, *, image_bytes: int = 0, repeat_image: bool = False) -> dict[str, Any]:
        rng = self.rng
        call_id, tool = self._pending_call or ("toolu_" + _hex(rng, 24), "bash")
        content: list[dict[str, Any]] = [{"type": "text", "text": _text(rng, _size(rng, 1000, 5000, 116_000))}]
        if image_bytes:
            if not (repeat_image and self._last_image):
                self._last_image = self._image(rng, image_bytes)
            content.append({"type": "image", "data": self._last_image, "mimeType": "image/png"})
        return self._entry(
            {
                "role": "toolResult",
                "toolCallId": call_id,
                "toolName": tool,
                "content": content,
                "details": {"exitCode": 0, "lines": rng.randrange(500)},
                "isError": rng.random() < 0.05,
            }
        )


def coding_session(entries: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield the growing session after each new entry (the same dict, mutated).

    The mix is ~5% user prompts, ~48% assistant tool calls, ~47% tool results, as in
    the two real pi sessions of the reference.  Callers that keep states must copy.
    """
    b = SessionBuilder(seed)
    b.user("Fix the failing tests in the parser module, please. 🙏")
    yield b.data
    while len(b.data["entries"]) < entries:
        if b.rng.random() < 0.05:
            b.user()
        else:
            b.assistant()
            if len(b.data["entries"]) < entries:
                yield b.data
                b.tool_result()
        yield b.data


def browser_session(turns: int, seed: int = 0, image_bytes: int = 750_000) -> Iterator[dict[str, Any]]:
    """Yield the session after each turn; every turn adds a tool result with a
    screenshot (``image_bytes`` raw, ~1 MB as base64), about half of them identical
    to the one before."""
    b = SessionBuilder(seed)
    b.user("Book the cheapest flight to Lisbon next Tuesday.")
    yield b.data
    for _ in range(turns):
        b.assistant()
        b.tool_result(image_bytes=image_bytes, repeat_image=b.rng.random() < 0.5)
        yield b.data


def json_size(data: Any) -> int:
    """Bytes of ``data`` as compact UTF-8 JSON (what a one-JSON-row store writes)."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def bulk_entries(n: int, seed: int = 0, size: int = 1000) -> list[dict[str, Any]]:
    """``n`` tool-result entries of about ``size`` bytes of JSON each, chained by
    ``parentId`` (for bulk-append measurements)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    parent = None
    clock = 1_795_000_000_000
    for i in range(n):
        clock += rng.randrange(100, 5000)
        entry: dict[str, Any] = {
            "type": "message",
            "id": f"{i:08x}",
            "parentId": parent,
            "timestamp": _iso(clock),
            "message": {"role": "toolResult", "toolCallId": "toolu_" + _hex(rng, 24), "toolName": "bash",
                        "content": [{"type": "text", "text": ""}], "isError": False, "timestamp": clock},
        }  # fmt: skip
        entry["message"]["content"][0]["text"] = _text(rng, max(0, size - json_size(entry)))
        out.append(entry)
        parent = entry["id"]
    return out
