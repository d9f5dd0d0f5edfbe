"""Small LoRA adapters in the PEFT layout for the multi-adapter tests, written directly (importing
peft takes seconds; the merged-model test loads them through peft, which checks the layout), with
random non-zero B (a fresh adapter's B is zero, so it would change nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from quark.modelfolder import load_model


def make_adapter(model_folder: Path, name: str, *, seed: int, rank: int = 4,
                 targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"), std: float = 0.6) -> Path:
    """models/<m>/adapters/<name>/ for `model_folder`, in the layout `quark finetune sft --lora` writes."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module_name, module in load_model(model_folder).named_modules():
        if module_name.rpartition(".")[2] in targets:
            key = f"base_model.model.{module_name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) \
                / module.in_features ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * std
    folder = model_folder / "adapters" / name
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
              "target_modules": sorted(targets), "bias": "none", "fan_in_fan_out": False, "task_type": None,
              "inference_mode": True, "base_model_name_or_path": model_folder.name}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def make_routed_home(source_home: Path, home: Path) -> Path:
    """A copy of `source_home` whose model `tiny` has adapters `code` (rank 4, attention and MLP)
    and `mesh` (rank 2, MLP only), and router `tiny-router` trained on it with no fallback
    threshold (every turn goes where its top label says: the untrained base is unsure of all)."""
    import shutil

    from quark.agent.router_train import train_router
    from quark.home import Home

    shutil.copytree(source_home, home)
    folder = home / "models" / "tiny"
    make_adapter(folder, "code", seed=1)
    make_adapter(folder, "mesh", seed=2, rank=2, targets=("gate_proj", "up_proj"))
    train_router(Home.open(home), name="tiny-router", base="tiny", threshold=0.0, per_label=40)
    return home
