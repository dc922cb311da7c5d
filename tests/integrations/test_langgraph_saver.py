"""``eventlog.langgraph.EventlogSaver`` against the real LangGraph: its own
conformance suite (``langgraph-checkpoint-conformance``: the five base capabilities
and the three extended ones) on SQLite, in memory and on PostgreSQL; a graph with a
tool run, resumed from a reopened store, listed, forked and pruned, sync and async;
and what a step stores: what changed, not the thread again."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph.checkpoint.conformance", reason="the test extra has langgraph-checkpoint-conformance")
if os.environ.get("EVENTLOG_REQUIRE_LANGGRAPH"):
    import langgraph.checkpoint.conformance  # noqa: F401  (required in CI: fail, not skip)

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel

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


# ---------------------------------------------------------------------- reads share nothing


def _messages(saver: EventlogSaver, cfg: Any) -> list[Any]:
    found = saver.get_tuple(cfg)
    assert found is not None
    return list(found.checkpoint["channel_values"]["messages"])


def _same(got: list[Any], want: list[Any]) -> bool:
    """``got == want``, and for pydantic models (which ``==`` does not check so
    far) the same fields set, extra and private attributes."""
    if got != want:
        return False
    for a, b in zip(got, want, strict=True):
        for name in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
            if getattr(a, name, None) != getattr(b, name, None):
                return False
    return True


def _touch(message: Any) -> None:
    """Change a message every way a caller could, in place."""
    message.content = [{"type": "text", "text": "changed"}] if isinstance(message.content, str) else message.content
    message.content.append({"type": "text", "text": "appended"})
    message.additional_kwargs["touched"] = True
    message.response_metadata.clear()
    for call in getattr(message, "tool_calls", []):
        call["args"]["q"] = "changed"


def test_each_read_hands_out_messages_no_other_read_shares(tmp_path: Path) -> None:
    """A step reads the conversation without deserializing what it read before
    (see ``_Decoded``), yet every read gets objects of its own: a caller changing
    what one read (or ``invoke``) gave changes no later read, and every read equals
    what a saver with nothing in memory reads from the store."""
    path = str(tmp_path / "reads.db")
    cfg: Any = {"configurable": {"thread_id": "r"}}
    with EventlogSaver(path) as saver:
        app = _graph().compile(checkpointer=saver)
        outs = []
        for turn in range(4):
            outs.append(app.invoke({"messages": [HumanMessage(content=f"turn {turn}", id=f"h{turn}")]}, cfg))
            first, second = _messages(saver, cfg), _messages(saver, cfg)
            assert first == second and all(a is not b for a, b in zip(first, second, strict=True))
            for m in first:
                _touch(m)
            for m in outs[-1]["messages"]:
                _touch(m)
            with EventlogSaver(path) as cold:
                assert _same(_messages(saver, cfg), _messages(cold, cfg)) and _same(second, _messages(cold, cfg))
                assert "touched" not in second[0].additional_kwargs
        final = app.get_state(cfg).values["messages"]
    with EventlogSaver(path) as cold:
        assert cold.get_tuple(cfg) is not None and _messages(cold, cfg) == final


@dataclasses.dataclass
class _Custom:
    """A value LangGraph's serde stores but that the saver does not know how to copy."""

    n: int


def test_items_the_saver_cannot_copy_are_deserialized_on_each_read(tmp_path: Path) -> None:
    """Items of kinds the saver cannot copy faithfully (a datetime or an object of
    the application's in a message; a set as an item) are deserialized on every
    read, as before: still equal to what was saved, and of their own."""
    import datetime

    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer(allowed_msgpack_modules=[(__name__, "_Custom")])
    when = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
    items = [HumanMessage(content="a", id="a", additional_kwargs={"at": when}), _Custom(1), {"plain": [1, 2]}, {3, 4}]
    expected = [serde.loads_typed(serde.dumps_typed(item)) for item in items]  # what any saver gives back
    cfg: Any = {"configurable": {"thread_id": "c", "checkpoint_ns": ""}}
    with EventlogSaver(str(tmp_path / "c.db"), serde=serde) as saver:
        checkpoint: Any = {"v": 1, "id": "1", "ts": "", "channel_values": {"messages": items},
                           "channel_versions": {"messages": 1}, "versions_seen": {}}  # fmt: skip
        cfg = saver.put(cfg, checkpoint, {}, {"messages": 1})
        first, second = _messages(saver, cfg), _messages(saver, cfg)
        assert first == second == expected and isinstance(first[1], _Custom)
        assert all(a is not b for a, b in zip(first, second, strict=True))
        first[0].additional_kwargs["at"] = None
        first[1].n = 2
        first[2]["plain"].append(3)
        first[3].add(5)
        assert _messages(saver, cfg) == expected


def test_a_saver_remembers_only_the_threads_used_last(tmp_path: Path) -> None:
    """What the saver keeps in memory between calls is bounded by the store's
    ``cache_sessions``; a thread it forgot is read from the store again."""
    with EventlogSaver(str(tmp_path / "m.db"), cache_sessions=2) as saver:
        app = _graph().compile(checkpointer=saver)
        outs = {}
        for t in range(5):
            cfg: Any = {"configurable": {"thread_id": f"t{t}"}}
            outs[t] = app.invoke({"messages": [HumanMessage(content=f"thread {t}", id=f"h{t}")]}, cfg)
            assert len(saver._shared.threads) <= 2
        for t in range(5):
            cfg = {"configurable": {"thread_id": f"t{t}"}}
            assert app.get_state(cfg).values["messages"] == outs[t]["messages"]


_texts = st.text(alphabet="ab \u00e9\u5909", max_size=6)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.lists(st.tuples(st.sampled_from(["human", "ai", "plain"]), _texts), max_size=3)),
        st.tuples(st.just("read")),
        st.tuples(st.just("touch"), st.integers(0, 50), st.integers(0, 50)),
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(steps=_steps)
def test_reads_equal_what_was_put_whatever_callers_change(steps: list[Any]) -> None:
    """Property: puts of a growing conversation made from what the last read gave
    (as a graph does), reads, and callers changing in place what any read gave:
    every read equals the value last put as it was when put, and what a saver
    with nothing in memory reads."""
    with EventlogSaver(f"memory:lg-{uuid.uuid4().hex}") as saver:
        cold = EventlogSaver(saver.store)  # its own memory, the same store
        cfg: Any = {"configurable": {"thread_id": "p", "checkpoint_ns": ""}}
        last: list[Any] = []
        held: list[list[Any]] = []
        expected: list[Any] | None = None
        for n, step in enumerate(steps):
            if step[0] == "put":
                new = [HumanMessage(content=t, id=f"{n}.{i}") if kind == "human"
                       else AIMessage(content=[{"type": "text", "text": t}], id=f"{n}.{i}",
                                      tool_calls=[{"name": "f", "args": {"q": t}, "id": f"c{n}.{i}"}])
                       if kind == "ai" else {"text": t, "parts": [t]}
                       for i, (kind, t) in enumerate(step[1])]  # fmt: skip
                value = last + new
                checkpoint: Any = {"v": 1, "id": f"{n:04}", "ts": "", "channel_values": {"messages": value},
                                   "channel_versions": {"messages": n + 1}, "versions_seen": {}}  # fmt: skip
                cfg = saver.put(cfg, checkpoint, {}, {"messages": n + 1})
                expected = saver.serde.loads_typed(saver.serde.dumps_typed(value))
            elif step[0] == "read" and expected is not None:
                last = _messages(saver, cfg)
                held.append(last)
                assert _same(last, expected) and _same(last, _messages(cold, cfg))
            elif step[0] == "touch" and held:
                got = held[step[1] % len(held)]
                if got:
                    item = got[step[2] % len(got)]
                    if isinstance(item, dict):
                        item["parts"].append("changed")
                        item["text"] = "changed"
                    else:
                        _touch(item)
        if expected is not None:
            assert _messages(saver, cfg) == expected


def test_a_screenshot_read_again_is_held_once(tmp_path: Path) -> None:
    """The screenshot of a message read by several steps is one string in memory:
    the base64 text the saver keeps apart, shared by what each read hands out."""
    cfg: Any = {"configurable": {"thread_id": "s"}}
    with EventlogSaver(str(tmp_path / "s.db")) as saver:
        app = _graph().compile(checkpointer=saver)
        app.invoke({"messages": [HumanMessage(content="look", id="h")]}, cfg)
        first, second = _messages(saver, cfg), _messages(saver, cfg)
        shots = [(a, b) for a, b in zip(first, second, strict=True) if isinstance(a, ToolMessage)]
        assert shots and all(a.content is b.content and a.content.startswith("data:image/") for a, b in shots)
        log = saver._log(session_id("s"))
        assert log is not None
        pieces = [p for item in log.lists["messages"] if type(item[1]) is list for p in item[1] if type(p) is str]
        assert all(any(a.content is p for p in pieces) for a, _ in shots)


# ---------------------------------------------------------------------- the older layout, damage


def _summary(t: Any) -> dict[str, Any]:
    """What ``data/langgraph_v1_gen.py`` recorded of a checkpoint."""
    import hashlib
    import json

    msgs = t.checkpoint["channel_values"].get("messages", [])
    digest = [[type(m).__name__, m.id, hashlib.sha256(json.dumps(m.content).encode()).hexdigest()[:16]] for m in msgs]
    c = t.config["configurable"]
    parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    writes = [[w[0], w[1]] for w in t.pending_writes]
    return {"id": c["checkpoint_id"], "ns": c["checkpoint_ns"], "parent": parent, "step": t.metadata.get("step"),
            "messages": digest, "writes": writes}  # fmt: skip


def test_threads_of_the_older_layout_read_and_are_rewritten_at_the_first_write(tmp_path: Path) -> None:
    """A store written by the saver before the entry log (a state dict per thread,
    ``data/langgraph_v1.eventlog``): every checkpoint reads as that saver listed it;
    the first write rewrites the thread as an entry log, after which every old
    checkpoint still reads the same and the graph goes on from the newest."""
    import json
    import shutil

    data = Path(__file__).parent / "data"
    want = json.loads((data / "langgraph_v1.json").read_text())
    path = tmp_path / "old.eventlog"
    shutil.copy(data / "langgraph_v1.eventlog", path)
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    with EventlogSaver(str(path)) as saver:
        assert [_summary(t) for t in saver.list(None)] == want
        assert "checkpoints" in saver.store.fold(session_id("t1"))  # read, not rewritten
        app = _graph().compile(checkpointer=saver)
        before = app.get_state(cfg).values["messages"]
        after = app.invoke({"messages": [HumanMessage(content="and now", id="h3")]}, cfg)["messages"]
        assert after[: len(before)] == before and len(after) > len(before)
        assert set(saver.store.fold(session_id("t1"))) == {"entries"}
    with EventlogSaver(str(path)) as saver:
        got = [_summary(t) for t in saver.list(None)]
        assert [g for g in got if g["id"] in {w["id"] for w in want}] == want
        assert len(got) > len(want)


def _damaged_logs() -> dict[str, list[Any]]:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    good = list(serde.dumps_typed({"v": 1, "id": "1", "ts": "", "channel_versions": {"messages": "1"},
                                   "versions_seen": {}}))  # fmt: skip
    meta, item = list(serde.dumps_typed({})), list(serde.dumps_typed(HumanMessage("x", id="x")))

    def put(**over: Any) -> dict[str, Any]:
        values = {"messages": {"v": '"1"', "list": [item], "from": 0}}
        e = {"k": "put", "cid": "1", "parent": None, "checkpoint": good, "metadata": meta,
             "versions": {"messages": '"1"'}, "values": values}  # fmt: skip
        e.update(over)
        return e

    def writes(path: Any = "", w: Any = None) -> dict[str, Any]:
        return {"k": "writes", "cid": "1", "task": "t", "path": path, "w": w or [["c", "msgpack", b"\xc0", 0]]}

    return {
        "not a put": [{"k": "put"}],
        "unknown kind": [{"k": "nope"}],
        "not a dict": [7],
        "from past the list": [put(values={"messages": {"v": "1", "list": [], "from": 3}})],
        "version not a str": [put(versions={"messages": 1})],
        "checkpoint not a pair": [put(checkpoint="garbage")],
        "checkpoint bytes an int": [put(checkpoint=["msgpack", 3])],
        "checkpoint bytes garbage": [put(checkpoint=["msgpack", b"\xc1\xff"])],
        "list item not a pair": [put(values={"messages": {"v": '"1"', "list": [7], "from": 0}})],
        "value not a pair": [put(values={"messages": {"v": '"1"', "value": 7}})],
        "parent not a str": [put(parent=7)],
        "metadata missing": [{k: v for k, v in put().items() if k != "metadata"}],
        "write idx a str": [put(), writes(w=[["c", "msgpack", b"\xc0", "0"]])],
        "write bytes a str": [put(), writes(w=[["c", "msgpack", "abc", 0]])],
        "write path None": [put(), writes(path=None)],
    }


@pytest.mark.parametrize("case", list(_damaged_logs()))
def test_a_damaged_entry_log_is_a_corruption_error_naming_the_thread(tmp_path: Path, case: str) -> None:
    with EventlogSaver(str(tmp_path / "d.db")) as saver:
        sid = session_id("bad")
        saver.store.save(sid, {"entries": _damaged_logs()[case]})
        with pytest.raises(eventlog.CorruptionError) as e:
            saver.get_tuple({"configurable": {"thread_id": "bad"}})
        assert e.value.session_id == sid


def test_deleting_runs_keeps_what_later_checkpoints_read(tmp_path: Path) -> None:
    """``delete_for_runs`` drops a run's checkpoints and writes; a checkpoint of
    another run that reads a channel version the deleted run wrote still reads it."""
    cfg: Any = {"configurable": {"thread_id": "d", "checkpoint_ns": ""}}
    with EventlogSaver(str(tmp_path / "runs.db")) as saver:

        def put(cid: str, run: str, versions: dict[str, int], values: dict[str, Any], new: dict[str, int]) -> Any:
            checkpoint: Any = {"v": 1, "id": cid, "ts": "", "channel_values": values,
                               "channel_versions": versions, "versions_seen": {}}  # fmt: skip
            return saver.put(cfg, checkpoint, {"run_id": run}, new)

        first = put("1", "r1", {"messages": 1, "other": 1}, {"messages": ["a", "b"], "other": {"x": 1}},
                    {"messages": 1, "other": 1})  # fmt: skip
        saver.put_writes(first, [("messages", "w")], "task")
        put("2", "r2", {"messages": 2, "other": 1}, {"messages": ["a", "b", "c"]}, {"messages": 2})
        saver.delete_for_runs(["r1"])
        assert [t.config["configurable"]["checkpoint_id"] for t in saver.list(None)] == ["2"]
        second = saver.get_tuple({"configurable": {"thread_id": "d", "checkpoint_id": "2"}})
        assert second is not None
        assert second.checkpoint["channel_values"] == {"messages": ["a", "b", "c"], "other": {"x": 1}}
        assert saver.get_tuple({"configurable": {"thread_id": "d", "checkpoint_id": "1"}}) is None


def test_a_history_shares_no_object_between_its_checkpoints(tmp_path: Path) -> None:
    """``list`` deserializes each stored message once per call and hands out
    copies: two checkpoints of the history holding the same message hold objects
    of their own, equal to what a saver with nothing in memory lists."""
    path = str(tmp_path / "h.db")
    cfg: Any = {"configurable": {"thread_id": "h"}}
    with EventlogSaver(path) as saver:
        app = _graph().compile(checkpointer=saver)
        for turn in range(3):
            app.invoke({"messages": [HumanMessage(content=f"turn {turn}", id=f"h{turn}")]}, cfg)
        history = list(saver.list(cfg))
        lists = [t.checkpoint["channel_values"].get("messages", []) for t in history]
        seen: dict[int, int] = {}
        for i, messages in enumerate(lists):
            for m in messages:
                assert seen.setdefault(id(m), i) == i  # no object in two checkpoints
        for messages in lists[1:]:
            for m in messages:
                _touch(m)
        with EventlogSaver(path) as cold:
            again = [t.checkpoint["channel_values"].get("messages", []) for t in cold.list(cfg)]
        assert _same(lists[0], again[0])
        assert [t.checkpoint["channel_values"].get("messages", []) for t in saver.list(cfg)] == again


def test_a_thread_of_the_older_layout_with_a_shortened_history_reads_its_newest_checkpoint(tmp_path: Path) -> None:
    """``compact(retain=n)`` cut the history of a thread in the older layout: its
    newest checkpoint reads as before (its values are in the state, whatever the
    history kept), and the thread is rewritten and goes on at the next step."""
    import json
    import shutil

    data = Path(__file__).parent / "data"
    want = json.loads((data / "langgraph_v1.json").read_text())
    path, whole = tmp_path / "old.eventlog", tmp_path / "whole.eventlog"
    shutil.copy(data / "langgraph_v1.eventlog", path)
    shutil.copy(data / "langgraph_v1.eventlog", whole)
    with eventlog.open(str(path)) as store:
        store.compact(retain=1)
        assert store.info(session_id("t1")).history_start > 0
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    with EventlogSaver(str(whole)) as saver:
        reference = saver.get_tuple(cfg)
    with EventlogSaver(str(path)) as saver:
        newest = saver.get_tuple(cfg)
        assert newest is not None and reference is not None and _summary(newest) == want[0]
        assert newest.checkpoint["channel_values"] == reference.checkpoint["channel_values"]
        app = _graph().compile(checkpointer=saver)
        before = app.get_state(cfg).values["messages"]
        after = app.invoke({"messages": [HumanMessage(content="later", id="h9")]}, cfg)["messages"]
        assert after[: len(before)] == before and len(after) > len(before)


# ---------------------------------------------------------------------- what a second review found


def _cp(cid: str, messages: list[Any], version: int) -> Any:
    return {"v": 1, "id": cid, "ts": "", "channel_values": {"messages": messages},
            "channel_versions": {"messages": version}, "versions_seen": {}}  # fmt: skip


def _at(thread: str, cid: str | None = None) -> Any:
    c: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if cid:
        c["configurable"]["checkpoint_id"] = cid
    return c


@pytest.mark.parametrize("theirs", [1, 3])
def test_a_thread_deleted_and_made_again_elsewhere_is_read_again(tmp_path: Path, theirs: int) -> None:
    """Saver B (another process) deletes a thread that saver A has read and writes it
    again up to the same seq: A reads the new thread, not what it remembers, and
    what A puts next is stored as A put it (never counted against B's list)."""
    path = str(tmp_path / "aba.db")
    a, b = EventlogSaver(path), EventlogSaver(path)
    c = a.put(_at("t"), _cp("01", [HumanMessage("a1", id="a1")], 1), {}, {"messages": 1})
    a.put(c, _cp("02", [HumanMessage("a1", id="a1"), AIMessage("a2", id="a2")], 2), {}, {"messages": 2})
    got = _messages(a, _at("t"))
    b.delete_thread("t")
    theirs_list = [HumanMessage(f"b{i}", id=f"b{i}") for i in range(theirs)]
    c = b.put(_at("t"), _cp("03", theirs_list, 1), {}, {"messages": 1})
    b.put(c, _cp("04", theirs_list, 2), {}, {"messages": 2})
    assert a.store.seq(session_id("t")) == 2
    assert _messages(a, _at("t")) == theirs_list  # not the deleted thread
    mine = [*got, AIMessage("a3", id="a3")]
    a.put(_at("t", "02"), _cp("05", mine, 3), {}, {"messages": 3})
    with EventlogSaver(path) as cold:
        assert _messages(cold, _at("t")) == mine
    a.close()
    b.close()


class _Sub(BaseModel):
    x: int


class _Item(BaseModel):
    sub: _Sub


def test_edits_in_place_the_mirror_cannot_see_are_stored(tmp_path: Path) -> None:
    """An attribute added to a message read (pydantic's extra) and a change inside a
    model held by an item are stored at the next put: items holding what the
    saver cannot watch are serialized again."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer(allowed_msgpack_modules=[(__name__, "_Item"), (__name__, "_Sub")])
    path = str(tmp_path / "g.db")
    with EventlogSaver(path, serde=serde) as saver:
        c = saver.put(_at("t"), _cp("01", [AIMessage("a", id="a")], 1), {}, {"messages": 1})
        got = _messages(saver, _at("t"))
        got[0].custom_note = "added in place"
        saver.put(c, _cp("02", [*got, HumanMessage("b", id="b")], 2), {}, {"messages": 2})
        c = saver.put(_at("u"), _cp("01", [_Item(sub=_Sub(x=1))], 1), {}, {"messages": 1})
        items = _messages(saver, _at("u"))
        items[0].sub.x = 2
        saver.put(c, _cp("02", [*items, _Item(sub=_Sub(x=3))], 2), {}, {"messages": 2})
    with EventlogSaver(path, serde=serde) as cold:
        assert _messages(cold, _at("t"))[0].__pydantic_extra__ == {"custom_note": "added in place"}
        assert _messages(cold, _at("u")) == [_Item(sub=_Sub(x=2)), _Item(sub=_Sub(x=3))]


class _Note(BaseModel):
    text: str


def test_copies_with_another_allowlist_read_with_their_own_serde(tmp_path: Path) -> None:
    """``with_allowlist`` copies share the saver's memory but not its serde: each
    reads what its own serde makes of the stored items, whichever read first."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    path = str(tmp_path / "w.db")
    allowed = [(__name__, "_Note")]

    def strict() -> EventlogSaver:
        return EventlogSaver(path, serde=JsonPlusSerializer(allowed_msgpack_modules=None))  # only what is allowed

    strict().with_allowlist(allowed).put(_at("t"), _cp("01", [_Note(text="hi")], 1), {}, {"messages": 1})
    for first_plain in (True, False):
        plain = strict()
        graph_saver = plain.with_allowlist(allowed)
        order = [plain, graph_saver] if first_plain else [graph_saver, plain]
        got = {id(s): _messages(s, _at("t")) for s in order}
        assert got[id(graph_saver)] == [_Note(text="hi")]
        assert not isinstance(got[id(plain)][0], _Note)


def test_a_read_in_between_does_not_make_the_next_put_store_the_list_again(tmp_path: Path) -> None:
    """Another reader (a UI polling ``get_state``) between a graph's read and its
    put, or a saver that remembers nothing, still stores only what the put adds."""
    for poll, cache in ((False, 16), (True, 16), (False, 0)):
        path = str(tmp_path / f"p{poll}{cache}.db")
        with EventlogSaver(path, cache_sessions=cache) as saver:
            first = [HumanMessage(f"m{i}", id=f"m{i}") for i in range(50)]
            c = saver.put(_at("t"), _cp("00", first, 1), {}, {"messages": 1})
            for step in range(1, 4):
                got = _messages(saver, _at("t"))
                if poll:
                    _messages(saver, _at("t"))
                c = saver.put(c, _cp(f"{step:02}", [*got, AIMessage(f"a{step}", id=f"a{step}")], step + 1), {},
                              {"messages": step + 1})  # fmt: skip
            entries = saver.store.fold(session_id("t"))["entries"]
        stored = [(e["values"]["messages"]["from"], len(e["values"]["messages"]["list"])) for e in entries]
        assert stored == [(0, 50), (50, 1), (51, 1), (52, 1)], (poll, cache, stored)


def test_checkpoints_of_the_older_layout_whose_values_a_shortened_history_lost_are_left_out(tmp_path: Path) -> None:
    """``compact(retain=1)`` on a thread in the older layout: the checkpoints that
    read values whose events are gone are not listed (the saver that wrote them
    could not read them either); every one listed reads as that saver listed it."""
    import json
    import shutil

    data = Path(__file__).parent / "data"
    want = {w["id"]: w for w in json.loads((data / "langgraph_v1.json").read_text())}
    path = tmp_path / "old.eventlog"
    shutil.copy(data / "langgraph_v1.eventlog", path)
    with eventlog.open(str(path)) as store:
        store.compact(retain=1)
    with EventlogSaver(str(path)) as saver:
        got = [_summary(t) for t in saver.list(None)]
    assert got and len(got) < len(want)
    assert all(g == want[g["id"]] for g in got)
