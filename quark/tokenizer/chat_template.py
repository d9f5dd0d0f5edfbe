"""The chat and tool-call template: how a conversation becomes token ids.

    <s><|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>

Tools call and answer inside an assistant turn: `<|assistant|><|tool_call|>{json}<|end|>`, then a
`<|tool|>` turn carrying the result. The special pieces are SentencePiece *control* symbols
(registered when the tokenizer is trained), so user text can never produce them and a message that
contains "<|assistant|>" cannot forge a turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from quark.errors import QuarkError

END, TOOL_CALL = "<|end|>", "<|tool_call|>"
CHAT_SPECIALS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", END, TOOL_CALL]
ROLES = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|tool|>"}


class Tokenizer(Protocol):
    """What the template needs of a tokenizer (quark.tokenizer.Tokenizer is one; the template does
    not import it, so the tokenizer can import the template)."""

    @property
    def bos_id(self) -> int: ...

    @property
    def end_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def special_id(self, piece: str) -> int: ...


def encode_chat(tok: Tokenizer, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> list[int]:
    """BOS, then <|role|> content <|end|> per message, then <|assistant|> when a reply is wanted."""
    ids = [tok.bos_id]
    for message in messages:
        ids += encode_turn(tok, message)
    if add_generation_prompt:
        ids.append(tok.special_id(ROLES["assistant"]))
    return ids


def encode_turn(tok: Tokenizer, message: dict) -> list[int]:
    """One message as ids; an assistant turn that calls tools carries their JSON after <|tool_call|>."""
    role = message.get("role")
    if role not in ROLES:
        raise QuarkError(f"unknown chat role {role!r} (expected one of {', '.join(ROLES)})")
    if role == "assistant" and message.get("tool_calls"):
        return [tok.special_id(ROLES[role]), tok.special_id(TOOL_CALL),
                *tok.encode(tool_call_text(message["tool_calls"])), tok.end_id]
    return [tok.special_id(ROLES[role]), *tok.encode(str(message.get("content") or "")), tok.end_id]


def tool_call_text(tool_calls: Sequence[dict]) -> str:
    """OpenAI-style tool_calls as the JSON the model writes after <|tool_call|>: one object per
    call, newline-separated, with arguments parsed back from their JSON string."""
    lines = []
    for call in tool_calls:
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise QuarkError(f"tool call {function.get('name')!r}: arguments are not valid JSON") from None
        lines.append(json.dumps({"name": function.get("name"), "arguments": arguments}))
    return "\n".join(lines)


def tools_system_text(tools: Sequence[dict[str, Any]]) -> str:
    """The system-prompt paragraph that tells the model which tools it may call (the wording of
    `quark data synth`'s tool traces, so a model trained on them recognises it)."""
    described = []
    for tool in tools:
        function = tool.get("function", tool)
        params = ", ".join((function.get("parameters") or {}).get("properties", {}))
        text = f"{function['name']}({params})"
        if function.get("description"):
            text += f" {function['description'].strip().rstrip('.')}"
        described.append(text)
    return ('You can call tools by replying with a JSON object {"name": ..., "arguments": {...}}. Tools: '
            + "; ".join(described) + ".")


def with_tools_prompt(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with the tools described at the end of the system message (one is added first
    when there is none)."""
    text = tools_system_text(tools)
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0].get('content') or ''}\n\n{text}".lstrip()
        return messages
    return [{"role": "system", "content": text}, *messages]
