"""LoRA adapters of a model folder: where they live, and merging one into the base weights.

    models/<base>/adapters/<name>/adapter_config.json
    models/<base>/adapters/<name>/adapter_model.safetensors

Finding and listing adapters reads JSON only; peft (which takes seconds to import) is imported
when an adapter is merged. Training adapters is quark.align.lora.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.home import Home, validate_name
from quark.modelfolder.folder import save_derived
from quark.modelfolder.loading import load_model
from quark.models.llm import LLM

ADAPTERS = "adapters"


def adapter_dir(model_folder: Path, name: str) -> Path:
    return Path(model_folder) / ADAPTERS / validate_name(name, "adapter name")


def existing_adapter(model_folder: Path, name: str) -> Path:
    """The adapter folder of a model, or a one-line error listing the adapters it does have."""
    folder = adapter_dir(model_folder, name)
    if not (folder / "adapter_config.json").is_file():
        have = list_adapters(model_folder)
        raise QuarkError(f"model {Path(model_folder).name!r} has no adapter {name!r} (no "
                         f"{folder / 'adapter_config.json'}; "
                         f"adapters: {', '.join(have) if have else 'none'})")
    return folder


def list_adapters(model_folder: Path) -> list[str]:
    root = Path(model_folder) / ADAPTERS
    return sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").is_file()) if root.is_dir() else []


def read_adapter_config(folder: Path) -> dict:
    path = Path(folder) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise QuarkError(f"{path}: unreadable adapter config ({exc})") from None
    if config.get("peft_type") != "LORA":
        raise QuarkError(f"{path}: peft_type {config.get('peft_type')!r} is not a LoRA adapter")
    return config


def merge(model: LLM, folder: Path) -> LLM:
    """`model` with the adapter in `folder` folded into its weights (in place, returned)."""
    from peft import PeftModel

    read_adapter_config(folder)
    try:
        peft = PeftModel.from_pretrained(model, str(folder))
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise QuarkError(f"adapter {folder} does not fit model {folder.parent.parent.name!r}: "
                         f"{str(exc).strip().splitlines()[0]}") from None
    return peft.merge_and_unload()


def load_merged(model_folder: Path, adapter: str, *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> LLM:
    """A model folder's weights with one of its adapters merged in: merged in float32 on the CPU,
    then moved and cast, so a bf16 model gets the adapter at full precision before rounding."""
    folder = existing_adapter(model_folder, adapter)
    model = merge(load_model(model_folder, device="cpu", dtype=torch.float32), folder)
    return model.to(device=device, dtype=dtype).eval()


def merge_into_folder(home: Home, base: str, adapter: str, name: str) -> dict:
    """`quark models merge`: models/<name>/ = models/<base>/ with `adapter` merged in."""
    base_folder = home.existing(home.model_dir(base), "model")
    dest = home.model_dir(name)
    if dest.exists():
        raise QuarkError(f"model {name!r} already exists ({dest}); choose another --name")
    model = load_merged(base_folder, adapter)
    source = adapter_dir(base_folder, adapter)
    card = (f"# {name}\n\nModel `{base}` with LoRA adapter `{adapter}` merged into its weights "
            f"(`quark models merge`).\n")
    if (source / "card.md").is_file():
        card += "\n## Adapter card\n\n" + (source / "card.md").read_text(encoding="utf-8")
    with atomic_dir(dest) as tmp:
        save_derived(tmp, model, base_folder,
                     extra_config={"source": f"merge:{base}+{adapter}", "base_model": base, "adapter": adapter})
        (tmp / "card.md").write_text(card, encoding="utf-8")
    return {"model": name, "base": base, "adapter": adapter, "model_dir": str(dest),
            "parameters": model.num_parameters()}
