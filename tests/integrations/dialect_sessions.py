"""Sessions in each message dialect, for the tests of the debugging tools
(tests/integrations/test_dialects.py in the terminal, tests/integrations/test_viewer_dialects.py in Chromium).

Where a real library writes the dialect, the library writes it: the OpenAI Agents
SDK's ``Runner`` with a scripted model (a tool call, a tool that fails, a computer-use
screenshot) storing through :class:`eventlog.agents.EventlogSession`, and a LangGraph
graph with LangChain's fake chat model (a tool call, a failing tool, a screenshot
tool) saved after every step.  Chat-completions sessions are made by hand (no
library here writes them).  Each builder returns what the tests look for.

The libraries are in the ``test`` extra; without them the builders raise
``ImportError`` and the tests that need them skip, except in CI, which sets
``EVENTLOG_REQUIRE_AGENTS=1`` and ``EVENTLOG_REQUIRE_LANGGRAPH=1``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from typing import Any

import pytest

import eventlog

MAGENTA = (255, 0, 255)
CYAN = (0, 255, 255)
YELLOW = (255, 255, 0)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def b64png(rgb: tuple[int, int, int], width: int = 320, height: int = 200) -> str:
    return base64.b64encode(png(width, height, rgb)).decode("ascii")


def need(module: str, flag: str) -> None:
    """Skip unless ``module`` imports (fail instead when the environment ``flag`` is set)."""
    try:
        __import__(module)
    except ImportError:
        if os.environ.get(flag):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


# ----------------------------------------------------------------------------- OpenAI Agents SDK


def agents_sdk_session(path: str, session_id: str = "conv") -> dict[str, Any]:
    """A conversation run by the Agents SDK's ``Runner`` (a scripted model, no
    network) and stored by ``EventlogSession``: a user turn with an image, reasoning,
    a ``weather`` tool call, a computer-use click whose output is a (cyan) screenshot,
    a tool that raises, and a reply; then a second user turn."""
    import agents
    from agents import Computer, ComputerTool
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import (
        ResponseComputerToolCall,
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
        ResponseReasoningItem,
    )
    from openai.types.responses.response_reasoning_item import Summary

    from eventlog.agents import EventlogSession

    agents.set_tracing_disabled(True)
    screenshot = b64png(CYAN)

    class Screen(Computer):
        @property
        def environment(self) -> Any:
            return "browser"

        @property
        def dimensions(self) -> tuple[int, int]:
            return (320, 200)

        def screenshot(self) -> str:
            return screenshot

        def click(self, x: int, y: int, button: Any) -> None: ...
        def double_click(self, x: int, y: int) -> None: ...
        def scroll(self, x: int, y: int, scroll_x: int, scroll_y: int) -> None: ...
        def type(self, text: str) -> None: ...
        def wait(self) -> None: ...
        def move(self, x: int, y: int) -> None: ...
        def keypress(self, keys: list[str]) -> None: ...
        def drag(self, path: list[tuple[int, int]]) -> None: ...

    class Scripted(Model):
        def __init__(self) -> None:
            self.n = 0

        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            self.n += 1
            n = self.n
            output: list[Any]
            if n == 1:
                output = [
                    ResponseReasoningItem(id="rs_1", type="reasoning",
                                          summary=[Summary(type="summary_text", text="The user wants the weather.")]),
                    ResponseFunctionToolCall(id="fc_1", call_id="call_weather", name="weather",
                                             arguments='{"city": "Paris"}', type="function_call", status="completed"),
                ]  # fmt: skip
            elif n == 2:
                output = [
                    ResponseComputerToolCall(id="cu_1", call_id="call_click", type="computer_call", status="completed",
                                             pending_safety_checks=[],
                                             action={"type": "click", "x": 10, "y": 20, "button": "left"})  # type: ignore[arg-type]
                ]  # fmt: skip
            elif n == 3:
                output = [
                    ResponseFunctionToolCall(id="fc_3", call_id="call_broken", name="broken", arguments="{}",
                                             type="function_call", status="completed")
                ]  # fmt: skip
            else:
                text = ResponseOutputText(type="output_text", text=f"All done ({n}).", annotations=[])
                output = [ResponseOutputMessage(id=f"msg_{n}", type="message", role="assistant", status="completed",
                                                content=[text])]  # fmt: skip
            return ModelResponse(output=output, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    @agents.function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    @agents.function_tool
    def broken() -> str:
        """A tool that fails."""
        raise RuntimeError("the disk is on fire")

    photo = "data:image/png;base64," + b64png(YELLOW, 64, 64)

    async def main() -> None:
        session = EventlogSession(session_id, path)
        agent = agents.Agent(name="assistant", instructions="Be brief.", model=Scripted(),
                             tools=[weather, broken, ComputerTool(Screen())])  # fmt: skip
        parts = [{"type": "input_text", "text": "What is the weather like in Paris?"},
                 {"type": "input_image", "image_url": photo, "detail": "auto"}]  # fmt: skip
        first = [{"role": "user", "content": parts}]
        await agents.Runner.run(agent, first, session=session)  # type: ignore[arg-type]
        await agents.Runner.run(agent, "Thanks, that is all.", session=session)
        await session.close()

    asyncio.run(main())
    return {"session": session_id, "screenshot": screenshot}


# ----------------------------------------------------------------------------- LangGraph


def langgraph_states(screenshot: str) -> list[list[Any]]:
    """The message lists of a LangGraph ``MessagesState`` graph after each step: an
    agent node with LangChain's fake chat model, and a ``ToolNode`` with a weather
    tool, a tool that raises (``handle_tool_errors``: an error ``ToolMessage``) and a
    screenshot tool returning an image block."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    @tool
    def broken() -> str:
        """A tool that fails."""
        raise ValueError("the disk is on fire")

    @tool
    def take_screenshot() -> list[dict[str, Any]]:
        """A screenshot of the screen."""
        return [{"type": "image", "base64": screenshot, "mime_type": "image/png"}]

    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_weather"},
                                                  {"name": "broken", "args": {}, "id": "call_broken"}]),
                AIMessage(content="Let me look.", tool_calls=[{"name": "take_screenshot", "args": {},
                                                               "id": "call_shot"}]),
                AIMessage(content="It is sunny in Paris; the screen is magenta."),
            ]
        )
    )  # fmt: skip

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([weather, broken, take_screenshot], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    app = graph.compile()
    question = HumanMessage("What is the weather in Paris, and what is on my screen?")
    states = [list(s["messages"]) for s in app.stream({"messages": [SystemMessage("Be brief."), question]},
                                                      stream_mode="values")]  # fmt: skip
    return states


def langgraph_session(path: str) -> dict[str, Any]:
    """The LangGraph run saved after every step in three shapes: ``lc-dict``
    ``{"messages": messages_to_dict(...)}``; ``lc-plain`` ``{"state": {"messages":
    [message.model_dump(), ...]}}``; ``lc-checkpoint`` ``{"v": 4, "channel_values":
    {"messages": [dumpd(message), ...]}}``."""
    from langchain_core.load import dumpd
    from langchain_core.messages import messages_to_dict

    screenshot = b64png(MAGENTA)
    states = langgraph_states(screenshot)
    with eventlog.open(path) as store:
        for messages in states:
            store.save("lc-dict", {"thread_id": "t1", "messages": messages_to_dict(messages)})
            store.save("lc-plain", {"thread_id": "t2", "state": {"messages": [m.model_dump() for m in messages]}})
            store.save("lc-checkpoint", {"v": 4, "channel_values": {"messages": [dumpd(m) for m in messages]}})
    return {"sessions": ["lc-dict", "lc-plain", "lc-checkpoint"], "screenshot": screenshot, "steps": len(states)}


# ----------------------------------------------------------------------------- chat completions, generic


def chat_states(screenshot: str) -> list[dict[str, Any]]:
    """A chat-completions conversation, one state per turn: a system prompt, a user
    message with an image part, an assistant message with two tool calls, their
    results (the second an error), then a reply."""
    m: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [
            {"type": "text", "text": "Book a table for two, and what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + screenshot}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "find_table", "arguments": '{"people": 2}'}},
            {"id": "call_b", "type": "function", "function": {"name": "book", "arguments": '{"table": 7}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "table 7 is free"},
        {"role": "tool", "tool_call_id": "call_b",
         "content": "Traceback (most recent call last):\nValueError: the restaurant is closed"},
        {"role": "assistant", "content": "Table 7 is free but booking failed; the picture is a magenta square."},
    ]  # fmt: skip
    return [{"model": "gpt-x", "messages": m[:n]} for n in (2, 3, 5, 6)]


def generic_states() -> list[dict[str, Any]]:
    """A session of no known dialect: a runtime's own log of steps."""
    steps = [
        {"step": "plan", "note": "look at the logs first", "at": 1},
        {"step": "run", "command": "grep -c ERROR app.log", "exit": 0, "stdout": "42"},
        {"step": "report", "findings": {"errors": 42, "worst": "disk full"}},
    ]
    return [{"run": "r-1", "log": steps[:n]} for n in range(1, len(steps) + 1)]
