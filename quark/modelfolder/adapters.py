"""LoRA adapters of a model folder: where they live, and merging one into the base weights.

    models/<base>/adapters/<name>/adapter_config.json
    models/<base>/adapters/<name>/adapter_model.safetensors

Finding and listing adapters reads JSON only; peft (which takes seconds to import) is imported
when an adapter is merged. `read_lora` reads an adapter's matrices without peft, for running
several adapters side by side on one base (quark.inference.multi_lora). Training adapters is
quark.align.lora.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


# PEFT options that change what an adapter computes beyond `scale · B(A x)` on a Linear layer:
# an adapter using one is merged (`quark models merge`) rather than run side by side.
_UNSUPPORTED_SIDE_BY_SIDE = ("use_dora", "lora_bias", "modules_to_save", "fan_in_fan_out", "alpha_pattern",
                             "rank_pattern", "trainable_token_indices", "layer_replication")
_PEFT_PREFIX = "base_model.model."


@dataclass
class LoraWeights:
    """One adapter's matrices as plain tensors, for running it beside others on one base
    (quark.inference.multi_lora): per target module of the LLM, A (rank, in) and B (out, rank),
    and the one scale PEFT multiplies B·A by (lora_alpha / r, or / sqrt(r) with rsLoRA)."""

    name: str
    scale: float
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "layers.0.self_attn.q_proj" -> (A, B)


def side_by_side_config(folder: Path) -> dict:
    """An adapter's config, refused in one line when it uses what only a merged adapter computes."""
    config = read_adapter_config(folder)
    used = [key for key in _UNSUPPORTED_SIDE_BY_SIDE if config.get(key) not in (None, False, {}, [])]
    if config.get("bias", "none") != "none":
        used.append("bias")
    if used:
        raise QuarkError(f"adapter {folder.name!r} uses {', '.join(used)}, which only a merged adapter computes: "
                         f"load it with --adapter {folder.name} or fold it in with `quark models merge`")
    return config


def side_by_side_adapters(model_folder: Path) -> tuple[list[str], dict[str, str]]:
    """The adapters of a model that can run side by side, and why each other one cannot (so a
    model with one DoRA adapter still serves and chats with the rest)."""
    usable, skipped = [], {}
    for name in list_adapters(model_folder):
        try:
            side_by_side_config(adapter_dir(model_folder, name))
            usable.append(name)
        except QuarkError as exc:
            skipped[name] = str(exc)
    return usable, skipped


def read_lora(model_folder: Path, name: str) -> LoraWeights:
    """Adapter `name` of a model folder, read without peft: its config checked for what the
    batched update can compute, its safetensors split into (A, B) per target module."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = existing_adapter(model_folder, name)
    config = side_by_side_config(folder)
    path = folder / "adapter_model.safetensors"
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise QuarkError(f"{path}: unreadable adapter weights ({exc})") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, dot, kind = key.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        if not dot or kind not in ("A.weight", "B.weight") or tensor.ndim != 2:
            raise QuarkError(f"{path}: tensor {key!r} is not a LoRA A or B matrix")
        pairs.setdefault(module, {})[kind[0]] = tensor.float()
    modules = {}
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"} or pair["A"].shape[0] != pair["B"].shape[1]:
            raise QuarkError(f"{path}: module {module!r} needs lora_A (r, in) and lora_B (out, r) of one rank")
        modules[module] = (pair["A"], pair["B"])
    if not modules:
        raise QuarkError(f"{path}: no LoRA matrices")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, (int, float)):
        raise QuarkError(f"{folder / 'adapter_config.json'}: r must be a positive integer and lora_alpha a number")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return LoraWeights(name, float(scale), modules)
