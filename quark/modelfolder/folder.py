"""Model folders: `models/<name>/` holding config.json, model.safetensors, tokenizer.model and
generation_config.json (and optionally card.md and adapters/<name>/).

Weights are written with safetensors; a tied lm_head is stored once (as `embed_tokens.weight`)
and re-tied on load. Loading checks shapes against config.json so a corrupt or mismatched file is
a one-line error, not a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from quark.errors import QuarkError
from quark.home import Home
from quark.inputs import MiB, pydantic_problem, read_json_file
from quark.models.llm import LLM, LLMConfig, rope_tables
from quark.tokenizer import Tokenizer

DEFAULT_GENERATION = {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "max_new_tokens": 256}


def save_model(folder: Path, model: LLM, tokenizer_model: Path, *, generation: dict | None = None,
               extra_config: dict | None = None) -> None:
    """Write a complete model folder into `folder` (callers wrap this in atomic_dir)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:  # the head is the embedding (and, quantized, its scales too)
        state = {k: v for k, v in state.items() if not k.startswith("lm_head.")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "architecture": "quark-llm"})
    config = {"architecture": "quark-llm", **model.config.to_dict(), **(extra_config or {})}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({**DEFAULT_GENERATION, **(generation or {})}, indent=2))
    shutil.copyfile(tokenizer_model, folder / "tokenizer.model")


def save_derived(folder: Path, model: LLM, base_folder: Path, *, extra_config: dict | None = None) -> None:
    """A model folder for weights derived from `base_folder` (fine-tuned, merged, quantized): the
    base's tokenizer and generation defaults, the new weights and config."""
    base_folder = Path(base_folder)
    save_model(folder, model, base_folder / "tokenizer.model", generation=generation_defaults(base_folder),
               extra_config=extra_config)


def read_config_json(folder: Path, what: str = "model") -> dict[str, Any]:
    """`folder`'s config.json as a dict (a Quark model folder, or a Hugging Face one to import);
    a missing or malformed file is a one-line QuarkError naming the `what` that was expected."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise QuarkError(f"no {what} at {folder} (missing config.json)")
    data = read_json_file(path, "config file", max_bytes=MiB)
    if not isinstance(data, dict):
        raise QuarkError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_config(folder: Path) -> LLMConfig:
    path = Path(folder) / "config.json"
    data = {k: v for k, v in read_config_json(folder).items() if k in LLMConfig.__dataclass_fields__}
    try:
        return LLMConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise QuarkError(f"{path}: {exc}") from None


def load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise QuarkError(f"missing weights file {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise QuarkError(f"corrupt or truncated safetensors file {path}: {exc}") from None


def check_state(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], where: str) -> None:
    """Refuse weights whose names or shapes differ from the model's, in one line starting `where`."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise QuarkError(f"{where}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise QuarkError(f"{where}: {key} has shape {tuple(state[key].shape)}, expected {shape}")


def saved_quantization(folder: Path) -> dict | None:
    """The `quantization` entry of a model folder's config.json, or None for full precision."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("quantization")
    except (OSError, ValueError):
        return None  # read_config reports a missing or broken config.json with the right message


def load_full_precision(folder: Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> LLM:
    """Build the LLM of an unquantized model folder and load its weights, checking every tensor's
    shape (quark.modelfolder.loading.load_model picks this or the quantized loader)."""
    folder = Path(folder)
    config = read_config(folder)
    with torch.device("meta"):
        model = LLM(config)
    state = load_state(folder / "model.safetensors")
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not (config.tie_embeddings and k == "lm_head.weight")}
    check_state(state, expected, f"{folder / 'model.safetensors'} does not match config.json")
    model = model.to_empty(device=device)
    model.load_state_dict(state, strict=False, assign=False)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    # RoPE tables are buffers, not weights: rebuild them on the target device.
    model.rope_cos, model.rope_sin = rope_tables(config, torch.device(device))
    return model.to(dtype).eval()


def load_tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.load(Path(folder) / "tokenizer.model")


class GenerationConfig(BaseModel):
    """generation_config.json: the sampling defaults; checked on read so a wrong type is one line
    naming the file and field rather than an error inside sampling. Unknown keys are kept."""

    model_config = ConfigDict(extra="allow", strict=True)
    max_new_tokens: Annotated[int, Field(ge=1)] = DEFAULT_GENERATION["max_new_tokens"]
    temperature: Annotated[float, Field(ge=0, allow_inf_nan=False)] = DEFAULT_GENERATION["temperature"]
    top_k: Annotated[int, Field(ge=0)] = DEFAULT_GENERATION["top_k"]
    top_p: Annotated[float, Field(gt=0, le=1)] = DEFAULT_GENERATION["top_p"]
    repetition_penalty: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    seed: Annotated[Optional[int], Field(ge=0)] = None


def generation_defaults(folder: Path) -> dict:
    path = Path(folder) / "generation_config.json"
    if not path.exists():
        return dict(DEFAULT_GENERATION)
    data = read_json_file(path, "generation config", max_bytes=MiB)
    if not isinstance(data, dict):
        raise QuarkError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        checked = GenerationConfig.model_validate(data)
    except ValidationError as exc:
        raise QuarkError(f"{path}: {pydantic_problem(exc)}") from None
    return {**DEFAULT_GENERATION, **checked.model_dump(exclude_unset=True)}


def list_models(home: Home) -> list[Path]:
    """The model folders of a home: every `models/<name>/` that has a config.json, by name."""
    root = home.root / "models"
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []
