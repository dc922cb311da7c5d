"""``python -m bench langgraph``: a LangGraph agent checkpointed by
``EventlogSaver`` against LangGraph's own ``SqliteSaver`` and, on the same
PostgreSQL server, ``PostgresSaver``, in one run.

The agent is a ``MessagesState`` graph: each turn is a user message, an AI message
with a tool call, and the tool's result; every fifth user message carries a
200-800 KB screenshot (a base64 data URL, the same picture resent in about half of
them).  Measured per saver: bytes stored, the time of a turn (``invoke``) near the
start and near the end, ``get_state`` and ``get_state_history`` (the newest
:data:`HISTORY` checkpoints) at the end.
"""

from __future__ import annotations

import base64
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import postgres as pg


def _graph() -> Any:
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def agent(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        call = {"name": "search", "args": {"q": f"step {n}"}, "id": f"c{n}"}
        return {"messages": [AIMessage(content=f"Looking at step {n}.", tool_calls=[call])]}

    def tool(state: MessagesState) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]  # type: ignore[union-attr]
        return {"messages": [ToolMessage(content=f"results for {call['args']['q']}: " + "lorem ipsum " * 40,
                                         tool_call_id=call["id"])]}  # fmt: skip

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_edge("agent", "tool")
    g.add_edge("tool", END)
    return g


def _turns(n: int, seed: int = 7) -> Iterator[Any]:
    from langchain_core.messages import HumanMessage

    rng = random.Random(seed)
    shot = ""
    for t in range(n):
        if t % 5 == 0:
            if not shot or rng.random() < 0.5:
                raw = rng.randbytes(rng.randint(150_000, 600_000))  # 200-800 KB as base64
                shot = "data:image/png;base64," + base64.b64encode(raw).decode()
            yield HumanMessage(content=[{"type": "text", "text": f"turn {t}: what now?"},
                                        {"type": "image_url", "image_url": {"url": shot}}])  # fmt: skip
        else:
            yield HumanMessage(content=f"turn {t}: and then?")


#: The checkpoints ``get_state_history`` reads in the benchmark (the newest).
HISTORY = 100


@dataclass
class Result:
    name: str
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)


def run_agent(name: str, saver_cm: Callable[[], AbstractContextManager[Any]], turns: int,
              size: Callable[[], int]) -> Result:  # fmt: skip
    r = Result(name)
    cfg: Any = {"configurable": {"thread_id": "agent-1"}}
    times = []
    try:
        with saver_cm() as saver:
            app = _graph().compile(checkpointer=saver)
            for message in _turns(turns):
                t = time.perf_counter()
                app.invoke({"messages": [message]}, cfg)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            state = app.get_state(cfg)
            r.metrics["get_state"] = time.perf_counter() - t
            t = time.perf_counter()
            # (LangGraph holds every checkpoint it lists: all 1,200 of 300 turns with their
            # screenshots would be tens of GB for LangGraph's own savers)
            r.metrics["checkpoints"] = sum(1 for _ in app.get_state_history(cfg, limit=HISTORY))
            r.metrics["history"] = time.perf_counter() - t
            r.metrics["messages"] = len(state.values["messages"])
    except ImportError as e:
        return Result(name, f"not installed: {e}")
    tenth = max(1, turns // 10)
    r.metrics["early"] = statistics.median(times[:tenth])
    r.metrics["late"] = statistics.median(times[-tenth:])
    r.metrics["bytes"] = size()
    return r


def _file_bytes(path: str) -> int:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def run(quick: bool, tmp: Path) -> tuple[str, list[tuple[str, list[list[str]]]], list[pg.Target]]:
    turns = 20 if quick else 300
    from importlib import metadata

    from eventlog.langgraph import EventlogSaver

    results: list[Result] = []

    path = str(tmp / "eventlog.db")
    results.append(run_agent("EventlogSaver (SQLite)", lambda: EventlogSaver(path), turns, lambda: _file_bytes(path)))

    @contextmanager
    def sqlite_saver() -> Iterator[Any]:
        from langgraph.checkpoint.sqlite import SqliteSaver

        con = sqlite3.connect(str(tmp / "sqlitesaver.db"), check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        try:
            yield SqliteSaver(con)
        finally:
            con.close()

    results.append(run_agent(f"SqliteSaver {metadata.version('langgraph-checkpoint-sqlite')}", sqlite_saver, turns,
                             lambda: _file_bytes(str(tmp / "sqlitesaver.db"))))  # fmt: skip
    with pg.schema() as url:
        results.append(run_agent("EventlogSaver (PostgreSQL)", lambda: EventlogSaver(url), turns,
                                 lambda: pg.schema_bytes(url)))  # fmt: skip
    with pg.schema() as url:

        @contextmanager
        def postgres_saver() -> Iterator[Any]:
            from langgraph.checkpoint.postgres import PostgresSaver

            with PostgresSaver.from_conn_string(url) as saver:
                saver.setup()
                yield saver

        results.append(run_agent(f"PostgresSaver {metadata.version('langgraph-checkpoint-postgres')}",
                                 postgres_saver, turns, lambda: pg.schema_bytes(url)))  # fmt: skip

    machine = f"langgraph {metadata.version('langgraph')}, {os.cpu_count()} CPUs{', quick' if quick else ''}"
    rows = [["saver", "status", "bytes", "turn p50, first tenth", "turn p50, last tenth", "late/early", "get_state",
             f"get_state_history, newest {HISTORY}", "messages"]]  # fmt: skip
    for r in results:
        m = r.metrics
        rows.append([r.name, r.status, *((pg._mb(m["bytes"]), pg._ms(m["early"]), pg._ms(m["late"]),
                     f"{m['late'] / m['early']:.2f}", pg._ms(m["get_state"]), pg._ms(m["history"]),
                     str(m["messages"])) if r.status == "ok" else ["-"] * 7)])  # fmt: skip
    title = f"A MessagesState agent, {turns} turns (a screenshot every fifth user message), one thread"
    by = {r.name.split(" ")[0] + (" pg" if "PostgreSQL" in r.name or r.name.startswith("Postgres") else ""): r
          for r in results if r.status == "ok"}  # fmt: skip
    targets = []
    ev, sq, evp, pgs = (
        by.get("EventlogSaver"),
        by.get("SqliteSaver"),
        by.get("EventlogSaver pg"),
        by.get("PostgresSaver pg"),
    )
    if ev and sq:
        ratio = sq.metrics["bytes"] / ev.metrics["bytes"]
        targets.append(pg.Target("bytes: SqliteSaver / EventlogSaver", f"{pg._mb(sq.metrics['bytes'])} / "
                                 f"{pg._mb(ev.metrics['bytes'])}", ratio, ">= 100", ratio >= 100))  # fmt: skip
        ratio = ev.metrics["get_state"] / sq.metrics["get_state"]
        targets.append(pg.Target("get_state: EventlogSaver / SqliteSaver", f"{pg._ms(ev.metrics['get_state'])} / "
                                 f"{pg._ms(sq.metrics['get_state'])}", ratio, "<= 1", ratio <= 1))  # fmt: skip
    if evp and pgs:
        ratio = pgs.metrics["bytes"] / evp.metrics["bytes"]
        targets.append(pg.Target("bytes: PostgresSaver / EventlogSaver", f"{pg._mb(pgs.metrics['bytes'])} / "
                                 f"{pg._mb(evp.metrics['bytes'])}", ratio, ">= 20", ratio >= 20))  # fmt: skip
    for r in (ev, evp):
        if r:
            ratio = r.metrics["late"] / r.metrics["early"]
            targets.append(pg.Target(f"{r.name}: turn p50, last tenth / first tenth", f"{pg._ms(r.metrics['late'])} / "
                                     f"{pg._ms(r.metrics['early'])}", ratio, "<= 1.5", ratio <= 1.5))  # fmt: skip
    return machine, [(title, rows)], targets
