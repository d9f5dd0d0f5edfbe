"""Options and model loading shared by the commands that run a model (generate, serve)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from quark.commands._cli import Cli
from quark.errors import QuarkError
from quark.home import validate_name
from quark.inference import Engine


class Quantize(str, Enum):
    int8 = "int8"
    nf4 = "nf4"


ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name (a folder under the home's models/).")]
QuantizeOption = Annotated[Optional[Quantize], typer.Option(
    "--quantize", help="Quantize on load: int8 (weight-only on CPU; bitsandbytes on CUDA) or nf4 (CUDA only).")]
AdapterOption = Annotated[Optional[str], typer.Option(
    "--adapter", help="A LoRA adapter of the model (models/<model>/adapters/<name>), merged in on load.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (auto: CUDA when present).")]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise QuarkError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise QuarkError(f"--device {device}: no CUDA device is available here")
    return resolved


def load_engine(cli: Cli, name: str, device: str, quantize: Quantize | None,
                adapter: str | None = None) -> tuple[Engine, Path]:
    """The model `name` of the home, ready to generate: bf16 on CUDA, fp32 on CPU."""
    folder = cli.home.existing(cli.home.model_dir(name), "model")
    resolved = resolve_device(device)
    dtype = torch.bfloat16 if resolved.type == "cuda" else torch.float32
    if adapter:
        cli.home.existing(folder / "adapters" / validate_name(adapter, "adapter name"), "adapter")
    engine = Engine.load(folder, device=resolved, dtype=dtype, quantize=quantize.value if quantize else None,
                         adapter=adapter)
    return engine, folder
