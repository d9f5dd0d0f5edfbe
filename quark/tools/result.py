"""The uniform outcome of one tool call, success or not, in the shape the model reads back.

Whatever happened (the tool ran, its arguments were invalid, it is unknown, it was denied, it
timed out, it failed), the agent loop gets a `ToolResult` and appends `result.message()` as a
`tool` message: the model sees `{"ok": true, "result": {...}}` or `{"ok": false, "error":
{"type": ..., "message": ...}}` and can try again. Nothing here raises.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["ok", "invalid_arguments", "unknown_tool", "denied", "timeout", "error"]
OUTCOMES: tuple[str, ...] = ("ok", "invalid_arguments", "unknown_tool", "denied", "timeout", "error")


@dataclass(frozen=True)
class ToolResult:
    tool: str
    outcome: Outcome
    output: dict[str, Any] | None  # the output model's JSON dump, when ok
    error: str | None  # the one-line reason, when not ok
    duration_s: float
    call_id: int | None = None  # the audit-log row (tool_calls.id)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def content(self) -> str:
        """The `tool` message's content: compact JSON the model can read and parse."""
        if self.ok:
            body: dict[str, Any] = {"ok": True, "result": self.output}
        else:
            body = {"ok": False, "error": {"type": self.outcome, "message": self.error}}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """sha256 of `content()`: what the audit log keeps to show a replay returned the same."""
        return hashlib.sha256(self.content().encode("utf-8")).hexdigest()

    def message(self, tool_call_id: str | None = None) -> dict[str, Any]:
        """An OpenAI-style `tool` message answering the call `tool_call_id`."""
        message: dict[str, Any] = {"role": "tool", "name": self.tool, "content": self.content()}
        if tool_call_id is not None:
            message["tool_call_id"] = tool_call_id
        return message

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "ok": self.ok, "outcome": self.outcome, "output": self.output,
                "error": self.error, "duration_s": round(self.duration_s, 4), "call_id": self.call_id,
                "digest": self.digest}
