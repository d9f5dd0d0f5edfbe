"""Quantized inference: int8 weight-only on CPU, bitsandbytes int8 and nf4 on CUDA.

CPU int8 uses the model-folder int8 format's modules (quark.modelfolder.quantized). On CUDA,
bitsandbytes (the optional `cuda` extra, imported only when asked for) replaces the blocks' linear
layers: LLM.int8() for int8, 4-bit NormalFloat for nf4; the embedding and lm_head stay in the
compute dtype, as bitsandbytes recommends.
"""

from __future__ import annotations

from pathlib import Path

import torch

from quark.errors import QuarkError
from quark.modelfolder import load_model, saved_quantization
from quark.modelfolder.quantized import block_linears, keep_tied, quantize_int8
from quark.models.llm import LLM

MODES = ("int8", "nf4")


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise QuarkError("quantized inference on CUDA needs bitsandbytes: pip install 'quark[cuda]'") from None
    return bitsandbytes


def quantize_bitsandbytes(model: LLM, mode: str, device: torch.device, compute_dtype: torch.dtype) -> LLM:
    """Replace the blocks' linear layers with bitsandbytes ones; moving to the GPU quantizes them.
    `model` must still be on the CPU in `compute_dtype`."""
    bnb = _bitsandbytes()
    for parent, name, linear in block_linears(model):
        if mode == "int8":
            layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False,
                                        has_fp16_weights=False, threshold=6.0)
        else:
            layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False,
                                      compute_dtype=compute_dtype, quant_type="nf4", compress_statistics=True)
        layer.load_state_dict(linear.state_dict())
        setattr(parent, name, layer)
    model = model.to(device)
    model.quantization = {"mode": mode, "scheme": f"bitsandbytes {mode}"}
    return model.eval()


def load_for_inference(folder: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                       mode: str | None = None) -> LLM:
    """Load a model folder for generation, quantized with `mode` when given.

    CPU: int8 only (nf4 has no CPU kernel here). CUDA: bitsandbytes int8 or nf4. A folder saved
    quantized loads as saved; asking for another mode on it is an error rather than a silent
    second quantization of already-rounded weights.
    """
    device = torch.device(device)
    saved = (saved_quantization(folder) or {}).get("mode")
    if mode is None or mode == saved:
        return load_model(folder, device=device, dtype=dtype)
    if mode not in MODES:
        raise QuarkError(f"unknown quantization {mode!r} (expected one of {', '.join(MODES)})")
    if saved:
        raise QuarkError(f"{Path(folder).name} is already quantized ({saved}); load it without --quantize, "
                         "or quantize its full-precision original")
    if device.type == "cuda":
        return quantize_bitsandbytes(load_model(folder, device="cpu", dtype=dtype), mode, device, dtype)
    if mode == "nf4":
        raise QuarkError("nf4 runs on CUDA only (bitsandbytes); on CPU use --quantize int8")
    if device.type != "cpu":
        raise QuarkError(f"--quantize {mode} runs on cpu or cuda, not {device.type}")
    return keep_tied(quantize_int8(load_model(folder, device="cpu", dtype=torch.float32)), dtype=dtype)
