"""`quark image train`: captioned images and a recipe in, a resumable run and a saved pipeline out.

    runs/<name>/run.json       data source, text encoder, output; written once
    runs/<name>/recipe.yaml    the resolved recipe; `--resume` reads it back
    runs/<name>/step-NNNNNN/   Trainer checkpoints: the UNet, its EMA, optimizer, RNG, data position
    runs/<name>/metrics.jsonl  loss per step, held-out denoising loss per evaluation
    models/<name>/             the QuarkImagePipeline (EMA weights), card.md, quark_image.json

It goes through the one Trainer like pretraining and alignment, so checkpoints, exact resume, the
progress bar, metrics.jsonl and `--nproc` under torchrun (DDP) come from there. The image parts
are the data source (quark.image.data: cached text states, per-sample noise), the loss (the
ε- or v-prediction MSE with min-SNR-γ weights) and an EMA of the UNet updated after every
optimizer step and saved inside each checkpoint.

The text encoder is a Quark language model named with --text-encoder: its frozen hidden states,
standardized per feature on the training captions, condition the UNet, and a copy (with the
standardization) travels inside the published pipeline. There is no default and no
stand-in: an image model is only as good as the text states it is trained on, so the user picks
the LM (the demo passes the one it pretrained).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.training_utils import compute_snr
from safetensors.torch import load_file

from quark import db
from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.home import Home
from quark.image import shapes
from quark.image.data import CaptionedImages, CaptionTable, DiffusionBatches, read_folder
from quark.image.folders import IMAGE_META
from quark.image.recipe import ImageRecipe, load_image_recipe
from quark.models.diffusion import (
    QuarkImagePipeline,
    QuarkTextEncoder,
    build_layout,
    build_unet,
    denoise,
    training_scheduler,
)
from quark.train import checkpoint
from quark.train.dist import setup, teardown
from quark.train.trainer import Trainer, fit_run

BUILTINS = ("shapes",)


class Denoiser(nn.Module):
    """What the Trainer trains: the UNet and its optional TextLayout, plus EMAs of both as frozen
    copies (so checkpoints hold them)."""

    def __init__(self, unet: nn.Module, recipe: ImageRecipe, layout: nn.Module | None = None) -> None:
        super().__init__()
        d = recipe.diffusion
        self.unet, self.layout = unet, layout
        self.ema = copy.deepcopy(unet).requires_grad_(False) if d.ema_decay > 0 else None
        self.ema_layout = copy.deepcopy(layout).requires_grad_(False) if d.ema_decay > 0 and layout else None
        self.scheduler = training_scheduler(d.timesteps, d.beta_schedule, d.prediction_type)
        self.prediction_type, self.snr_gamma, self.ema_decay = d.prediction_type, d.snr_gamma, d.ema_decay
        self._ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ weighted per-image MSE, number of images)."""
        x0, noise, t = batch["pixels"], batch["noise"], batch["timesteps"]
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = {"epsilon": noise, "sample": x0}.get(self.prediction_type)
        if target is None:
            target = self.scheduler.get_velocity(x0, noise, t)
        pred = denoise(self.unet, noisy, t, batch["text"], batch["text_mask"], self.layout)
        per_image = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.snr_gamma > 0:
            snr = compute_snr(self.scheduler, t).clamp(min=1e-8)
            clipped = torch.minimum(snr, torch.full_like(snr, self.snr_gamma))
            # min(SNR, γ) as a weight on the x0 error, expressed for what the UNet predicts
            per_image = per_image * {"epsilon": clipped / snr, "sample": clipped}.get(self.prediction_type,
                                                                                       clipped / (snr + 1))
        return per_image.sum(), torch.tensor(x0.shape[0], device=x0.device)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """EMA with diffusers' warm-up, (1+n)/(10+n) capped at ema_decay: early weights fade fast."""
        if self.ema is None:
            return
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        if self._ema_pairs is None:  # listed once, after the Trainer moved and wrapped the model: the
            # module walk costs more than the one multi-tensor lerp itself
            trained = [self.unet] + ([self.layout] if self.layout is not None else [])
            averaged = [self.ema] + ([self.ema_layout] if self.ema_layout is not None else [])
            self._ema_pairs = ([p for m in averaged for p in m.parameters()],
                               [p for m in trained for p in m.parameters()])
        torch._foreach_lerp_(*self._ema_pairs, 1.0 - decay)


def denoiser_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return model(batch)


def _images_of(batch: dict[str, torch.Tensor]) -> int:
    return batch["pixels"].shape[0]


def _ema_step(model: nn.Module, step: int) -> None:
    model.update_ema(step)


# -- what a run trains on -----------------------------------------------------------------------

def _source(data: str | None, builtin: str | None) -> dict[str, Any]:
    if (data is None) == (builtin is None):
        raise QuarkError("give exactly one of --data FOLDER or --builtin shapes")
    if builtin is not None:
        if builtin not in BUILTINS:
            raise QuarkError(f"unknown built-in image set {builtin!r} (expected one of {', '.join(BUILTINS)})")
        return {"builtin": builtin}
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise QuarkError(f"--data {data!r}: not a folder of images and captions")
    return {"folder": str(folder.resolve())}


def load_images(source: dict[str, Any], recipe: ImageRecipe, *, skip_bad: bool = False
                ) -> tuple[CaptionedImages, CaptionedImages | None]:
    """(training images, held-out images or None) of a run's data source."""
    size = recipe.model.size
    if "folder" in source:
        return read_folder(Path(source["folder"]), size, skip_bad=skip_bad), None
    vocabulary, seed = recipe.data.vocabulary(), recipe.train.seed

    def drawn(split: str, count: int) -> CaptionedImages:
        scenes = shapes.scenes(vocabulary, count, seed, split)
        pixels = torch.stack([torch.from_numpy(shapes.np_image(s, size)) for s in scenes])
        return CaptionedImages(pixels, [s.caption for s in scenes])

    heldout = drawn("heldout", recipe.data.heldout_images) if recipe.data.heldout_images else None
    return drawn("train", recipe.data.images), heldout


def _resolve(home: Home, name: str, data: str | None, builtin: str | None, text_encoder: str | None,
             recipe: str | None, overrides: list[str], resume: bool) -> tuple[ImageRecipe, dict[str, Any], str]:
    """(recipe, data source, text encoder) of a new run, or read back from runs/<name>/ to resume."""
    run_dir, model_dir = home.run_dir(name), home.model_dir(name)
    if resume:
        run_file = run_dir / "run.json"
        if not run_file.is_file():
            raise QuarkError(f"no run {name!r} to resume (no {run_file})")
        recorded = json.loads(run_file.read_text())
        if recorded.get("kind") != "image":
            raise QuarkError(f"run {name!r} is a {recorded.get('kind')} run, not an image run")
        if recipe:
            raise QuarkError(f"--resume continues run {name!r} with the recipe in {run_dir / 'recipe.yaml'}; "
                             "drop --recipe (change single values with --set or --max-steps)")
        if (data or builtin) and _source(data, builtin) != recorded["data"]:
            raise QuarkError(f"run {name!r} trains on {recorded['data']}, not on the data given")
        if text_encoder and text_encoder != recorded["text_encoder"]:
            raise QuarkError(f"run {name!r} uses text encoder {recorded['text_encoder']!r}, not {text_encoder!r}")
        return load_image_recipe(str(run_dir / "recipe.yaml"), overrides), recorded["data"], recorded["text_encoder"]
    source = _source(data, builtin)
    if not text_encoder:
        raise QuarkError("--text-encoder MODEL is required: the Quark language model whose hidden states condition "
                         "the image model (e.g. one made by `quark pretrain`)")
    if run_dir.exists():
        raise QuarkError(f"run {name!r} already exists ({run_dir}): add --resume to continue it, "
                         "or pick another --name")
    if model_dir.exists():
        raise QuarkError(f"model {name!r} already exists ({model_dir}): pick another --name")
    return load_image_recipe(recipe or "image-tiny", overrides), source, text_encoder


def _text_encoder(home: Home, name: str, recipe: ImageRecipe) -> QuarkTextEncoder:
    folder = home.existing(home.model_dir(name), "model")
    if not (folder / "config.json").is_file() or (folder / "model_index.json").is_file():
        raise QuarkError(f"--text-encoder {name!r} is not a Quark language model folder "
                         "(config.json + model.safetensors)")
    from quark.modelfolder import load_model, load_tokenizer

    return QuarkTextEncoder(load_model(folder), load_tokenizer(folder), recipe.model.text_max_tokens)


def train_image_model(home: Home, *, name: str, data: str | None = None, builtin: str | None = None,
                      text_encoder: str | None = None, recipe: str | None = None, overrides: list[str] = (),
                      resume: bool = False, skip_bad: bool = False, progress: bool = True,
                      log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Run (or resume) an image training run; returns its summary on process 0, None elsewhere."""
    resolved, source, encoder_name = _resolve(home, name, data, builtin, text_encoder, recipe, list(overrides), resume)
    t, d = resolved.train, resolved.diffusion
    encoder = _text_encoder(home, encoder_name, resolved)
    train_images, heldout = load_images(source, resolved, skip_bad=skip_bad)
    captions = CaptionTable.build(encoder, train_images.captions).fit_standardization(encoder)
    train_data = DiffusionBatches(train_images, captions, timesteps=d.timesteps, seed=t.seed,
                                  dropout=d.caption_dropout)
    val = None
    if heldout is not None:
        val = DiffusionBatches(heldout, CaptionTable.build(encoder, heldout.captions), timesteps=d.timesteps,
                               seed=t.seed + 1, shuffle=False)
    run_dir = home.run_dir(name)
    env = setup(t.device)
    try:
        checkpoint.seed_everything(t.seed)
        model = Denoiser(build_unet(resolved.model, encoder.hidden_size), resolved,
                         build_layout(resolved.model, encoder.hidden_size))
        parameters = sum(p.numel() for p in model.unet.parameters())
        if model.layout is not None:
            parameters += sum(p.numel() for p in model.layout.parameters())
        info = {"data": source, "text_encoder": encoder_name, "images": len(train_images),
                "skipped_images": train_images.skipped, "unet_parameters": parameters}
        conn = None
        if env.is_main:
            checkpoint.start_run_dir(run_dir, resume=resume, recipe_yaml=resolved.to_yaml(), info={
                "kind": "image", **info, "output": str(home.model_dir(name)), "created": _now()})
            conn = db.connect(home.db_path)
            db.record_run(conn, name, "image", name, {"recipe": resolved.to_dict(), **info})
        env.barrier()
        trainer = Trainer(model, resolved.optim, t, train_data, env=env, run_dir=run_dir, loss_fn=denoiser_loss,
                          val=val, val_samples=min(t.eval_windows, len(val)) if val else 0, progress=progress,
                          label="image", on_step=_ema_step, items=_images_of, unit="img")
        summary, resumed = fit_run(trainer, run_dir, resume=resume, conn=conn, name=name, log=log)
        if not env.is_main:
            env.done()
            return None
        summary = {"run": name, "model": name, **info, "steps": summary["steps"], "images_seen": summary["tokens"],
                   "train_loss": summary["train_loss"], "val_loss": summary["val_loss"],
                   "images_per_s": summary["tokens_per_s"], "train_time_s": summary["train_time_s"],
                   "resumed_from": str(resumed) if resumed else None}
        summary["model_dir"] = str(publish(home, name, run_dir, resolved, encoder, summary))
        db.finish_run(conn, name, "finished", summary)
        env.done()
        return summary
    finally:
        teardown()


def publish(home: Home, name: str, run_dir: Path, recipe: ImageRecipe, encoder: QuarkTextEncoder,
            summary: dict[str, Any]) -> Path:
    """models/<name>/ from the run's final checkpoint (the EMA weights when there is an EMA), in one rename."""
    last = checkpoint.checkpoints(run_dir)[-1]
    state = load_file(str(last / "model.safetensors"))
    averaged = recipe.diffusion.ema_decay > 0

    def weights(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    unet = build_unet(recipe.model, encoder.hidden_size)
    unet.load_state_dict(weights("ema." if averaged else "unet."))
    layout = build_layout(recipe.model, encoder.hidden_size)
    if layout is not None:
        layout.load_state_dict(weights("ema_layout." if averaged else "layout."))
        layout.eval()
    d = recipe.diffusion
    pipeline = QuarkImagePipeline(unet=unet.eval(), scheduler=training_scheduler(d.timesteps, d.beta_schedule,
                                                                                 d.prediction_type),
                                  text_encoder=encoder, layout=layout)
    meta = {"architecture": "quark-image-pipeline", "source_run": name, "created": _now(), "data": summary["data"],
            "text_encoder": summary["text_encoder"], "size": recipe.model.size,
            "vocabulary": dict(colours=recipe.data.colours, shapes=recipe.data.shapes,
                               backgrounds=recipe.data.backgrounds) if "builtin" in summary["data"] else None,
            "generation": {"sampler": d.sampler, "steps": d.steps, "guidance": d.guidance}}
    with atomic_dir(home.model_dir(name)) as tmp:
        pipeline.save_pretrained(tmp)
        (tmp / IMAGE_META).write_text(json.dumps(meta, indent=2))
        (tmp / "card.md").write_text(card(summary, recipe), encoding="utf-8")
    return home.model_dir(name)


def card(summary: dict[str, Any], recipe: ImageRecipe) -> str:
    """card.md: data, recipe and training figures; `quark eval image` appends the adherence scores."""
    data = summary["data"]
    where = f"the built-in `{data['builtin']}` set" if "builtin" in data else f"folder `{data['folder']}`"

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    skipped = summary["skipped_images"]
    rows = [("data", f"{where}: {summary['images']:,} images"
                     + (f" ({len(skipped)} unreadable skipped)" if skipped else "")),
            ("text encoder", f"`{summary['text_encoder']}` (frozen; copied into text_encoder/)"),
            ("UNet parameters", f"{summary['unet_parameters']:,}"), ("resolution", f"{recipe.model.size} px"),
            ("steps", f"{summary['steps']:,}"), ("images seen", f"{summary['images_seen']:,}"),
            ("final train loss", fmt(summary["train_loss"])), ("held-out loss", fmt(summary["val_loss"]))]
    table = "".join(f"| {k} | {v} |\n" for k, v in rows)
    return (f"# {summary['run']}\n\nA pixel-space text-to-image diffusion pipeline trained by `quark image train` "
            f"(run `runs/{summary['run']}/`).\n\n| | |\n|---|---|\n{table}\n## Recipe\n\n```yaml\n"
            f"{recipe.to_yaml()}```\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
