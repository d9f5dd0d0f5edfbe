"""Text embeddings from a Quark model: mean-pooled final hidden states, L2-normalised.

Memory retrieval and /v1/embeddings both call `embed_texts`; when a trained contrastive head
exists it replaces the pooling here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from quark.models.llm import LLM
from quark.tokenizer import Tokenizer


@torch.inference_mode()
def embed_texts(model: LLM, tokenizer: Tokenizer, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
    """(len(texts), n_embd) float32, unit norm. Texts longer than the context keep their start."""
    limit = model.config.max_seq_len
    device = model.embed_tokens.weight.device
    out = np.zeros((len(texts), model.config.n_embd), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        batch = [tokenizer.encode(t)[:limit] or [tokenizer.bos_id] for t in texts[start:start + batch_size]]
        width = max(len(ids) for ids in batch)
        idx = torch.full((len(batch), width), tokenizer.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros(len(batch), width, dtype=torch.bool, device=device)
        for row, ids in enumerate(batch):
            idx[row, :len(ids)] = torch.tensor(ids, device=device)
            mask[row, :len(ids)] = True
        hidden = model(idx, return_hidden=True).float()  # right padding: causal attention never sees it
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out[start:start + len(batch)] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
    return out
