"""Which model folders hold image pipelines, without importing diffusers (front ends ask at start-up).

A saved QuarkImagePipeline is `models/<name>/model_index.json` naming the class, beside unet/,
scheduler/, text_encoder/ (a Quark LLM folder) and `quark_image.json` (provenance, the shapes
vocabulary it was trained on, sampling defaults).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quark.errors import QuarkError
from quark.home import Home

PIPELINE_CLASS = "QuarkImagePipeline"
IMAGE_META = "quark_image.json"


def is_pipeline_folder(folder: Path) -> bool:
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text()).get("_class_name") == PIPELINE_CLASS
    except ValueError:
        return False


def image_models(home: Home) -> list[str]:
    root = home.root / "models"
    return sorted(p.name for p in root.iterdir() if is_pipeline_folder(p)) if root.is_dir() else []


def resolve_image_model(home: Home, name: str | None) -> str:
    """`name`, or the home's only image model when none is named."""
    if name:
        folder = home.existing(home.model_dir(name), "model")
        if not is_pipeline_folder(folder):
            raise QuarkError(f"model {name!r} is not an image model (no {PIPELINE_CLASS} model_index.json in {folder})")
        return name
    found = image_models(home)
    if len(found) != 1:
        raise QuarkError(f"several image models ({', '.join(found)}): name one with --image-model / --model" if found
                         else f"no image model in {home.root / 'models'} (train one with `quark image train`)")
    return found[0]


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / IMAGE_META
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise QuarkError(f"{path}: not valid JSON ({exc})") from None
