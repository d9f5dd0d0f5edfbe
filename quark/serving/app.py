"""The OpenAI-compatible HTTP API over one Engine: chat, completions, embeddings, models (and
image models beside it, quark.serving.images; text to 3D with it, quark.serving.meshes). An
engine holding adapters side by side answers to `NAME`, `NAME:ADAPTER` and `NAME:auto`
(quark.serving.models); each request's rows carry its adapter into the shared batch.

Handlers validate and tokenize on the event loop, then hand rows to the Batcher, whose worker
thread runs the model; streamed answers are Server-Sent Events in OpenAI's chunk format ending
with `data: [DONE]`. Every error leaves as {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from quark.errors import QuarkError
from quark.inference import Engine, Grammar, SamplingParams, StreamEvent
from quark.inference.sampling import sampling_params
from quark.inference.tool_calls import ToolCallReader, read_tool_calls, starts_tool_call
from quark.modelfolder import DEFAULT_GENERATION
from quark.retrieval.embedding import embed_texts, output_dim, truncate_dimensions
from quark.serving.batcher import FINISHED, Batcher, Job
from quark.serving.keys import Caller, KeyStore, RateLimiter
from quark.serving.metrics import Metrics, MetricsMiddleware
from quark.serving.models import ServedModels, Target, route_headers
from quark.serving.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    _Request,
    validation_error,
)
from quark.tokenizer.chat_template import with_tools_prompt

if TYPE_CHECKING:
    from quark.agent.routing import AdapterRouter, Route

# The caller authorize() let in, for the request's own task and the tasks it starts (a stream):
# generated tokens are charged to its tokens-per-minute limit without threading it through routes.
_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("quark_caller", default=None)

if TYPE_CHECKING:
    from quark.serving.images import ImageService
    from quark.serving.meshes import MeshService


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


class Service:
    """What the routes share: the engine, its batcher, keys, limits and metrics."""

    def __init__(self, engine: Engine, *, keys: KeyStore | None, defaults: dict[str, Any], max_batch: int,
                 gather_seconds: float, require_key: bool = False, images: ImageService | None = None,
                 router: AdapterRouter | None = None, meshes: MeshService | None = None) -> None:
        self.engine, self.keys, self.defaults = engine, keys, {**DEFAULT_GENERATION, **defaults}
        self.models = ServedModels(engine.name, engine.adapters, router)
        self.require_key = require_key
        self.images, self.meshes = images, meshes
        self.metrics = Metrics(engine.prefix_cache)
        self.batcher = Batcher(engine, max_batch=max_batch, gather_seconds=gather_seconds,
                               stats=self.metrics.batch_stats())
        self.limiter = RateLimiter()
        self.created = int(time.time())
        self.embedding_head = None  # set by create_app when the model folder has one

    # -- requests ---------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Caller | None:
        """Bearer-key check and per-key rate limits. Open only on a loopback server whose home
        needs no key (quark.serving.keys); `require_key` (a public bind) never lets a keyless
        request through, even when no key is configured at all."""
        if not self.require_key and (self.keys is None or not self.keys.required()):
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        caller = self.keys.lookup(token) if token and self.keys is not None else None
        if caller is None:
            message = ("Incorrect API key provided." if token else
                       "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.")
            raise APIError(401, message, code="invalid_api_key")
        limited = self.limiter.check(caller)
        if limited is not None:
            kind, wait = limited
            limit = f"{caller.rate_limit} requests" if kind == "requests" else f"{caller.token_limit} tokens"
            raise APIError(429, f"Rate limit reached for key '{caller.name}': {limit} per minute. "
                                f"Try again in {wait:.1f}s.", type=kind, code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        _caller.set(caller)
        return caller

    def check_model(self, name: str) -> Target:
        if self.images is not None and name in self.images:
            raise APIError(400, f"'{name}' is an image model: send it to /v1/images/generations.", param="model",
                           code="model_not_supported")
        return self.models.resolve(name)

    async def route(self, target: Target, texts: list[str]) -> list[Route] | None:
        """Each text's route for a `NAME:auto` request (None for any other): the router reads the
        engine's model, so it runs between engine steps like embeddings do."""
        if not target.auto:
            return None
        return await run_in_threadpool(self.batcher.run_exclusive, lambda: self.models.router.route_many(texts))

    @staticmethod
    def adapters(target: Target, routes: list[Route] | None, rows: int, per_text: int = 1) -> list[str | None]:
        """One adapter per row: the target's, or each text's route repeated for its `per_text` rows."""
        if routes is None:
            return [target.adapter] * rows
        return [route.adapter for route in routes for _ in range(per_text)]

    def check_prompt(self, prompt: Sequence[int], param: str) -> None:
        limit = self.engine.context_length
        if len(prompt) >= limit:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, your {param} "
                                f"resulted in {len(prompt)} tokens. Please reduce the length of the {param}.",
                           param=param, code="context_length_exceeded")

    def sampling(self, request: _Request, prompt_len: int, requested: int | None, param: str,
                 grammar: Grammar | None = None) -> list[SamplingParams]:
        """One SamplingParams per choice; the model's generation_config fills what the request omits."""
        limit = self.engine.context_length
        room = limit - prompt_len
        if requested is not None and requested > room:
            raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{prompt_len + requested} tokens ({prompt_len} in the {param}, {requested} in the "
                                "completion). Please reduce the length of the messages or completion.",
                           param="max_tokens", code="context_length_exceeded")
        # With a seed, choice j uses seed + j: n identical answers would defeat the point of n.
        return [sampling_params(self.defaults, max_tokens=requested or None, temperature=request.temperature,
                                top_k=request.top_k, top_p=request.top_p,
                                repetition_penalty=request.repetition_penalty or None, stop=request.stop,
                                seed=None if request.seed is None else request.seed + j, room=room,
                                grammar=grammar)
                for j in range(request.n)]

    def submit(self, rows: list[list[int]], params: list[SamplingParams],
               adapters: list[str | None]) -> list[tuple[Job, int]]:
        """Queue rows (each with its adapter) as jobs of at most one batch each; returns (job,
        index of its first row)."""
        size = self.batcher.max_batch
        self.metrics.prompt_tokens.inc(sum(len(r) for r in rows))
        return [(self.batcher.submit(rows[i:i + size], params[i:i + size], adapters[i:i + size]), i)
                for i in range(0, len(rows), size)]

    async def events(self, jobs: list[tuple[Job, int]]) -> AsyncIterator[StreamEvent]:
        """Every row's events with request-wide indices. Leaving early (a closed stream) cancels
        the jobs, so the engine stops spending steps on them, and is counted. Generated tokens
        are charged to the caller's tokens-per-minute limit as they arrive."""
        caller = _caller.get()
        self.metrics.in_flight.inc()
        try:
            for job, offset in jobs:
                first = True
                while (item := await job.events.get()) is not FINISHED:
                    if isinstance(item, BaseException):
                        raise APIError(500, f"generation failed: {type(item).__name__}: {item}", type="server_error")
                    if first and item.token_ids:
                        self.metrics.first_token.observe(time.perf_counter() - job.submitted_at)
                        first = False
                    self.metrics.completion_tokens.inc(len(item.token_ids))
                    self.limiter.spend(caller, len(item.token_ids))
                    yield StreamEvent(item.index + offset, item.text, item.token_ids, item.finish_reason)
        except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-answer
            self.metrics.cancelled.inc()
            raise
        finally:
            self.metrics.in_flight.dec()
            for job, _ in jobs:
                job.cancelled = True

    async def collect(self, jobs: list[tuple[Job, int]], rows: int) -> tuple[list[str], list[str], list[list[int]]]:
        """Each row's text, finish reason and token ids."""
        texts, reasons, ids = [""] * rows, ["length"] * rows, [[] for _ in range(rows)]
        async for event in self.events(jobs):
            texts[event.index] += event.text
            ids[event.index] += event.token_ids
            if event.finish_reason:
                reasons[event.index] = event.finish_reason
        return texts, reasons, ids



def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _routes(service: Service) -> APIRouter:
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(service.authorize)])
    engine = service.engine

    image_cards = {card["id"]: card for card in service.images.model_cards()} if service.images else {}

    @v1.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [*service.models.cards(service.created), *image_cards.values()]}

    @v1.get("/models/{model_id}")
    async def get_model(model_id: str) -> dict:
        if model_id in image_cards:
            return image_cards[model_id]
        target = service.check_model(model_id)
        return next(card for card in service.models.cards(service.created) if card["id"] == target.id)

    @v1.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        target = service.check_model(body.model)
        if (problem := body.unsupported()) is not None:
            raise problem
        grammar = await run_in_threadpool(body.grammar, engine.grammars)  # a bad schema: a 400 before any work
        messages = [m.as_template_message() for m in body.messages]
        if body.calls_tools:
            messages = with_tools_prompt(messages, body.openai_tools())
        try:
            prompt = engine.chat_prompt(messages)
        except QuarkError as exc:
            raise APIError(400, f"Invalid 'messages': {exc}.", param="messages", code="invalid_value") from None
        service.check_prompt(prompt, "messages")
        params = service.sampling(body, len(prompt), body.max_completion_tokens or body.max_tokens, "messages",
                                  grammar)
        users = [m["content"] for m in messages if m["role"] == "user"]
        routes = await service.route(target, [users[-1] if users else messages[-1]["content"]])
        jobs = service.submit([prompt] * body.n, params, service.adapters(target, routes, body.n, body.n))
        rid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), service.models.answered_by(
            target, routes)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _stream(_chat_chunks(service, jobs, rid, created, model, body.n, len(prompt), include_usage,
                                        body.calls_tools), route_headers(routes))
        texts, reasons, ids = await service.collect(jobs, body.n)
        choices = [{"index": i, **_chat_choice(engine, texts[i], ids[i], reasons[i], body.calls_tools),
                    "logprobs": None}
                   for i in range(body.n)]
        return JSONResponse({"id": rid, "object": "chat.completion", "created": created, "model": model,
                             "system_fingerprint": None, "choices": choices,
                             "usage": _usage(len(prompt), sum(map(len, ids)))}, headers=route_headers(routes))

    @v1.post("/completions")
    async def completions(body: CompletionRequest):
        target = service.check_model(body.model)
        if (problem := body.unsupported()) is not None:
            raise problem
        prompts = _completion_prompts(engine, body.prompt)
        for prompt in prompts:
            service.check_prompt(prompt, "prompt")
        rows, params = [], []
        for prompt in prompts:
            rows += [prompt] * body.n
            params += service.sampling(body, len(prompt), body.max_tokens, "prompt")
        routes = await service.route(target, [engine.tokenizer.decode(p) for p in prompts])  # each prompt its own
        jobs = service.submit(rows, params, service.adapters(target, routes, len(rows), body.n))
        rid, created, model = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), service.models.answered_by(
            target, routes)
        prompt_tokens = sum(len(p) for p in prompts)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _stream(_completion_chunks(service, jobs, rid, created, model, prompt_tokens, include_usage),
                           route_headers(routes))
        texts, reasons, ids = await service.collect(jobs, len(rows))
        return JSONResponse({"id": rid, "object": "text_completion", "created": created, "model": model,
                             "system_fingerprint": None,
                             "choices": [{"index": i, "text": texts[i], "logprobs": None, "finish_reason": reasons[i]}
                                         for i in range(len(rows))],
                             "usage": _usage(prompt_tokens, sum(map(len, ids)))}, headers=route_headers(routes))

    @v1.post("/embeddings")
    async def embeddings(body: EmbeddingRequest):
        target = service.check_model(body.model)
        if target.auto:
            raise APIError(400, f"'{target.id}' routes chat and completion requests; embed with "
                                f"'{service.models.name}' or one of its adapters.", param="model",
                           code="model_not_supported")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise APIError(400, "'input' must not be an empty list.", param="input", code="invalid_value")
        head = service.embedding_head  # the trained contrastive head, when the model folder has one
        width = output_dim(engine.model, head)
        if body.dimensions is not None and body.dimensions > width:
            raise APIError(400, f"This model's embeddings have {width} dimensions; 'dimensions' must be at most that.",
                           param="dimensions", code="invalid_value")
        def embed() -> np.ndarray:
            with torch.inference_mode(), engine.selecting([engine.adapter_slot(target.adapter)]):  # every row
                return embed_texts(engine.model, engine.tokenizer, texts, head=head)

        vectors = await run_in_threadpool(service.batcher.run_exclusive, embed)
        vectors = truncate_dimensions(vectors, body.dimensions)  # OpenAI's `dimensions`: cut, then renormalise
        tokens = sum(min(len(engine.tokenizer.encode(t)), engine.context_length) for t in texts)
        service.metrics.prompt_tokens.inc(tokens)

        def encode(vector: np.ndarray) -> list[float] | str:
            if body.encoding_format == "base64":
                return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            return vector.tolist()

        return {"object": "list", "model": target.id, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]}

    if service.images is not None:
        from quark.serving.images import image_routes  # diffusers loads only for a server with image models

        v1.include_router(image_routes(service.images))
    if service.meshes is not None:
        from quark.serving.meshes import mesh_routes

        v1.include_router(mesh_routes(service.meshes, service.batcher.run_exclusive))
    return v1


def _chat_choice(engine: Engine, text: str, token_ids: list[int], reason: str, tools: bool) -> dict[str, Any]:
    """A chat choice's message and finish reason: when tools were offered, a complete tool-call
    reply becomes `tool_calls`."""
    if tools and starts_tool_call(engine.tokenizer, token_ids) and (calls := read_tool_calls(text)) is not None:
        return {"message": {"role": "assistant", "content": None, "tool_calls": [c.as_openai() for c in calls]},
                "finish_reason": "tool_calls"}
    return {"message": {"role": "assistant", "content": text}, "finish_reason": reason}


def _completion_prompts(engine: Engine, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    """Text prompts get BOS and are encoded; token-id prompts are used as given, after a range check."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "'prompt' must not be empty.", param="prompt", code="invalid_value")
    if isinstance(prompt[0], int):
        prompt = [prompt]
    if isinstance(prompt[0], str):
        return [[engine.tokenizer.bos_id, *engine.tokenizer.encode(text)] for text in prompt]
    vocab = engine.model.config.vocab_size
    for ids in prompt:
        if not ids or any(not 0 <= i < vocab for i in ids):
            raise APIError(400, f"token-id prompts must be non-empty with ids in [0, {vocab}).", param="prompt",
                           code="invalid_value")
    return [list(ids) for ids in prompt]


def _stream(chunks: AsyncIterator[str], headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})


def _chunker(kind: str, model: str, rid: str, created: int, include_usage: bool) -> Callable[..., str]:
    """One SSE chunk of a stream of `kind` ("chat.completion.chunk" or "text_completion")."""
    def chunk(choices: list[dict], usage: dict | None = None) -> str:
        body = {"id": rid, "object": kind, "created": created, "model": model,
                "system_fingerprint": None, "choices": choices}
        if include_usage:
            body["usage"] = usage
        return _sse(body)

    return chunk


async def _chat_chunks(service: Service, jobs, rid: str, created: int, model: str, n: int, prompt_tokens: int,
                       include_usage: bool, tools: bool) -> AsyncIterator[str]:
    chunk = _chunker("chat.completion.chunk", model, rid, created, include_usage)

    def choice(index: int, delta: dict, finish: str | None = None) -> dict:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    yield chunk([choice(i, {"role": "assistant", "content": ""}) for i in range(n)])
    calls: dict[int, ToolCallReader] = {}  # rows whose reply is a tool call, read as it streams
    seen = [0] * n  # tokens so far per row: a tool call is told by its first
    try:
        async for event in service.events(jobs):
            if tools and not seen[event.index] and starts_tool_call(service.engine.tokenizer, event.token_ids):
                calls[event.index] = ToolCallReader()
            seen[event.index] += len(event.token_ids)
            reader = calls.get(event.index)
            if reader is not None:
                if deltas := reader.feed(event.text):
                    yield chunk([choice(event.index, {"tool_calls": deltas})])
            elif event.text:
                yield chunk([choice(event.index, {"content": event.text})])
            if event.finish_reason:
                finish = "tool_calls" if reader is not None and reader.complete else event.finish_reason
                yield chunk([choice(event.index, {}, finish)])
    except APIError as exc:
        yield _sse(exc.body())
    if include_usage:
        yield chunk([], _usage(prompt_tokens, sum(seen)))
    yield _sse("[DONE]")


async def _completion_chunks(service: Service, jobs, rid: str, created: int, model: str, prompt_tokens: int,
                             include_usage: bool) -> AsyncIterator[str]:
    chunk = _chunker("text_completion", model, rid, created, include_usage)

    tokens = 0
    try:
        async for event in service.events(jobs):
            tokens += len(event.token_ids)
            if event.text or event.finish_reason:
                yield chunk([{"index": event.index, "text": event.text, "logprobs": None,
                              "finish_reason": event.finish_reason}])
    except APIError as exc:
        yield _sse(exc.body())
    if include_usage:
        yield chunk([], _usage(prompt_tokens, tokens))
    yield _sse("[DONE]")


def create_app(engine: Engine, *, keys: KeyStore | None = None, defaults: dict[str, Any] | None = None,
               max_batch: int = 16, gather_seconds: float = 0.01, require_key: bool = False,
               embedding_head=None, images: ImageService | None = None, router: AdapterRouter | None = None,
               meshes: MeshService | None = None) -> FastAPI:
    """The FastAPI app serving `engine` (under its name). `keys`: require and rate-limit API keys
    as the home says (quark.serving.keys); `require_key`: always require one (a server bound
    beyond loopback); `defaults`: the model's generation_config.json; `embedding_head`: the model's
    trained embedding head (quark.retrieval.embedding.load_head), which /v1/embeddings then uses;
    `images`: image models served beside it at /v1/images/generations (quark.serving.images);
    `router`: what `NAME:auto` routes with (quark.agent.routing; without one it is the base);
    `meshes`: text to 3D at /v1/meshes with the served model and its mesh adapters (quark.serving.meshes)."""
    service = Service(engine, keys=keys, defaults=defaults or {}, max_batch=max_batch, gather_seconds=gather_seconds,
                      require_key=require_key, images=images, router=router, meshes=meshes)
    service.embedding_head = embedding_head

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            service.batcher.stop()
            if keys is not None:
                keys.close()

    app = FastAPI(title="Quark", summary=f"OpenAI-compatible API serving {engine.name}", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(list(exc.errors()))
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = APIError(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", code=code)
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        error = APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": engine.name}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    app.include_router(_routes(service))
    return app
