"""Loading a model folder, full precision or int8, whichever config.json records; and giving an
LLM with an extra head (reward, reranker, embedding) the weights of a loaded LLM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from quark.modelfolder.folder import load_full_precision, saved_quantization
from quark.modelfolder.quantized import load_quantized
from quark.models.llm import LLM, rope_tables

Headed = TypeVar("Headed", bound=LLM)


def load_model(folder: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LLM:
    """The LLM of a model folder with its weights loaded and checked against config.json; a folder
    saved quantized comes back quantized as saved."""
    if saved_quantization(folder):
        return load_quantized(folder, device=device, dtype=dtype)
    return load_full_precision(folder, device=device, dtype=dtype)


def assemble_with_head(make: Callable[[], Headed], llm: LLM, head: dict[str, torch.Tensor], prefix: str) -> Headed:
    """`make()` built on the meta device, then given `llm`'s weights and the head's (stored under
    `prefix`) without a copy. The LM head is tied to the embeddings or frozen: a headed model
    trains its trunk and its head, never next-token logits it does not use."""
    with torch.device("meta"):
        model = make()
    model.load_state_dict({**llm.state_dict(), **{f"{prefix}{k}": v for k, v in head.items()}}, assign=True)
    if llm.config.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    else:
        model.lm_head.requires_grad_(False)
    model.rope_cos, model.rope_sin = rope_tables(llm.config, llm.rope_cos.device)
    return model
