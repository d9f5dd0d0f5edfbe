"""`run_tool_call`: the one way a tool call runs, for the agent loop, the CLI and replays.

Order: find the tool → check this conversation allows it → parse and validate the arguments
(pydantic) → risky tools need the allow flag or the confirmation callback → run under the tool's
wall-clock limit → validate the output → write the audit row → return a `ToolResult`. Each failure
becomes a ToolResult with an outcome (unknown_tool, denied, invalid_arguments, timeout, error) and
one line: never an exception, never silence. A tool that overruns its limit is abandoned on a
daemon thread (the sandbox and the fetcher enforce their own, shorter limits inside).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from quark.errors import QuarkError
from quark.tools import audit, tracing
from quark.tools.base import Risk, Tool
from quark.tools.context import ToolContext
from quark.tools.errors import ToolError
from quark.tools.registry import Registry, default_registry
from quark.tools.result import ToolResult

_default: Registry | None = None
_default_lock = threading.Lock()


def registry() -> Registry:
    """The process's registry (built-ins and plugins), loaded once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = default_registry()
        return _default


class _Failure(Exception):
    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def run_tool_call(name: str, arguments: str | dict[str, Any], context: ToolContext, *,
                  tools: Registry | None = None) -> ToolResult:
    """Validate, authorise, run and audit one call of tool `name` with `arguments` (the JSON text the
    model wrote, or an already-parsed object)."""
    tools = tools or registry()
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    tracing.ensure_configured(context.settings.tracing)
    start = time.monotonic()
    with tracing.span(f"tool.{name}", **{"tool.name": name, "conversation.id": context.conversation_id or 0,
                                         "tool.initiated_by": context.initiated_by}) as span:
        try:
            tool = _find(tools, name, context)
            args = _validate(tool, raw)
            _authorise(tool, args, context)
            output = _run(tool, args, context)
            outcome, error = "ok", None
        except _Failure as failure:
            outcome, output, error = failure.outcome, None, str(failure)
        result = ToolResult(tool=name, outcome=outcome, output=output, error=error,  # type: ignore[arg-type]
                            duration_s=time.monotonic() - start)
        call_id = _audit(context, result, raw)
        span.set_attribute("tool.outcome", outcome)
        span.set_attribute("tool.duration_s", result.duration_s)
        if call_id is not None:
            span.set_attribute("tool.call_id", call_id)
    return ToolResult(tool=name, outcome=outcome, output=output, error=error,  # type: ignore[arg-type]
                      duration_s=result.duration_s, call_id=call_id)


def _find(tools: Registry, name: str, context: ToolContext) -> Tool:
    tool = tools.get(name)
    if tool is None:
        raise _Failure("unknown_tool", f"no tool named {name!r} (available: "
                                       f"{', '.join(_allowed_names(tools, context))})")
    allowed = context.policy.allowed
    if allowed is not None and name not in allowed:
        raise _Failure("denied", f"tool {name!r} is not enabled for this conversation "
                                 f"(enabled: {', '.join(sorted(allowed)) or 'none'})")
    return tool


def _allowed_names(tools: Registry, context: ToolContext) -> list[str]:
    return [t.name for t in tools.tools(context.policy.allowed)]


def _validate(tool: Tool, raw: str) -> BaseModel:
    try:
        data = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise _Failure("invalid_arguments", f"arguments for {tool.name} are not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Failure("invalid_arguments", f"arguments for {tool.name} must be a JSON object, not "
                                            f"{type(data).__name__}")
    try:
        return tool.input_model.model_validate(data)
    except ValidationError as exc:
        raise _Failure("invalid_arguments", f"invalid arguments for {tool.name}: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(arguments)"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _authorise(tool: Tool, args: BaseModel, context: ToolContext) -> None:
    if tool.risk is not Risk.RISKY or context.policy.allow_risky:
        return
    if context.policy.confirm is None:
        raise _Failure("denied", f"{tool.name} is a risky tool: it runs only when allowed (--allow-risky) "
                                 "or confirmed by the user")
    try:
        confirmed = context.policy.confirm(tool.name, args)
    except Exception as exc:  # noqa: BLE001 - a failing prompt is a refusal, not a crash
        raise _Failure("denied", f"confirmation for {tool.name} failed: {type(exc).__name__}: {exc}") from None
    if not confirmed:
        raise _Failure("denied", f"the user declined to run {tool.name}")


def _run(tool: Tool, args: BaseModel, context: ToolContext) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = tool.run(args, context)
        except BaseException as exc:  # noqa: BLE001 - reported to the model, never raised
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(tool.timeout_s)
    if worker.is_alive():
        raise _Failure("timeout", f"{tool.name} did not finish within its {tool.timeout_s:g}s limit")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, (ToolError, QuarkError)):
            raise _Failure("error", str(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        raise _Failure("error", f"{tool.name} failed: {type(exc).__name__}: {exc}")
    value = box.get("value")
    try:
        output = value if isinstance(value, tool.output_model) else tool.output_model.model_validate(value)
    except ValidationError as exc:
        raise _Failure("error", f"{tool.name} returned output that does not match its schema: {_errors(exc)}") from None
    return output.model_dump(mode="json")


def _audit(context: ToolContext, result: ToolResult, raw: str) -> int | None:
    with context.db() as conn:
        return audit.record(conn, tool=result.tool, arguments=raw, outcome=result.outcome, result=result.content(),
                            digest=result.digest, duration_s=result.duration_s,
                            conversation_id=context.conversation_id, error=result.error)
