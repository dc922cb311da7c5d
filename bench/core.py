"""The core figures of eventlog against a one-JSON-row store and the raw-SQLite floor.

Every figure is a ratio of two systems measured in the same run, on the same
machine, with the same SQLite settings (WAL, the given ``synchronous``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import zstandard

import eventlog
from eventlog.samples import bulk_entries, coding_session

from .baselines import OneJsonRow, RawRows, file_bytes


@dataclass
class Figure:
    name: str
    measured: str
    ratio: float
    target: str
    ok: bool | None  # None: the target is defined at the full size only (--quick)


def _p50(xs: list[float]) -> float:
    return statistics.median(xs)


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def append_flat(tmp: Path, entries: int, sync: str) -> Figure:
    """append() after every entry: per-append p50 near the end vs near entry 100."""
    lat: list[float] = []
    with eventlog.open(str(tmp / "append.db"), synchronous=sync) as store:
        done = 0
        for data in coding_session(entries, seed=1):
            new = data["entries"][done:]
            done = len(data["entries"])
            lat.append(_timed(store.append, "s", new))
    early, late = _p50(lat[50:150]), _p50(lat[-100:])
    ratio = late / early
    return Figure(
        f"append() per entry, {entries}-entry coding session",
        f"p50 {early * 1e6:.0f} µs near entry 100, {late * 1e6:.0f} µs near entry {entries}",
        ratio, "late/early <= 1.5", ratio <= 1.5,
    )  # fmt: skip


def save_vs_json(tmp: Path, entries: int, sync: str) -> tuple[Figure, list[float], list[float]]:
    """save() after every entry: p50 per save near the end, eventlog vs one JSON row."""
    with eventlog.open(str(tmp / "save.db"), synchronous=sync) as store:
        ev = [_timed(store.save, "s", data) for data in coding_session(entries, seed=1)]
    best: list[float] = []
    for compact in (False, True):
        json_store = OneJsonRow(str(tmp / f"json-save-{compact}.db"), sync, compact=compact)
        js = [_timed(json_store.save, "s", data) for data in coding_session(entries, seed=1)]
        json_store.close()
        if not best or _p50(js[-100:]) < _p50(best[-100:]):
            best = js
    js = best
    e, j = _p50(ev[-100:]), _p50(js[-100:])
    return Figure(
        f"save() per entry near entry {entries}",
        f"p50 eventlog {e * 1e3:.2f} ms, one JSON row {j * 1e3:.2f} ms (the faster variant)",
        e / j, "eventlog/json <= 0.10", e / j <= 0.10,
    ), ev, js  # fmt: skip


def session_total(tmp: Path, entries: int, sync: str, reps: int) -> list[Figure]:
    """A whole session saved after every entry: total time (best of ``reps``, the
    systems taking turns) and bytes on disk."""
    t_ev = t_json = t_other = float("inf")
    b_ev = b_json = 0
    for rep in range(reps):
        ev_path = str(tmp / f"total-{rep}.db")
        with eventlog.open(ev_path, synchronous=sync) as store:
            t_ev = min(t_ev, sum(_timed(store.save, "s", d) for d in coding_session(entries, seed=2)))
        b_ev = file_bytes(ev_path)
        runs = []
        for compact in (False, True):
            json_path = str(tmp / f"json-total-{compact}-{rep}.db")
            json_store = OneJsonRow(json_path, sync, compact=compact)
            runs.append((sum(_timed(json_store.save, "s", d) for d in coding_session(entries, seed=2)),
                         file_bytes(json_path)))  # fmt: skip
            json_store.close()
        runs.sort()
        t_json, t_other = min(t_json, runs[0][0]), min(t_other, runs[1][0])
        b_json = min(r[1] for r in runs)
    return [
        Figure(f"{entries}-entry session, save() after every entry: total time",
               f"eventlog {t_ev:.2f} s, one JSON row {t_json:.2f} s (the other variant {t_other:.2f} s)",
               t_json / t_ev, "json/eventlog >= 10", t_json / t_ev >= 10),
        Figure(f"{entries}-entry session: bytes on disk",
               f"eventlog {b_ev / 1e6:.2f} MB, one JSON row {b_json / 1e6:.2f} MB (the smaller variant)",
               b_ev / b_json, "eventlog/json < 1", b_ev < b_json),
    ]  # fmt: skip


def bulk_append(tmp: Path, total: int, batch: int, sync: str, reps: int) -> Figure:
    """Batched append of ~1 KB entries vs executemany of the same entries' bytes
    (best of ``reps``, taking turns)."""
    entries = bulk_entries(total, seed=3)
    cctx = zstandard.ZstdCompressor(level=3)
    frames = [cctx.compress(cbor2.dumps(e)) for e in entries]  # what a per-entry log stores
    t_raw = t_ev = float("inf")
    for rep in range(reps):
        raw = RawRows(str(tmp / f"raw-{rep}.db"), sync)
        t_raw = min(t_raw, sum(_timed(raw.insert, frames[i : i + batch]) for i in range(0, total, batch)))
        raw.close()
        with eventlog.open(str(tmp / f"bulk-{rep}.db"), synchronous=sync) as store:
            t_ev = min(t_ev, sum(_timed(store.append, "s", entries[i : i + batch]) for i in range(0, total, batch)))
    r_ev, r_raw = total / t_ev, total / t_raw
    return Figure(
        f"bulk append, {total:,} entries of ~1 KB in batches of {batch:,}",
        f"eventlog {r_ev:,.0f} entries/s, raw executemany {r_raw:,.0f} rows/s", r_ev / r_raw,
        "eventlog/raw >= 0.40", r_ev / r_raw >= 0.40,
    )  # fmt: skip


#: The session shapes compared by :func:`shapes`: where the conversation list sits.
SHAPES = ("entries", "messages", "state.messages")


def _shaped(data: dict[str, Any], shape: str) -> dict[str, Any]:
    """A coding session's dict with its conversation under ``shape`` (the same list object)."""
    rest = {k: v for k, v in data.items() if k != "entries"}
    if shape == "entries":
        return data
    if shape == "messages":
        return {"messages": data["entries"], **rest}
    return {"state": {"messages": data["entries"], **rest}, "thread": "t-1"}


def shapes(tmp: Path, turns: int, sync: str, reps: int) -> list[Figure]:
    """A chat run saved after every turn under each of :data:`SHAPES`: total save
    time (best of ``reps``, the shapes taking turns) and bytes on disk, as ratios to
    the same run under ``entries`` (issue 17: any list is a log)."""
    times = dict.fromkeys(SHAPES, float("inf"))
    sizes: dict[str, int] = {}
    for rep in range(reps):
        for shape in SHAPES:
            path = str(tmp / f"shape-{shape}-{rep}.db")
            runs = [_shaped(d, shape) for d in coding_session(turns, seed=4)]
            with eventlog.open(path, synchronous=sync) as store:
                times[shape] = min(times[shape], sum(_timed(store.save, "s", d) for d in runs))
            sizes[shape] = file_bytes(path)
    figures = []
    base_t, base_b = times["entries"], sizes["entries"]
    for shape in SHAPES[1:]:
        rt, rb = times[shape] / base_t, sizes[shape] / base_b
        figures += [
            Figure(f"{turns}-turn chat saved after every turn under {shape}: total save time",
                   f"{shape} {times[shape] * 1e3:.0f} ms, entries {base_t * 1e3:.0f} ms",
                   rt, f"{shape}/entries <= 1.3", rt <= 1.3),
            Figure(f"{turns}-turn chat under {shape}: bytes on disk",
                   f"{shape} {sizes[shape] / 1e6:.2f} MB, entries {base_b / 1e6:.2f} MB",
                   rb, f"{shape}/entries <= 1.3", rb <= 1.3),
        ]  # fmt: skip
    return figures


def _conversation(n: int, image_bytes: int) -> list[dict[str, Any]]:
    """An Agents SDK conversation of ``n`` items, a screenshot (a base64 PNG data
    URL of ``image_bytes`` bytes) every fifth, as a computer-use agent writes."""
    rng = random.Random(5)
    out: list[dict[str, Any]] = []
    for i in range(n):
        if i % 5 == 0:
            raw = rng.randbytes(image_bytes)
            url = "data:image/png;base64," + base64.b64encode(raw).decode()
            out.append({"role": "user", "content": [{"type": "input_image", "image_url": url, "detail": "auto"}]})
        elif i % 5 == 1:
            args = json.dumps({"action": "click", "x": rng.randint(0, 1280), "y": rng.randint(0, 800)})
            out.append({"type": "function_call", "call_id": f"c{i}", "name": "computer", "arguments": args})
        elif i % 5 == 2:
            out.append({"type": "function_call_output", "call_id": f"c{i - 1}", "output": "clicked " * 20})
        else:
            text = " ".join(rng.choice(("the", "page", "shows", "a", "form", "button")) for _ in range(60))
            out.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
    return out


def latest_items(tmp: Path, n: int, limit: int, sync: str, reps: int) -> list[Figure]:
    """``get_items(limit)`` of a cold session (a new session object on a new store
    handle: what resuming a conversation costs, the object made and the call, best
    of ``reps``) on an ``n``-item conversation with screenshots, added
    ``limit`` items at a time: eventlog's :class:`~eventlog.agents.EventlogSession`
    against the Agents SDK's own ``SQLiteSession`` (one row per item), and against
    eventlog's full load (issue 17: partial reads)."""
    try:
        from agents.memory import SQLiteSession
    except ImportError:
        return [Figure("get_items(limit) of a cold conversation", "not run: openai-agents is not installed",
                       float("nan"), "eventlog/SQLiteSession <= 1.5", None)]  # fmt: skip
    from eventlog.agents import EventlogSession

    items = _conversation(n, 60_000)
    ev_path, sdk_path = str(tmp / "conv-eventlog.db"), str(tmp / "conv-sdk.db")

    async def build() -> None:
        async with EventlogSession("conv", ev_path, synchronous=sync) as ev:
            sdk = SQLiteSession("conv", sdk_path)
            for i in range(0, n, 4):
                await ev.add_items(items[i : i + 4])
                await sdk.add_items(items[i : i + 4])
            sdk.close()

    async def cold_eventlog(k: int | None) -> float:
        t = time.perf_counter()
        async with EventlogSession("conv", ev_path, synchronous=sync) as ev:
            got = await ev.get_items(k)
            dt = time.perf_counter() - t
        assert got == (items[-k:] if k else items)
        return dt

    async def cold_sdk(k: int) -> float:
        t = time.perf_counter()
        sdk = SQLiteSession("conv", sdk_path)
        got = await sdk.get_items(k)
        dt = time.perf_counter() - t
        sdk.close()
        assert got == items[-k:]
        return dt

    asyncio.run(build())
    best = {"ev": float("inf"), "sdk": float("inf"), "full": float("inf")}
    for _ in range(reps):
        best["ev"] = min(best["ev"], asyncio.run(cold_eventlog(limit)))
        best["sdk"] = min(best["sdk"], asyncio.run(cold_sdk(limit)))
        best["full"] = min(best["full"], asyncio.run(cold_eventlog(None)))
    r_sdk, r_full = best["ev"] / best["sdk"], best["ev"] / best["full"]
    what = f"get_items(limit={limit}), cold, {n:,}-item conversation with screenshots"
    return [
        Figure(f"{what}: eventlog / SQLiteSession",
               f"eventlog {best['ev'] * 1e3:.2f} ms, SQLiteSession {best['sdk'] * 1e3:.2f} ms",
               r_sdk, "eventlog/SQLiteSession <= 1.5", r_sdk <= 1.5),
        Figure(f"{what}: against eventlog's whole conversation",
               f"limit={limit} {best['ev'] * 1e3:.2f} ms, all {n:,} items {best['full'] * 1e3:.2f} ms",
               r_full, "limited/all < 0.1", r_full < 0.1),
    ]  # fmt: skip


def run(quick: bool, sync: str) -> tuple[list[Figure], dict[str, list[float]]]:
    """All core figures; returns them and the per-save latency series for plotting."""
    n_long, n_total, n_bulk = (400, 200, 10_000) if quick else (2000, 1000, 100_000)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        figures = [append_flat(tmp, n_long, sync)]
        save_fig, ev, js = save_vs_json(tmp, n_long, sync)
        figures.append(save_fig)
        figures += session_total(tmp, n_total, sync, reps=1 if quick else 2)
        figures.append(bulk_append(tmp, n_bulk, 1000, sync, reps=1 if quick else 3))
        figures += shapes(tmp, 250, sync, reps=1 if quick else 3)
        figures += latest_items(tmp, 200 if quick else 1000, 20, sync, reps=3 if quick else 7)
    if quick:
        for f in figures:
            f.ok = None
    return figures, {"eventlog save()": ev, "one JSON row": js}
