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
