"""`quark models`: what a model costs (info), what the home holds (list), HF export and import,
adapter merging and saved quantization."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import Quantize, adapter_option, model_option
from quark.errors import QuarkError

models = group("models", "Inspect, list, export and import models.")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


@quark_command(models, "info")
def info(cli: Cli,
         preset: Optional[str] = typer.Option(None, "--preset", help="A built-in preset: tiny, small, blueprint-700m."),
         model: Annotated[Optional[str], model_option("A model under models/.")] = None,
         batch: int = typer.Option(1, "--batch", min=1, help="Sequences per step for the memory estimate."),
         seq: Optional[int] = typer.Option(None, "--seq", min=1,
                                           help="Sequence length [default: the model's context]."),
         dtype: str = typer.Option("bfloat16", "--dtype",
                                   help="Compute dtype of training: bfloat16 (autocast) or float32."),
         ) -> dict:
    """Parameters, FLOPs per token and training memory of a preset or a model (nothing is allocated).

    Example:

        quark models info --preset blueprint-700m --batch 2 --seq 8192

        quark models info --model tiny --json
    """
    from quark.modelfolder import read_config
    from quark.modelfolder.flops import model_info
    from quark.models.llm import PRESETS

    if (preset is None) == (model is None):
        raise QuarkError("give exactly one of --preset NAME or --model NAME")
    if dtype not in ("bfloat16", "float32"):
        raise QuarkError(f"--dtype {dtype!r}: expected bfloat16 or float32")
    if preset is not None:
        if preset not in PRESETS:
            raise QuarkError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
        cfg = PRESETS[preset]
    else:
        cfg = read_config(cli.home.existing(cli.home.model_dir(model), "model"))
    result = {"name": preset or model, **model_info(cfg, batch=batch, seq_len=seq, compute_dtype=dtype)}
    mem = result["training_bytes"]
    table = Table(title=f"{result['name']}: {cfg.n_layer} layers, hidden {cfg.n_embd}, {cfg.n_head} heads "
                        f"({cfg.n_kv_head} KV), vocab {cfg.vocab_size:,}", show_header=False)
    for label, value in [
        ("parameters", f"{result['parameters']:,}"),
        ("  embedding / non-embedding", f"{result['embedding_parameters']:,} / {result['non_embedding_parameters']:,}"),
        (f"FLOPs per token (T={result['seq_len']})", f"{result['flops_per_token']:.3e}"),
        ("weights fp32 / bf16",
         f"{_gib(result['weight_bytes']['float32'])} / {_gib(result['weight_bytes']['bfloat16'])}"),
        ("gradients (fp32)", _gib(mem["gradients"])),
        ("AdamW m+v (fp32)", _gib(mem["optimizer"])),
        (f"activations B={batch} T={result['seq_len']} ({dtype})", _gib(mem["activations"])),
        ("  with activation checkpointing", _gib(mem["activations_checkpointed"])),
        ("training total / checkpointed", f"{_gib(mem['total'])} / {_gib(mem['total_checkpointed'])}"),
    ]:
        table.add_row(label, value)
    cli.print(table)
    return result


@quark_command(models, "list")
def list_models(cli: Cli) -> dict:
    """The models in this home: name, parameters, when created, and the run or import they came from.

    Example:

        quark models list --json
    """
    from quark.modelfolder import list_models as model_folders
    from quark.modelfolder import read_config
    from quark.modelfolder.adapters import list_adapters
    from quark.modelfolder.flops import build_meta

    root = cli.home.root / "models"
    rows = []
    for folder in model_folders(cli.home):
        try:
            cfg = read_config(folder)
            meta = json.loads((folder / "config.json").read_text())
            parameters = build_meta(cfg).num_parameters()
        except QuarkError:
            rows.append({"name": folder.name, "parameters": None, "created": None, "source": "unreadable config.json"})
            continue
        created = meta.get("created") or dt.datetime.fromtimestamp((folder / "config.json").stat().st_mtime,
                                                                   dt.timezone.utc).isoformat(timespec="seconds")
        source = f"run {meta['source_run']}" if meta.get("source_run") else meta.get("source", "")
        rows.append({"name": folder.name, "parameters": parameters, "created": created, "source": source,
                     "adapters": list_adapters(folder)})
    table = Table("name", "parameters", "created", "source", "adapters")
    for row in rows:
        table.add_row(row["name"], f"{row['parameters']:,}" if row["parameters"] else "?", row["created"] or "?",
                      row["source"], ", ".join(row.get("adapters", [])))
    cli.print(table if rows else f"no models in {root}")
    return {"models": rows}


@quark_command(models, "export")
def export(cli: Cli, name: str = typer.Argument(..., help="Model under models/."),
           format: str = typer.Option("hf", "--format", help="Export format: hf (LlamaForCausalLM folder)."),
           out: Path = typer.Option(..., "--out", help="New folder to write."),
           ) -> dict:
    """Export a model as a Hugging Face Llama folder (safetensors, config, tokenizer) for transformers, vLLM, llama.cpp.

    Example:

        quark models export tiny --format hf --out ./tiny-hf

        python -c "from transformers import LlamaForCausalLM; LlamaForCausalLM.from_pretrained('./tiny-hf')"
    """
    from quark.modelfolder.hf_llama import export_hf

    if format != "hf":
        raise QuarkError(f"--format {format!r}: only 'hf' is supported")
    result = export_hf(cli.home.existing(cli.home.model_dir(name), "model"), out)
    cli.print(f"exported {name} → {out}")
    return {"model": name, **result}


@quark_command(models, "import")
def import_(cli: Cli, folder: Path = typer.Argument(...,
                                                    help="Llama-architecture folder: config.json + model.safetensors "
                                                         "(or shards with an index)."),
            name: str = typer.Option(..., "--name", help="Name under models/."),
            tokenizer: Optional[str] = typer.Option(None, "--tokenizer",
                                                    help="Tokenizer under tokenizers/ or a tokenizer.model file, when "
                                                         "FOLDER has none."),
            ) -> dict:
    """Import a Llama-architecture safetensors folder (a Quark HF export, or your own weights) as models/NAME.

    Example:

        quark models import ./tiny-hf --name tiny-again

        quark models import ~/weights/my-llama --name mine --tokenizer stdlib
    """
    from quark.modelfolder.hf_llama import import_hf

    dest = cli.home.model_dir(name)
    if dest.exists():
        raise QuarkError(f"model {name!r} already exists ({dest}); choose another --name")
    if not folder.is_dir():
        raise QuarkError(f"{folder} is not a folder")
    tokenizer_model = None
    if tokenizer is not None:
        as_file = Path(tokenizer)
        tokenizer_model = as_file if as_file.is_file() else cli.home.tokenizer_dir(tokenizer) / "tokenizer.model"
        if not tokenizer_model.is_file():
            raise QuarkError(f"--tokenizer {tokenizer!r}: neither a file nor a tokenizer under "
                             f"{cli.home.root / 'tokenizers'}")
    result = import_hf(folder, dest, tokenizer_model=tokenizer_model, source=f"import:{folder.resolve()}")
    cli.print(f"imported {folder} → {dest} ({result['parameters']:,} parameters)")
    return result


@quark_command(models, "merge")
def merge(cli: Cli, base: Annotated[str, typer.Argument(help="Model under models/ that holds the adapter.")],
          adapter: Annotated[str, adapter_option("Adapter under models/BASE/adapters/.")],
          name: Annotated[str, typer.Option("--name", help="Name of the merged model under models/.")],
          ) -> dict:
    """Fold a LoRA adapter into its base model's weights, as a new model folder.

    Example:

        quark finetune sft --model tiny --data chat --name chat-lora --lora

        quark models merge tiny --adapter chat-lora --name tiny-chat

        quark generate --model tiny-chat "hello"
    """
    from quark.modelfolder.adapters import merge_into_folder

    result = merge_into_folder(cli.home, base, adapter, name)
    cli.print(f"merged adapter {adapter} into {base} → {result['model_dir']}")
    return result


@quark_command(models, "quantize")
def quantize(
    cli: Cli,
    name: str = typer.Argument(..., help="The full-precision model to quantize."),
    mode: Quantize = typer.Option(Quantize.int8, "--mode",
                                  help="int8: weight-only, per-channel scales (runs on CPU and CUDA)."),
    out: Optional[str] = typer.Option(None, "--out", help="Name of the new model (default: NAME-MODE)."),
) -> dict:
    """Save a quantized copy of a model that loads without re-quantizing (int8: ~4x smaller).

    Example:

        quark models quantize tiny --mode int8 --out tiny-int8

        quark generate --model tiny-int8 --prompt "def add(a, b):"
    """
    from quark.atomic import atomic_dir
    from quark.modelfolder import load_model
    from quark.modelfolder.quantized import quantize_int8, save_quantized, weight_bytes

    if mode is not Quantize.int8:
        raise QuarkError("only int8 folders are saved; nf4 quantizes on load on CUDA (quark serve/generate --quantize "
                         "nf4)")
    source = cli.home.existing(cli.home.model_dir(name), "model")
    out = f"{name}-{mode.value}" if out is None else out
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


def register(root: typer.Typer) -> None:
    root.add_typer(models)

