"""Where adapters live in a model folder, read without importing peft (which takes seconds).

    models/<base>/adapters/<name>/adapter_config.json
    models/<base>/adapters/<name>/adapter_model.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path

from quark.errors import QuarkError
from quark.home import validate_name

ADAPTERS = "adapters"


def adapter_dir(model_folder: Path, name: str) -> Path:
    return Path(model_folder) / ADAPTERS / validate_name(name, "adapter name")


def existing_adapter(model_folder: Path, name: str) -> Path:
    """The adapter folder of a model, or a one-line error listing the adapters it does have."""
    folder = adapter_dir(model_folder, name)
    if not (folder / "adapter_config.json").is_file():
        have = list_adapters(model_folder)
        raise QuarkError(f"model {Path(model_folder).name!r} has no adapter {name!r} (no {folder / 'adapter_config.json'}; "
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


