"""LoRA adapters through peft, on Quark's own LLM, in the PEFT layout:

    models/<base>/adapters/<name>/adapter_config.json        peft's LoraConfig (base_model_name_or_path = <base>)
    models/<base>/adapters/<name>/adapter_model.safetensors  the lora_A / lora_B matrices only
    models/<base>/adapters/<name>/card.md

peft needs nothing of a transformers model: `get_peft_model` wraps any nn.Module and swaps the
target nn.Linear layers for LoRA layers in place, so the LLM it wraps trains through the same
Trainer as any model (only the adapter matrices require grad). `merge` folds an adapter back into
the base weights, which is how inference uses one: no adapter cost per token (merging lives in
quark.modelfolder.adapters, so inference never imports alignment).

QLoRA keeps the frozen base in 4-bit NormalFloat (bitsandbytes `Linear4bit`, CUDA only) and
trains the same adapters on top; the adapter is saved and merged into the full-precision base
exactly like a LoRA one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from quark.align.recipe import LoraSettings
from quark.errors import QuarkError
from quark.inference.quantize import quantize_bitsandbytes
from quark.models.llm import LLM

if TYPE_CHECKING:  # peft takes seconds to import (it pulls in transformers): only when a LoRA is used
    from peft import LoraConfig, PeftModel


def lora_config(settings: LoraSettings, base_name: str) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_list, bias="none", base_model_name_or_path=base_name)


def add_lora(model: LLM, settings: LoraSettings, base_name: str) -> PeftModel:
    """Wrap `model` with fresh adapters (B = 0, so the output is the base's until training moves
    them); every base weight is frozen. The LLM itself is `peft.get_base_model()`."""
    from peft import get_peft_model

    model.name_or_path = base_name  # what peft records as the adapter's base (it reads it off the model)
    return get_peft_model(model, lora_config(settings, base_name))


def check_qlora(device: torch.device) -> None:
    """QLoRA runs where bitsandbytes' 4-bit kernels do: refuse anything else in one line, early."""
    if device.type != "cuda":
        raise QuarkError("--qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); on this machine use --lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise QuarkError("--qlora needs bitsandbytes: pip install 'quark[cuda]'") from None


def quantize_nf4(model: LLM, device: torch.device, compute_dtype: torch.dtype = torch.bfloat16) -> LLM:
    """QLoRA's frozen base: the blocks' Linear layers become bitsandbytes NF4 (double quantization),
    quantized as they move to the GPU; embeddings and norms stay as they are."""
    check_qlora(device)
    return quantize_bitsandbytes(model.to(compute_dtype), "nf4", device, compute_dtype).train()


def save_adapter(peft: PeftModel, folder: Path) -> None:
    """PEFT layout into `folder` (callers wrap this in atomic_dir); Quark writes its own card.md,
    so peft's generic README is dropped."""
    peft.save_pretrained(str(folder), save_embedding_layers=False)  # "auto" would look the base up on the Hub
    (Path(folder) / "README.md").unlink(missing_ok=True)
