"""The options several commands share, declared once: --model/-m, --device, --adapter, --quantize,
--prefix-cache-mb.

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


def name_value(value: Optional[str] | list[str]) -> Optional[str] | list[str]:
    """Callback for an option that names something in the home: an empty name is a usage error at
    the flag ('' would otherwise read as "not given" and quietly pick a default). Other bad names
    are user errors (exit 1) raised where the name is looked up, with what the home has."""
    names = value if isinstance(value, list) else [value]  # a repeatable option (serve --model) gives a list
    if any(name is not None and not name.strip() for name in names):
        raise typer.BadParameter("the name is empty")
    return value


def model_option(help: str = MODEL_HELP) -> typer.models.OptionInfo:
    return typer.Option("--model", "-m", help=help, callback=name_value)


def device_option(help: str = DEVICE_HELP) -> typer.models.OptionInfo:
    return typer.Option("--device", help=help)


def adapter_option(help: str = "A LoRA adapter of the model (models/<model>/adapters/<name>), merged in on load."
                   ) -> typer.models.OptionInfo:
    return typer.Option("--adapter", help=help, callback=name_value)


ModelOption = Annotated[str, model_option()]
OptionalModelOption = Annotated[Optional[str], model_option()]
DeviceOption = Annotated[str, device_option()]
AdapterOption = Annotated[Optional[str], adapter_option()]
QuantizeOption = Annotated[Optional[Quantize], typer.Option(
    "--quantize", help="Quantize on load: int8 (weight-only on CPU; bitsandbytes on CUDA) or nf4 (CUDA only).")]


PrefixCacheOption = Annotated[float, typer.Option(
    "--prefix-cache-mb", min=0.0, help="Memory for the KV of prompt prefixes already computed (a repeated system "
                                       "prompt or conversation is not prefilled again); 0 disables it.")]
DEFAULT_PREFIX_CACHE_MB = 512.0


class Compile(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


CompileOption = Annotated[Compile, typer.Option(
    "--compile", help="torch.compile the decode step (CUDA graphs on CUDA): auto turns it on only where it was "
                      "measured faster (nowhere yet: not on a CPU), on forces it (the first steps compile, minutes).")]


def quantize_mode(quantize: Optional[Quantize]) -> Optional[str]:
    """The --quantize choice as the library takes it ("int8", "nf4" or None)."""
    return quantize.value if quantize else None
