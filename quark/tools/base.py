"""What a tool is: a pydantic input model, an output model, a description, a risk level, a function.

The input model is the single source of truth: it validates the model's arguments before anything
runs, and its JSON schema is the `parameters` of the OpenAI function schema the model is shown
(and that structured generation constrains tool calls to). A tool's function raises `ToolError`
for anything the caller should hear about as a tool error (a refused URL, a missing file); the
runner turns every other exception into a tool error too, so a tool never crashes the agent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from quark.tools.context import ToolContext


class Risk(str, enum.Enum):
    """safe: reads or computes inside fences (search, fetch, sandboxed code, workspace reads).
    risky: changes something that outlives the call (files, checkpoints): needs an allow flag or
    the user's confirmation before it runs."""

    SAFE = "safe"
    RISKY = "risky"


class ToolInput(BaseModel):
    """Base for input models: unknown arguments are refused (`additionalProperties: false`)."""

    model_config = ConfigDict(extra="forbid")


class ToolOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    run: Callable[[Any, ToolContext], BaseModel]
    risk: Risk = Risk.SAFE
    timeout_s: float = 30.0  # the runner's wall-clock limit for one call
    source: str = "builtin"  # or the distribution a plugin came from

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"tool name {self.name!r} must be an identifier (letters, digits, '_')")
        if not (isinstance(self.input_model, type) and issubclass(self.input_model, BaseModel)):
            raise TypeError(f"tool {self.name}: input_model must be a pydantic model class")
        if not (isinstance(self.output_model, type) and issubclass(self.output_model, BaseModel)):
            raise TypeError(f"tool {self.name}: output_model must be a pydantic model class")
        object.__setattr__(self, "risk", Risk(self.risk))

    def parameters(self) -> dict[str, Any]:
        """The input model's JSON schema, as OpenAI's `parameters`."""
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema: {"type": "function", "function": {name, description, parameters}}."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters()}}

    def describe(self) -> dict[str, Any]:
        """What `quark tools list --json` prints for this tool."""
        return {"name": self.name, "description": self.description, "risk": self.risk.value,
                "timeout_s": self.timeout_s, "source": self.source, "schema": self.schema(),
                "output_schema": self.output_model.model_json_schema()}
