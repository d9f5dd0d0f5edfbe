"""Batched generation with a KV cache: left-padded prefill, then one decode step for all rows.

Text is streamed incrementally: each step decodes a row's completion so far and emits only the
new suffix, holding back an incomplete UTF-8 character (byte-fallback pieces) and any tail that
could still become a stop string. Generation ends for a row on EOS or <|end|>, a stop string, or
max_tokens; a prompt that cannot fit the context is an error, never silently cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quark.errors import QuarkError
from quark.inference.sampling import RowSampler, SamplingParams
from quark.modelio import load_model, load_tokenizer
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
        self.device = model.embed_tokens.weight.device
        self.stop_ids = {tokenizer.eos_id, tokenizer.end_id}

    @classmethod
    def load(cls, folder: Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
             adapter: str | None = None) -> "Engine":
        """Load a model folder; `adapter` names one of its LoRA adapters (models/<m>/adapters/<name>),
        merged into the weights on load so generation costs what the base costs."""
        folder = Path(folder)
        if adapter:
            from quark.align.lora import load_merged

            return cls(load_merged(folder, adapter, device=device, dtype=dtype), load_tokenizer(folder),
                       f"{folder.name}+{adapter}")
        return cls(load_model(folder, device=device, dtype=dtype), load_tokenizer(folder), folder.name)

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

    def stream(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]) -> Iterator[StreamEvent]:
        """Yield StreamEvents as tokens are produced, for all prompts batched together."""
        yield from self._run(self._rows(prompts, params))

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
    def _run(self, rows: list[_Row]) -> Iterator[StreamEvent]:
        if not rows:
            return
        width = max(len(r.prompt) for r in rows)
        capacity = width + max(r.max_tokens for r in rows)
        dtype = self.model.embed_tokens.weight.dtype
        cache = KVCache.empty(self.model.config, len(rows), capacity, self.device,
                              dtype if dtype.is_floating_point else torch.float32)
        idx = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):  # left padding: every row's last prompt token is in the last column
            idx[i, width - len(row.prompt):] = torch.tensor(row.prompt, device=self.device)
            mask[i, width - len(row.prompt):] = True
        padded = not bool(mask.all())
        logits = self.model(idx, cache=cache, attention_mask=mask if padded else None)[:, -1].float()
        active = list(range(len(rows)))
        while active:
            next_ids = torch.full((len(rows), 1), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
            step_mask = torch.zeros(len(rows), 1, dtype=torch.bool, device=self.device)
            for i in list(active):
                row = rows[i]
                token = row.sampler.next_token(logits[i])
                row.sampler.observe(token)
                event = self._advance(i, row, token)
                if event is not None:
                    yield event
                if row.finish_reason:
                    active.remove(i)
                else:
                    next_ids[i, 0], step_mask[i, 0] = token, True
            if not active:
                break
            all_live = bool(step_mask.all()) and not padded
            logits = self.model(next_ids, cache=cache, attention_mask=None if all_live else step_mask)[:, -1].float()
            padded = padded or not all_live

    def _advance(self, index: int, row: _Row, token: int) -> StreamEvent | None:
        """Record `token` for a row and return the text it makes safe to show, if any."""
        if token in self.stop_ids:
            row.finish_reason = "stop"
            return StreamEvent(index, self._flush(row, final=True), [], "stop")
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
            return StreamEvent(index, self._flush(row, final=True), [token], "length")
        return StreamEvent(index, self._flush(row, final=False), [token])

    def _flush(self, row: _Row, *, final: bool) -> str:
        text = self.tokenizer.decode(row.tokens)
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
