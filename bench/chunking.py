"""How large values are cut: chunk size, and fixed-size vs content-defined chunking.

Measures, on one machine in one run:

* write and read throughput of 14 MiB images (incompressible, like PNG) through a
  real store at several chunk sizes;
* new bytes stored for the near-duplicates agent sessions produce: the same
  screenshot sent again, a tool output that grew at the end, and one edited in the
  middle, for fixed-size chunks and for content-defined chunking (a gear-hash
  FastCDC-style cutter, ~1 MiB average, in pure Python as it would have to be
  without a new compiled dependency).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3

import eventlog

MIB = 1 << 20


def _throughput(tmp: Path, chunk: int) -> tuple[float, float]:
    images = [random.Random(i).randbytes(14 * MIB) for i in range(3)]
    with eventlog.open(str(tmp / f"t{chunk}.db"), chunk_bytes=chunk, synchronous="NORMAL") as store:
        t = time.perf_counter()
        for i, img in enumerate(images):
            store.save(f"s{i}", {"img": img})
        write = 3 * 14 / (time.perf_counter() - t)
    with eventlog.open(str(tmp / f"t{chunk}.db"), chunk_bytes=chunk) as store:
        t = time.perf_counter()
        for i in range(3):
            store.load(f"s{i}")
        read = 3 * 14 / (time.perf_counter() - t)
    return write, read


_GEAR = [random.Random(7 * 256 + i).getrandbits(64) for i in range(256)]


def cdc_cuts(data: bytes, avg: int = MIB) -> list[bytes]:
    """Content-defined pieces (gear rolling hash, FastCDC-style normalised cut)."""
    # As FastCDC: test bits spread over the high half (bit k depends on the last k+1
    # bytes), with normalised chunking (a stricter mask below the average size, a
    # looser one above) to keep sizes near the average.
    bits = avg.bit_length() - 1
    strict = sum(1 << (63 - 2 * k) for k in range(bits + 2))
    loose = sum(1 << (63 - 2 * k) for k in range(bits - 2))
    lo, hi = avg // 4, avg * 4
    pieces, start, h = [], 0, 0
    gear, m64 = _GEAR, (1 << 64) - 1
    i, n = 0, len(data)
    while i < n:
        h = ((h << 1) + gear[data[i]]) & m64
        i += 1
        size = i - start
        if (size >= lo and not h & (strict if size < avg else loose)) or size >= hi:
            pieces.append(data[start:i])
            start, h = i, 0
    if start < n:
        pieces.append(data[start:])
    return pieces


def fixed_cuts(data: bytes, size: int = MIB) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _new_bytes(before: bytes, after: bytes, cut: Any) -> int:
    seen = {blake3.blake3(p).digest() for p in cut(before)}
    return sum(len(p) for p in cut(after) if blake3.blake3(p).digest() not in seen)


def _text(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:n])


def run(quick: bool) -> list[list[str]]:
    rows: list[list[str]] = [["measurement", "fixed 256 KiB", "fixed 1 MiB", "fixed 1.9 MB", "CDC ~1 MiB"]]
    with tempfile.TemporaryDirectory() as d:
        sizes = [256 * 1024, MIB, 1_999_000]
        tp = [_throughput(Path(d), s) for s in sizes]
    rows.append(["write 14 MiB images, MB/s", *[f"{w:.0f}" for w, _ in tp], "-"])
    rows.append(["load them back, MB/s", *[f"{r:.0f}" for _, r in tp], "-"])
    n = 4 * MIB if quick else 8 * MIB
    shot = random.Random(1).randbytes(n)
    text = _text(n, 2)
    grown = text + _text(200_000, 3)
    edited = text[: n // 2] + b"inserted line\n" + text[n // 2 :]
    cases = [("same screenshot again", shot, shot), ("tool output grew at the end", text, grown),
             ("tool output edited mid-way", text, edited)]  # fmt: skip
    cuts = [lambda b: fixed_cuts(b, 256 * 1024), fixed_cuts, lambda b: fixed_cuts(b, 1_999_000), cdc_cuts]
    for label, before, after in cases:
        rows.append([f"new bytes: {label}", *[f"{_new_bytes(before, after, c) / 1e6:.2f} MB" for c in cuts]])
    t = time.perf_counter()
    cdc_cuts(text)
    cdc_rate = len(text) / 1e6 / (time.perf_counter() - t)
    t = time.perf_counter()
    fixed_cuts(text)
    [blake3.blake3(p).digest() for p in fixed_cuts(text)]
    fixed_rate = len(text) / 1e6 / (time.perf_counter() - t)
    rows.append(["cutting + hashing speed, MB/s", "-", f"{fixed_rate:.0f}", "-", f"{cdc_rate:.1f} (cut only)"])
    return rows
