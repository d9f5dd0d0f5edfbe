"""Batched generation with a KV cache: left-padded prefill, then one decode step for all rows.

Text is streamed incrementally: each step decodes a row's completion so far and emits only the
new suffix, holding back an incomplete UTF-8 character (byte-fallback pieces) and any tail that
could still become a stop string. Generation ends for a row on EOS or <|end|>, a stop string, or
max_tokens; a prompt that cannot fit the context is an error, never silently cut.

Per-step cost is kept to the model's forward: the prefill projects only the last position onto
the vocabulary, greedy rows share one argmax, and once half the rows of a batch have finished
the KV cache is compacted so finished rows stop costing compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quark.errors import QuarkError
from quark.inference.quantize import load_for_inference
from quark.inference.sampling import RowSampler, SamplingParams
from quark.modelio import load_tokenizer
from quark.models.llm import LLM, KVCache
from quark.tokenizer import Tokenizer


@dataclass
class StreamEvent:
    """New text for one row; `finish_reason` is set on its last event ("stop" or "length")."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str
    seconds: float = 0.0
    first_token_seconds: float = 0.0
    max_tokens_clamped: bool = False  # max_tokens reduced to what the context had left


@dataclass
class _Row:
    prompt: list[int]
    sampler: RowSampler
    max_tokens: int
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0  # characters of text already streamed
    finish_reason: str | None = None


class Engine:
    """A model and its tokenizer, ready to generate. Not thread-safe: one batch at a time."""

    def __init__(self, model: LLM, tokenizer: Tokenizer, name: str = "model") -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.device = model.norm.weight.device
        self.dtype = model.norm.weight.dtype  # activations' dtype: norms are never quantized
        self.stop_ids = {tokenizer.eos_id, tokenizer.end_id}

    @classmethod
    def load(cls, folder: Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
             quantize: str | None = None) -> "Engine":
        """Load a model folder; `quantize` ("int8" | "nf4") quantizes on load (see quantize.py).
        A folder saved quantized loads as it was saved."""
        folder = Path(folder)
        model = load_for_inference(folder, device=device, dtype=dtype, mode=quantize)
        return cls(model, load_tokenizer(folder), folder.name)

    @property
    def context_length(self) -> int:
        return self.model.config.max_seq_len

    def check_prompt(self, prompt: Sequence[int]) -> None:
        if not prompt:
            raise QuarkError("the prompt is empty")
        if len(prompt) >= self.context_length:
            raise QuarkError(f"the prompt is {len(prompt)} tokens but the model's context is {self.context_length} "
                             "tokens; shorten it (nothing was cut silently)")

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]) -> list[Completion]:
        """Generate for every prompt at once; returns one Completion per prompt, in order."""
        start = time.perf_counter()
        parts: list[list[int]] = [[] for _ in prompts]
        texts = ["" for _ in prompts]
        first: list[float] = [0.0 for _ in prompts]
        finish: list[str] = ["length" for _ in prompts]
        rows = self._rows(prompts, params)
        for event in self._run(rows):
            if not parts[event.index] and event.token_ids:
                first[event.index] = time.perf_counter() - start
            parts[event.index] += event.token_ids
            texts[event.index] += event.text
            if event.finish_reason:
                finish[event.index] = event.finish_reason
        elapsed = time.perf_counter() - start
        return [Completion(texts[i], rows[i].tokens, list(prompts[i]), finish[i], elapsed, first[i],
                           rows[i].max_tokens < self._requested(params, i)) for i in range(len(prompts))]

    def stream(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams], *,
               cancelled: Callable[[int], bool] | None = None) -> Iterator[StreamEvent]:
        """Yield StreamEvents as tokens are produced, for all prompts batched together.

        `cancelled(index)` is asked before each step: a row whose reader has gone away (a closed
        HTTP stream) stops there, without a final event, and stops costing compute."""
        yield from self._run(self._rows(prompts, params), cancelled)

    def complete_text(self, prompt: str, params: SamplingParams) -> Completion:
        return self.generate([[self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]], params)[0]

    def chat_prompt(self, messages: Sequence[dict]) -> list[int]:
        return self.tokenizer.encode_chat(messages, add_generation_prompt=True)

    @staticmethod
    def _requested(params: SamplingParams | Sequence[SamplingParams], i: int) -> int:
        return (params if isinstance(params, SamplingParams) else params[i]).max_tokens

    def _rows(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]) -> list[_Row]:
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("one SamplingParams per prompt")
        rows = []
        for prompt, p in zip(prompts, params):
            prompt = list(prompt)
            self.check_prompt(prompt)
            budget = min(p.max_tokens, self.context_length - len(prompt))
            rows.append(_Row(prompt, RowSampler.create(p, prompt, self.device), budget))
        return rows

    @torch.inference_mode()
    def _run(self, rows: list[_Row], cancelled: Callable[[int], bool] | None = None) -> Iterator[StreamEvent]:
        if not rows:
            return
        width = max(len(r.prompt) for r in rows)
        capacity = width + max(r.max_tokens for r in rows)
        cache = KVCache.empty(self.model.config, len(rows), capacity, self.device, self.dtype)
        idx = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):  # left padding: every row's last prompt token is in the last column
            idx[i, width - len(row.prompt):] = torch.tensor(row.prompt, device=self.device)
            mask[i, width - len(row.prompt):] = True
        logits = self._last_logits(idx, cache, None if bool(mask.all()) else mask)
        batch = list(range(len(rows)))  # the row behind each line of the cache
        while True:
            next_ids = [self.tokenizer.pad_id] * len(batch)
            live = [False] * len(batch)
            greedy: list[int] | None = None
            for line, i in enumerate(batch):
                row = rows[i]
                if row.finish_reason:
                    continue
                if cancelled is not None and cancelled(i):
                    row.finish_reason = "cancelled"
                    continue
                if row.sampler.plain_greedy:
                    greedy = greedy if greedy is not None else logits.argmax(-1).tolist()
                    token = greedy[line]
                else:
                    token = row.sampler.next_token(logits[line])
                row.sampler.observe(token)
                event = self._advance(i, row, token)
                if event is not None:
                    yield event
                if not row.finish_reason:
                    next_ids[line], live[line] = token, True
            if not any(live):
                return
            if 2 * sum(live) <= len(batch):  # half the lines are finished: drop them from the cache
                keep = [line for line, alive in enumerate(live) if alive]
                self._compact(cache, keep)
                batch, next_ids, live = [batch[k] for k in keep], [next_ids[k] for k in keep], [True] * len(keep)
            step = torch.tensor(next_ids, dtype=torch.long, device=self.device)[:, None]
            step_mask = None if all(live) else torch.tensor(live, device=self.device)[:, None]
            logits = self._last_logits(step, cache, step_mask)

    def _last_logits(self, idx: torch.Tensor, cache: KVCache, mask: torch.Tensor | None) -> torch.Tensor:
        """Float32 logits of the last position only: at prefill, projecting every prompt position
        onto the vocabulary would cost prompt-length times the lm_head for nothing."""
        hidden = self.model(idx, cache=cache, attention_mask=mask, return_hidden=True)
        return self.model.lm_head(hidden[:, -1]).float()

    @staticmethod
    def _compact(cache: KVCache, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.long, device=cache.key_mask.device)
        cache.k = [k.index_select(0, index) for k in cache.k]
        cache.v = [v.index_select(0, index) for v in cache.v]
        cache.key_mask = cache.key_mask.index_select(0, index)

    def _advance(self, index: int, row: _Row, token: int) -> StreamEvent | None:
        """Record `token` for a row and return the text it makes safe to show, if any."""
        if token in self.stop_ids:
            row.finish_reason = "stop"
            return StreamEvent(index, self._flush(row, self.tokenizer.decode(row.tokens), final=True), [], "stop")
        row.tokens.append(token)
        text = self.tokenizer.decode(row.tokens)
        for stop in row.sampler.params.stop:
            cut = text.find(stop, max(0, row.emitted - len(stop)))
            if cut != -1:
                row.finish_reason = "stop"
                new = text[row.emitted:cut] if cut > row.emitted else ""
                row.emitted = max(row.emitted, cut)
                return StreamEvent(index, new, [token], "stop")
        if len(row.tokens) >= row.max_tokens:
            row.finish_reason = "length"
            return StreamEvent(index, self._flush(row, text, final=True), [token], "length")
        return StreamEvent(index, self._flush(row, text, final=False), [token])

    @staticmethod
    def _flush(row: _Row, text: str, *, final: bool) -> str:
        """The part of `text` (the row's whole completion) not yet emitted and safe to show."""
        safe = len(text)
        if not final:
            if text.endswith("\ufffd"):  # a multi-byte character still arriving byte by byte
                safe = len(text.rstrip("\ufffd"))
            for stop in row.sampler.params.stop:  # hold back a tail that may grow into a stop string
                for k in range(min(len(stop) - 1, safe), 0, -1):
                    if text[:safe].endswith(stop[:k]):
                        safe -= k
                        break
        new = text[row.emitted:safe] if safe > row.emitted else ""
        row.emitted = max(row.emitted, safe)
        return new
