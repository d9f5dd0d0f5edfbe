"""Small LoRA adapters in PEFT layout for the multi-adapter tests: written by peft itself, with
random non-zero B (a fresh adapter's B is zero, so it would change nothing)."""

from __future__ import annotations

from pathlib import Path

import torch

from quark.modelfolder import load_model


def make_adapter(model_folder: Path, name: str, *, seed: int, rank: int = 4,
                 targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"), std: float = 0.6) -> Path:
    """models/<m>/adapters/<name>/ for `model_folder`, in the layout `quark finetune sft --lora` writes."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = load_model(model_folder)
    model.name_or_path = model_folder.name
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), bias="none",
                                            base_model_name_or_path=model_folder.name))
    with torch.no_grad():
        for param_name, param in peft.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0.0, std)
    folder = model_folder / "adapters" / name
    peft.save_pretrained(str(folder), save_embedding_layers=False)
    (folder / "README.md").unlink(missing_ok=True)
    return folder
