"""Loading a model folder, full precision or int8, whichever config.json records."""

from __future__ import annotations

from pathlib import Path

import torch

from quark.modelfolder.folder import load_full_precision, saved_quantization
from quark.modelfolder.quantized import load_quantized
from quark.models.llm import LLM


def load_model(folder: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LLM:
    """The LLM of a model folder with its weights loaded and checked against config.json; a folder
    saved quantized comes back quantized as saved."""
    if saved_quantization(folder):
        return load_quantized(folder, device=device, dtype=dtype)
    return load_full_precision(folder, device=device, dtype=dtype)
