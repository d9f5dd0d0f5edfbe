"""`quark pretrain`: train a model from scratch on a token set, on one device or under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, quark_command
from quark.commands._options import device_option


def pretrain(
    cli: Cli,
    name: str = typer.Option(..., "--name", help="Run name; the model is published as models/NAME."),
    recipe: Optional[str] = typer.Option(None, "--recipe",
                                         help="Shipped recipe (tiny-cpu, small-gpu, blueprint-700m) or a YAML file."),
    data: Optional[str] = typer.Option(None, "--data", help="Token set under tokens/ to train on."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue runs/NAME from its last checkpoint, with its own recipe."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Same as --set train.max_steps=N."),
    save_every: Optional[int] = typer.Option(None, "--save-every", min=0, help="Same as --set train.save_every=N (0: only the last step is saved)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", min=0, help="Same as --set train.eval_every=N (0: no validation)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Same as --set train.seed=N."),
    device: Annotated[Optional[str], device_option("Same as --set train.device=auto|cpu|cuda[:N].")] = None,
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Same as --set train.strategy=ddp|fsdp."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Launch torchrun with this many processes on this machine."),
    logger: list[str] = typer.Option([], "--logger", help="Also log to csv, tensorboard or wandb (offline), beside metrics.jsonl; repeatable. Same as --set train.loggers=csv,tensorboard."),
) -> Optional[dict]:
    """Pretrain a decoder-only transformer on a token set; resumable, single device or torchrun.

    Example:

        quark pretrain --recipe tiny-cpu --data stdlib --name tiny --max-steps 300

        quark pretrain --name tiny --resume                      # after a crash or Ctrl-C

        quark pretrain --recipe tiny-cpu --data stdlib --name tiny2 --nproc 2 --strategy fsdp

        torchrun --nproc_per_node=8 -m quark pretrain --recipe blueprint-700m --data corpus --name bp
    """
    flags = {"train.max_steps": max_steps, "train.save_every": save_every, "train.eval_every": eval_every,
             "train.seed": seed, "train.device": device, "train.strategy": strategy,
             "train.loggers": ",".join(logger) or None}
    overrides = [*set_, *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        args = ["--name", name, *(["--recipe", recipe] if recipe else []), *(["--data", data] if data else []),
                *(["--resume"] if resume else []), *(a for item in overrides for a in ("--set", item)),
                "--home", str(cli.home.root), *(["--json"] if cli.json else []), *(["--debug"] if cli.debug else [])]
        code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc_per_node={nproc}", "-m", "quark", "pretrain", *args])
        if code:
            raise typer.Exit(1)
        return None

    from quark.train.pretrain import pretrain as run

    summary = run(cli.home, name=name, recipe=recipe, data=data, overrides=overrides, resume=resume,
                  progress=cli.progress_enabled(), log=cli.print)
    if summary is None:  # a process other than rank 0 of a torchrun job
        return None
    cli.print(f"[bold]{name}[/]: {summary['steps']} steps, {summary['tokens']:,} tokens, "
              f"train loss {summary['train_loss']:.4f}"
              + (f", val loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else "")
              + f" → {summary['model_dir']}")
    return summary


def register(root: typer.Typer) -> None:
    quark_command(root, "pretrain")(pretrain)
