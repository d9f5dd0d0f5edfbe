"""The options several commands share, declared once: --model/-m, --device, --adapter, --quantize.

`-m` is `--model` in every command. Each option comes as a ready Annotated type; a command whose
option means something narrower (a base model for fine-tuning, a recipe's device override) builds
its own from the same `*_option(help)` so the flag's name and short form never drift.
"""

from enum import Enum
from typing import Annotated, Optional

import typer

MODEL_HELP = "Model name (a folder under the home's models/)."
DEVICE_HELP = "auto, cpu, cuda or cuda:N (auto: the first CUDA GPU when present, else the CPU)."


class Quantize(str, Enum):
    int8 = "int8"
    nf4 = "nf4"


def model_option(help: str = MODEL_HELP) -> typer.models.OptionInfo:
    return typer.Option("--model", "-m", help=help)


def device_option(help: str = DEVICE_HELP) -> typer.models.OptionInfo:
    return typer.Option("--device", help=help)


def adapter_option(help: str = "A LoRA adapter of the model (models/<model>/adapters/<name>), merged in on load."
                   ) -> typer.models.OptionInfo:
    return typer.Option("--adapter", help=help)


ModelOption = Annotated[str, model_option()]
OptionalModelOption = Annotated[Optional[str], model_option()]
DeviceOption = Annotated[str, device_option()]
AdapterOption = Annotated[Optional[str], adapter_option()]
QuantizeOption = Annotated[Optional[Quantize], typer.Option(
    "--quantize", help="Quantize on load: int8 (weight-only on CPU; bitsandbytes on CUDA) or nf4 (CUDA only).")]


def quantize_mode(quantize: Optional[Quantize]) -> Optional[str]:
    """The --quantize choice as the library takes it ("int8", "nf4" or None)."""
    return quantize.value if quantize else None
