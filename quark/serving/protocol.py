"""OpenAI request bodies and errors: what `/v1/*` accepts, checked strictly.

Types are strict (a string is not silently an integer) so a client's mistake comes back as a 400
naming the parameter, in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
Parameters Quark does not implement are refused rather than ignored when they would change the
answer (logprobs, tools, echo, suffix, non-default penalties); `top_k` and `repetition_penalty`
are accepted as extensions, as vLLM does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    if kind in ("less_than_equal", "greater_than_equal"):  # OpenAI's words for a number out of range
        bound, got = first.get("ctx", {}).get("le", first.get("ctx", {}).get("ge")), first.get("input")
        above, number = kind == "less_than_equal", "integer" if isinstance(got, int) else "decimal"
        return APIError(400, f"Invalid '{param}': {number} {'above maximum' if above else 'below minimum'} value. "
                             f"Expected a value {'<=' if above else '>='} {bound}, but got {got} instead.",
                        param=param, code=f"{number}_{'above_max' if above else 'below_min'}_value")
    return APIError(400, f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param, code="invalid_value")


MAX_N = 128  # choices per request, as OpenAI allows


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int = Field(1, ge=1, le=MAX_N)
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
            return APIError(400, "'logprobs' is not supported by Quark.", param="logprobs", code="unsupported_parameter")
        return None


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def as_template_message(self) -> dict[str, str]:
        """Quark's chat template has no 'developer' role: it is OpenAI's new name for 'system'."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = None

    def unsupported(self) -> APIError | None:
        if self.tools:
            return APIError(400, "'tools' is not supported by this endpoint yet.", param="tools",
                            code="unsupported_parameter")
        return super().unsupported()


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
