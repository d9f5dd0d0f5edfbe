"""`quark models quantize`: the command body, attached to the `models` group by commands/models.py:

    quark_command(models, "quantize")(quantize_command)

(The underscore keeps this module out of command discovery: it is not a group of its own.)
"""

from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli
from quark.commands._inference import Quantize
from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.modelfolder.quantized import quantize_int8, save_quantized, weight_bytes
from quark.modelfolder import load_model


def quantize_command(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="The full-precision model to quantize.")],
    mode: Annotated[Quantize, typer.Option("--mode", help="int8: weight-only, per-channel scales (runs on CPU and CUDA).")] = Quantize.int8,
    out: Annotated[Optional[str], typer.Option("--out", help="Name of the new model (default: NAME-MODE).")] = None,
) -> dict:
    """Save a quantized copy of a model that loads without re-quantizing (int8: ~4x smaller).

    Example:

        quark models quantize tiny --mode int8 --out tiny-int8

        quark generate --model tiny-int8 --prompt "def add(a, b):"
    """
    if mode is not Quantize.int8:
        raise QuarkError("only int8 folders are saved; nf4 quantizes on load on CUDA (quark serve/generate --quantize nf4)")
    source = cli.home.existing(cli.home.model_dir(name), "model")
    out = out or f"{name}-{mode.value}"
    target = cli.home.model_dir(out)
    if target.exists():
        raise QuarkError(f"model {out!r} already exists ({target}); choose another --out or remove it")
    model = load_model(source)
    full = weight_bytes(model)
    quantize_int8(model)
    quantized = weight_bytes(model)
    with atomic_dir(target, replace=False) as folder:
        save_quantized(source, model, folder)
    cli.print(f"saved [bold]{out}[/] ({mode.value}): weights {full / 2**20:.2f} MiB -> {quantized / 2**20:.2f} MiB "
              f"({full / quantized:.1f}x smaller)")
    return {"model": out, "source": name, "mode": mode.value, "path": str(target),
            "weight_bytes": quantized, "source_weight_bytes": full, "ratio": round(full / quantized, 2)}
