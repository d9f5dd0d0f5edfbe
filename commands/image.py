"""`quark image`: train Quark's own text-to-image diffusion model, and generate PNGs with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import DeviceOption, device_option, model_option
from quark.progress import progress_bar

app = group("image", "Train a text-to-image diffusion model (Quark's own) and generate images with it.")


def register(root: typer.Typer) -> None:
    root.add_typer(app)


@quark_command(app, "train")
def train(
    cli: Cli,
    name: Annotated[str, typer.Option("--name", help="Run name; the pipeline is published as models/NAME.")],
    data: Annotated[Optional[str], typer.Option("--data", help="Folder of x.png + x.txt pairs, or images with a "
                                                               "metadata.jsonl (file_name, text).")] = None,
    builtin: Annotated[Optional[str], typer.Option("--builtin", help="A built-in set instead of --data: 'shapes' "
                                                                     "(procedural shapes with captions).")] = None,
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="The Quark language model (under "
                                                        "models/) whose hidden states condition the images. Required "
                                                        "for a new run.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Shipped recipe (image-tiny, image-gpu) or a YAML "
                                                                   "file \\[default: image-tiny].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue runs/NAME from its last checkpoint.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value "
                                                                    "(repeatable).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Same as --set train.max_steps=N.")] = None,
    save_every: Annotated[Optional[int], typer.Option("--save-every", help="Same as --set train.save_every=N.")] = None,
    device: Annotated[Optional[str], device_option("Same as --set train.device=auto|cpu|cuda.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave unreadable images out (each is named) instead "
                                                              "of refusing the folder.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Launch torchrun with this many processes.")] = 1,
) -> Optional[dict]:
    """Train a text-to-image diffusion model; resumable, single device or torchrun (DDP).

    The text encoder is a Quark language model you name: its frozen hidden states are the text
    conditioning, and a copy goes into the published pipeline.

    Example:

        quark image train --builtin shapes --recipe image-tiny --text-encoder demo-base --name shapes

        quark image train --name shapes --resume                  # after a crash or Ctrl-C

        quark image train --data ./photos --text-encoder demo-base --name photos --set model.size=64
    """
    flags = {"train.max_steps": max_steps, "train.save_every": save_every, "train.device": device}
    overrides = [*(set_ or []), *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        args = ["--name", name, *(["--data", data] if data else []), *(["--builtin", builtin] if builtin else []),
                *(["--text-encoder", text_encoder] if text_encoder else []), *(["--recipe", recipe] if recipe else []),
                *(["--resume"] if resume else []), *(["--skip-bad"] if skip_bad else []),
                *(a for item in overrides for a in ("--set", item)),
                "--home", str(cli.home.root), *(["--json"] if cli.json else []), *(["--debug"] if cli.debug else [])]
        code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc_per_node={nproc}", "-m", "quark", "image", "train", *args])
        if code:
            raise typer.Exit(1)
        return None

    from quark.image.train import train_image_model

    summary = train_image_model(cli.home, name=name, data=data, builtin=builtin, text_encoder=text_encoder,
                                recipe=recipe, overrides=overrides, resume=resume, skip_bad=skip_bad,
                                progress=cli.progress_enabled(), log=cli.print)
    if summary is None:
        return None
    for skipped in summary["skipped_images"]:
        cli.err.print(f"[yellow]skipped[/] {skipped}", highlight=False)
    cli.print(f"[bold]{name}[/]: {summary['steps']} steps, {summary['images_seen']:,} images seen, "
              f"train loss {summary['train_loss']:.4f}"
              + (f", held-out loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else "")
              + f" → {summary['model_dir']}")
    return summary


@quark_command(app, "generate")
def generate(
    cli: Cli,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[Optional[str], model_option("Image model under models/ \\[default: the only one].")] = None,
    negative: Annotated[str, typer.Option("--negative", help="Negative prompt: what to steer away from.")] = "",
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps \\[default: the model's].")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="Classifier-free guidance scale; 1 turns it "
                                                                         "off \\[default: the model's].")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Seed of the first image (image j uses seed+j) "
                                                               "\\[default: random, recorded].")] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="Side in pixels \\[default: the trained size].")] = None,
    n: Annotated[int, typer.Option("--n", help="How many images.")] = 1,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="ddim or dpm (DPM-Solver++) \\[default: the "
                                                                     "model's].")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the PNG here (FILE-0.png, FILE-1.png "
                                                                          "… with --n) instead of assets/.")] = None,
    device: DeviceOption = "auto",
) -> dict:
    """Generate PNGs from a prompt; each records its prompt, seed and settings (PNG text and quark.db).

    Example:

        quark image generate "a large red circle in the center on a white background" --seed 7

        quark image generate "a small blue square at the top left on a black background" --n 4 \\
            --negative "red" --sampler dpm --steps 20 -o squares.png
    """
    from quark.device import resolve_device
    from quark.image.folders import resolve_image_model

    name = resolve_image_model(cli.home, model)  # a bad or unknown name is refused before diffusers loads

    from quark.image.generate import ImageModel

    image_model = ImageModel(cli.home, name, device=resolve_device(device))
    request = image_model.request(prompt, negative=negative, steps=steps, guidance=guidance, seed=seed, size=size,
                                  n=n, sampler=sampler)
    with progress_bar(enabled=cli.progress_enabled()) as bar:
        task = bar.add_task("sampling", total=request.steps, unit="steps")
        assets = image_model.run(request, output=output, on_step=lambda done, total: bar.update(task, completed=done))
    for asset in assets:
        cli.print(f"{asset.path}  [dim](seed {asset.seed})[/]", highlight=False)
    return {"model": image_model.name, "images": [a.as_dict() for a in assets]}
