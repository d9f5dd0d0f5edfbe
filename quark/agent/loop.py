"""The agent loop: the model answers, or calls tools and reads their results, up to a step limit.

Each step is one model call under the step's grammar (`choice.grammar`: with "auto" the model
writes either `<|tool_call|>{"name": …, "arguments": {…}}` or a text reply, and nothing else
parses). A tool call is run through `quark.tools.runner.run_tool_call`, which validates the
arguments (pydantic), checks the conversation's policy (allowed tools; risky tools need the allow
flag or the confirm callback), runs it under its time limit and writes the audit row; whatever
happens comes back as a `ToolResult`, appended as a `tool` message, so the model reads an invalid
argument, an unknown tool, a refusal, a timeout or an error as a tool error and carries on. A call
cut off by max_tokens goes through the same runner (as unparsable arguments), so it is audited and
answered too. After `max_steps` tool steps the last model call is held to text ("none"), so a
turn always ends in an answer.

Text streams as `str` pieces, tool calls as `ToolCallStarted` / `ToolCallFinished` events. The
turn emits OpenTelemetry spans: `agent.turn`, one `agent.model_call` per step, and the runner's
`tool.NAME` per call. Once the turn has seen URLs, fetch_url may only fetch one of them
(`grounding.grounded_tools`). A tool result that would overflow the context is cut (head and tail) to what
is left after the reply's reserve, and says so. Fetched pages are cited after the answer
(`grounding`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from quark.agent import choice as choices
from quark.agent.events import AgentEvent, ToolCallFinished, ToolCallStarted
from quark.agent.grounding import grounded_tools, seen_urls, sources_block
from quark.inference import Engine, SamplingParams
from quark.inference.tool_calls import ToolCall, ToolCallReader
from quark.tokenizer.chat_template import TOOL_CALL
from quark.tools import tracing
from quark.tools.capping import head_tail
from quark.tools.context import ToolContext
from quark.tools.runner import run_tool_call

DEFAULT_MAX_STEPS = 4  # tool-calling model calls per turn, before the answer is held to text
MIN_TOOL_RESULT_CHARS = 200  # a result is never cut below this; past that the turn stops instead


@dataclass
class AgentState:
    """One turn's conversation as the model sees it, and what the turn has produced so far."""

    messages: list[dict[str, Any]]  # the prompt's messages, then each step's call and results
    added: list[dict[str, Any]] = field(default_factory=list)  # this turn's tool-call and tool messages
    calls: list[ToolCallFinished] = field(default_factory=list)
    reply: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    model_calls: int = 0
    first_text_seconds: float | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {"prompt": 0.0, "model": 0.0, "tools": 0.0})
    timeline: list[tuple[str, float]] = field(default_factory=list)  # (stage, seconds) in order: prompt,
    # model_call, tool:NAME … (what benchmarks/agent_turn.py breaks a turn down by)
    started: float = field(default_factory=time.perf_counter)


class AgentLoop:
    """Run agent turns with `engine` and the tools in `context.policy.allowed` (their OpenAI
    schemas: `tools`). `tool_choice`: one choice for every step, or one per step (then "auto")."""

    def __init__(self, engine: Engine, context: ToolContext, tools: Sequence[dict[str, Any]], *,
                 max_steps: int = DEFAULT_MAX_STEPS, tool_choice: choices.ToolChoices = "auto",
                 reply_reserve: int = 64, ground_urls: bool = True) -> None:
        self.engine, self.context, self.tools = engine, context, list(tools)
        self.max_steps = max_steps
        self.tool_choice = tool_choice
        self.reply_reserve = reply_reserve
        self.ground_urls = ground_urls
        choices.check(tool_choice, [t["function"]["name"] for t in self.tools])
        self._call_token = engine.tokenizer.special_id(TOOL_CALL)

    def run(self, state: AgentState, params: SamplingParams,
            cancel: threading.Event | None = None) -> Iterator[str | AgentEvent]:
        """Drive one turn from `state.messages` (whose last message is the user's), yielding text
        pieces and tool events; `state` holds the outcome when the generator ends."""
        with tracing.span("agent.turn", **{"conversation.id": self.context.conversation_id or 0,
                                           "agent.tools": len(self.tools)}) as turn_span:
            for step in range(self.max_steps + 1):
                choice = "none" if step == self.max_steps else choices.for_step(self.tool_choice, step)
                reader = yield from self._model_call(state, step, choice, params, cancel)
                if reader is None:  # a text reply (or a stop): the turn is over
                    break
                yield from self._run_calls(state, step, reader)
                if cancel is not None and cancel.is_set():
                    state.finish_reason = "cancelled"
                    break
                if not self._fits(state):
                    state.finish_reason = "length"
                    piece = "(stopped: the tool results fill the model's context; ask again more narrowly)"
                    state.reply += piece
                    yield piece
                    break
            footer = sources_block(state.reply, state.calls)
            if footer and state.finish_reason != "cancelled":
                state.reply += footer
                yield footer
            turn_span.set_attribute("agent.model_calls", state.model_calls)
            turn_span.set_attribute("agent.tool_calls", len(state.calls))
            turn_span.set_attribute("agent.finish_reason", state.finish_reason or "length")

    # ---- one model call ----------------------------------------------------------------------
    def _model_call(self, state: AgentState, step: int, choice: choices.ToolChoice, params: SamplingParams,
                    cancel: threading.Event | None) -> Iterator[str]:
        """Generate one step; returns the tool calls' reader when the model called tools, else None
        (the text was yielded as it came)."""
        began = time.perf_counter()
        ids = self.engine.chat_prompt(state.messages)
        self._time(state, "prompt", began)
        offered = grounded_tools(self.tools, self._turn_urls(state)) if self.ground_urls else self.tools
        step_params = dataclasses.replace(params, grammar=choices.grammar(choice, offered) if self.tools else None)
        calling: bool | None = None
        tokens: list[int] = []
        began = time.perf_counter()
        state.model_calls += 1
        with tracing.span("agent.model_call", **{"agent.step": step, "agent.tool_choice": json.dumps(choice),
                                                 "agent.prompt_tokens": len(ids)}) as span:
            events = self.engine.stream([ids], step_params)
            try:
                for event in events:
                    if cancel is not None and cancel.is_set():
                        state.finish_reason = "cancelled"
                        break
                    if event.token_ids:
                        if calling is None:
                            calling = event.token_ids[0] == self._call_token
                        tokens += event.token_ids
                        state.completion_tokens += len(event.token_ids)
                    if event.finish_reason:
                        state.finish_reason = event.finish_reason
                    if calling:
                        continue
                    if event.text:
                        if state.first_text_seconds is None:
                            state.first_text_seconds = time.perf_counter() - state.started
                        state.reply += event.text
                        yield event.text
            finally:
                events.close()
            span.set_attribute("agent.completion_tokens", len(tokens))
            span.set_attribute("agent.called_tools", bool(calling))
        self._time(state, "model", began, "model_call")
        if not calling or state.finish_reason == "cancelled":
            return None
        reader = ToolCallReader()
        reader.feed(self.engine.tokenizer.decode(tokens[1:]))
        state.finish_reason = None  # the turn goes on
        return reader

    # ---- the calls of one step ---------------------------------------------------------------
    def _run_calls(self, state: AgentState, step: int, reader: ToolCallReader) -> Iterator[AgentEvent]:
        calls = reader.calls if reader.calls else []
        if not calls:  # cut off before a name was complete: answered as a call of no tool
            calls = [ToolCall(f"call_step{step}", "", "")]
        elif not reader.complete:  # the last call was cut off: its arguments do not parse
            for call in calls:
                call.closed = True
        assistant = {"role": "assistant", "content": "",
                     "tool_calls": [_openai_call(c) for c in calls]}
        state.messages.append(assistant)
        state.added.append(assistant)
        for call in calls:
            yield ToolCallStarted(step, call.id, call.name, call.arguments)
            began = time.perf_counter()
            result = run_tool_call(call.name, call.arguments, self.context)
            self._time(state, "tools", began, f"tool:{call.name}")
            finished = ToolCallFinished(step, call.id, call.name, call.arguments, result)
            state.calls.append(finished)
            message = self._fit(state, result.message(call.id))
            state.messages.append(message)
            state.added.append(message)
            yield finished

    @staticmethod
    def _time(state: AgentState, kind: str, began: float, stage: str | None = None) -> None:
        seconds = time.perf_counter() - began
        state.seconds[kind] += seconds
        state.timeline.append((stage or kind, seconds))

    @staticmethod
    def _turn_urls(state: AgentState) -> list[str]:
        """URLs this turn was shown: in the user's message (the last before the turn's own
        messages) and in the turn's tool results."""
        before = state.messages[: len(state.messages) - len(state.added)]
        users = [m for m in before if m.get("role") == "user"][-1:]
        return seen_urls([*users, *state.added])

    def _room(self, state: AgentState) -> int:
        """Tokens the context has left for more prompt after keeping the reply's reserve."""
        return self.engine.context_length - self.reply_reserve - len(self.engine.chat_prompt(state.messages))

    def _fits(self, state: AgentState) -> bool:
        return self._room(state) > 0

    def _fit(self, state: AgentState, message: dict[str, Any]) -> dict[str, Any]:
        """`message` (a tool result), its content cut to the context the turn has left."""
        tokenizer = self.engine.tokenizer
        room = self._room(state)
        cost = len(tokenizer.encode_turn(message))
        if cost <= room:
            return message
        content = message["content"]
        limit = max(MIN_TOOL_RESULT_CHARS, int(len(content) * max(room, 0) / cost * 0.9))
        cut, _ = head_tail(content, limit)
        note = " [the result was cut to fit the model's context]"
        return {**message, "content": cut + note}


def _openai_call(call: Any) -> dict[str, Any]:
    """The call as a stored/rendered OpenAI tool call; arguments that do not parse are kept as an
    empty object in the rendering (the template needs JSON) while the tool message says why."""
    arguments = call.arguments
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(parsed, dict):
            parsed = {}
    except ValueError:
        parsed = {}
    return {"id": call.id, "type": "function", "function": {"name": call.name or "unknown",
                                                            "arguments": json.dumps(parsed)}}
