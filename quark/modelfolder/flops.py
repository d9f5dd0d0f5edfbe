"""What a model costs: parameters, FLOPs per token, memory for training, and the device's peak.

The arithmetic behind `quark models info` and the MFU on the training progress bar. Models are
built on the meta device, so sizing blueprint-700m allocates nothing.

Conventions (stated once, used everywhere):
- embedding parameters are the vocabulary-sized matrices: embed_tokens, plus lm_head when untied;
  a tied matrix counts once.
- training FLOPs per token = 6·N + 12·L·T·d (Kaplan/PaLM), where N counts the parameters that do
  matmuls: every non-embedding parameter plus the lm_head (an embedding lookup is free, the output
  projection is not) and 12·L·T·d is attention's score and value products at context T.
- activations are an estimate of what autograd saves for backward with SDPA attention (flash /
  memory-efficient kernels keep no T×T matrix): the residual stream and norms in fp32, matmul
  inputs and outputs in the compute dtype.
"""

from __future__ import annotations

import functools
import time

import torch

from quark.models.llm import LLM, LLMConfig

# bf16 dense tensor-core peak FLOP/s from the vendors' datasheets (no sparsity). The first name that
# is a substring of torch.cuda.get_device_name() wins, so the more specific names come first.
CUDA_PEAK_BF16: list[tuple[str, float]] = [
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12), ("RTX 4090", 165e12),
    ("RTX 3090", 71e12), ("V100", 125e12), ("T4", 65e12),
]


def build_meta(cfg: LLMConfig) -> LLM:
    """The model with shapes only: no memory, no initialisation cost."""
    with torch.device("meta"):
        return LLM(cfg)


def parameter_counts(model: LLM) -> dict[str, int]:
    total = model.num_parameters()
    embedding = model.embed_tokens.weight.numel()
    if model.lm_head.weight is not model.embed_tokens.weight:
        embedding += model.lm_head.weight.numel()
    return {"parameters": total, "embedding_parameters": embedding, "non_embedding_parameters": total - embedding}


def flops_per_token(cfg: LLMConfig, counts: dict[str, int], seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token at context `seq_len`."""
    matmul_params = counts["non_embedding_parameters"] + cfg.vocab_size * cfg.n_embd
    return 6.0 * matmul_params + 12.0 * cfg.n_layer * seq_len * cfg.n_embd


def activation_bytes(cfg: LLMConfig, batch: int, seq_len: int, *, compute_bytes: int,
                     checkpointing: bool) -> int:
    """Estimated bytes saved for backward by one forward of `batch` × `seq_len` tokens."""
    d, kv, inter, r, a = cfg.n_embd, cfg.n_kv_head * cfg.head_dim, cfg.intermediate_size, 4, compute_bytes
    # Two RMSNorms (input and normalised output, fp32); matmul inputs cast to the compute dtype
    # (normed x for qkv and for gate/up); q, k, v; attention output and its reshaped copy; SwiGLU's
    # gate, silu(gate), up and their product.
    per_layer = r * 4 * d + a * (2 * d + (d + 2 * kv) + 2 * d + 4 * inter)
    # Final norm, lm_head input and the fp32 log-softmax the loss keeps (the logits themselves are
    # not needed by backward).
    head = r * 2 * d + a * d + 4 * cfg.vocab_size
    if checkpointing:
        # Only each block's input is kept; backward recomputes one block at a time.
        per_token = cfg.n_layer * r * d + per_layer + head
    else:
        per_token = cfg.n_layer * per_layer + head
    return per_token * batch * seq_len


def model_info(cfg: LLMConfig, *, batch: int = 1, seq_len: int | None = None,
               compute_dtype: str = "bfloat16") -> dict:
    """Everything `quark models info` prints, for a config (built on the meta device)."""
    seq_len = seq_len or cfg.max_seq_len
    counts = parameter_counts(build_meta(cfg))
    n = counts["parameters"]
    compute_bytes = 2 if compute_dtype == "bfloat16" else 4
    act = activation_bytes(cfg, batch, seq_len, compute_bytes=compute_bytes, checkpointing=False)
    act_ckpt = activation_bytes(cfg, batch, seq_len, compute_bytes=compute_bytes, checkpointing=True)
    # Training keeps fp32 weights (autocast computes in bf16 from them, so they are the master
    # copy and there is no second one), fp32 gradients and AdamW's fp32 m and v.
    states = {"weights": 4 * n, "gradients": 4 * n, "optimizer": 8 * n, "master_weights": 0}
    fixed = sum(states.values())
    per_token = flops_per_token(cfg, counts, seq_len)
    return {
        "config": cfg.to_dict(),
        **counts,
        "batch": batch, "seq_len": seq_len, "compute_dtype": compute_dtype,
        "flops_per_token": per_token,
        "flops_per_step": per_token * batch * seq_len,
        "weight_bytes": {"float32": 4 * n, "bfloat16": 2 * n},
        "training_bytes": {**states, "activations": act, "activations_checkpointed": act_ckpt,
                           "total": fixed + act, "total_checkpointed": fixed + act_ckpt},
    }


@functools.cache
def _measured_matmul_flops(device: str, dtype: torch.dtype) -> float:
    """Dense matmul FLOP/s this device sustains right now (best of a few 1024² products)."""
    size = 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from) for MFU.

    CUDA: the datasheet's bf16 dense figure by device name (fp32 runs count against TF32, half of
    it). Elsewhere, or for an unlisted GPU: a measured dense matmul rate, so MFU reads as "share
    of what a plain matmul achieves here" rather than against a marketing number.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in CUDA_PEAK_BF16:
            if key in name:
                return (flops if dtype == torch.bfloat16 else flops / 2), f"{name} datasheet"
    return _measured_matmul_flops(str(device), dtype), f"measured {dtype} matmul on {device.type}"
