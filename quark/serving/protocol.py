"""OpenAI request bodies and errors: what `/v1/*` accepts, checked strictly.

Types are strict (a string is not silently an integer) so a client's mistake comes back as a 400
naming the parameter, in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
Parameters Quark does not implement are refused rather than ignored when they would change the
answer (logprobs, echo, suffix, non-default penalties); `top_k` and `repetition_penalty` are
accepted as extensions, as vLLM does. `tools`/`tool_choice` and `response_format` become a grammar
(`ChatCompletionRequest.grammar`) that constrains every choice, so a tool call or a JSON answer
always parses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quark.errors import QuarkError
from quark.inference.grammar import Grammar, GrammarCompiler, json_schema_grammar, tool_call_grammar


class APIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """Turn FastAPI/pydantic validation errors into one OpenAI-shaped 400 about the first problem."""
    first = errors[0]
    kind = first.get("type", "")
    loc = [part for part in first.get("loc", ()) if part != "body"]
    param = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc)) or None
    if kind == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: it is not valid JSON.")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind.endswith(("_type", "_parsing")) or kind in {"model_attributes_type", "dict_type"}:
        return APIError(400, f"Invalid type for '{param}': {first.get('msg', 'wrong type')}.", param=param,
                        code="invalid_type")
    return APIError(400, f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param,
                    code="invalid_value")


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = Field(None, validate_default=True)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: Any = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def unsupported(self) -> APIError | None:
        if self.presence_penalty or self.frequency_penalty:
            name = "presence_penalty" if self.presence_penalty else "frequency_penalty"
            return APIError(400, f"'{name}' is not supported by Quark; use 'repetition_penalty'.", param=name,
                            code="unsupported_parameter")
        if self.logprobs not in (None, False):
            return APIError(400, "'logprobs' is not supported by Quark.", param="logprobs",
                            code="unsupported_parameter")
        return None


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["text"]
    text: str


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class CalledFunction(_Strict):
    name: str
    arguments: str


class MessageToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers

    def as_template_message(self) -> dict[str, Any]:
        """Quark's chat template has no 'developer' role: it is OpenAI's new name for 'system'."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": text}
        if self.role == "assistant" and self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        return message


_FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(_Strict):
    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class JSONSchemaFormat(_Strict):
    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None

    @property
    def calls_tools(self) -> bool:
        """Whether the model is offered tools (and told of them in its prompt)."""
        return bool(self.tools) and self.tool_choice != "none"

    def openai_tools(self) -> list[dict[str, Any]]:
        return [tool.model_dump(exclude_none=True) for tool in self.tools or []]

    def grammar(self, compiler: GrammarCompiler) -> Grammar | None:
        """The grammar every choice is generated under (None: free text), compiled now so a bad
        schema is a 400 naming it."""
        if self.tool_choice is not None and not self.tools:
            raise APIError(400, "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice",
                           code="invalid_value")
        reply = self._reply_schema()  # (schema, strict, param) or None
        if not self.calls_tools:
            return None if reply is None else _compile(compiler, reply[2], json_schema_grammar, reply[0],
                                                       strict=reply[1])
        for i, tool in enumerate(self.tools):
            _compile(compiler, f"tools[{i}].function.parameters", json_schema_grammar,
                     tool.function.parameters or {"type": "object"}, strict=bool(tool.function.strict))
        named = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None
        if named is not None and named not in {tool.function.name for tool in self.tools}:
            raise APIError(400, f"Invalid value for 'tool_choice': no function named '{named}' in 'tools'.",
                           param="tool_choice", code="invalid_value")
        return _compile(compiler, "tools", tool_call_grammar, self.openai_tools(),
                        required=self.tool_choice == "required" or named is not None, name=named,
                        parallel=self.parallel_tool_calls, reply_schema=reply and reply[0],
                        reply_strict=reply is None or reply[1])

    def _reply_schema(self) -> tuple[dict[str, Any], bool, str] | None:
        """response_format as (schema, strict, the parameter to blame); None for free text."""
        form = self.response_format
        if form is None or form.type == "text":
            return None
        if form.type == "json_object":
            return {"type": "object"}, True, "response_format"
        param = "response_format.json_schema.schema"
        if form.json_schema is None or form.json_schema.schema_ is None:
            raise APIError(400, f"Missing required parameter: '{param}'.", param=param,
                           code="missing_required_parameter")
        return form.json_schema.schema_, bool(form.json_schema.strict), param


def _compile(compiler: GrammarCompiler, param: str, build: Callable[..., Grammar], *args: Any,
             **kwargs: Any) -> Grammar:
    """`build(*args, **kwargs)` compiled for the tokenizer; a bad schema becomes a 400 about `param`."""
    try:
        grammar = build(*args, **kwargs)
        compiler.check(grammar)
    except QuarkError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise APIError(400, f"Invalid schema for '{param}': {detail}", param=param, code="invalid_schema") from None
    return grammar


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def unsupported(self) -> APIError | None:
        for name in ("echo", "suffix"):
            if getattr(self, name):
                return APIError(400, f"'{name}' is not supported by Quark.", param=name, code="unsupported_parameter")
        if self.best_of not in (None, 1):
            return APIError(400, "'best_of' is not supported by Quark.", param="best_of", code="unsupported_parameter")
        return super().unsupported()


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


_Request.model_rebuild()
ChatCompletionRequest.model_rebuild()
CompletionRequest.model_rebuild()
