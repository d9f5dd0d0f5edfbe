"""Perplexity of a model on a token stream, over windows no longer than the model's context.

Exactly what is computed: the stream t_0 … t_{N-1} has N-1 targets t_1 … t_{N-1} (t_0 has no
context). Targets are cut into consecutive spans: the first of `window` targets, each next of
`stride` targets. A span of targets [lo, hi) is scored by one forward pass over the inputs
t_{max(0, hi-1-window)} … t_{hi-2}, keeping only the losses of targets lo … hi-1. So every target is
scored exactly once, with the longest context a window ending at its span allows. With
stride == window (the default) the windows do not overlap, except the last, shorter span, which
reads a whole window of context; with a smaller stride every target after the first window sees at
least window - stride tokens of context.

perplexity = exp(total negative log-likelihood / number of targets), in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from quark.errors import QuarkError
from quark.models.llm import LLM


@dataclass(frozen=True)
class Span:
    start: int  # first input index
    lo: int     # first scored target index
    hi: int     # one past the last target index


def spans(n_tokens: int, window: int, stride: int) -> Iterator[Span]:
    """The forward passes that score targets 1 … n_tokens-1 once each (see the module docstring)."""
    if not 1 <= stride <= window:
        raise QuarkError(f"stride must be between 1 and the window ({window}), got {stride}")
    lo, hi = 1, min(1 + window, n_tokens)
    while lo < n_tokens:
        yield Span(start=max(0, hi - 1 - window), lo=lo, hi=hi)
        lo, hi = hi, min(hi + stride, n_tokens)


@torch.no_grad()
def perplexity(model: LLM, tokens: np.ndarray | list[int], *, window: int | None = None, stride: int | None = None,
               batch_size: int = 8, max_tokens: int | None = None,
               on_progress: Callable[[int], None] | None = None) -> dict:
    """Windowed perplexity of `model` on `tokens` (see the module docstring for the exact windows).

    `window` defaults to the model's context; `stride` to the window (non-overlapping). Windows of
    equal shape are batched. `on_progress(targets_scored)` is called after each batch.
    """
    for name, value in (("window", window), ("stride", stride), ("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None and value < 1:  # 0 is refused, never read as "the default"
            raise QuarkError(f"{name} must be at least 1, got {value}")
    ids = np.asarray(tokens[: max_tokens] if max_tokens is not None else tokens, dtype=np.int64)
    if len(ids) < 2:
        raise QuarkError(f"perplexity needs at least 2 tokens, got {len(ids)}")
    vocab = model.config.vocab_size
    if ids.min() < 0 or ids.max() >= vocab:
        raise QuarkError(f"token id {int(ids.max())} out of range for a model with a {vocab}-token vocabulary "
                         "(was this data encoded with another tokenizer?)")
    window = model.config.max_seq_len if window is None else window
    if not 1 <= window <= model.config.max_seq_len:
        raise QuarkError(f"window must be between 1 and the model's context ({model.config.max_seq_len}), got {window}")
    stride = window if stride is None else stride
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, total_targets = 0.0, 0
    pending: list[Span] = []

    def flush() -> None:
        nonlocal total_nll, total_targets
        starts = torch.tensor([s.start for s in pending])
        length = pending[0].hi - 1 - pending[0].start
        index = starts[:, None] + torch.arange(length + 1)[None]
        batch = torch.from_numpy(ids)[index].to(device)
        logits = model(batch[:, :-1]).float()
        nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        keep = pending[0].hi - pending[0].lo
        total_nll += nll[:, -keep:].sum().item()
        total_targets += keep * len(pending)
        pending.clear()
        if on_progress:
            on_progress(total_targets)

    try:
        for span in spans(len(ids), window, stride):
            shape = (span.hi - 1 - span.start, span.hi - span.lo)
            if pending and ((pending[0].hi - 1 - pending[0].start, pending[0].hi - pending[0].lo) != shape
                            or len(pending) == batch_size):
                flush()
            pending.append(span)
        flush()
    finally:
        model.train(was_training)
    loss = total_nll / total_targets
    return {"perplexity": math.exp(loss), "loss": loss, "tokens": total_targets, "window": window, "stride": stride}
