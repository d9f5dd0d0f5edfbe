"""Text embeddings from a Quark model: the one place that embeds (memory, the document index and
/v1/embeddings all call `embed_texts`).

Without a head: mean-pooled final hidden states, L2-normalised. With a trained contrastive head
(`embedding_head.safetensors` in the model folder, written by `quark finetune embed`): the same
pooled states through the head's projection, of the head's width. The router's features
(`embed_layers`) are every layer's pooled states side by side, from the same one forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from quark.errors import QuarkError
from quark.modelfolder import load_state
from quark.models.embedding_head import EmbeddingHead, mean_pool
from quark.models.llm import LLM
from quark.tokenizer import Tokenizer

HEAD_FILE = "embedding_head.safetensors"


def pad_texts(tokenizer: Tokenizer, texts: Sequence[str], limit: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the mask of real tokens; a text longer than `limit` keeps its start."""
    rows = [tokenizer.encode(t)[:limit] or [tokenizer.bos_id] for t in texts]
    width = max(len(ids) for ids in rows)
    idx = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for row, ids in enumerate(rows):
        idx[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = True
    return idx.to(device), mask.to(device)


def load_head(folder: Path, n_embd: int, *, device: str | torch.device = "cpu") -> EmbeddingHead | None:
    """The model folder's embedding head, or None when it has none."""
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        return None
    state = load_state(path)
    weight = state.get("proj.weight")
    if weight is None or weight.ndim != 2 or weight.shape[1] != n_embd or "log_scale" not in state:
        raise QuarkError(f"{path}: not an embedding head for a model of width {n_embd}")
    head = EmbeddingHead(n_embd, weight.shape[0])
    head.load_state_dict(state)
    return head.to(device).eval()


def output_dim(model: LLM, head: EmbeddingHead | None = None) -> int:
    return head.dim if head is not None else model.config.n_embd


@torch.inference_mode()
def embed_texts(model: LLM, tokenizer: Tokenizer, texts: Sequence[str], *, head: EmbeddingHead | None = None,
                batch_size: int = 32) -> np.ndarray:
    """(len(texts), dim) float32, unit norm. Texts longer than the context keep their start.

    Texts are sorted by length before batching, so a batch pads to similar lengths."""

    def pool(idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = model(idx, return_hidden=True)  # right padding: causal attention never sees it
        return head(hidden, mask) if head is not None else torch.nn.functional.normalize(
            mean_pool(hidden.float(), mask), dim=-1)

    return _batched(model, tokenizer, texts, output_dim(model, head), pool, batch_size)


@torch.inference_mode()
def embed_layers(model: LLM, tokenizer: Tokenizer, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
    """(len(texts), (n_layer + 1) * n_embd) float32: the mean-pooled token embeddings, the output of
    every block but the last, and the final normalised states, each L2-normalised, side by side.

    For classifiers (the router): the early layers keep which words a turn uses, which a small
    base's final states (trained to predict the next token) blur; one forward, as embed_texts."""

    def pool(idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states: list[torch.Tensor] = []
        hooks = [block.register_forward_hook(lambda _m, _i, out: states.append(out)) for block in model.layers[:-1]]
        try:
            hidden = model(idx, return_hidden=True)
        finally:
            for hook in hooks:
                hook.remove()
        parts = [model.embed_tokens(idx), *states, hidden]
        return torch.cat([torch.nn.functional.normalize(mean_pool(p.float(), mask), dim=-1) for p in parts], -1)

    return _batched(model, tokenizer, texts, (model.config.n_layer + 1) * model.config.n_embd, pool, batch_size)


def _batched(model: LLM, tokenizer: Tokenizer, texts: Sequence[str], dim: int,
             pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int) -> np.ndarray:
    """pool(ids, mask) over length-sorted batches of `texts`, rows back in the input order."""
    limit = model.config.max_seq_len
    device = model.embed_tokens.weight.device
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        idx, mask = pad_texts(tokenizer, [texts[i] for i in rows], limit, device)
        out[rows] = pool(idx, mask).float().cpu().numpy()
    return out


def truncate_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first `dimensions` components, renormalised (OpenAI's `dimensions`); unchanged for None."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if not 1 <= dimensions <= vectors.shape[1]:
        raise QuarkError(f"dimensions must be between 1 and {vectors.shape[1]}, got {dimensions}")
    cut = vectors[:, :dimensions]
    return (cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)).astype(np.float32)
