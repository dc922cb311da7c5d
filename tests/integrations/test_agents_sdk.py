"""EventlogSession under the real OpenAI Agents SDK (the ``openai-agents`` package,
in the ``test`` extra): its Session protocol, and its ``Runner`` over several turns
with a scripted model (no network), side by side with the SDK's own SQLiteSession.

CI sets ``EVENTLOG_REQUIRE_AGENTS=1``, so there a missing package fails these tests
instead of skipping them.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

try:
    import agents
    from agents.items import ModelResponse
    from agents.memory import Session, SessionABC, SessionSettings, SQLiteSession
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
except ImportError:
    if os.environ.get("EVENTLOG_REQUIRE_AGENTS"):
        raise
    pytest.skip("openai-agents is not installed (pip install -e '.[test]')", allow_module_level=True)

import eventlog
from eventlog.agents import EventlogSession

agents.set_tracing_disabled(True)


class ScriptedModel(Model):
    """A model without a network: it calls the ``weather`` tool when the newest user
    message asks about the weather, and otherwise replies "reply N".  Every input it
    was given is kept, to check what history the runner sent it."""

    def __init__(self) -> None:
        self.inputs: list[list[Any]] = []

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        n = len(self.inputs)
        last = items[-1]
        if last.get("role") == "user" and "weather" in str(last.get("content")):
            output: list[Any] = [
                ResponseFunctionToolCall(
                    id=f"fc_{n}", call_id=f"call_{n}", name="weather", arguments='{"city": "Paris"}',
                    type="function_call", status="completed",
                )
            ]  # fmt: skip
        else:
            text = ResponseOutputText(type="output_text", text=f"reply {n}", annotations=[])
            output = [
                ResponseOutputMessage(
                    id=f"msg_{n}", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


@agents.function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def image_input(text: str, seed: int) -> list[Any]:
    url = "data:image/png;base64," + base64.b64encode(random.Random(seed).randbytes(3_000_000)).decode()
    return [
        {"role": "user", "content": [{"type": "input_text", "text": text}, {"type": "input_image", "image_url": url}]}
    ]


TURNS: list[Any] = ["hello", "what's the weather?", image_input("what is in this picture?", 1), "thanks"]


#: Item kinds of "hello" and "what's the weather?" (a tool call and its output).
TOOL_TURN = ["user", "message", "user", "function_call", "function_call_output", "message"]


def kinds(items: list[Any]) -> list[str]:
    return [i.get("type") or i["role"] for i in items]


async def converse(session: Any, turns: list[Any], model: ScriptedModel) -> list[str]:
    agent = agents.Agent(name="assistant", instructions="Be brief.", model=model, tools=[weather])
    out = []
    for turn in turns:
        result = await agents.Runner.run(agent, turn, session=session)
        out.append(str(result.final_output))
    return out


def test_it_is_an_sdk_session(db_path: str) -> None:
    session = EventlogSession("conv", db_path)
    assert isinstance(session, Session)  # the SDK's runtime-checkable protocol
    assert not isinstance(session, SessionABC)  # duck-typed, not a subclass
    for name in ("get_items", "add_items", "pop_item", "clear_session"):
        ours, theirs = getattr(EventlogSession, name), getattr(Session, name)
        assert inspect.iscoroutinefunction(ours), name
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), name
    assert session.session_settings is None  # the protocol's default
    settings = EventlogSession("conv", db_path, session_settings={"limit": 5}).session_settings
    assert isinstance(settings, SessionSettings) and settings.limit == 5
    asyncio.run(session.close())


def test_runner_over_several_turns_and_a_new_store(tmp_path: Path) -> None:
    path = str(tmp_path / "agents.db")

    async def main() -> None:
        reference, ours = SQLiteSession("conv"), EventlogSession("conv", path)
        ref_model, model = ScriptedModel(), ScriptedModel()
        assert await converse(ours, TURNS[:3], model) == await converse(reference, TURNS[:3], ref_model)
        items = await ours.get_items()
        assert items == await reference.get_items()  # the same items the SDK's own session keeps
        assert kinds(items) == [*TOOL_TURN, "user", "message"]
        assert model.inputs[-1] == items[:-1]  # the whole history went to the model
        await ours.close()

        # A new store instance on the same file: the history is there, and is used.
        async with EventlogSession("conv", path) as again:
            assert await again.get_items() == items
            assert await converse(again, TURNS[3:], model) == await converse(reference, TURNS[3:], ref_model)
            assert model.inputs[-1] == [*items, {"role": "user", "content": "thanks"}]
            assert await again.get_items() == await reference.get_items()
            stats = await again.store.stats()
            assert stats["largest_cell"] <= 2_000_000 and stats["chunks"]["raw_bytes"] >= 3_000_000
            assert (await again.store.verify()).ok
        reference.close()

    asyncio.run(main())


def test_runner_with_a_history_limit(tmp_path: Path) -> None:
    async def main() -> None:
        store = eventlog.open_async(str(tmp_path / "limit.db"))
        ours = EventlogSession("conv", store, session_settings=SessionSettings(limit=2))
        reference = SQLiteSession("conv", session_settings=SessionSettings(limit=2))
        model, ref_model = ScriptedModel(), ScriptedModel()
        await converse(ours, ["one", "two", "three"], model)
        await converse(reference, ["one", "two", "three"], ref_model)
        assert model.inputs == ref_model.inputs
        two, reply_2, three, _ = await ours.get_items(limit=4)
        assert two == {"role": "user", "content": "two"} and reply_2["id"] == "msg_2"
        assert model.inputs[-1] == [two, reply_2, three]  # the last 2 items, and the new input
        assert len(await ours.get_items()) == 2  # the settings' limit is get_items' default
        assert len(await ours.get_items(limit=-1)) == 6  # the limit is on what is read, not kept
        await store.close()
        reference.close()

    asyncio.run(main())


def test_runner_after_clear_session_with_a_sub_agent(tmp_path: Path) -> None:
    """A conversation and a sub-agent's session spawned from it, both run by the
    Runner; clearing the conversation leaves the sub-agent's history, and the Runner
    goes on with an empty history, as with the SDK's own SQLiteSession."""

    async def main() -> None:
        async with eventlog.open_async(str(tmp_path / "clear.db")) as store:
            ours, sub = EventlogSession("conv", store), EventlogSession("conv:sub", store, parent_id="conv")
            reference = SQLiteSession("conv")
            await converse(ours, ["hello", "what's the weather?"], ScriptedModel())
            await converse(reference, ["hello", "what's the weather?"], ScriptedModel())
            await converse(sub, ["look it up"], ScriptedModel())
            sub_items = await sub.get_items()
            await ours.clear_session()
            await reference.clear_session()
            assert await ours.get_items() == [] == await reference.get_items()
            assert await sub.get_items() == sub_items and await store.children("conv") == ["conv:sub"]
            model, ref_model = ScriptedModel(), ScriptedModel()
            assert await converse(ours, ["again"], model) == await converse(reference, ["again"], ref_model)
            assert model.inputs == ref_model.inputs == [[{"role": "user", "content": "again"}]]
            assert await ours.get_items() == await reference.get_items()
            assert await sub.get_items() == sub_items
        reference.close()

    asyncio.run(main())


def test_sessions_of_many_conversations_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with eventlog.open_async(str(tmp_path / "many.db"), synchronous="NORMAL") as store:
            sessions = [EventlogSession(f"user-{n}", store) for n in range(12)]
            await asyncio.gather(*(converse(s, ["hi", "what's the weather?"], ScriptedModel()) for s in sessions))
            for s in sessions:
                assert kinds(await s.get_items()) == TOOL_TURN

    asyncio.run(main())
