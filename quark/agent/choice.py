"""Tool choice per step, with OpenAI's `tool_choice` meaning, turned into the step's grammar.

    "auto"      the model decides: a tool call or a text reply (both under the grammar)
    "required"  a tool call, any offered tool
    {"type": "function", "function": {"name": "web_search"}}  that tool
    "none"      a text reply; tool calls are kept out by the grammar

`AgentLoop` takes one choice for every step, or a sequence (step i uses item i, then "auto"), so a
caller can force the first steps (a test driving an untrained model through search → fetch, or
the rule "a user who says 'use Python' gets a run_code call") and let the model decide after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

from quark.errors import QuarkError
from quark.inference.grammar import Grammar, tool_call_grammar

ToolChoice = Union[str, dict[str, Any]]
ToolChoices = Union[ToolChoice, Sequence[ToolChoice]]

# A text reply with no tool call: the "reply" branch of the tool-call grammar on its own.
TEXT_ONLY = Grammar("start: TEXT\nTEXT: /(?s:.+)/\n", "text reply")


def named(choice: ToolChoice) -> str | None:
    """The function a named choice forces, None for the string choices; a bad choice is one line."""
    if isinstance(choice, str):
        if choice not in ("auto", "required", "none"):
            raise QuarkError(f"tool_choice {choice!r}: expected auto, required, none or "
                             '{"type": "function", "function": {"name": ...}}')
        return None
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise QuarkError(f'tool_choice {choice!r}: expected {{"type": "function", "function": {{"name": ...}}}}')
    return name


def for_step(choices: ToolChoices, step: int) -> ToolChoice:
    if isinstance(choices, (str, dict)):
        return choices
    return choices[step] if step < len(choices) else "auto"


def check(choices: ToolChoices, tool_names: Sequence[str]) -> None:
    """Refuse, before anything runs, a choice naming a tool the conversation does not offer."""
    for choice in [choices] if isinstance(choices, (str, dict)) else choices:
        name = named(choice)
        if name is not None and name not in tool_names:
            raise QuarkError(f"tool_choice names {name!r}, which is not enabled "
                             f"(enabled: {', '.join(tool_names) or 'none'})")


def grammar(choice: ToolChoice, tools: Sequence[dict[str, Any]], *, parallel: bool = False) -> Grammar:
    """The grammar a step with this choice is generated under."""
    name = named(choice)
    if choice == "none" or not tools:
        return TEXT_ONLY
    return tool_call_grammar(tools, required=choice != "auto", name=name, parallel=parallel)
