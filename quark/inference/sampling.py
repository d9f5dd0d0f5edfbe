"""Sampling parameters and the logits → next-token step, row by row so each request keeps its own
settings and its own seeded generator (the same seed gives the same text whatever it is batched with)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from quark.errors import QuarkError
from quark.inference.grammar import Grammar


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.8  # 0 is greedy
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # CTRL-style; 1.0 is off
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: Grammar | None = None  # constrain the output (inference/grammar.py); it ends when complete

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop or ())
        checks = [(self.max_tokens >= 1, "max_tokens must be at least 1"),
                  (self.temperature >= 0, "temperature must be >= 0"),
                  (self.top_k >= 0, "top_k must be >= 0"),
                  (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
                  (self.repetition_penalty > 0, "repetition_penalty must be > 0")]
        for ok, message in checks:
            if not ok:
                raise QuarkError(message)


def sampling_params(defaults: Mapping[str, Any], *, max_tokens: int | None = None, temperature: float | None = None,
                    top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
                    stop: Sequence[str] = (), seed: int | None = None, room: int | None = None,
                    grammar: Grammar | None = None) -> SamplingParams:
    """A request's settings over a model's defaults: each override that is None takes the default.

    `defaults` is a generation_config.json (max_new_tokens, temperature, top_k, top_p, and
    optionally repetition_penalty and seed), or a chat config in the same shape. `room`, the
    context the prompt leaves, caps the *default* length; an explicit max_tokens is the caller's
    to check (serve refuses one that does not fit; the engine clamps it otherwise)."""
    default_max = int(defaults["max_new_tokens"])
    return SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else (min(default_max,
                                                                  room) if room is not None else default_max),
        temperature=float(defaults["temperature"]) if temperature is None else temperature,
        top_k=int(defaults.get("top_k", 0)) if top_k is None else top_k,
        top_p=float(defaults.get("top_p", 1.0)) if top_p is None else top_p,
        repetition_penalty=float(defaults.get("repetition_penalty", 1.0)) if repetition_penalty is None
        else repetition_penalty,
        stop=tuple(stop or ()), seed=defaults.get("seed") if seed is None else seed, grammar=grammar)


@dataclass
class RowSampler:
    """Sampling state of one sequence: its parameters, generator, and the ids it has seen."""

    params: SamplingParams
    seen: torch.Tensor  # (n,) ids of prompt + completion, for the repetition penalty
    generator: torch.Generator | None = field(default=None)

    @classmethod
    def create(cls, params: SamplingParams, prompt: list[int], device: torch.device) -> RowSampler:
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(params.seed if params.seed is not None else torch.seed())
        return cls(params, torch.tensor(prompt, dtype=torch.long, device=device), generator)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with nothing to adjust: the engine takes one argmax over the whole batch."""
        return self.params.temperature == 0 and self.params.repetition_penalty == 1.0

    def next_token(self, logits: torch.Tensor) -> int:
        """logits: (vocab,) float32 for this row's last position."""
        p = self.params
        if p.repetition_penalty != 1.0 and len(self.seen):
            previous = logits[self.seen]
            logits = logits.clone()
            logits[self.seen] = torch.where(previous > 0, previous / p.repetition_penalty,
                                            previous * p.repetition_penalty)
        if p.temperature == 0:
            return int(logits.argmax())
        logits = logits / p.temperature
        if p.top_k:
            kth = torch.topk(logits, min(p.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop = cumulative - sorted_logits.softmax(-1) > p.top_p  # keep the token that crosses top_p
            logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
        return int(torch.multinomial(logits.softmax(-1), 1, generator=self.generator))

    def observe(self, token: int) -> None:
        if self.params.repetition_penalty != 1.0:
            self.seen = torch.cat([self.seen, self.seen.new_tensor([token])])
