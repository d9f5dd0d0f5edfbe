"""The int8 model-folder format: int8 weight-only modules, quantizing a model to them, and saving
and loading quantized folders.

The scheme is torchao's int8 weight-only without the dependency: symmetric int8 weights with one
float scale per output channel (per row of the embedding table), activations left in floating
point. The matmul is the ATen kernel torchao dispatches to on CPU, `torch._weight_int8pack_mm`,
fed bf16 activations (its fast path); shapes that kernel does not cover and other devices
dequantize per call instead. `torch.ao.quantization.quantize_dynamic` is not used because it
quantizes the activations too (dynamic int8), which is not weight-only. A tied lm_head shares the
embedding's int8 table and scales, so a quantized model's weights take about 4x fewer bytes.

A quantized folder keeps the model-folder layout: int8 `*.weight` and float `*.scale` tensors in
model.safetensors, and `"quantization"` recorded in config.json, so it loads without
re-quantizing (`load_quantized`, reached through `quark.modelfolder.load_model`). Quantizing on
the fly for inference (including bitsandbytes on CUDA) is quark.inference.quantize.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark.errors import QuarkError
from quark.modelfolder.folder import load_state, read_config, save_derived, saved_quantization
from quark.models.llm import LLM, rope_tables

INT8_FORMAT = {"mode": "int8", "scheme": "weight-only, symmetric, per-output-channel scales", "version": 1}


def _quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: int8 values in [-127, 127] and the float32 scale of each row."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class Int8Linear(nn.Module):
    """y = x @ (weight * scale).T with int8 `weight` (out, in) and float `scale` (out,)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.empty(out_features, dtype=torch.float32))

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        if linear.bias is not None:
            raise ValueError("Int8Linear has no bias (Quark's layers have none)")
        module = cls(linear.in_features, linear.out_features)
        module.weight, module.scale = _quantize_rows(linear.weight)
        return module

    @classmethod
    def tied_to(cls, embedding: Int8Embedding) -> Int8Linear:
        """An lm_head reading the embedding's own int8 table and scales (no second copy)."""
        with torch.device("meta"):
            module = cls(embedding.embedding_dim, embedding.num_embeddings)
        module.weight, module.scale = embedding.weight, embedding.scale
        return module

    # Above this many rows (a long prefill) dequantizing once and calling the float GEMM is faster
    # than the int8 kernel, which is tuned for decode's few rows (measured on AVX-512, torch 2.13).
    KERNEL_MAX_ROWS = 128

    def _kernel_fits(self, x: torch.Tensor) -> bool:
        # _weight_int8pack_mm gives wrong results or crashes when in_features is not a multiple
        # of 16/32 (checked on torch 2.13); every Quark projection is a multiple of 64.
        return (x.device.type == "cpu" and self.in_features % 32 == 0 and hasattr(torch, "_weight_int8pack_mm")
                and x.numel() <= self.KERNEL_MAX_ROWS * self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._kernel_fits(x):
            flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
            y = torch._weight_int8pack_mm(flat, self.weight, self.scale.to(torch.bfloat16))
            return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype) * self.scale[:, None].to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows with one float scale per row."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("weight", torch.empty(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.empty(num_embeddings, dtype=torch.float32))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        module = cls(embedding.num_embeddings, embedding.embedding_dim)
        module.weight, module.scale = _quantize_rows(embedding.weight)
        return module

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight).to(self.scale.dtype) * self.scale[idx].unsqueeze(-1)


def block_linears(model: LLM) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) for every linear layer inside the transformer blocks."""
    return [(parent, name, child) for parent in model.layers.modules()
            for name, child in parent.named_children() if isinstance(child, nn.Linear)]


def quantize_int8(model: LLM) -> LLM:
    """Quantize a full-precision model in place to int8 weight-only (blocks, embedding, lm_head)."""
    if getattr(model, "quantization", None):
        raise QuarkError(f"the model is already quantized ({model.quantization['mode']})")
    for parent, name, linear in block_linears(model):
        setattr(parent, name, Int8Linear.from_float(linear))
    tied = model.config.tie_embeddings
    head = None if tied else Int8Linear.from_float(model.lm_head)
    model.embed_tokens = Int8Embedding.from_float(model.embed_tokens)
    model.lm_head = Int8Linear.tied_to(model.embed_tokens) if tied else head
    model.quantization = dict(INT8_FORMAT)
    return model


def _empty_int8(model: LLM) -> None:
    """Swap in uninitialised int8 modules so a saved int8 state dict can be assigned into them."""
    for parent, name, linear in block_linears(model):
        setattr(parent, name, Int8Linear(linear.in_features, linear.out_features))
    model.embed_tokens = Int8Embedding(model.config.vocab_size, model.config.n_embd)
    model.lm_head = Int8Linear(model.config.n_embd, model.config.vocab_size)


def save_quantized(source: Path, model: LLM, folder: Path) -> None:
    """Write an int8 model folder (callers wrap this in atomic_dir): weights, config recording the
    quantization, the source's generation defaults, tokenizer and card."""
    source = Path(source)
    save_derived(folder, model, source, extra_config={"quantization": model.quantization,
                                                      "quantized_from": source.name})
    if (source / "card.md").is_file():
        shutil.copyfile(source / "card.md", Path(folder) / "card.md")


def load_quantized(folder: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LLM:
    """Rebuild an int8 model from its folder, checking every tensor against config.json."""
    folder = Path(folder)
    recorded = saved_quantization(folder) or {}
    if recorded.get("mode") != "int8" or recorded.get("version") != INT8_FORMAT["version"]:
        raise QuarkError(f"{folder / 'config.json'}: unsupported quantization {recorded!r} (this Quark reads "
                         f"int8 version {INT8_FORMAT['version']})")
    config = read_config(folder)
    with torch.device("meta"):
        model = LLM(config)
        _empty_int8(model)
    expected = {k: v for k, v in model.state_dict().items() if not (config.tie_embeddings and k.startswith("lm_head."))}
    state = load_state(folder / "model.safetensors")
    weights = folder / "model.safetensors"
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise QuarkError(f"{weights} does not match its int8 config.json: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")
    for key, tensor in state.items():
        want = expected[key]
        if tuple(tensor.shape) != tuple(want.shape) or (want.dtype == torch.int8) != (tensor.dtype == torch.int8):
            raise QuarkError(f"{weights}: {key} is {tensor.dtype} {tuple(tensor.shape)}, "
                             f"config.json implies {want.dtype} {tuple(want.shape)}")
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:  # the head's buffers are still meta: point it at the loaded table
        model.lm_head = Int8Linear.tied_to(model.embed_tokens)
    model.rope_cos, model.rope_sin = rope_tables(config)
    model.quantization = recorded
    return keep_tied(model, device=device, dtype=dtype).eval()


def keep_tied(model: LLM, **kwargs) -> LLM:
    """`model.to(...)`, keeping a tied int8 head tied: Module.to moves each module's buffers on
    their own, which would give the head a second copy of the embedding table."""
    model = model.to(**kwargs)
    if model.config.tie_embeddings:
        model.lm_head = Int8Linear.tied_to(model.embed_tokens)
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the model's weights (parameters and persistent buffers), shared tensors once."""
    seen: dict[int, torch.Tensor] = {}
    for tensor in model.state_dict(keep_vars=True).values():
        seen.setdefault(tensor.data_ptr(), tensor)
    return sum(t.numel() * t.element_size() for t in seen.values())
