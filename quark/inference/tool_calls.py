"""Tool calls in the model's output: telling them from text, and reading them as they stream.

A reply that calls tools starts with the <|tool_call|> token and carries one JSON object per line,
`{"name": "…", "arguments": {…}}`, exactly as the chat template renders an assistant's `tool_calls`
(and as `grammar.tool_call_grammar` constrains it). `ToolCallReader` turns that text, fed in any
pieces, into OpenAI-style calls: each call's id and name as soon as its name is complete, then its
arguments' JSON text as it arrives — what a streamed `tool_calls` delta carries.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quark.tokenizer import Tokenizer
from quark.tokenizer.chat_template import TOOL_CALL

# A call's start, up to the first character of its arguments (so no whitespace leaks into them).
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*(?=\S)')


def starts_tool_call(tokenizer: Tokenizer, token_ids: Sequence[int]) -> bool:
    """Whether a completion (its token ids) is a tool call rather than text."""
    return bool(token_ids) and token_ids[0] == tokenizer.special_id(TOOL_CALL)


@dataclass
class ToolCall:
    """One call as OpenAI returns it; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str = ""
    closed: bool = False  # its JSON object is complete

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ToolCallReader:
    """Reads tool-call text incrementally. `feed(text)` returns the deltas that text completes:
    `{"index", "id", "type", "function": {"name", "arguments": ""}}` when a call's name is known,
    then `{"index", "function": {"arguments": piece}}` as its arguments arrive."""

    calls: list[ToolCall] = field(default_factory=list)
    _pending: str = ""  # text of a call's header not yet complete
    _depth: int = 0  # brackets open inside the current call's arguments
    _in_string: bool = False
    _escaped: bool = False

    def feed(self, text: str) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        while text:
            current = self.calls[-1] if self.calls else None
            if current is None or current.closed:  # between calls: wait for the next header
                self._pending += text
                text = ""
                match = _HEADER.match(self._pending)
                if match is None:
                    continue
                call = ToolCall(f"call_{uuid.uuid4().hex[:24]}", json.loads(match[1]))
                self.calls.append(call)
                text, self._pending = self._pending[match.end():], ""
                deltas.append({"index": len(self.calls) - 1, **call.as_openai()})
                continue
            taken, done = self._scan(text)
            if taken:
                current.arguments += text[:taken]
                if deltas and deltas[-1]["index"] == len(self.calls) - 1:  # one delta per call per feed
                    deltas[-1]["function"]["arguments"] += text[:taken]
                else:
                    deltas.append({"index": len(self.calls) - 1, "function": {"arguments": text[:taken]}})
            if done:  # the "}" closing the call object: not part of the arguments
                current.closed = True
                taken += 1
            text = text[taken:]
        return deltas

    def _scan(self, text: str) -> tuple[int, bool]:
        """How much of `text` belongs to the arguments, and whether the call object closes after it."""
        for i, char in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                if self._depth == 0:
                    return i, True
                self._depth -= 1
        return len(text), False

    @property
    def complete(self) -> bool:
        """Every call read is closed and its arguments parse as JSON, with no stray text left."""
        if not self.calls or self._pending.strip() or not all(c.closed for c in self.calls):
            return False
        try:
            return all(isinstance(json.loads(c.arguments), dict) for c in self.calls)
        except ValueError:
            return False


def read_tool_calls(text: str) -> list[ToolCall] | None:
    """The calls in a whole tool-call reply, or None when it is not complete (e.g. cut by max_tokens)."""
    reader = ToolCallReader()
    reader.feed(text)
    return reader.calls if reader.complete else None

