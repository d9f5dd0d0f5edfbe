"""The decoder-only transformer: RoPE, RMSNorm, SwiGLU, grouped-query attention, SDPA, KV cache.

Module and parameter names follow Hugging Face's Llama one to one (`embed_tokens`, `layers.N.
self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, …), so exporting is a matter of prefixing
"model." and LlamaForCausalLM computes the same logits. RoPE uses the rotate-half convention that
Llama's HF implementation uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

# The label of positions that do not count in the loss (prompts, padding): PyTorch's cross_entropy default.
IGNORE_INDEX = -100


@dataclass
class LLMConfig:
    """Shape of the network. Everything else (optimizer, data, schedule) lives in the recipe."""

    vocab_size: int = 8192
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2
    n_embd: int = 128
    intermediate_size: int = 0  # 0: SwiGLU's usual 8/3·n_embd, rounded up to a multiple of 64
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self._check_types()
        if self.intermediate_size <= 0:
            self.intermediate_size = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.n_kv_head})")

    def _check_types(self) -> None:
        """Refuse a wrong type or a size below one, naming the field, before any arithmetic (a
        string n_embd would otherwise surface as a formatting error, a negative one inside torch)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                ok = isinstance(value, bool)
                want = "true or false"
            elif f.type == "int":
                low = 0 if f.name == "intermediate_size" else 1
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
                want = f"an integer >= {low}"
            else:
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isfinite(value) and value > 0)
                want = "a positive number"
            if not ok:
                raise ValueError(f"field {f.name} must be {want}, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(unknown)}")
        return cls(**data)


PRESETS: dict[str, LLMConfig] = {
    # Trains in minutes on two CPU cores.
    "tiny": LLMConfig(vocab_size=4096, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, max_seq_len=256),
    # ~125M parameters with the real-corpus 65,536-piece vocabulary (GPT-2 small's budget).
    "small": LLMConfig(vocab_size=65536, n_layer=12, n_head=12, n_kv_head=4, n_embd=768,
                       max_seq_len=2048, tie_embeddings=True),
    # The plan's blueprint: 24 layers, 16 heads, 8k context, 65,536 pieces. Hidden 1536 gives ~0.8B
    # (3072 would give ~2.8B, not 700M, whatever the name says).
    "blueprint-700m": LLMConfig(vocab_size=65536, n_layer=24, n_head=16, n_kv_head=8, n_embd=1536,
                                max_seq_len=8192, rope_theta=500000.0, tie_embeddings=True),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 whatever the autocast dtype, as Llama does.
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(cfg: LLMConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (max_seq_len, head_dim) in the rotate-half layout."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(cfg.max_seq_len, device=device).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin: (B, 1, T, D) gathered at each token's position."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


@dataclass
class KVCache:
    """Keys and values of every layer for a batch, filled left to right.

    Batched requests of different lengths are left-padded; `key_mask` marks real tokens so padding
    is never attended to, and positions count real tokens only.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0
    key_mask: torch.Tensor | None = None  # (B, capacity) bool
    padded: bool = False  # set once any row has padding; unpadded caches take SDPA's fast paths
    # Static-shape decoding (LLM.decode_step): the column written this step, as a tensor so a
    # compiled step is one graph for every step; attention then spans the whole capacity, masked.
    write_at: torch.Tensor | None = None

    @classmethod
    def empty(cls, cfg: LLMConfig, batch: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (batch, cfg.n_kv_head, capacity, cfg.head_dim)
        return cls(k=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)],
                   v=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)],
                   key_mask=torch.zeros(batch, capacity, dtype=torch.bool, device=device))

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | bool | None,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None and cache.write_at is not None:
            cache.k[layer].index_copy_(2, cache.write_at, k)
            cache.v[layer].index_copy_(2, cache.write_at, v)
            k, v = cache.k[layer], cache.v[layer]
        elif cache is not None:
            start = cache.length
            cache.k[layer][:, :, start:start + T] = k
            cache.v[layer][:, :, start:start + T] = v
            k, v = cache.k[layer][:, :, :start + T], cache.v[layer][:, :, :start + T]
        # mask None: plain causal (training, unpadded prefill); False: attend to everything (one
        # new token over an unpadded cache); a tensor: explicit (B, 1, T, S) mask for padded batches.
        gqa = self.n_kv_head != self.n_head
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif mask is False:
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LLM(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)
        # Scale residual projections by depth (GPT-2): keeps the residual stream's variance flat.
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                ignore_index: int = IGNORE_INDEX, return_hidden: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab), or the mean cross-entropy when `targets` is given, or the final
        normalised hidden states (B, T, n_embd) with `return_hidden` (embeddings, reward heads).

        Training passes only `idx`/`targets` and takes SDPA's causal fast path. Inference passes a
        `cache`; with left-padded batches, `attention_mask` (B, T) marks the real new tokens.
        Training on packed examples (SFT) may pass `segments` (B, T), the example each token belongs
        to: attention then stays inside a token's own example, as at inference, where a reply never
        sees another conversation (RoPE is relative, so positions need no reset).
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        mask = None
        if segments is not None and cache is None:
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            mask = (segments[:, None, :, None] == segments[:, None, None, :]) & causal
        if cache is not None:
            if past + T > cache.capacity:
                raise ValueError(f"KV cache full: {past} + {T} > {cache.capacity}")
            new_real = attention_mask.bool() if attention_mask is not None else torch.ones(B, T, dtype=torch.bool,
                                                                                           device=idx.device)
            cache.key_mask[:, past:past + T] = new_real
            keys = cache.key_mask[:, :past + T]
            unpadded = attention_mask is None and (cache.padded is False)
            if positions is None:
                positions = (torch.arange(past, past + T, device=idx.device)[None].expand(B, T) if unpadded
                             else (keys.long().cumsum(-1) - 1).clamp(min=0)[:, past:])
            if unpadded:
                mask = None if past == 0 else (False if T == 1 else self._explicit_mask(keys, past, T))
            else:
                cache.padded = True
                mask = self._explicit_mask(keys, past, T)
        x = self.embed_tokens(idx)
        dtype = x.dtype  # RoPE follows the activations (a quantized embedding's table is int8)
        if positions is None:
            # Training's path: positions 0..T-1 for every row, so slice the tables and broadcast
            # (no gather, and no device sync for a bounds check).
            if T > self.config.max_seq_len:
                raise ValueError(f"sequence of {T} tokens beyond max_seq_len {self.config.max_seq_len}")
            cos, sin = self.rope_cos[None, None, :T].to(dtype), self.rope_sin[None, None, :T].to(dtype)
        else:
            if positions.max() >= self.config.max_seq_len:
                raise ValueError(f"position {int(positions.max())} beyond max_seq_len {self.config.max_seq_len}")
            cos = self.rope_cos[positions][:, None].to(dtype)
            sin = self.rope_sin[positions][:, None].to(dtype)
        for i, block in enumerate(self.layers):
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, mask, cache, i, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, cache, i)
        if cache is not None:
            cache.length = past + T
        hidden = self.norm(x)
        if return_hidden:
            return hidden
        logits = self.lm_head(hidden)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=ignore_index)

    def decode_step(self, idx: torch.Tensor, cache: KVCache, live: torch.Tensor) -> torch.Tensor:
        """One decode step over a static-shape cache: float32 next-token logits (B, vocab) for the
        tokens `idx` (B, 1), written at column `cache.write_at`; `live` (B, 1) marks the rows whose
        token is real. Every tensor keeps its shape from step to step (attention covers the whole
        capacity, masked), so `torch.compile` builds this once per batch shape and CUDA graphs can
        replay it; the caller advances `cache.length`."""
        cache.key_mask.index_copy_(1, cache.write_at, live)
        positions = (cache.key_mask.long().sum(-1, keepdim=True) - 1).clamp(min=0)
        key_pos = torch.arange(cache.key_mask.shape[1], device=idx.device)
        mask = (cache.key_mask | (key_pos == cache.write_at)[None])[:, None, None, :]
        x = self.embed_tokens(idx)
        cos, sin = self.rope_cos[positions][:, None].to(x.dtype), self.rope_sin[positions][:, None].to(x.dtype)
        for i, block in enumerate(self.layers):
            x = block(x, cos, sin, mask, cache, i)
        return self.lm_head(self.norm(x)[:, -1]).float()

    @staticmethod
    def _explicit_mask(keys: torch.Tensor, past: int, T: int) -> torch.Tensor:
        """(B, 1, T, S): causal, and never onto padding. A padded query row would attend to
        nothing and turn into NaNs, so every query may always see its own key."""
        key_pos = torch.arange(past + T, device=keys.device)
        causal = key_pos[None] <= key_pos[past:, None]
        return ((causal[None] & keys[:, None, :]) | (key_pos[None] == key_pos[past:, None])[None])[:, None]

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Unique parameters (a tied embedding counts once)."""
        seen = {id(p): p for p in self.parameters()}
        total = sum(p.numel() for p in seen.values())
        if exclude_embeddings:
            total -= self.embed_tokens.weight.numel()
        return total
