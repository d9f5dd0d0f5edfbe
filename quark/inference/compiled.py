"""Compiled decoding: `torch.compile` of the static-shape decode step (models/llm.py `decode_step`).

The eager decode step slices the KV cache to its current length, so its shapes change every
token; the static step attends over the whole capacity with a mask and writes the new column
with `index_copy_` at a tensor index, so one graph serves every step of a batch shape. On CUDA
it is compiled with mode "reduce-overhead" (CUDA graphs: one launch per step instead of one per
kernel), the cache tensors marked as static addresses so the graphs may write them.

`--compile auto` turns it on only where it was measured faster (benchmarks/prefix_cache.py):
on this project's 2-core CPU `small` decoded 1.16× faster at batch 1 but 0.96× at batch 16, and
each new batch shape compiles for minutes first (benchmarks/RESULTS.md), so not there; no CUDA
machine has measured it yet, so auto means off everywhere until one does; `on` forces it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from quark.errors import QuarkError
from quark.models.llm import LLM, KVCache

COMPILE_MODES = ("auto", "on", "off")
MEASURED_FASTER: set[str] = set()  # device types where compiled decode was measured faster
CAPACITY_STEP = 128  # caches are allocated in multiples of this, so batches share compiled shapes


def compile_enabled(mode: str, device: torch.device) -> bool:
    """Whether `--compile MODE` compiles decoding on `device`."""
    if mode not in COMPILE_MODES:
        raise QuarkError(f"--compile must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    return mode == "on" or (mode == "auto" and device.type in MEASURED_FASTER)


class CompiledDecode:
    """The model's decode step, compiled on first use (per batch shape, by torch.compile's cache).
    `backend="eager"` traces it with dynamo but runs it uncompiled (the tests' fast check)."""

    def __init__(self, model: LLM, backend: str = "inductor") -> None:
        self.model = model
        self.device = model.norm.weight.device
        options = {"mode": "reduce-overhead"} if self.device.type == "cuda" and backend == "inductor" else {}
        self._step: Callable = torch.compile(model.decode_step, dynamic=False, backend=backend, **options)
        self._marked: set[int] = set()

    def __call__(self, idx: torch.Tensor, cache: KVCache, live: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and id(cache.key_mask) not in self._marked:
            for t in (*cache.k, *cache.v, cache.key_mask):  # CUDA graphs write these in place
                torch._dynamo.mark_static_address(t)
            self._marked = {id(cache.key_mask)}
        return self._step(idx, cache, live).clone()  # a graph's output buffer is reused by its next replay


def static_step(engine_step: Callable[[torch.Tensor, KVCache, torch.Tensor], torch.Tensor], idx: torch.Tensor,
                cache: KVCache, live: list[bool]) -> torch.Tensor:
    """Run one static-shape decode step (compiled or the model's eager `decode_step`) and advance
    the cache by one column."""
    cache.write_at = torch.tensor([cache.length], device=idx.device)
    cache.padded = cache.padded or not all(live)
    try:
        logits = engine_step(idx, cache, torch.tensor(live, device=idx.device)[:, None])
    finally:
        cache.write_at = None
    cache.length += 1
    return logits


def round_capacity(columns: int, limit: int) -> int:
    """`columns` rounded up to CAPACITY_STEP (never past the model's context `limit`)."""
    return min(limit, -(-columns // CAPACITY_STEP) * CAPACITY_STEP) if columns <= limit else columns
