"""What an agent turn reports besides its text: each tool call starting and finishing.

The TUI renders them as collapsible panels, scripted chat prints a line per call, and `--json`
lists them (`ToolCallRecord.as_dict`). Text is reported as plain `str` pieces, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from quark.tools.result import ToolResult


@dataclass(frozen=True)
class ToolCallStarted:
    step: int
    call_id: str
    name: str
    arguments: str  # the JSON text the model wrote


@dataclass(frozen=True)
class ToolCallFinished:
    step: int
    call_id: str
    name: str
    arguments: str
    result: ToolResult

    @property
    def outcome(self) -> str:
        return self.result.outcome

    @property
    def duration_s(self) -> float:
        return self.result.duration_s

    def as_dict(self) -> dict[str, Any]:
        """{name, arguments, outcome, result, duration_s}: what `quark chat --json` lists per call."""
        try:
            arguments: Any = json.loads(self.arguments)
        except ValueError:
            arguments = self.arguments
        return {"name": self.name, "arguments": arguments, "outcome": self.outcome,
                "result": self.result.output if self.result.ok else self.result.error,
                "duration_s": round(self.duration_s, 4), "audit_id": self.result.call_id, "step": self.step}

    def summary(self) -> str:
        """One line for human output: `run_code ok 0.41s {"code": ...} -> ...`."""
        shown = json.dumps(self.result.output, ensure_ascii=False) if self.result.ok else self.result.error
        return (f"{self.name} {self.outcome} {self.duration_s:.2f}s {_short(self.arguments, 120)} -> "
                f"{_short(shown or '', 200)}")


AgentEvent = ToolCallStarted | ToolCallFinished


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
