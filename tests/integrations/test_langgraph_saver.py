"""``eventlog.langgraph.EventlogSaver`` against the real LangGraph: its own
conformance suite (``langgraph-checkpoint-conformance``: the five base capabilities
and the three extended ones) on SQLite, in memory and on PostgreSQL; a graph with a
tool run, resumed from a reopened store, listed, forked and pruned, sync and async;
and what a step stores: what changed, not the thread again."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="the test extra has langgraph-checkpoint-conformance")
if os.environ.get("EVENTLOG_REQUIRE_LANGGRAPH"):
    import langgraph.checkpoint.conformance  # noqa: F401  (required in CI: fail, not skip)

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, MessagesState, StateGraph

import eventlog
from eventlog.langgraph import EventlogSaver, session_id

from ..postgres import store_urls

CAPABILITIES = ["put", "put_writes", "get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread", "prune"]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``new()``: where a new, empty store is."""
    if request.param == "sqlite":
        names = iter(range(1000))
        yield lambda: str(tmp_path / f"checkpoints{next(names)}.db")
    elif request.param == "memory":
        yield lambda: f"memory:lg-{uuid.uuid4().hex}"
    else:
        with store_urls() as new:
            yield new


def test_langgraphs_conformance_suite_passes_all_eight_capabilities(where: Any) -> None:
    @checkpointer_test(name=f"EventlogSaver-{uuid.uuid4().hex[:6]}")
    async def saver() -> AsyncIterator[EventlogSaver]:
        s = EventlogSaver(where())
        yield s
        s.close()

    report = asyncio.run(validate(saver))
    results = report.results
    failed = {c: (results[c].detected, results[c].passed, results[c].failures[:3]) for c in CAPABILITIES
              if not (results[c].detected and results[c].passed is True)}  # fmt: skip
    assert not failed, failed


# ---------------------------------------------------------------------- a graph with a tool


def _graph() -> StateGraph:
    def agent(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        if isinstance(state["messages"][-1], ToolMessage) and n % 3 == 0:
            return {"messages": [AIMessage(content=f"done after {n} messages")]}
        return {"messages": [AIMessage(content=f"step {n}", tool_calls=[{"name": "shot", "args": {}, "id": f"c{n}"}])]}

    def tool(state: MessagesState) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]  # type: ignore[union-attr]
        screenshot = "data:image/png;base64," + ("iVBORw0KGgo" * 20_000)  # ~220 KB, the same each time
        return {"messages": [ToolMessage(content=screenshot, tool_call_id=call["id"])]}

    def route(state: MessagesState) -> str:
        return "tool" if getattr(state["messages"][-1], "tool_calls", None) else END

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tool", END])
    g.add_edge("tool", "agent")
    return g


def test_a_graph_runs_resumes_lists_and_prunes(tmp_path: Path) -> None:
    path = str(tmp_path / "checkpoints.db")
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    with EventlogSaver(path) as saver:
        app = _graph().compile(checkpointer=saver)
        first = app.invoke({"messages": [HumanMessage(content="hello")]}, cfg)
    with EventlogSaver(path) as saver:  # another process would see the same: the store is the state
        app = _graph().compile(checkpointer=saver)
        assert app.get_state(cfg).values["messages"] == first["messages"]
        second = app.invoke({"messages": [HumanMessage(content="again")]}, cfg)
        assert second["messages"][: len(first["messages"])] == first["messages"]
        history = list(app.get_state_history(cfg))
        assert len(history) > 6 and [h.config["configurable"]["checkpoint_id"] for h in history] == sorted(
            (h.config["configurable"]["checkpoint_id"] for h in history), reverse=True
        )
        for h in history:  # every checkpoint, as it was
            assert h.values.get("messages", []) == second["messages"][: len(h.values.get("messages", []))]
        old = history[len(history) // 2]
        forked = app.invoke(None, old.config)  # resumed from an old checkpoint: a fork
        assert forked["messages"][: len(old.values["messages"])] == old.values["messages"]
        saver.prune(["t1"])
        assert len(list(app.get_state_history(cfg))) == 1
        assert app.get_state(cfg).values["messages"] == forked["messages"]
        assert saver.store.verify().ok
        assert saver.store.stats()["events"]["rows"] <= 2  # the root and its one checkpoint
        app.invoke({"messages": [HumanMessage(content="after the prune")]}, cfg)
        assert app.get_state(cfg).values["messages"][: len(forked["messages"])] == forked["messages"]
        saver.delete_thread("t1")
        assert app.get_state(cfg).values == {} and saver.store.sessions() == []


def test_the_async_methods_run_a_graph(tmp_path: Path) -> None:
    async def run() -> tuple[Any, int]:
        with EventlogSaver(str(tmp_path / "a.db")) as saver:
            app = _graph().compile(checkpointer=saver)
            cfg: Any = {"configurable": {"thread_id": "a"}}
            out = await app.ainvoke({"messages": [HumanMessage(content="hi")]}, cfg)
            state = await app.aget_state(cfg)
            n = len([h async for h in app.aget_state_history(cfg)])
            assert state.values["messages"] == out["messages"]
            return out, n

    out, n = asyncio.run(run())
    assert len(out["messages"]) >= 4 and n > 3


def test_a_step_stores_what_changed(tmp_path: Path) -> None:
    """The bytes a turn adds do not grow with the thread: a turn's messages are
    stored, not the conversation again, and the screenshot, resent every turn, is
    stored once."""
    path = str(tmp_path / "grow.db")
    cfg: Any = {"configurable": {"thread_id": "long"}}
    added = []
    with EventlogSaver(path, snapshot_every=10**6, snapshot_bytes=10**12) as saver:
        app = _graph().compile(checkpointer=saver)
        sid = session_id("long")
        for turn in range(40):
            before = saver.store.info(sid).stored_bytes if turn else 0
            app.invoke({"messages": [HumanMessage(content=f"turn {turn}")]}, cfg)
            added.append(saver.store.info(sid).stored_bytes - before)
        chunks = saver.store.stats()["chunks"]
    early, late = sum(added[2:12]) / 10, sum(added[-10:]) / 10
    assert late <= 1.5 * early, (early, late)
    assert chunks["rows"] <= 2  # the one screenshot (however many times it was sent)


def test_a_saver_on_an_open_store_leaves_it_open(tmp_path: Path) -> None:
    with eventlog.open(str(tmp_path / "s.db")) as store:
        with EventlogSaver(store) as saver:
            _graph().compile(checkpointer=saver).invoke({"messages": [HumanMessage(content="x")]},
                                                        {"configurable": {"thread_id": "x"}})  # fmt: skip
        assert store.sessions() == [session_id("x")]
        with pytest.raises(eventlog.InvalidValueError):
            EventlogSaver(store, synchronous="OFF")
    with pytest.raises(eventlog.InvalidValueError):
        EventlogSaver(str(tmp_path / "s.db")).prune(["x"], strategy="everything")


def test_a_message_edited_in_place_is_stored_as_edited(tmp_path: Path) -> None:
    """The saver serializes a message again only when it changed; a node that
    changes a message of the state in place (the same object, returned again) is
    seen to change it."""

    def edit(state: MessagesState) -> dict[str, Any]:
        first = state["messages"][0]
        first.content = f"{first.content}, edited in place"
        first.additional_kwargs["edits"] = first.additional_kwargs.get("edits", 0) + 1
        return {"messages": [first]}

    g = StateGraph(MessagesState)
    g.add_node("edit", edit)
    g.add_edge(START, "edit")
    g.add_edge("edit", END)
    cfg: Any = {"configurable": {"thread_id": "edit"}}
    with EventlogSaver(str(tmp_path / "e.db")) as saver:
        app = g.compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage(content="hello", id="h1")]}, cfg)
        app.invoke({"messages": [HumanMessage(content="again", id="h2")]}, cfg)
    with EventlogSaver(str(tmp_path / "e.db")) as saver:  # read back from the store, not from memory
        stored = g.compile(checkpointer=saver).get_state(cfg).values["messages"][0]
    assert stored.content == "hello, edited in place, edited in place"
    assert stored.additional_kwargs == {"edits": 2}
