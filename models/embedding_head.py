"""The embedding head: a Quark LLM's final hidden states, mean-pooled over the real tokens,
projected and L2-normalised; plus the InfoNCE temperature it was trained with.

The projection starts as the identity when the output width equals the model's (so an untrained
head embeds exactly as the plain pooled states do) and as a random orthogonal map otherwise (which
keeps cosines roughly as they were). `log_scale` is log(1/temperature); it is a parameter, trained
or held fixed as the recipe says, and saved with the head.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) hidden states, (B, T) bool mask of real tokens → (B, C) means over the real ones."""
    mask = mask.to(hidden.dtype)[..., None]
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class EmbeddingHead(nn.Module):
    def __init__(self, n_embd: int, dim: int, *, temperature: float = 0.05, learn_temperature: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(n_embd, dim, bias=False)
        with torch.no_grad():
            if dim == n_embd:
                self.proj.weight.copy_(torch.eye(dim))
            else:
                nn.init.orthogonal_(self.proj.weight)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)

    @property
    def dim(self) -> int:
        return self.proj.out_features

    @property
    def scale(self) -> torch.Tensor:
        """1/temperature, capped at 100 as in CLIP so the logits cannot run away."""
        return self.log_scale.exp().clamp(max=100.0)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(mean_pool(hidden.float(), mask)), dim=-1)
